//! Giving memory back after a burst. Events are allocated by the reactor and freed here once
//! written; after a burst (thousands of connections opening at once, a queue that filled up)
//! the allocator keeps the freed memory resident for reuse, and a machine that has gone quiet
//! keeps paying for its busiest moment. Once the logger has been idle for [`IDLE`] after at
//! least [`AFTER`] bytes went through, it asks the allocator to return its free pages
//! (glibc's `malloc_trim`), at most once per [`EVERY`]. Steady traffic never leaves the logger
//! idle that long, so it never pays for a trim.
//!
//! Measured: 9000 idle connections logging hex and binary held 34.1 MiB of RSS right after
//! they opened, 25.2 MiB after a trim (4.9 MiB at start).

use std::time::{Duration, Instant};

/// Bytes of events written since the last trim before another is worth making.
pub const AFTER: usize = 1 << 20;
/// How long the logger waits with nothing to do before it trims.
pub const IDLE: Duration = Duration::from_millis(100);
/// The least time between two trims.
pub const EVERY: Duration = Duration::from_secs(1);

/// When to trim: bytes owed back since the last one, and when that was.
pub struct Trim {
    owed: usize,
    last: Option<Instant>,
}

impl Default for Trim {
    fn default() -> Trim {
        Trim::new()
    }
}

impl Trim {
    pub fn new() -> Trim {
        Trim {
            owed: 0,
            last: None,
        }
    }

    /// `bytes` of events were written (and their memory freed).
    pub fn passed(&mut self, bytes: usize) {
        self.owed = self.owed.saturating_add(bytes);
    }

    /// How long the logger may wait for events before it trims; `None`: no trim is due, wait
    /// as long as it takes.
    pub fn wait(&self, now: Instant) -> Option<Duration> {
        if self.owed < AFTER {
            return None;
        }
        let next = self.last.map_or(now, |t| t + EVERY);
        Some(next.saturating_duration_since(now).max(IDLE))
    }

    /// Returns the allocator's free memory to the system.
    pub fn run(&mut self, now: Instant) {
        self.owed = 0;
        self.last = Some(now);
        release_free_memory();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim takes no pointer and may be called from any thread at any time;
    // it only returns free pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_after_enough_bytes_and_not_too_often() {
        let t0 = Instant::now();
        let mut t = Trim::new();
        assert_eq!(t.wait(t0), None, "nothing went through");
        t.passed(AFTER - 1);
        assert_eq!(t.wait(t0), None, "too little");
        t.passed(1);
        assert_eq!(t.wait(t0), Some(IDLE), "due after an idle pause");
        t.run(t0);
        assert_eq!(t.wait(t0), None, "paid back");
        t.passed(AFTER);
        assert_eq!(t.wait(t0), Some(EVERY), "not again within EVERY");
        assert_eq!(t.wait(t0 + EVERY), Some(IDLE));
    }
}

//! CPU clocks for charging the proxy with its own CPU time only.
//!
//! The bench's source, clients and the proxy share one process, so the process's CPU time is
//! not the proxy's. Reading the proxy's two threads by name would miss their last moments: the
//! logging thread exits inside `Proxy::run` (it writes its last records as it stops), and an
//! exited thread's counters vanish from /proc and from its thread clock. The process clock
//! keeps exited threads' time, so the proxy's time is the process's time over a round minus
//! the time of every bench thread in it, each of which reads its own thread clock as it ends.

use std::time::Duration;

fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass and nothing else. The CPU-time clocks
    // of the calling thread and process always exist on Linux; on failure ts stays zero.
    unsafe { libc::clock_gettime(id, &mut ts) };
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// CPU time used by the calling thread so far (a new thread starts at zero).
pub fn thread() -> Duration {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time used by the whole process so far, exited threads included.
pub fn process() -> Duration {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// Measures the CPU a piece of work costs in threads the caller does not own.
pub struct Window {
    process: Duration,
    caller: Duration,
}

impl Window {
    /// Starts measuring: call on the thread that will call [`Window::others`].
    pub fn open() -> Window {
        Window {
            process: process(),
            caller: thread(),
        }
    }

    /// The process's CPU since [`open`](Window::open), less the calling thread's and less
    /// `own` (the CPU the caller's helper threads reported for themselves).
    pub fn others(&self, own: Duration) -> Duration {
        let total = process().saturating_sub(self.process);
        let caller = thread().saturating_sub(self.caller);
        total.saturating_sub(caller).saturating_sub(own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Burns `d` of this thread's CPU time (not wall time: the machine may be busy).
    fn burn(d: Duration) -> u64 {
        let start = thread();
        let mut x = 0u64;
        while thread() - start < d {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        x
    }

    #[test]
    fn a_thread_that_exits_is_still_counted() {
        let w = Window::open();
        burn(Duration::from_millis(20));
        let t = std::thread::spawn(|| {
            burn(Duration::from_millis(50));
            thread()
        });
        let reported = t.join().unwrap();
        assert!(reported >= Duration::from_millis(50));
        // Other tests run in this process at the same time, so only a lower bound holds.
        let others = w.others(Duration::ZERO);
        assert!(others >= Duration::from_millis(50), "{others:?}");
        // What a helper reports for itself is taken off.
        assert_eq!(w.others(Duration::from_secs(1000)), Duration::ZERO);
    }
}

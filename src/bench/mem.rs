//! The proxy's memory: how far the process's resident set rises over a download above its
//! level just before it. The bench shares the process with the proxy, so its own buffers
//! (source, clients) are allocated and touched before that level is taken (see
//! [`super::net`]): what grows afterwards is the proxy's.
//!
//! The peak comes from the kernel's high-water mark (VmHWM), reset to the current RSS through
//! /proc/self/clear_refs (`5`), so no short peak between two samples is missed. Where that
//! file cannot be written, a thread samples VmRSS every few milliseconds instead.
//!
//! Before the baseline, the allocator gives back what it holds free (glibc's `malloc_trim`):
//! otherwise the memory an earlier round's proxy freed stays resident, is counted in the
//! baseline, and is reused unseen, so every round after the first would show less growth
//! than a proxy starting afresh has.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How often the fallback sampler reads VmRSS.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// A field of /proc/self/status in bytes (`VmRSS:   1234 kB`).
pub fn status_bytes(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let rest = line.get(key.len()..)?.strip_prefix(':')?.trim();
    let kb: u64 = rest.strip_suffix("kB")?.trim().parse().ok()?;
    kb.checked_mul(1024)
}

fn status(key: &str) -> io::Result<u64> {
    let s = std::fs::read_to_string("/proc/self/status")?;
    status_bytes(&s, key).ok_or_else(|| io::Error::other(format!("no {key} in /proc/self/status")))
}

/// The resident set now.
pub fn rss() -> io::Result<u64> {
    status("VmRSS")
}

/// Watches the resident set from [`Peak::start`] to [`Peak::finish`].
pub struct Peak {
    baseline: u64,
    sampler: Option<Sampler>,
}

struct Sampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    thread: JoinHandle<Duration>,
}

impl Peak {
    /// Takes the baseline. The sampler, when one is needed, starts before it, so that its
    /// own stack is in the baseline too.
    pub fn start() -> io::Result<Peak> {
        trim();
        let reset = std::fs::write("/proc/self/clear_refs", "5");
        let sampler = match reset {
            Ok(()) => None,
            Err(_) => Some(Sampler::start()?),
        };
        let baseline = rss()?;
        if let Some(s) = &sampler {
            s.max.store(baseline, Ordering::Relaxed);
        }
        Ok(Peak { baseline, sampler })
    }

    /// The peak resident set since [`start`](Peak::start), less the baseline (0 if it only
    /// shrank), and the CPU time the sampler used, if there was one: the bench's, not the
    /// proxy's.
    pub fn finish(self) -> io::Result<(u64, Duration)> {
        let (peak, cpu) = match self.sampler {
            None => (status("VmHWM")?, Duration::ZERO),
            Some(s) => {
                s.stop.store(true, Ordering::Relaxed);
                let cpu = s.thread.join().unwrap_or_default();
                (s.max.load(Ordering::Relaxed).max(rss()?), cpu)
            }
        };
        Ok((peak.saturating_sub(self.baseline), cpu))
    }
}

/// Returns the allocator's free memory to the kernel.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas; 0 keeps no padding.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Sampler {
    fn start() -> io::Result<Sampler> {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(0));
        let (s, m) = (stop.clone(), max.clone());
        let thread = thread::Builder::new()
            .name("bench-rss".into())
            .spawn(move || {
                // A sampling period, not a wait for another thread: the stop flag ends it.
                while !s.load(Ordering::Relaxed) {
                    if let Ok(r) = rss() {
                        m.fetch_max(r, Ordering::Relaxed);
                    }
                    thread::sleep(SAMPLE_EVERY);
                }
                super::cpu::thread()
            })?;
        Ok(Sampler { stop, max, thread })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let s = "Name:\ttcpspy\nVmHWM:\t   20480 kB\nVmRSS:\t    8192 kB\n";
        assert_eq!(status_bytes(s, "VmRSS"), Some(8 << 20));
        assert_eq!(status_bytes(s, "VmHWM"), Some(20 << 20));
        assert_eq!(status_bytes(s, "VmSwap"), None);
        assert_eq!(status_bytes("VmRSS: lots kB\n", "VmRSS"), None);
        assert_eq!(
            status_bytes("VmRSS: 99999999999999999999 kB\n", "VmRSS"),
            None
        );
        assert_eq!(
            status_bytes("VmRSS: 18446744073709551615 kB\n", "VmRSS"),
            None
        );
    }

    #[test]
    fn a_touched_allocation_is_seen() {
        let peak = Peak::start().unwrap();
        let big = vec![0x5au8; 64 << 20];
        std::hint::black_box(&big);
        drop(big);
        // Other tests of this process allocate too: only a lower bound holds.
        let (grew, _) = peak.finish().unwrap();
        assert!(grew >= 60 << 20, "{grew}");
    }
}

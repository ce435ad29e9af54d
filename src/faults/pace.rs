//! The toxics that pace the bytes of a chunk: `bandwidth` (at most `rate` KB/s) and `slicer`
//! (writes of about `average_size` bytes, `delay` µs apart). Both hold only the chunk already
//! in the relay buffer; the next read waits until it is written, so the sender is held back
//! by TCP flow control and memory stays one buffer per direction.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::rng::Rng;
use super::toxic::{Behaviour, Cx, Gate, after_us, ms_text};

/// Bytes per write of `bandwidth`, at most: what 10 ms of the rate allows (and at least one),
/// so a slow rate trickles instead of bursting a buffer at a time.
const SLICE_MS: u64 = 10;

/// `bandwidth`: the bytes of each chunk leave no faster than `rate` KB/s (1000 bytes), from
/// when the link is free: byte k of a transfer goes no sooner than k / rate after its start,
/// so a transfer of S bytes takes at least S / rate.
pub struct Bandwidth {
    /// Bytes per millisecond (KB/s).
    rate: u64,
    /// When the current chunk's first byte could go, its length, bytes written of it.
    start: Option<Instant>,
    len: u64,
    sent: u64,
    /// When the link is free again (the last chunk's last byte went).
    free_at: Option<Instant>,
}

impl Bandwidth {
    pub fn new(rate: u64) -> Bandwidth {
        Bandwidth {
            rate,
            start: None,
            len: 0,
            sent: 0,
            free_at: None,
        }
    }

    /// When `bytes` bytes of the chunk may have gone.
    fn time_for(&self, start: Instant, bytes: u64) -> Instant {
        // rate bytes per ms = rate / 1000 bytes per µs: bytes * 1000 / rate µs.
        let us = bytes.saturating_mul(1000).div_ceil(self.rate.max(1));
        after_us(start, us)
    }
}

impl Behaviour for Bandwidth {
    fn chunk(&mut self, bytes: &mut [u8], _at: u64, cx: &mut Cx) {
        let start = self.free_at.map_or(cx.now, |f| f.max(cx.now));
        self.start = Some(start);
        self.len = bytes.len() as u64;
        self.sent = 0;
    }

    fn release(&mut self, pending: usize, _at: u64, cx: &mut Cx) -> Gate {
        let Some(start) = self.start else {
            return Gate::Now(pending);
        };
        if self.rate == 0 {
            return Gate::Now(pending);
        }
        let us = cx.now.saturating_duration_since(start).as_micros();
        let due_total = u64::try_from(us.saturating_mul(u128::from(self.rate)) / 1000)
            .unwrap_or(u64::MAX)
            .min(self.len);
        let may = due_total.saturating_sub(self.sent);
        let slice = self.rate.saturating_mul(SLICE_MS).max(1);
        let want = (pending as u64).min(slice);
        if may >= want {
            return Gate::Now(usize::try_from(may.min(slice)).unwrap_or(usize::MAX));
        }
        Gate::At(self.time_for(start, self.sent.saturating_add(want)))
    }

    fn wrote(&mut self, n: usize, cx: &mut Cx) {
        let Some(start) = self.start else {
            return;
        };
        self.sent = self.sent.saturating_add(n as u64);
        if self.sent >= self.len {
            let done = self.time_for(start, self.len);
            self.free_at = Some(done);
            let took = done.saturating_duration_since(start);
            if self.rate > 0 && took >= Duration::from_millis(1) {
                cx.note(format!(
                    "paced {} bytes over {} ({} KB/s)",
                    self.len,
                    ms_text(took),
                    self.rate
                ));
            }
            self.start = None;
        }
    }
}

/// `slicer`: each chunk goes in writes of about `average_size` bytes (plus or minus
/// `size_variation`), `delay` µs apart, the sizes drawn as Toxiproxy draws them (split in two
/// about the middle until a piece is small enough).
pub struct Slicer {
    average: u64,
    variation: u64,
    delay_us: u64,
    /// The sizes still to write of the current chunk; the first may be partly written.
    slices: VecDeque<u64>,
    next_at: Option<Instant>,
}

impl Slicer {
    pub fn new(average: u64, variation: u64, delay_us: u64) -> Slicer {
        Slicer {
            average: average.max(1),
            variation,
            delay_us,
            slices: VecDeque::new(),
            next_at: None,
        }
    }

    /// The sizes `len` bytes are cut into (Toxiproxy's `chunk`, without recursion).
    pub fn sizes(&self, len: u64, rng: &mut Rng) -> Vec<u64> {
        let mut out = Vec::new();
        let mut todo = vec![(0u64, len)];
        while let Some((start, end)) = todo.pop() {
            let size = end - start;
            if size <= self.average.saturating_add(self.variation) {
                if size > 0 {
                    out.push(size);
                }
                continue;
            }
            let mut mid = start + size / 2;
            if self.variation > 0 {
                let r = rng.below(self.variation * 2);
                mid = mid.saturating_add(r).saturating_sub(self.variation);
            }
            let mid = mid.clamp(start + 1, end - 1);
            // Right first onto the stack, so the left half is cut (and written) first.
            todo.push((mid, end));
            todo.push((start, mid));
        }
        out
    }
}

impl Behaviour for Slicer {
    fn chunk(&mut self, bytes: &mut [u8], _at: u64, cx: &mut Cx) {
        let sizes = self.sizes(bytes.len() as u64, cx.rng);
        let (lo, hi) = (
            sizes.iter().min().copied().unwrap_or(0),
            sizes.iter().max().copied().unwrap_or(0),
        );
        cx.note(format!(
            "sliced {} bytes into {} writes of {lo}-{hi} bytes, {} µs apart",
            bytes.len(),
            sizes.len(),
            self.delay_us
        ));
        self.slices = sizes.into();
    }

    fn release(&mut self, pending: usize, _at: u64, cx: &mut Cx) -> Gate {
        if let Some(t) = self.next_at
            && t > cx.now
        {
            return Gate::At(t);
        }
        match self.slices.front() {
            Some(&s) => Gate::Now(pending.min(usize::try_from(s).unwrap_or(usize::MAX))),
            None => Gate::Now(pending),
        }
    }

    fn wrote(&mut self, n: usize, cx: &mut Cx) {
        let mut n = n as u64;
        while n > 0 {
            let Some(front) = self.slices.front_mut() else {
                return;
            };
            let take = n.min(*front);
            *front -= take;
            n -= take;
            if *front == 0 {
                self.slices.pop_front();
                if self.delay_us > 0 {
                    self.next_at = Some(after_us(cx.now, self.delay_us));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(b: &mut dyn Behaviour, len: usize, t0: Instant) -> (Vec<usize>, Instant) {
        let (mut rng, mut notes) = (Rng::new(3), Vec::new());
        let mut now = t0;
        let mut buf = vec![0u8; len];
        b.chunk(
            &mut buf,
            0,
            &mut Cx {
                now,
                rng: &mut rng,
                notes: &mut notes,
            },
        );
        let (mut left, mut writes) = (len, Vec::new());
        while left > 0 {
            match b.release(
                left,
                0,
                &mut Cx {
                    now,
                    rng: &mut rng,
                    notes: &mut notes,
                },
            ) {
                Gate::Now(n) if n > 0 => {
                    writes.push(n);
                    left -= n;
                    b.wrote(
                        n,
                        &mut Cx {
                            now,
                            rng: &mut rng,
                            notes: &mut notes,
                        },
                    );
                }
                Gate::At(t) => {
                    assert!(t > now, "a wait is for later");
                    now = t;
                }
                other => panic!("{other:?}"),
            }
        }
        (writes, now)
    }

    #[test]
    fn bandwidth_takes_at_least_size_over_rate() {
        let t0 = Instant::now();
        // 10 KB/s: 5000 bytes take at least 500 ms, in slices of at most 100 bytes.
        let mut b = Bandwidth::new(10);
        let (writes, end) = run(&mut b, 5000, t0);
        assert!(end >= t0 + Duration::from_millis(500), "{:?}", end - t0);
        assert!(end <= t0 + Duration::from_millis(501), "{:?}", end - t0);
        assert!(writes.iter().all(|&w| w <= 100));
        // The next chunk starts when the link is free, not before.
        let (_, end2) = run(&mut b, 1000, t0);
        assert!(end2 >= t0 + Duration::from_millis(600), "{:?}", end2 - t0);
        let mut free = Bandwidth::new(0);
        assert_eq!(run(&mut free, 5000, t0).0, [5000]);
    }

    #[test]
    fn slicer_cuts_as_toxiproxy_and_waits_between() {
        let t0 = Instant::now();
        let mut s = Slicer::new(100, 20, 1000);
        let (writes, end) = run(&mut s, 1000, t0);
        assert_eq!(writes.iter().sum::<usize>(), 1000);
        assert!(writes.len() >= 8, "{writes:?}");
        assert!(writes.iter().all(|&w| w <= 120), "{writes:?}");
        assert!(end >= t0 + Duration::from_micros(1000 * (writes.len() as u64 - 1)));
        let s = Slicer::new(1, 0, 0);
        assert_eq!(s.sizes(5, &mut Rng::new(1)), [1, 1, 1, 1, 1]);
        assert_eq!(s.sizes(0, &mut Rng::new(1)), Vec::<u64>::new());
    }
}

//! `latency`: every byte reaches the other side at least `latency` ms (plus or minus up to
//! `jitter`) after tcpspy first saw it, in order.
//!
//! **Memory.** The bytes wait where they are: in the source socket's kernel buffer. Before
//! each read the toxic learns how many bytes wait there (FIONREAD) and marks them with the
//! time they were first seen; a read takes only the bytes whose time has come. While bytes
//! wait, the kernel's receive window fills and TCP flow control holds the sender back, as a
//! link with this delay would: the throughput is at most the receive window per `latency`,
//! the bandwidth-delay product of a real long link. Nothing is queued in tcpspy, so a
//! thousand delayed connections cost no more memory than a thousand idle ones. A source that
//! cannot say what waits (a TLS session) is read as usual and its chunk held in the relay
//! buffer instead (one per direction, the pipeline's bound).
//!
//! The marks are at most [`MARKS`] per direction: past that, a new mark is merged into the
//! last one, which then takes the later time (bytes wait longer, never shorter).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::toxic::{Behaviour, Cx, Gate, after_ms, ms_text};

/// Most marks kept per direction (see the module doc).
pub const MARKS: usize = 64;

/// Bytes up to `end` were first seen at `seen` and may go at `due`.
#[derive(Clone, Copy, Debug)]
struct Mark {
    end: u64,
    seen: Instant,
    due: Instant,
}

pub struct Latency {
    latency: u64,
    jitter: u64,
    marks: VecDeque<Mark>,
    /// Bytes before this offset may be read and written at once.
    free_to: u64,
    /// The chunk in the buffer was read without being marked first: held until then.
    held: Option<Mark>,
    /// The latest due time given: bytes leave in order, so none is earlier.
    last_due: Option<Instant>,
}

impl Latency {
    pub fn new(latency: u64, jitter: u64) -> Latency {
        Latency {
            latency,
            jitter,
            marks: VecDeque::new(),
            free_to: 0,
            held: None,
            last_due: None,
        }
    }

    /// The delay for bytes seen now: latency plus or minus jitter, as Toxiproxy draws it.
    fn due(&mut self, cx: &mut Cx) -> Instant {
        let mut ms = self.latency;
        if self.jitter > 0 {
            let j = cx.rng.below(self.jitter.saturating_mul(2));
            ms = ms.saturating_add(j).saturating_sub(self.jitter);
        }
        let due = after_ms(cx.now, ms);
        let due = self.last_due.map_or(due, |l| l.max(due));
        self.last_due = Some(due);
        due
    }

    fn mark(&mut self, end: u64, cx: &mut Cx) {
        let known = self
            .marks
            .back()
            .map_or(self.free_to, |m| m.end.max(self.free_to));
        if end <= known {
            return;
        }
        let due = self.due(cx);
        let full = self.marks.len() >= MARKS;
        match self.marks.back_mut() {
            Some(last) if full => {
                last.end = end;
                last.due = due;
            }
            _ => self.marks.push_back(Mark {
                end,
                seen: cx.now,
                due,
            }),
        }
    }

    fn tell(cx: &mut Cx, from: u64, to: u64, seen: Instant) {
        let held = cx.now.saturating_duration_since(seen);
        cx.note(format!(
            "held bytes {from}-{} for {}",
            to.saturating_sub(1),
            ms_text(held)
        ));
    }
}

impl Behaviour for Latency {
    fn admit(&mut self, available: Option<usize>, at: u64, cx: &mut Cx) -> Gate {
        let Some(n) = available else {
            return Gate::Now(usize::MAX);
        };
        self.mark(at.saturating_add(n as u64), cx);
        // Marks whose bytes were all read (partly by an earlier, admitted read) are done.
        while self.marks.front().is_some_and(|m| m.end <= at) {
            self.marks.pop_front();
        }
        while let Some(m) = self.marks.front().copied() {
            if m.due > cx.now {
                break;
            }
            self.marks.pop_front();
            let from = at.max(self.free_to);
            Self::tell(cx, from, m.end, m.seen);
            self.free_to = self.free_to.max(m.end);
        }
        if self.free_to > at {
            return Gate::Now(usize::try_from(self.free_to - at).unwrap_or(usize::MAX));
        }
        match self.marks.front() {
            Some(m) => Gate::At(m.due),
            // Nothing waits that we know of: a read shows a FIN, an error, or bytes that came
            // just now (those are held in the buffer, see `chunk`).
            None => Gate::Now(usize::MAX),
        }
    }

    fn chunk(&mut self, bytes: &mut [u8], at: u64, cx: &mut Cx) {
        let end = at.saturating_add(bytes.len() as u64);
        if end > self.free_to {
            let due = self.due(cx);
            self.held = Some(Mark {
                end,
                seen: cx.now,
                due,
            });
        }
    }

    fn release(&mut self, pending: usize, at: u64, cx: &mut Cx) -> Gate {
        let Some(h) = self.held else {
            return Gate::Now(pending);
        };
        if at < self.free_to {
            return Gate::Now(
                pending.min(usize::try_from(self.free_to - at).unwrap_or(usize::MAX)),
            );
        }
        if h.due > cx.now {
            return Gate::At(h.due);
        }
        self.held = None;
        Self::tell(cx, at.max(self.free_to), h.end, h.seen);
        self.free_to = self.free_to.max(h.end);
        Gate::Now(pending)
    }
}

/// The delay a test expects at least: `latency - jitter` ms.
pub fn least(latency: u64, jitter: u64) -> Duration {
    Duration::from_millis(latency.saturating_sub(jitter))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::rng::Rng;

    fn cx<'a>(now: Instant, rng: &'a mut Rng, notes: &'a mut Vec<String>) -> Cx<'a> {
        Cx { now, rng, notes }
    }

    #[test]
    fn bytes_wait_in_the_kernel_until_their_time() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let (mut rng, mut notes) = (Rng::new(1), Vec::new());
        let mut l = Latency::new(100, 0);
        // 10 bytes seen at 0: nothing may be read before 100 ms.
        assert_eq!(
            l.admit(Some(10), 0, &mut cx(ms(0), &mut rng, &mut notes)),
            Gate::At(ms(100))
        );
        // 5 more seen at 30 (15 waiting): still 100 for the first ten.
        assert_eq!(
            l.admit(Some(15), 0, &mut cx(ms(30), &mut rng, &mut notes)),
            Gate::At(ms(100))
        );
        // At 100 the first ten may be read, no more.
        assert_eq!(
            l.admit(Some(15), 0, &mut cx(ms(100), &mut rng, &mut notes)),
            Gate::Now(10)
        );
        let mut b = [0u8; 10];
        l.chunk(&mut b, 0, &mut cx(ms(100), &mut rng, &mut notes));
        assert_eq!(
            l.release(10, 0, &mut cx(ms(100), &mut rng, &mut notes)),
            Gate::Now(10)
        );
        // The other five at 130.
        assert_eq!(
            l.admit(Some(5), 10, &mut cx(ms(101), &mut rng, &mut notes)),
            Gate::At(ms(130))
        );
        assert_eq!(
            l.admit(Some(5), 10, &mut cx(ms(130), &mut rng, &mut notes)),
            Gate::Now(5)
        );
        assert_eq!(
            notes,
            ["held bytes 0-9 for 100 ms", "held bytes 10-14 for 100 ms"]
        );
        // Nothing waiting: a read may look (for a FIN).
        assert_eq!(
            l.admit(Some(0), 15, &mut cx(ms(131), &mut rng, &mut notes)),
            Gate::Now(usize::MAX)
        );
    }

    #[test]
    fn a_chunk_read_unmarked_is_held_in_the_buffer() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let (mut rng, mut notes) = (Rng::new(1), Vec::new());
        let mut l = Latency::new(50, 0);
        assert_eq!(
            l.admit(None, 0, &mut cx(ms(0), &mut rng, &mut notes)),
            Gate::Now(usize::MAX)
        );
        let mut b = [0u8; 4];
        l.chunk(&mut b, 0, &mut cx(ms(0), &mut rng, &mut notes));
        assert_eq!(
            l.release(4, 0, &mut cx(ms(10), &mut rng, &mut notes)),
            Gate::At(ms(50))
        );
        assert_eq!(
            l.release(4, 0, &mut cx(ms(50), &mut rng, &mut notes)),
            Gate::Now(4)
        );
        assert_eq!(notes, ["held bytes 0-3 for 50 ms"]);
    }

    #[test]
    fn jitter_stays_in_its_range_and_order_is_kept() {
        let t0 = Instant::now();
        let (mut rng, mut notes) = (Rng::new(9), Vec::new());
        let mut l = Latency::new(100, 40);
        let mut last = t0;
        for i in 0..200u64 {
            let now = t0 + Duration::from_millis(i);
            let due = l.due(&mut cx(now, &mut rng, &mut notes));
            assert!(due >= now + Duration::from_millis(60), "{i}");
            assert!(due >= last, "in order");
            last = due;
        }
    }

    #[test]
    fn marks_are_bounded_and_merge_later() {
        let t0 = Instant::now();
        let (mut rng, mut notes) = (Rng::new(1), Vec::new());
        let mut l = Latency::new(10, 0);
        for i in 0..1000u64 {
            let now = t0 + Duration::from_micros(i);
            l.admit(Some(i as usize + 1), 0, &mut cx(now, &mut rng, &mut notes));
        }
        assert!(l.marks.len() <= MARKS);
        let last = l.marks.back().unwrap();
        assert_eq!(last.end, 1000);
        assert!(last.due >= t0 + Duration::from_micros(999) + Duration::from_millis(10));
    }
}

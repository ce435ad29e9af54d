//! The toxics that end connections or hold their end: `slow_close` (the FIN waits `delay`
//! ms), `timeout` (nothing gets through; after `timeout` ms, never with 0, the connection is
//! closed), `reset_peer` (at the first bytes or the FIN, wait `timeout` ms, then reset both
//! sides) and `limit_data` (the connection closes once `bytes` bytes went through).
//!
//! `timeout` holds the bytes where they are, unread in the source's kernel buffer, rather than
//! reading and dropping them as Toxiproxy does: the sender sees a peer that stopped reading,
//! as with a hung server, memory stays flat, and once the toxic is removed the bytes go on.

use std::time::Instant;

use super::toxic::{Behaviour, Cx, Gate, after_ms};

/// `slow_close`.
pub struct SlowClose {
    delay: u64,
    due: Option<Instant>,
}

impl SlowClose {
    pub fn new(delay: u64) -> SlowClose {
        SlowClose { delay, due: None }
    }
}

impl Behaviour for SlowClose {
    fn finish(&mut self, cx: &mut Cx) -> Gate {
        let due = *self.due.get_or_insert(after_ms(cx.now, self.delay));
        if due > cx.now {
            return Gate::At(due);
        }
        if self.delay > 0 {
            cx.note(format!("held the FIN for {} ms", self.delay));
            self.delay = 0;
        }
        Gate::Now(0)
    }
}

/// `timeout`.
pub struct Timeout {
    /// When the connection closes (`None`: never).
    at: Option<Instant>,
    told: bool,
}

impl Timeout {
    pub fn new(timeout: u64, now: Instant) -> Timeout {
        Timeout {
            at: (timeout > 0).then(|| after_ms(now, timeout)),
            told: false,
        }
    }

    fn hold(&mut self, cx: &mut Cx) -> Gate {
        if let Some(at) = self.at
            && at <= cx.now
        {
            cx.note("timed out: closing the connection".into());
            return Gate::Close;
        }
        if !self.told {
            self.told = true;
            cx.note("holding the bytes (nothing gets through)".into());
        }
        Gate::Now(0)
    }
}

impl Behaviour for Timeout {
    fn admit(&mut self, _available: Option<usize>, _at: u64, cx: &mut Cx) -> Gate {
        self.hold(cx)
    }
    fn release(&mut self, _pending: usize, _at: u64, cx: &mut Cx) -> Gate {
        self.hold(cx)
    }
    fn finish(&mut self, cx: &mut Cx) -> Gate {
        self.hold(cx)
    }
    fn tick(&mut self, cx: &mut Cx) -> Gate {
        match self.at {
            Some(at) if at <= cx.now => self.hold(cx),
            _ => Gate::Now(0),
        }
    }
    fn deadline(&self) -> Option<Instant> {
        self.at
    }
}

/// `reset_peer`.
pub struct ResetPeer {
    timeout: u64,
    /// Set at the first bytes (or FIN) seen.
    at: Option<Instant>,
}

impl ResetPeer {
    pub fn new(timeout: u64) -> ResetPeer {
        ResetPeer { timeout, at: None }
    }

    fn arm(&mut self, cx: &mut Cx, what: &str) -> Gate {
        let at = match self.at {
            Some(at) => at,
            None => {
                let at = after_ms(cx.now, self.timeout);
                cx.note(format!("{what}: resetting in {} ms", self.timeout));
                *self.at.insert(at)
            }
        };
        if at <= cx.now {
            cx.note("reset both sides".into());
            return Gate::Reset;
        }
        Gate::At(at)
    }
}

impl Behaviour for ResetPeer {
    fn admit(&mut self, available: Option<usize>, at: u64, cx: &mut Cx) -> Gate {
        match (available, self.at) {
            (Some(n), None) if n > 0 => self.arm(cx, &format!("bytes from {at} seen")),
            (_, Some(_)) => self.arm(cx, ""),
            _ => Gate::Now(usize::MAX),
        }
    }
    fn release(&mut self, _pending: usize, at: u64, cx: &mut Cx) -> Gate {
        self.arm(cx, &format!("bytes from {at} read"))
    }
    fn finish(&mut self, cx: &mut Cx) -> Gate {
        self.arm(cx, "FIN seen")
    }
    fn tick(&mut self, cx: &mut Cx) -> Gate {
        match self.at {
            Some(at) if at <= cx.now => self.arm(cx, ""),
            _ => Gate::Now(0),
        }
    }
    fn deadline(&self) -> Option<Instant> {
        self.at
    }
}

/// `limit_data`: counts from the offset the toxic started at.
pub struct LimitData {
    /// The offset past which nothing goes.
    end: u64,
    written: u64,
    reached: Option<Instant>,
}

impl LimitData {
    pub fn new(base: u64, bytes: u64) -> LimitData {
        LimitData {
            end: base.saturating_add(bytes),
            written: base,
            reached: None,
        }
    }

    fn close(&mut self, cx: &mut Cx) -> Gate {
        cx.note(format!("closing the connection at byte {}", self.end));
        Gate::Close
    }
}

impl Behaviour for LimitData {
    fn release(&mut self, pending: usize, at: u64, cx: &mut Cx) -> Gate {
        self.written = at;
        let left = self.end.saturating_sub(at);
        if left == 0 {
            return self.close(cx);
        }
        Gate::Now(pending.min(usize::try_from(left).unwrap_or(usize::MAX)))
    }
    fn wrote(&mut self, n: usize, cx: &mut Cx) {
        self.written = self.written.saturating_add(n as u64);
        if self.written >= self.end && self.reached.is_none() {
            // Close at once, not at the next byte: a client that sent exactly the limit and
            // waits for an answer sees the end now.
            self.reached = Some(cx.now);
        }
    }
    fn admit(&mut self, _available: Option<usize>, at: u64, cx: &mut Cx) -> Gate {
        match at >= self.end {
            true => self.close(cx),
            false => Gate::Now(usize::try_from(self.end - at).unwrap_or(usize::MAX)),
        }
    }
    fn tick(&mut self, cx: &mut Cx) -> Gate {
        match self.reached {
            Some(_) => self.close(cx),
            None => Gate::Now(0),
        }
    }
    fn deadline(&self) -> Option<Instant> {
        self.reached
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::rng::Rng;
    use std::time::Duration;

    #[test]
    fn each_ends_as_asked() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let (mut rng, mut notes) = (Rng::new(1), Vec::new());
        macro_rules! cx {
            ($n:expr) => {
                &mut Cx {
                    now: ms($n),
                    rng: &mut rng,
                    notes: &mut notes,
                }
            };
        }
        let mut s = SlowClose::new(300);
        assert_eq!(s.finish(cx!(0)), Gate::At(ms(300)));
        assert_eq!(s.finish(cx!(300)), Gate::Now(0));

        let mut t = Timeout::new(0, t0);
        assert_eq!(t.admit(Some(5), 0, cx!(0)), Gate::Now(0));
        assert_eq!(t.deadline(), None, "0: never closes");
        let mut t = Timeout::new(50, t0);
        assert_eq!(t.release(5, 0, cx!(10)), Gate::Now(0));
        assert_eq!(t.deadline(), Some(ms(50)));
        assert_eq!(t.tick(cx!(49)), Gate::Now(0));
        assert_eq!(t.tick(cx!(50)), Gate::Close);

        let mut r = ResetPeer::new(20);
        assert_eq!(r.admit(Some(0), 0, cx!(0)), Gate::Now(usize::MAX));
        assert_eq!(r.admit(Some(3), 0, cx!(5)), Gate::At(ms(25)));
        assert_eq!(r.tick(cx!(25)), Gate::Reset);
        let mut r = ResetPeer::new(0);
        assert_eq!(r.finish(cx!(7)), Gate::Reset);

        let mut l = LimitData::new(0, 10);
        assert_eq!(l.admit(Some(50), 0, cx!(0)), Gate::Now(10));
        assert_eq!(l.release(50, 0, cx!(0)), Gate::Now(10));
        l.wrote(10, cx!(1));
        assert_eq!(l.deadline(), Some(ms(1)));
        assert_eq!(l.tick(cx!(1)), Gate::Close);
        let mut l = LimitData::new(100, 10);
        assert_eq!(
            l.release(50, 105, cx!(0)),
            Gate::Now(5),
            "counts from its start"
        );
        assert!(
            notes
                .iter()
                .any(|n| n == "closing the connection at byte 10"),
            "{notes:?}"
        );
    }
}

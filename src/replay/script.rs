//! Plays one side of a recording, turn by turn, without sockets and with time given: the
//! scripted peer of [`super::peer`] asks it what to send and tells it what it heard.
//!
//! Each act of the side played (a chunk, its FIN or reset) waits for its turn: until the
//! other side has sent as many bytes as the recording had from it before that act, and its
//! end if that came first. With [`Pace::Original`] the act then waits the recorded gap after
//! the act before it; with a turn timeout, an act whose turn does not come goes anyway that
//! long after the last thing that happened (counted in [`Player::timeouts`]). Once the other
//! side has ended nothing more will come from it, so every remaining act goes at once.

use std::time::{Duration, Instant};

use super::recording::{Act, Recording};
use crate::types::Side;

/// `--pace`: how soon an act goes once its turn has come.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Pace {
    /// At once.
    #[default]
    Asap,
    /// After the gap the recording has before it.
    Original,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub pace: Pace,
    /// How long an act waits for its turn before it goes anyway; `None`: for ever.
    pub turn_timeout: Option<Duration>,
}

/// One act of the side played, with what must come before it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Turn {
    act: Act,
    /// The other side's bytes recorded before this act.
    needs: u64,
    /// The other side had ended before this act.
    needs_end: bool,
    gap: Duration,
}

/// What a read of the played side gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Out {
    Bytes(usize),
    Fin,
    Reset,
    /// Nothing yet: its turn has not come.
    Wait,
}

pub struct Player {
    turns: Vec<Turn>,
    next: usize,
    /// Bytes of the current chunk already given.
    pos: usize,
    heard: u64,
    heard_end: bool,
    /// When the last thing happened: an act went, a byte or the end came.
    last: Instant,
    /// When the current act's turn came, if it has.
    met: Option<Instant>,
    opts: Options,
    /// The other side's bytes and end, as recorded.
    other_total: u64,
    other_ends: bool,
    /// Acts that went on a turn timeout.
    pub timeouts: u32,
    /// This side has ended (its recorded end, or the FIN it gives once its acts are over
    /// and the other side has closed).
    closed: bool,
}

impl Player {
    /// A player of `me`'s acts in `rec`, starting at `now`.
    pub fn new(rec: &Recording, me: Side, opts: Options, now: Instant) -> Player {
        let mut turns = Vec::new();
        let (mut other, mut other_end) = (0u64, false);
        let mut prev_at: Option<Duration> = None;
        for s in &rec.steps {
            if s.side == me {
                let gap = match (prev_at, s.at) {
                    (Some(p), Some(a)) => a.saturating_sub(p),
                    _ => Duration::ZERO,
                };
                turns.push(Turn {
                    act: s.act.clone(),
                    needs: other,
                    needs_end: other_end,
                    gap,
                });
            } else {
                match &s.act {
                    Act::Data(b) => other = other.saturating_add(b.len() as u64),
                    Act::Fin | Act::Reset => other_end = true,
                }
            }
            prev_at = s.at.or(prev_at);
        }
        let mut p = Player {
            turns,
            next: 0,
            pos: 0,
            heard: 0,
            heard_end: false,
            last: now,
            met: None,
            opts,
            other_total: other,
            other_ends: other_end,
            timeouts: 0,
            closed: false,
        };
        p.check(now);
        p
    }

    /// True once every act was played.
    pub fn finished(&self) -> bool {
        self.next >= self.turns.len()
    }

    /// The other side's bytes heard so far.
    pub fn heard(&self) -> u64 {
        self.heard
    }

    pub fn heard_end(&self) -> bool {
        self.heard_end
    }

    fn turn_met(&self, t: &Turn) -> bool {
        self.heard_end || (self.heard >= t.needs && !t.needs_end)
    }

    fn check(&mut self, now: Instant) {
        if self.met.is_none() && self.turns.get(self.next).is_some_and(|t| self.turn_met(t)) {
            self.met = Some(now);
        }
    }

    /// When the next act may go; `None` when nothing is left, or it waits for ever.
    pub fn due(&self) -> Option<Instant> {
        if self.finished() && self.heard_end && !self.closed {
            // The recording has no end for this side, and nothing more will come: close.
            return Some(self.last);
        }
        let t = self.turns.get(self.next)?;
        if self.pos > 0 {
            return Some(self.last);
        }
        match (self.met, self.opts.pace) {
            (Some(m), Pace::Original) => Some(m.checked_add(t.gap).unwrap_or(m)),
            (Some(m), Pace::Asap) => Some(m),
            (None, _) => self
                .opts
                .turn_timeout
                .map(|d| self.last.checked_add(d).unwrap_or(self.last)),
        }
    }

    /// When a replay whose acts are all played should end the connection, the other side
    /// not having ended: at once if it sent all it had recorded (something) and the recording
    /// has no end for it, else a turn timeout after the last thing that happened.
    pub fn done_at(&self) -> Option<Instant> {
        if !self.finished() || self.heard_end {
            return None;
        }
        // (A recording with nothing from the other side, a lone client log, says nothing of
        // how much to await: the timeout decides.)
        if self.other_total > 0 && self.heard >= self.other_total && !self.other_ends {
            return Some(self.last);
        }
        self.opts
            .turn_timeout
            .map(|d| self.last.checked_add(d).unwrap_or(self.last))
    }

    /// Gives the next act if its time has come.
    pub fn read(&mut self, buf: &mut [u8], now: Instant) -> Out {
        if self.due().is_none_or(|t| t > now) {
            return Out::Wait;
        }
        let Some(t) = self.turns.get(self.next) else {
            self.closed = true;
            return Out::Fin;
        };
        if self.pos == 0 && self.met.is_none() {
            self.timeouts = self.timeouts.saturating_add(1);
        }
        let out = match &t.act {
            Act::Data(b) => {
                let rest = b.get(self.pos..).unwrap_or(&[]);
                let n = rest.len().min(buf.len());
                if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
                    dst.copy_from_slice(src);
                }
                self.pos = self.pos.saturating_add(n);
                if self.pos < b.len() {
                    self.last = now;
                    return Out::Bytes(n);
                }
                Out::Bytes(n)
            }
            Act::Fin => {
                self.closed = true;
                Out::Fin
            }
            Act::Reset => {
                self.closed = true;
                Out::Reset
            }
        };
        self.next = self.next.saturating_add(1);
        self.pos = 0;
        self.met = None;
        self.last = now;
        self.check(now);
        out
    }

    /// The other side sent `n` bytes.
    pub fn hear(&mut self, n: usize, now: Instant) {
        if n > 0 {
            self.heard = self.heard.saturating_add(n as u64);
            self.last = now;
            self.check(now);
        }
    }

    /// The other side ended (FIN).
    pub fn hear_end(&mut self, now: Instant) {
        if !self.heard_end {
            self.heard_end = true;
            self.last = now;
            self.check(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Recording {
        let ms = |n| Some(Duration::from_millis(n));
        let mut r = Recording::new("t");
        r.data(Side::Client, b"GET".to_vec(), ms(0));
        r.data(Side::Server, b"HTTP".to_vec(), ms(10));
        r.data(Side::Server, b"body".to_vec(), ms(20));
        r.data(Side::Client, b"BYE".to_vec(), ms(120));
        r.end(Side::Client, Act::Fin, ms(130));
        r.end(Side::Server, Act::Fin, ms(140));
        r
    }

    const ASAP: Options = Options {
        pace: Pace::Asap,
        turn_timeout: Some(Duration::from_secs(1)),
    };

    #[test]
    fn each_chunk_waits_for_its_turn() {
        let t0 = Instant::now();
        let mut p = Player::new(&rec(), Side::Client, ASAP, t0);
        let mut buf = [0u8; 16];
        assert_eq!(p.read(&mut buf, t0), Out::Bytes(3));
        assert_eq!(&buf[..3], b"GET");
        assert_eq!(p.read(&mut buf, t0), Out::Wait);
        p.hear(4, t0);
        assert_eq!(p.read(&mut buf, t0), Out::Wait, "4 of 8 bytes");
        p.hear(4, t0);
        assert_eq!(p.read(&mut buf, t0), Out::Bytes(3));
        assert_eq!(p.read(&mut buf, t0), Out::Fin);
        assert!(p.finished());
        assert_eq!(p.timeouts, 0);
        assert_eq!(
            p.done_at(),
            Some(t0 + Duration::from_secs(1)),
            "the server's FIN is awaited"
        );
        p.hear_end(t0);
        assert_eq!(p.done_at(), None);
    }

    #[test]
    fn a_turn_that_does_not_come_times_out() {
        let t0 = Instant::now();
        let mut p = Player::new(&rec(), Side::Client, ASAP, t0);
        let mut buf = [0u8; 2];
        assert_eq!(
            p.read(&mut buf, t0),
            Out::Bytes(2),
            "a chunk goes in pieces"
        );
        assert_eq!(p.read(&mut buf, t0), Out::Bytes(1));
        p.hear(5, t0);
        let due = p.due().unwrap();
        assert_eq!(due, t0 + Duration::from_secs(1));
        assert_eq!(p.read(&mut buf, due - Duration::from_millis(1)), Out::Wait);
        assert_eq!(p.read(&mut buf, due), Out::Bytes(2));
        assert_eq!(p.timeouts, 1);
    }

    #[test]
    fn original_pace_keeps_the_gaps_and_the_server_plays_too() {
        let t0 = Instant::now();
        let opts = Options {
            pace: Pace::Original,
            turn_timeout: None,
        };
        let mut p = Player::new(&rec(), Side::Server, opts, t0);
        let mut buf = [0u8; 16];
        assert_eq!(p.due(), None, "the server waits for the request");
        p.hear(3, t0);
        assert_eq!(p.due(), Some(t0 + Duration::from_millis(10)));
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(p.read(&mut buf, t1), Out::Bytes(4));
        assert_eq!(p.due(), Some(t1 + Duration::from_millis(10)));
        assert_eq!(
            p.read(&mut buf, t1 + Duration::from_millis(10)),
            Out::Bytes(4)
        );
        assert_eq!(p.due(), None, "its FIN waits for the client's");
        p.hear(3, t1);
        p.hear_end(t1);
        assert!(p.due().is_some());
    }

    #[test]
    fn with_no_recorded_end_a_side_closes_once_the_other_has() {
        let t0 = Instant::now();
        let mut r = Recording::new("b");
        r.data(Side::Client, b"ask".to_vec(), None);
        r.data(Side::Server, b"answer".to_vec(), None);
        let mut p = Player::new(&r, Side::Client, ASAP, t0);
        let mut buf = [0u8; 8];
        assert_eq!(p.read(&mut buf, t0), Out::Bytes(3));
        assert_eq!(p.due(), None);
        p.hear(2, t0);
        p.hear_end(t0);
        assert_eq!(p.due(), Some(t0));
        assert_eq!(p.read(&mut buf, t0), Out::Fin);
        assert_eq!(p.due(), None);
        assert_eq!(p.done_at(), None);
    }
}

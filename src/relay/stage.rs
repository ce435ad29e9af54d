//! The stages a direction's bytes pass through between its source and its sink:
//!
//! ```text
//!   source ──> record ──> stages (faults) ──> sink
//!   (Stream)   (Tap)      (Stage, in order)   (Stream)
//! ```
//! The source and the sink are [`Stream`](super::stream::Stream)s. *Record* is the [`Tap`]
//! the reactor lends a connection while it drives it: the log queue (every chunk is copied
//! there as it is read, and reading waits while the queue is full), the story of pauses, and
//! the clock. Between record and sink come the [`Stage`]s a rule asks for (faults: delays,
//! shaping, cuts); each sees every chunk after it is recorded and decides when its bytes may
//! reach the sink. A direction with no stage pays nothing for them. Adding a stage means
//! implementing [`Stage`]; the direction and the reactor stay as they are: the direction asks
//! [`Stage::release`] before every write and reports the earliest time any stage waits for
//! ([`Pipeline::wake_at`](super::pipeline::Pipeline::wake_at)), which the connection table
//! turns into a timer.

use std::time::Instant;

use crate::types::{Dir, End, Hold, Side};

/// The record stage and the rest of the world, as a connection sees them while it is driven.
pub trait Tap {
    /// The time of this turn (injected: the simulation runs on a clock of its own).
    fn now(&self) -> Instant;
    /// False while the log cannot take more: no source may be read until it can.
    fn ready(&mut self) -> bool;
    /// False when nothing records the bytes, so they may be spliced from socket to socket
    /// without passing through user space.
    fn wants_data(&self) -> bool {
        true
    }
    /// Bytes read from the source of `dir`, before any stage sees them.
    fn data(&mut self, dir: Dir, bytes: &[u8]);
    /// A side ended.
    fn end(&mut self, side: Side, how: &End);
    /// `dir` stopped reading its source because of `why` (once per pause).
    fn hold(&mut self, _dir: Dir, _why: Hold) {}
    /// `dir` reads again after a [`hold`](Tap::hold).
    fn release(&mut self, _dir: Dir) {}
    /// A stage's story line for the connection's record (a fault that acted).
    fn note(&mut self, _dir: Dir, _stage: &'static str, _text: String) {}
}

/// What a stage allows of the bytes waiting for the sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Release {
    /// Up to this many bytes may be written now (all of them: the pending count).
    Now(usize),
    /// Nothing before this time.
    At(Instant),
    /// The direction ends here: the side named breaks as `End` says (a reset, a cut).
    Cut(Side, End),
}

/// A stage between record and sink (see the module documentation).
pub trait Stage: Send {
    /// The stage's name in the record (`latency`, `bandwidth`, ...).
    fn name(&self) -> &'static str;
    /// A chunk that was just read and recorded. A stage may rewrite the bytes (the record
    /// keeps what the source sent) and tell the record what it did.
    fn chunk(&mut self, _dir: Dir, _bytes: &mut [u8], _now: Instant, _tap: &mut dyn Tap) {}
    /// How many of the `pending` bytes of the current chunk may be written now.
    fn release(&mut self, pending: usize, _now: Instant) -> Release {
        Release::Now(pending)
    }
    /// The source ended and everything before its FIN was written: may the FIN go on now?
    fn finish(&mut self, _now: Instant) -> Release {
        Release::Now(0)
    }
    /// Bytes of the current chunk written to the sink.
    fn wrote(&mut self, _n: usize, _now: Instant) {}
    /// Asked before every read from the source, with the bytes waiting there if the source
    /// can tell (`None` if not): `Now(n)` reads at most `n` bytes, `At(t)` leaves them in the
    /// source (the kernel's buffer, so TCP flow control holds the sender back) until `t`. A
    /// stage that holds bytes this way costs no memory for them.
    fn admit(&mut self, _available: Option<usize>, _now: Instant) -> Release {
        Release::Now(usize::MAX)
    }
    /// Asked at the start of every turn of the direction, whatever its streams do: `Cut` ends
    /// the connection (a fault that acts on time alone); anything else is ignored.
    fn tick(&mut self, _now: Instant) -> Release {
        Release::Now(0)
    }
    /// A time the stage must be asked again at ([`tick`](Stage::tick)) even if nothing
    /// happens on the streams.
    fn deadline(&self) -> Option<Instant> {
        None
    }
    /// Called after the direction asked the stage anything: it tells the record what it did
    /// since (story lines through [`Tap::note`]).
    fn tell(&mut self, _dir: Dir, _tap: &mut dyn Tap) {}
}

/// The stages of one direction, in order. Their answers combine: the smallest allowance, the
/// latest wait, the first cut.
#[derive(Default)]
pub struct Stages {
    pub list: Vec<Box<dyn Stage>>,
    /// The earliest time a stage of the direction waits for, as the last pump left it.
    pub wake: Option<Instant>,
}

impl Stages {
    pub fn chunk(&mut self, dir: Dir, bytes: &mut [u8], now: Instant, tap: &mut dyn Tap) {
        for s in &mut self.list {
            s.chunk(dir, bytes, now, tap);
        }
    }

    pub fn release(&mut self, pending: usize, now: Instant) -> Release {
        self.combine(|s| s.release(pending, now), pending)
    }

    pub fn finish(&mut self, now: Instant) -> Release {
        self.combine(|s| s.finish(now), 0)
    }

    pub fn wrote(&mut self, n: usize, now: Instant) {
        for s in &mut self.list {
            s.wrote(n, now);
        }
    }

    pub fn admit(&mut self, available: Option<usize>, now: Instant) -> Release {
        self.combine(|s| s.admit(available, now), usize::MAX)
    }

    /// The first cut any stage asks for at this turn, if any.
    pub fn tick(&mut self, now: Instant) -> Option<(Side, End)> {
        self.list.iter_mut().find_map(|s| match s.tick(now) {
            Release::Cut(side, end) => Some((side, end)),
            _ => None,
        })
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.list.iter().filter_map(|s| s.deadline()).min()
    }

    pub fn tell(&mut self, dir: Dir, tap: &mut dyn Tap) {
        for s in &mut self.list {
            s.tell(dir, tap);
        }
    }

    fn combine(&mut self, mut ask: impl FnMut(&mut dyn Stage) -> Release, all: usize) -> Release {
        let mut out = Release::Now(all);
        for s in &mut self.list {
            out = match (out, ask(s.as_mut())) {
                (cut @ Release::Cut(..), _) | (_, cut @ Release::Cut(..)) => return cut,
                (Release::At(a), Release::At(b)) => Release::At(a.max(b)),
                (at @ Release::At(_), Release::Now(_)) | (Release::Now(_), at @ Release::At(_)) => {
                    at
                }
                (Release::Now(a), Release::Now(b)) => Release::Now(a.min(b)),
            };
        }
        out
    }
}

//! What every toxic implements: [`Behaviour`], the deterministic part of a fault. It sees the
//! bytes of its direction at their stream offsets and answers, like a relay stage, whether
//! bytes may be read, written, or the FIN passed on, with the time (`now`) and its random
//! numbers given to it, so each is unit-tested on an injected clock. [`build`] makes one from
//! its [`Kind`]; [`super::stage`] runs the toxics of a connection's direction.

use std::time::Instant;

use super::rng::Rng;
use super::spec::Kind;
use super::{corrupt, ends, latency, pace};

/// A toxic's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Up to this many bytes may go (0: wait, with no time to wake for).
    Now(usize),
    /// Nothing before this time.
    At(Instant),
    /// End the connection: close both sides (FIN).
    Close,
    /// End the connection: reset both sides.
    Reset,
}

/// What a toxic is given with each question.
pub struct Cx<'a> {
    pub now: Instant,
    pub rng: &'a mut Rng,
    /// Story lines for the record, in order (what the toxic did).
    pub notes: &'a mut Vec<String>,
}

impl Cx<'_> {
    pub fn note(&mut self, text: String) {
        self.notes.push(text);
    }
}

/// One toxic on one direction of one connection. Offsets are the direction's stream offsets
/// (bytes read from its source before this one). Every method has the answer of a toxic that
/// does nothing.
pub trait Behaviour: Send {
    /// Bytes just read, at offset `at`; the toxic may rewrite them (corrupt).
    fn chunk(&mut self, _bytes: &mut [u8], _at: u64, _cx: &mut Cx) {}
    /// May the next read take bytes, `available` of them waiting (if known), the next at `at`?
    fn admit(&mut self, _available: Option<usize>, _at: u64, _cx: &mut Cx) -> Gate {
        Gate::Now(usize::MAX)
    }
    /// How many of `pending` bytes, the next at offset `at`, may be written now.
    fn release(&mut self, pending: usize, _at: u64, _cx: &mut Cx) -> Gate {
        Gate::Now(pending)
    }
    /// `n` bytes were written.
    fn wrote(&mut self, _n: usize, _cx: &mut Cx) {}
    /// The source sent FIN and everything before it was written: may the FIN go?
    fn finish(&mut self, _cx: &mut Cx) -> Gate {
        Gate::Now(0)
    }
    /// Asked on every turn of the direction, whatever the streams do: a toxic that acts on
    /// time alone (timeout) ends the connection from here.
    fn tick(&mut self, _cx: &mut Cx) -> Gate {
        Gate::Now(0)
    }
    /// A time the toxic must be asked again at (by [`tick`](Behaviour::tick)) even if nothing
    /// happens on the streams.
    fn deadline(&self) -> Option<Instant> {
        None
    }
}

/// The behaviour of `kind`, starting now at stream offset `base` (what has gone before it
/// counts for nothing: `limit_data` counts from here).
pub fn build(kind: &Kind, base: u64, now: Instant) -> Box<dyn Behaviour> {
    match *kind {
        Kind::Latency { latency, jitter } => Box::new(latency::Latency::new(latency, jitter)),
        Kind::Bandwidth { rate } => Box::new(pace::Bandwidth::new(rate)),
        Kind::Slicer {
            average_size,
            size_variation,
            delay,
        } => Box::new(pace::Slicer::new(average_size, size_variation, delay)),
        Kind::SlowClose { delay } => Box::new(ends::SlowClose::new(delay)),
        Kind::Timeout { timeout } => Box::new(ends::Timeout::new(timeout, now)),
        Kind::ResetPeer { timeout } => Box::new(ends::ResetPeer::new(timeout)),
        Kind::LimitData { bytes } => Box::new(ends::LimitData::new(base, bytes)),
        Kind::Corrupt { probability } => Box::new(corrupt::Corrupt::new(probability)),
    }
}

/// `ms` milliseconds after `t` (saturating at `t` itself if the clock cannot go that far).
pub fn after_ms(t: Instant, ms: u64) -> Instant {
    t.checked_add(std::time::Duration::from_millis(ms))
        .unwrap_or(t)
}

/// `us` microseconds after `t`.
pub fn after_us(t: Instant, us: u64) -> Instant {
    t.checked_add(std::time::Duration::from_micros(us))
        .unwrap_or(t)
}

/// Milliseconds as the record says them: `300 ms`, `0.25 ms`.
pub fn ms_text(d: std::time::Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

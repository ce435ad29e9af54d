//! The relay stage of faults: one [`FaultStage`] per direction of a connection whose rule has
//! toxics for it. It keeps the rule's [`Live`] set and, at every question the direction asks,
//! first catches up with it (toxics added, updated or removed since), then asks each toxic in
//! turn and combines their answers: the smallest allowance, the latest wait, the first cut.
//!
//! Per toxic and connection: whether it applies (`toxicity`, drawn from the connection's
//! seeded generator), and its trigger. A toxic with a trigger lets every byte up to the end of
//! the match (or the first `after_bytes` bytes) go untouched and acts from the next byte on;
//! a match is looked for byte by byte (a DFA), so across chunk boundaries. Every start, act
//! and end is a story line through [`Tap::note`], under the toxic's type, its name first.

use std::sync::Arc;
use std::time::Instant;

use super::Live;
use super::rng::Rng;
use super::spec::{Toxic, Trigger};
use super::toxic::{Behaviour, Cx, Gate, build};
use crate::relay::{Release, Stage, Tap};
use crate::types::{Dir, End};
use regex_automata::util::primitives::StateID;

/// The stage's name among a direction's stages.
pub const NAME: &str = "faults";

/// One toxic on this direction of this connection.
struct Active {
    toxic: Toxic,
    /// Drawn once per connection from `toxicity`.
    on: bool,
    rng: Rng,
    /// The stream offset it was added at (its counts start there).
    base: u64,
    /// Where the toxic starts acting, once known.
    from: Option<u64>,
    /// A `match` trigger's state while it waits.
    state: Option<StateID>,
    behaviour: Option<Box<dyn Behaviour>>,
    notes: Vec<String>,
    /// Removed from the rule: kept only until its last lines are told.
    gone: bool,
}

impl Active {
    fn new(
        toxic: Toxic,
        seed: u64,
        conn: u64,
        dir: usize,
        read: u64,
        written: u64,
        now: Instant,
    ) -> Active {
        let mut rng = Rng::for_toxic(seed, conn, dir, &toxic.name);
        let on = rng.chance(toxic.toxicity);
        let mut a = Active {
            from: None,
            state: None,
            behaviour: None,
            base: read,
            on,
            rng,
            notes: Vec::new(),
            gone: false,
            toxic,
        };
        if !on {
            a.notes.push(format!(
                "{}: not on this connection (toxicity {})",
                a.toxic.summary(),
                a.toxic.toxicity
            ));
            return a;
        }
        match &a.toxic.trigger {
            // Bytes read but not written yet are in its reach too: a toxic added while a
            // chunk waits acts on what is left of it.
            Trigger::Always => {
                a.from = Some(written);
                a.notes
                    .push(format!("{}: on this connection", a.toxic.summary()));
                a.start(now);
            }
            Trigger::AfterBytes(n) => {
                a.from = Some(read.saturating_add(*n));
                a.notes
                    .push(format!("{}: waiting for its trigger", a.toxic.summary()));
            }
            Trigger::Match(p) => {
                a.state = Some(p.start());
                a.notes
                    .push(format!("{}: waiting for its trigger", a.toxic.summary()));
            }
        }
        a
    }

    fn start(&mut self, now: Instant) {
        if self.behaviour.is_none() {
            let at = self.from.unwrap_or(self.base);
            if !matches!(self.toxic.trigger, Trigger::Always) {
                self.notes.push(format!("triggered at byte {at}"));
            }
            self.behaviour = Some(build(&self.toxic.kind, at.max(self.base), now));
        }
    }

    /// Asks the behaviour, if started, with a context.
    fn ask<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut dyn Behaviour, &mut Cx) -> R,
    ) -> Option<R> {
        let b = self.behaviour.as_mut()?;
        let mut cx = Cx {
            now,
            rng: &mut self.rng,
            notes: &mut self.notes,
        };
        Some(f(b.as_mut(), &mut cx))
    }
}

/// The faults of one direction of one connection.
pub struct FaultStage {
    dir: Dir,
    conn: u64,
    seed: u64,
    live: Arc<Live>,
    generation: u64,
    active: Vec<Active>,
    /// Bytes read from the source so far, and written to the sink.
    read: u64,
    written: u64,
    /// When the stage was made (the time the first toxics start at).
    born: Instant,
    synced: bool,
}

impl FaultStage {
    pub fn new(dir: Dir, conn: u64, seed: u64, live: Arc<Live>, now: Instant) -> FaultStage {
        FaultStage {
            dir,
            conn,
            seed,
            generation: live.generation().wrapping_sub(1),
            live,
            active: Vec::new(),
            read: 0,
            written: 0,
            born: now,
            synced: false,
        }
    }

    /// Catches up with the rule's toxics.
    fn sync(&mut self, now: Instant) {
        let g = self.live.generation();
        if self.synced && g == self.generation {
            return;
        }
        let now = if self.synced { now } else { self.born };
        self.synced = true;
        self.generation = g;
        let d = self.dir.index();
        let wanted: Vec<Toxic> = self
            .live
            .get()
            .iter()
            .filter(|t| t.stream.covers(d))
            .cloned()
            .collect();
        let mut old = std::mem::take(&mut self.active);
        for t in wanted {
            match old.iter().position(|a| a.toxic.name == t.name) {
                Some(i) if old[i].toxic == t => self.active.push(old.swap_remove(i)),
                Some(i) => {
                    // Updated: a fresh start, its counts from where it began.
                    let was = old.swap_remove(i);
                    let mut a =
                        Active::new(t, self.seed, self.conn, d, self.read, self.written, now);
                    a.base = was.base;
                    a.notes.insert(0, format!("{}: updated", a.toxic.name));
                    self.active.push(a);
                }
                None => self.active.push(Active::new(
                    t,
                    self.seed,
                    self.conn,
                    d,
                    self.read,
                    self.written,
                    now,
                )),
            }
        }
        for gone in old {
            // Its notes not told yet go with it; say that it went.
            let mut a = gone;
            a.notes.push(format!("{}: removed", a.toxic.name));
            a.on = false;
            a.behaviour = None;
            a.gone = true;
            self.active.push(a);
        }
    }

    fn to_release(&self, gate: Gate, name: &str) -> Release {
        let dst = self.dir.source().other();
        match gate {
            Gate::Now(n) => Release::Now(n),
            Gate::At(t) => Release::At(t),
            Gate::Close => Release::Cut(
                dst,
                End::Fault {
                    name: name.to_string(),
                    reset: false,
                },
            ),
            Gate::Reset => Release::Cut(
                dst,
                End::Fault {
                    name: name.to_string(),
                    reset: true,
                },
            ),
        }
    }

    /// Asks every started toxic, combining as [`crate::relay::stage::Stages`] does; `wait` is
    /// the answer of a toxic not started yet, given where it starts.
    fn combine(
        &mut self,
        now: Instant,
        all: usize,
        at: u64,
        mut ask: impl FnMut(&mut dyn Behaviour, &mut Cx) -> Gate,
    ) -> Release {
        let mut out = Release::Now(all);
        for i in 0..self.active.len() {
            let a = &mut self.active[i];
            if !a.on {
                continue;
            }
            let gate = match (a.from, a.behaviour.is_some()) {
                (Some(from), _) if from > at => {
                    Gate::Now(usize::try_from(from - at).unwrap_or(usize::MAX).min(all))
                }
                (Some(_), false) => {
                    a.start(now);
                    a.ask(now, &mut ask).unwrap_or(Gate::Now(all))
                }
                (Some(_), true) => a.ask(now, &mut ask).unwrap_or(Gate::Now(all)),
                (None, _) => Gate::Now(all),
            };
            let name = self.active[i].toxic.name.clone();
            let r = self.to_release(gate, &name);
            out = match (out, r) {
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

impl Stage for FaultStage {
    fn name(&self) -> &'static str {
        NAME
    }

    fn chunk(&mut self, _dir: Dir, bytes: &mut [u8], now: Instant, _tap: &mut dyn Tap) {
        self.sync(now);
        let at = self.read;
        let len = bytes.len() as u64;
        for a in &mut self.active {
            if !a.on {
                continue;
            }
            if let (None, Some(state), Trigger::Match(p)) =
                (a.from, a.state.as_mut(), &a.toxic.trigger)
                && let Some(i) = p.feed(state, bytes)
            {
                a.from = Some(at.saturating_add(i as u64));
                a.state = None;
                a.notes.push(format!(
                    "matched {:?} ending at byte {}",
                    p.source,
                    at + i as u64
                ));
            }
            let Some(from) = a.from else { continue };
            if from > at.saturating_add(len) {
                continue;
            }
            a.start(now);
            let skip = usize::try_from(from.saturating_sub(at))
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let off = at.saturating_add(skip as u64);
            let part = &mut bytes[skip..];
            a.ask(now, |b, cx| b.chunk(part, off, cx));
        }
        self.read = at.saturating_add(len);
    }

    fn admit(&mut self, available: Option<usize>, now: Instant) -> Release {
        self.sync(now);
        let at = self.read;
        self.combine(now, usize::MAX, at, |b, cx| b.admit(available, at, cx))
    }

    fn release(&mut self, pending: usize, now: Instant) -> Release {
        self.sync(now);
        let at = self.written;
        self.combine(now, pending, at, |b, cx| b.release(pending, at, cx))
    }

    fn wrote(&mut self, n: usize, now: Instant) {
        let (start, end) = (self.written, self.written.saturating_add(n as u64));
        for a in &mut self.active {
            let Some(from) = a.from else { continue };
            let part = end.saturating_sub(start.max(from));
            if a.on && part > 0 {
                let part = usize::try_from(part).unwrap_or(usize::MAX);
                a.ask(now, |b, cx| b.wrote(part, cx));
            }
        }
        self.written = end;
    }

    fn finish(&mut self, now: Instant) -> Release {
        self.sync(now);
        let at = self.written;
        self.combine(now, 0, at, |b, cx| b.finish(cx))
    }

    fn tick(&mut self, now: Instant) -> Release {
        self.sync(now);
        let mut out = Release::Now(0);
        for i in 0..self.active.len() {
            let gate = match self.active[i].on {
                true => self.active[i].ask(now, |b, cx| b.tick(cx)),
                false => None,
            };
            if let Some(g @ (Gate::Close | Gate::Reset)) = gate {
                let name = self.active[i].toxic.name.clone();
                out = self.to_release(g, &name);
                break;
            }
        }
        out
    }

    fn deadline(&self) -> Option<Instant> {
        self.active
            .iter()
            .filter(|a| a.on)
            .filter_map(|a| a.behaviour.as_ref()?.deadline())
            .min()
    }

    fn tell(&mut self, dir: Dir, tap: &mut dyn Tap) {
        for a in &mut self.active {
            let kind = a.toxic.kind.type_name();
            for n in a.notes.drain(..) {
                let text = match n.starts_with(&a.toxic.name) {
                    true => n,
                    false => format!("{}: {n}", a.toxic.name),
                };
                tap.note(dir, kind, text);
            }
        }
        self.active.retain(|a| !a.gone);
    }
}

//! The deadlines of the connections: connect timeouts, idle timeouts, and the times the stages
//! of a direction wait for. One ordered set over all of them; each connection holds at most
//! one entry per kind, and its entries go when it goes, so a long timeout does not keep the
//! finished connections of the last hour in memory. The poll's timeout is the nearest entry.

use std::collections::BTreeSet;
use std::time::Instant;

/// What a deadline is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// The upstream connect must have completed.
    Connect,
    /// Check whether the connection has been idle for the idle timeout.
    Idle,
    /// A stage of the connection waits for this time.
    Wake,
}

const KINDS: usize = 3;

impl Kind {
    fn index(self) -> usize {
        self as usize
    }
}

/// A connection's entries, kept in the connection so that they can be found and removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slots([Option<Instant>; KINDS]);

impl Slots {
    pub fn get(&self, kind: Kind) -> Option<Instant> {
        self.0[kind.index()]
    }
}

/// Every deadline, ordered by time.
#[derive(Default, Debug)]
pub struct Timers {
    set: BTreeSet<(Instant, usize, Kind)>,
}

impl Timers {
    /// Sets (or moves, or with `None` removes) the deadline of `kind` for connection `key`.
    pub fn set(&mut self, slots: &mut Slots, key: usize, kind: Kind, at: Option<Instant>) {
        let slot = &mut slots.0[kind.index()];
        if *slot == at {
            return;
        }
        if let Some(old) = slot.take() {
            self.set.remove(&(old, key, kind));
        }
        if let Some(t) = at {
            self.set.insert((t, key, kind));
            *slot = Some(t);
        }
    }

    /// Removes every deadline of a connection.
    pub fn clear(&mut self, slots: &mut Slots, key: usize) {
        for kind in [Kind::Connect, Kind::Idle, Kind::Wake] {
            self.set(slots, key, kind, None);
        }
    }

    /// The nearest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.set.first().map(|(t, ..)| *t)
    }

    /// Takes the nearest deadline if it is due; the caller clears the connection's slot with
    /// [`Timers::fired`].
    pub fn pop_due(&mut self, now: Instant) -> Option<(usize, Kind)> {
        let &(t, key, kind) = self.set.first()?;
        if t > now {
            return None;
        }
        self.set.pop_first();
        Some((key, kind))
    }

    /// Forgets the slot of a deadline [`pop_due`](Timers::pop_due) returned.
    pub fn fired(slots: &mut Slots, kind: Kind) {
        slots.0[kind.index()] = None;
    }

    /// Deadlines held.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ordered_moved_and_removed_with_their_connection() {
        let t0 = Instant::now();
        let at = |ms| Some(t0 + Duration::from_millis(ms));
        let mut timers = Timers::default();
        let (mut a, mut b) = (Slots::default(), Slots::default());
        timers.set(&mut a, 1, Kind::Connect, at(30));
        timers.set(&mut a, 1, Kind::Idle, at(10));
        timers.set(&mut b, 2, Kind::Idle, at(20));
        assert_eq!(timers.len(), 3);
        assert_eq!(timers.next(), at(10));
        // Moving a deadline replaces it.
        timers.set(&mut a, 1, Kind::Idle, at(40));
        assert_eq!(timers.len(), 3);
        assert_eq!(timers.next(), at(20));
        assert_eq!(timers.pop_due(t0 + Duration::from_millis(5)), None);
        assert_eq!(
            timers.pop_due(t0 + Duration::from_millis(25)),
            Some((2, Kind::Idle))
        );
        Timers::fired(&mut b, Kind::Idle);
        assert_eq!(b.get(Kind::Idle), None);
        // A connection that goes takes its deadlines along.
        timers.clear(&mut a, 1);
        assert!(timers.is_empty());
        assert_eq!(a, Slots::default());
    }
}

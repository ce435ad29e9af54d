//! A recording as replay and mock see it, whatever file it came from: the ordered acts of
//! one conversation (each side's chunks of data and its end, FIN or reset) with the time each
//! happened, relative to the start, when the file says. The readers of [`super::source`]
//! make these; [`super::script`] plays one side of one.

use std::time::Duration;

use crate::types::Side;

/// What a side did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Act {
    /// Sent these bytes (one chunk as it was read).
    Data(Vec<u8>),
    /// Half-closed: FIN.
    Fin,
    /// Reset the connection (or failed).
    Reset,
}

/// One act of one side, in recorded order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub side: Side,
    pub act: Act,
    /// When, after the recording's first time; `None` when the file has no times (gotcpspy's
    /// dumps, binary files).
    pub at: Option<Duration>,
}

/// One recorded conversation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recording {
    /// Where it came from, for messages: a file name, with the connection if one was chosen.
    pub origin: String,
    pub steps: Vec<Step>,
}

impl Recording {
    pub fn new(origin: impl Into<String>) -> Recording {
        Recording {
            origin: origin.into(),
            steps: Vec::new(),
        }
    }

    /// Appends a chunk; an empty one is no act at all.
    pub fn data(&mut self, side: Side, bytes: Vec<u8>, at: Option<Duration>) {
        if !bytes.is_empty() {
            self.steps.push(Step {
                side,
                act: Act::Data(bytes),
                at,
            });
        }
    }

    /// Appends a side's end; only its first end counts (a side ends once).
    pub fn end(&mut self, side: Side, act: Act, at: Option<Duration>) {
        if !self.has_ended(side) {
            self.steps.push(Step { side, act, at });
        }
    }

    pub fn has_ended(&self, side: Side) -> bool {
        self.steps
            .iter()
            .any(|s| s.side == side && !matches!(s.act, Act::Data(_)))
    }

    /// Everything `side` sent, as one stream.
    pub fn stream(&self, side: Side) -> Vec<u8> {
        let mut out = Vec::new();
        for s in &self.steps {
            if let (true, Act::Data(b)) = (s.side == side, &s.act) {
                out.extend_from_slice(b);
            }
        }
        out
    }

    /// The first chunk `side` sent, if it sent any.
    pub fn first_chunk(&self, side: Side) -> Option<&[u8]> {
        self.steps
            .iter()
            .find_map(|s| match (&s.act, s.side == side) {
                (Act::Data(b), true) => Some(b.as_slice()),
                _ => None,
            })
    }

    /// The side that acted first, if anyone did.
    pub fn first_side(&self) -> Option<Side> {
        self.steps.first().map(|s| s.side)
    }

    /// How `side` ended, if the recording says.
    pub fn end_of(&self, side: Side) -> Option<&Act> {
        self.steps
            .iter()
            .find(|s| s.side == side && !matches!(s.act, Act::Data(_)))
            .map(|s| &s.act)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_and_ends() {
        let mut r = Recording::new("t");
        r.data(Side::Client, b"GET".to_vec(), None);
        r.data(Side::Server, b"OK".to_vec(), None);
        r.data(Side::Client, b"!".to_vec(), None);
        r.data(Side::Client, Vec::new(), None);
        r.end(Side::Server, Act::Fin, None);
        r.end(Side::Server, Act::Reset, None);
        assert_eq!(r.steps.len(), 4);
        assert_eq!(r.stream(Side::Client), b"GET!");
        assert_eq!(r.first_chunk(Side::Server), Some(&b"OK"[..]));
        assert_eq!(r.end_of(Side::Server), Some(&Act::Fin));
        assert_eq!(r.end_of(Side::Client), None);
        assert_eq!(r.first_side(), Some(Side::Client));
    }
}

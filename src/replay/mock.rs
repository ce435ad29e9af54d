//! The mock's two decisions, pure: which recording a new client gets ([`choose`]: the first
//! whose first client chunk matches what the client sent), and where a client departs from
//! the recorded client ([`Check`]: the offset, and the expected bytes against the received).

use super::recording::Recording;
use crate::types::Side;

/// `--on-mismatch`: what a client that says something else gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OnMismatch {
    /// Close the connection (FIN).
    #[default]
    Close,
    /// Reset it.
    Reset,
    /// Go on answering turn by turn, counting bytes as if they matched.
    Continue,
}

/// Which recording a client gets, so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Not decided: the client's bytes so far are the start of a candidate's first chunk.
    Wait,
    Chosen(usize),
    /// No recording matches.
    None,
}

/// Chooses among `recs` for a client that sent `got` (and has `ended` if so): in order, a
/// recording whose server speaks first is taken at once; one whose first client chunk the
/// client has sent whole is taken; one the client's bytes depart from is passed over; one
/// whose chunk the client has only begun makes it wait.
pub fn choose(recs: &[Recording], got: &[u8], ended: bool) -> Choice {
    for (i, r) in recs.iter().enumerate() {
        let first = match r.first_side() {
            Some(Side::Server) | None => return Choice::Chosen(i),
            Some(Side::Client) => r.first_chunk(Side::Client).unwrap_or(&[]),
        };
        if got.len() >= first.len() {
            if got.get(..first.len()) == Some(first) {
                return Choice::Chosen(i);
            }
        } else if first.starts_with(got) && !ended {
            return Choice::Wait;
        }
    }
    Choice::None
}

/// A departure from the recorded client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub offset: u64,
    pub expected: Vec<u8>,
    pub received: Vec<u8>,
}

/// Bytes shown on each side of a mismatch.
const SHOWN: usize = 16;

impl Mismatch {
    /// `offset 12: expected 47 45 54 "GET", received 50 55 54 "PUT"`.
    pub fn text(&self) -> String {
        format!(
            "offset {}: expected {}, received {}",
            self.offset,
            shown(&self.expected),
            shown(&self.received)
        )
    }
}

fn shown(b: &[u8]) -> String {
    if b.is_empty() {
        return "nothing (the recorded client had said all it said)".into();
    }
    let hex: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    let text: String = b
        .iter()
        .map(|&c| {
            if (0x20..0x7f).contains(&c) && c != b'"' {
                c as char
            } else {
                '.'
            }
        })
        .collect();
    format!("{} \"{text}\"", hex.join(" "))
}

/// Follows the client's bytes against the recorded client's stream.
pub struct Check {
    expected: Vec<u8>,
    at: u64,
}

impl Check {
    pub fn new(rec: &Recording) -> Check {
        Check {
            expected: rec.stream(Side::Client),
            at: 0,
        }
    }

    /// Takes the client's next bytes; the first departure in them, if any.
    pub fn feed(&mut self, got: &[u8]) -> Option<Mismatch> {
        let start = usize::try_from(self.at).unwrap_or(usize::MAX);
        self.at = self.at.saturating_add(got.len() as u64);
        let want = self.expected.get(start..).unwrap_or(&[]);
        let i = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .or_else(|| (got.len() > want.len()).then_some(want.len()))?;
        Some(Mismatch {
            offset: (start as u64).saturating_add(i as u64),
            expected: want.iter().skip(i).take(SHOWN).copied().collect(),
            received: got.iter().skip(i).take(SHOWN).copied().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(first: Side, bytes: &[u8]) -> Recording {
        let mut r = Recording::new("r");
        r.data(first, bytes.to_vec(), None);
        r.data(first.other(), b"x".to_vec(), None);
        r
    }

    #[test]
    fn the_first_matching_recording_is_chosen() {
        let recs = [rec(Side::Client, b"SET a"), rec(Side::Client, b"GET a")];
        assert_eq!(choose(&recs, b"", false), Choice::Wait);
        assert_eq!(choose(&recs, b"GE", false), Choice::Wait);
        assert_eq!(choose(&recs, b"GET a\r\n", false), Choice::Chosen(1));
        assert_eq!(choose(&recs, b"SET a", false), Choice::Chosen(0));
        assert_eq!(choose(&recs, b"DEL", false), Choice::None);
        assert_eq!(choose(&recs, b"GE", true), Choice::None);
        let greet = [rec(Side::Server, b"+OK POP3"), rec(Side::Client, b"x")];
        assert_eq!(choose(&greet, b"", false), Choice::Chosen(0));
    }

    #[test]
    fn a_departure_says_where_and_what() {
        let mut c = Check::new(&rec(Side::Client, b"GET /a HTTP/1.1"));
        assert_eq!(c.feed(b"GET /"), None);
        let m = c.feed(b"b HTTP").unwrap();
        assert_eq!(m.offset, 5);
        assert_eq!(m.expected, b"a HTTP/1.1");
        assert_eq!(m.received, b"b HTTP");
        assert_eq!(
            m.text(),
            "offset 5: expected 61 20 48 54 54 50 2f 31 2e 31 \"a HTTP/1.1\", received 62 20 48 54 54 50 \"b HTTP\""
        );
        let mut c = Check::new(&rec(Side::Client, b"ab"));
        let m = c.feed(b"abc").unwrap();
        assert_eq!((m.offset, m.expected.len()), (2, 0));
    }
}

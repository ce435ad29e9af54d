//! What the reactor tells the logging thread. Times are taken on the reactor when things
//! happen; everything is formatted on the logging thread.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::sys::TcpStats;
use crate::types::{Dir, End, Hold, Side};

pub use crate::types::{ConnId, Holds};

#[derive(Debug)]
pub enum Event {
    /// A client was accepted and the upstream connect started.
    Open {
        id: ConnId,
        rule: usize,
        client: SocketAddr,
        target: SocketAddr,
        /// The proxy's address on the upstream connection (its port names files).
        local: SocketAddr,
        at: SystemTime,
        /// The destination as a proxy listener's client named it (`None`: the rule's).
        target_name: Option<String>,
    },
    /// The upstream connect completed.
    Connected { id: ConnId, at: SystemTime },
    /// Bytes read from the source of `dir`.
    Data {
        id: ConnId,
        dir: Dir,
        at: SystemTime,
        bytes: Vec<u8>,
    },
    /// A direction stopped reading its source for a while (reported once it reads again,
    /// if the pause was long enough to matter).
    Held {
        id: ConnId,
        dir: Dir,
        why: Hold,
        since: SystemTime,
        lasted: Duration,
    },
    /// One side ended.
    End {
        id: ConnId,
        side: Side,
        how: End,
        at: SystemTime,
    },
    /// The connection is gone; no event for `id` follows.
    Close {
        id: ConnId,
        at: SystemTime,
        /// Bytes delivered to the destination, indexed by [`Dir`].
        bytes: [u64; 2],
        /// Bytes read and logged but never delivered (the destination broke, or tcpspy
        /// stopped first), indexed by [`Dir`].
        undelivered: [u64; 2],
        /// How each side ended, in order.
        ends: Vec<(Side, End)>,
        /// Pauses of reading per direction.
        held: Box<[Holds; 2]>,
        /// The kernel's view of each socket at the end, indexed by [`Side`].
        tcp: Box<[Option<TcpStats>; 2]>,
    },
    /// A stage of a direction acted (a fault): a story line for the record.
    Note {
        id: ConnId,
        dir: Dir,
        stage: &'static str,
        text: String,
        at: SystemTime,
    },
    /// A rule was added or changed while running (the control API): its connections' records
    /// name it from now on.
    Rule {
        index: usize,
        rule: Box<crate::config::Rule>,
    },
    /// A TLS handshake leg done, or the interception failing (`--tls`).
    Tls {
        id: ConnId,
        at: SystemTime,
        what: Box<crate::tls::Event>,
    },
    /// TLS secrets in the NSS key log format (`--keylog`, and the capture's decryption
    /// secrets).
    Keys(String),
    /// TLS records of an intercepted connection's client leg as they went over the wire, for
    /// the capture (read from the client: `ClientToServer`).
    Wire {
        id: ConnId,
        dir: Dir,
        at: SystemTime,
        bytes: Vec<u8>,
    },
    /// A line for stderr, in order with the connection lines (the SIGUSR1 summary).
    Line(String),
    /// Write everything, close every file and stop.
    Stop,
}

impl Event {
    /// What the event counts against the queue's bound: the event itself and every heap byte
    /// it owns (a chunk's buffer, an error's text, a close's list of ends), at their capacity,
    /// since that is what the memory holds while the event waits.
    pub fn cost(&self) -> usize {
        std::mem::size_of::<Event>().saturating_add(self.heap_bytes())
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Event::Data { bytes, .. } => bytes.capacity(),
            Event::End { how, .. } => end_heap(how),
            Event::Close { ends, .. } => ends.iter().fold(
                ends.capacity()
                    .saturating_mul(std::mem::size_of::<(Side, End)>())
                    .saturating_add(CLOSE_BOXES),
                |n, (_, how)| n.saturating_add(end_heap(how)),
            ),
            Event::Line(line) | Event::Keys(line) => line.capacity(),
            Event::Wire { bytes, .. } => bytes.capacity(),
            Event::Tls { what, .. } => {
                std::mem::size_of::<crate::tls::Event>().saturating_add(match what.as_ref() {
                    crate::tls::Event::Leg(_, l) => {
                        l.version.len()
                            + l.cipher.len()
                            + l.subject.len()
                            + l.issuer.len()
                            + l.sni.as_ref().map_or(0, String::len)
                            + l.alpn.as_ref().map_or(0, String::len)
                    }
                    crate::tls::Event::Failed(s) | crate::tls::Event::NotTls(s) => s.capacity(),
                })
            }
            Event::Note { text, .. } => text.capacity(),
            Event::Rule { rule, .. } => {
                std::mem::size_of::<crate::config::Rule>()
                    + rule.target_name.capacity()
                    + rule.spec.capacity()
            }
            Event::Open { target_name, .. } => target_name.as_ref().map_or(0, String::capacity),
            Event::Connected { .. } | Event::Held { .. } | Event::Stop => 0,
        }
    }
}

/// What a Close event's boxed figures take: boxed, since a Close is one event per connection
/// while every event in the queue, a data chunk of a few bytes too, is as big as the biggest.
const CLOSE_BOXES: usize =
    std::mem::size_of::<[Holds; 2]>() + std::mem::size_of::<[Option<TcpStats>; 2]>();

fn end_heap(how: &End) -> usize {
    match how {
        End::Error(s) | End::ConnectFailed(s) | End::Tls(s) | End::Fault { name: s, .. } => {
            s.capacity()
        }
        End::Fin
        | End::Reset
        | End::Aborted
        | End::ConnectTimeout
        | End::Shutdown
        | End::IdleTimeout => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_counts_what_the_event_owns() {
        let base = std::mem::size_of::<Event>();
        assert!(
            base > 64,
            "an event is bigger than the old flat charge: {base}"
        );
        let mut bytes = Vec::with_capacity(4096);
        bytes.extend_from_slice(b"abc");
        let data = Event::Data {
            id: 1,
            dir: Dir::ClientToServer,
            at: SystemTime::UNIX_EPOCH,
            bytes,
        };
        assert_eq!(
            data.cost(),
            base + 4096,
            "the buffer's capacity, not its length"
        );
        let why = String::from("Connection reset by peer (os error 104)");
        let cap = why.capacity();
        let end = Event::End {
            id: 1,
            side: Side::Server,
            how: End::Error(why),
            at: SystemTime::UNIX_EPOCH,
        };
        assert_eq!(end.cost(), base + cap);
        let mut ends = Vec::with_capacity(4);
        ends.push((Side::Client, End::Fin));
        ends.push((Side::Server, End::ConnectFailed("x".repeat(100))));
        let close = Event::Close {
            id: 1,
            at: SystemTime::UNIX_EPOCH,
            bytes: [0; 2],
            undelivered: [0; 2],
            ends,
            held: Default::default(),
            tcp: Box::new([None, None]),
        };
        assert_eq!(
            close.cost(),
            base + 4 * std::mem::size_of::<(Side, End)>() + 100 + CLOSE_BOXES
        );
        let line = String::with_capacity(300);
        assert_eq!(Event::Line(line).cost(), base + 300);
        assert_eq!(Event::Stop.cost(), base);
    }
}

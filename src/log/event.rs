//! What the reactor tells the logging thread. Times are taken on the reactor when things
//! happen; everything is formatted on the logging thread.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::sys::TcpStats;
use crate::types::{Dir, End, Hold, Side};

use super::queue::EVENT_OVERHEAD;

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
        held: [Holds; 2],
        /// The kernel's view of each socket at the end, indexed by [`Side`].
        tcp: [Option<TcpStats>; 2],
    },
    /// A stage of a direction acted (a fault): a story line for the record.
    Note {
        id: ConnId,
        dir: Dir,
        stage: &'static str,
        text: String,
        at: SystemTime,
    },
    /// A line for stderr, in order with the connection lines (the SIGUSR1 summary).
    Line(String),
    /// Write everything, close every file and stop.
    Stop,
}

impl Event {
    /// What the event counts against the queue's bound.
    pub fn cost(&self) -> usize {
        match self {
            Event::Data { bytes, .. } => bytes.len() + EVENT_OVERHEAD,
            _ => EVENT_OVERHEAD,
        }
    }
}

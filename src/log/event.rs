//! What the reactor tells the logging thread. Times are taken on the reactor when things
//! happen; everything is formatted on the logging thread.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::conn::{Dir, End, Hold, Side};
use crate::sys::TcpStats;

use super::queue::EVENT_OVERHEAD;

/// A connection's number: 1, 2, ... in accept order across the run.
pub type ConnId = u64;

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
    /// A line for stderr, in order with the connection lines (the SIGUSR1 summary).
    Line(String),
    /// Write everything, close every file and stop.
    Stop,
}

/// How often and how long a direction's reading was paused, per cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Holds {
    /// Waiting for the destination to drain.
    pub peer: (u32, Duration),
    /// Waiting for the log queue.
    pub log: (u32, Duration),
}

impl Holds {
    pub fn add(&mut self, why: Hold, lasted: Duration) {
        let slot = match why {
            Hold::Peer => &mut self.peer,
            Hold::Log => &mut self.log,
        };
        slot.0 += 1;
        slot.1 += lasted;
    }
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

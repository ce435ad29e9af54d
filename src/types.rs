//! The words every part of tcpspy shares: the two sides of a connection, the two directions of
//! its stream, how a side ended, why reading paused, and a connection's number. A leaf: it
//! depends on nothing else in the crate.

use std::fmt;
use std::io;
use std::time::Duration;

/// A connection's number: 1, 2, ... in accept order across the run.
pub type ConnId = u64;

/// One end of a relayed connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Client = 0,
    Server = 1,
}

impl Side {
    pub const BOTH: [Side; 2] = [Side::Client, Side::Server];

    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// A direction of the relayed stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Client to server: gotcpspy's "outgoing" data.
    ClientToServer = 0,
    /// Server to client: "incoming".
    ServerToClient = 1,
}

impl Dir {
    pub const BOTH: [Dir; 2] = [Dir::ClientToServer, Dir::ServerToClient];

    /// The side the bytes come from.
    pub fn source(self) -> Side {
        match self {
            Dir::ClientToServer => Side::Client,
            Dir::ServerToClient => Side::Server,
        }
    }

    /// The direction whose bytes come from `side`.
    pub fn from(side: Side) -> Dir {
        match side {
            Side::Client => Dir::ClientToServer,
            Side::Server => Dir::ServerToClient,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// How one side of a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The peer sent FIN.
    Fin,
    /// The peer reset the connection, or had closed it while we still wrote to it.
    Reset,
    /// Another socket error.
    Error(String),
    /// tcpspy reset this side because the other one broke.
    Aborted,
    /// The connection to the target could not be made.
    ConnectFailed(String),
    /// The target did not answer within the connect timeout.
    ConnectTimeout,
    /// tcpspy was stopped.
    Shutdown,
    /// No byte went either way for the idle timeout.
    IdleTimeout,
    /// A fault (`--fault`, the control API) ended the connection: `name` is the toxic's, and
    /// `reset` says whether tcpspy reset both sides (`reset_peer`) or closed them (`timeout`,
    /// `limit_data`).
    Fault { name: String, reset: bool },
    /// The TLS interception (`--tls`) failed on this connection, as the story line says;
    /// tcpspy closed both sides (after an alert to the client where it could send one).
    Tls(String),
}

impl End {
    /// Classifies a socket error: reset, aborted and broken pipe all mean the peer is gone, and
    /// so does "not connected", which is what `shutdown(2)` says once a RST has closed the
    /// connection.
    pub fn from_error(e: &io::Error) -> End {
        match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected => End::Reset,
            _ => End::Error(e.to_string()),
        }
    }

    /// True for the ends that are not a clean FIN and make tcpspy reset the other side.
    pub fn is_failure(&self) -> bool {
        !matches!(
            self,
            End::Fin | End::Shutdown | End::IdleTimeout | End::Fault { reset: false, .. }
        )
    }

    /// True for the ends tcpspy decided on for both sides at once (a stop, the idle timeout, a
    /// fault): the other side gets the same end, not [`End::Aborted`].
    pub fn is_for_both(&self) -> bool {
        matches!(
            self,
            End::Shutdown | End::IdleTimeout | End::Fault { .. } | End::Tls(_)
        )
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Fin => f.write_str("EOF"),
            End::Reset => f.write_str("reset"),
            End::Error(e) => write!(f, "error ({e})"),
            End::Aborted => f.write_str("reset by tcpspy"),
            End::ConnectFailed(e) => write!(f, "connect failed ({e})"),
            End::ConnectTimeout => f.write_str("connect timed out"),
            End::Shutdown => f.write_str("closed by tcpspy on shutdown"),
            End::IdleTimeout => f.write_str("idle timeout, closed by tcpspy"),
            End::Fault { name, reset: true } => write!(f, "reset by fault {name}"),
            End::Fault { name, reset: false } => write!(f, "closed by fault {name}"),
            End::Tls(why) => write!(f, "closed by tcpspy: {why}"),
        }
    }
}

/// Why a direction stopped reading its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The destination is not draining: bytes are waiting for it.
    Peer,
    /// The log queue is full.
    Log,
    /// Every relay buffer is in use (the memory bound, `--relay-memory`).
    Memory,
}

/// How often and how long a direction's reading was paused, per cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Holds {
    /// Waiting for the destination to drain.
    pub peer: (u32, Duration),
    /// Waiting for the log queue.
    pub log: (u32, Duration),
    /// Waiting for a relay buffer.
    pub memory: (u32, Duration),
}

impl Holds {
    pub fn add(&mut self, why: Hold, lasted: Duration) {
        let slot = match why {
            Hold::Peer => &mut self.peer,
            Hold::Log => &mut self.log,
            Hold::Memory => &mut self.memory,
        };
        slot.0 = slot.0.saturating_add(1);
        slot.1 = slot.1.saturating_add(lasted);
    }
}

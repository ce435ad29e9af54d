//! The streams the reactor relays between: a [`Transport`] is what a connection's side is
//! in the reactor's table: a plain TCP socket, or a scripted peer that plays a recording
//! ([`ScriptPeer`], issue 14: no socket, so nothing to register); a TLS session over a socket
//! (issue 11) is a further variant. Each implements the
//! relay's [`Stream`] and [`Socket`] by delegating, and hands the reactor the TCP socket to
//! register with the poll, if it has one.

use std::io;
use std::net::SocketAddr;

use mio::net::TcpStream;

use crate::relay::{Due, Socket, Stream};
use crate::replay::peer::ScriptPeer;
use crate::sys::{Pipe, TcpStats};

/// One side of a connection as the reactor holds it.
pub enum Transport {
    Tcp(TcpStream),
    /// A peer played from a recording (`tcpspy replay`, `tcpspy mock`): no socket.
    Script(Box<ScriptPeer>),
}

impl Transport {
    /// The socket to register with the poll, if the transport has one.
    pub fn tcp_mut(&mut self) -> Option<&mut TcpStream> {
        match self {
            Transport::Tcp(s) => Some(s),
            Transport::Script(_) => None,
        }
    }

    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Transport::Tcp(s) => Some(s),
            Transport::Script(_) => None,
        }
    }
}

impl Stream for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.read(buf),
            Transport::Script(s) => s.read(buf),
        }
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => Stream::write(s, buf),
            Transport::Script(s) => Stream::write(s.as_mut(), buf),
        }
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.shutdown_write(),
            Transport::Script(s) => s.shutdown_write(),
        }
    }
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => Stream::peek(s, buf),
            Transport::Script(s) => Stream::peek(s.as_mut(), buf),
        }
    }
    fn discard(&mut self, n: usize) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.discard(n),
            Transport::Script(s) => s.discard(n),
        }
    }
    fn can_peek(&self) -> bool {
        match self {
            Transport::Tcp(s) => s.can_peek(),
            Transport::Script(s) => s.can_peek(),
        }
    }
    fn available(&self) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.available(),
            Transport::Script(s) => s.available(),
        }
    }
    fn can_splice(&self) -> bool {
        match self {
            Transport::Tcp(s) => s.can_splice(),
            Transport::Script(s) => s.can_splice(),
        }
    }
    fn short_read_drains(&self) -> bool {
        match self {
            Transport::Tcp(s) => s.short_read_drains(),
            Transport::Script(s) => s.short_read_drains(),
        }
    }
    fn splice_in(&mut self, pipe: &Pipe, max: usize) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.splice_in(pipe, max),
            Transport::Script(s) => s.splice_in(pipe, max),
        }
    }
    fn splice_out(&mut self, pipe: &Pipe, max: usize) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.splice_out(pipe, max),
            Transport::Script(s) => s.splice_out(pipe, max),
        }
    }
}

impl Socket for Transport {
    fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Transport::Tcp(s) => Socket::take_error(s),
            Transport::Script(s) => Socket::take_error(s.as_ref()),
        }
    }
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Transport::Tcp(s) => Socket::peer_addr(s),
            Transport::Script(s) => Socket::peer_addr(s.as_ref()),
        }
    }
    fn tcp_stats(&self) -> Option<TcpStats> {
        match self {
            Transport::Tcp(s) => s.tcp_stats(),
            Transport::Script(s) => s.tcp_stats(),
        }
    }
    fn reset_on_close(&self) {
        match self {
            Transport::Tcp(s) => s.reset_on_close(),
            Transport::Script(s) => s.reset_on_close(),
        }
    }
    fn due(&mut self, now: std::time::Instant) -> Option<Due> {
        match self {
            Transport::Tcp(_) => None,
            Transport::Script(s) => s.due(now),
        }
    }
    fn ended(&mut self, ends: &[(crate::types::Side, crate::types::End)]) {
        if let Transport::Script(s) = self {
            s.ended(ends);
        }
    }
}

//! The streams the reactor relays between: a [`Transport`] is what a connection's side is
//! in the reactor's table: a plain TCP socket, a TLS session over one (`--tls`, made from a
//! TCP socket once both handshakes are done), or a scripted peer that plays a recording
//! ([`ScriptPeer`]: `tcpspy replay`, `tcpspy mock`; no socket, so nothing to register). Each
//! implements the relay's [`Stream`] and [`Socket`] by delegating, and hands the reactor the
//! TCP socket to register with the poll, if it has one.

use std::io;
use std::net::SocketAddr;

use mio::net::TcpStream;

use crate::relay::{Due, Socket, Stream};
use crate::replay::peer::ScriptPeer;
use crate::sys::{Pipe, TcpStats};
use crate::tls::TlsStream;

/// One side of a connection as the reactor holds it.
pub enum Transport {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// A peer played from a recording (`tcpspy replay`, `tcpspy mock`): no socket.
    Script(Box<ScriptPeer>),
    /// Only while a socket changes from one variant to another.
    Gone,
}

fn gone<T>() -> io::Result<T> {
    Err(io::ErrorKind::NotConnected.into())
}

impl Transport {
    /// The socket to register with the poll.
    pub fn tcp_mut(&mut self) -> Option<&mut TcpStream> {
        match self {
            Transport::Tcp(s) => Some(s),
            Transport::Tls(t) => Some(&mut t.inner),
            Transport::Script(_) | Transport::Gone => None,
        }
    }

    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Transport::Tcp(s) => Some(s),
            Transport::Tls(t) => Some(&t.inner),
            Transport::Script(_) | Transport::Gone => None,
        }
    }

    /// The stream that does the work: the TLS session, or the socket.
    fn stream(&mut self) -> Option<&mut dyn Stream> {
        match self {
            Transport::Tcp(s) => Some(s),
            Transport::Tls(t) => Some(t.as_mut()),
            Transport::Script(s) => Some(s.as_mut()),
            Transport::Gone => None,
        }
    }

    fn socket(&self) -> Option<&dyn Socket> {
        match self {
            Transport::Tcp(s) => Some(s),
            Transport::Tls(t) => Some(t.as_ref()),
            Transport::Script(s) => Some(s.as_ref()),
            Transport::Gone => None,
        }
    }
}

impl Stream for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            // The hot path: no indirection for a plain socket.
            Transport::Tcp(s) => s.read(buf),
            t => t.stream().map_or_else(gone, |s| s.read(buf)),
        }
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => Stream::write(s, buf),
            t => t.stream().map_or_else(gone, |s| s.write(buf)),
        }
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream().map_or_else(gone, |s| s.shutdown_write())
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.stream().map_or_else(gone, |s| s.write_vectored(bufs))
    }
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream().map_or_else(gone, |s| s.peek(buf))
    }
    fn discard(&mut self, n: usize) -> io::Result<usize> {
        self.stream().map_or_else(gone, |s| s.discard(n))
    }
    fn can_peek(&self) -> bool {
        matches!(self, Transport::Tcp(_))
    }
    fn available(&self) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.available(),
            _ => Err(io::ErrorKind::Unsupported.into()),
        }
    }
    fn can_splice(&self) -> bool {
        matches!(self, Transport::Tcp(_))
    }
    fn short_read_drains(&self) -> bool {
        matches!(self, Transport::Tcp(_))
    }
    fn splice_in(&mut self, pipe: &Pipe, max: usize) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.splice_in(pipe, max),
            _ => Err(io::ErrorKind::Unsupported.into()),
        }
    }
    fn splice_out(&mut self, pipe: &Pipe, max: usize) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.splice_out(pipe, max),
            _ => Err(io::ErrorKind::Unsupported.into()),
        }
    }
    fn flush_out(&mut self) -> io::Result<bool> {
        match self {
            Transport::Tcp(_) => Ok(true),
            t => t.stream().map_or(Ok(true), |s| s.flush_out()),
        }
    }
}

impl Socket for Transport {
    fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.socket().map_or_else(gone, |s| s.take_error())
    }
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket().map_or_else(gone, |s| s.peer_addr())
    }
    fn tcp_stats(&self) -> Option<TcpStats> {
        self.socket().and_then(|s| s.tcp_stats())
    }
    fn reset_on_close(&self) {
        if let Some(s) = self.socket() {
            s.reset_on_close()
        }
    }
    fn start_tls(&mut self, session: rustls::Connection, wire: bool) -> bool {
        match std::mem::replace(self, Transport::Gone) {
            Transport::Tcp(tcp) => {
                let mut t = TlsStream::new(tcp, session);
                if wire {
                    t.tap_wire();
                }
                *self = Transport::Tls(Box::new(t));
                true
            }
            other => {
                *self = other;
                false
            }
        }
    }
    fn take_wire(&mut self) -> Option<[Vec<u8>; 2]> {
        match self {
            Transport::Tls(t) => t.take_wire(),
            _ => None,
        }
    }
    fn due(&mut self, now: std::time::Instant) -> Option<Due> {
        match self {
            Transport::Script(s) => s.due(now),
            _ => None,
        }
    }
    fn ended(&mut self, ends: &[(crate::types::Side, crate::types::End)]) {
        if let Transport::Script(s) = self {
            s.ended(ends);
        }
    }
}

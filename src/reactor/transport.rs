//! The streams the reactor relays between: a [`Transport`] is what a connection's side is
//! in the reactor's table. Today a plain TCP socket; a TLS session over one (issue 11) and a
//! scripted peer that plays a recording (issue 14) are further variants. Each implements the
//! relay's [`Stream`] and [`Socket`] by delegating, and hands the reactor the TCP socket to
//! register with the poll, if it has one.

use std::io;
use std::net::SocketAddr;

use mio::net::TcpStream;

use crate::relay::{Socket, Stream};
use crate::sys::{Pipe, TcpStats};

/// One side of a connection as the reactor holds it.
pub enum Transport {
    Tcp(TcpStream),
}

impl Transport {
    /// The socket to register with the poll (every transport rides on one today).
    pub fn tcp_mut(&mut self) -> Option<&mut TcpStream> {
        match self {
            Transport::Tcp(s) => Some(s),
        }
    }

    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Transport::Tcp(s) => Some(s),
        }
    }
}

impl Stream for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.read(buf),
        }
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => Stream::write(s, buf),
        }
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.shutdown_write(),
        }
    }
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => Stream::peek(s, buf),
        }
    }
    fn discard(&mut self, n: usize) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.discard(n),
        }
    }
    fn can_peek(&self) -> bool {
        match self {
            Transport::Tcp(s) => s.can_peek(),
        }
    }
    fn available(&self) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.available(),
        }
    }
    fn can_splice(&self) -> bool {
        match self {
            Transport::Tcp(s) => s.can_splice(),
        }
    }
    fn short_read_drains(&self) -> bool {
        match self {
            Transport::Tcp(s) => s.short_read_drains(),
        }
    }
    fn splice_in(&mut self, pipe: &Pipe, max: usize) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.splice_in(pipe, max),
        }
    }
    fn splice_out(&mut self, pipe: &Pipe, max: usize) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.splice_out(pipe, max),
        }
    }
}

impl Socket for Transport {
    fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Transport::Tcp(s) => Socket::take_error(s),
        }
    }
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Transport::Tcp(s) => Socket::peer_addr(s),
        }
    }
    fn tcp_stats(&self) -> Option<TcpStats> {
        match self {
            Transport::Tcp(s) => s.tcp_stats(),
        }
    }
    fn reset_on_close(&self) {
        match self {
            Transport::Tcp(s) => s.reset_on_close(),
        }
    }
}

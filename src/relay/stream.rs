//! What a connection needs of the things it relays between: [`Stream`], the source and sink
//! of a direction (a TCP socket today; a TLS session or a scripted peer implement it too), and
//! [`Socket`], what the connection table asks of a connected endpoint beyond its bytes (its
//! connect result, its kernel figures, a reset on close). The simulation implements both with
//! in-memory fakes; [`mio::net::TcpStream`] implements them with system calls.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use crate::sys::{self, Pipe, TcpStats};
use crate::types::End;

/// What a peer without a socket of its own (a scripted one: `tcpspy replay`'s client,
/// `tcpspy mock`'s server) has to do. The poll raises no event for it, so the table asks after
/// each drive of its connection ([`Socket::due`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Due {
    /// Nothing until the other side does something.
    Idle,
    /// Its next act is due then (now or past: drive the connection again at once).
    At(Instant),
    /// End the connection: this side ends so (the other gets the same end, or a reset).
    End(End),
}

/// A byte stream a direction reads from (its source) or writes to (its sink).
pub trait Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// Writes from several buffers in one call (writev): a TLS session hands over its records
    /// so, one system call for many. The default writes the first non-empty one.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(b) => self.write(b),
            None => Ok(0),
        }
    }

    /// Copies up to `buf.len()` bytes that [`read`](Stream::read) would return, leaving them
    /// in the stream: a direction without a relay buffer writes them on first and only then
    /// [`discard`](Stream::discard)s what the sink took, so bytes the sink refuses stay in the
    /// kernel instead of in our memory. `Unsupported` by streams that cannot.
    fn peek(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Drops `n` bytes that [`peek`](Stream::peek) has shown.
    fn discard(&mut self, _n: usize) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
    /// True if [`peek`](Stream::peek) and [`discard`](Stream::discard) work.
    fn can_peek(&self) -> bool {
        false
    }
    /// Bytes waiting to be read (FIONREAD), for a stage that holds bytes in the kernel
    /// ([`Stage::admit`](super::stage::Stage::admit)); `Unsupported` by streams whose
    /// readable bytes are not the kernel's (a TLS session).
    fn available(&self) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// True if the bytes can go through a pipe with splice(2) ([`splice_in`], [`splice_out`]):
    /// a kernel socket whose bytes are the wire's, not a TLS session's.
    ///
    /// [`splice_in`]: Stream::splice_in
    /// [`splice_out`]: Stream::splice_out
    fn can_splice(&self) -> bool {
        false
    }
    /// True when a read that returns less than was asked for has emptied the stream for now
    /// (a kernel socket: the next read would say `WouldBlock`, and new bytes bring a new
    /// event). The direction then skips that read: one `recv` less per exchange. Not so for a
    /// stream that holds bytes of its own (a TLS session's plaintext), hence the default.
    fn short_read_drains(&self) -> bool {
        false
    }
    /// Moves up to `max` bytes from this stream into `pipe`.
    fn splice_in(&mut self, _pipe: &Pipe, _max: usize) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Moves up to `max` bytes from `pipe` to this stream.
    fn splice_out(&mut self, _pipe: &Pipe, _max: usize) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Sends what the stream holds of earlier writes (a TLS session's records that the
    /// socket could not take): `Ok(false)` while the socket is still full. A kernel socket
    /// holds nothing of ours.
    fn flush_out(&mut self) -> io::Result<bool> {
        Ok(true)
    }
}

/// What the connection table needs of an endpoint besides its bytes.
pub trait Socket: Stream {
    /// The pending socket error (SO_ERROR), if any: how a failed connect shows.
    fn take_error(&self) -> io::Result<Option<io::Error>>;
    /// The peer's address; `NotConnected` while a connect is still in progress.
    fn peer_addr(&self) -> io::Result<SocketAddr>;
    /// The kernel's figures for the end of the hex dump.
    fn tcp_stats(&self) -> Option<TcpStats> {
        None
    }
    /// Makes the coming close send RST instead of FIN.
    fn reset_on_close(&self) {}
    /// Goes on as a TLS session over this endpoint (`--tls`); false if it cannot (the
    /// simulation's sockets). `wire`: keep the records for the capture.
    fn start_tls(&mut self, _session: rustls::Connection, _wire: bool) -> bool {
        false
    }
    /// The TLS records read (`[0]`) and written (`[1]`) since the last call, if kept.
    fn take_wire(&mut self) -> Option<[Vec<u8>; 2]> {
        None
    }
    /// For a peer without a socket: what it has to do (see [`Due`]). `None` for a socket,
    /// whose readiness the poll reports.
    fn due(&mut self, _now: Instant) -> Option<Due> {
        None
    }
    /// The connection closed, its sides having ended so (a scripted peer keeps it for its
    /// report; a socket has nothing to do).
    fn ended(&mut self, _ends: &[(crate::types::Side, End)]) {}
}

impl Stream for mio::net::TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        io::Read::read(self, buf)
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::Write::write(self, buf)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        io::Write::write_vectored(self, bufs)
    }
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        mio::net::TcpStream::peek(self, buf)
    }
    fn discard(&mut self, n: usize) -> io::Result<usize> {
        sys::discard(self, n)
    }
    fn can_peek(&self) -> bool {
        true
    }
    fn available(&self) -> io::Result<usize> {
        sys::available(self)
    }
    fn can_splice(&self) -> bool {
        true
    }
    fn short_read_drains(&self) -> bool {
        true
    }
    fn splice_in(&mut self, pipe: &Pipe, max: usize) -> io::Result<usize> {
        sys::splice_in(self, pipe, max)
    }
    fn splice_out(&mut self, pipe: &Pipe, max: usize) -> io::Result<usize> {
        sys::splice_out(pipe, self, max)
    }
}

impl Socket for mio::net::TcpStream {
    fn take_error(&self) -> io::Result<Option<io::Error>> {
        mio::net::TcpStream::take_error(self)
    }
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        mio::net::TcpStream::peer_addr(self)
    }
    fn tcp_stats(&self) -> Option<TcpStats> {
        sys::tcp_stats(self)
    }
    fn reset_on_close(&self) {
        sys::reset_on_close(self)
    }
}

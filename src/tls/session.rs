//! A TLS session over a stream, as the relay sees it: [`TlsStream`] reads plaintext and
//! writes plaintext, and moves the TLS records over the stream beneath as rustls asks.
//!
//! - Reads feed rustls the records the socket has and return what it decrypted; a socket
//!   closed without `close_notify` is an end like a FIN (most servers do that).
//! - Writes first send what rustls still holds: while it cannot, the write says
//!   `WouldBlock`, so a slow reader holds the relay back as a TCP socket would, and the
//!   plaintext waits in the relay buffer, not in rustls. What is left after a write goes
//!   with [`Stream::flush_out`] when the socket is writable again.
//! - A half-close sends `close_notify`, then FIN.
//! - The records themselves can be kept ([`TlsStream::tap_wire`]) for the capture, which
//!   shows the client leg as it went over the wire, with the secrets to decrypt it.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use crate::relay::{Socket, Stream};
use crate::sys::TcpStats;

/// Most plaintext taken per write: about four records.
const WRITE_MAX: usize = 64 << 10;

pub struct TlsStream<T> {
    pub inner: T,
    pub conn: rustls::Connection,
    /// The records read and written, kept for the capture until taken.
    wire: Option<Box<[Vec<u8>; 2]>>,
    /// The stream beneath said end of file.
    eof: bool,
    /// `close_notify` queued.
    closing: bool,
    /// An error met after a read had plaintext to return: the next read returns it.
    error: Option<io::Error>,
}

/// The stream beneath as `io::Read`, keeping a copy of what it reads.
pub struct Reader<'a, T> {
    pub inner: &'a mut T,
    pub copy: Option<&'a mut Vec<u8>>,
}

impl<T: Stream> Read for Reader<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(c) = &mut self.copy {
            c.extend_from_slice(&buf[..n.min(buf.len())]);
        }
        Ok(n)
    }
}

/// The stream beneath as `io::Write`, keeping a copy of what it took.
pub struct Writer<'a, T> {
    pub inner: &'a mut T,
    pub copy: Option<&'a mut Vec<u8>>,
}

impl<T: Stream> Write for Writer<'_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(c) = &mut self.copy {
            c.extend_from_slice(&buf[..n.min(buf.len())]);
        }
        Ok(n)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = self.inner.write_vectored(bufs)?;
        if let Some(c) = &mut self.copy {
            let mut left = n;
            for b in bufs {
                let take = left.min(b.len());
                c.extend_from_slice(&b[..take]);
                left -= take;
                if left == 0 {
                    break;
                }
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends what `conn` has to send: `Ok(true)` when all went, `Ok(false)` when the stream is
/// full.
pub fn send<T: Stream>(
    conn: &mut rustls::Connection,
    inner: &mut T,
    mut copy: Option<&mut Vec<u8>>,
) -> io::Result<bool> {
    while conn.wants_write() {
        let mut w = Writer {
            inner: &mut *inner,
            copy: copy.as_deref_mut(),
        };
        match conn.write_tls(&mut w) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

impl<T: Stream> TlsStream<T> {
    pub fn new(inner: T, conn: rustls::Connection) -> TlsStream<T> {
        TlsStream {
            inner,
            conn,
            wire: None,
            eof: false,
            closing: false,
            error: None,
        }
    }

    /// Keeps the records read and written from now on, for [`take_wire`](Self::take_wire).
    pub fn tap_wire(&mut self) {
        self.wire.get_or_insert_with(Box::default);
    }

    /// The records read (`[0]`) and written (`[1]`) since the last call.
    pub fn take_wire(&mut self) -> Option<[Vec<u8>; 2]> {
        let w = self.wire.as_mut()?;
        if w[0].is_empty() && w[1].is_empty() {
            return None;
        }
        Some([std::mem::take(&mut w[0]), std::mem::take(&mut w[1])])
    }

    /// `got` bytes are the read's result if there are any (`e` waits for the next read, unless
    /// it only says the socket is empty for now); else `e` is.
    fn fail_after(&mut self, got: usize, e: io::Error) -> io::Result<usize> {
        if got == 0 {
            return Err(e);
        }
        if e.kind() != io::ErrorKind::WouldBlock {
            self.error = Some(e);
        }
        Ok(got)
    }

    fn send_pending(&mut self) -> io::Result<bool> {
        let copy = self.wire.as_mut().map(|w| &mut w[1]);
        send(&mut self.conn, &mut self.inner, copy)
    }
}

/// The most plaintext one record holds: a read goes on to the next record while its buffer
/// has room for one more.
const RECORD: usize = 16 << 10;

impl<T: Stream> Stream for TlsStream<T> {
    /// Decrypts as many records as the socket has and `buf` has room for, so that a stream
    /// moves in big writes (four records per writev with the default buffer) rather than one
    /// record per turn.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let mut got = 0usize;
        loop {
            match self.conn.reader().read(&mut buf[got..]) {
                // close_notify (or an empty buffer).
                Ok(0) => return Ok(got),
                Ok(n) => {
                    got += n;
                    if got >= buf.len() {
                        return Ok(got);
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The socket closed without close_notify: an end, as most servers make it.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(got),
                Err(e) => return self.fail_after(got, e),
            }
            if self.eof || (got > 0 && buf.len() - got < RECORD) {
                return Ok(got);
            }
            let mut r = Reader {
                inner: &mut self.inner,
                copy: self.wire.as_mut().map(|w| &mut w[0]),
            };
            match self.conn.read_tls(&mut r) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) => return self.fail_after(got, e),
            }
            if let Err(e) = self.conn.process_new_packets() {
                // Our alert goes out if it can; the error ends the side.
                let _ = self.send_pending();
                let e = io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"));
                return self.fail_after(got, e);
            }
            // Answers the session owes (a key update) go when they can.
            let _ = self.send_pending();
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.send_pending()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let take = buf.len().min(WRITE_MAX);
        let n = self.conn.writer().write(&buf[..take])?;
        if n == 0 && take > 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.send_pending()?;
        Ok(n)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        if !self.closing {
            self.conn.send_close_notify();
            self.closing = true;
        }
        if !self.send_pending()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.inner.shutdown_write()
    }

    fn flush_out(&mut self) -> io::Result<bool> {
        self.send_pending()
    }
}

impl<T: Socket> Socket for TlsStream<T> {
    fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.take_error()
    }
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
    fn tcp_stats(&self) -> Option<TcpStats> {
        self.inner.tcp_stats()
    }
    fn reset_on_close(&self) {
        self.inner.reset_on_close()
    }
}

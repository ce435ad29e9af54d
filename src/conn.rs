//! The per-connection state machine: a client and a server socket, one [`Half`] per direction,
//! and the phase the connection is in.
//!
//! ```text
//!   Connecting --connected()--> Relaying --both halves done / a fault--> Closed
//!        \--fail(): refused, timeout, shutdown---------------------------->/
//! ```
//! Half-closed is not a phase of its own: it is a `Relaying` connection whose one half is
//! done. The machine is generic over [`Stream`] and reports what it sees through a [`Tap`], so
//! it runs without sockets in tests; the reactor supplies mio sockets, readiness and the log.

use std::io;

use crate::half::{Half, Peer, Pump};
use crate::pool::Pool;
use crate::sys::Pipe;
pub use crate::types::{Dir, End, Hold, Side};

/// A side that broke, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub side: Side,
    pub end: End,
}

impl Fault {
    pub fn new(side: Side, end: End) -> Fault {
        Fault { side, end }
    }
}

/// What the state machine needs of a socket.
pub trait Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    fn shutdown_write(&mut self) -> io::Result<()>;
    /// Moves up to `max` bytes from this socket into `pipe` (splice); a stream that cannot
    /// never gets a pipe, see [`Tap::wants_data`] and [`Pool::get_pipe`].
    fn splice_in(&mut self, _pipe: &Pipe, _max: usize) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Moves up to `max` bytes from `pipe` to this socket.
    fn splice_out(&mut self, _pipe: &Pipe, _max: usize) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
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
    fn splice_in(&mut self, pipe: &Pipe, max: usize) -> io::Result<usize> {
        crate::sys::splice_in(self, pipe, max)
    }
    fn splice_out(&mut self, pipe: &Pipe, max: usize) -> io::Result<usize> {
        crate::sys::splice_out(pipe, self, max)
    }
}

/// Where the state machine reports what passes through it (the log queue, in the reactor).
pub trait Tap {
    /// False while the log cannot take more: no socket may be read until it can.
    fn ready(&mut self) -> bool;
    /// False when nothing records the bytes, so they may be spliced from socket to socket
    /// without passing through user space (the pool decides whether a pipe is to be had).
    fn wants_data(&self) -> bool {
        true
    }
    /// Bytes read from the source of `dir`, before they are written on.
    fn data(&mut self, dir: Dir, bytes: &[u8]);
    /// A side ended.
    fn end(&mut self, side: Side, how: &End);
    /// `dir` stopped reading its source because of `why` (once per pause).
    fn hold(&mut self, _dir: Dir, _why: Hold) {}
    /// `dir` reads again after a [`hold`](Tap::hold).
    fn release(&mut self, _dir: Dir) {}
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Relaying,
    Closed,
}

/// What [`Conn::drive`] left the connection waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Waiting for readiness events.
    Open,
    /// A source is readable but the log queue is full: drive again when it drains.
    Stalled,
    /// More work is ready but the read budget is spent: drive again after other connections.
    Yielded,
    /// Finished; the reactor removes it.
    Closed,
}

/// A relayed connection.
pub struct Conn<S> {
    pub client: Peer<S>,
    pub server: Peer<S>,
    halves: [Half; 2],
    phase: Phase,
    ends: [Option<End>; 2],
    order: Vec<Side>,
    undelivered: [u64; 2],
}

impl<S: Stream> Conn<S> {
    /// A connection whose server socket is still connecting.
    pub fn new(client: S, server: S) -> Conn<S> {
        Conn {
            client: Peer::new(client, Side::Client),
            server: Peer::new(server, Side::Server),
            halves: [
                Half::new(Dir::ClientToServer),
                Half::new(Dir::ServerToClient),
            ],
            phase: Phase::Connecting,
            ends: [None, None],
            order: Vec::with_capacity(2),
            undelivered: [0, 0],
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Bytes relayed in a direction so far.
    pub fn bytes(&self, dir: Dir) -> u64 {
        self.halves[dir.index()].bytes
    }

    /// How each side ended, in the order it happened.
    pub fn ends(&self) -> Vec<(Side, End)> {
        self.order
            .iter()
            .filter_map(|s| self.ends[s.index()].clone().map(|e| (*s, e)))
            .collect()
    }

    /// True when tcpspy must close `side` with a reset rather than a FIN, because the other
    /// side broke (or never connected).
    pub fn must_reset(&self, side: Side) -> bool {
        self.ends[side.index()] == Some(End::Aborted)
    }

    /// Bytes read but never written on, per direction, when the connection closed: the logs
    /// hold them but the destination never got them.
    pub fn undelivered(&self) -> [u64; 2] {
        self.undelivered
    }

    /// True once `side` sent FIN: nothing more is read from it.
    pub fn read_done(&self, side: Side) -> bool {
        self.halves[side.index()].saw_eof()
    }

    /// True while either direction holds a relay buffer.
    pub fn holds_buffers(&self) -> bool {
        self.halves.iter().any(Half::holds_buffer)
    }

    /// The upstream connect completed.
    pub fn connected(&mut self) {
        if self.phase == Phase::Connecting {
            self.phase = Phase::Relaying;
        }
    }

    /// Ends the connection from outside the relay: `side` ended with `how` (a failed or timed
    /// out connect, a shutdown), and every side that has not ended yet is reset (or, on a
    /// shutdown, closed).
    pub fn fail<T: Tap>(&mut self, side: Side, how: End, tap: &mut T, pool: &mut Pool) {
        if self.phase == Phase::Closed {
            return;
        }
        // A close decided by tcpspy applies to both sides alike; a failure of one side resets
        // the other.
        let other = match how {
            End::Shutdown | End::IdleTimeout => how.clone(),
            _ => End::Aborted,
        };
        self.record(side, how, tap);
        self.record(side.other(), other, tap);
        self.close(pool);
    }

    /// Relays as much as readiness, the log and `budget` allow.
    pub fn drive<T: Tap>(&mut self, pool: &mut Pool, tap: &mut T, budget: &mut u32) -> Status {
        if self.phase != Phase::Relaying {
            return if self.phase == Phase::Closed {
                Status::Closed
            } else {
                Status::Open
            };
        }
        let mut status = Status::Open;
        for dir in Dir::BOTH {
            let half = &mut self.halves[dir.index()];
            let (src, dst) = match dir {
                Dir::ClientToServer => (&mut self.client, &mut self.server),
                Dir::ServerToClient => (&mut self.server, &mut self.client),
            };
            let had_eof = half.saw_eof();
            let result = half.pump(src, dst, pool, tap, budget);
            if !had_eof && half.saw_eof() {
                self.ends[dir.source().index()] = Some(End::Fin);
                self.order.push(dir.source());
            }
            match result {
                Ok(Pump::Waiting) => {}
                Ok(Pump::Stalled) => status = Status::Stalled,
                Ok(Pump::Yielded) if status == Status::Open => status = Status::Yielded,
                Ok(Pump::Yielded) => {}
                Err(fault) => {
                    self.record(fault.side, fault.end, tap);
                    self.record(fault.side.other(), End::Aborted, tap);
                    self.close(pool);
                    return Status::Closed;
                }
            }
        }
        if self.halves.iter().all(Half::is_done) {
            self.close(pool);
            return Status::Closed;
        }
        status
    }

    /// Records how `side` ended, once; a reset or error after a FIN replaces the FIN, since
    /// that is how the side finally ended (tcpspy reset the other side for it).
    fn record<T: Tap>(&mut self, side: Side, how: End, tap: &mut T) {
        let slot = &mut self.ends[side.index()];
        let replaces_fin = *slot == Some(End::Fin) && matches!(how, End::Reset | End::Error(_));
        if slot.is_none() || replaces_fin {
            tap.end(side, &how);
            *slot = Some(how);
            self.order.retain(|s| *s != side);
            self.order.push(side);
        }
    }

    fn close(&mut self, pool: &mut Pool) {
        self.phase = Phase::Closed;
        for (h, u) in self.halves.iter_mut().zip(&mut self.undelivered) {
            *u = h.pending() as u64;
            h.release(pool);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// An in-memory socket: `input` is what the peer has sent us, `output` what we wrote.
    #[derive(Default)]
    struct Mem {
        input: VecDeque<u8>,
        eof: bool,
        reset: bool,
        output: Vec<u8>,
        room: usize,
        shut: bool,
    }

    impl Stream for Mem {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.reset {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            if self.input.is_empty() {
                return if self.eof {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
            let n = buf.len().min(self.input.len());
            for (i, b) in self.input.drain(..n).enumerate() {
                buf[i] = b;
            }
            Ok(n)
        }
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.shut {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let n = buf.len().min(self.room);
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.room -= n;
            self.output.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn shutdown_write(&mut self) -> io::Result<()> {
            if self.reset {
                return Err(io::ErrorKind::NotConnected.into());
            }
            self.shut = true;
            Ok(())
        }
    }

    #[derive(Default)]
    struct Rec {
        full: bool,
        data: [Vec<u8>; 2],
        ends: Vec<(Side, End)>,
    }

    impl Tap for Rec {
        fn ready(&mut self) -> bool {
            !self.full
        }
        fn data(&mut self, dir: Dir, bytes: &[u8]) {
            self.data[dir.index()].extend_from_slice(bytes);
        }
        fn end(&mut self, side: Side, how: &End) {
            self.ends.push((side, how.clone()));
        }
    }

    fn relaying() -> Conn<Mem> {
        let mut c = Conn::new(Mem::default(), Mem::default());
        c.connected();
        for p in [&mut c.client, &mut c.server] {
            p.readable = true;
            p.writable = true;
            p.sock.room = usize::MAX;
        }
        c
    }

    #[test]
    fn relays_both_ways_and_half_closes() {
        let mut pool = Pool::new(4, 4);
        let mut tap = Rec::default();
        let mut c = relaying();
        c.client.sock.input.extend(b"hello server");
        c.client.sock.eof = true;
        c.server.sock.input.extend(b"hi");
        let mut budget = 100;
        assert_eq!(c.drive(&mut pool, &mut tap, &mut budget), Status::Open);
        assert_eq!(c.server.sock.output, b"hello server");
        assert!(c.server.sock.shut, "client's FIN is passed on");
        assert_eq!(c.client.sock.output, b"hi");
        assert!(!c.client.sock.shut, "the other direction stays open");
        c.server.sock.input.extend(b" there");
        c.server.sock.eof = true;
        c.server.readable = true;
        assert_eq!(c.drive(&mut pool, &mut tap, &mut budget), Status::Closed);
        assert_eq!(c.client.sock.output, b"hi there");
        assert_eq!(tap.data[0], b"hello server");
        assert_eq!(tap.data[1], b"hi there");
        assert_eq!(
            c.ends(),
            vec![(Side::Client, End::Fin), (Side::Server, End::Fin)]
        );
        assert!(!c.must_reset(Side::Client) && !c.must_reset(Side::Server));
        assert_eq!(c.undelivered(), [0, 0]);
        assert!(!c.holds_buffers());
    }

    #[test]
    fn slow_destination_stops_reading() {
        let mut pool = Pool::new(4, 4);
        let mut tap = Rec::default();
        let mut c = relaying();
        c.server.sock.room = 2;
        c.client.sock.input.extend(b"0123456789");
        let mut budget = 100;
        c.drive(&mut pool, &mut tap, &mut budget);
        assert_eq!(c.server.sock.output, b"01");
        assert_eq!(c.client.sock.input.len(), 6, "only one buffer was read");
        assert!(c.holds_buffers());
        c.server.sock.room = usize::MAX;
        c.server.writable = true;
        c.drive(&mut pool, &mut tap, &mut budget);
        assert_eq!(c.server.sock.output, b"0123456789");
    }

    #[test]
    fn full_log_stalls_reads() {
        let mut pool = Pool::new(4, 4);
        let mut tap = Rec {
            full: true,
            ..Rec::default()
        };
        let mut c = relaying();
        c.client.sock.input.extend(b"abc");
        let mut budget = 100;
        assert_eq!(c.drive(&mut pool, &mut tap, &mut budget), Status::Stalled);
        assert!(c.server.sock.output.is_empty());
        tap.full = false;
        assert_eq!(c.drive(&mut pool, &mut tap, &mut budget), Status::Open);
        assert_eq!(c.server.sock.output, b"abc");
    }

    #[test]
    fn budget_yields() {
        let mut pool = Pool::new(4, 4);
        let mut tap = Rec::default();
        let mut c = relaying();
        c.client.sock.input.extend(b"0123456789abcdef");
        let mut budget = 2;
        assert_eq!(c.drive(&mut pool, &mut tap, &mut budget), Status::Yielded);
        assert_eq!(c.server.sock.output, b"01234567");
        let mut budget = 10;
        assert_eq!(c.drive(&mut pool, &mut tap, &mut budget), Status::Open);
        assert_eq!(c.server.sock.output, b"0123456789abcdef");
    }

    #[test]
    fn reset_aborts_the_other_side() {
        let mut pool = Pool::new(4, 4);
        let mut tap = Rec::default();
        let mut c = relaying();
        c.server.sock.reset = true;
        let mut budget = 10;
        assert_eq!(c.drive(&mut pool, &mut tap, &mut budget), Status::Closed);
        assert_eq!(
            c.ends(),
            vec![(Side::Server, End::Reset), (Side::Client, End::Aborted)]
        );
        assert!(c.must_reset(Side::Client));
        assert_eq!(tap.ends.len(), 2);
    }

    #[test]
    fn bytes_stuck_at_a_reset_are_counted_undelivered() {
        let mut pool = Pool::new(8, 4);
        let mut tap = Rec::default();
        let mut c = relaying();
        c.server.sock.room = 3;
        c.client.sock.input.extend(b"abcdef");
        let mut budget = 10;
        c.drive(&mut pool, &mut tap, &mut budget);
        c.server.sock.shut = true;
        c.server.writable = true;
        assert_eq!(c.drive(&mut pool, &mut tap, &mut budget), Status::Closed);
        assert_eq!(c.server.sock.output, b"abc");
        assert_eq!(c.undelivered(), [3, 0]);
        assert_eq!(c.ends()[0], (Side::Server, End::Reset));
    }

    #[test]
    fn shutdown_after_a_reset_is_a_reset() {
        let mut pool = Pool::new(4, 4);
        let mut tap = Rec::default();
        let mut c = relaying();
        c.client.sock.eof = true;
        c.server.sock.reset = true; // shutdown(2) after a RST gives ENOTCONN
        let mut budget = 10;
        assert_eq!(c.drive(&mut pool, &mut tap, &mut budget), Status::Closed);
        assert_eq!(
            c.ends(),
            vec![(Side::Client, End::Fin), (Side::Server, End::Reset)]
        );
    }

    #[test]
    fn stop_after_a_fin_closes_the_other_side() {
        let mut pool = Pool::new(4, 4);
        let mut tap = Rec::default();
        let mut c = relaying();
        c.client.sock.eof = true;
        let mut budget = 10;
        assert_eq!(c.drive(&mut pool, &mut tap, &mut budget), Status::Open);
        c.fail(Side::Client, End::Shutdown, &mut tap, &mut pool);
        assert_eq!(
            c.ends(),
            vec![(Side::Client, End::Fin), (Side::Server, End::Shutdown)]
        );
        assert!(
            !c.must_reset(Side::Server),
            "a stop closes, it does not reset"
        );
    }

    #[test]
    fn failed_connect_resets_client() {
        let mut pool = Pool::new(4, 4);
        let mut tap = Rec::default();
        let mut c = Conn::new(Mem::default(), Mem::default());
        c.fail(Side::Server, End::ConnectTimeout, &mut tap, &mut pool);
        assert_eq!(c.phase(), Phase::Closed);
        assert_eq!(
            c.ends(),
            vec![
                (Side::Server, End::ConnectTimeout),
                (Side::Client, End::Aborted)
            ]
        );
        let mut budget = 1;
        assert_eq!(c.drive(&mut pool, &mut tap, &mut budget), Status::Closed);
    }
}

//! The per-connection state machine: a client and a server stream, one [`Pipeline`] per
//! direction, and the phase the connection is in.
//!
//! ```text
//!   Connecting --connected()--> Relaying --both directions done / a fault--> Closed
//!        \--fail(): refused, timeout, shutdown---------------------------->/
//! ```
//! Half-closed is not a phase of its own: it is a `Relaying` connection whose one direction
//! is done. The machine is generic over [`Stream`] and reports what it sees through a [`Tap`],
//! so it runs without sockets in tests and in the simulation; the connection table supplies
//! sockets, readiness, the log and the clock.

use std::time::Instant;

use super::pipeline::{Peer, Pipeline, Pump};
use super::stage::{Stage, Tap};
use super::stream::{Due, Socket, Stream};
use crate::pool::Pool;
use crate::types::{Dir, End, Side};

/// The order in which the two sides (last) ended: at most two entries, kept inline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Order([Option<Side>; 2]);

impl Order {
    /// Moves `side` to the end of the order (adding it if it is not there).
    fn last(&mut self, side: Side) {
        let mut kept = self.0.into_iter().flatten().filter(|s| *s != side);
        self.0 = [kept.next(), None];
        let free = if self.0[0].is_none() { 0 } else { 1 };
        self.0[free] = Some(side);
    }

    fn sides(&self) -> impl Iterator<Item = Side> + '_ {
        self.0.iter().flatten().copied()
    }
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
    /// A source is readable but no relay buffer is free (and its bytes cannot wait in the
    /// kernel): drive again when one is.
    Starved,
    /// More work is ready but the read budget is spent: drive again after other connections.
    Yielded,
    /// The client sent a TLS ClientHello (`--tls`): the connection waits for its handshakes
    /// ([`Conn::take_caught`] has the hello's first bytes).
    Caught,
    /// Finished; the reactor removes it.
    Closed,
}

/// A relayed connection.
pub struct Conn<S> {
    pub client: Peer<S>,
    pub server: Peer<S>,
    halves: [Pipeline; 2],
    phase: Phase,
    ends: [Option<End>; 2],
    /// The sides in the order of their last end (no allocation per connection).
    order: Order,
    undelivered: [u64; 2],
}

impl<S: Stream> Conn<S> {
    /// A connection whose server socket is still connecting.
    pub fn new(client: S, server: S) -> Conn<S> {
        Conn {
            client: Peer::new(client, Side::Client),
            server: Peer::new(server, Side::Server),
            halves: [
                Pipeline::new(Dir::ClientToServer),
                Pipeline::new(Dir::ServerToClient),
            ],
            phase: Phase::Connecting,
            ends: [None, None],
            order: Order::default(),
            undelivered: [0, 0],
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Bytes read (and recorded) in a direction so far.
    pub fn bytes(&self, dir: Dir) -> u64 {
        self.halves[dir.index()].read
    }

    /// Counts bytes that went from `dir`'s source to its sink before the relay began (a proxy
    /// listener's handshake wrote them), so that totals and records include them.
    pub fn count_relayed(&mut self, dir: Dir, n: u64) {
        if let Some(h) = self.halves.get_mut(dir.index()) {
            h.read = h.read.saturating_add(n);
            h.written = h.written.saturating_add(n);
        }
    }

    /// Bytes read and written, both ways: it changes whenever the connection moved a byte
    /// (the idle timeout counts writes to a slow reader as activity, not only reads).
    pub fn activity(&self) -> u64 {
        self.halves.iter().fold(0u64, |sum, h| {
            sum.wrapping_add(h.read).wrapping_add(h.written)
        })
    }

    /// The earliest time a stage of either direction waits for.
    pub fn wake_at(&self) -> Option<Instant> {
        self.halves.iter().filter_map(Pipeline::wake_at).min()
    }

    /// The names of the stages of direction `dir`, in order.
    pub fn stage_names(&self, dir: Dir) -> Vec<&'static str> {
        self.halves[dir.index()].stage_names()
    }

    /// Adds a stage to the direction `dir`, after the record.
    pub fn add_stage(&mut self, dir: Dir, stage: Box<dyn Stage>) {
        self.halves[dir.index()].add_stage(stage);
    }

    /// How each side ended, in the order it happened.
    pub fn ends(&self) -> Vec<(Side, End)> {
        self.order
            .sides()
            .filter_map(|s| self.ends[s.index()].clone().map(|e| (s, e)))
            .collect()
    }

    /// True when tcpspy must close `side` with a reset rather than a FIN, because the other
    /// side broke (or never connected).
    pub fn must_reset(&self, side: Side) -> bool {
        matches!(
            self.ends[side.index()],
            Some(End::Aborted | End::Fault { reset: true, .. })
        )
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

    /// Directions holding a relay buffer or a pipe (0, 1 or 2).
    pub fn flights(&self) -> usize {
        self.halves.iter().filter(|h| h.holds_buffer()).count()
    }

    /// True while either direction holds a relay buffer.
    pub fn holds_buffers(&self) -> bool {
        self.halves.iter().any(Pipeline::holds_buffer)
    }

    /// Watch the client's chunks for a TLS ClientHello (`--tls`).
    pub fn watch_tls(&mut self, on: bool) {
        self.halves[Dir::ClientToServer.index()].watch = on;
    }

    /// The chunk that started a ClientHello.
    pub fn take_caught(&mut self) -> Option<Vec<u8>> {
        self.halves[Dir::ClientToServer.index()].take_caught()
    }

    /// Relays `bytes` as the client's next chunk (a hello that was not one).
    pub fn inject<T: Tap>(&mut self, bytes: &[u8], pool: &mut Pool, tap: &mut T) -> bool {
        self.halves[Dir::ClientToServer.index()].inject(bytes, pool, tap)
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
        let other = match how.is_for_both() {
            true => how.clone(),
            false => End::Aborted,
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
        for peer in [&mut self.client, &mut self.server] {
            // What a TLS session could not send at its last write goes first.
            if peer.writable && matches!(peer.sock.flush_out(), Ok(false)) {
                peer.writable = false;
            }
        }
        // A hello is taken only while nothing of the server's waits to be delivered.
        self.halves[0].quiet = self.halves[1].pending() == 0;
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
                self.order.last(dir.source());
            }
            match result {
                Ok(Pump::Waiting) => {}
                // A stall on the log outranks the others: its wake-up is sure to come, and
                // drives the whole connection again.
                Ok(Pump::Stalled) => status = Status::Stalled,
                Ok(Pump::Starved) if status != Status::Stalled => status = Status::Starved,
                Ok(Pump::Yielded) if status == Status::Open => status = Status::Yielded,
                Ok(Pump::Starved | Pump::Yielded) => {}
                Ok(Pump::Caught) => return Status::Caught,
                Err(fault) => {
                    // A fault's cut ends both sides alike; a broken side resets the other.
                    let other = match fault.end.is_for_both() {
                        true => fault.end.clone(),
                        false => End::Aborted,
                    };
                    self.record(fault.side, fault.end, tap);
                    self.record(fault.side.other(), other, tap);
                    self.close(pool);
                    return Status::Closed;
                }
            }
        }
        if self.halves.iter().all(Pipeline::is_done) {
            self.close(pool);
            return Status::Closed;
        }
        status
    }

    /// Records how `side` ended, once; a reset or error after a FIN replaces the FIN, since
    /// that is how the side finally ended (tcpspy reset the other side for it).
    fn record<T: Tap>(&mut self, side: Side, how: End, tap: &mut T) {
        let slot = &mut self.ends[side.index()];
        let replaces_fin = *slot == Some(End::Fin)
            && matches!(how, End::Reset | End::Error(_) | End::Fault { .. });
        if slot.is_none() || replaces_fin {
            tap.end(side, &how);
            *slot = Some(how);
            self.order.last(side);
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

/// What the scripted sides of a connection asked for after a drive ([`Conn::scripted`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scripted {
    /// The earliest time a scripted side's next act is due, if later than now.
    pub wake: Option<Instant>,
    /// A scripted side has an act due now and was not readable: drive again.
    pub again: bool,
    /// A scripted side ends the connection.
    pub end: Option<(Side, End)>,
}

impl<S: Socket> Conn<S> {
    /// Asks each side without a socket what it has to do: a peer whose act is due is made
    /// readable (it raises no event of its own), and it is always writable (it takes every
    /// byte).
    pub fn scripted(&mut self, now: Instant) -> Scripted {
        let mut out = Scripted::default();
        if self.phase != Phase::Relaying {
            return out;
        }
        for peer in [&mut self.client, &mut self.server] {
            let Some(due) = peer.sock.due(now) else {
                continue;
            };
            peer.writable = true;
            match due {
                Due::Idle => {}
                Due::At(t) if t <= now => {
                    if !peer.readable {
                        peer.readable = true;
                        out.again = true;
                    }
                }
                Due::At(t) => out.wake = Some(out.wake.map_or(t, |w| w.min(t))),
                Due::End(how) => out.end = Some((peer.side, how)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::stage::Release;
    use std::collections::VecDeque;
    use std::io;
    use std::time::Duration;

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

    struct Rec {
        full: bool,
        data: [Vec<u8>; 2],
        ends: Vec<(Side, End)>,
        now: Instant,
        notes: Vec<String>,
    }

    impl Default for Rec {
        fn default() -> Rec {
            Rec {
                full: false,
                data: Default::default(),
                ends: Vec::new(),
                now: Instant::now(),
                notes: Vec::new(),
            }
        }
    }

    impl Tap for Rec {
        fn now(&self) -> Instant {
            self.now
        }
        fn note(&mut self, _dir: Dir, stage: &'static str, text: String) {
            self.notes.push(format!("{stage}: {text}"));
        }
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
        let mut pool = Pool::new(4, 4, 8);
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
        let mut pool = Pool::new(4, 4, 8);
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
        let mut pool = Pool::new(4, 4, 8);
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
        let mut pool = Pool::new(4, 4, 8);
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
        let mut pool = Pool::new(4, 4, 8);
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
        let mut pool = Pool::new(8, 4, 8);
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
        let mut pool = Pool::new(4, 4, 8);
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
        let mut pool = Pool::new(4, 4, 8);
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
        let mut pool = Pool::new(4, 4, 8);
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

    struct Clock {
        now: Instant,
        logged: Vec<u8>,
        notes: Vec<String>,
        ends: Vec<(Side, End)>,
    }

    impl Tap for Clock {
        fn now(&self) -> Instant {
            self.now
        }
        fn ready(&mut self) -> bool {
            true
        }
        fn data(&mut self, _dir: Dir, bytes: &[u8]) {
            self.logged.extend_from_slice(bytes);
        }
        fn end(&mut self, side: Side, how: &End) {
            self.ends.push((side, how.clone()));
        }
        fn note(&mut self, _dir: Dir, stage: &'static str, text: String) {
            self.notes.push(format!("{stage}: {text}"));
        }
    }

    /// Lets 3 bytes through every 10 ms, upper-cases what it passes, and holds the FIN 5 ms.
    struct Drip {
        next: Option<Instant>,
        fin_at: Option<Instant>,
    }

    impl Stage for Drip {
        fn name(&self) -> &'static str {
            "drip"
        }
        fn chunk(&mut self, _dir: Dir, bytes: &mut [u8], _now: Instant, tap: &mut dyn Tap) {
            bytes.make_ascii_uppercase();
            tap.note(
                Dir::ClientToServer,
                "drip",
                format!("{} bytes", bytes.len()),
            );
        }
        fn release(&mut self, pending: usize, now: Instant) -> Release {
            match self.next {
                Some(t) if t > now => Release::At(t),
                _ => Release::Now(pending.min(3)),
            }
        }
        fn wrote(&mut self, _n: usize, now: Instant) {
            self.next = Some(now + Duration::from_millis(10));
        }
        fn finish(&mut self, now: Instant) -> Release {
            let at = *self.fin_at.get_or_insert(now + Duration::from_millis(5));
            if at > now {
                Release::At(at)
            } else {
                Release::Now(0)
            }
        }
    }

    #[test]
    fn a_stage_paces_rewrites_and_holds_the_fin() {
        let mut pool = Pool::new(64, 4, 8);
        let t0 = Instant::now();
        let mut tap = Clock {
            now: t0,
            logged: Vec::new(),
            notes: Vec::new(),
            ends: Vec::new(),
        };
        let mut c = Conn::new(Mem::default(), Mem::default());
        c.connected();
        for p in [&mut c.client, &mut c.server] {
            p.readable = true;
            p.writable = true;
            p.sock.room = usize::MAX;
        }
        c.add_stage(
            Dir::ClientToServer,
            Box::new(Drip {
                next: None,
                fin_at: None,
            }),
        );
        assert_eq!(c.halves[0].stage_names(), ["drip"]);
        c.client.sock.input.extend(b"hello!!");
        c.client.sock.eof = true;
        let mut budget = 10;
        let mut wakes = Vec::new();
        for _ in 0..10 {
            c.drive(&mut pool, &mut tap, &mut budget);
            match c.wake_at() {
                Some(t) => {
                    wakes.push(t.duration_since(t0).as_millis());
                    tap.now = t;
                }
                None => break,
            }
        }
        assert_eq!(
            c.server.sock.output, b"HELLO!!",
            "the stage's bytes reach the sink"
        );
        assert_eq!(
            tap.logged, b"hello!!",
            "the record keeps what the source sent"
        );
        assert_eq!(tap.notes, ["drip: 7 bytes"]);
        // 3 bytes at 0 ms, 3 at 10, 1 at 20; the FIN 5 ms after everything was written.
        assert_eq!(wakes, [10, 20, 25]);
        assert!(c.server.sock.shut);
        assert_eq!(tap.ends, [(Side::Client, End::Fin)]);
    }
}

//! One direction of a relayed connection: its source, the record, its stages, its sink (see
//! [`super::stage`]).
//!
//! A [`Pipeline`] reads only when nothing is in flight and its sink can take bytes, and
//! writes what it holds before reading again, so a slow destination stops reading from the
//! source (backpressure reaches the sender through TCP flow control) and memory per direction
//! is at most one buffer. Where the bytes in flight are:
//! - a relay buffer from the [`Pool`], which holds a bounded number; a buffer the sink
//!   drained at once goes straight back, so only directions whose sink is slow keep one;
//! - a pipe, when nothing records the bytes and both ends are kernel sockets: splice(2) moves
//!   them without copying (only for streams: a direction whose last read filled its buffer);
//! - nowhere, when the pool has no buffer left: the source is *peeked* into the pool's
//!   scratch buffer, the bytes written on, and only what the sink took is consumed, so bytes
//!   the sink refuses stay in the source's kernel buffer, not in ours.
//!
//! On end of stream it flushes, then shuts the sink down for writing, leaving the other
//! direction running. Readiness is tracked in user space ([`Peer::readable`],
//! [`Peer::writable`]): set by events, cleared only on `WouldBlock`, as edge-triggered events
//! require.

use std::io;
use std::time::Instant;

use super::stage::{Release, Stage, Stages, Tap};
use super::stream::Stream;
use crate::pool::Pool;
use crate::sys::Pipe;
use crate::types::{Dir, End, Hold, Side};

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

/// A stream and what we know of its readiness.
pub struct Peer<S> {
    pub sock: S,
    pub side: Side,
    pub readable: bool,
    pub writable: bool,
    /// An event said the peer hung up or failed: reads go on until they say so, even after a
    /// short one (the end is not announced twice).
    pub hung_up: bool,
}

impl<S> Peer<S> {
    pub fn new(sock: S, side: Side) -> Peer<S> {
        Peer {
            sock,
            side,
            readable: false,
            writable: false,
            hung_up: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Relaying.
    Open,
    /// The source sent FIN: write out what is in flight, then shut the sink down.
    Flushing,
    /// FIN passed on; this direction is finished.
    Done,
}

/// Why [`Pipeline::pump`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pump {
    /// Nothing more can happen until a stream becomes ready, a stage's time comes, or this
    /// direction is done.
    Waiting,
    /// The source is readable but the log queue is full.
    Stalled,
    /// The source is readable but no relay buffer is free, and its bytes cannot wait in the
    /// kernel (the stream cannot peek, or a stage must see them first).
    Starved,
    /// The read budget ran out while there was more to do: call again soon.
    Yielded,
    /// A chunk that starts a TLS ClientHello was read while the direction watches for one
    /// (`--tls`): kept back, neither recorded nor written ([`Pipeline::take_caught`]).
    Caught,
}

/// Where a direction's bytes in flight are.
enum Flight {
    /// Read into a relay buffer.
    Buf(Box<[u8]>),
    /// Spliced into a pipe: the bytes never leave the kernel (nobody logs them).
    Pipe(Pipe),
}

/// One direction's bytes in flight, stages and state.
pub struct Pipeline {
    dir: Dir,
    flight: Option<Flight>,
    pos: usize,
    len: usize,
    state: State,
    /// Why reading is paused, if it is.
    held: Option<Hold>,
    /// The last read filled its buffer: the source is streaming, worth splicing.
    bulk: bool,
    /// Between record and sink; `None` for the usual direction with no fault (boxed, so an
    /// idle connection pays a pointer for them).
    stages: Option<Box<Stages>>,
    /// Bytes read from the source (and recorded) so far.
    pub read: u64,
    /// Bytes written to the sink so far.
    pub written: u64,
    /// Look at each chunk's first bytes for a TLS ClientHello (see [`crate::tls::hello`]).
    pub watch: bool,
    /// The other direction has nothing waiting for its sink (set at every turn).
    pub quiet: bool,
    /// The chunk kept back when one was seen.
    caught: Option<Vec<u8>>,
}

impl Pipeline {
    pub fn new(dir: Dir) -> Pipeline {
        Pipeline {
            dir,
            flight: None,
            pos: 0,
            len: 0,
            state: State::Open,
            held: None,
            bulk: false,
            stages: None,
            read: 0,
            written: 0,
            watch: false,
            quiet: true,
            caught: None,
        }
    }

    /// The chunk kept back by [`Pump::Caught`].
    pub fn take_caught(&mut self) -> Option<Vec<u8>> {
        self.caught.take()
    }

    /// Bytes to relay as if just read from the source (a hello that was not one, given
    /// back): recorded, then written like any chunk. False if nothing could hold them.
    pub fn inject<T: Tap>(&mut self, bytes: &[u8], pool: &mut Pool, tap: &mut T) -> bool {
        if self.flight.is_some() || bytes.is_empty() {
            return bytes.is_empty();
        }
        let mut buf = match pool.get() {
            Some(b) if b.len() >= bytes.len() => b,
            Some(b) => {
                pool.put(b);
                return false;
            }
            None => return false,
        };
        let n = bytes.len();
        buf[..n].copy_from_slice(bytes);
        tap.data(self.dir, &buf[..n]);
        if let Some(s) = &mut self.stages {
            s.chunk(self.dir, &mut buf[..n], tap.now(), tap);
        }
        self.read += n as u64;
        self.flight = Some(Flight::Buf(buf));
        self.pos = 0;
        self.len = n;
        true
    }

    /// Adds a stage after the record (and after the stages already there).
    pub fn add_stage(&mut self, stage: Box<dyn Stage>) {
        self.stages
            .get_or_insert_with(Box::default)
            .list
            .push(stage);
    }

    /// The stages' names, in order.
    pub fn stage_names(&self) -> Vec<&'static str> {
        self.stages
            .iter()
            .flat_map(|s| s.list.iter().map(|st| st.name()))
            .collect()
    }

    /// True once FIN has been passed on to the destination.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// True once the source has sent FIN (passed on or not yet).
    pub fn saw_eof(&self) -> bool {
        self.state != State::Open
    }

    /// Bytes read but not yet written.
    pub fn pending(&self) -> usize {
        self.len - self.pos
    }

    /// True while this direction holds a relay buffer or pipe.
    pub fn holds_buffer(&self) -> bool {
        self.flight.is_some()
    }

    /// The earliest time a stage is waiting for, if any.
    pub fn wake_at(&self) -> Option<Instant> {
        let s = self.stages.as_ref()?;
        match (s.wake, s.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Notes the time a stage waits for (only stages make a direction wait for a time).
    fn wait_until(&mut self, t: Instant) {
        if let Some(s) = &mut self.stages {
            s.wake = Some(t);
        }
    }

    fn hold<T: Tap>(&mut self, tap: &mut T, why: Hold) {
        if self.held != Some(why) {
            if self.held.is_some() {
                tap.release(self.dir);
            }
            self.held = Some(why);
            tap.hold(self.dir, why);
        }
    }

    fn unhold<T: Tap>(&mut self, tap: &mut T) {
        if self.held.take().is_some() {
            tap.release(self.dir);
        }
    }

    /// Gives the buffer or pipe back (when drained, or for a connection being dropped).
    pub fn release(&mut self, pool: &mut Pool) {
        match self.flight.take() {
            Some(Flight::Buf(b)) => pool.put(b),
            // A pipe with bytes left in it is closed, never handed to another connection.
            Some(Flight::Pipe(p)) => pool.put_pipe(p, self.pos == self.len),
            None => {}
        }
        self.pos = 0;
        self.len = 0;
    }

    /// What the stages allow of `pending` bytes now.
    fn gate(&mut self, pending: usize, tap: &mut dyn Tap, finish: bool) -> Release {
        let now = tap.now();
        let Some(s) = &mut self.stages else {
            return Release::Now(pending);
        };
        let r = match finish {
            true => s.finish(now),
            false => s.release(pending, now),
        };
        s.tell(self.dir, tap);
        r
    }

    /// How many bytes the stages let the next read take from the source (all, with none).
    fn admit<S: Stream>(&mut self, src: &Peer<S>, tap: &mut dyn Tap) -> Release {
        let Some(s) = &mut self.stages else {
            return Release::Now(usize::MAX);
        };
        let r = s.admit(src.sock.available().ok(), tap.now());
        s.tell(self.dir, tap);
        r
    }

    /// Moves bytes from `src` to `dst` until neither can make progress, the log is full, or
    /// `budget` reads have been made. An `Err` means the connection is broken on one side.
    pub fn pump<S: Stream, T: Tap>(
        &mut self,
        src: &mut Peer<S>,
        dst: &mut Peer<S>,
        pool: &mut Pool,
        tap: &mut T,
        budget: &mut u32,
    ) -> Result<Pump, Fault> {
        debug_assert_eq!(src.side, self.dir.source());
        if let Some(s) = &mut self.stages {
            s.wake = None;
            let cut = s.tick(tap.now());
            s.tell(self.dir, tap);
            if let Some((side, end)) = cut {
                return Err(Fault::new(side, end));
            }
        }
        loop {
            if self.flight.is_some() {
                if let Some(wait) = self.deliver(dst, pool, tap)? {
                    return Ok(wait);
                }
                continue;
            }
            match self.state {
                State::Open => {}
                State::Flushing => {
                    match self.gate(0, tap, true) {
                        Release::Now(_) => {}
                        Release::At(t) => {
                            self.wait_until(t);
                            return Ok(Pump::Waiting);
                        }
                        Release::Cut(side, end) => return Err(Fault::new(side, end)),
                    }
                    match dst.sock.shutdown_write() {
                        Ok(()) => {}
                        // A TLS session whose close_notify waits for room in the socket.
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            return Ok(self.sink_blocked(dst, tap));
                        }
                        Err(e) => return Err(Fault::new(dst.side, End::from_error(&e))),
                    }
                    self.state = State::Done;
                    return Ok(Pump::Waiting);
                }
                State::Done => return Ok(Pump::Waiting),
            }
            if !src.readable {
                return Ok(Pump::Waiting);
            }
            if *budget == 0 {
                return Ok(Pump::Yielded);
            }
            if !tap.ready() {
                self.hold(tap, Hold::Log);
                return Ok(Pump::Stalled);
            }
            if !dst.writable {
                // Bytes read now could only wait in memory: leave them to the kernel.
                self.hold(tap, Hold::Peer);
                return Ok(Pump::Waiting);
            }
            let limit = match self.admit(src, tap) {
                Release::Now(0) => return Ok(Pump::Waiting),
                Release::Now(n) => n,
                Release::At(t) => {
                    self.wait_until(t);
                    return Ok(Pump::Waiting);
                }
                Release::Cut(side, end) => return Err(Fault::new(side, end)),
            };
            *budget -= 1;
            match self.read_once(src, dst, pool, tap, limit)? {
                Some(Pump::Starved) => {
                    self.hold(tap, Hold::Memory);
                    return Ok(Pump::Starved);
                }
                Some(wait) => return Ok(wait),
                None => self.unhold(tap),
            }
        }
    }

    /// Writes what is in flight, as far as the stages and the sink allow. `Some` when the
    /// direction must wait; `None` when the flight was written out and released.
    fn deliver<S: Stream, T: Tap>(
        &mut self,
        dst: &mut Peer<S>,
        pool: &mut Pool,
        tap: &mut T,
    ) -> Result<Option<Pump>, Fault> {
        while self.pos < self.len {
            let allowed = match self.gate(self.len - self.pos, tap, false) {
                Release::Now(n) => n.min(self.len - self.pos),
                Release::At(t) => {
                    self.wait_until(t);
                    return Ok(Some(Pump::Waiting));
                }
                Release::Cut(side, end) => return Err(Fault::new(side, end)),
            };
            if allowed == 0 {
                return Ok(Some(Pump::Waiting));
            }
            if !dst.writable {
                self.hold(tap, Hold::Peer);
                return Ok(Some(Pump::Waiting));
            }
            let written = match &self.flight {
                Some(Flight::Buf(buf)) => dst.sock.write(&buf[self.pos..self.pos + allowed]),
                Some(Flight::Pipe(pipe)) => dst.sock.splice_out(pipe, allowed),
                None => return Ok(None),
            };
            match wrote(written, dst.side)? {
                Wrote::Took(n) => {
                    let n = n.min(allowed);
                    self.pos += n;
                    self.written += n as u64;
                    if let Some(s) = &mut self.stages {
                        s.wrote(n, tap.now());
                        s.tell(self.dir, tap);
                    }
                }
                Wrote::Blocked => return Ok(Some(self.sink_blocked(dst, tap))),
                Wrote::Again => {}
            }
        }
        self.release(pool);
        self.unhold(tap);
        Ok(None)
    }

    /// One read from the source, of at most `limit` bytes (what the stages admit): into a
    /// pipe, a buffer, or (no buffer left) a peek that is written on at once. `None` when the
    /// loop may go on.
    fn read_once<S: Stream, T: Tap>(
        &mut self,
        src: &mut Peer<S>,
        dst: &mut Peer<S>,
        pool: &mut Pool,
        tap: &mut T,
        limit: usize,
    ) -> Result<Option<Pump>, Fault> {
        // Nobody needs the bytes and they come in bulk: splice them through a pipe if the
        // pool has one. Small exchanges stay with read/write, which costs them less.
        let pipe = if self.bulk
            && !self.watch
            && !tap.wants_data()
            && self.stages.is_none()
            && src.sock.can_splice()
            && dst.sock.can_splice()
        {
            pool.get_pipe()
        } else {
            None
        };
        let (got, flight, asked) = match pipe {
            Some(pipe) => (
                src.sock.splice_in(&pipe, pool.pipe_size()),
                Flight::Pipe(pipe),
                // A pipe may hold less than it was sized for (F_SETPIPE_SZ can be refused), so
                // a short splice says nothing about what is left: no read counts as short.
                0,
            ),
            None => match pool.get() {
                Some(mut buf) => {
                    let room = buf.len().min(limit);
                    (src.sock.read(&mut buf[..room]), Flight::Buf(buf), room)
                }
                None if self.stages.is_none() && !self.watch && src.sock.can_peek() => {
                    return self.peek_through(src, dst, pool, tap);
                }
                None => return Ok(Some(Pump::Starved)),
            },
        };
        match got {
            Ok(n) if n > 0 => {
                if n < asked && !src.hung_up && src.sock.short_read_drains() {
                    src.readable = false;
                }
                let mut flight = flight;
                match &mut flight {
                    Flight::Buf(buf)
                        if self.watch
                            && self.quiet
                            && crate::tls::hello::starts_client_hello(&buf[..n]) =>
                    {
                        self.caught = Some(buf[..n].to_vec());
                        give_back(pool, flight);
                        return Ok(Some(Pump::Caught));
                    }
                    Flight::Buf(buf) => {
                        tap.data(self.dir, &buf[..n]);
                        if let Some(s) = &mut self.stages {
                            s.chunk(self.dir, &mut buf[..n], tap.now(), tap);
                        }
                        // A full buffer: the source has more than one read's worth.
                        self.bulk = n == buf.len().min(limit);
                    }
                    Flight::Pipe(_) => self.bulk = n >= pool.buffer_size(),
                }
                self.read += n as u64;
                self.flight = Some(flight);
                self.pos = 0;
                self.len = n;
                Ok(None)
            }
            Ok(_) => {
                give_back(pool, flight);
                self.eof(src, tap);
                Ok(None)
            }
            Err(e) => {
                give_back(pool, flight);
                self.read_error(src, e)
            }
        }
    }

    /// Relays without a buffer: peek, write, then consume what the sink took.
    fn peek_through<S: Stream, T: Tap>(
        &mut self,
        src: &mut Peer<S>,
        dst: &mut Peer<S>,
        pool: &mut Pool,
        tap: &mut T,
    ) -> Result<Option<Pump>, Fault> {
        let scratch = pool.scratch();
        let n = match src.sock.peek(scratch) {
            Ok(0) => {
                self.eof(src, tap);
                return Ok(None);
            }
            Ok(n) => n,
            Err(e) => return self.read_error(src, e),
        };
        let took = loop {
            match wrote(dst.sock.write(&scratch[..n]), dst.side)? {
                Wrote::Took(k) => break k.min(n),
                Wrote::Blocked => return Ok(Some(self.sink_blocked(dst, tap))),
                Wrote::Again => {}
            }
        };
        let consumed = loop {
            match src.sock.discard(took) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(c) if c == took => break c,
                // The bytes were there a moment ago: anything else means the source broke.
                Ok(_) => return Err(Fault::new(src.side, End::Reset)),
                Err(e) => return Err(Fault::new(src.side, End::from_error(&e))),
            }
        };
        tap.data(self.dir, &scratch[..consumed]);
        self.bulk = n == scratch.len();
        self.read += consumed as u64;
        self.written += consumed as u64;
        Ok(None)
    }

    /// The sink said `WouldBlock`: it is not writable until its next event, and this
    /// direction waits for it.
    fn sink_blocked<S, T: Tap>(&mut self, dst: &mut Peer<S>, tap: &mut T) -> Pump {
        dst.writable = false;
        self.hold(tap, Hold::Peer);
        Pump::Waiting
    }

    fn eof<S: Stream, T: Tap>(&mut self, src: &mut Peer<S>, tap: &mut T) {
        self.state = State::Flushing;
        tap.end(src.side, &End::Fin);
    }

    fn read_error<S: Stream>(
        &mut self,
        src: &mut Peer<S>,
        e: io::Error,
    ) -> Result<Option<Pump>, Fault> {
        match e.kind() {
            io::ErrorKind::WouldBlock => {
                src.readable = false;
                Ok(Some(Pump::Waiting))
            }
            io::ErrorKind::Interrupted => Ok(None),
            _ => Err(Fault::new(src.side, End::from_error(&e))),
        }
    }
}

/// What a write to the sink came to.
enum Wrote {
    Took(usize),
    Blocked,
    /// Interrupted: try again.
    Again,
}

/// Classifies a write's result; a write of nothing, or an error, is the sink breaking.
fn wrote(result: io::Result<usize>, side: Side) -> Result<Wrote, Fault> {
    match result {
        Ok(0) => Err(Fault::new(side, End::Reset)),
        Ok(n) => Ok(Wrote::Took(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Wrote::Blocked),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Wrote::Again),
        Err(e) => Err(Fault::new(side, End::from_error(&e))),
    }
}

/// Returns an empty buffer or pipe to the pool.
fn give_back(pool: &mut Pool, flight: Flight) {
    match flight {
        Flight::Buf(b) => pool.put(b),
        Flight::Pipe(p) => pool.put_pipe(p, true),
    }
}

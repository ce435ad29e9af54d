//! One direction of a relayed connection: read from one peer, write to the other.
//!
//! A [`Half`] reads only when its buffer is empty and writes what it holds before reading
//! again, so a slow destination stops reading from the source (backpressure reaches the sender
//! through TCP flow control) and memory per direction is one buffer. On end of stream it
//! flushes, then shuts the destination down for writing, leaving the other direction running.
//! Readiness is tracked in user space ([`Peer::readable`], [`Peer::writable`]): set by events,
//! cleared only on `WouldBlock`, as epoll's edge-triggered events require.

use std::io;

use crate::conn::{Fault, Stream, Tap};
use crate::pool::Pool;
use crate::sys::Pipe;
use crate::types::{Dir, End, Hold, Side};

/// A socket and what we know of its readiness.
pub struct Peer<S> {
    pub sock: S,
    pub side: Side,
    pub readable: bool,
    pub writable: bool,
}

impl<S> Peer<S> {
    pub fn new(sock: S, side: Side) -> Peer<S> {
        Peer {
            sock,
            side,
            readable: false,
            writable: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Relaying.
    Open,
    /// The source sent FIN: write out what is buffered, then shut the destination down.
    Flushing,
    /// FIN passed on; this direction is finished.
    Done,
}

/// Why [`Half::pump`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pump {
    /// Nothing more can happen until a socket becomes ready (or this direction is done).
    Waiting,
    /// The source is readable but the log queue is full.
    Stalled,
    /// The read budget ran out while there was more to do: call again soon.
    Yielded,
}

/// Where a direction's bytes in flight are.
enum Flight {
    /// Read into user space: the log gets a copy.
    Buf(Box<[u8]>),
    /// Spliced into a pipe: the bytes never leave the kernel (nobody logs them).
    Pipe(Pipe),
}

/// One direction's bytes in flight and state.
pub struct Half {
    dir: Dir,
    flight: Option<Flight>,
    pos: usize,
    len: usize,
    state: State,
    /// Why reading is paused, if it is.
    held: Option<Hold>,
    /// The last read filled its buffer: the source is streaming, worth splicing.
    bulk: bool,
    /// Bytes read from the source so far.
    pub bytes: u64,
}

impl Half {
    pub fn new(dir: Dir) -> Half {
        Half {
            dir,
            flight: None,
            pos: 0,
            len: 0,
            state: State::Open,
            held: None,
            bulk: false,
            bytes: 0,
        }
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

    fn hold<T: Tap>(&mut self, tap: &mut T, why: Hold) {
        if self.held.is_none() {
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
        loop {
            if let Some(flight) = &self.flight {
                while self.pos < self.len {
                    if !dst.writable {
                        self.hold(tap, Hold::Peer);
                        return Ok(Pump::Waiting);
                    }
                    let written = match flight {
                        Flight::Buf(buf) => dst.sock.write(&buf[self.pos..self.len]),
                        Flight::Pipe(pipe) => dst.sock.splice_out(pipe, self.len - self.pos),
                    };
                    match written {
                        Ok(0) => return Err(Fault::new(dst.side, End::Reset)),
                        Ok(n) => self.pos += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            dst.writable = false;
                            self.hold(tap, Hold::Peer);
                            return Ok(Pump::Waiting);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(Fault::new(dst.side, End::from_error(&e))),
                    }
                }
                self.release(pool);
                self.unhold(tap);
            }
            match self.state {
                State::Open => {}
                State::Flushing => {
                    if let Err(e) = dst.sock.shutdown_write() {
                        return Err(Fault::new(dst.side, End::from_error(&e)));
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
            self.unhold(tap);
            *budget -= 1;
            // Nobody needs the bytes and they come in bulk: splice them through a pipe if the
            // pool has one. Small exchanges stay with read/write, which costs them less.
            let pipe = if self.bulk && !tap.wants_data() {
                pool.get_pipe()
            } else {
                None
            };
            let (got, flight) = match pipe {
                Some(pipe) => (
                    src.sock.splice_in(&pipe, pool.pipe_size()),
                    Flight::Pipe(pipe),
                ),
                None => {
                    let mut buf = pool.get();
                    (src.sock.read(&mut buf), Flight::Buf(buf))
                }
            };
            match got {
                Ok(n) if n > 0 => {
                    match &flight {
                        Flight::Buf(buf) => {
                            tap.data(self.dir, &buf[..n]);
                            // A full buffer: the source has more than one read's worth.
                            self.bulk = n == buf.len();
                        }
                        Flight::Pipe(_) => self.bulk = n >= pool.buffer_size(),
                    }
                    self.bytes += n as u64;
                    self.flight = Some(flight);
                    self.pos = 0;
                    self.len = n;
                }
                Ok(_) => {
                    give_back(pool, flight);
                    self.state = State::Flushing;
                    tap.end(src.side, &End::Fin);
                }
                Err(e) => {
                    give_back(pool, flight);
                    match e.kind() {
                        io::ErrorKind::WouldBlock => {
                            src.readable = false;
                            return Ok(Pump::Waiting);
                        }
                        io::ErrorKind::Interrupted => {}
                        _ => return Err(Fault::new(src.side, End::from_error(&e))),
                    }
                }
            }
        }
    }
}

/// Returns an empty buffer or pipe to the pool.
fn give_back(pool: &mut Pool, flight: Flight) {
    match flight {
        Flight::Buf(b) => pool.put(b),
        Flight::Pipe(p) => pool.put_pipe(p, true),
    }
}

//! A deterministic simulation of the connection table ([`Table`]) without sockets.
//!
//! Each case is one to three connections built from a seed, sharing one table, one relay
//! pool (with few buffers, so some directions relay by peeking and some starve), one log
//! queue (the real one, small, drained by the simulation playing the logger) and one fake
//! clock. tcpspy's sockets are in-memory TCP endpoints (a kernel buffer with a capacity in each
//! direction) whose peer applications write, read, half-close and reset on their own random
//! schedule; a socket can also peek, discard and splice (into real pipes, with the pipe's
//! read and write), as kernel sockets do. The scheduler plays the reactor: it delivers
//! readiness events in random order (and spurious ones, and stray ones after a connection
//! closed), starts connections at different times (so slab keys are reused), completes,
//! refuses or never answers upstream connects, drains the log queue slowly and resumes what
//! waited for it, gives yielded and starved connections their turn, removes closed
//! connections only after some more events, moves the clock (so connect and idle timeouts
//! fire), and sometimes stops tcpspy. Sockets read short, write short, return `WouldBlock`
//! when empty or full and sometimes `EINTR`; budgets are tiny. After every step and at the
//! end the byte streams, the log, the half-closes, the ends, the buffers and the timers are
//! checked (see [`Sim::check_state`] and [`Sim::final_checks`]).
//!
//! `TCPSPY_SIM_CASES=N` runs N cases (default [`DEFAULT_CASES`]), `TCPSPY_SIM_START=S` starts at
//! seed S (default 0), `TCPSPY_SIM_SEED=S` replays that one seed. A failure prints its seed, the
//! case's parameters and the last steps.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tcpspy::log::event::Event;
use tcpspy::log::queue::{self, Receiver, Sender};
use tcpspy::pool::Pool;
use tcpspy::reactor::table::{Ready, Table, TableSettings};
use tcpspy::relay::{Conn, Phase, Release, Socket, Stage, Stream};
use tcpspy::sys::Pipe;
use tcpspy::types::{Dir, End, Side};

/// Cases CI runs: seeds 0..DEFAULT_CASES.
const DEFAULT_CASES: u64 = 3000;
/// A case that has not settled after this many steps is a liveness failure.
const MAX_STEPS: u64 = 1_000_000;
/// Steps kept for the failure report.
const TRACE: usize = 48;

#[test]
fn connection_table_simulation() {
    let env = |name: &str| {
        std::env::var(name).ok().map(|v| {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        })
    };
    let (first, count) = match env("TCPSPY_SIM_SEED") {
        Some(seed) => (seed, 1),
        None => (
            env("TCPSPY_SIM_START").unwrap_or(0),
            env("TCPSPY_SIM_CASES").unwrap_or(DEFAULT_CASES),
        ),
    };
    let mut seen = Coverage::default();
    for seed in first..first + count {
        match panic::catch_unwind(AssertUnwindSafe(|| run_case(seed))) {
            Ok(c) => seen.add(&c),
            Err(e) => {
                eprintln!(
                    "sim: seed {seed} failed; replay it with \
                     TCPSPY_SIM_SEED={seed} cargo test --release --test it sim::"
                );
                panic::resume_unwind(e);
            }
        }
    }
    eprintln!("sim: seeds {first}..{}: {seen:?}", first + count);
    if count >= DEFAULT_CASES {
        // The fixed seed set must reach every path it is meant to test, or it proves little.
        seen.assert_complete();
    }
}

/// A deterministic generator (splitmix64): the whole case follows from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }

    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }

    /// How much of `max` an operation moves: all of it half the time, else a random part
    /// (short reads and writes).
    fn amount(&mut self, max: usize) -> usize {
        if max <= 1 || self.chance(1, 2) {
            max
        } else {
            self.range(1, max)
        }
    }
}

/// What a case is made of, drawn from its seed.
#[derive(Clone, Debug)]
struct Params {
    buffer: usize,
    keep: usize,
    /// Relay buffers the pool hands out at most.
    max_buffers: usize,
    budget: u32,
    /// The relayed bytes go to the log (else: `--log none`, and splice may be used).
    log_data: bool,
    splice: bool,
    /// The sockets can peek and discard (kernel sockets can; a TLS session could not).
    peek: bool,
    /// The sockets read as the kernel's do: a read returns all there is up to what was
    /// asked, so a short one leaves nothing (`Stream::short_read_drains`); else reads return
    /// any amount and only `WouldBlock` says the socket is empty.
    drains: bool,
    /// Bytes the log queue holds before it refuses more.
    log_bound: usize,
    /// 1 in N socket calls is interrupted (0: never).
    eintr: u64,
    conns: Vec<ConnPlan>,
    connect_timeout_ms: u64,
    idle_ms: Option<u64>,
    /// Step at which tcpspy is stopped, and how long (ms) it then gives buffered bytes.
    stop: Option<(u64, u64)>,
    spurious: u32,
    /// Relative frequency of each kind of step.
    weights: Weights,
}

#[derive(Clone, Debug)]
struct ConnPlan {
    /// The step at which the client is accepted.
    start: u64,
    /// Kernel buffer capacities, [peer to tcpspy, tcpspy to peer] per side.
    caps: [[usize; 2]; 2],
    apps: [AppPlan; 2],
    connect: ConnectPlan,
    /// A pacing stage on one direction: at most `.1` bytes per write, `.2` ms apart.
    pace: Option<(Dir, usize, u64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnectPlan {
    Succeeds,
    Refused,
    /// The target never answers: the connect timeout ends it.
    Silent,
}

#[derive(Clone, Debug)]
struct AppPlan {
    len: usize,
    fin: bool,
    /// Resets once it has sent this many bytes.
    reset_after: Option<usize>,
    /// On reset, the bytes in flight towards tcpspy are lost (else tcpspy still reads them).
    reset_drops: bool,
    write_chunk: usize,
    read_chunk: usize,
}

#[derive(Clone, Copy, Debug)]
struct Weights {
    event: u32,
    write: [u32; 2],
    read: [u32; 2],
    drain: u32,
    reset: u32,
    connect: u32,
    reap: u32,
    tick: u32,
}

const REFUSED: i32 = 111;

impl Params {
    fn draw(rng: &mut Rng) -> Params {
        let buffer = rng.pick(&[1, 2, 3, 7, 16, 64, 512, 4096]);
        let w = [1, 3, 10];
        let weights = Weights {
            event: rng.pick(&w),
            write: [rng.pick(&w), rng.pick(&w)],
            read: [rng.pick(&w), rng.pick(&w)],
            drain: rng.pick(&w),
            reset: rng.pick(&[1, 10]),
            connect: rng.pick(&[1, 3, 30]),
            reap: rng.pick(&[1, 3, 30]),
            // Mostly, time jumps to a deadline only when nothing else can happen (as the
            // poll times out); sometimes in the middle of things.
            tick: rng.pick(&[0, 0, 1]),
        };
        let n = rng.pick(&[1, 1, 1, 2, 3]);
        let conns = (0..n)
            .map(|i| {
                let mut caps = [[0; 2]; 2];
                for c in caps.iter_mut().flatten() {
                    *c = rng.pick(&[1, 2, 5, 33, 256, 4096, 65536]);
                }
                ConnPlan {
                    start: if i == 0 { 0 } else { rng.below(400) },
                    caps,
                    apps: [AppPlan::draw(rng), AppPlan::draw(rng)],
                    connect: match rng.below(40) {
                        0 => ConnectPlan::Refused,
                        1 => ConnectPlan::Silent,
                        _ => ConnectPlan::Succeeds,
                    },
                    pace: rng.chance(1, 6).then(|| {
                        (
                            rng.pick(&Dir::BOTH),
                            rng.pick(&[1, 5, 1000]),
                            rng.pick(&[0, 1, 7]),
                        )
                    }),
                }
            })
            .collect();
        let log_data = rng.chance(3, 4);
        Params {
            buffer,
            keep: rng.range(0, 3),
            max_buffers: rng.pick(&[1, 2, 4, 64]),
            budget: rng.pick(&[1, 2, 3, 16]),
            log_data,
            splice: !log_data && rng.chance(1, 2),
            peek: rng.chance(3, 4),
            drains: rng.chance(1, 2),
            log_bound: rng.pick(&[1, buffer, 3 * buffer, 1000, usize::MAX / 4]),
            eintr: if rng.chance(1, 3) { 16 } else { 0 },
            conns,
            connect_timeout_ms: rng.pick(&[20, 500, 10_000]),
            idle_ms: rng.chance(1, 5).then(|| rng.pick(&[5, 50, 1000])),
            stop: rng
                .chance(1, 15)
                .then(|| (rng.below(3000), rng.pick(&[0, 10, 1000]))),
            spurious: rng.range(0, 12) as u32,
            weights,
        }
    }
}

impl AppPlan {
    fn draw(rng: &mut Rng) -> AppPlan {
        let len = match rng.below(10) {
            0 => 0,
            1 => 1,
            2..=4 => rng.range(1, 100),
            5..=8 => rng.range(100, 3000),
            _ => rng.range(3000, 30_000),
        };
        AppPlan {
            len,
            fin: rng.chance(4, 5),
            reset_after: rng.chance(1, 6).then(|| rng.range(0, len)),
            reset_drops: rng.chance(1, 2),
            write_chunk: rng.pick(&[1, 7, 100, 1500, 65536]),
            read_chunk: rng.pick(&[1, 7, 100, 1500, 65536]),
        }
    }
}

/// One TCP connection between tcpspy's socket and a peer application, as the kernels see it.
#[derive(Default)]
struct Link {
    /// Sent by the peer, not yet read by tcpspy.
    inbound: VecDeque<u8>,
    /// Written by tcpspy, not yet read by the peer.
    outbound: VecDeque<u8>,
    cap_in: usize,
    cap_out: usize,
    /// The peer shut down writing: once `inbound` is read, tcpspy reads EOF.
    peer_fin: bool,
    /// The peer reset the connection.
    reset: bool,
    /// tcpspy shut down writing.
    shut: bool,
    shutdowns: u32,
    /// What tcpspy consumed (read, discarded after a peek, spliced) and wrote, in order.
    read: Vec<u8>,
    written: Vec<u8>,
    eof_read: bool,
    error_read: bool,
    /// The server side: the connect completed (peer_addr answers).
    connected: bool,
    /// The server side: the connect failed with this errno, not yet taken.
    connect_error: Option<i32>,
    /// tcpspy closed the socket with a reset (SO_LINGER 0).
    reset_on_close: bool,
    /// tcpspy removed the connection: the socket is closed.
    closed: bool,
    /// Readiness the kernel has to report to tcpspy's poll.
    ev_read: bool,
    ev_write: bool,
    ev_error: bool,
}

/// A peer application: it sends its bytes, reads what comes, maybe half-closes, maybe resets.
#[derive(Default)]
struct App {
    data: Vec<u8>,
    sent: usize,
    fin_sent: bool,
    got: Vec<u8>,
    got_eof: bool,
    reset: bool,
}

/// A Close event: bytes delivered, bytes undelivered, ends.
type Closed = ([u64; 2], [u64; 2], Vec<(Side, End)>);

/// What the log received for one connection.
#[derive(Default, Debug)]
struct Logged {
    data: [Vec<u8>; 2],
    ends: Vec<(Side, End)>,
    close: Option<Closed>,
    connected: bool,
}

/// One simulated connection.
struct Case {
    links: [Link; 2],
    apps: [App; 2],
    /// The table's key while the connection is in it.
    key: Option<usize>,
    started: bool,
    /// How it came to be closed, once it has.
    closed: Option<Cause>,
    /// Its ends when tcpspy began to stop.
    ends_at_stop: Vec<(Side, End)>,
    /// When tcpspy last took or gave a byte of it (the sim's clock, ms).
    last_moved: u64,
    logged: Logged,
}

struct World {
    rng: Rng,
    cases: Vec<Case>,
    eintr: u64,
    tx: Arc<Sender>,
    stopping: bool,
    log_data: bool,
    peek: bool,
    splice: bool,
    drains: bool,
    /// The sim's clock, ms.
    now_ms: u64,
    /// Calls that tell which paths the case took.
    peeks: u64,
    splices: u64,
}

impl World {
    fn interrupted(&mut self) -> bool {
        self.eintr > 0 && self.rng.below(self.eintr) == 0
    }

    /// A read must wait for the log's leave: the queue has room, tcpspy is not stopping.
    fn assert_may_read(&self, c: usize, side: Side) {
        assert!(!self.stopping, "#{c} {side:?} read while stopping");
        if self.log_data {
            assert!(
                self.tx.has_room(),
                "#{c} {side:?} read while the log queue was full"
            );
        }
    }
}

/// tcpspy's socket towards one side of one case.
struct SimSock {
    w: Rc<RefCell<World>>,
    case: usize,
    side: Side,
}

fn err(kind: io::ErrorKind) -> io::Error {
    io::Error::from(kind)
}

impl SimSock {
    /// The bytes tcpspy may take from the link now, or why not.
    fn take(&mut self, max: usize, consume: bool, out: &mut Vec<u8>) -> io::Result<usize> {
        let mut guard = self.w.borrow_mut();
        let w = &mut *guard;
        w.assert_may_read(self.case, self.side);
        assert!(max > 0, "read into an empty buffer");
        let link = &w.cases[self.case].links[self.side.index()];
        assert!(!link.closed, "a closed socket was read");
        assert!(
            !link.eof_read && !link.error_read,
            "{:?} read again after EOF or an error",
            self.side
        );
        if w.interrupted() {
            return Err(err(io::ErrorKind::Interrupted));
        }
        let link = &mut w.cases[self.case].links[self.side.index()];
        if !link.inbound.is_empty() {
            let n = match w.drains {
                true => max.min(link.inbound.len()),
                false => w.rng.amount(max.min(link.inbound.len())),
            };
            out.extend(link.inbound.iter().take(n));
            if consume {
                link.inbound.drain(..n);
                link.read.extend_from_slice(&out[out.len() - n..]);
                w.cases[self.case].last_moved = w.now_ms;
            }
            return Ok(n);
        }
        // A peek that shows the end is the end: tcpspy acts on it as on a read.
        if link.reset {
            link.error_read = true;
            return Err(err(io::ErrorKind::ConnectionReset));
        }
        if link.peer_fin {
            link.eof_read = true;
            return Ok(0);
        }
        Err(err(io::ErrorKind::WouldBlock))
    }

    /// Bytes tcpspy writes towards the peer: `accept` says how many of `offered` fit.
    fn give(&mut self, offered: usize) -> io::Result<usize> {
        let mut guard = self.w.borrow_mut();
        let w = &mut *guard;
        let link = &w.cases[self.case].links[self.side.index()];
        assert!(!link.closed, "a closed socket was written");
        assert!(!link.shut, "{:?} written after shutdown_write", self.side);
        assert!(offered > 0, "empty write");
        if w.interrupted() {
            return Err(err(io::ErrorKind::Interrupted));
        }
        let link = &w.cases[self.case].links[self.side.index()];
        if link.reset {
            // The first write after a RST reports it, later ones EPIPE; either means "gone".
            let kind = if w.rng.chance(1, 2) {
                io::ErrorKind::ConnectionReset
            } else {
                io::ErrorKind::BrokenPipe
            };
            return Err(err(kind));
        }
        let room = link.cap_out - link.outbound.len();
        if room == 0 {
            return Err(err(io::ErrorKind::WouldBlock));
        }
        Ok(w.rng.amount(room.min(offered)))
    }

    fn put(&mut self, bytes: &[u8]) {
        let mut guard = self.w.borrow_mut();
        let w = &mut *guard;
        let case = &mut w.cases[self.case];
        case.last_moved = w.now_ms;
        let link = &mut case.links[self.side.index()];
        link.outbound.extend(bytes);
        link.written.extend_from_slice(bytes);
    }
}

impl Stream for SimSock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut out = Vec::new();
        let n = self.take(buf.len(), true, &mut out)?;
        buf[..n].copy_from_slice(&out);
        Ok(n)
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.give(buf.len())?;
        self.put(&buf[..n]);
        Ok(n)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        let mut guard = self.w.borrow_mut();
        let w = &mut *guard;
        let case = &mut w.cases[self.case];
        let i = self.side.index();
        case.links[i].shutdowns += 1;
        assert_eq!(
            case.links[i].shutdowns, 1,
            "{:?} shut down more than once",
            self.side
        );
        assert!(
            case.links[self.side.other().index()].eof_read,
            "{:?} shut down before the other side's EOF was read",
            self.side
        );
        assert_eq!(
            case.links[i].written,
            case.links[self.side.other().index()].read,
            "{:?} shut down with bytes for it still in flight",
            self.side
        );
        if case.links[i].reset {
            // Linux: shutdown(2) on a connection the peer has reset.
            return Err(err(io::ErrorKind::NotConnected));
        }
        case.links[i].shut = true;
        Ok(())
    }

    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut out = Vec::new();
        let n = self.take(buf.len(), false, &mut out)?;
        buf[..n].copy_from_slice(&out);
        Ok(n)
    }

    fn discard(&mut self, n: usize) -> io::Result<usize> {
        let mut guard = self.w.borrow_mut();
        let w = &mut *guard;
        w.peeks += 1;
        w.cases[self.case].last_moved = w.now_ms;
        let link = &mut w.cases[self.case].links[self.side.index()];
        assert!(n <= link.inbound.len(), "discarded more than was peeked");
        let gone: Vec<u8> = link.inbound.drain(..n).collect();
        link.read.extend_from_slice(&gone);
        Ok(n)
    }

    fn can_peek(&self) -> bool {
        self.w.borrow().peek
    }

    fn can_splice(&self) -> bool {
        self.w.borrow().splice
    }

    fn short_read_drains(&self) -> bool {
        self.w.borrow().drains
    }

    fn splice_in(&mut self, pipe: &Pipe, max: usize) -> io::Result<usize> {
        let mut out = Vec::new();
        let n = self.take(max, false, &mut out)?;
        if n == 0 {
            return Ok(0);
        }
        let put = pipe.fill(&out)?;
        let mut w = self.w.borrow_mut();
        w.splices += 1;
        w.cases[self.case].last_moved = w.now_ms;
        let link = &mut w.cases[self.case].links[self.side.index()];
        let gone: Vec<u8> = link.inbound.drain(..put).collect();
        link.read.extend_from_slice(&gone);
        Ok(put)
    }

    fn splice_out(&mut self, pipe: &Pipe, max: usize) -> io::Result<usize> {
        let n = self.give(max)?;
        let mut buf = vec![0u8; n];
        let got = pipe.drain(&mut buf)?;
        self.put(&buf[..got]);
        Ok(got)
    }
}

impl Socket for SimSock {
    fn take_error(&self) -> io::Result<Option<io::Error>> {
        let mut w = self.w.borrow_mut();
        let link = &mut w.cases[self.case].links[self.side.index()];
        if let Some(errno) = link.connect_error.take() {
            return Ok(Some(io::Error::from_raw_os_error(errno)));
        }
        Ok(None)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        let w = self.w.borrow();
        let link = &w.cases[self.case].links[self.side.index()];
        if self.side == Side::Server && !link.connected {
            return Err(err(io::ErrorKind::NotConnected));
        }
        Ok(addr(self.side))
    }

    fn reset_on_close(&self) {
        self.w.borrow_mut().cases[self.case].links[self.side.index()].reset_on_close = true;
    }
}

fn addr(side: Side) -> SocketAddr {
    match side {
        Side::Client => SocketAddr::from(([127, 0, 0, 1], 40000)),
        Side::Server => SocketAddr::from(([127, 0, 0, 1], 8000)),
    }
}

/// A stage that lets at most `most` bytes through per write, `gap` apart: the table must
/// come back at the stage's time (its wake timer), or the bytes never arrive.
struct Pace {
    most: usize,
    gap: Duration,
    next: Option<Instant>,
}

impl Stage for Pace {
    fn name(&self) -> &'static str {
        "pace"
    }
    fn release(&mut self, pending: usize, now: Instant) -> Release {
        match self.next {
            Some(t) if t > now => Release::At(t),
            _ => Release::Now(pending.min(self.most)),
        }
    }
    fn wrote(&mut self, _n: usize, now: Instant) {
        self.next = Some(now + self.gap);
    }
}

/// One step of the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    /// The client of a case is accepted and its upstream connect starts.
    Open(usize),
    /// The poll reports readiness of tcpspy's socket towards a side.
    Event(usize, Side, bool, bool, bool),
    /// Readiness that turns out to be nothing (epoll's readiness is a hint).
    Spurious(usize, Side, bool, bool),
    AppWrite(usize, Side),
    AppFin(usize, Side),
    AppRead(usize, Side),
    AppEof(usize, Side),
    AppReset(usize, Side),
    Connect(usize),
    ConnectRefused(usize),
    /// The logger writes some of the queue.
    Drain,
    /// The logger's wake-up: stalled connections are driven again.
    Resume,
    /// The connections whose budget ran out (or that wait for a buffer) get their turn.
    Again,
    /// The end of an event batch: closed connections are removed.
    Reap,
    /// The poll times out at the nearest deadline.
    Tick,
    /// One turn of the reactor's stop.
    StopTurn,
}

/// How a connection came to be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    /// Both directions finished, or a side broke.
    Relay,
    ConnectRefused,
    ConnectTimeout,
    Idle,
    Stop,
}

/// What a case went through, to check that the seed set covers every path.
#[derive(Default, Debug)]
struct Coverage {
    cases: u64,
    steps: u64,
    closed_clean: u64,
    left_open: u64,
    closed_by_reset: u64,
    reset_left_open: u64,
    connect_refused: u64,
    connect_timed_out: u64,
    idle_closed: u64,
    stopped: u64,
    stopped_with_undelivered: u64,
    undelivered: u64,
    peeked: u64,
    spliced: u64,
    keys_reused: u64,
    several: u64,
    paced: u64,
    half_closed_then_data: u64,
}

impl Coverage {
    fn add(&mut self, c: &Coverage) {
        self.cases += c.cases;
        self.steps += c.steps;
        self.closed_clean += c.closed_clean;
        self.left_open += c.left_open;
        self.closed_by_reset += c.closed_by_reset;
        self.reset_left_open += c.reset_left_open;
        self.connect_refused += c.connect_refused;
        self.connect_timed_out += c.connect_timed_out;
        self.idle_closed += c.idle_closed;
        self.stopped += c.stopped;
        self.stopped_with_undelivered += c.stopped_with_undelivered;
        self.undelivered += c.undelivered;
        self.peeked += c.peeked;
        self.spliced += c.spliced;
        self.keys_reused += c.keys_reused;
        self.several += c.several;
        self.paced += c.paced;
        self.half_closed_then_data += c.half_closed_then_data;
    }

    fn assert_complete(&self) {
        let all = [
            self.closed_clean,
            self.left_open,
            self.closed_by_reset,
            self.reset_left_open,
            self.connect_refused,
            self.connect_timed_out,
            self.idle_closed,
            self.stopped,
            self.stopped_with_undelivered,
            self.undelivered,
            self.peeked,
            self.spliced,
            self.keys_reused,
            self.several,
            self.paced,
            self.half_closed_then_data,
        ];
        assert!(
            all.iter().all(|n| *n > 0),
            "a path was never taken: {self:#?}"
        );
    }
}

struct Sim {
    seed: u64,
    p: Params,
    w: Rc<RefCell<World>>,
    table: Table<SimSock>,
    rx: Receiver,
    /// Events taken from the queue whose bytes the logger has not "written" yet.
    unwritten: usize,
    spent: Vec<Vec<u8>>,
    ids: HashMap<u64, usize>,
    base: Instant,
    now_ms: u64,
    stop_at: Option<u64>,
    spurious_left: u32,
    keys_used: Vec<usize>,
    step: u64,
    trace: VecDeque<(u64, Act)>,
    acts: Vec<(u32, Act)>,
    cov: Coverage,
}

fn run_case(seed: u64) -> Coverage {
    let mut sim = Sim::new(seed);
    sim.run();
    sim.final_checks();
    std::mem::take(&mut sim.cov)
}

impl Drop for Sim {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "sim: seed {} at step {} ({} ms); {:#?}",
                self.seed, self.step, self.now_ms, self.p
            );
            eprintln!("sim: last steps:");
            for t in &self.trace {
                eprintln!("  {t:?}");
            }
            eprintln!("sim: now {self}");
        }
    }
}

impl fmt::Display for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(w) = self.w.try_borrow() else {
            return f.write_str("(world borrowed)");
        };
        write!(
            f,
            "buffers out {}, pipes out {}, log has room {}, deadlines {}; ",
            self.table.pool.buffers_out(),
            self.table.pool.pipes_out(),
            w.tx.has_room(),
            self.table.deadlines()
        )?;
        for (i, c) in w.cases.iter().enumerate() {
            let entry = c.key.and_then(|k| self.table.get(k));
            write!(
                f,
                "\n  #{i} key {:?} closed {:?} phase {:?} logged ends {:?}: ",
                c.key,
                c.closed,
                entry.map(|e| e.conn.phase()),
                c.logged.ends
            )?;
            for side in Side::BOTH {
                let (l, a) = (&c.links[side.index()], &c.apps[side.index()]);
                write!(
                    f,
                    "{side:?}: app sent {}/{} fin {} reset {} got {} eof {}; kernel in {} out \
                     {}; tcpspy read {} wrote {} eof {} shut {}; ",
                    a.sent,
                    a.data.len(),
                    a.fin_sent,
                    a.reset,
                    a.got.len(),
                    a.got_eof,
                    l.inbound.len(),
                    l.outbound.len(),
                    l.read.len(),
                    l.written.len(),
                    l.eof_read,
                    l.shut
                )?;
            }
        }
        Ok(())
    }
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng(seed);
        let p = Params::draw(&mut rng);
        let cases = p
            .conns
            .iter()
            .map(|plan| Case {
                links: [0, 1].map(|i| Link {
                    cap_in: plan.caps[i][0],
                    cap_out: plan.caps[i][1],
                    ..Link::default()
                }),
                apps: [0, 1].map(|i| App {
                    data: (0..plan.apps[i].len).map(|_| rng.next() as u8).collect(),
                    ..App::default()
                }),
                key: None,
                started: false,
                closed: None,
                ends_at_stop: Vec::new(),
                last_moved: 0,
                logged: Logged::default(),
            })
            .collect();
        let (tx, rx) = queue::channel(p.log_bound, p.buffer, None);
        let tx = Arc::new(tx);
        let w = Rc::new(RefCell::new(World {
            rng,
            cases,
            eintr: p.eintr,
            tx: tx.clone(),
            stopping: false,
            log_data: p.log_data,
            peek: p.peek,
            splice: p.splice,
            drains: p.drains,
            peeks: 0,
            splices: 0,
            now_ms: 0,
        }));
        let mut pool = Pool::new(p.buffer, p.keep, p.max_buffers);
        if p.splice {
            pool = pool.with_splice();
        }
        let table = Table::new(
            TableSettings {
                connect_timeout: Duration::from_millis(p.connect_timeout_ms),
                idle_timeout: p.idle_ms.map(Duration::from_millis),
                log_data: p.log_data,
                label_prefix: None,
                read_budget: p.budget,
            },
            pool,
            tx,
        );
        Sim {
            seed,
            table,
            rx,
            unwritten: 0,
            spent: Vec::new(),
            ids: HashMap::new(),
            base: Instant::now(),
            now_ms: 0,
            stop_at: None,
            spurious_left: p.spurious,
            keys_used: Vec::new(),
            step: 0,
            trace: VecDeque::with_capacity(TRACE),
            acts: Vec::new(),
            cov: Coverage {
                cases: 1,
                several: u64::from(p.conns.len() > 1),
                ..Coverage::default()
            },
            p,
            w,
        }
    }

    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.now_ms)
    }

    fn run(&mut self) {
        loop {
            self.step += 1;
            assert!(self.step < MAX_STEPS, "not settled after {MAX_STEPS} steps");
            // The clock moves a little with every step.
            let dt = self.w.borrow_mut().rng.below(3);
            self.now_ms += dt;
            self.w.borrow_mut().now_ms = self.now_ms;
            if let Some((at, grace)) = self.p.stop
                && self.step >= at
                && self.stop_at.is_none()
            {
                self.stop_at = Some(self.now_ms + grace);
                for c in self.w.borrow_mut().cases.iter_mut() {
                    c.ends_at_stop = c.logged.ends.clone();
                }
                self.w.borrow_mut().stopping = true;
                self.table.begin_stop();
            }
            self.enabled();
            let total: u64 = self.acts.iter().map(|(w, _)| u64::from(*w)).sum();
            if total == 0 {
                break;
            }
            let mut r = self.w.borrow_mut().rng.below(total);
            let act = self
                .acts
                .iter()
                .find(|(w, _)| {
                    let hit = r < u64::from(*w);
                    r = r.saturating_sub(u64::from(*w));
                    hit
                })
                .map(|(_, a)| *a)
                .expect("a weighted pick");
            self.apply(act);
            // The reactor acts on due deadlines after every batch.
            let now = self.now();
            self.table.expire(now);
            self.collect();
            self.check_state();
        }
        self.cov.steps = self.step;
    }

    /// Every step that can happen now, with its weight.
    fn enabled(&mut self) {
        let mut acts = std::mem::take(&mut self.acts);
        acts.clear();
        let wt = self.p.weights;
        let w = self.w.borrow();
        for (c, case) in w.cases.iter().enumerate() {
            let plan = &self.p.conns[c];
            if !case.started {
                if self.stop_at.is_none() {
                    // Clients come at their time, or sooner when nothing else happens.
                    let weight = if self.step >= plan.start { 3 } else { 1 };
                    acts.push((weight, Act::Open(c)));
                }
                continue;
            }
            let in_table = case.key.is_some();
            let open = case.closed.is_none();
            for side in Side::BOTH {
                let i = side.index();
                let (l, a, app) = (&case.links[i], &case.apps[i], &plan.apps[i]);
                if in_table && (l.ev_read || l.ev_write || l.ev_error) {
                    acts.push((
                        wt.event,
                        Act::Event(c, side, l.ev_read, l.ev_write, l.ev_error),
                    ));
                }
                if in_table && self.spurious_left > 0 {
                    acts.push((1, Act::Spurious(c, side, true, true)));
                }
                let active = side == Side::Client || l.connected;
                if !active || a.reset {
                    continue;
                }
                // A socket tcpspy closed with a reset takes its unread bytes along; one it
                // closed with a FIN still delivers them.
                if l.closed && l.reset_on_close {
                    continue;
                }
                if open && !l.closed {
                    if a.sent < a.data.len() && l.inbound.len() < l.cap_in {
                        acts.push((wt.write[i], Act::AppWrite(c, side)));
                    }
                    if a.sent == a.data.len() && app.fin && !a.fin_sent {
                        acts.push((wt.write[i], Act::AppFin(c, side)));
                    }
                    if app.reset_after.is_some_and(|n| a.sent >= n) {
                        acts.push((wt.reset, Act::AppReset(c, side)));
                    }
                }
                if !l.outbound.is_empty() {
                    acts.push((wt.read[i], Act::AppRead(c, side)));
                } else if l.shut && !a.got_eof {
                    acts.push((wt.read[i], Act::AppEof(c, side)));
                }
            }
            let server = &case.links[Side::Server.index()];
            let connecting = open
                && !server.connected
                && server.connect_error.is_none()
                && case
                    .key
                    .and_then(|k| self.table.get(k))
                    .is_some_and(|e| e.conn.phase() == Phase::Connecting);
            if connecting {
                match plan.connect {
                    ConnectPlan::Succeeds => acts.push((wt.connect, Act::Connect(c))),
                    ConnectPlan::Refused => acts.push((wt.connect, Act::ConnectRefused(c))),
                    ConnectPlan::Silent => {}
                }
            }
        }
        if self.unwritten > 0 {
            acts.push((wt.drain, Act::Drain));
        }
        if self.table.has_stalled() && w.tx.has_room() {
            acts.push((3, Act::Resume));
        }
        if self.table.has_work() {
            acts.push((3, Act::Again));
        }
        if w.cases
            .iter()
            .any(|c| c.closed.is_some() && c.key.is_some())
        {
            acts.push((wt.reap, Act::Reap));
        }
        if self.next_deadline().is_some() {
            let busy = !acts.is_empty() || self.stop_at.is_some();
            acts.push((if busy { wt.tick } else { 1 }, Act::Tick));
        }
        if self.stop_at.is_some() && !self.table.is_empty() {
            acts.push((3, Act::StopTurn));
        }
        drop(w);
        self.acts = acts;
    }

    /// The nearest time the reactor's poll would wake for.
    fn next_deadline(&self) -> Option<u64> {
        let table = self.table.next_deadline().map(|t| {
            let ms = t.saturating_duration_since(self.base).as_millis() as u64;
            // Instants round down to the millisecond here; wake just after.
            ms + 1
        });
        let stop = self.stop_at.filter(|_| !self.table.is_empty());
        match (table, stop) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn apply(&mut self, mut act: Act) {
        let now = self.now();
        match act {
            Act::Open(c) => self.open(c, now),
            Act::Event(c, side, r, wr, e) => {
                let (r, wr, e, closed, key) = {
                    let mut w = self.w.borrow_mut();
                    let w = &mut *w;
                    // mio may report the kinds of readiness together or apart.
                    let (r, wr) = if r && wr && w.rng.chance(1, 2) {
                        (true, false)
                    } else {
                        (r, wr)
                    };
                    let l = &mut w.cases[c].links[side.index()];
                    l.ev_read &= !r;
                    l.ev_write &= !wr;
                    l.ev_error &= !e;
                    // epoll's mask says RDHUP in every report once the FIN is in.
                    let closed = l.peer_fin || l.reset;
                    (r, wr, e, closed, w.cases[c].key)
                };
                act = Act::Event(c, side, r, wr, e);
                if let Some(key) = key {
                    let ready = Ready {
                        readable: r,
                        writable: wr,
                        error: e,
                        read_closed: r && closed,
                    };
                    self.table.event(key, side, ready, now);
                }
            }
            Act::Spurious(c, side, _, _) => {
                self.spurious_left -= 1;
                let (r, wr) = match self.w.borrow_mut().rng.below(3) {
                    0 => (true, false),
                    1 => (false, true),
                    _ => (true, true),
                };
                act = Act::Spurious(c, side, r, wr);
                let key = self.w.borrow().cases[c].key;
                if let Some(key) = key {
                    let ready = Ready {
                        readable: r,
                        writable: wr,
                        error: false,
                        read_closed: false,
                    };
                    self.table.event(key, side, ready, now);
                }
            }
            Act::AppWrite(c, side) => {
                let i = side.index();
                let mut w = self.w.borrow_mut();
                let w = &mut *w;
                let case = &mut w.cases[c];
                let (l, a) = (&mut case.links[i], &mut case.apps[i]);
                let max = (l.cap_in - l.inbound.len())
                    .min(a.data.len() - a.sent)
                    .min(self.p.conns[c].apps[i].write_chunk);
                let n = w.rng.amount(max);
                l.inbound.extend(&a.data[a.sent..a.sent + n]);
                a.sent += n;
                l.ev_read = true;
                if case.links[side.other().index()].eof_read {
                    self.cov.half_closed_then_data = 1;
                }
            }
            Act::AppFin(c, side) => {
                let mut w = self.w.borrow_mut();
                let case = &mut w.cases[c];
                let l = &mut case.links[side.index()];
                l.peer_fin = true;
                l.ev_read = true;
                case.apps[side.index()].fin_sent = true;
            }
            Act::AppRead(c, side) => {
                let i = side.index();
                let mut w = self.w.borrow_mut();
                let w = &mut *w;
                let case = &mut w.cases[c];
                let l = &mut case.links[i];
                let n = w
                    .rng
                    .amount(l.outbound.len().min(self.p.conns[c].apps[i].read_chunk));
                case.apps[i].got.extend(l.outbound.drain(..n));
                l.ev_write = true;
            }
            Act::AppEof(c, side) => self.w.borrow_mut().cases[c].apps[side.index()].got_eof = true,
            Act::AppReset(c, side) => {
                let i = side.index();
                let mut w = self.w.borrow_mut();
                let case = &mut w.cases[c];
                let l = &mut case.links[i];
                l.reset = true;
                if self.p.conns[c].apps[i].reset_drops {
                    l.inbound.clear();
                }
                // What the peer had not read yet dies with its socket.
                l.outbound.clear();
                l.ev_read = true;
                l.ev_write = true;
                l.ev_error = true;
                case.apps[i].reset = true;
            }
            Act::Connect(c) => {
                // The connect completes with a writable event on the server socket.
                let mut w = self.w.borrow_mut();
                let l = &mut w.cases[c].links[Side::Server.index()];
                l.connected = true;
                l.ev_write = true;
            }
            Act::ConnectRefused(c) => {
                let mut w = self.w.borrow_mut();
                let l = &mut w.cases[c].links[Side::Server.index()];
                l.connect_error = Some(REFUSED);
                l.ev_error = true;
                l.ev_write = true;
            }
            Act::Drain => {
                let n = self.w.borrow_mut().rng.amount(self.unwritten);
                self.unwritten -= n;
                self.rx.release(n, &mut self.spent);
            }
            Act::Resume => self.table.resume_stalled(now),
            Act::Again => self.table.run_again(now),
            Act::Reap => self.reap(),
            Act::Tick => {
                if let Some(at) = self.next_deadline() {
                    self.now_ms = self.now_ms.max(at);
                    self.w.borrow_mut().now_ms = self.now_ms;
                }
                let now = self.now();
                self.table.expire(now);
                if let Some(at) = self.stop_at {
                    self.table.flush_for_stop(now, self.now_ms >= at);
                }
            }
            Act::StopTurn => {
                let late = self.stop_at.is_some_and(|at| self.now_ms >= at);
                self.table.flush_for_stop(now, late);
            }
        }
        if self.trace.len() == TRACE {
            self.trace.pop_front();
        }
        self.trace.push_back((self.step, act));
    }

    /// The reactor's accept and upstream connect: the client socket reports writable once
    /// registered; the server's first event is its connect's outcome.
    fn open(&mut self, c: usize, now: Instant) {
        let sock = |side| SimSock {
            w: self.w.clone(),
            case: c,
            side,
        };
        let mut conn = Conn::new(sock(Side::Client), sock(Side::Server));
        if let Some((dir, most, gap)) = self.p.conns[c].pace {
            conn.add_stage(
                dir,
                Box::new(Pace {
                    most,
                    gap: Duration::from_millis(gap),
                    next: None,
                }),
            );
            self.cov.paced = 1;
        }
        let id = c as u64 + 1;
        self.ids.insert(id, c);
        let key = self
            .table
            .insert(id, 0, addr(Side::Client), addr(Side::Server), conn, now);
        if self.keys_used.contains(&key) {
            self.cov.keys_reused = 1;
        }
        self.keys_used.push(key);
        let mut w = self.w.borrow_mut();
        let case = &mut w.cases[c];
        case.started = true;
        case.key = Some(key);
        case.links[Side::Client.index()].ev_write = true;
    }

    /// The end of a batch: closed connections are removed, their sockets closed.
    fn reap(&mut self) {
        self.table.reap();
        let mut w = self.w.borrow_mut();
        for case in w.cases.iter_mut().filter(|c| c.closed.is_some()) {
            if case.key.take().is_some() {
                for l in &mut case.links {
                    l.closed = true;
                    l.ev_read = false;
                    l.ev_write = false;
                    l.ev_error = false;
                }
            }
        }
    }

    /// Plays the logger: takes every queued event (its bytes stay counted until `Drain`).
    fn collect(&mut self) {
        let mut batch = VecDeque::new();
        if !self.rx.try_recv_batch(&mut batch) {
            return;
        }
        let mut w = self.w.borrow_mut();
        for event in batch {
            self.unwritten += event.cost();
            let id = match &event {
                Event::Open { id, .. }
                | Event::Connected { id, .. }
                | Event::Data { id, .. }
                | Event::Held { id, .. }
                | Event::End { id, .. }
                | Event::Note { id, .. }
                | Event::Tls { id, .. }
                | Event::Wire { id, .. }
                | Event::Close { id, .. } => *id,
                Event::Line(_) | Event::Stop | Event::Rule { .. } | Event::Keys(_) => continue,
            };
            let c = *self.ids.get(&id).expect("an event of a known connection");
            let case = &mut w.cases[c];
            let logged = &mut case.logged;
            assert!(logged.close.is_none(), "#{c}: an event after the Close");
            match event {
                Event::Data { dir, bytes, .. } => {
                    assert!(!bytes.is_empty(), "an empty chunk was logged");
                    logged.data[dir.index()].extend_from_slice(&bytes);
                    self.spent.push(bytes);
                }
                Event::Connected { .. } => logged.connected = true,
                Event::End { side, how, .. } => logged.ends.push((side, how)),
                Event::Close {
                    bytes,
                    undelivered,
                    ends,
                    ..
                } => {
                    logged.close = Some((bytes, undelivered, ends.clone()));
                    let cause = match ends.first() {
                        _ if self.stop_at.is_some()
                            && ends.iter().any(|(_, e)| *e == End::Shutdown) =>
                        {
                            Cause::Stop
                        }
                        Some((_, End::ConnectFailed(_))) => Cause::ConnectRefused,
                        Some((_, End::ConnectTimeout)) => Cause::ConnectTimeout,
                        _ if ends.iter().any(|(_, e)| *e == End::IdleTimeout) => Cause::Idle,
                        _ => Cause::Relay,
                    };
                    if cause == Cause::Idle
                        && let Some(idle) = self.p.idle_ms
                    {
                        // Reads and writes are activity: an idle close comes only after a
                        // whole timeout with no byte either way.
                        assert!(
                            self.now_ms.saturating_sub(case.last_moved) >= idle,
                            "#{c} closed as idle {} ms after a byte moved (timeout {idle} ms)",
                            self.now_ms.saturating_sub(case.last_moved)
                        );
                    }
                    case.closed = Some(cause);
                }
                _ => {}
            }
        }
    }

    /// What must hold after every step.
    fn check_state(&self) {
        let w = self.w.borrow();
        let mut flights = 0;
        let mut live = 0;
        for (c, case) in w.cases.iter().enumerate() {
            let entry = case.key.and_then(|k| self.table.get(k));
            if case.key.is_some() {
                assert!(entry.is_some(), "#{c} lost its entry before being reaped");
            }
            let logged = &case.logged;
            // The log tells every end as it happens; the connection keeps each side's last one (a
            // reset after a FIN replaces it), in the order of those last ends.
            let mut last: Vec<(Side, End)> = Vec::new();
            for (side, how) in &logged.ends {
                if let Some(prev) = last.iter().position(|(s, _)| s == side) {
                    let prev_how = last.remove(prev).1;
                    assert_eq!(prev_how, End::Fin, "#{c}: only a FIN is followed by an end");
                    assert!(
                        matches!(how, End::Reset | End::Error(_)),
                        "#{c}: {how:?} after a FIN"
                    );
                }
                last.push((*side, how.clone()));
            }
            if let Some(e) = entry {
                assert_eq!(
                    last,
                    e.conn.ends(),
                    "#{c}: the log and the connection disagree"
                );
                assert_eq!(
                    e.is_done(),
                    case.closed.is_some(),
                    "#{c}: done, yet no Close logged"
                );
            }
            if let Some((_, _, ends)) = &logged.close {
                assert_eq!(&last, ends, "#{c}: the Close's ends are not the ends told");
                assert_eq!(ends.len(), 2, "#{c}: closed before both sides ended");
            }
            let mut in_flight = false;
            for dir in Dir::BOTH {
                let (src, dst) = (dir.source().index(), dir.source().other().index());
                let read = &case.links[src].read;
                if self.p.log_data {
                    assert_eq!(
                        &logged.data[dir.index()],
                        read,
                        "#{c} {dir:?}: read != logged"
                    );
                } else {
                    assert!(
                        logged.data[dir.index()].is_empty(),
                        "#{c}: logged with --log none"
                    );
                }
                if let Some(e) = entry {
                    assert_eq!(e.conn.bytes(dir), read.len() as u64, "#{c} {dir:?} count");
                }
                let written = &case.links[dst].written;
                assert!(
                    read.starts_with(written),
                    "#{c} {dir:?}: wrote what was not read"
                );
                in_flight |= written.len() < read.len();
            }
            match entry {
                Some(e) if !e.is_done() => {
                    live += 1;
                    flights += e.conn.flights();
                    assert_eq!(
                        e.conn.holds_buffers(),
                        in_flight,
                        "#{c}: holds a buffer iff bytes are in flight"
                    );
                }
                Some(e) => assert!(!e.conn.holds_buffers(), "#{c}: closed, holding a buffer"),
                None => {}
            }
            if let Some((bytes, undelivered, _)) = &logged.close {
                for dir in Dir::BOTH {
                    let (src, dst) = (dir.source().index(), dir.source().other().index());
                    let read = case.links[src].read.len() as u64;
                    let written = case.links[dst].written.len() as u64;
                    assert_eq!(
                        read - undelivered[dir.index()],
                        written,
                        "#{c} {dir:?}: read - undelivered"
                    );
                    assert_eq!(bytes[dir.index()], written, "#{c} {dir:?}: delivered");
                }
            }
        }
        let pool = &self.table.pool;
        assert_eq!(
            pool.buffers_out() + pool.pipes_out(),
            flights,
            "buffers and pipes out = directions holding one"
        );
        assert!(
            pool.buffers_out() <= pool.max_buffers(),
            "past the buffer bound"
        );
        assert!(
            self.table.deadlines() <= 3 * live,
            "{} deadlines for {live} live connections",
            self.table.deadlines()
        );
    }

    fn final_checks(&mut self) {
        // The reactor's last batch ends with a reap.
        self.reap();
        self.collect();
        self.check_state();
        let world = self.w.clone();
        let w = world.borrow();
        let mut cov = Coverage {
            peeked: u64::from(w.peeks > 0),
            spliced: u64::from(w.splices > 0),
            ..Coverage::default()
        };
        if w.cases.iter().all(|c| c.closed.is_some()) {
            assert!(
                self.table.is_empty(),
                "every connection closed, yet the table holds some"
            );
            assert_eq!(
                self.table.deadlines(),
                0,
                "deadlines outlived their connections"
            );
            assert_eq!(
                self.table.pool.buffers_out(),
                0,
                "buffers outlived their connections"
            );
        }
        for (c, case) in w.cases.iter().enumerate() {
            self.final_case(c, case, &mut cov);
        }
        self.cov.add(&cov);
    }

    fn final_case(&self, c: usize, case: &Case, cov: &mut Coverage) {
        let resets = [0, 1].map(|i| case.apps[i].reset);
        let faultless = !resets[0] && !resets[1];
        for dir in Dir::BOTH {
            let (src, dst) = (dir.source().index(), dir.source().other().index());
            let read = &case.links[src].read;
            assert!(
                case.apps[src].data.starts_with(read),
                "#{c} {dir:?}: read bytes that were never sent"
            );
            assert!(
                case.links[dst].written.starts_with(&case.apps[dst].got),
                "#{c} {dir:?}: peer got junk"
            );
        }
        if !case.started {
            // Never accepted (tcpspy stopped first): nothing happened to it.
            assert!(self.stop_at.is_some(), "#{c} never started");
            return;
        }
        let ends = match &case.logged.close {
            Some((_, _, ends)) => ends.clone(),
            None => case
                .key
                .and_then(|k| self.table.get(k))
                .map(|e| e.conn.ends())
                .unwrap_or_default(),
        };
        let end_of = |side: Side| ends.iter().find(|(s, _)| *s == side).map(|(_, e)| e);
        let undelivered = case.logged.close.as_ref().map_or([0, 0], |c| c.1);
        let reset_sent = |side: Side| case.links[side.index()].reset_on_close;
        match case.closed {
            None => {
                cov.left_open = 1;
                if faultless {
                    self.assert_all_delivered(c, case);
                    assert!(
                        !(case.apps[0].fin_sent && case.apps[1].fin_sent),
                        "#{c}: both sides sent FIN and everything arrived, but it is open"
                    );
                } else {
                    cov.reset_left_open = 1;
                }
                for side in Side::BOTH {
                    if resets[side.index()] {
                        // Only a side whose FIN was already read can reset unnoticed.
                        assert!(
                            case.links[side.index()].eof_read,
                            "#{c}: {side:?} reset and tcpspy did not notice"
                        );
                    }
                }
            }
            Some(Cause::Relay) => {
                if faultless {
                    cov.closed_clean = 1;
                    self.assert_all_delivered(c, case);
                    assert!(ends.iter().all(|(_, e)| *e == End::Fin), "#{c}: {ends:?}");
                    assert_eq!(undelivered, [0, 0]);
                } else {
                    cov.closed_by_reset = 1;
                    for (side, e) in &ends {
                        match e {
                            End::Fin => {}
                            End::Reset => assert!(
                                resets[side.index()],
                                "#{c}: {side:?} ended as reset, but its peer did not reset"
                            ),
                            End::Aborted => assert!(
                                resets[side.other().index()]
                                    && matches!(end_of(side.other()), Some(End::Reset | End::Fin)),
                                "#{c}: {side:?} reset by tcpspy, the other side did not reset"
                            ),
                            other => panic!("#{c}: {side:?} ended with {other:?}"),
                        }
                    }
                }
            }
            Some(Cause::ConnectRefused) => {
                cov.connect_refused = 1;
                let refused = io::Error::from_raw_os_error(REFUSED).to_string();
                assert_eq!(
                    ends,
                    vec![
                        (Side::Server, End::ConnectFailed(refused)),
                        (Side::Client, End::Aborted)
                    ]
                );
                assert!(
                    case.logged.data.iter().all(Vec::is_empty),
                    "#{c}: read first"
                );
            }
            Some(Cause::ConnectTimeout) => {
                cov.connect_timed_out = 1;
                // Any plan can end so: a target that never answers, or whose answer (a
                // completion or a refusal) was still on its way when the deadline passed.
                assert_eq!(
                    ends,
                    vec![
                        (Side::Server, End::ConnectTimeout),
                        (Side::Client, End::Aborted)
                    ]
                );
            }
            Some(Cause::Idle) => {
                cov.idle_closed = 1;
                assert!(
                    self.p.idle_ms.is_some(),
                    "#{c}: idle close without a timeout"
                );
                for (side, e) in &ends {
                    assert!(
                        matches!(e, End::Fin | End::IdleTimeout),
                        "#{c}: {side:?} ended {e:?} in an idle close"
                    );
                }
            }
            Some(Cause::Stop) => {
                cov.stopped = 1;
                if undelivered != [0, 0] {
                    cov.stopped_with_undelivered = 1;
                }
                for (side, e) in &ends {
                    if !case.ends_at_stop.iter().any(|(s, _)| s == side) {
                        assert_eq!(e, &End::Shutdown, "#{c}: {side:?} closed by a stop");
                    }
                    assert!(!reset_sent(*side), "#{c}: a stop resets {side:?}: {ends:?}");
                }
            }
        }
        if case.key.is_none() && case.closed.is_some() {
            for side in Side::BOTH {
                assert_eq!(
                    reset_sent(side),
                    end_of(side) == Some(&End::Aborted),
                    "#{c}: {side:?} closed with a reset iff tcpspy aborted it"
                );
            }
        }
        if undelivered != [0, 0] {
            cov.undelivered = 1;
        }
    }

    /// No fault: each side got everything the other sent, and a FIN exactly when one was sent.
    fn assert_all_delivered(&self, c: usize, case: &Case) {
        for side in Side::BOTH {
            let (src, dst) = (side.index(), side.other().index());
            let sent = &case.apps[src].data;
            assert_eq!(
                case.apps[src].sent,
                sent.len(),
                "#{c}: {side:?} could not send everything"
            );
            assert!(
                case.links[dst].written == *sent && case.apps[dst].got == *sent,
                "#{c}: {:?} did not get all {} bytes from {side:?} (wrote {}, got {})",
                side.other(),
                sent.len(),
                case.links[dst].written.len(),
                case.apps[dst].got.len()
            );
            let fin = case.apps[src].fin_sent;
            assert_eq!(
                case.links[dst].shutdowns,
                u32::from(fin),
                "#{c}: {side:?}'s FIN passed on"
            );
            assert_eq!(
                case.apps[dst].got_eof,
                fin,
                "#{c}: {:?} saw EOF",
                side.other()
            );
        }
    }
}

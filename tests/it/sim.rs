//! A deterministic simulation of the connection state machine ([`Conn`]) without sockets.
//!
//! Each case is one connection, built from a seed: tcpspy's two sockets are in-memory TCP
//! endpoints (a kernel buffer with a capacity in each direction) whose peer applications write,
//! read, half-close and reset on their own random schedule. The scheduler plays the reactor:
//! it delivers readiness events in random order (and some spurious ones), sets the
//! `readable`/`writable` flags and calls `drive`, exactly as `reactor.rs` does; it resumes a
//! stalled connection when the simulated log queue drains, drives a yielded one again, connects
//! or fails the upstream connection, and sometimes stops tcpspy. Sockets read short, write
//! short, return `WouldBlock` when empty or full and sometimes `EINTR`; the log queue is small
//! and drains slowly; budgets are tiny. After every step and at the end the byte streams, the
//! half-closes, the ends and the buffers are checked (see [`Sim::check_state`] and
//! [`Sim::final_checks`]).
//!
//! `TCPSPY_SIM_CASES=N` runs N cases (default [`DEFAULT_CASES`]), `TCPSPY_SIM_START=S` starts at
//! seed S (default 0), `TCPSPY_SIM_SEED=S` replays that one seed. A failure prints its seed, the
//! case's parameters and the last steps.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;

use tcpspy::conn::{Conn, Dir, End, Phase, Side, Status, Stream, Tap};
use tcpspy::pool::Pool;

/// Cases CI runs: seeds 0..DEFAULT_CASES.
const DEFAULT_CASES: u64 = 3000;
/// A case that has not settled after this many steps is a liveness failure.
const MAX_STEPS: u64 = 1_000_000;
/// Steps kept for the failure report.
const TRACE: usize = 48;

#[test]
fn connection_state_machine_simulation() {
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
    budget: u32,
    /// Kernel buffer capacities, [peer to tcpspy, tcpspy to peer] per side.
    caps: [[usize; 2]; 2],
    apps: [AppPlan; 2],
    /// Bytes the log queue holds before `Tap::ready` says no.
    log_bound: usize,
    /// 1 in N socket calls is interrupted (0: never).
    eintr: u64,
    connect_fails: Option<End>,
    /// Step at which tcpspy is stopped, and how many steps it then gives buffered bytes.
    stop: Option<(u64, u64)>,
    spurious: u32,
    /// Relative frequency of each kind of step.
    weights: Weights,
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
}

impl Params {
    fn draw(rng: &mut Rng) -> Params {
        let buffer = rng.pick(&[1, 2, 3, 7, 16, 64, 512, 4096]);
        let mut caps = [[0; 2]; 2];
        for c in caps.iter_mut().flatten() {
            *c = rng.pick(&[1, 2, 5, 33, 256, 4096, 65536]);
        }
        let apps = [AppPlan::draw(rng), AppPlan::draw(rng)];
        let w = [1, 3, 10];
        let weights = Weights {
            event: rng.pick(&w),
            write: [rng.pick(&w), rng.pick(&w)],
            read: [rng.pick(&w), rng.pick(&w)],
            drain: rng.pick(&w),
            reset: rng.pick(&[1, 10]),
            connect: rng.pick(&[1, 3, 30]),
        };
        let connect_fails = match rng.below(40) {
            0 => Some(End::ConnectFailed(
                "Connection refused (os error 111)".into(),
            )),
            1 => Some(End::ConnectTimeout),
            _ => None,
        };
        let stop = rng
            .chance(1, 15)
            .then(|| (rng.below(3000), rng.pick(&[0, 10, 1000])));
        Params {
            buffer,
            keep: rng.range(0, 3),
            budget: rng.pick(&[1, 2, 3, 16]),
            caps,
            apps,
            log_bound: rng.pick(&[1, buffer, 3 * buffer, 1000, usize::MAX]),
            eintr: if rng.chance(1, 3) { 16 } else { 0 },
            connect_fails,
            stop,
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
    /// What tcpspy read and wrote, in order.
    read: Vec<u8>,
    written: Vec<u8>,
    eof_read: bool,
    error_read: bool,
    /// Readiness the kernel has to report to tcpspy's poll.
    ev_read: bool,
    ev_write: bool,
}

/// A peer application: it sends its bytes, reads what comes, maybe half-closes, maybe resets.
struct App {
    data: Vec<u8>,
    sent: usize,
    fin_sent: bool,
    got: Vec<u8>,
    got_eof: bool,
    reset: bool,
}

#[derive(Default)]
struct TapState {
    data: [Vec<u8>; 2],
    ends: Vec<(Side, End)>,
    queued: usize,
    bound: usize,
    stopping: bool,
    /// `ready()` said yes and no read has happened since: a read is allowed.
    armed: bool,
    /// `ready()` said no during this `drive`.
    refused: bool,
}

struct World {
    rng: Rng,
    links: [Link; 2],
    tap: TapState,
    eintr: u64,
}

impl World {
    fn interrupted(&mut self) -> bool {
        self.eintr > 0 && self.rng.below(self.eintr) == 0
    }
}

/// tcpspy's socket towards one side.
struct SimSock {
    w: Rc<RefCell<World>>,
    side: Side,
}

/// The direction whose destination is `side`.
fn into(side: Side) -> Dir {
    match side {
        Side::Client => Dir::ServerToClient,
        Side::Server => Dir::ClientToServer,
    }
}

fn err(kind: io::ErrorKind) -> io::Error {
    io::Error::from(kind)
}

impl Stream for SimSock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut guard = self.w.borrow_mut();
        let w = &mut *guard;
        assert!(w.tap.armed, "{:?} read without the log's leave", self.side);
        w.tap.armed = false;
        assert!(!buf.is_empty(), "read into an empty buffer");
        let link = &w.links[self.side.index()];
        assert!(
            !link.eof_read && !link.error_read,
            "{:?} read again after EOF or an error",
            self.side
        );
        if w.interrupted() {
            return Err(err(io::ErrorKind::Interrupted));
        }
        let link = &mut w.links[self.side.index()];
        if !link.inbound.is_empty() {
            let n = w.rng.amount(buf.len().min(link.inbound.len()));
            for (b, x) in buf.iter_mut().zip(link.inbound.drain(..n)) {
                *b = x;
                link.read.push(x);
            }
            return Ok(n);
        }
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

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut guard = self.w.borrow_mut();
        let w = &mut *guard;
        assert!(
            !w.links[self.side.index()].shut,
            "{:?} written after shutdown_write",
            self.side
        );
        assert!(!buf.is_empty(), "empty write");
        if w.interrupted() {
            return Err(err(io::ErrorKind::Interrupted));
        }
        let link = &mut w.links[self.side.index()];
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
        let n = w.rng.amount(room.min(buf.len()));
        link.outbound.extend(&buf[..n]);
        link.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        let mut guard = self.w.borrow_mut();
        let w = &mut *guard;
        let i = self.side.index();
        w.links[i].shutdowns += 1;
        assert_eq!(
            w.links[i].shutdowns, 1,
            "{:?} shut down more than once",
            self.side
        );
        assert!(
            w.links[self.side.other().index()].eof_read,
            "{:?} shut down before the other side's EOF was read",
            self.side
        );
        assert_eq!(
            w.links[i].written.len(),
            w.tap.data[into(self.side).index()].len(),
            "{:?} shut down with bytes for it still buffered",
            self.side
        );
        if w.links[i].reset {
            // Linux: shutdown(2) on a connection the peer has reset.
            return Err(err(io::ErrorKind::NotConnected));
        }
        w.links[i].shut = true;
        Ok(())
    }
}

/// The log queue, as the reactor's `LogTap` presents it.
struct SimTap {
    w: Rc<RefCell<World>>,
}

impl Tap for SimTap {
    fn ready(&mut self) -> bool {
        let t = &mut self.w.borrow_mut().tap;
        let ok = !t.stopping && t.queued < t.bound;
        t.armed = ok;
        t.refused |= !ok;
        ok
    }

    fn data(&mut self, dir: Dir, bytes: &[u8]) {
        assert!(!bytes.is_empty(), "an empty chunk was logged");
        let t = &mut self.w.borrow_mut().tap;
        t.data[dir.index()].extend_from_slice(bytes);
        t.queued = t.queued.saturating_add(bytes.len());
    }

    fn end(&mut self, side: Side, how: &End) {
        self.w.borrow_mut().tap.ends.push((side, how.clone()));
    }
}

/// One step of the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    /// The poll reports readiness of tcpspy's socket towards a side.
    Event(Side, bool, bool),
    /// Readiness that turns out to be nothing (epoll's readiness is a hint).
    Spurious(Side, bool, bool),
    AppWrite(Side),
    AppFin(Side),
    AppRead(Side),
    AppEof(Side),
    AppReset(Side),
    /// The logger writes some of the queue.
    Drain,
    /// The logger's wake-up: a stalled connection is driven again.
    Resume,
    /// A yielded connection gets its next turn.
    Again,
    Connect,
    ConnectFail,
    /// One turn of the reactor's stop: drive, then close if flushed or too late.
    StopTurn,
}

/// How the connection came to be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    /// `drive` returned `Closed`: both directions finished, or a side broke.
    Relay,
    ConnectFail,
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
    connect_failed: u64,
    stopped: u64,
    stopped_with_undelivered: u64,
    undelivered: u64,
    stalled: u64,
    yielded: u64,
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
        self.connect_failed += c.connect_failed;
        self.stopped += c.stopped;
        self.stopped_with_undelivered += c.stopped_with_undelivered;
        self.undelivered += c.undelivered;
        self.stalled += c.stalled;
        self.yielded += c.yielded;
        self.half_closed_then_data += c.half_closed_then_data;
    }

    fn assert_complete(&self) {
        let all = [
            self.closed_clean,
            self.left_open,
            self.closed_by_reset,
            self.reset_left_open,
            self.connect_failed,
            self.stopped,
            self.stopped_with_undelivered,
            self.undelivered,
            self.stalled,
            self.yielded,
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
    conn: Conn<SimSock>,
    pool: Pool,
    tap: SimTap,
    apps: [App; 2],
    /// The server application exists once the upstream connect completed.
    accepted: bool,
    on_again: bool,
    on_stalled: bool,
    stop_began: Option<u64>,
    closed: Option<Cause>,
    ends_at_stop: Vec<(Side, End)>,
    spurious_left: u32,
    step: u64,
    trace: VecDeque<(u64, Act, Option<Status>)>,
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
                "sim: seed {} at step {}; {:#?}",
                self.seed, self.step, self.p
            );
            eprintln!("sim: last steps (step, action, drive's status):");
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
            "phase {:?}, ends {:?}, holds buffers {}, log queued {}, ",
            self.conn.phase(),
            w.tap.ends,
            self.conn.holds_buffers(),
            w.tap.queued
        )?;
        for side in [Side::Client, Side::Server] {
            let (l, a) = (&w.links[side.index()], &self.apps[side.index()]);
            write!(
                f,
                "{side:?}: app sent {}/{} fin {} reset {} got {} eof {}; kernel in {} out {}; \
                 tcpspy read {} wrote {} eof {} shut {}; ",
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
        Ok(())
    }
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng(seed);
        let p = Params::draw(&mut rng);
        let apps = [0, 1].map(|i| App {
            data: (0..p.apps[i].len).map(|_| rng.next() as u8).collect(),
            sent: 0,
            fin_sent: false,
            got: Vec::new(),
            got_eof: false,
            reset: false,
        });
        let links = [0, 1].map(|i| Link {
            cap_in: p.caps[i][0],
            cap_out: p.caps[i][1],
            // Registering the accepted client socket reports it writable at once; the server
            // socket's first event is its connect completing.
            ev_write: i == Side::Client.index(),
            ..Link::default()
        });
        let w = Rc::new(RefCell::new(World {
            rng,
            links,
            tap: TapState {
                bound: p.log_bound,
                ..TapState::default()
            },
            eintr: p.eintr,
        }));
        let sock = |side| SimSock { w: w.clone(), side };
        Sim {
            seed,
            conn: Conn::new(sock(Side::Client), sock(Side::Server)),
            pool: Pool::new(p.buffer, p.keep),
            tap: SimTap { w: w.clone() },
            apps,
            accepted: false,
            on_again: false,
            on_stalled: false,
            stop_began: None,
            closed: None,
            ends_at_stop: Vec::new(),
            spurious_left: p.spurious,
            step: 0,
            trace: VecDeque::with_capacity(TRACE),
            acts: Vec::new(),
            cov: Coverage {
                cases: 1,
                ..Coverage::default()
            },
            p,
            w,
        }
    }

    fn run(&mut self) {
        loop {
            self.step += 1;
            assert!(self.step < MAX_STEPS, "not settled after {MAX_STEPS} steps");
            if let Some((at, _)) = self.p.stop
                && self.step >= at
                && self.stop_began.is_none()
                && self.closed.is_none()
            {
                self.stop_began = Some(self.step);
                self.ends_at_stop = self.conn.ends();
                self.w.borrow_mut().tap.stopping = true;
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
        }
        self.cov.steps = self.step;
    }

    /// Every step that can happen now, with its weight.
    fn enabled(&mut self) {
        let mut acts = std::mem::take(&mut self.acts);
        acts.clear();
        let wt = self.p.weights;
        let w = self.w.borrow();
        let open = self.closed.is_none();
        for side in [Side::Client, Side::Server] {
            let i = side.index();
            let (l, a, plan) = (&w.links[i], &self.apps[i], &self.p.apps[i]);
            if l.ev_read || l.ev_write {
                acts.push((wt.event, Act::Event(side, l.ev_read, l.ev_write)));
            }
            if open && self.spurious_left > 0 {
                acts.push((1, Act::Spurious(side, true, true)));
            }
            let active = side == Side::Client || self.accepted;
            if !active || a.reset {
                continue;
            }
            if open {
                if a.sent < a.data.len() && l.inbound.len() < l.cap_in {
                    acts.push((wt.write[i], Act::AppWrite(side)));
                }
                if a.sent == a.data.len() && plan.fin && !a.fin_sent {
                    acts.push((wt.write[i], Act::AppFin(side)));
                }
                if plan.reset_after.is_some_and(|n| a.sent >= n) {
                    acts.push((wt.reset, Act::AppReset(side)));
                }
            }
            if !l.outbound.is_empty() {
                acts.push((wt.read[i], Act::AppRead(side)));
            } else if l.shut && !a.got_eof {
                acts.push((wt.read[i], Act::AppEof(side)));
            }
        }
        if w.tap.queued > 0 {
            acts.push((wt.drain, Act::Drain));
        }
        if open {
            let ready = !w.tap.stopping && w.tap.queued < w.tap.bound;
            if self.on_stalled && ready {
                acts.push((3, Act::Resume));
            }
            if self.on_again {
                acts.push((3, Act::Again));
            }
            if self.conn.phase() == Phase::Connecting {
                let act = if self.p.connect_fails.is_some() {
                    Act::ConnectFail
                } else {
                    Act::Connect
                };
                acts.push((wt.connect, act));
            }
            if self.stop_began.is_some() {
                acts.push((3, Act::StopTurn));
            }
        }
        drop(w);
        self.acts = acts;
    }

    fn apply(&mut self, mut act: Act) {
        let mut status = None;
        match act {
            Act::Event(side, r, wr) => {
                let (r, wr) = {
                    let mut w = self.w.borrow_mut();
                    let w = &mut *w;
                    // mio may report the two kinds of readiness together or apart.
                    let (r, wr) = if r && wr && w.rng.chance(1, 2) {
                        (true, false)
                    } else {
                        (r, wr)
                    };
                    let l = &mut w.links[side.index()];
                    l.ev_read &= !r;
                    l.ev_write &= !wr;
                    (r, wr)
                };
                act = Act::Event(side, r, wr);
                if self.closed.is_none() {
                    self.set_ready(side, r, wr);
                    status = Some(self.drive());
                }
            }
            Act::Spurious(side, _, _) => {
                self.spurious_left -= 1;
                let (r, wr) = match self.w.borrow_mut().rng.below(3) {
                    0 => (true, false),
                    1 => (false, true),
                    _ => (true, true),
                };
                act = Act::Spurious(side, r, wr);
                self.set_ready(side, r, wr);
                status = Some(self.drive());
            }
            Act::AppWrite(side) => {
                let i = side.index();
                let mut w = self.w.borrow_mut();
                let w = &mut *w;
                let (l, a) = (&mut w.links[i], &mut self.apps[i]);
                let max = (l.cap_in - l.inbound.len())
                    .min(a.data.len() - a.sent)
                    .min(self.p.apps[i].write_chunk);
                let n = w.rng.amount(max);
                l.inbound.extend(&a.data[a.sent..a.sent + n]);
                a.sent += n;
                l.ev_read = true;
                if w.links[side.other().index()].eof_read {
                    self.cov.half_closed_then_data = 1;
                }
            }
            Act::AppFin(side) => {
                let mut w = self.w.borrow_mut();
                let l = &mut w.links[side.index()];
                l.peer_fin = true;
                l.ev_read = true;
                self.apps[side.index()].fin_sent = true;
            }
            Act::AppRead(side) => {
                let i = side.index();
                let mut w = self.w.borrow_mut();
                let w = &mut *w;
                let l = &mut w.links[i];
                let n = w
                    .rng
                    .amount(l.outbound.len().min(self.p.apps[i].read_chunk));
                self.apps[i].got.extend(l.outbound.drain(..n));
                l.ev_write = true;
            }
            Act::AppEof(side) => self.apps[side.index()].got_eof = true,
            Act::AppReset(side) => {
                let i = side.index();
                let mut w = self.w.borrow_mut();
                let l = &mut w.links[i];
                l.reset = true;
                if self.p.apps[i].reset_drops {
                    l.inbound.clear();
                }
                // What the peer had not read yet dies with its socket.
                l.outbound.clear();
                l.ev_read = true;
                l.ev_write = true;
                self.apps[i].reset = true;
            }
            Act::Drain => {
                let mut w = self.w.borrow_mut();
                let w = &mut *w;
                let n = w.rng.amount(w.tap.queued);
                w.tap.queued -= n;
            }
            Act::Resume => {
                self.on_stalled = false;
                status = Some(self.drive());
            }
            Act::Again => {
                self.on_again = false;
                status = Some(self.drive());
            }
            Act::Connect => {
                self.accepted = true;
                // The connect completes with a writable event on the server socket.
                self.conn.server.writable = true;
                self.conn.connected();
                status = Some(self.drive());
            }
            Act::ConnectFail => {
                let how = self.p.connect_fails.clone().expect("a planned failure");
                self.conn
                    .fail(Side::Server, how, &mut self.tap, &mut self.pool);
                self.closed = Some(Cause::ConnectFail);
                self.check_state(None);
            }
            Act::StopTurn => {
                let s = self.drive();
                status = Some(s);
                let (_, grace) = self.p.stop.expect("a planned stop");
                let late = self.step - self.stop_began.unwrap_or(self.step) >= grace;
                if self.closed.is_none() && (late || !self.conn.holds_buffers()) {
                    self.conn
                        .fail(Side::Client, End::Shutdown, &mut self.tap, &mut self.pool);
                    self.closed = Some(Cause::Stop);
                    self.check_state(None);
                }
            }
        }
        if self.trace.len() == TRACE {
            self.trace.pop_front();
        }
        self.trace.push_back((self.step, act, status));
    }

    fn set_ready(&mut self, side: Side, r: bool, w: bool) {
        let peer = match side {
            Side::Client => &mut self.conn.client,
            Side::Server => &mut self.conn.server,
        };
        peer.readable |= r;
        peer.writable |= w;
    }

    /// What the reactor's `drive` does around `Conn::drive`.
    fn drive(&mut self) -> Status {
        self.w.borrow_mut().tap.refused = false;
        let was_closed = self.conn.phase() == Phase::Closed;
        let mut budget = self.p.budget;
        let status = self.conn.drive(&mut self.pool, &mut self.tap, &mut budget);
        let refused = self.w.borrow().tap.refused;
        match status {
            Status::Stalled => {
                assert!(refused, "Stalled, but the log never refused");
                self.cov.stalled = 1;
                if self.stop_began.is_none() {
                    self.on_stalled = true;
                }
            }
            Status::Yielded => {
                assert_eq!(budget, 0, "Yielded with budget left");
                self.cov.yielded = 1;
                self.on_again = true;
            }
            Status::Open => {}
            Status::Closed => {
                if !was_closed {
                    self.closed = Some(Cause::Relay);
                }
            }
        }
        if refused {
            assert!(
                matches!(status, Status::Stalled | Status::Closed),
                "the log refused but drive returned {status:?}"
            );
        }
        assert!(budget <= self.p.budget);
        self.check_state(Some(status));
        status
    }

    /// What must hold after every step that touched the connection.
    fn check_state(&self, status: Option<Status>) {
        let w = self.w.borrow();
        let closed = self.conn.phase() == Phase::Closed;
        assert_eq!(closed, self.closed.is_some(), "phase and status disagree");
        if let Some(s) = status {
            assert_eq!(s == Status::Closed, closed, "drive returned {s:?}");
        }
        // The log tells every end as it happens; the connection keeps each side's last one (a
        // reset after a FIN replaces it), in the order of those last ends.
        let mut last: Vec<(Side, End)> = Vec::new();
        for (side, how) in &w.tap.ends {
            if let Some(prev) = last.iter().position(|(s, _)| s == side) {
                let prev_how = last.remove(prev).1;
                assert_eq!(
                    prev_how,
                    End::Fin,
                    "only a FIN is ever followed by another end"
                );
                assert!(
                    matches!(how, End::Reset | End::Error(_)),
                    "{how:?} after a FIN"
                );
            }
            last.push((*side, how.clone()));
        }
        assert_eq!(
            last,
            self.conn.ends(),
            "the log and the connection disagree on ends"
        );
        let mut in_flight = false;
        for dir in Dir::BOTH {
            let (src, dst) = (dir.source(), dir.source().other());
            let seen = w.tap.data[dir.index()].len();
            assert_eq!(self.conn.bytes(dir), seen as u64, "{dir:?} byte count");
            assert_eq!(
                w.links[src.index()].read.len(),
                seen,
                "{dir:?}: read != logged"
            );
            let written = w.links[dst.index()].written.len();
            assert!(written <= seen, "{dir:?}: wrote bytes never read");
            in_flight |= written < seen;
        }
        if closed {
            assert!(
                !self.conn.holds_buffers(),
                "a closed connection holds a buffer"
            );
            assert_eq!(self.conn.ends().len(), 2, "closed before both sides ended");
            let u = self.conn.undelivered();
            for dir in Dir::BOTH {
                let seen = w.tap.data[dir.index()].len() as u64;
                let written = w.links[dir.source().other().index()].written.len() as u64;
                assert_eq!(
                    seen - u[dir.index()],
                    written,
                    "{dir:?}: logged - undelivered"
                );
            }
            let faultless = !self.apps.iter().any(|a| a.reset);
            if self.closed == Some(Cause::Relay) && faultless {
                for l in &w.links {
                    assert!(
                        l.eof_read && l.shutdowns == 1,
                        "closed before both FINs passed"
                    );
                }
            }
        } else {
            assert_eq!(
                self.conn.holds_buffers(),
                in_flight,
                "holds a buffer iff bytes are in flight"
            );
        }
    }

    fn final_checks(&mut self) {
        if self.closed.is_some() {
            // A closed connection stays closed, whatever comes after.
            let before = self.conn.ends();
            assert_eq!(self.drive(), Status::Closed);
            self.conn
                .fail(Side::Server, End::Shutdown, &mut self.tap, &mut self.pool);
            assert_eq!(
                self.conn.ends(),
                before,
                "fail() after close changed the ends"
            );
        }
        self.check_state(None);
        let w = self.w.borrow();
        let resets = [0, 1].map(|i| self.apps[i].reset);
        let faultless = !resets[0] && !resets[1];
        for dir in Dir::BOTH {
            let (src, dst) = (dir.source().index(), dir.source().other().index());
            let logged = &w.tap.data[dir.index()];
            assert!(
                logged == &w.links[src].read,
                "{dir:?}: the log is not what was read"
            );
            assert!(
                self.apps[src].data.starts_with(logged),
                "{dir:?}: read bytes that were never sent"
            );
            let written = &w.links[dst].written;
            assert!(
                logged.starts_with(written),
                "{dir:?}: wrote what was not read"
            );
            assert!(
                written.starts_with(&self.apps[dst].got),
                "{dir:?}: peer got junk"
            );
        }
        let ends = self.conn.ends();
        let end_of = |side: Side| ends.iter().find(|(s, _)| *s == side).map(|(_, e)| e);
        match self.closed {
            None => {
                self.cov.left_open = 1;
                if faultless {
                    self.assert_all_delivered(&w);
                    assert!(
                        !(self.apps[0].fin_sent && self.apps[1].fin_sent),
                        "both sides sent FIN and everything arrived, but the connection is open"
                    );
                } else {
                    self.cov.reset_left_open = 1;
                }
                for side in [Side::Client, Side::Server] {
                    if resets[side.index()] {
                        // Only a side whose FIN was already read can reset unnoticed.
                        assert!(
                            w.links[side.index()].eof_read,
                            "{side:?} reset and tcpspy did not notice"
                        );
                    }
                }
            }
            Some(Cause::Relay) => {
                if faultless {
                    self.cov.closed_clean = 1;
                    self.assert_all_delivered(&w);
                    assert!(ends.iter().all(|(_, e)| *e == End::Fin), "{ends:?}");
                    assert_eq!(self.conn.undelivered(), [0, 0]);
                } else {
                    self.cov.closed_by_reset = 1;
                    for (side, e) in &ends {
                        match e {
                            End::Fin => {}
                            End::Reset => assert!(
                                resets[side.index()],
                                "{side:?} ended as reset, but its peer did not reset"
                            ),
                            // A side that sent FIN and then reset keeps its Fin: one end
                            // per side, the first.
                            End::Aborted => assert!(
                                resets[side.other().index()]
                                    && matches!(end_of(side.other()), Some(End::Reset | End::Fin)),
                                "{side:?} reset by tcpspy, but the other side did not reset"
                            ),
                            other => panic!("{side:?} ended with {other:?}"),
                        }
                    }
                }
            }
            Some(Cause::ConnectFail) => {
                self.cov.connect_failed = 1;
                let how = self.p.connect_fails.clone().expect("planned");
                assert_eq!(
                    ends,
                    vec![(Side::Server, how), (Side::Client, End::Aborted)]
                );
                assert!(self.conn.must_reset(Side::Client));
                assert!(
                    w.tap.data.iter().all(Vec::is_empty),
                    "read before connecting"
                );
            }
            Some(Cause::Stop) => {
                self.cov.stopped = 1;
                if self.conn.undelivered() != [0, 0] {
                    self.cov.stopped_with_undelivered = 1;
                }
                for (side, e) in &ends {
                    if !self.ends_at_stop.iter().any(|(s, _)| s == side) {
                        assert_eq!(e, &End::Shutdown, "{side:?} closed by a stop: {ends:?}");
                    }
                    assert!(
                        !self.conn.must_reset(*side),
                        "a stop resets {side:?}: {ends:?}"
                    );
                }
            }
        }
        for side in [Side::Client, Side::Server] {
            if end_of(side) == Some(&End::Aborted) || self.conn.must_reset(side) {
                assert!(
                    self.conn.must_reset(side) && end_of(side) == Some(&End::Aborted),
                    "must_reset({side:?}) and the Aborted end disagree"
                );
            }
        }
        if self.conn.undelivered() != [0, 0] {
            self.cov.undelivered = 1;
        }
    }

    /// No fault: each side got everything the other sent, and a FIN exactly when one was sent.
    fn assert_all_delivered(&self, w: &World) {
        for side in [Side::Client, Side::Server] {
            let (src, dst) = (side.index(), side.other().index());
            let sent = &self.apps[src].data;
            assert_eq!(
                self.apps[src].sent,
                sent.len(),
                "{side:?} could not send everything"
            );
            assert!(
                w.links[dst].written == *sent && self.apps[dst].got == *sent,
                "{:?} did not get all {} bytes from {side:?} (wrote {}, got {})",
                side.other(),
                sent.len(),
                w.links[dst].written.len(),
                self.apps[dst].got.len()
            );
            let fin = self.apps[src].fin_sent;
            assert_eq!(
                w.links[dst].shutdowns,
                u32::from(fin),
                "{side:?}'s FIN passed on"
            );
            assert_eq!(self.apps[dst].got_eof, fin, "{:?} saw EOF", side.other());
        }
    }
}

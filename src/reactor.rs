//! The reactor: one thread, one `mio::Poll` over every listener and every peer socket; it
//! accepts, connects upstream, relays through each connection's state machine ([`Conn`]),
//! keeps the deadlines, and hands what it sees to the logging thread's queue.
//!
//! - **Tokens.** [`WAKER`] (the logger drained its queue, or a stop was asked), [`SIGNALS`], one
//!   per listener from [`LISTENER_BASE`], and two per connection from [`CONN_BASE`]:
//!   `CONN_BASE + key * 2 + side` over one slab. Unknown tokens are ignored.
//! - **Readiness.** Every socket is registered once for READABLE | WRITABLE (edge-triggered);
//!   an event sets the connection's readable/writable flags, and only `WouldBlock` clears them.
//! - **Deferred removal.** A connection that closes during an event batch is only removed
//!   after the batch, so a later event of the same batch cannot reach a new connection that
//!   took its slab key (mio issue 219).
//! - **Fairness and backpressure.** A connection reads at most [`READ_BUDGET`] chunks per turn
//!   and goes on the `again` list if it had more; when the log queue is full no socket is read,
//!   the connection goes on the `stalled` list, and the logger's wake-up resumes it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::config::Rule;
use crate::conn::{Conn, Phase, Status, Tap};
use crate::log::event::{ConnId, Event, Holds};
use crate::log::queue::Sender;
use crate::pool::Pool;
use crate::stop::StopHandle;
use crate::sys;
use crate::types::{Dir, End, Hold, Side};

pub const WAKER: Token = Token(0);
pub const SIGNALS: Token = Token(1);
pub const LISTENER_BASE: usize = 16;
pub const CONN_BASE: usize = 1 << 20;

/// Chunks a connection may read per turn before others get theirs.
pub const READ_BUDGET: u32 = 16;

/// How long to wait before accepting again after running out of descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// How long a stop waits for buffered bytes to reach their destination.
const STOP_FLUSH: Duration = Duration::from_secs(1);

/// Tunables of the relay.
#[derive(Clone, Debug)]
pub struct Settings {
    pub rules: Vec<Rule>,
    pub buffer_size: usize,
    pub connect_timeout: Duration,
    pub idle_timeout: Option<Duration>,
    /// Put before connection numbers in messages (`--reuse-port`).
    pub label_prefix: Option<String>,
    /// Connections relayed at once; past it the listeners are left alone (the kernel's
    /// backlog holds new clients) until one ends.
    pub max_connections: usize,
    /// False with `--log none` and no live view: the relayed bytes are not copied to the
    /// logger at all.
    pub log_data: bool,
    /// Splice bytes nobody logs from socket to socket through a pipe (see [`Pool`]).
    pub splice: bool,
}

/// What went through the reactor, for the exit summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub connections: u64,
    /// Bytes delivered, indexed by [`Dir`].
    pub bytes: [u64; 2],
    /// Times reading paused because the log queue was full.
    pub log_stalls: u64,
    /// The connections that carried the most bytes, most first: (bytes, description).
    pub busiest: Vec<(u64, String)>,
}

/// Connections named in a summary's "busiest" list.
const BUSIEST: usize = 5;

impl Totals {
    /// Keeps `desc` among the busiest if it carried enough.
    fn rank(list: &mut Vec<(u64, String)>, bytes: u64, desc: impl FnOnce() -> String) {
        if list.len() < BUSIEST || list.last().is_some_and(|(b, _)| bytes > *b) {
            let at = list.partition_point(|(b, _)| *b >= bytes);
            list.insert(at, (bytes, desc()));
            list.truncate(BUSIEST);
        }
    }

    /// `#0004 127.0.0.1:5000 -> 127.0.0.1:8000 (1234 bytes), ...`
    pub fn busiest_text(&self) -> String {
        let v: Vec<String> = self
            .busiest
            .iter()
            .map(|(b, d)| format!("{d} ({b} bytes)"))
            .collect();
        if v.is_empty() {
            "none".into()
        } else {
            v.join(", ")
        }
    }
}

/// What a deadline is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Connect,
    Idle,
}

/// An accepted client whose upstream connect waits for a free descriptor.
struct Waiting {
    rule: usize,
    client: TcpStream,
    addr: SocketAddr,
    id: ConnId,
    at: SystemTime,
}

struct Entry {
    id: ConnId,
    rule: usize,
    client: SocketAddr,
    conn: Conn<TcpStream>,
    /// When bytes last moved (kept only with an idle timeout).
    last_active: Instant,
    story: Story,
    /// Closed during this batch; removed after it.
    done: bool,
    on_again: bool,
    on_stalled: bool,
}

/// Reports a connection's relay to the log queue, stamping each event when it happens.
struct LogTap<'a> {
    tx: &'a Sender,
    id: ConnId,
    data: bool,
    may_read: bool,
    story: Option<&'a mut Story>,
}

/// Pauses shorter than this are only counted; longer ones get a line in the hex dump.
pub const HOLD_REPORT: Duration = Duration::from_millis(100);

/// What a connection's hex dump tells beyond its bytes: when and why reading paused.
#[derive(Default)]
struct Story {
    /// A pause under way per direction: when it began, and why.
    held: [Option<(Instant, SystemTime, Hold)>; 2],
    totals: [Holds; 2],
}

impl Story {
    /// Ends the pause of `dir`, if any; returns the event to log if it lasted long enough.
    fn release(&mut self, id: ConnId, dir: Dir) -> Option<Event> {
        let (began, since, why) = self.held[dir.index()].take()?;
        let lasted = began.elapsed();
        self.totals[dir.index()].add(why, lasted);
        (lasted >= HOLD_REPORT).then_some(Event::Held {
            id,
            dir,
            why,
            since,
            lasted,
        })
    }
}

impl Tap for LogTap<'_> {
    fn wants_data(&self) -> bool {
        self.data
    }

    fn ready(&mut self) -> bool {
        self.may_read && (!self.data || self.tx.has_room() || !self.tx.wait_for_room())
    }

    fn data(&mut self, dir: Dir, bytes: &[u8]) {
        if self.data {
            let (id, at) = (self.id, SystemTime::now());
            self.tx
                .send_data(bytes, |bytes| Event::Data { id, dir, at, bytes });
        }
    }

    fn end(&mut self, side: Side, how: &End) {
        self.tx.send(Event::End {
            id: self.id,
            side,
            how: how.clone(),
            at: SystemTime::now(),
        });
    }

    fn hold(&mut self, dir: Dir, why: Hold) {
        // A stop also refuses reads; that is not a pause worth telling.
        if let (Some(story), true) = (&mut self.story, self.may_read) {
            story.held[dir.index()] = Some((Instant::now(), SystemTime::now(), why));
        }
    }

    fn release(&mut self, dir: Dir) {
        if let Some(event) = self.story.as_mut().and_then(|s| s.release(self.id, dir)) {
            self.tx.send(event);
        }
    }
}

pub struct Reactor {
    poll: Poll,
    settings: Settings,
    listeners: Vec<Option<TcpListener>>,
    conns: Slab<Entry>,
    pool: Pool,
    log: Arc<Sender>,
    deadlines: BinaryHeap<Reverse<(Instant, usize, ConnId, Timer)>>,
    next_id: ConnId,
    again: Vec<usize>,
    stalled: Vec<usize>,
    closed: Vec<usize>,
    accept_paused_until: Option<Instant>,
    /// At `max_connections`: accept again when a connection ends.
    accept_full: bool,
    /// Clients accepted while out of descriptors, oldest first.
    waiting: std::collections::VecDeque<Waiting>,
    exhausted: bool,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    stop: StopHandle,
    stopping: Option<Instant>,
    totals: Totals,
}

impl Reactor {
    /// Builds a reactor over bound listeners, one per rule. `waker` must belong to `poll`,
    /// registered with [`WAKER`]; the logger holds a clone.
    pub fn new(
        poll: Poll,
        stop: StopHandle,
        listeners: Vec<TcpListener>,
        settings: Settings,
        log: Arc<Sender>,
    ) -> io::Result<Reactor> {
        let mut slots = Vec::with_capacity(listeners.len());
        for (i, mut l) in listeners.into_iter().enumerate() {
            poll.registry()
                .register(&mut l, Token(LISTENER_BASE + i), Interest::READABLE)?;
            slots.push(Some(l));
        }
        Ok(Reactor {
            poll,
            pool: match settings.splice {
                true => Pool::new(settings.buffer_size, 64).with_splice(),
                false => Pool::new(settings.buffer_size, 64),
            },
            settings,
            listeners: slots,
            conns: Slab::new(),
            log,
            deadlines: BinaryHeap::new(),
            next_id: 1,
            again: Vec::new(),
            stalled: Vec::new(),
            closed: Vec::new(),
            accept_paused_until: None,
            accept_full: false,
            waiting: std::collections::VecDeque::new(),
            exhausted: false,
            signals: None,
            stop,
            stopping: None,
            totals: Totals::default(),
        })
    }

    /// Stops the reactor on SIGINT or SIGTERM (delivered through the poll).
    pub fn watch_signals(&mut self, mut signals: signal_hook_mio::v1_0::Signals) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Runs until stopped, then closes every connection and returns what was relayed.
    pub fn run(mut self) -> io::Result<Totals> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = if self.again.is_empty() {
                self.next_timeout()
            } else {
                Some(Duration::ZERO)
            };
            // The logger is woken when what is queued for it is due (see `wake_due`): poll
            // no longer than that.
            let timeout = match self.log.wake_due() {
                Some(due) if due <= Instant::now() => {
                    self.log.wake_logger();
                    timeout
                }
                Some(due) => {
                    let left = due.saturating_duration_since(Instant::now());
                    Some(timeout.map_or(left, |t| t.min(left)))
                }
                None => timeout,
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => self.resume_stalled(),
                    SIGNALS => self.on_signals(),
                    Token(t) if (LISTENER_BASE..CONN_BASE).contains(&t) => {
                        self.accept(t - LISTENER_BASE)
                    }
                    Token(t) if t >= CONN_BASE => self.on_socket_event(t - CONN_BASE, event),
                    _ => {}
                }
            }
            self.run_again();
            self.expire(Instant::now());
            if self.stop.is_stopped() && self.stopping.is_none() {
                self.begin_stop();
            }
            if let Some(deadline) = self.stopping {
                self.flush_for_stop(deadline);
            }
            self.reap();
            self.accept_if_room();
            if self.stopping.is_some() && self.conns.is_empty() {
                break;
            }
        }
        self.totals.log_stalls = self.log.stalls();
        Ok(self.totals)
    }

    fn next_timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut next = self.deadlines.peek().map(|Reverse((t, ..))| *t);
        for t in [self.accept_paused_until, self.stopping]
            .into_iter()
            .flatten()
        {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        if self.stopping.is_some() {
            // While stopping, look at the flushing connections often.
            next = Some(next.map_or(now, |n| n.min(now + Duration::from_millis(10))));
        }
        next.map(|t| t.saturating_duration_since(now))
    }

    fn accept(&mut self, rule: usize) {
        if self.accept_paused_until.is_some() || self.stopping.is_some() {
            return;
        }
        loop {
            if self.conns.len() >= self.settings.max_connections {
                self.accept_full = true;
                return;
            }
            let Some(Some(listener)) = self.listeners.get(rule) else {
                return;
            };
            match listener.accept() {
                Ok((sock, addr)) => {
                    self.open(rule, sock, addr);
                    if !self.waiting.is_empty() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if sys::is_resource_exhaustion(&e) => {
                    self.out_of_descriptors(&e);
                    return;
                }
                // A client that gave up before we took it (ECONNABORTED) and the like.
                Err(_) => {}
            }
        }
    }

    fn open(&mut self, rule: usize, client: TcpStream, addr: SocketAddr) {
        let id = self.next_id;
        self.next_id += 1;
        self.totals.connections += 1;
        // Small request/response traffic must not wait for Nagle on either leg.
        let _ = client.set_nodelay(true);
        let w = Waiting {
            rule,
            client,
            addr,
            id,
            at: SystemTime::now(),
        };
        if let Err(w) = self.connect(w) {
            self.waiting.push_back(w);
        }
    }

    /// Starts the upstream connect of an accepted client. Out of descriptors, the client is
    /// handed back to wait for the accept retry: it is not reset for our lack of descriptors.
    fn connect(&mut self, w: Waiting) -> Result<(), Waiting> {
        let Waiting {
            rule,
            client,
            addr: client_addr,
            id,
            at,
        } = w;
        let target = self.settings.rules[rule].target;
        let server = match TcpStream::connect(target) {
            Ok(server) => server,
            Err(e) if sys::is_resource_exhaustion(&e) => {
                self.out_of_descriptors(&e);
                return Err(Waiting {
                    rule,
                    client,
                    addr: client_addr,
                    id,
                    at,
                });
            }
            Err(e) => {
                // No route and the like: the connect failed before it started.
                sys::reset_on_close(&client);
                self.log.send(Event::Open {
                    id,
                    rule,
                    client: client_addr,
                    target,
                    local: unspecified(&target),
                    at,
                });
                self.refused(id, End::ConnectFailed(e.to_string()));
                return Ok(());
            }
        };
        let _ = server.set_nodelay(true);
        let local = server.local_addr().unwrap_or_else(|_| unspecified(&target));
        self.log.send(Event::Open {
            id,
            rule,
            client: client_addr,
            target,
            local,
            at,
        });
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let mut conn = Conn::new(client, server);
        let reg = self.poll.registry();
        let both = Interest::READABLE | Interest::WRITABLE;
        let registered = reg
            .register(&mut conn.client.sock, conn_token(key, Side::Client), both)
            .and_then(|()| {
                reg.register(&mut conn.server.sock, conn_token(key, Side::Server), both)
            });
        match registered {
            Ok(()) => {
                let now = Instant::now();
                entry.insert(Entry {
                    id,
                    rule,
                    client: client_addr,
                    conn,
                    last_active: now,
                    story: Story::default(),
                    done: false,
                    on_again: false,
                    on_stalled: false,
                });
                let connect_by = now + self.settings.connect_timeout;
                self.deadlines
                    .push(Reverse((connect_by, key, id, Timer::Connect)));
                if let Some(idle) = self.settings.idle_timeout {
                    self.deadlines
                        .push(Reverse((now + idle, key, id, Timer::Idle)));
                }
            }
            Err(e) => {
                sys::reset_on_close(&conn.client.sock);
                self.refused(id, End::Error(e.to_string()));
            }
        }
        Ok(())
    }

    /// Stops accepting for [`ACCEPT_RETRY`]: edge-triggered listeners will not report the
    /// waiting clients again, so a timer retries.
    fn out_of_descriptors(&mut self, e: &io::Error) {
        if !self.exhausted {
            self.exhausted = true;
            crate::log::eprint_line(&format!(
                "tcpspy: out of descriptors ({e}); new clients wait, retrying every {} ms",
                ACCEPT_RETRY.as_millis()
            ));
        }
        self.accept_paused_until = Some(Instant::now() + ACCEPT_RETRY);
    }

    /// Logs a connection that failed before it had a slab entry: the server side ended with
    /// `how`, the client was reset.
    fn refused(&mut self, id: ConnId, how: End) {
        self.log_unconnected(id, vec![(Side::Server, how), (Side::Client, End::Aborted)]);
    }

    /// Logs the ends and the close of a connection that never had a slab entry.
    fn log_unconnected(&mut self, id: ConnId, ends: Vec<(Side, End)>) {
        let mut tap = LogTap {
            tx: &self.log,
            id,
            data: false,
            may_read: false,
            story: None,
        };
        for (side, how) in &ends {
            tap.end(*side, how);
        }
        let at = SystemTime::now();
        self.log.send(Event::Close {
            id,
            at,
            bytes: [0; 2],
            undelivered: [0; 2],
            ends,
            held: Default::default(),
            tcp: [None, None],
        });
    }

    fn on_socket_event(&mut self, t: usize, event: &mio::event::Event) {
        let (key, side) = (
            t >> 1,
            if t & 1 == 0 {
                Side::Client
            } else {
                Side::Server
            },
        );
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if entry.done {
            return;
        }
        let peer = match side {
            Side::Client => &mut entry.conn.client,
            Side::Server => &mut entry.conn.server,
        };
        // Errors and hang-ups are surfaced by the next read or write, so they count as ready.
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            peer.readable = true;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            peer.writable = true;
        }
        if side == Side::Server && entry.conn.phase() == Phase::Connecting {
            self.check_connect(key);
        } else if event.is_error() && entry.conn.read_done(side) {
            // A reset after the side's FIN: nothing more will be read from it, so no read
            // would see the error, and the other side must not wait for its own next write
            // to learn of it. (Before its FIN, the reads surface the error after the data.)
            if let Ok(Some(e)) = peer_sock(&entry.conn, side).take_error() {
                self.fail(key, side, End::from_error(&e));
                return;
            }
        }
        self.drive(key);
    }

    /// Looks at a connecting socket as mio documents it: `take_error`, then `peer_addr`
    /// (`NotConnected` means still in progress).
    fn check_connect(&mut self, key: usize) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        let sock = &entry.conn.server.sock;
        let result = match sock.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match sock.peer_addr() {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(false) => {}
            Ok(true) => {
                entry.conn.connected();
                self.log.send(Event::Connected {
                    id: entry.id,
                    at: SystemTime::now(),
                });
            }
            Err(e) => self.fail(key, Side::Server, End::ConnectFailed(e.to_string())),
        }
    }

    fn drive(&mut self, key: usize) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if entry.done {
            return;
        }
        let mut tap = LogTap {
            tx: &self.log,
            id: entry.id,
            data: self.settings.log_data,
            may_read: self.stopping.is_none(),
            story: Some(&mut entry.story),
        };
        let mut budget = READ_BUDGET;
        let moved = entry.conn.bytes(Dir::ClientToServer) + entry.conn.bytes(Dir::ServerToClient);
        let status = entry.conn.drive(&mut self.pool, &mut tap, &mut budget);
        if self.settings.idle_timeout.is_some()
            && entry.conn.bytes(Dir::ClientToServer) + entry.conn.bytes(Dir::ServerToClient)
                != moved
        {
            entry.last_active = Instant::now();
        }
        match status {
            Status::Open => {}
            Status::Stalled => {
                if !entry.on_stalled && self.stopping.is_none() {
                    entry.on_stalled = true;
                    self.stalled.push(key);
                }
            }
            Status::Yielded => {
                if !entry.on_again {
                    entry.on_again = true;
                    self.again.push(key);
                }
            }
            Status::Closed => self.finish(key),
        }
    }

    /// Ends a connection from outside the relay (connect failure, timeout, stop).
    fn fail(&mut self, key: usize, side: Side, how: End) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if entry.done {
            return;
        }
        let mut tap = LogTap {
            tx: &self.log,
            id: entry.id,
            data: false,
            may_read: false,
            story: None,
        };
        entry.conn.fail(side, how, &mut tap, &mut self.pool);
        self.finish(key);
    }

    /// Records a closed connection; its sockets close when it is removed after the batch.
    fn finish(&mut self, key: usize) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if entry.done {
            return;
        }
        entry.done = true;
        for dir in Dir::BOTH {
            if let Some(event) = entry.story.release(entry.id, dir) {
                self.log.send(event);
            }
        }
        let conn = &entry.conn;
        let tcp = [
            sys::tcp_stats(&conn.client.sock),
            sys::tcp_stats(&conn.server.sock),
        ];
        let undelivered = conn.undelivered();
        let bytes = [
            conn.bytes(Dir::ClientToServer) - undelivered[0],
            conn.bytes(Dir::ServerToClient) - undelivered[1],
        ];
        self.totals.bytes[0] += bytes[0];
        self.totals.bytes[1] += bytes[1];
        let (id, client, target) = (
            entry.id,
            entry.client,
            self.settings.rules[entry.rule].target,
        );
        let label = &self.settings.label_prefix;
        Totals::rank(&mut self.totals.busiest, bytes[0] + bytes[1], || {
            describe(label, id, client, target)
        });
        self.log.send(Event::Close {
            id: entry.id,
            at: SystemTime::now(),
            bytes,
            undelivered,
            ends: conn.ends(),
            held: entry.story.totals,
            tcp,
        });
        self.closed.push(key);
    }

    fn reap(&mut self) {
        for key in self.closed.drain(..) {
            if let Some(entry) = self.conns.try_remove(key) {
                for (side, sock) in [
                    (Side::Client, &entry.conn.client.sock),
                    (Side::Server, &entry.conn.server.sock),
                ] {
                    if entry.conn.must_reset(side) {
                        sys::reset_on_close(sock);
                    }
                }
            }
        }
    }

    /// Takes the clients that queued while we were at `max_connections`: the listeners are
    /// edge-triggered and raise no new event for them.
    fn accept_if_room(&mut self) {
        if self.accept_full && self.conns.len() < self.settings.max_connections {
            self.accept_full = false;
            for rule in 0..self.listeners.len() {
                self.accept(rule);
            }
        }
    }

    fn run_again(&mut self) {
        for key in std::mem::take(&mut self.again) {
            if let Some(entry) = self.conns.get_mut(key) {
                entry.on_again = false;
                self.drive(key);
            }
        }
    }

    fn resume_stalled(&mut self) {
        for key in std::mem::take(&mut self.stalled) {
            if let Some(entry) = self.conns.get_mut(key) {
                entry.on_stalled = false;
                self.drive(key);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        if self.accept_paused_until.is_some_and(|t| t <= now) {
            self.accept_paused_until = None;
            while let Some(w) = self.waiting.pop_front() {
                if let Err(w) = self.connect(w) {
                    self.waiting.push_front(w);
                    break;
                }
            }
            if self.waiting.is_empty() {
                if self.exhausted {
                    self.exhausted = false;
                    crate::log::eprint_line("tcpspy: descriptors available again; accepting");
                }
                for rule in 0..self.listeners.len() {
                    self.accept(rule);
                }
            }
        }
        while let Some(Reverse((t, key, id, timer))) = self.deadlines.peek().copied() {
            if t > now {
                break;
            }
            self.deadlines.pop();
            let Some(entry) = self.conns.get(key).filter(|e| e.id == id && !e.done) else {
                continue;
            };
            match timer {
                Timer::Connect if entry.conn.phase() == Phase::Connecting => {
                    self.fail(key, Side::Server, End::ConnectTimeout);
                }
                Timer::Connect => {}
                Timer::Idle => {
                    let Some(idle) = self.settings.idle_timeout else {
                        continue;
                    };
                    let due = entry.last_active + idle;
                    if due > now {
                        self.deadlines.push(Reverse((due, key, id, Timer::Idle)));
                    } else {
                        self.fail(key, Side::Client, End::IdleTimeout);
                    }
                }
            }
        }
    }

    fn on_signals(&mut self) {
        let Some(signals) = &mut self.signals else {
            return;
        };
        let mut summary = false;
        for sig in signals.pending() {
            match sig {
                signal_hook::consts::SIGUSR1 => summary = true,
                _ => {
                    if !self.stop.stop_again() {
                        crate::log::eprint_line(
                            "tcpspy: stopping: closing connections and writing the logs (signal again to exit at once)",
                        );
                    }
                }
            }
        }
        if summary {
            let line = self.summary().line();
            // Through the logger, so that it comes in order with the connection lines.
            self.log.send(Event::Line(line));
        }
    }

    /// What went through so far: closed connections plus the open ones as they stand.
    pub fn summary(&self) -> Summary {
        let mut totals = self.totals.clone();
        let mut open = 0;
        for (_, e) in self.conns.iter().filter(|(_, e)| !e.done) {
            open += 1;
            let b = [
                e.conn.bytes(Dir::ClientToServer),
                e.conn.bytes(Dir::ServerToClient),
            ];
            totals.bytes[0] += b[0];
            totals.bytes[1] += b[1];
            Totals::rank(&mut totals.busiest, b[0] + b[1], || {
                let d = describe(
                    &self.settings.label_prefix,
                    e.id,
                    e.client,
                    self.settings.rules[e.rule].target,
                );
                format!("{d} open")
            });
        }
        totals.log_stalls = self.log.stalls();
        Summary {
            open: open + self.waiting.len() as u64,
            totals,
        }
    }

    /// Stops accepting and reading; what is buffered gets [`STOP_FLUSH`] to be written.
    fn begin_stop(&mut self) {
        for slot in &mut self.listeners {
            if let Some(mut l) = slot.take() {
                let _ = self.poll.registry().deregister(&mut l);
            }
        }
        for w in std::mem::take(&mut self.waiting) {
            let target = self.settings.rules[w.rule].target;
            let (id, rule, client, at) = (w.id, w.rule, w.addr, w.at);
            self.log.send(Event::Open {
                id,
                rule,
                client,
                target,
                local: unspecified(&target),
                at,
            });
            self.log_unconnected(
                id,
                vec![(Side::Client, End::Shutdown), (Side::Server, End::Shutdown)],
            );
        }
        self.stopping = Some(Instant::now() + STOP_FLUSH);
    }

    fn flush_for_stop(&mut self, deadline: Instant) {
        let keys: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, e)| !e.done)
            .map(|(k, _)| k)
            .collect();
        let late = Instant::now() >= deadline;
        for key in keys {
            self.drive(key);
            let Some(entry) = self.conns.get(key) else {
                continue;
            };
            if !entry.done && (late || !entry.conn.holds_buffers()) {
                self.fail(key, Side::Client, End::Shutdown);
            }
        }
    }
}

/// What went through so far, as SIGUSR1 and the exit print it.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Connections open (or waiting for a descriptor) now.
    pub open: u64,
    pub totals: Totals,
}

impl Summary {
    pub fn line(&self) -> String {
        let t = &self.totals;
        format!(
            "tcpspy: connections: {} ({} open, {} closed); clients sent {} bytes, servers sent {} bytes; \
             reads paused for the log: {}; busiest: {}",
            t.connections,
            self.open,
            t.connections.saturating_sub(self.open),
            t.bytes[0],
            t.bytes[1],
            t.log_stalls,
            t.busiest_text()
        )
    }
}

/// `#0004 127.0.0.1:5000 -> 127.0.0.1:8000`
fn describe(prefix: &Option<String>, id: ConnId, client: SocketAddr, target: SocketAddr) -> String {
    match prefix {
        Some(p) => format!("#{p}-{id:04} {client} -> {target}"),
        None => format!("#{id:04} {client} -> {target}"),
    }
}

fn peer_sock(conn: &Conn<TcpStream>, side: Side) -> &TcpStream {
    match side {
        Side::Client => &conn.client.sock,
        Side::Server => &conn.server.sock,
    }
}

fn conn_token(key: usize, side: Side) -> Token {
    Token(CONN_BASE + key * 2 + side.index())
}

fn unspecified(like: &SocketAddr) -> SocketAddr {
    let ip = match like {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busiest_keeps_the_top_five_in_order() {
        let mut list = Vec::new();
        for (b, name) in [
            (5, "e"),
            (50, "a"),
            (1, "x"),
            (40, "b"),
            (30, "c"),
            (20, "d"),
            (10, "f"),
        ] {
            Totals::rank(&mut list, b, || name.to_string());
        }
        let names: Vec<&str> = list.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d", "f"]);
        let t = Totals {
            busiest: list,
            ..Totals::default()
        };
        assert!(t.busiest_text().starts_with("a (50 bytes), b (40 bytes)"));
        assert_eq!(Totals::default().busiest_text(), "none");
    }
}

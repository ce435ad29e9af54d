//! The reactor: one thread, one `mio::Poll` over every listener and every peer socket. It
//! takes new clients from the listeners ([`listen`]), starts their upstream connects, hands
//! readiness to the connection table ([`table`]), keeps the deadlines ([`timers`]), and stops.
//! Everything it has to say goes to the logging thread's queue, stderr lines included, so a
//! stalled terminal can never block it.
//!
//! - **Tokens.** [`WAKER`] (the logger drained its queue, or another thread has work for the
//!   reactor), [`SIGNALS`], one per listener from [`LISTENER_BASE`], and two per connection from
//!   [`CONN_BASE`]: `CONN_BASE + key * 2 + side` over one slab. Unknown tokens are ignored.
//! - **Readiness.** Every socket is registered once for READABLE | WRITABLE (edge-triggered);
//!   an event sets the connection's readable/writable flags, and only `WouldBlock` clears them.
//! - **Fairness and backpressure.** A connection reads at most [`table::READ_BUDGET`] chunks
//!   per turn; when the log queue is full no socket is read and no client accepted until the
//!   logger's wake-up.
//! - **Stopping.** Listeners close, reads stop, buffered bytes get [`STOP_FLUSH`] to reach
//!   their destination, then every connection is closed.
//! - **Scripted peers** (`tcpspy replay`, `tcpspy mock`: [`script`]). A side played from a
//!   recording has no socket and raises no event: after each drive of its connection the
//!   table asks it what it has to do ([`crate::relay::Socket::due`]), a deadline of the same
//!   timer set or a drive at once. A replay's run ends with its one connection.

pub mod listen;
pub mod script;
pub mod summary;
pub mod table;
pub mod tap;
pub mod timers;
pub mod transport;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::config::Rule;
use crate::control::command::{Command, Queue};
use crate::faults::Live;
use crate::faults::stage as faults_stage;
use crate::faults::stage::FaultStage;
use crate::log::event::{ConnId, Event};
use crate::log::queue::Sender;
use crate::pool::Pool;
use crate::relay::Conn;
use crate::stop::StopHandle;
use crate::sys;
use crate::types::{Dir, End, Side};
use listen::{Accepted, Listeners, Waiting};
use table::{Ready, Table, TableSettings};
use transport::Transport;

use crate::proxy::Kind;
use crate::proxy::pending::{Handover, Pending};

pub use summary::{Summary, Totals};

pub const WAKER: Token = Token(0);
pub const SIGNALS: Token = Token(1);
pub const LISTENER_BASE: usize = 16;
pub const CONN_BASE: usize = 1 << 20;
/// Tokens of connections in their proxy handshake (`HANDSHAKE_BASE + key * 2 + side`), above
/// every connection token (`CONN_BASE + 2 * MAX_CONNECTIONS`).
pub const HANDSHAKE_BASE: usize = 1 << 30;

/// How long a stop waits for buffered bytes to reach their destination.
pub const STOP_FLUSH: Duration = Duration::from_secs(1);

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
    /// Each rule's toxics (by rule index; a rule past the end has none), and their seed.
    pub faults: Vec<Arc<Live>>,
    pub seed: u64,
    /// The proxy listeners: each rule's kind, and their policy.
    pub proxy: crate::config::ProxyPlan,
    /// `tcpspy mock`: every accepted client is answered by a scripted server, not relayed.
    pub mock: Option<Arc<crate::replay::peer::MockPlan>>,
}

/// Gives each direction of a connection that its rule has toxics for a fault stage (unless it
/// has one); the others get none, and relay as if faults did not exist.
fn add_faults(
    settings: &Settings,
    conn: &mut Conn<Transport>,
    rule: usize,
    id: ConnId,
    now: Instant,
) {
    let Some(live) = settings.faults.get(rule) else {
        return;
    };
    for dir in Dir::BOTH {
        if live.covers(dir.index()) && !conn.stage_names(dir).contains(&faults_stage::NAME) {
            let stage = FaultStage::new(dir, id, settings.seed, live.clone(), now);
            conn.add_stage(dir, Box::new(stage));
        }
    }
}

/// The token of one side of connection `key`.
pub fn conn_token(key: usize, side: Side) -> Token {
    Token(CONN_BASE + key * 2 + side.index())
}

/// The connection and side a token names, if it names one.
pub fn token_conn(token: Token) -> Option<(usize, Side)> {
    let t = token.0.checked_sub(CONN_BASE)?;
    let side = if t & 1 == 0 {
        Side::Client
    } else {
        Side::Server
    };
    Some((t >> 1, side))
}

pub struct Reactor {
    poll: Poll,
    settings: Settings,
    listeners: Listeners,
    table: Table<Transport>,
    log: Arc<Sender>,
    next_id: ConnId,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    stop: StopHandle,
    /// Set once stopping: the time buffered bytes must have gone by.
    stopping: Option<Instant>,
    /// The control API's commands (`--control`).
    control: Option<Queue>,
    /// Connections of proxy listeners in their handshake (with the resolver threads).
    pending: Option<Pending>,
    /// By rule: intercept TLS (`--tls`).
    tls_rules: Vec<bool>,
    /// `tcpspy replay`: the run ends when its one connection has (see [`script`]).
    once: bool,
}

impl Reactor {
    /// Builds a reactor over bound listeners, one per rule. `stop`'s waker must belong to
    /// `poll`, registered with [`WAKER`]; the logger holds a clone.
    pub fn new(
        poll: Poll,
        stop: StopHandle,
        listeners: Vec<TcpListener>,
        settings: Settings,
        log: Arc<Sender>,
    ) -> io::Result<Reactor> {
        let listeners = Listeners::register(listeners, poll.registry(), LISTENER_BASE)?;
        let pool = match settings.splice {
            true => Pool::for_relay(settings.buffer_size).with_splice(),
            false => Pool::for_relay(settings.buffer_size),
        };
        let table = Table::new(
            TableSettings {
                connect_timeout: settings.connect_timeout,
                idle_timeout: settings.idle_timeout,
                log_data: settings.log_data,
                label_prefix: settings.label_prefix.clone(),
                read_budget: table::READ_BUDGET,
            },
            pool,
            log.clone(),
        );
        let pending = match settings.proxy.is_on() {
            false => None,
            true => {
                let resolver = crate::proxy::resolve::Resolver::start(stop.waker().clone())?;
                Some(Pending::new(
                    settings.proxy.policy.clone(),
                    settings.connect_timeout,
                    log.clone(),
                    settings.log_data,
                    HANDSHAKE_BASE,
                    Some(resolver),
                ))
            }
        };
        Ok(Reactor {
            pending,
            poll,
            settings,
            listeners,
            table,
            log,
            next_id: 1,
            signals: None,
            stop,
            stopping: None,
            control: None,
            tls_rules: Vec::new(),
            once: false,
        })
    }

    /// Intercepts TLS on the connections of the rules `rules` names (`--tls`).
    pub fn with_tls(&mut self, plan: crate::tls::Plan, wire: bool, rules: Vec<bool>) {
        self.table.with_tls(table::TlsRun { plan, wire });
        self.tls_rules = rules;
    }

    /// Starts watching a new connection for a ClientHello if its rule intercepts TLS.
    fn watch_tls(&mut self, key: usize, rule: usize, name: Option<&str>) {
        if !self.tls_rules.get(rule).copied().unwrap_or(false) {
            return;
        }
        let host = match name {
            Some(n) => crate::tls::plan::host_of(n).to_string(),
            None => self
                .settings
                .rules
                .get(rule)
                .map(|r| crate::tls::plan::host_of(&r.target_name).to_string())
                .unwrap_or_default(),
        };
        self.table.watch_tls(key, &host);
    }

    /// Stops the reactor on SIGINT or SIGTERM (delivered through the poll).
    pub fn watch_signals(&mut self, mut signals: signal_hook_mio::v1_0::Signals) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Takes the control API's commands from `queue` (drained when the waker fires).
    pub fn with_control(&mut self, queue: Queue) {
        self.control = Some(queue);
    }

    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Runs until stopped, then closes every connection and returns what was relayed.
    pub fn run(mut self) -> io::Result<Totals> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    WAKER => self.on_wake(now),
                    SIGNALS => self.on_signals(),
                    Token(t) if t >= HANDSHAKE_BASE => self.on_handshake(Token(t), now),
                    Token(t) if (LISTENER_BASE..CONN_BASE).contains(&t) => {
                        self.accept(t - LISTENER_BASE, now)
                    }
                    token => {
                        if let Some((key, side)) = token_conn(token) {
                            let ready = Ready {
                                readable: event.is_readable() || event.is_read_closed(),
                                writable: event.is_writable() || event.is_write_closed(),
                                error: event.is_error(),
                                read_closed: event.is_read_closed(),
                            };
                            self.table.event(key, side, ready, now);
                        }
                    }
                }
            }
            self.table.run_again(now);
            self.expire(now);
            if self.stop.is_stopped() && self.stopping.is_none() {
                self.begin_stop(now);
            }
            if let Some(deadline) = self.stopping {
                self.table.flush_for_stop(now, now >= deadline);
            }
            self.table.reap();
            self.accept_if_room(now);
            if (self.stopping.is_some() || self.once) && self.table.is_empty() {
                break;
            }
        }
        Ok(self.table.totals())
    }

    /// How long the next poll may wait: not past any deadline, nor past the time the logger
    /// is due to be woken for what is queued (see [`Sender::wake_due`]).
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if self.table.has_work() {
            return Some(Duration::ZERO);
        }
        let mut next = self.table.next_deadline();
        let handshakes = self.pending.as_ref().and_then(Pending::next_deadline);
        for t in [self.listeners.paused.until, self.stopping, handshakes]
            .into_iter()
            .flatten()
        {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        match self.log.wake_due() {
            Some(due) if due <= now => self.log.wake_logger(),
            Some(due) => next = Some(next.map_or(due, |n| n.min(due))),
            None => {}
        }
        next.map(|t| t.saturating_duration_since(now))
    }

    /// The logger drained its queue, a stop was asked, or the control API has commands.
    fn on_wake(&mut self, now: Instant) {
        let requests = self.control.as_ref().map(Queue::drain).unwrap_or_default();
        for r in requests {
            let answer = self.apply(r.command, now);
            let _ = r.answer.try_send(answer);
        }
        if let Some(p) = &mut self.pending {
            for h in p.answers(self.poll.registry(), now) {
                self.adopt(h, now);
            }
        }
        self.table.resume_stalled(now);
        // The connections just resumed may have filled the queue again; if so the wait for
        // room must be armed anew, or no wake-up would ever come for the listeners.
        if self.listeners.paused.log && (self.log.has_room() || !self.log.wait_for_room()) {
            self.listeners.paused.log = false;
            self.accept_all(now);
        }
    }

    fn accept_all(&mut self, now: Instant) {
        for rule in 0..self.listeners.len() {
            self.accept(rule, now);
        }
    }

    fn accept(&mut self, rule: usize, now: Instant) {
        if self.stopping.is_some()
            || self.listeners.paused.until.is_some()
            || self.listeners.paused.log
        {
            return;
        }
        loop {
            if self.connections() >= self.settings.max_connections {
                self.listeners.paused.full = true;
                return;
            }
            if !self.log.has_room() && self.log.wait_for_room() {
                // Each new client brings events to a queue already at its bound.
                self.listeners.paused.log = true;
                return;
            }
            match self.listeners.accept_one(rule) {
                Accepted::Client(sock, addr) => {
                    self.open(rule, sock, addr, now);
                    if !self.listeners.waiting.is_empty() {
                        return;
                    }
                }
                Accepted::None => return,
                Accepted::Exhausted(e) => {
                    self.out_of_descriptors(&e, now);
                    return;
                }
            }
        }
    }

    fn open(&mut self, rule: usize, client: TcpStream, addr: SocketAddr, now: Instant) {
        let id = self.next_id;
        self.next_id = self.next_id.saturating_add(1);
        self.table.count_connection();
        // Small request/response traffic must not wait for Nagle on either leg.
        let _ = client.set_nodelay(true);
        let kind = self.settings.proxy.kind(rule);
        if kind != Kind::Forward {
            let registry = self.poll.registry();
            let handover = self.pending.as_mut().and_then(|p| {
                p.open(
                    registry,
                    kind,
                    rule,
                    id,
                    client,
                    addr,
                    SystemTime::now(),
                    now,
                )
            });
            if let Some(h) = handover {
                self.adopt(h, now);
            }
            return;
        }
        let w = Waiting {
            rule,
            client,
            addr,
            id,
            at: SystemTime::now(),
        };
        if let Err(w) = self.connect(w, now) {
            self.listeners.waiting.push_back(w);
        }
    }

    /// Starts the upstream connect of an accepted client. Out of descriptors, the client is
    /// handed back to wait for the accept retry: it is not reset for our lack of descriptors.
    fn connect(&mut self, w: Waiting, now: Instant) -> Result<(), Waiting> {
        let Some(rule) = self.settings.rules.get(w.rule) else {
            return Ok(());
        };
        if let Some(plan) = self.settings.mock.clone() {
            self.mock(w, plan, now);
            return Ok(());
        }
        let target = rule.target;
        let server = match TcpStream::connect(target) {
            Ok(server) => server,
            Err(e) if sys::is_resource_exhaustion(&e) => {
                self.out_of_descriptors(&e, now);
                return Err(w);
            }
            Err(e) => {
                // No route and the like: the connect failed before it started.
                sys::reset_on_close(&w.client);
                tap::log_unconnected(
                    &self.log,
                    w.id,
                    w.rule,
                    w.addr,
                    target,
                    w.at,
                    vec![
                        (Side::Server, End::ConnectFailed(e.to_string())),
                        (Side::Client, End::Aborted),
                    ],
                );
                return Ok(());
            }
        };
        let _ = server.set_nodelay(true);
        let local = server
            .local_addr()
            .unwrap_or_else(|_| tap::unspecified(&target));
        self.log.send(Event::Open {
            id: w.id,
            rule: w.rule,
            client: w.addr,
            target,
            local,
            at: w.at,
            target_name: None,
        });
        let mut conn = Conn::new(Transport::Tcp(w.client), Transport::Tcp(server));
        add_faults(&self.settings, &mut conn, w.rule, w.id, now);
        let key = self.table.insert(w.id, w.rule, w.addr, target, conn, now);
        self.watch_tls(key, w.rule, None);
        self.register(key, false, now);
        Ok(())
    }

    /// Registers a new table entry's sockets with the poll (`again`: sockets a proxy
    /// handshake had registered already); a side that cannot be fails the connection.
    fn register(&mut self, key: usize, again: bool, now: Instant) {
        let both = Interest::READABLE | Interest::WRITABLE;
        let registry = self.poll.registry();
        let registered = match self.table.conn_mut(key) {
            Some(conn) => [
                (conn.client.sock.tcp_mut(), Side::Client),
                (conn.server.sock.tcp_mut(), Side::Server),
            ]
            .into_iter()
            .try_for_each(|(sock, side)| match (sock, again) {
                (Some(s), false) => registry.register(s, conn_token(key, side), both),
                (Some(s), true) => registry.reregister(s, conn_token(key, side), both),
                (None, _) => Ok(()),
            }),
            None => Ok(()),
        };
        if let Err(e) = registered {
            self.table
                .fail(key, Side::Server, End::Error(e.to_string()), now);
        }
    }

    /// Connections relayed and in their handshake.
    fn connections(&self) -> usize {
        self.table
            .len()
            .saturating_add(self.pending.as_ref().map_or(0, Pending::len))
    }

    /// Readiness on a socket of a connection in its proxy handshake.
    fn on_handshake(&mut self, token: Token, now: Instant) {
        let registry = self.poll.registry();
        let handover = self
            .pending
            .as_mut()
            .and_then(|p| p.event(registry, token, now));
        if let Some(h) = handover {
            self.adopt(h, now);
        }
    }

    /// A connection whose handshake is done: relayed from now on, like any other.
    fn adopt(&mut self, h: Handover, now: Instant) {
        let _ = h.client.set_nodelay(true);
        let mut conn = Conn::new(Transport::Tcp(h.client), Transport::Tcp(h.server));
        conn.connected();
        conn.count_relayed(Dir::ClientToServer, h.early);
        if let Some(guard) = h.guard {
            conn.add_stage(Dir::ClientToServer, Box::new(guard));
        }
        add_faults(&self.settings, &mut conn, h.rule, h.id, now);
        let key = self.table.insert(h.id, h.rule, h.addr, h.target, conn, now);
        self.watch_tls(key, h.rule, h.name.as_deref());
        self.register(key, true, now);
    }

    /// Applies a command of the control API.
    fn apply(&mut self, command: Command, now: Instant) -> Result<usize, String> {
        if self.stopping.is_some() {
            return Err("tcpspy is stopping".into());
        }
        match command {
            Command::Listen {
                index,
                rule,
                live,
                listener,
            } => {
                let i = index.unwrap_or(self.settings.rules.len());
                if i > self.settings.rules.len() {
                    return Err(format!("no rule {i}"));
                }
                self.listeners
                    .set(i, listener, self.poll.registry(), LISTENER_BASE)
                    .map_err(|e| format!("cannot listen: {e}"))?;
                self.log.send(Event::Rule {
                    index: i,
                    rule: Box::new(rule.clone()),
                });
                self.line(format!(
                    "tcpspy: listening on {}, relaying to {}; {}",
                    rule.listen, rule.target_name, rule.spec
                ));
                if i == self.settings.rules.len() {
                    self.settings.rules.push(rule);
                } else {
                    self.settings.rules[i] = rule;
                }
                while self.settings.faults.len() <= i {
                    self.settings.faults.push(Live::new(Vec::new()));
                }
                self.settings.faults[i] = live;
                self.accept(i, now);
                Ok(i)
            }
            Command::Close { index } => {
                self.listeners.close_one(index, self.poll.registry());
                if let Some(rule) = self.settings.rules.get(index) {
                    let line = format!(
                        "tcpspy: no longer listening on {}; {}",
                        rule.listen, rule.spec
                    );
                    self.line(line);
                }
                for key in self.table.keys_of_rule(index) {
                    let down = End::Fault {
                        name: "down".into(),
                        reset: false,
                    };
                    self.table.fail(key, Side::Server, down, now);
                }
                Ok(index)
            }
            Command::Touch { index } => {
                for key in self.table.keys_of_rule(index) {
                    let Some(entry) = self.table.get(key) else {
                        continue;
                    };
                    let id = entry.id;
                    if let Some(conn) = self.table.conn_mut(key) {
                        add_faults(&self.settings, conn, index, id, now);
                    }
                    self.table.drive(key, now);
                }
                Ok(index)
            }
        }
    }

    /// Stops accepting for [`listen::ACCEPT_RETRY`]: edge-triggered listeners will not report
    /// the waiting clients again, so a timer retries.
    fn out_of_descriptors(&mut self, e: &io::Error, now: Instant) {
        if self.listeners.out_of_descriptors(now) {
            self.line(format!(
                "tcpspy: out of descriptors ({e}); new clients wait, retrying every {} ms",
                listen::ACCEPT_RETRY.as_millis()
            ));
        }
    }

    /// A line for stderr, in order with the connection lines, through the logging thread.
    fn line(&self, line: String) {
        self.log.send(Event::Line(line));
    }

    /// Takes the clients that queued while we were at `max_connections`: the listeners are
    /// edge-triggered and raise no new event for them.
    fn accept_if_room(&mut self, now: Instant) {
        if self.listeners.paused.full && self.connections() < self.settings.max_connections {
            self.listeners.paused.full = false;
            self.accept_all(now);
        }
    }

    fn expire(&mut self, now: Instant) {
        if self.listeners.paused.until.is_some_and(|t| t <= now) {
            self.listeners.paused.until = None;
            while let Some(w) = self.listeners.waiting.pop_front() {
                if let Err(w) = self.connect(w, now) {
                    self.listeners.waiting.push_front(w);
                    break;
                }
            }
            if self.listeners.waiting.is_empty() {
                if std::mem::take(&mut self.listeners.exhausted) {
                    self.line("tcpspy: descriptors available again; accepting".into());
                }
                self.accept_all(now);
            }
        }
        if let Some(p) = &mut self.pending {
            p.expire(self.poll.registry(), now);
        }
        self.table.expire(now);
    }

    fn on_signals(&mut self) {
        let Some(signals) = &mut self.signals else {
            return;
        };
        let mut summary = false;
        let mut first_stop = false;
        for sig in signals.pending() {
            match sig {
                signal_hook::consts::SIGUSR1 => summary = true,
                _ => first_stop |= !self.stop.stop_again(),
            }
        }
        if first_stop {
            self.line(
                "tcpspy: stopping: closing connections and writing the logs (signal again to exit at once)"
                    .into(),
            );
        }
        if summary {
            let line = self.summary().line();
            self.line(line);
        }
    }

    /// What went through so far: closed connections plus the open ones as they stand.
    pub fn summary(&self) -> Summary {
        self.table.summary(self.listeners.waiting.len())
    }

    /// Stops accepting and reading; what is buffered gets [`STOP_FLUSH`] to be written.
    fn begin_stop(&mut self, now: Instant) {
        self.listeners.close(self.poll.registry());
        if let Some(p) = &mut self.pending {
            p.stop(self.poll.registry());
        }
        for w in std::mem::take(&mut self.listeners.waiting) {
            let target = self
                .settings
                .rules
                .get(w.rule)
                .map_or_else(|| tap::unspecified(&w.addr), |r| r.target);
            tap::log_unconnected(
                &self.log,
                w.id,
                w.rule,
                w.addr,
                target,
                w.at,
                vec![(Side::Client, End::Shutdown), (Side::Server, End::Shutdown)],
            );
        }
        self.table.begin_stop();
        self.stopping = Some(now.checked_add(STOP_FLUSH).unwrap_or(now));
    }
}

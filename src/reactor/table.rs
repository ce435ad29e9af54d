//! The connection table: every relayed connection in a slab, keyed as tokens name them, and
//! what happens to them between events. Generic over the [`Socket`], so that the simulation
//! drives this very table (lists, timers, deferred removal, the pool, splice included) with
//! in-memory sockets; the reactor instantiates it with mio's `TcpStream` and registers the
//! sockets itself.
//!
//! - **Tokens.** Connection `key` has tokens `CONN_BASE + key * 2 + side` (see
//!   [`super::conn_token`]); an event names a key and a side.
//! - **Deferred removal.** A connection that closes during an event batch is only removed by
//!   [`Table::reap`] after the batch, so a later event of the same batch cannot reach a new
//!   connection that took its slab key (mio issue 219). Its timers go at once.
//! - **Lists.** A connection whose read budget ran out is driven again after the others
//!   (`again`); one that stopped reading because the log queue was full is driven again when
//!   the logger wakes the reactor (`stalled`); one that needed a relay buffer and found none,
//!   when a buffer is free (`starved`).
//! - **Time** is injected: every entry point takes `now`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use slab::Slab;

use super::summary::{Summary, Totals, describe};
use super::tap::{LogTap, Story};
use super::timers::{Kind, Slots, Timers};
use crate::log::event::{ConnId, Event};
use crate::log::queue::Sender;
use crate::pool::Pool;
use crate::relay::{Conn, Phase, Socket, Status};
use crate::types::{Dir, End, Side};

/// Chunks a connection may read per turn before others get theirs.
pub const READ_BUDGET: u32 = 16;

/// What the table needs to know of the run.
#[derive(Clone, Debug)]
pub struct TableSettings {
    pub connect_timeout: Duration,
    pub idle_timeout: Option<Duration>,
    /// False with `--log none` and no live view: the relayed bytes are not copied to the
    /// logger at all.
    pub log_data: bool,
    /// Put before connection numbers in messages (`--reuse-port`).
    pub label_prefix: Option<String>,
    /// Chunks per turn ([`READ_BUDGET`]; the simulation uses tiny budgets).
    pub read_budget: u32,
}

/// Readiness an event reports for one side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    pub readable: bool,
    pub writable: bool,
    /// An error or hang-up: the next read or write surfaces it.
    pub error: bool,
    /// The peer shut its writing side (FIN) or the socket hung up.
    pub read_closed: bool,
}

/// A connection in the table.
pub struct Entry<S> {
    pub id: ConnId,
    pub rule: usize,
    pub client: SocketAddr,
    pub target: SocketAddr,
    pub conn: Conn<S>,
    /// When bytes last moved either way (read or written).
    last_active: Instant,
    activity: u64,
    story: Option<Box<Story>>,
    timers: Slots,
    /// Closed; removed after the batch.
    done: bool,
    on_again: bool,
    on_stalled: bool,
    on_starved: bool,
    /// `--tls`: the connection watches for a ClientHello, or is in its handshakes.
    tls: Option<Box<Intercept>>,
}

/// A connection of a `--tls` rule.
struct Intercept {
    /// The target's host as the rule or the proxy client named it (the upstream SNI when the
    /// client gives none).
    host: Box<str>,
    handshake: Option<crate::tls::Handshake>,
}

/// The run's TLS, as the table uses it.
pub struct TlsRun {
    pub plan: crate::tls::Plan,
    /// The capture wants the client leg's records.
    pub wire: bool,
}

impl<S> Entry<S> {
    pub fn is_done(&self) -> bool {
        self.done
    }
}

/// Every connection being relayed.
pub struct Table<S> {
    entries: Slab<Entry<S>>,
    pub pool: Pool,
    log: Arc<Sender>,
    timers: Timers,
    settings: TableSettings,
    again: Vec<usize>,
    stalled: Vec<usize>,
    starved: Vec<usize>,
    closed: Vec<usize>,
    stopping: bool,
    totals: Totals,
    tls: Option<Box<TlsRun>>,
}

impl<S: Socket> Table<S> {
    pub fn new(settings: TableSettings, pool: Pool, log: Arc<Sender>) -> Table<S> {
        Table {
            entries: Slab::new(),
            pool,
            log,
            timers: Timers::default(),
            settings,
            again: Vec::new(),
            stalled: Vec::new(),
            starved: Vec::new(),
            closed: Vec::new(),
            stopping: false,
            totals: Totals::default(),
            tls: None,
        }
    }

    /// Intercepts TLS on the connections [`watch_tls`](Table::watch_tls) names.
    pub fn with_tls(&mut self, run: TlsRun) {
        self.tls = Some(Box::new(run));
    }

    /// Connection `key` watches its client for a ClientHello (its rule has `--tls`); `host`
    /// is the target's name.
    pub fn watch_tls(&mut self, key: usize, host: &str) {
        if self.tls.is_none() {
            return;
        }
        if let Some(e) = self.entries.get_mut(key) {
            e.conn.watch_tls(true);
            e.tls = Some(Box::new(Intercept {
                host: host.into(),
                handshake: None,
            }));
        }
    }

    /// Connections in the table, those closed in this batch included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: usize) -> Option<&Entry<S>> {
        self.entries.get(key)
    }

    /// The connection of `key`, to register its sockets.
    pub fn conn_mut(&mut self, key: usize) -> Option<&mut Conn<S>> {
        self.entries.get_mut(key).map(|e| &mut e.conn)
    }

    /// The keys of rule `rule`'s connections still open.
    pub fn keys_of_rule(&self, rule: usize) -> Vec<usize> {
        self.entries
            .iter()
            .filter(|(_, e)| e.rule == rule && !e.done)
            .map(|(k, _)| k)
            .collect()
    }

    /// Counts a connection accepted (the summary's figure), whether or not it gets an entry.
    pub fn count_connection(&mut self) {
        self.totals.connections = self.totals.connections.saturating_add(1);
    }

    /// Adds a connection whose upstream connect has started; returns its key. Its connect
    /// deadline and idle check start now.
    pub fn insert(
        &mut self,
        id: ConnId,
        rule: usize,
        client: SocketAddr,
        target: SocketAddr,
        conn: Conn<S>,
        now: Instant,
    ) -> usize {
        let key = self.entries.insert(Entry {
            id,
            rule,
            client,
            target,
            conn,
            last_active: now,
            activity: 0,
            story: None,
            timers: Slots::default(),
            done: false,
            on_again: false,
            on_stalled: false,
            on_starved: false,
            tls: None,
        });
        let connect_by = now.checked_add(self.settings.connect_timeout);
        let idle_at = self
            .settings
            .idle_timeout
            .and_then(|idle| now.checked_add(idle));
        if let Some(e) = self.entries.get_mut(key) {
            self.timers
                .set(&mut e.timers, key, Kind::Connect, connect_by);
            self.timers.set(&mut e.timers, key, Kind::Idle, idle_at);
        }
        key
    }

    /// Readiness for one side of connection `key`.
    pub fn event(&mut self, key: usize, side: Side, ready: Ready, now: Instant) {
        let Some(entry) = self.entries.get_mut(key) else {
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
        peer.readable |= ready.readable || ready.error;
        peer.writable |= ready.writable || ready.error;
        peer.hung_up |= ready.read_closed || ready.error;
        if side == Side::Server && entry.conn.phase() == Phase::Connecting {
            self.check_connect(key, now);
        } else if ready.error && entry.conn.read_done(side) {
            // A reset after the side's FIN: nothing more will be read from it, so no read
            // would see the error, and the other side must not wait for its own next write
            // to learn of it. (Before its FIN, the reads surface the error after the data.)
            let sock = match side {
                Side::Client => &entry.conn.client.sock,
                Side::Server => &entry.conn.server.sock,
            };
            if let Ok(Some(e)) = sock.take_error() {
                self.fail(key, side, End::from_error(&e), now);
                return;
            }
        }
        self.drive(key, now);
    }

    /// Looks at a connecting socket as mio documents it: `take_error`, then `peer_addr`
    /// (`NotConnected` means still in progress).
    fn check_connect(&mut self, key: usize, now: Instant) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        let sock = &entry.conn.server.sock;
        let result = match sock.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match sock.peer_addr() {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotConnected => Ok(false),
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(false) => {}
            Ok(true) => {
                entry.conn.connected();
                self.timers.set(&mut entry.timers, key, Kind::Connect, None);
                self.log.send(Event::Connected {
                    id: entry.id,
                    at: SystemTime::now(),
                });
            }
            Err(e) => self.fail(key, Side::Server, End::ConnectFailed(e.to_string()), now),
        }
    }

    /// Relays what readiness, the log, the pool and the budget allow.
    pub fn drive(&mut self, key: usize, now: Instant) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if entry.done {
            return;
        }
        if entry.tls.as_ref().is_some_and(|t| t.handshake.is_some()) {
            self.drive_handshake(key, now);
            return;
        }
        let mut tap = LogTap {
            data: self.settings.log_data,
            may_read: !self.stopping,
            story: Some(&mut entry.story),
            ..LogTap::new(&self.log, entry.id, now)
        };
        let mut budget = self.settings.read_budget;
        let status = entry.conn.drive(&mut self.pool, &mut tap, &mut budget);
        let activity = entry.conn.activity();
        if activity != entry.activity {
            entry.activity = activity;
            entry.last_active = now;
        }
        // A scripted peer (replay, mock) raises no poll event: it says when it has work.
        let script = match status {
            Status::Closed => Default::default(),
            _ => entry.conn.scripted(now),
        };
        let wake = match (entry.conn.wake_at(), script.wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.timers.set(&mut entry.timers, key, Kind::Wake, wake);
        if self.tls.as_ref().is_some_and(|t| t.wire) {
            send_wire(&self.log, entry.id, &mut entry.conn.client.sock);
        }
        let status = match (status, script.again) {
            (Status::Open, true) => Status::Yielded,
            (s, _) => s,
        };
        if let Some((side, how)) = script.end {
            self.fail(key, side, how, now);
            return;
        }
        match status {
            Status::Open => {}
            Status::Caught => self.begin_handshake(key, now),
            Status::Stalled => {
                if !entry.on_stalled && !self.stopping {
                    entry.on_stalled = true;
                    self.stalled.push(key);
                }
            }
            Status::Starved => {
                if !entry.on_starved {
                    entry.on_starved = true;
                    self.starved.push(key);
                }
            }
            Status::Yielded => {
                if !entry.on_again {
                    entry.on_again = true;
                    self.again.push(key);
                }
            }
            Status::Closed => self.finish(key, now),
        }
    }

    /// The client sent a ClientHello: the relay pauses while tcpspy does both handshakes.
    fn begin_handshake(&mut self, key: usize, now: Instant) {
        let wire = self.tls.as_ref().is_some_and(|t| t.wire);
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        let first = entry.conn.take_caught().unwrap_or_default();
        let Some(t) = entry.tls.as_mut() else {
            return;
        };
        t.handshake = Some(crate::tls::Handshake::new(first, wire));
        // The handshakes get the connect timeout.
        let by = now.checked_add(self.settings.connect_timeout);
        self.timers.set(&mut entry.timers, key, Kind::Connect, by);
        self.drive_handshake(key, now);
    }

    /// Moves a connection's handshakes on; once both are done, relays again over TLS.
    fn drive_handshake(&mut self, key: usize, now: Instant) {
        let (Some(run), Some(entry)) = (self.tls.as_deref_mut(), self.entries.get_mut(key)) else {
            return;
        };
        let Some(t) = entry.tls.as_mut() else {
            return;
        };
        let Some(hs) = t.handshake.as_mut() else {
            return;
        };
        let conn = &mut entry.conn;
        let step = hs.drive(
            &mut conn.client.sock,
            &mut conn.server.sock,
            &mut run.plan,
            &t.host,
            entry.target.ip(),
        );
        let id = entry.id;
        let at = SystemTime::now();
        // The secrets go before the records they open (Wireshark reads the capture in order);
        // the records only once the hello is one (else they are relayed as plain bytes).
        if let Some(lines) = run.plan.keys.as_ref().and_then(|k| k.take()) {
            self.log.send(Event::Keys(lines));
        }
        if hs.hello_seen()
            && let Some(w) = hs.take_wire()
        {
            send_wire_pair(&self.log, id, w);
        }
        for what in hs.take_events() {
            self.log.send(Event::Tls {
                id,
                at,
                what: Box::new(what),
            });
        }
        self.settle(key, step, now);
    }

    /// Acts on what a connection's handshakes came to.
    fn settle(&mut self, key: usize, step: crate::tls::Step, now: Instant) {
        let wire = self.tls.as_ref().is_some_and(|t| t.wire);
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        let Some(t) = entry.tls.as_mut() else {
            return;
        };
        let conn = &mut entry.conn;
        let id = entry.id;
        let at = SystemTime::now();
        match step {
            crate::tls::Step::Wait => {}
            crate::tls::Step::Done(sessions) => {
                let (server_side, client_side) = *sessions;
                let ok = conn
                    .client
                    .sock
                    .start_tls(rustls::Connection::Server(server_side), wire)
                    && conn
                        .server
                        .sock
                        .start_tls(rustls::Connection::Client(client_side), false);
                entry.tls = None;
                conn.watch_tls(false);
                self.timers.set(&mut entry.timers, key, Kind::Connect, None);
                if !ok {
                    self.fail(
                        key,
                        Side::Client,
                        End::Tls("TLS is not available here".into()),
                        now,
                    );
                    return;
                }
                // The sessions may hold plaintext already (a request sent with the Finished).
                for p in [&mut conn.client, &mut conn.server] {
                    p.readable = true;
                    p.writable = true;
                }
                self.drive(key, now);
            }
            crate::tls::Step::NotTls(bytes, why) => {
                self.log.send(Event::Tls {
                    id,
                    at,
                    what: Box::new(crate::tls::Event::NotTls(why)),
                });
                t.handshake = None;
                self.timers.set(&mut entry.timers, key, Kind::Connect, None);
                let mut tap = LogTap {
                    data: self.settings.log_data,
                    ..LogTap::new(&self.log, id, now)
                };
                if !conn.inject(&bytes, &mut self.pool, &mut tap) {
                    let why =
                        End::Tls("no buffer for the bytes of a hello that was not one".into());
                    self.fail(key, Side::Client, why, now);
                    return;
                }
                conn.client.readable = true;
                self.drive(key, now);
            }
            crate::tls::Step::Failed(side, why) => {
                self.log.send(Event::Tls {
                    id,
                    at,
                    what: Box::new(crate::tls::Event::Failed(why)),
                });
                t.handshake = None;
                self.fail(key, side, End::Tls("the TLS handshake failed".into()), now);
            }
        }
    }

    /// Ends a connection from outside the relay (connect failure, timeout, stop).
    pub fn fail(&mut self, key: usize, side: Side, how: End, now: Instant) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if entry.done {
            return;
        }
        let mut tap = LogTap::new(&self.log, entry.id, now);
        entry.conn.fail(side, how, &mut tap, &mut self.pool);
        self.finish(key, now);
    }

    /// Records a closed connection; its sockets close when it is removed after the batch.
    fn finish(&mut self, key: usize, now: Instant) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if entry.done {
            return;
        }
        entry.done = true;
        self.timers.clear(&mut entry.timers, key);
        let ends = entry.conn.ends();
        entry.conn.client.sock.ended(&ends);
        entry.conn.server.sock.ended(&ends);
        for dir in Dir::BOTH {
            let story = entry.story.as_deref_mut();
            if let Some(event) = story.and_then(|s| s.release(entry.id, dir, now)) {
                self.log.send(event);
            }
        }
        let conn = &entry.conn;
        // The hex dump's closing figures: two getsockopt calls a connection nobody logs
        // need not make.
        let tcp = match self.settings.log_data {
            true => [conn.client.sock.tcp_stats(), conn.server.sock.tcp_stats()],
            false => [None, None],
        };
        let undelivered = conn.undelivered();
        let bytes = [
            conn.bytes(Dir::ClientToServer)
                .saturating_sub(undelivered[0]),
            conn.bytes(Dir::ServerToClient)
                .saturating_sub(undelivered[1]),
        ];
        for (total, b) in self.totals.bytes.iter_mut().zip(bytes) {
            *total = total.saturating_add(b);
        }
        let (id, client, target) = (entry.id, entry.client, entry.target);
        let label = &self.settings.label_prefix;
        Totals::rank(
            &mut self.totals.busiest,
            bytes[0].saturating_add(bytes[1]),
            || describe(label, id, client, target),
        );
        self.log.send(Event::Close {
            id: entry.id,
            at: SystemTime::now(),
            bytes,
            undelivered,
            ends,
            held: Box::new(entry.story.as_ref().map(|s| s.totals).unwrap_or_default()),
            tcp: Box::new(tcp),
        });
        self.closed.push(key);
    }

    /// Removes the connections closed in this batch, resetting the sides that must see a
    /// reset; returns how many went.
    pub fn reap(&mut self) -> usize {
        let n = self.closed.len();
        for key in self.closed.drain(..) {
            if let Some(entry) = self.entries.try_remove(key) {
                for (side, sock) in [
                    (Side::Client, &entry.conn.client.sock),
                    (Side::Server, &entry.conn.server.sock),
                ] {
                    if entry.conn.must_reset(side) {
                        sock.reset_on_close();
                    }
                }
            }
        }
        n
    }

    /// True when a connection waits for its next turn: poll without waiting.
    pub fn has_work(&self) -> bool {
        !self.again.is_empty() || (!self.starved.is_empty() && self.pool.has_buffer())
    }

    /// Drives the connections whose budget ran out, and those waiting for a buffer if one is
    /// free.
    pub fn run_again(&mut self, now: Instant) {
        for key in std::mem::take(&mut self.again) {
            if let Some(entry) = self.entries.get_mut(key) {
                entry.on_again = false;
                self.drive(key, now);
            }
        }
        if self.pool.has_buffer() {
            for key in std::mem::take(&mut self.starved) {
                if let Some(entry) = self.entries.get_mut(key) {
                    entry.on_starved = false;
                    self.drive(key, now);
                }
            }
        }
    }

    /// The log queue has room again: drives the connections that stopped reading for it.
    pub fn resume_stalled(&mut self, now: Instant) {
        for key in std::mem::take(&mut self.stalled) {
            if let Some(entry) = self.entries.get_mut(key) {
                entry.on_stalled = false;
                self.drive(key, now);
            }
        }
    }

    /// True when a connection waits for the log queue to drain.
    pub fn has_stalled(&self) -> bool {
        !self.stalled.is_empty()
    }

    /// The nearest deadline of any connection.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Deadlines held (one per kind per connection at most).
    pub fn deadlines(&self) -> usize {
        self.timers.len()
    }

    /// Acts on every deadline that is due.
    pub fn expire(&mut self, now: Instant) {
        while let Some((key, kind)) = self.timers.pop_due(now) {
            let Some(entry) = self.entries.get_mut(key) else {
                continue;
            };
            Timers::fired(&mut entry.timers, kind);
            if entry.done {
                continue;
            }
            match kind {
                Kind::Connect if entry.conn.phase() == Phase::Connecting => {
                    self.fail(key, Side::Server, End::ConnectTimeout, now);
                }
                Kind::Connect if entry.tls.as_ref().is_some_and(|t| t.handshake.is_some()) => {
                    self.handshake_timeout(key, now);
                }
                Kind::Connect => {}
                Kind::Idle => {
                    let Some(idle) = self.settings.idle_timeout else {
                        continue;
                    };
                    match entry.last_active.checked_add(idle) {
                        Some(due) if due > now => {
                            self.timers
                                .set(&mut entry.timers, key, Kind::Idle, Some(due));
                        }
                        _ => self.fail(key, Side::Client, End::IdleTimeout, now),
                    }
                }
                Kind::Wake => self.drive(key, now),
            }
        }
    }

    /// A handshake that did not finish within the connect timeout: an unfinished hello is
    /// relayed as it came (it may not be TLS at all); a handshake under way fails.
    fn handshake_timeout(&mut self, key: usize, now: Instant) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        let Some(hs) = entry.tls.as_mut().and_then(|t| t.handshake.as_mut()) else {
            return;
        };
        let secs = self.settings.connect_timeout.as_secs_f64();
        let step = match hs.give_back() {
            Some(bytes) => crate::tls::Step::NotTls(
                bytes,
                format!("no whole ClientHello within {secs}s; relayed as it came"),
            ),
            None => crate::tls::Step::Failed(
                Side::Client,
                format!("the TLS handshakes did not complete within {secs}s (--connect-timeout)"),
            ),
        };
        self.settle(key, step, now);
    }

    /// Stops reading: from now on connections only write out what they hold.
    pub fn begin_stop(&mut self) {
        self.stopping = true;
        self.stalled.clear();
        for (_, e) in self.entries.iter_mut() {
            e.on_stalled = false;
        }
    }

    /// One turn of the stop: drives every connection, and closes those that hold nothing in
    /// flight, or all of them once `late`.
    pub fn flush_for_stop(&mut self, now: Instant, late: bool) {
        let keys: Vec<usize> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.done)
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            self.drive(key, now);
            let Some(entry) = self.entries.get(key) else {
                continue;
            };
            if !entry.done && (late || !entry.conn.holds_buffers()) {
                self.fail(key, Side::Client, End::Shutdown, now);
            }
        }
    }

    /// What went through so far: closed connections plus the open ones as they stand.
    /// `waiting` counts clients accepted but not yet in the table.
    pub fn summary(&self, waiting: usize) -> Summary {
        let mut totals = self.totals.clone();
        let mut open = 0u64;
        for (_, e) in self.entries.iter().filter(|(_, e)| !e.done) {
            open += 1;
            let b = [
                e.conn.bytes(Dir::ClientToServer),
                e.conn.bytes(Dir::ServerToClient),
            ];
            totals.bytes[0] = totals.bytes[0].saturating_add(b[0]);
            totals.bytes[1] = totals.bytes[1].saturating_add(b[1]);
            Totals::rank(&mut totals.busiest, b[0].saturating_add(b[1]), || {
                let d = describe(&self.settings.label_prefix, e.id, e.client, e.target);
                format!("{d} open")
            });
        }
        totals.log_stalls = self.log.stalls();
        Summary {
            open: open.saturating_add(waiting as u64),
            totals,
        }
    }

    /// The totals at the end of the run.
    pub fn totals(&self) -> Totals {
        let mut t = self.totals.clone();
        t.log_stalls = self.log.stalls();
        t
    }
}
/// The client leg's records since the last call, for the capture.
fn send_wire<S: Socket>(log: &Sender, id: ConnId, sock: &mut S) {
    if let Some(w) = sock.take_wire() {
        send_wire_pair(log, id, w);
    }
}

fn send_wire_pair(log: &Sender, id: ConnId, w: [Vec<u8>; 2]) {
    let at = SystemTime::now();
    for (dir, bytes) in [Dir::ClientToServer, Dir::ServerToClient]
        .into_iter()
        .zip(w)
    {
        if !bytes.is_empty() {
            log.send(Event::Wire { id, dir, at, bytes });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::transport::Transport;

    /// An idle connection costs its entry (and the kernel's sockets): what only a pause, a
    /// stage or an end needs is boxed or inline-small, so that 9000 held connections stay a
    /// few MiB. The bound leaves room for a boxed variant or two in the transport.
    #[test]
    fn an_entry_stays_small() {
        let entry = std::mem::size_of::<Entry<Transport>>();
        assert!(entry <= 512, "Entry<Transport> is {entry} bytes");
    }
}

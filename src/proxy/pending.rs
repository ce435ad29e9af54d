//! The handshake phase of a proxy listener's connection, on the reactor: read what the client
//! asks for (SOCKS5 or HTTP), check it against the policy, resolve a name (on the resolver
//! threads), connect, answer, and hand both sockets to the connection table, which relays
//! from then on. A connection here holds its client socket (and, while connecting, its
//! upstream socket), registered with tokens from [`crate::reactor::HANDSHAKE_BASE`].
//!
//! The record: nothing is logged until the destination is connected or given up, so that
//! the connection's `Open` names the real destination (files, index, capture); the handshake
//! then goes to the log as story lines ([`Event::Note`], stage `socks5`/`http-proxy`/
//! `transparent`), never as relayed data. Bytes the client sent past the handshake (an
//! absolute-form request, data sent before the answer) are written upstream here and logged
//! as the connection's first chunk.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::resolve::{Answer, Resolver};
use super::socks5::{self, Reply, Socks5};
use super::{Dest, Kind, Policy, http};
use crate::log::event::{ConnId, Event};
use crate::log::queue::Sender;
use crate::sys;
use crate::types::{Dir, End, Side};

/// The largest SOCKS message (a greeting of 255 methods, a request for a 255-byte name).
const SOCKS_MAX: usize = 1024;

/// Both sockets of a connection whose handshake is done, for the connection table.
pub struct Handover {
    pub id: ConnId,
    pub rule: usize,
    pub addr: SocketAddr,
    pub target: SocketAddr,
    pub client: TcpStream,
    pub server: TcpStream,
    /// An absolute-form HTTP connection's watch for requests to other hosts.
    pub guard: Option<super::guard::HostGuard>,
    /// Bytes of the client's the handshake already wrote upstream.
    pub early: u64,
    /// The destination as the client named it (`host:port`), if by name.
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Reading,
    Resolving,
    Connecting,
    /// Answers and early bytes being written; then the handover.
    Finishing,
    /// A refusal being written; then the close.
    Refusing,
}

/// A refusal: the SOCKS reply code and the HTTP status.
#[derive(Clone, Copy)]
struct Refusal {
    socks: Reply,
    status: u16,
    reason: &'static str,
}

const NOT_ALLOWED: Refusal = Refusal {
    socks: Reply::NotAllowed,
    status: 403,
    reason: "Forbidden",
};
const UNRESOLVED: Refusal = Refusal {
    socks: Reply::HostUnreachable,
    status: 502,
    reason: "Bad Gateway",
};
const TIMED_OUT: Refusal = Refusal {
    socks: Reply::TtlExpired,
    status: 504,
    reason: "Gateway Timeout",
};
const RESOLVE_TIMED_OUT: Refusal = Refusal {
    socks: Reply::HostUnreachable,
    status: 504,
    reason: "Gateway Timeout",
};

fn connect_refusal(e: &io::Error) -> Refusal {
    let socks = match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Reply::ConnectionRefused,
        Some(libc::EHOSTUNREACH) => Reply::HostUnreachable,
        Some(libc::ENETUNREACH) => Reply::NetworkUnreachable,
        Some(libc::ETIMEDOUT) => Reply::TtlExpired,
        _ => Reply::GeneralFailure,
    };
    let (status, reason) = match socks {
        Reply::TtlExpired => (504, "Gateway Timeout"),
        _ => (502, "Bad Gateway"),
    };
    Refusal {
        socks,
        status,
        reason,
    }
}

struct Handshake {
    id: ConnId,
    rule: usize,
    kind: Kind,
    client: TcpStream,
    addr: SocketAddr,
    at: SystemTime,
    state: State,
    deadline: Option<Instant>,
    buf: Vec<u8>,
    /// Answers waiting to be written to the client.
    out: Vec<u8>,
    /// Bytes for the server, written before the handover.
    early: Vec<u8>,
    socks: Option<Socks5>,
    /// Story lines, logged after the `Open`.
    notes: Vec<(Dir, String, SystemTime)>,
    dest: Option<Dest>,
    /// The destination as the client named it (`host:port`): the connection's target name.
    name: Option<String>,
    /// HTTP: CONNECT (answered 200) rather than an absolute-form request.
    tunnel: bool,
    /// A name matched no host glob: its addresses must match a CIDR.
    check_addrs: bool,
    addrs: VecDeque<SocketAddr>,
    server: Option<TcpStream>,
    target: Option<SocketAddr>,
    /// What ends the connection once the refusal is written.
    ends: Vec<(Side, End)>,
}

impl Handshake {
    fn note(&mut self, dir: Dir, text: String) {
        self.notes.push((dir, text, SystemTime::now()));
    }
}

/// What happened to a handshake when driven.
enum Outcome {
    Wait,
    Done(Box<Handshake>),
    Closed,
}

/// Every connection still in its handshake.
pub struct Pending {
    slab: Slab<Box<Handshake>>,
    resolver: Option<Resolver>,
    policy: Policy,
    connect_timeout: Duration,
    log: Arc<Sender>,
    log_data: bool,
    base: usize,
}

fn hex(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes.iter().take(32).map(|b| format!("{b:02x}")).collect();
    let more = if bytes.len() > 32 { " ..." } else { "" };
    format!("{}{more}", shown.join(" "))
}

/// Writes as much of `buf` as the socket takes; true once all of it is written.
fn flush(sock: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<bool> {
    while !buf.is_empty() {
        match sock.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf.drain(..n.min(buf.len()));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

impl Pending {
    pub fn new(
        policy: Policy,
        connect_timeout: Duration,
        log: Arc<Sender>,
        log_data: bool,
        base: usize,
        resolver: Option<Resolver>,
    ) -> Pending {
        Pending {
            slab: Slab::new(),
            resolver,
            policy,
            connect_timeout,
            log,
            log_data,
            base,
        }
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    fn token(&self, key: usize, side: Side) -> Token {
        Token(self.base + key * 2 + side.index())
    }

    /// The key and side a handshake token names.
    pub fn token_key(&self, token: Token) -> Option<(usize, Side)> {
        let t = token.0.checked_sub(self.base)?;
        let side = if t & 1 == 0 {
            Side::Client
        } else {
            Side::Server
        };
        Some((t >> 1, side))
    }

    /// Takes an accepted client of a proxy listener.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &mut self,
        registry: &Registry,
        kind: Kind,
        rule: usize,
        id: ConnId,
        mut client: TcpStream,
        addr: SocketAddr,
        at: SystemTime,
        now: Instant,
    ) -> Option<Handover> {
        let entry = self.slab.vacant_entry();
        let key = entry.key();
        let token = Token(self.base + key * 2);
        if registry
            .register(&mut client, token, Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            return None;
        }
        let socks = (kind == Kind::Socks5).then(|| Socks5::new(self.policy.auth.clone()));
        entry.insert(Box::new(Handshake {
            id,
            rule,
            kind,
            client,
            addr,
            at,
            state: State::Reading,
            deadline: now.checked_add(self.connect_timeout),
            buf: Vec::new(),
            out: Vec::new(),
            early: Vec::new(),
            socks,
            notes: Vec::new(),
            dest: None,
            name: None,
            tunnel: true,
            check_addrs: false,
            addrs: VecDeque::new(),
            server: None,
            target: None,
            ends: Vec::new(),
        }));
        if kind == Kind::Transparent {
            self.transparent(key);
        }
        self.drive(registry, key, now)
    }

    fn transparent(&mut self, key: usize) {
        let Some(h) = self.slab.get_mut(key) else {
            return;
        };
        let local = h.client.local_addr().ok();
        match sys::original_dst(&h.client) {
            Ok(dst) if Some(dst) == local => {
                let why = format!(
                    "the original destination {dst} is this listener (not redirected): refused"
                );
                h.note(Dir::ClientToServer, why.clone());
                h.ends = vec![(Side::Client, End::Error(why))];
                h.state = State::Refusing;
            }
            Ok(dst) => {
                h.note(Dir::ClientToServer, format!("original destination {dst}"));
                h.dest = Some(Dest::Addr(dst));
                h.name = Some(dst.to_string());
                h.state = State::Resolving;
            }
            Err(e) => {
                let why = format!("no original destination ({e}): refused");
                h.note(Dir::ClientToServer, why.clone());
                h.ends = vec![(Side::Client, End::Error(why))];
                h.state = State::Refusing;
            }
        }
    }

    /// Readiness on one of a handshake's sockets.
    pub fn event(&mut self, registry: &Registry, token: Token, now: Instant) -> Option<Handover> {
        let (key, _) = self.token_key(token)?;
        self.drive(registry, key, now)
    }

    /// The resolver's answers (the waker fired).
    pub fn answers(&mut self, registry: &Registry, now: Instant) -> Vec<Handover> {
        let answers = self
            .resolver
            .as_ref()
            .map(Resolver::drain)
            .unwrap_or_default();
        let mut out = Vec::new();
        for Answer { key, id, result } in answers {
            let Some(h) = self.slab.get_mut(key) else {
                continue;
            };
            if h.id != id || h.state != State::Resolving {
                continue;
            }
            match result {
                Ok(addrs) => {
                    let shown: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
                    h.note(
                        Dir::ClientToServer,
                        format!("resolved to {}", shown.join(", ")),
                    );
                    let policy = &self.policy;
                    let kept: VecDeque<SocketAddr> = addrs
                        .into_iter()
                        .filter(|a| !h.check_addrs || policy.allows_addr(*a))
                        .collect();
                    if kept.is_empty() {
                        self.refuse(
                            key,
                            NOT_ALLOWED,
                            "no address of the name is allowed (--allow)",
                        );
                    } else if let Some(h) = self.slab.get_mut(key) {
                        h.addrs = kept;
                        h.state = State::Connecting;
                        h.deadline = now.checked_add(self.connect_timeout);
                        self.connect_next(registry, key, None);
                    }
                }
                Err(e) => self.refuse(key, UNRESOLVED, &format!("cannot resolve: {e}")),
            }
            if let Some(handover) = self.drive(registry, key, now) {
                out.push(handover);
            }
        }
        out
    }

    /// The earliest deadline of any handshake.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slab.iter().filter_map(|(_, h)| h.deadline).min()
    }

    /// Gives up on handshakes past their deadline.
    pub fn expire(&mut self, registry: &Registry, now: Instant) {
        let due: Vec<usize> = self
            .slab
            .iter()
            .filter(|(_, h)| h.deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| k)
            .collect();
        for key in due {
            let Some(h) = self.slab.get_mut(key) else {
                continue;
            };
            h.deadline = None;
            match h.state {
                State::Reading | State::Finishing | State::Refusing => {
                    let why = "the handshake did not finish in time (--connect-timeout)";
                    h.note(Dir::ClientToServer, why.into());
                    h.ends = vec![(Side::Client, End::Error(why.into()))];
                    h.out.clear();
                    h.state = State::Refusing;
                }
                State::Resolving => self.refuse(
                    key,
                    RESOLVE_TIMED_OUT,
                    "name resolution timed out (--connect-timeout)",
                ),
                State::Connecting => {
                    if let Some(h) = self.slab.get_mut(key) {
                        h.ends = vec![(Side::Server, End::ConnectTimeout)];
                    }
                    self.refuse(key, TIMED_OUT, "connect timed out (--connect-timeout)");
                }
            }
            let _ = self.drive(registry, key, now);
        }
    }

    /// Closes every handshake (tcpspy stops).
    pub fn stop(&mut self, registry: &Registry) {
        let keys: Vec<usize> = self.slab.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(mut h) = self.slab.try_remove(key) {
                h.ends = vec![(Side::Client, End::Shutdown)];
                self.close(registry, &mut h);
            }
        }
    }

    /// Answers the client with a refusal and closes once it is written.
    fn refuse(&mut self, key: usize, r: Refusal, why: &str) {
        let Some(h) = self.slab.get_mut(key) else {
            return;
        };
        let answer = match h.kind {
            Kind::Socks5 => socks5::reply(r.socks, None),
            Kind::HttpProxy => http::response(r.status, r.reason, &format!("tcpspy: {why}")),
            Kind::Transparent | Kind::Forward => Vec::new(),
        };
        let text = match h.kind {
            Kind::Socks5 => format!("{why}: answered {} ({})", r.socks.text(), hex(&answer)),
            Kind::HttpProxy => format!("{why}: answered {} {}", r.status, r.reason),
            _ => why.to_string(),
        };
        h.note(Dir::ServerToClient, text);
        if h.ends.is_empty() {
            h.ends = vec![(Side::Client, End::Error(format!("refused: {why}")))];
        }
        h.out.extend_from_slice(&answer);
        h.state = State::Refusing;
    }

    /// Starts connecting to the next address left; `last` is why the previous one failed.
    fn connect_next(&mut self, registry: &Registry, key: usize, last: Option<io::Error>) {
        let token = self.token(key, Side::Server);
        let Some(h) = self.slab.get_mut(key) else {
            return;
        };
        if let Some(mut s) = h.server.take() {
            let _ = registry.deregister(&mut s);
        }
        let mut last = last;
        while let Some(addr) = h.addrs.pop_front() {
            h.target = Some(addr);
            match TcpStream::connect(addr) {
                Ok(mut s) => {
                    if registry
                        .register(&mut s, token, Interest::READABLE | Interest::WRITABLE)
                        .is_ok()
                    {
                        h.server = Some(s);
                        return;
                    }
                }
                Err(e) => {
                    h.note(
                        Dir::ClientToServer,
                        format!("connect to {addr} failed: {e}"),
                    );
                    last = Some(e);
                }
            }
        }
        let e = last.unwrap_or_else(|| io::Error::other("no address to connect to"));
        let why = format!("connect failed: {e}");
        h.ends = vec![(Side::Server, End::ConnectFailed(e.to_string()))];
        let r = connect_refusal(&e);
        self.refuse(key, r, &why);
    }

    /// Moves a handshake on as far as its sockets allow.
    fn drive(&mut self, registry: &Registry, key: usize, now: Instant) -> Option<Handover> {
        loop {
            let state = self.slab.get(key)?.state;
            let progressed = match state {
                State::Reading => self.read(key, now),
                State::Resolving => self.start_resolving(registry, key, now),
                State::Connecting => self.check_connect(registry, key),
                State::Finishing | State::Refusing => match self.finish(registry, key) {
                    Outcome::Wait => false,
                    Outcome::Closed => return None,
                    Outcome::Done(h) => return self.hand_over(registry, h),
                },
            };
            if !progressed {
                return None;
            }
        }
    }

    /// Reads the client and parses what came; true if the state changed.
    fn read(&mut self, key: usize, now: Instant) -> bool {
        let Some(h) = self.slab.get_mut(key) else {
            return false;
        };
        let cap = if h.kind == Kind::Socks5 {
            SOCKS_MAX
        } else {
            http::MAX_HEAD
        };
        let mut chunk = [0u8; 4096];
        let mut eof = false;
        let mut error = None;
        while h.buf.len() < cap {
            let room = cap.saturating_sub(h.buf.len()).min(chunk.len());
            match h.client.read(&mut chunk[..room]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => h.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        if self.parse(key, now) {
            return true;
        }
        let Some(h) = self.slab.get_mut(key) else {
            return false;
        };
        if eof || error.is_some() {
            let how = match error {
                Some(e) => End::from_error(&e),
                None => End::Fin,
            };
            h.note(
                Dir::ClientToServer,
                "the client left before asking for a destination".into(),
            );
            h.ends = vec![(Side::Client, how)];
            h.out.clear();
            h.state = State::Refusing;
            return true;
        }
        false
    }

    /// Parses the bytes read so far; true if the state changed.
    fn parse(&mut self, key: usize, now: Instant) -> bool {
        let auth = self.policy.auth.clone();
        let Some(h) = self.slab.get_mut(key) else {
            return false;
        };
        let dest = match h.kind {
            Kind::Socks5 => {
                let Some(socks) = h.socks.as_mut() else {
                    return false;
                };
                loop {
                    let (used, step) = socks.feed(&h.buf);
                    let taken: Vec<u8> = h.buf.drain(..used.min(h.buf.len())).collect();
                    match step {
                        socks5::Step::More => return false,
                        socks5::Step::Answer(answer, text) => {
                            h.notes.push((
                                Dir::ClientToServer,
                                format!("{text} ({})", hex(&taken)),
                                SystemTime::now(),
                            ));
                            h.notes.push((
                                Dir::ServerToClient,
                                format!("answered {}", hex(&answer)),
                                SystemTime::now(),
                            ));
                            h.out.extend_from_slice(&answer);
                            let _ = flush(&mut h.client, &mut h.out);
                        }
                        socks5::Step::Refuse(answer, text) => {
                            let shown = hex(&h.buf);
                            h.note(Dir::ClientToServer, format!("{text} ({shown})"));
                            if !answer.is_empty() {
                                h.note(Dir::ServerToClient, format!("answered {}", hex(&answer)));
                            }
                            h.ends = vec![(Side::Client, End::Error(format!("refused: {text}")))];
                            h.out.extend_from_slice(&answer);
                            h.state = State::Refusing;
                            return true;
                        }
                        socks5::Step::Connect(dest, text) => {
                            h.note(Dir::ClientToServer, format!("{text} ({})", hex(&taken)));
                            h.early = std::mem::take(&mut h.buf);
                            break dest;
                        }
                    }
                }
            }
            Kind::HttpProxy => match http::feed(&h.buf, auth.as_ref()) {
                http::Step::More => return false,
                http::Step::Refuse(answer, text) => {
                    h.note(Dir::ServerToClient, text.clone());
                    h.ends = vec![(Side::Client, End::Error(format!("refused: {text}")))];
                    h.out = answer;
                    h.state = State::Refusing;
                    return true;
                }
                http::Step::Connect {
                    dest,
                    tunnel,
                    head,
                    text,
                } => {
                    h.note(Dir::ClientToServer, text);
                    h.tunnel = tunnel;
                    h.early = h.buf.split_off(head.min(h.buf.len()));
                    h.buf.clear();
                    dest
                }
            },
            Kind::Transparent | Kind::Forward => return false,
        };
        h.name = Some(dest.to_string());
        h.dest = Some(dest);
        h.state = State::Resolving;
        let _ = now;
        true
    }

    /// Checks the destination and resolves it (or connects to an address); true if the
    /// state changed.
    fn start_resolving(&mut self, registry: &Registry, key: usize, now: Instant) -> bool {
        let Some(h) = self.slab.get_mut(key) else {
            return false;
        };
        let Some(dest) = h.dest.clone() else {
            return false;
        };
        match dest {
            Dest::Addr(a) => {
                if !self.policy.allows_addr(a) {
                    self.refuse(key, NOT_ALLOWED, &format!("{a} is not allowed (--allow)"));
                    return true;
                }
                h.addrs = VecDeque::from([a]);
                h.state = State::Connecting;
                h.deadline = now.checked_add(self.connect_timeout);
                self.connect_next(registry, key, None);
                true
            }
            Dest::Name(host, port) => {
                if !self.policy.allows_name(&host, port) {
                    if !self.policy.allow.iter().any(super::Pattern::is_net) {
                        self.refuse(
                            key,
                            NOT_ALLOWED,
                            &format!("{host}:{port} is not allowed (--allow)"),
                        );
                        return true;
                    }
                    h.check_addrs = true;
                }
                h.deadline = now.checked_add(self.connect_timeout);
                let asked = self
                    .resolver
                    .as_ref()
                    .is_some_and(|r| r.ask(key, h.id, &host, port));
                if !asked {
                    self.refuse(key, UNRESOLVED, "the resolver is not running");
                    return true;
                }
                // Waits for the answer: the state stays until `answers`.
                false
            }
        }
    }

    /// Looks at the connecting socket; true if the state changed.
    fn check_connect(&mut self, registry: &Registry, key: usize) -> bool {
        let Some(h) = self.slab.get_mut(key) else {
            return false;
        };
        let Some(server) = h.server.as_ref() else {
            return false;
        };
        let result = match server.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match server.peer_addr() {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(false) => false,
            Ok(true) => {
                let local = server.local_addr().ok();
                let _ = server.set_nodelay(true);
                let answer = match h.kind {
                    Kind::Socks5 => socks5::reply(Reply::Succeeded, local),
                    Kind::HttpProxy if h.tunnel => http::ESTABLISHED.to_vec(),
                    _ => Vec::new(),
                };
                let target = h.target.map(|t| t.to_string()).unwrap_or_default();
                match h.kind {
                    Kind::Socks5 => h.note(
                        Dir::ServerToClient,
                        format!(
                            "connected to {target}: answered succeeded ({})",
                            hex(&answer)
                        ),
                    ),
                    Kind::HttpProxy if h.tunnel => h.note(
                        Dir::ServerToClient,
                        format!("connected to {target}: answered 200 Connection established"),
                    ),
                    _ => h.note(Dir::ServerToClient, format!("connected to {target}")),
                }
                h.out.extend_from_slice(&answer);
                h.state = State::Finishing;
                true
            }
            Err(e) => {
                let addr = h.target.map(|t| t.to_string()).unwrap_or_default();
                h.note(
                    Dir::ClientToServer,
                    format!("connect to {addr} failed: {e}"),
                );
                self.connect_next(registry, key, Some(e));
                true
            }
        }
    }

    /// Writes what is owed; the handshake, once all is written.
    fn finish(&mut self, registry: &Registry, key: usize) -> Outcome {
        let Some(h) = self.slab.get_mut(key) else {
            return Outcome::Closed;
        };
        let wrote = flush(&mut h.client, &mut h.out);
        if h.state == State::Refusing {
            if matches!(wrote, Ok(false)) {
                return Outcome::Wait;
            }
            if let Some(mut h) = self.slab.try_remove(key) {
                self.close(registry, &mut h);
            }
            return Outcome::Closed;
        }
        match wrote {
            Ok(true) => {}
            Ok(false) => return Outcome::Wait,
            Err(e) => {
                h.ends = vec![(Side::Client, End::from_error(&e))];
                if let Some(mut h) = self.slab.try_remove(key) {
                    self.close(registry, &mut h);
                }
                return Outcome::Closed;
            }
        }
        match self.slab.try_remove(key) {
            Some(h) => Outcome::Done(h),
            None => Outcome::Closed,
        }
    }

    /// The `Open`, its story and its first chunk: what the log hears of the handshake.
    fn open_record(&self, h: &mut Handshake, local: Option<SocketAddr>) -> SocketAddr {
        let target = h
            .target
            .or(match &h.dest {
                Some(Dest::Addr(a)) => Some(*a),
                _ => None,
            })
            .unwrap_or_else(|| crate::reactor::tap::unspecified(&h.addr));
        let name = h
            .name
            .clone()
            .unwrap_or_else(|| format!("({} handshake)", h.kind.flag()));
        self.log.send(Event::Open {
            id: h.id,
            rule: h.rule,
            client: h.addr,
            target,
            local: local.unwrap_or_else(|| crate::reactor::tap::unspecified(&target)),
            at: h.at,
            target_name: Some(name),
        });
        for (dir, text, at) in h.notes.drain(..) {
            self.log.send(Event::Note {
                id: h.id,
                dir,
                stage: h.kind.stage(),
                text,
                at,
            });
        }
        target
    }

    /// Logs a connection that ends in its handshake, and closes it.
    fn close(&self, registry: &Registry, h: &mut Handshake) {
        let _ = registry.deregister(&mut h.client);
        if let Some(mut s) = h.server.take() {
            let _ = registry.deregister(&mut s);
        }
        self.open_record(h, None);
        let mut ends = std::mem::take(&mut h.ends);
        if !ends.iter().any(|(s, _)| *s == Side::Client) {
            ends.push((Side::Client, End::Aborted));
        }
        crate::reactor::tap::log_ends(&self.log, h.id, ends);
    }

    /// Logs the start of a relayed connection and gives its sockets to the caller.
    fn hand_over(&mut self, registry: &Registry, mut h: Box<Handshake>) -> Option<Handover> {
        let mut server = h.server.take()?;
        let local = server.local_addr().ok();
        let target = self.open_record(&mut h, local);
        self.log.send(Event::Connected {
            id: h.id,
            at: SystemTime::now(),
        });
        let guard = match (&h.dest, h.kind, h.tunnel) {
            (Some(d), Kind::HttpProxy, false) => {
                Some(super::guard::HostGuard::new(d.clone(), &h.early))
            }
            _ => None,
        };
        let early_len = h.early.len() as u64;
        if !h.early.is_empty() {
            // Small (a request head at most): the fresh socket's buffer takes it whole.
            let early = std::mem::take(&mut h.early);
            let mut left = early.clone();
            let written = flush(&mut server, &mut left);
            if self.log_data {
                self.log.send(Event::Data {
                    id: h.id,
                    dir: Dir::ClientToServer,
                    at: SystemTime::now(),
                    bytes: early,
                });
            }
            if !matches!(written, Ok(true)) {
                h.server = Some(server);
                h.ends = vec![(
                    Side::Server,
                    End::Error("the request could not be sent".into()),
                )];
                self.close_opened(registry, &mut h);
                return None;
            }
        }
        Some(Handover {
            id: h.id,
            rule: h.rule,
            addr: h.addr,
            target,
            client: h.client,
            server,
            guard,
            early: early_len,
            name: h.name.clone(),
        })
    }

    /// Ends a connection whose `Open` was logged.
    fn close_opened(&self, registry: &Registry, h: &mut Handshake) {
        let _ = registry.deregister(&mut h.client);
        if let Some(mut s) = h.server.take() {
            let _ = registry.deregister(&mut s);
        }
        let ends = std::mem::take(&mut h.ends);
        crate::reactor::tap::log_ends(&self.log, h.id, ends);
    }
}

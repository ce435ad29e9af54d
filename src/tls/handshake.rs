//! The two handshakes of one intercepted connection, coordinated:
//!
//! ```text
//!   Hello ──ClientHello──> Upstream ──target's Finished──> Downstream ──client's Finished──> Done
//!     │ (not a hello: NotTls)  │ (fails: alert to the client)    │ (client refuses: Failed)
//! ```
//! The client's hello is read whole first (rustls's `Acceptor`), and its SNI and ALPN offer
//! go into the upstream handshake; only when the target has answered does tcpspy answer the
//! client, with a certificate for the name the client asked for and the protocol the target
//! chose, so that HTTP/2 and other ALPN protocols work end to end. Until the hello is whole,
//! the bytes are kept: if they are not a ClientHello after all, they are relayed as they came.
//!
//! Generic over the [`Stream`] beneath (the reactor's TCP sockets); it reads and writes them
//! directly, outside the relay pipelines, which resume once both sessions are ready.

use std::io;
use std::net::IpAddr;
use std::time::Instant;

use rustls::server::{Accepted, Acceptor};
use rustls::{ClientConnection, ServerConnection};

use super::plan::{Plan, server_name};
use super::session::{Reader, send};
use super::{Event, Leg};
use crate::relay::Stream;
use crate::types::Side;

/// What [`Handshake::drive`] came to.
pub enum Step {
    /// Waiting for a socket.
    Wait,
    /// Both legs are ready: the client's session (tcpspy the server) and the target's.
    Done(Box<(ServerConnection, ClientConnection)>),
    /// The bytes were not a ClientHello: relay them as they came. The text says what they
    /// were.
    NotTls(Vec<u8>, String),
    /// The interception failed on `side`'s leg; the client has had an alert where it could.
    Failed(Side, String),
}

enum Phase {
    Hello(Box<Acceptor>),
    Upstream(Box<Accepted>, Box<ClientConnection>),
    Downstream(Box<ServerConnection>, Box<ClientConnection>),
    Over,
}

pub struct Handshake {
    phase: Phase,
    began: Instant,
    /// The client's bytes until its hello is whole (relayed if they are not a hello).
    raw: Vec<u8>,
    max_raw: usize,
    sni: Option<String>,
    upstream_name: String,
    cert_name: String,
    /// The client leg's records (read, written), for the capture.
    wire: Option<Box<[Vec<u8>; 2]>>,
    events: Vec<Event>,
}

/// A record of the client's holds at most 16 KiB and 256 bytes of overhead; a hello longer
/// than two is not one tcpspy waits for.
pub const MAX_HELLO: usize = 2 * (16 << 10) + 512;

impl Handshake {
    /// Begins with the client's first bytes (already read from its socket).
    pub fn new(first: Vec<u8>, wire: bool) -> Handshake {
        let mut h = Handshake {
            phase: Phase::Hello(Box::default()),
            // The clock itself: the reactor's time is the batch's, too coarse for this.
            began: Instant::now(),
            raw: Vec::new(),
            max_raw: MAX_HELLO,
            sni: None,
            upstream_name: String::new(),
            cert_name: String::new(),
            wire: wire.then(Box::default),
            events: Vec::new(),
        };
        h.feed(&first);
        h
    }

    /// True once the whole hello was read: past this, the bytes cannot go back.
    pub fn hello_seen(&self) -> bool {
        !matches!(self.phase, Phase::Hello(_))
    }

    /// What the record must hear (legs done, failures).
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The client leg's records so far: read from the client, written to it.
    pub fn take_wire(&mut self) -> Option<[Vec<u8>; 2]> {
        let w = self.wire.as_mut()?;
        if w[0].is_empty() && w[1].is_empty() {
            return None;
        }
        Some([std::mem::take(&mut w[0]), std::mem::take(&mut w[1])])
    }

    /// The bytes read from the client so far, if they can still be relayed as they came.
    pub fn give_back(&mut self) -> Option<Vec<u8>> {
        (!self.hello_seen()).then(|| std::mem::take(&mut self.raw))
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.raw.extend_from_slice(bytes);
        if let Some(w) = &mut self.wire {
            w[0].extend_from_slice(bytes);
        }
        if let Phase::Hello(a) = &mut self.phase {
            let mut rest = bytes;
            while !rest.is_empty() {
                match a.read_tls(&mut rest) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
    }

    /// Moves both handshakes as far as the sockets let them.
    pub fn drive<S: Stream>(
        &mut self,
        client: &mut S,
        server: &mut S,
        plan: &mut Plan,
        target_host: &str,
        target_ip: IpAddr,
    ) -> Step {
        loop {
            let step = match std::mem::replace(&mut self.phase, Phase::Over) {
                Phase::Hello(a) => self.hello(a, client, plan, target_host, target_ip),
                Phase::Upstream(a, up) => self.upstream(a, up, client, server, plan),
                Phase::Downstream(down, up) => self.downstream(down, up, client, plan),
                Phase::Over => return Step::Wait,
            };
            match step {
                Some(step) => return step,
                None if matches!(self.phase, Phase::Over) => return Step::Wait,
                None => {}
            }
        }
    }

    fn hello<S: Stream>(
        &mut self,
        mut a: Box<Acceptor>,
        client: &mut S,
        plan: &mut Plan,
        target_host: &str,
        target_ip: IpAddr,
    ) -> Option<Step> {
        loop {
            match a.accept() {
                Ok(Some(accepted)) => {
                    let hello = accepted.client_hello();
                    self.sni = hello.server_name().map(str::to_string);
                    let alpn: Vec<Vec<u8>> = hello
                        .alpn()
                        .map(|l| l.map(<[u8]>::to_vec).collect())
                        .unwrap_or_default();
                    let name = server_name(self.sni.as_deref(), target_host, target_ip);
                    self.upstream_name = name.to_str().into_owned();
                    self.cert_name = self.sni.clone().unwrap_or_else(|| match target_host {
                        "" => target_ip.to_string(),
                        h => h.to_string(),
                    });
                    let up = plan
                        .client_config(alpn)
                        .and_then(|c| ClientConnection::new(c, name).map_err(|e| e.to_string()));
                    self.raw = Vec::new();
                    return match up {
                        Ok(up) => {
                            self.phase = Phase::Upstream(Box::new(accepted), Box::new(up));
                            None
                        }
                        Err(e) => Some(self.refuse(accepted, client, plan, Side::Server, e)),
                    };
                }
                Ok(None) => {}
                Err((e, _)) => {
                    let raw = std::mem::take(&mut self.raw);
                    return Some(Step::NotTls(raw, format!("not a TLS ClientHello ({e})")));
                }
            }
            if self.raw.len() > self.max_raw {
                let raw = std::mem::take(&mut self.raw);
                return Some(Step::NotTls(raw, "no whole ClientHello in 32 KiB".into()));
            }
            let mut got = Vec::new();
            let mut r = Reader {
                inner: &mut *client,
                copy: Some(&mut got),
            };
            let read = a.read_tls(&mut r);
            self.raw.extend_from_slice(&got);
            if let Some(w) = &mut self.wire {
                w[0].extend_from_slice(&got);
            }
            match read {
                Ok(0) => {
                    let raw = std::mem::take(&mut self.raw);
                    return Some(Step::NotTls(
                        raw,
                        "the client closed before a whole ClientHello".into(),
                    ));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.phase = Phase::Hello(a);
                    return Some(Step::Wait);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let raw = std::mem::take(&mut self.raw);
                    return Some(Step::NotTls(raw, format!("reading the hello: {e}")));
                }
            }
        }
    }

    fn upstream<S: Stream>(
        &mut self,
        a: Box<Accepted>,
        mut up: Box<ClientConnection>,
        client: &mut S,
        server: &mut S,
        plan: &mut Plan,
    ) -> Option<Step> {
        let mut conn = rustls::Connection::Client(*up);
        let failed = loop {
            match send(&mut conn, server, None) {
                Ok(_) => {}
                Err(e) => break format!("sending to the target: {e}"),
            }
            if !conn.is_handshaking() {
                break String::new();
            }
            let mut r = Reader {
                inner: &mut *server,
                copy: None,
            };
            match conn.read_tls(&mut r) {
                Ok(0) => {
                    break "the target closed the connection during the TLS handshake (does it \
                           speak TLS?)"
                        .into();
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let rustls::Connection::Client(c) = conn else {
                        return Some(Step::Failed(Side::Server, "lost the session".into()));
                    };
                    self.phase = Phase::Upstream(a, Box::new(c));
                    return Some(Step::Wait);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break format!("reading from the target: {e}"),
            }
            if let Err(e) = conn.process_new_packets() {
                let _ = send(&mut conn, server, None);
                break target_error(&e, plan.insecure);
            }
        };
        let rustls::Connection::Client(c) = conn else {
            return Some(Step::Failed(Side::Server, "lost the session".into()));
        };
        up = Box::new(c);
        if !failed.is_empty() {
            return Some(self.refuse(*a, client, plan, Side::Server, failed));
        }
        self.events.push(Event::Leg(
            Side::Server,
            leg_of(
                &up,
                Some(self.upstream_name.clone()),
                self.began,
                plan.insecure,
            ),
        ));
        let chosen = up.alpn_protocol().map(<[u8]>::to_vec);
        let config = plan
            .certs
            .for_name(&self.cert_name)
            .and_then(|cert| plan.server_config(cert, chosen));
        let config = match config {
            Ok(c) => c,
            Err(e) => return Some(self.refuse(*a, client, plan, Side::Client, e)),
        };
        match a.into_connection(config) {
            Ok(down) => {
                self.phase = Phase::Downstream(Box::new(down), up);
                None
            }
            Err((e, mut alert)) => {
                let _ = alert.write_all(&mut Writer(client));
                Some(Step::Failed(
                    Side::Client,
                    format!("the client's hello was refused: {e}"),
                ))
            }
        }
    }

    fn downstream<S: Stream>(
        &mut self,
        down: Box<ServerConnection>,
        up: Box<ClientConnection>,
        client: &mut S,
        plan: &mut Plan,
    ) -> Option<Step> {
        let mut conn = rustls::Connection::Server(*down);
        loop {
            let copy = self.wire.as_mut().map(|w| &mut w[1]);
            if let Err(e) = send(&mut conn, client, copy) {
                return Some(Step::Failed(
                    Side::Client,
                    format!("sending to the client: {e}"),
                ));
            }
            if !conn.is_handshaking() {
                break;
            }
            let mut r = Reader {
                inner: &mut *client,
                copy: self.wire.as_mut().map(|w| &mut w[0]),
            };
            match conn.read_tls(&mut r) {
                Ok(0) => {
                    return Some(Step::Failed(
                        Side::Client,
                        "the client closed the connection during the TLS handshake".into(),
                    ));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let rustls::Connection::Server(s) = conn else {
                        return Some(Step::Failed(Side::Client, "lost the session".into()));
                    };
                    self.phase = Phase::Downstream(Box::new(s), up);
                    return Some(Step::Wait);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Some(Step::Failed(
                        Side::Client,
                        format!("reading from the client: {e}"),
                    ));
                }
            }
            if let Err(e) = conn.process_new_packets() {
                let copy = self.wire.as_mut().map(|w| &mut w[1]);
                let _ = send(&mut conn, client, copy);
                let ca = plan.certs.ca_path().map(|p| p.display().to_string());
                return Some(Step::Failed(Side::Client, client_error(&e, ca.as_deref())));
            }
        }
        let rustls::Connection::Server(s) = conn else {
            return Some(Step::Failed(Side::Client, "lost the session".into()));
        };
        let mut leg = leg_of(&s, self.sni.clone(), self.began, false);
        leg.subject = format!("CN={}", self.cert_name);
        leg.issuer = match plan.certs.ca_path() {
            Some(_) => "tcpspy CA".into(),
            None => "--tls-cert".into(),
        };
        self.events.push(Event::Leg(Side::Client, leg));
        Some(Step::Done(Box::new((s, *up))))
    }

    /// Ends the client's handshake with an alert (the target could not be had over TLS, or
    /// no certificate could be made).
    fn refuse<S: Stream>(
        &mut self,
        a: Accepted,
        client: &mut S,
        plan: &mut Plan,
        side: Side,
        why: String,
    ) -> Step {
        if let Ok(config) = plan.refusing()
            && let Err((_, mut alert)) = a.into_connection(config)
        {
            let _ = alert.write_all(&mut Writer(client));
        }
        Step::Failed(side, why)
    }
}

/// A stream as `io::Write`, for an alert.
struct Writer<'a, S>(&'a mut S);

impl<S: Stream> io::Write for Writer<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a leg's session negotiated.
fn leg_of<D>(
    c: &rustls::ConnectionCommon<D>,
    sni: Option<String>,
    began: Instant,
    unverified: bool,
) -> Leg {
    let version = match c.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => "?".into(),
    };
    let cipher = c
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    let (subject, issuer) = c
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|der| x509_parser::parse_x509_certificate(der).ok())
        .map(|(_, cert)| (cert.subject().to_string(), cert.issuer().to_string()))
        .unwrap_or_default();
    Leg {
        version,
        cipher,
        sni,
        alpn: c
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        subject,
        issuer,
        micros: u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX),
        unverified,
    }
}

/// The story line of an upstream failure, with what the user can do about it.
fn target_error(e: &rustls::Error, insecure: bool) -> String {
    match e {
        rustls::Error::InvalidCertificate(why) if !insecure => format!(
            "the target's certificate failed verification ({why:?}); give --target-ca FILE to \
             trust its CA, or --insecure"
        ),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            format!("the target does not speak TLS here ({e})")
        }
        _ => format!("TLS with the target failed: {e}"),
    }
}

/// The story line of a client that refused tcpspy's handshake.
fn client_error(e: &rustls::Error, ca: Option<&str>) -> String {
    use rustls::AlertDescription as A;
    match (e, ca) {
        (
            rustls::Error::AlertReceived(
                a @ (A::UnknownCA | A::BadCertificate | A::CertificateUnknown | A::AccessDenied),
            ),
            Some(ca),
        ) => format!("the client rejected tcpspy's certificate (alert {a:?}): make it trust {ca}"),
        _ => format!("TLS with the client failed: {e}"),
    }
}

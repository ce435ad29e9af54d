//! Seeing inside TLS (`--tls`): tcpspy ends the client's TLS as a server and starts its own
//! toward the target as a client, so that every record holds the plaintext.
//!
//! - [`hello`]: the rule that decides when a client's bytes are a ClientHello worth taking
//!   over (pure).
//! - [`ca`]: the certificate authority made on first use in `--ca-dir`, and the leaf
//!   certificates it issues for the names clients ask for.
//! - [`plan`]: what the run's flags make of TLS: the configurations of both legs (roots,
//!   `--insecure`, `--target-ca`, ALPN), the key log.
//! - [`handshake`]: the two handshakes of one connection, coordinated (the client's hello
//!   names the upstream's SNI and ALPN; the server's choice of ALPN goes back to the client).
//! - [`session`]: a TLS session over a TCP socket as a relay [`Stream`](crate::relay::Stream),
//!   a stage of the direction's pipeline inside the one reactor (rustls is sans-IO).

pub mod ca;
pub mod handshake;
pub mod hello;
pub mod plan;
pub mod session;

pub use handshake::{Handshake, Step};
pub use plan::Plan;
pub use session::TlsStream;

/// What the record says of one leg's TLS once its handshake is done.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leg {
    /// `TLSv1.3`, `TLSv1.2`.
    pub version: String,
    pub cipher: String,
    pub sni: Option<String>,
    pub alpn: Option<String>,
    /// The certificate the server of this leg showed: its subject and its issuer.
    pub subject: String,
    pub issuer: String,
    /// Handshake time, in microseconds.
    pub micros: u64,
    /// The target's certificate was not verified (`--insecure`).
    pub unverified: bool,
}

/// A TLS happening on a connection, for the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A leg's handshake completed (`Side::Client`: tcpspy as the server).
    Leg(crate::types::Side, Leg),
    /// The interception failed; the text says why and what the user can do.
    Failed(String),
    /// Bytes that looked like a ClientHello were not one: relayed as they came.
    NotTls(String),
}

impl Event {
    /// The side whose leg this is about (failures: the client's, which tcpspy answered).
    pub fn side(&self) -> crate::types::Side {
        match self {
            Event::Leg(side, _) => *side,
            Event::Failed(_) | Event::NotTls(_) => crate::types::Side::Client,
        }
    }

    /// The story line's text (after "TLS with ... at TIME: ").
    pub fn text(&self) -> String {
        match self {
            Event::Leg(_, l) => {
                let mut s = format!("{} {}", l.version, l.cipher);
                if let Some(n) = &l.sni {
                    s.push_str(&format!(", SNI {n}"));
                }
                if let Some(a) = &l.alpn {
                    s.push_str(&format!(", ALPN {a}"));
                }
                if !l.subject.is_empty() {
                    s.push_str(&format!(
                        ", certificate {} issued by {}",
                        l.subject, l.issuer
                    ));
                }
                s.push_str(&format!(", handshake {:.1} ms", l.micros as f64 / 1000.0));
                if l.unverified {
                    s.push_str(", certificate not verified (--insecure)");
                }
                s
            }
            Event::Failed(why) => format!("interception failed: {why}"),
            Event::NotTls(why) => format!("not intercepted: {why}"),
        }
    }

    /// The fields connections.jsonl gives this event, under `tls`.
    pub fn json(&self) -> (&'static str, serde_json::Value) {
        match self {
            Event::Leg(side, l) => (
                side.name(),
                serde_json::json!({
                    "version": l.version,
                    "cipher": l.cipher,
                    "sni": l.sni,
                    "alpn": l.alpn,
                    "certificate_subject": l.subject,
                    "certificate_issuer": l.issuer,
                    "handshake_ms": l.micros as f64 / 1000.0,
                    "verified": !l.unverified,
                }),
            ),
            Event::Failed(why) => ("failed", serde_json::Value::String(why.clone())),
            Event::NotTls(why) => ("not_tls", serde_json::Value::String(why.clone())),
        }
    }
}

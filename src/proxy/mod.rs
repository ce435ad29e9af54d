//! The proxy listeners (`--socks5`, `--http-proxy`, `--transparent`): listeners whose
//! connections say where they go, instead of a rule's fixed target. This module owns their
//! kinds and policy (`--proxy-auth`, `--allow`), the sans-IO handshakes ([`socks5`],
//! [`http`]), the resolver threads ([`resolve`]) and the handshake phase of a connection
//! ([`pending`]) that runs on the reactor before the relay takes over.

pub mod allow;
pub mod guard;
pub mod http;
pub mod pending;
pub mod resolve;
pub mod socks5;

use std::fmt;
use std::net::SocketAddr;

pub use allow::Pattern;

/// What a listener does with its connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    /// A `-L` rule: to the rule's target.
    #[default]
    Forward,
    Socks5,
    HttpProxy,
    Transparent,
}

impl Kind {
    /// The flag that makes it, and the name of its story lines.
    pub fn flag(self) -> &'static str {
        match self {
            Kind::Forward => "--forward",
            Kind::Socks5 => "--socks5",
            Kind::HttpProxy => "--http-proxy",
            Kind::Transparent => "--transparent",
        }
    }

    /// What it is called in messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Forward => "forwarding",
            Kind::Socks5 => "SOCKS5",
            Kind::HttpProxy => "HTTP",
            Kind::Transparent => "transparent",
        }
    }

    /// The stage name of its story lines in the hex dump.
    pub fn stage(self) -> &'static str {
        match self {
            Kind::Forward => "forward",
            Kind::Socks5 => "socks5",
            Kind::HttpProxy => "http-proxy",
            Kind::Transparent => "transparent",
        }
    }
}

/// The stage names of the proxy handshakes' story lines.
pub const STAGES: [&str; 3] = ["socks5", guard::NAME, "transparent"];

/// Who may use the proxy listeners, and for where.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// `--proxy-auth USER:PASS`.
    pub auth: Option<(String, String)>,
    /// `--allow`: empty allows every destination.
    pub allow: Vec<Pattern>,
}

impl Policy {
    /// True if a name (as asked) or address may be connected to.
    pub fn allows_name(&self, host: &str, port: u16) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|p| p.matches_name(host, port))
    }

    pub fn allows_addr(&self, addr: SocketAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|p| p.matches_addr(addr))
    }
}

/// Where a client asked to go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dest {
    Addr(SocketAddr),
    Name(String, u16),
}

impl Dest {
    pub fn port(&self) -> u16 {
        match self {
            Dest::Addr(a) => a.port(),
            Dest::Name(_, p) => *p,
        }
    }
}

impl fmt::Display for Dest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dest::Addr(a) => write!(f, "{a}"),
            Dest::Name(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

/// A host name from the network, if it is one: letters, digits, `-`, `_` and dots, 1 to 253
/// bytes. Anything else never reaches the resolver, the file names or the logs.
pub fn host_name(raw: &[u8]) -> Option<String> {
    let ok = !raw.is_empty()
        && raw.len() <= 253
        && raw
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !raw.starts_with(b".")
        && !raw.starts_with(b"-");
    ok.then(|| String::from_utf8_lossy(raw).to_ascii_lowercase())
}

/// A destination as HTTP writes it: `host:port`, `[v6]:port`, or without a port (`default`).
pub fn parse_authority(s: &str, default: Option<u16>) -> Option<Dest> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default?,
            None => return None,
        };
        let ip: std::net::Ipv6Addr = ip.parse().ok()?;
        return Some(Dest::Addr(SocketAddr::new(ip.into(), port)));
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (s, default?),
        }
    };
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return Some(Dest::Addr(SocketAddr::new(ip.into(), port)));
    }
    host_name(host.as_bytes()).map(|h| Dest::Name(h, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        assert_eq!(
            parse_authority("example.com:443", None),
            Some(Dest::Name("example.com".into(), 443))
        );
        assert_eq!(
            parse_authority("Example.com", Some(80)),
            Some(Dest::Name("example.com".into(), 80))
        );
        assert_eq!(
            parse_authority("[::1]:8080", None),
            Some(Dest::Addr("[::1]:8080".parse().unwrap()))
        );
        assert_eq!(
            parse_authority("127.0.0.1:1", None),
            Some(Dest::Addr("127.0.0.1:1".parse().unwrap()))
        );
        assert_eq!(parse_authority("example.com", None), None);
        assert_eq!(parse_authority("../etc:80", None), None);
        assert_eq!(parse_authority("a b:80", None), None);
        assert_eq!(parse_authority("a:99999", None), None);
    }
}

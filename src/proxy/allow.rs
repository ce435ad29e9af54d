//! `--allow PATTERN`: the destinations a proxy listener may connect to. A pattern is a host
//! glob (`*.example.com`, `api.example.com`), an address or CIDR (`10.0.0.0/8`,
//! `[2001:db8::]/32`), or `*`, each optionally with `:PORT` (`*:443`, `[::1]:8080`); without
//! a port every port is allowed. A name matches host globs as the client wrote it; an
//! address (asked for, or a name's resolved address) matches CIDRs.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    host: Host,
    port: Option<u16>,
    /// As given, for messages.
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Host {
    Any,
    Glob(String),
    Net(IpAddr, u8),
}

impl FromStr for Pattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Pattern, String> {
        let bad = |why: &str| format!("{s:?}: {why}");
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (inner, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("a '[' without its ']'"))?;
            (inner, after)
        } else {
            match s.rsplit_once(':') {
                Some((h, _)) if !h.contains(':') => (h, &s[h.len()..]),
                _ => (s, ""),
            }
        };
        let port = match port.strip_prefix(':') {
            None if port.is_empty() => None,
            None => return Err(bad("expected :PORT after the host")),
            Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| bad("the port is not a number from 0 to 65535"))?,
            ),
        };
        let host = if host == "*" || host.is_empty() {
            Host::Any
        } else if let Some((ip, len)) = host.split_once('/') {
            let ip: IpAddr = ip.parse().map_err(|_| bad("not an address before '/'"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len: u8 = len
                .parse()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| bad("the prefix length is out of range"))?;
            Host::Net(ip, len)
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            Host::Net(ip, if ip.is_ipv4() { 32 } else { 128 })
        } else if host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'*'))
        {
            Host::Glob(host.to_ascii_lowercase())
        } else {
            return Err(bad(
                "not a host glob, an address or a CIDR (e.g. *.example.com, 10.0.0.0/8, *:443)",
            ));
        };
        Ok(Pattern {
            host,
            port,
            text: s.to_string(),
        })
    }
}

impl Pattern {
    fn port_ok(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }

    /// True if it names addresses (an address or CIDR): a name that matched no glob may
    /// still be allowed by its resolved address.
    pub fn is_net(&self) -> bool {
        matches!(self.host, Host::Net(..))
    }

    pub fn matches_name(&self, name: &str, port: u16) -> bool {
        self.port_ok(port)
            && match &self.host {
                Host::Any => true,
                Host::Glob(g) => glob(g.as_bytes(), name.to_ascii_lowercase().as_bytes()),
                Host::Net(..) => false,
            }
    }

    pub fn matches_addr(&self, addr: SocketAddr) -> bool {
        self.port_ok(addr.port())
            && match &self.host {
                Host::Any => true,
                Host::Glob(_) => false,
                Host::Net(net, len) => in_net(*net, *len, addr.ip()),
            }
    }
}

fn in_net(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    let ip = match (net, ip) {
        (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        _ => ip,
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// `*` matches any run of bytes (dots included); everything else matches itself.
fn glob(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some((p, i));
            p += 1;
        } else if p < pat.len() && pat[p] == s[i] {
            p += 1;
            i += 1;
        } else if let Some((sp, si)) = star {
            p = sp + 1;
            i = si + 1;
            star = Some((sp, si + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        s.parse().unwrap()
    }

    #[test]
    fn globs_cidrs_ports() {
        assert!(p("*.example.com").matches_name("api.Example.com", 443));
        assert!(!p("*.example.com").matches_name("example.org", 443));
        assert!(p("localhost:8080").matches_name("localhost", 8080));
        assert!(!p("localhost:8080").matches_name("localhost", 8081));
        assert!(p("*:443").matches_addr("10.1.2.3:443".parse().unwrap()));
        assert!(!p("*:443").matches_addr("10.1.2.3:80".parse().unwrap()));
        assert!(p("10.0.0.0/8").matches_addr("10.1.2.3:80".parse().unwrap()));
        assert!(!p("10.0.0.0/8").matches_addr("11.1.2.3:80".parse().unwrap()));
        assert!(p("127.0.0.1").matches_addr("127.0.0.1:5".parse().unwrap()));
        assert!(p("[::1]:80").matches_addr("[::1]:80".parse().unwrap()));
        assert!(p("::/0").matches_addr("[2001:db8::1]:80".parse().unwrap()));
        assert!(p("0.0.0.0/0").matches_addr("1.2.3.4:1".parse().unwrap()));
        assert!("a b".parse::<Pattern>().is_err());
        assert!("10.0.0.0/33".parse::<Pattern>().is_err());
        assert!("x:port".parse::<Pattern>().is_err());
    }
}

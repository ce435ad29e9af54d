//! The addresses of Toxiproxy's proxies, as its JSON gives them: `listen` (`IP:PORT`,
//! `[IPv6]:PORT`, `localhost:PORT`, a bare port, `:PORT` or empty) and `upstream`
//! (`HOST:PORT`). Unlike Toxiproxy, a listen address without a host binds 127.0.0.1, not
//! every interface: a proxy reachable from other hosts must be asked for by address
//! (`0.0.0.0:PORT`). Used by the command line (`--faults`) and the API alike; pure.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::config::parse::{Target, parse_listen};

/// A proxy's listen address; empty is a free port on loopback (Toxiproxy's clients send
/// `127.0.0.1:0` for that).
pub fn listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let loopback = |port: &str| -> Result<SocketAddr, String> {
        let port = match port {
            "" => 0,
            p => p
                .parse::<u16>()
                .map_err(|_| format!("listen {s:?}: bad port"))?,
        };
        Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
    };
    if s.is_empty() {
        return loopback("");
    }
    if let Some(port) = s.strip_prefix(':') {
        return loopback(port);
    }
    parse_listen(s).map_err(|e| format!("listen {s:?}: {e}"))
}

/// A proxy's upstream, not yet resolved.
pub fn upstream(s: &str) -> Result<Target, String> {
    s.parse::<Target>()
        .map_err(|e| format!("upstream {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_binds_loopback_unless_told() {
        let l = |s| listen(s).map(|a| a.to_string());
        assert_eq!(l(""), Ok("127.0.0.1:0".into()));
        assert_eq!(l(":26379"), Ok("127.0.0.1:26379".into()));
        assert_eq!(l("localhost:1"), Ok("127.0.0.1:1".into()));
        assert_eq!(l("0.0.0.0:5"), Ok("0.0.0.0:5".into()));
        assert_eq!(l("[::1]:5"), Ok("[::1]:5".into()));
        assert!(listen("example.com:5").is_err());
        assert!(listen(":99999").is_err());
        assert!(upstream("db:5432").is_ok());
        assert!(upstream("db").is_err());
    }
}

//! Property tests (proptest) of the proxy listeners' parsers: the SOCKS5 handshake
//! (`tcpspy::proxy::socks5`), the HTTP proxy's requests (`tcpspy::proxy::http`) and the
//! `--allow` patterns. None may panic on any input, and a request made by the rules parses
//! back to the destination it names, however the bytes are split. The same parsers have fuzz
//! targets in `fuzz/` (socks5_handshake, http_proxy_request).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use tcpspy::proxy::http;
use tcpspy::proxy::socks5::{Socks5, Step};
use tcpspy::proxy::{Dest, Pattern};

fn dest() -> impl Strategy<Value = Dest> {
    prop_oneof![
        (any::<u32>(), any::<u16>())
            .prop_map(|(ip, p)| Dest::Addr(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), p))),
        (any::<u128>(), any::<u16>())
            .prop_map(|(ip, p)| Dest::Addr(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), p))),
        (
            "[a-z0-9][a-z0-9-]{0,20}(\\.[a-z0-9-]{1,10}){0,3}",
            any::<u16>()
        )
            .prop_filter("not an address", |(h, _)| h.parse::<IpAddr>().is_err())
            .prop_map(|(h, p)| Dest::Name(h, p)),
    ]
}

fn request(d: &Dest) -> Vec<u8> {
    let mut r = vec![5, 1, 0];
    match d {
        Dest::Addr(SocketAddr::V4(a)) => {
            r.push(1);
            r.extend_from_slice(&a.ip().octets());
        }
        Dest::Addr(SocketAddr::V6(a)) => {
            r.push(4);
            r.extend_from_slice(&a.ip().octets());
        }
        Dest::Name(h, _) => {
            r.push(3);
            r.push(h.len() as u8);
            r.extend_from_slice(h.as_bytes());
        }
    }
    r.extend_from_slice(&d.port().to_be_bytes());
    r
}

/// Feeds `bytes` in pieces of `cut`; the first CONNECT, if any.
fn run(bytes: &[u8], cut: usize, auth: Option<(String, String)>) -> Option<Dest> {
    let mut s = Socks5::new(auth);
    let mut buf = Vec::new();
    for piece in bytes.chunks(cut.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            let (used, step) = s.feed(&buf);
            assert!(used <= buf.len());
            buf.drain(..used);
            match step {
                Step::More => break,
                Step::Answer(..) => {}
                Step::Refuse(..) => return None,
                Step::Connect(d, _) => return Some(d),
            }
        }
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn socks5_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), cut in 1usize..40) {
        run(&bytes, cut, None);
        run(&bytes, cut, Some(("u".into(), "p".into())));
    }

    #[test]
    fn socks5_requests_name_their_destination(d in dest(), cut in 1usize..30) {
        let mut bytes = vec![5, 2, 0, 1];
        bytes.extend(request(&d));
        prop_assert_eq!(run(&bytes, cut, None), Some(d.clone()));
        let mut bytes = vec![5, 1, 2, 1, 4];
        bytes.extend_from_slice(b"user");
        bytes.push(2);
        bytes.extend_from_slice(b"pw");
        bytes.extend(request(&d));
        prop_assert_eq!(run(&bytes, cut, Some(("user".into(), "pw".into()))), Some(d.clone()));
        prop_assert_eq!(run(&bytes, cut, Some(("user".into(), "px".into()))), None);
    }

    #[test]
    fn http_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        match http::feed(&bytes, None) {
            http::Step::Refuse(r, _) => prop_assert!(r.starts_with(b"HTTP/1.1 4")),
            http::Step::Connect { head, .. } => prop_assert!(head <= bytes.len()),
            http::Step::More => {}
        }
    }

    #[test]
    fn http_connect_names_its_destination(d in dest()) {
        let authority = match &d {
            Dest::Addr(SocketAddr::V6(a)) => format!("[{}]:{}", a.ip(), a.port()),
            other => other.to_string(),
        };
        let req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
        match http::feed(req.as_bytes(), None) {
            http::Step::Connect { dest, tunnel, head, .. } => {
                prop_assert_eq!(dest, d);
                prop_assert!(tunnel);
                prop_assert_eq!(head, req.len());
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn allow_patterns_never_panic(s in any::<String>(), host in "[a-z.*]{0,12}", port in any::<u16>()) {
        if let Ok(p) = s.parse::<Pattern>() {
            let _ = p.matches_name(&host, port);
            let _ = p.matches_addr(SocketAddr::from(([127, 0, 0, 1], port)));
        }
    }
}

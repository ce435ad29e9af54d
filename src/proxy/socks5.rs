//! SOCKS5 (RFC 1928) with username/password authentication (RFC 1929), sans IO: the client's
//! bytes go in, what to answer and where to connect come out. Only CONNECT is served; BIND
//! and UDP ASSOCIATE get "command not supported". A SOCKS4/4a request gets SOCKS4's
//! "request rejected" so that such a client fails at once instead of waiting.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::Dest;

/// RFC 1928's reply codes, as tcpspy uses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reply {
    Succeeded = 0,
    GeneralFailure = 1,
    NotAllowed = 2,
    NetworkUnreachable = 3,
    HostUnreachable = 4,
    ConnectionRefused = 5,
    TtlExpired = 6,
    CommandNotSupported = 7,
    AddressTypeNotSupported = 8,
}

impl Reply {
    pub fn text(self) -> &'static str {
        match self {
            Reply::Succeeded => "succeeded",
            Reply::GeneralFailure => "general failure",
            Reply::NotAllowed => "connection not allowed by ruleset",
            Reply::NetworkUnreachable => "network unreachable",
            Reply::HostUnreachable => "host unreachable",
            Reply::ConnectionRefused => "connection refused",
            Reply::TtlExpired => "TTL expired",
            Reply::CommandNotSupported => "command not supported",
            Reply::AddressTypeNotSupported => "address type not supported",
        }
    }
}

/// The reply to a request: `code`, and the address tcpspy connected from (or zeros).
pub fn reply(code: Reply, bound: Option<SocketAddr>) -> Vec<u8> {
    let mut out = vec![5, code as u8, 0];
    match bound.unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)) {
        SocketAddr::V4(a) => {
            out.push(1);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        SocketAddr::V6(a) => {
            out.push(4);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
    }
    out
}

/// SOCKS4's "request rejected or failed" (VN 0, CD 91).
pub const SOCKS4_REJECTED: [u8; 8] = [0, 91, 0, 0, 0, 0, 0, 0];

/// What the bytes so far call for.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Not a whole message yet.
    More,
    /// Answer this and wait for the next message. The text is the story line.
    Answer(Vec<u8>, String),
    /// Answer this (if anything) and close.
    Refuse(Vec<u8>, String),
    /// The client asks to connect here (the answer comes once the connect is done).
    Connect(Dest, String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Greeting,
    Auth,
    Request,
    Done,
}

/// One client's side of the handshake.
#[derive(Debug)]
pub struct Socks5 {
    state: State,
    /// `--proxy-auth`: the only user and password accepted.
    auth: Option<(String, String)>,
}

impl Socks5 {
    pub fn new(auth: Option<(String, String)>) -> Socks5 {
        Socks5 {
            state: State::Greeting,
            auth,
        }
    }

    /// Reads one message from the front of `buf`: returns how many bytes it took and what
    /// to do. Call again with the rest while it answers and bytes are left.
    pub fn feed(&mut self, buf: &[u8]) -> (usize, Step) {
        match self.state {
            State::Greeting => self.greeting(buf),
            State::Auth => self.userpass(buf),
            State::Request => self.request(buf),
            State::Done => (0, Step::More),
        }
    }

    fn refuse(&mut self, answer: Vec<u8>, why: String) -> (usize, Step) {
        self.state = State::Done;
        (0, Step::Refuse(answer, why))
    }

    fn greeting(&mut self, buf: &[u8]) -> (usize, Step) {
        let Some(&version) = buf.first() else {
            return (0, Step::More);
        };
        match version {
            5 => {}
            4 => {
                return self.refuse(
                    SOCKS4_REJECTED.to_vec(),
                    "a SOCKS4 request: rejected (only SOCKS5 is served)".into(),
                );
            }
            v => return self.refuse(Vec::new(), format!("not SOCKS (first byte {v:#04x})")),
        }
        let Some(&n) = buf.get(1) else {
            return (0, Step::More);
        };
        let end = 2 + usize::from(n);
        let Some(methods) = buf.get(2..end) else {
            return (0, Step::More);
        };
        let want = if self.auth.is_some() { 2 } else { 0 };
        let listed = methods
            .iter()
            .map(|m| format!("{m:#04x}"))
            .collect::<Vec<_>>()
            .join(" ");
        if !methods.contains(&want) {
            return self.refuse(
                vec![5, 0xff],
                format!(
                    "greeting offers methods [{listed}], none acceptable (tcpspy needs {})",
                    method_name(want)
                ),
            );
        }
        self.state = if want == 2 {
            State::Auth
        } else {
            State::Request
        };
        (
            end,
            Step::Answer(
                vec![5, want],
                format!(
                    "greeting offers methods [{listed}]; chose {}",
                    method_name(want)
                ),
            ),
        )
    }

    fn userpass(&mut self, buf: &[u8]) -> (usize, Step) {
        let Some(&ver) = buf.first() else {
            return (0, Step::More);
        };
        if ver != 1 {
            return self.refuse(
                vec![1, 1],
                format!("username/password version {ver}, not 1"),
            );
        }
        let Some(&ulen) = buf.get(1) else {
            return (0, Step::More);
        };
        let uend = 2 + usize::from(ulen);
        let Some(user) = buf.get(2..uend) else {
            return (0, Step::More);
        };
        let Some(&plen) = buf.get(uend) else {
            return (0, Step::More);
        };
        let pend = uend + 1 + usize::from(plen);
        let Some(pass) = buf.get(uend + 1..pend) else {
            return (0, Step::More);
        };
        let shown = String::from_utf8_lossy(user).into_owned();
        let ok = self
            .auth
            .as_ref()
            .is_some_and(|(u, p)| u.as_bytes() == user && p.as_bytes() == pass);
        if !ok {
            return self.refuse(
                vec![1, 1],
                format!("username/password for {shown:?}: wrong (--proxy-auth)"),
            );
        }
        self.state = State::Request;
        (
            pend,
            Step::Answer(
                vec![1, 0],
                format!("username/password for {shown:?}: accepted"),
            ),
        )
    }

    fn request(&mut self, buf: &[u8]) -> (usize, Step) {
        let Some(head) = buf.get(..4) else {
            return (0, Step::More);
        };
        if head[0] != 5 {
            return self.refuse(
                reply(Reply::GeneralFailure, None),
                format!("request of version {}, not 5", head[0]),
            );
        }
        let cmd = head[1];
        let (dest, end) = match head[3] {
            1 => {
                let Some(b) = buf.get(4..10) else {
                    return (0, Step::More);
                };
                let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
                let port = u16::from_be_bytes([b[4], b[5]]);
                (Dest::Addr(SocketAddr::new(IpAddr::V4(ip), port)), 10)
            }
            4 => {
                let Some(b) = buf.get(4..22) else {
                    return (0, Step::More);
                };
                let mut o = [0u8; 16];
                o.copy_from_slice(&b[..16]);
                let port = u16::from_be_bytes([b[16], b[17]]);
                (
                    Dest::Addr(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port)),
                    22,
                )
            }
            3 => {
                let Some(&n) = buf.get(4) else {
                    return (0, Step::More);
                };
                let nend = 5 + usize::from(n);
                let Some(b) = buf.get(5..nend + 2) else {
                    return (0, Step::More);
                };
                let (name, port) = b.split_at(usize::from(n));
                let port = u16::from_be_bytes([port[0], port[1]]);
                match super::host_name(name) {
                    Some(host) => (Dest::Name(host, port), nend + 2),
                    None => {
                        return self.refuse(
                            reply(Reply::HostUnreachable, None),
                            format!(
                                "request for a name that is no host name ({:?}): {}",
                                String::from_utf8_lossy(name),
                                Reply::HostUnreachable.text()
                            ),
                        );
                    }
                }
            }
            t => {
                return self.refuse(
                    reply(Reply::AddressTypeNotSupported, None),
                    format!(
                        "request with address type {t:#04x}: {}",
                        Reply::AddressTypeNotSupported.text()
                    ),
                );
            }
        };
        if cmd != 1 {
            let name = match cmd {
                2 => "BIND",
                3 => "UDP ASSOCIATE",
                _ => "an unknown command",
            };
            return self.refuse(
                reply(Reply::CommandNotSupported, None),
                format!(
                    "request {name} ({cmd:#04x}) {dest}: {}",
                    Reply::CommandNotSupported.text()
                ),
            );
        }
        self.state = State::Done;
        let text = format!("request CONNECT {dest}");
        (end, Step::Connect(dest, text))
    }
}

fn method_name(m: u8) -> &'static str {
    match m {
        0 => "no authentication",
        2 => "username/password",
        _ => "another method",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_then_connect_to_a_name() {
        let mut s = Socks5::new(None);
        let (n, step) = s.feed(&[5, 1, 0, 5, 1, 0, 3]);
        assert_eq!(n, 3);
        assert!(matches!(step, Step::Answer(ref a, _) if a == &[5, 0]));
        let mut req = vec![5, 1, 0, 3, 9];
        req.extend_from_slice(b"localhost");
        req.extend_from_slice(&80u16.to_be_bytes());
        assert_eq!(s.feed(&req[..8]), (0, Step::More));
        let (n, step) = s.feed(&req);
        assert_eq!(n, req.len());
        assert!(matches!(step, Step::Connect(Dest::Name(ref h, 80), _) if h == "localhost"));
    }

    #[test]
    fn auth_is_checked() {
        let mut s = Socks5::new(Some(("u".into(), "p".into())));
        assert!(matches!(s.feed(&[5, 1, 0]).1, Step::Refuse(ref a, _) if a == &[5, 0xff]));
        let mut s = Socks5::new(Some(("u".into(), "p".into())));
        assert!(matches!(s.feed(&[5, 2, 0, 2]).1, Step::Answer(ref a, _) if a == &[5, 2]));
        assert!(matches!(s.feed(&[1, 1, b'u', 1, b'x']).1, Step::Refuse(ref a, _) if a == &[1, 1]));
        let mut s = Socks5::new(Some(("u".into(), "p".into())));
        s.feed(&[5, 1, 2]);
        assert!(
            matches!(s.feed(&[1, 1, b'u', 1, b'p']), (5, Step::Answer(ref a, _)) if a == &[1, 0])
        );
    }

    #[test]
    fn errors_have_their_codes() {
        let code = |req: &[u8]| {
            let mut s = Socks5::new(None);
            s.feed(&[5, 1, 0]);
            match s.feed(req).1 {
                Step::Refuse(a, _) => a.get(1).copied(),
                _ => None,
            }
        };
        assert_eq!(code(&[5, 2, 0, 1, 127, 0, 0, 1, 0, 80]), Some(7));
        assert_eq!(code(&[5, 3, 0, 1, 127, 0, 0, 1, 0, 80]), Some(7));
        assert_eq!(code(&[5, 1, 0, 9, 127, 0, 0, 1, 0, 80]), Some(8));
        let mut s = Socks5::new(None);
        assert!(
            matches!(s.feed(&[4, 1, 0, 80, 127, 0, 0, 1, 0]).1, Step::Refuse(ref a, _) if a[1] == 91)
        );
    }
}

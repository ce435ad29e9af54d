//! The HTTP proxy's side of a request, sans IO, over httparse: `CONNECT host:port` opens a
//! tunnel (answered `200 Connection established` once the upstream connect is done), and a
//! request in absolute form (`GET http://host/path HTTP/1.1`) is relayed, unchanged, to its
//! host. Everything else is answered here: 400 with a one-line reason, 407 without the
//! `--proxy-auth` credentials, and (by the caller) 403, 502, 504.
//!
//! A connection that began with an absolute-form request stays with that request's host: a
//! later request on it for another host closes it ([`super::guard`]).

use super::Dest;

/// The largest request head accepted (a longer one gets 400).
pub const MAX_HEAD: usize = 64 << 10;
const MAX_HEADERS: usize = 100;

/// What the bytes so far call for.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    More,
    /// Answer this and close.
    Refuse(Vec<u8>, String),
    /// Connect to `dest`. `head` bytes are the CONNECT request (answered, not relayed);
    /// for an absolute-form request `head` is 0: every byte goes to the host.
    Connect {
        dest: Dest,
        tunnel: bool,
        head: usize,
        text: String,
    },
}

/// A complete answer: status line, a short text body, and `Connection: close`.
pub fn response(code: u16, reason: &str, text: &str) -> Vec<u8> {
    let extra = if code == 407 {
        "Proxy-Authenticate: Basic realm=\"tcpspy\"\r\n"
    } else {
        ""
    };
    let body = format!("{text}\n");
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

fn bad(text: &str) -> Step {
    Step::Refuse(
        response(400, "Bad Request", text),
        format!("400 Bad Request: {text}"),
    )
}

/// Reads the request head at the front of `buf`.
pub fn feed(buf: &[u8], auth: Option<&(String, String)>) -> Step {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return bad("the request head is longer than 64 KiB");
        }
        Ok(httparse::Status::Partial) => return Step::More,
        Err(e) => return bad(&format!("not an HTTP request ({e})")),
    };
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("");
    if let Some((user, pass)) = auth {
        let expected = format!("Basic {}", base64(format!("{user}:{pass}").as_bytes()));
        let given = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("proxy-authorization"))
            .map(|h| h.value);
        if given.map(<[u8]>::trim_ascii) != Some(expected.as_bytes()) {
            let why = match given {
                None => "no Proxy-Authorization",
                Some(_) => "wrong Proxy-Authorization",
            };
            return Step::Refuse(
                response(
                    407,
                    "Proxy Authentication Required",
                    &format!("tcpspy: {why} (Basic, --proxy-auth)"),
                ),
                format!("407 Proxy Authentication Required: {why}"),
            );
        }
    }
    if method.eq_ignore_ascii_case("CONNECT") {
        let Some(dest) = super::parse_authority(target, None) else {
            return bad("CONNECT needs HOST:PORT");
        };
        return Step::Connect {
            text: format!("request CONNECT {dest}"),
            dest,
            tunnel: true,
            head,
        };
    }
    let lower = target.get(..7).map(str::to_ascii_lowercase);
    if lower.as_deref() != Some("http://") {
        if target.starts_with('/') {
            return bad(
                "not a proxy request: the target is not in absolute form (http://host/...)",
            );
        }
        return bad("only http:// targets are relayed; use CONNECT for https");
    }
    let rest = target.get(7..).unwrap_or("");
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..end).unwrap_or("");
    // Credentials in the URL (user@host) are not a host name.
    let Some(dest) = super::parse_authority(authority, Some(80)) else {
        return bad("the URL has no valid host");
    };
    let shown: String = target.chars().take(200).collect();
    Step::Connect {
        text: format!("request {method} {shown}: relayed to {dest}"),
        dest,
        tunnel: false,
        head: 0,
    }
}

/// Standard base64 with padding (to compare a Basic credential with the expected one).
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_known() {
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
    }

    #[test]
    fn connect_and_absolute() {
        let s = feed(
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\nabc",
            None,
        );
        assert!(
            matches!(
                s,
                Step::Connect {
                    tunnel: true,
                    head: 45,
                    ..
                }
            ),
            "{s:?}"
        );
        let s = feed(b"GET http://h:8080/p HTTP/1.1\r\n\r\n", None);
        assert!(
            matches!(s, Step::Connect { tunnel: false, head: 0, dest: Dest::Name(ref h, 8080), .. } if h == "h")
        );
        assert_eq!(feed(b"GET http://h/p HTTP/1.1\r\n", None), Step::More);
        assert!(
            matches!(feed(b"GET /p HTTP/1.1\r\n\r\n", None), Step::Refuse(ref r, _) if r.starts_with(b"HTTP/1.1 400"))
        );
        assert!(
            matches!(feed(b"\x05\x01\x00", None), Step::Refuse(ref r, _) if r.starts_with(b"HTTP/1.1 400"))
        );
        let auth = ("u".to_string(), "p".to_string());
        assert!(
            matches!(feed(b"CONNECT a:1 HTTP/1.1\r\n\r\n", Some(&auth)), Step::Refuse(ref r, _) if r.starts_with(b"HTTP/1.1 407"))
        );
        let ok = feed(
            b"CONNECT a:1 HTTP/1.1\r\nProxy-Authorization: Basic dTpw\r\n\r\n",
            Some(&auth),
        );
        assert!(matches!(ok, Step::Connect { .. }));
    }
}

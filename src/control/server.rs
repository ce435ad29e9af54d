//! The control API's HTTP server: its own thread, a blocking std listener, one request per
//! connection (`Connection: close`), parsed with httparse; the body by its Content-Length.
//! Requests are bounded (headers 16 KiB, body 1 MiB) and each connection has 5 s to send its
//! request, so a stalled client holds the API up for no longer than that, and never the relay.
//! The real [`Backend`] lives here: it resolves upstreams and binds listeners on this thread
//! (the blocking parts), then hands them to the reactor through the [`Queue`].

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::api::{Api, Backend, Response};
use super::command::{Command, Queue};
use crate::config::Rule;
use crate::faults::Live;

/// Most bytes of a request's head, and of its body.
pub const MAX_HEAD: usize = 16 << 10;
pub const MAX_BODY: usize = 1 << 20;
/// How long a client has to send its request, and to take the answer.
const CLIENT_TIME: Duration = Duration::from_secs(5);

/// A request as the API takes it.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub user_agent: Option<String>,
    pub body: Vec<u8>,
}

/// What reading a request can give besides a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// More bytes are needed.
    Partial,
    /// A request, and the bytes it took.
    Done(Request, usize),
    /// Not HTTP, or past the bounds: the answer to send before closing.
    Bad(u16, &'static str),
}

/// Parses what was received so far (pure: the fuzz target feeds it anything).
pub fn parse(buf: &[u8]) -> Parse {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Parse::Bad(431, "request header too large");
        }
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parse::Bad(431, "too many headers"),
        Err(_) => return Parse::Bad(400, "bad request"),
    };
    if head > MAX_HEAD {
        return Parse::Bad(431, "request header too large");
    }
    let mut length = 0usize;
    let mut agent = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let Some(n) = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
            else {
                return Parse::Bad(400, "bad Content-Length");
            };
            length = n;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parse::Bad(411, "a Content-Length is required");
        } else if h.name.eq_ignore_ascii_case("user-agent") {
            agent = Some(String::from_utf8_lossy(h.value).into_owned());
        }
    }
    if length > MAX_BODY {
        return Parse::Bad(413, "request body too large");
    }
    let Some(end) = head.checked_add(length) else {
        return Parse::Bad(413, "request body too large");
    };
    if buf.len() < end {
        return Parse::Partial;
    }
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return Parse::Bad(400, "bad request");
    };
    Parse::Done(
        Request {
            method: method.to_string(),
            path: path.to_string(),
            user_agent: agent,
            body: buf[head..end].to_vec(),
        },
        end,
    )
}

/// The response's bytes.
pub fn render(r: &Response) -> Vec<u8> {
    let reason = match r.status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        r.content_type,
        r.body.len()
    )
    .into_bytes();
    out.extend_from_slice(&r.body);
    out
}

/// The backend of the real relay.
pub struct Relay {
    pub queue: Queue,
}

impl Backend for Relay {
    fn start(
        &mut self,
        index: Option<usize>,
        name: &str,
        listen: SocketAddr,
        upstream: &str,
        live: Arc<Live>,
    ) -> Result<(usize, SocketAddr), String> {
        let t = super::addr::upstream(upstream)?;
        let target = crate::cli::resolve(&t.host, t.port).map_err(|e| format!("{e:#}"))?;
        let listener = crate::sys::listen(listen, false)
            .map_err(|e| format!("listen tcp {listen}: bind: {e}"))?;
        let bound = listener.local_addr().unwrap_or(listen);
        let rule = Rule {
            listen: bound,
            target,
            target_name: t.text,
            spec: format!("proxy {name:?} (control API)"),
        };
        let index = self.queue.ask(Command::Listen {
            index,
            rule,
            live,
            listener,
        })?;
        Ok((index, bound))
    }

    fn stop(&mut self, index: usize) -> Result<(), String> {
        self.queue.ask(Command::Close { index }).map(drop)
    }

    fn touch(&mut self, index: usize) -> Result<(), String> {
        self.queue.ask(Command::Touch { index }).map(drop)
    }
}

/// Serves the API on `listener` until the process ends.
pub fn serve(listener: TcpListener, mut api: Api, mut backend: Relay) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let _ = one(conn, &mut api, &mut backend);
    }
}

/// Reads one request, answers it, closes.
fn one(mut conn: TcpStream, api: &mut Api, backend: &mut Relay) -> io::Result<()> {
    conn.set_read_timeout(Some(CLIENT_TIME))?;
    conn.set_write_timeout(Some(CLIENT_TIME))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let response = loop {
        match parse(&buf) {
            Parse::Done(req, _) => {
                break api.handle(
                    backend,
                    &req.method,
                    &req.path,
                    req.user_agent.as_deref(),
                    &req.body,
                );
            }
            Parse::Bad(status, why) => break Response::error(status, why),
            Parse::Partial => {}
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    conn.write_all(&render(&response))?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_whole_and_bounded() {
        let r =
            b"POST /proxies HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nUser-Agent: t\r\n\r\nab";
        assert_eq!(parse(r), Parse::Partial);
        let mut full = r.to_vec();
        full.extend_from_slice(b"cd");
        match parse(&full) {
            Parse::Done(req, n) => {
                assert_eq!(
                    (req.method.as_str(), req.path.as_str()),
                    ("POST", "/proxies")
                );
                assert_eq!(req.body, b"abcd");
                assert_eq!(req.user_agent.as_deref(), Some("t"));
                assert_eq!(n, full.len());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(b"\x00\x01 nonsense\r\n\r\n"),
            Parse::Bad(400, "bad request")
        );
        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(
            parse(big.as_bytes()),
            Parse::Bad(413, "request body too large")
        );
        let long = vec![b'a'; MAX_HEAD + 10];
        assert!(matches!(parse(&long), Parse::Bad(..)));
        let rendered = render(&Response::error(404, "proxy not found"));
        assert!(rendered.starts_with(b"HTTP/1.1 404 Not Found\r\n"));
        assert!(rendered.ends_with(b"{\"error\":\"proxy not found\",\"status\":404}"));
    }
}

//! The HTTP proxy's watch over a connection that began with an absolute-form request: the
//! connection goes to that request's host, so a later request on it for another host must
//! not reach this one. A relay stage on the client-to-server direction follows the request
//! heads (httparse) and their `Content-Length` bodies; a request for another host closes the
//! connection before any of its bytes are delivered (the relay cannot answer mid-stream;
//! a keep-alive client such as curl then retries on a new connection, which tcpspy sends to
//! the right host). A body it cannot follow (chunked, or a head it cannot parse) ends the
//! watch, said in the hex dump.

use std::time::Instant;

use super::Dest;
use crate::relay::stage::{Release, Stage, Tap};
use crate::types::{Dir, End, Side};

pub const NAME: &str = "http-proxy";

enum Watch {
    Head,
    Body(u64),
    Off,
}

pub struct HostGuard {
    host: Dest,
    watch: Watch,
    buf: Vec<u8>,
    cut: bool,
}

impl HostGuard {
    /// Watches after `early`, the bytes already sent (the first request, or its start).
    pub fn new(host: Dest, early: &[u8]) -> HostGuard {
        let mut g = HostGuard {
            host,
            watch: Watch::Head,
            buf: Vec::new(),
            cut: false,
        };
        g.feed(early);
        g
    }

    /// Follows `bytes`; a story line to tell, if the watch changed.
    fn feed(&mut self, mut bytes: &[u8]) -> Option<String> {
        while !bytes.is_empty() && !self.cut {
            match self.watch {
                Watch::Off => return None,
                Watch::Body(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = &bytes[n..];
                    let left = left.saturating_sub(n as u64);
                    self.watch = if left == 0 {
                        Watch::Head
                    } else {
                        Watch::Body(left)
                    };
                }
                Watch::Head => {
                    let before = self.buf.len();
                    self.buf.extend_from_slice(bytes);
                    let mut headers = [httparse::EMPTY_HEADER; 100];
                    let mut req = httparse::Request::new(&mut headers);
                    let n = match req.parse(&self.buf) {
                        Ok(httparse::Status::Complete(n)) => n,
                        Ok(httparse::Status::Partial) if self.buf.len() < super::http::MAX_HEAD => {
                            return None;
                        }
                        _ => {
                            self.watch = Watch::Off;
                            return Some(
                                "a request head it cannot follow: later requests are not checked"
                                    .into(),
                            );
                        }
                    };
                    let target = req.path.unwrap_or("");
                    let dest = target
                        .get(..7)
                        .filter(|s| s.eq_ignore_ascii_case("http://"))
                        .and_then(|_| target.get(7..))
                        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""))
                        .and_then(|a| super::parse_authority(a, Some(80)));
                    if let Some(d) = dest.as_ref().filter(|d| **d != self.host) {
                        self.cut = true;
                        return Some(format!(
                            "a later request on this connection is for {d}, not {}: closed \
                             before relaying it",
                            self.host
                        ));
                    }
                    let chunked = req.headers.iter().any(|h| {
                        h.name.eq_ignore_ascii_case("transfer-encoding")
                            && !h.value.eq_ignore_ascii_case(b"identity")
                    });
                    let length = req
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .unwrap_or(0);
                    let used = n.saturating_sub(before).min(bytes.len());
                    bytes = &bytes[used..];
                    self.buf.clear();
                    if chunked {
                        self.watch = Watch::Off;
                        return Some(
                            "a chunked request body: later requests are not checked".into(),
                        );
                    }
                    self.watch = if length > 0 {
                        Watch::Body(length)
                    } else {
                        Watch::Head
                    };
                }
            }
        }
        None
    }
}

impl Stage for HostGuard {
    fn name(&self) -> &'static str {
        NAME
    }

    fn chunk(&mut self, dir: Dir, bytes: &mut [u8], _now: Instant, tap: &mut dyn Tap) {
        if let Some(text) = self.feed(bytes) {
            tap.note(dir, NAME, text);
        }
    }

    fn release(&mut self, pending: usize, _now: Instant) -> Release {
        match self.cut {
            true => Release::Cut(
                Side::Client,
                End::Fault {
                    name: "http-proxy (another host)".into(),
                    reset: false,
                },
            ),
            false => Release::Now(pending),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_requests_and_cuts_at_another_host() {
        let host = Dest::Name("a".into(), 80);
        let mut g = HostGuard::new(host.clone(), b"GET http://a/ HTTP/1.1\r\n\r\n");
        assert!(
            g.feed(b"POST http://a:80/x HTTP/1.1\r\nContent-Length: 5\r\n\r\nGET h")
                .is_none()
        );
        assert!(!g.cut);
        assert!(g.feed(b"GET http://b/ HTTP/1.1\r\n\r\n").is_some());
        assert!(g.cut);
        let mut g = HostGuard::new(
            host,
            b"GET http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert!(g.feed(b"GET http://b/ HTTP/1.1\r\n\r\n").is_none());
        assert!(!g.cut);
    }
}

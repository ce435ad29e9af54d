//! The control API on any bytes a client sends: `control::server::parse` (httparse, the
//! Content-Length body), then the request, if whole, through `control::api::Api::handle` with
//! a fake backend, several in a row on the same state. Errors are fine; a panic is not, and
//! every answer must be JSON or text the server can send.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpspy::control::api::{Api, Fake};
use tcpspy::control::server::{Parse, parse, render};

fuzz_target!(|data: &[u8]| {
    let (mut api, mut backend) = (Api::default(), Fake::default());
    let mut rest = data;
    for _ in 0..8 {
        match parse(rest) {
            Parse::Done(req, used) => {
                let r = api.handle(
                    &mut backend,
                    &req.method,
                    &req.path,
                    req.user_agent.as_deref(),
                    &req.body,
                );
                let _ = render(&r);
                rest = &rest[used.min(rest.len())..];
            }
            Parse::Bad(..) | Parse::Partial => return,
        }
    }
});

//! The HTTP proxy's request handling on any bytes a client sends: `proxy::http::feed` (over
//! httparse) must never panic; a tunnel's head never exceeds the bytes given, and every
//! refusal is a whole HTTP response.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpspy::proxy::http::{Step, feed};

fuzz_target!(|data: &[u8]| {
    for auth in [None, Some(("u".to_string(), "p".to_string()))] {
        for end in [data.len() / 2, data.len()] {
            match feed(&data[..end], auth.as_ref()) {
                Step::More => {}
                Step::Refuse(r, _) => assert!(r.starts_with(b"HTTP/1.1 4")),
                Step::Connect { head, .. } => assert!(head <= end),
            }
        }
    }
});

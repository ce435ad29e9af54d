//! The SOCKS5 handshake on any bytes a client sends, fed in pieces of any size (with and
//! without `--proxy-auth`): `proxy::socks5::Socks5::feed` must never panic, never take more
//! than it was given, and answer only replies of SOCKS5's (or SOCKS4's rejection) shapes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpspy::proxy::socks5::{Socks5, Step};

fuzz_target!(|data: &[u8]| {
    let (cut, rest) = data
        .split_first()
        .map_or((1, data), |(c, r)| (*c as usize + 1, r));
    for auth in [None, Some(("user".to_string(), "pass".to_string()))] {
        let mut s = Socks5::new(auth);
        let mut buf: Vec<u8> = Vec::new();
        for piece in rest.chunks(cut) {
            buf.extend_from_slice(piece);
            loop {
                let (used, step) = s.feed(&buf);
                assert!(used <= buf.len());
                buf.drain(..used);
                match step {
                    Step::More => break,
                    Step::Answer(a, _) => assert!(a.len() == 2),
                    Step::Refuse(a, _) => assert!(a.len() <= 22),
                    Step::Connect(..) => return,
                }
                if used == 0 {
                    break;
                }
            }
        }
    }
});

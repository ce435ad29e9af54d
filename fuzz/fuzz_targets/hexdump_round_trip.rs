//! What tcpspy writes parses back: chunks of any bytes, in any order of directions, with any
//! chunk number, offset and peer address in the first header.
#![no_main]

use std::net::{SocketAddr, SocketAddrV6};
use std::time::{Duration, UNIX_EPOCH};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tcpspy::log::hexdump;
use tcpspy::log::stamp::Stamper;
use tcpspy::types::Side;

#[derive(Arbitrary, Debug)]
struct Input {
    number: u64,
    offset: u64,
    ip: u128,
    port: u16,
    scope: u32,
    secs: u32,
    chunks: Vec<(bool, Vec<u8>)>,
}

fuzz_target!(|input: Input| {
    let peer = SocketAddr::V6(SocketAddrV6::new(
        input.ip.into(),
        input.port,
        0,
        input.scope,
    ));
    let at = UNIX_EPOCH + Duration::from_secs(u64::from(input.secs));
    let mut s = Stamper::default();
    let mut out = Vec::new();
    let mut nums = [input.number, 0];
    let mut offs = [input.offset, 0];
    let mut want = [Vec::new(), Vec::new()];
    for (server, data) in &input.chunks {
        let side = if *server { Side::Server } else { Side::Client };
        let i = side.index();
        hexdump::chunk_header(
            &mut out,
            &mut s,
            nums[i],
            offs[i],
            data.len(),
            &peer,
            side,
            at,
        );
        hexdump::dump(data, &mut out);
        nums[i] = nums[i].wrapping_add(1);
        offs[i] = offs[i].wrapping_add(data.len() as u64);
        want[i].extend_from_slice(data);
    }
    let text = String::from_utf8(out).expect("a dump is ASCII");
    let chunks = hexdump::parse(&text).expect("a dump tcpspy wrote parses");
    assert_eq!(chunks.len(), input.chunks.len());
    let mut got = [Vec::new(), Vec::new()];
    for (c, (server, data)) in chunks.iter().zip(&input.chunks) {
        assert_eq!(c.dir.source() == Side::Server, *server);
        assert_eq!(&c.data, data);
        got[c.dir.index()].extend_from_slice(&c.data);
    }
    assert_eq!(got, want);
    if let Some(first) = chunks.first() {
        let i = first.dir.index();
        let (n, o) = if i == 0 {
            (input.number, input.offset)
        } else {
            (0, 0)
        };
        assert_eq!((first.number, first.offset), (n, o));
    }
});

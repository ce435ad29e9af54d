//! `tcpspy::log::hexdump::streams` on any text: when it accepts a dump, each stream is its
//! chunks laid end to end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpspy::log::hexdump;

fuzz_target!(|s: &str| {
    if let Ok(streams) = hexdump::streams(s) {
        let chunks = hexdump::parse(s).expect("streams accepted it");
        let total: usize = chunks.iter().map(|c| c.len).sum();
        assert_eq!(streams[0].len() + streams[1].len(), total);
    }
});

//! `tcpspy::replay::source::hexdump::read` (tcpspy's and gotcpspy's dumps) on any text, with
//! and without a gotcpspy file name: an error or a recording whose streams are the dump's
//! chunks, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpspy::replay::source::hexdump;

fuzz_target!(|s: &str| {
    for name in [
        None,
        Some("log-2012.04.20-19.55.17-0001-127.0.0.1-49544-127.0.0.1-110.log"),
    ] {
        if let Ok(r) = hexdump::read(s, "fuzz", name) {
            let total: usize = r
                .steps
                .iter()
                .map(|st| match &st.act {
                    tcpspy::replay::recording::Act::Data(b) => b.len(),
                    _ => 0,
                })
                .sum();
            let streams = r.stream(tcpspy::types::Side::Client).len()
                + r.stream(tcpspy::types::Side::Server).len();
            assert_eq!(total, streams);
        }
    }
});

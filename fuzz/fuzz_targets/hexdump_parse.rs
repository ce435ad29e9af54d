//! `tcpspy::log::hexdump::parse` on any text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(chunks) = tcpspy::log::hexdump::parse(s) {
        for c in chunks {
            assert_eq!(c.data.len(), c.len, "parse checks each chunk's length");
        }
    }
});

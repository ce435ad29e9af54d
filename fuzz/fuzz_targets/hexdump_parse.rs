//! `tcpspy::log::hexdump::parse`, and the readers of the not-recorded lines (`gaps`,
//! `coverage`), on any text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(chunks) = tcpspy::log::hexdump::parse(s) {
        for c in chunks {
            assert_eq!(c.data.len(), c.len, "parse checks each chunk's length");
        }
    }
    let _ = tcpspy::log::hexdump::gaps(s);
    let _ = tcpspy::log::hexdump::coverage(s);
});

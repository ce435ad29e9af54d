//! `tcpspy::config::parse::parse_size` on any string: an error is fine, a panic is not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let _ = tcpspy::config::parse::parse_size(s);
});

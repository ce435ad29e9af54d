//! `tcpspy::replay::source::pcapng` (pcapng and classic pcap captures) on any bytes: every
//! conversation, or an error naming the packet or byte, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpspy::replay::source::pcapng;

fuzz_target!(|b: &[u8]| {
    let _ = pcapng::looks_like(b);
    let _ = pcapng::read_all(b, "fuzz");
    let _ = pcapng::read(b, "fuzz", Some("1"));
});

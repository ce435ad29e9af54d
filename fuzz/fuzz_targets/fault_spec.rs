//! The faults' parsers on any input: `--fault` specs (`faults::spec::parse_flag`), a toxic's
//! JSON (`from_json`, then an update of it), and a populate array (`populate`). Errors are
//! fine; a panic is not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpspy::faults::spec;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = spec::parse_flag(s);
    }
    if let Ok(t) = spec::from_json(data) {
        let _ = t.to_json();
        let _ = t.update(data);
    }
    let _ = spec::populate(data);
});

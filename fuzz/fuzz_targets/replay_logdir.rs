//! The log directory's readers: a `connections.jsonl` text and file names, as
//! `tcpspy::replay::source::logdir` reads them to find a connection's files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpspy::replay::source::logdir;

fuzz_target!(|input: (&str, &str)| {
    let (index, wanted) = input;
    if let Some((number, files)) = logdir::from_index(index, wanted) {
        let _ = logdir::sort(std::path::Path::new("d"), &number, &files);
    }
    for line in index.lines() {
        let _ = logdir::name_number(line);
    }
});

//! `tcpspy::cli::parse_args` on any argument vector (NUL-separated words, not always UTF-8),
//! then the pure stage-two parsers on whatever clap accepted.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use libfuzzer_sys::fuzz_target;
use tcpspy::cli;

fuzz_target!(|data: &[u8]| {
    let argv = std::iter::once(OsString::from("tcpspy")).chain(
        data.split(|b| *b == 0)
            .map(|w| OsString::from_vec(w.to_vec())),
    );
    if let Ok(a) = cli::parse_args(argv) {
        for v in [&a.listen, &a.target, &a.host, &a.port, &a.listen_port]
            .into_iter()
            .flatten()
        {
            let _ = (
                cli::parse_listen(v),
                cli::parse_target(v),
                cli::parse_port(v),
            );
        }
        let _ = (
            cli::parse_formats(&a.log),
            cli::parse_size(&a.log_queue),
            cli::parse_size(&a.buffer_size),
            cli::parse_duration(&a.connect_timeout),
        );
    }
});

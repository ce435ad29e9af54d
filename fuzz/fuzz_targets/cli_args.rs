//! `tcpspy::cli::parse_args` on any argument vector (NUL-separated words, not always UTF-8):
//! every value goes through its typed parser inside clap; then the one-line rendering of
//! whatever clap refused. An error is fine, a panic is not.
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
    match cli::parse_args(argv) {
        Ok(a) => {
            let _ = format!("{a:?}");
        }
        Err(e) => {
            let _ = cli::one_line(&e);
        }
    }
});

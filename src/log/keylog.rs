//! The key log (`--keylog FILE`, or `SSLKEYLOGFILE`): both legs' TLS secrets of every
//! intercepted connection, in the NSS key log format that Wireshark, tshark and curl use.
//! The file is opened at start-up (mode 0600, appended to, as browsers do with
//! SSLKEYLOGFILE) and written as the secrets come.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;

use super::{Io, Output, eprint_line};

pub struct KeyLog {
    file: Arc<File>,
    /// Reported once; then the key log is off.
    failed: bool,
}

impl KeyLog {
    pub fn new(file: Arc<File>) -> KeyLog {
        KeyLog {
            file,
            failed: false,
        }
    }
}

/// Opens (or creates, mode 0600) the key log for appending.
pub fn open(path: &std::path::Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

impl Output for KeyLog {
    fn name(&self) -> &'static str {
        "the key log"
    }

    fn kind(&self) -> &'static str {
        "keylog"
    }

    fn keys(&mut self, lines: &str, io: &mut Io) {
        if self.failed {
            return;
        }
        if let Err(e) = (&*self.file).write_all(lines.as_bytes()) {
            self.failed = true;
            io.reported += 1;
            eprint_line(&format!(
                "tcpspy: the key log cannot be written ({e}); no more secrets go to it"
            ));
        }
    }
}

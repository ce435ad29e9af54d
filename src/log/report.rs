//! The connection lines on stderr: one as a connection opens, one as it closes with the bytes
//! each way, the duration and how each side ended. Only addresses and numbers are printed,
//! never a byte from the network.
//!
//! The lines of a batch of events go out in one `write` at its end: when connections come
//! and go by the thousand, a `write` per line was most of what the logging thread did.

use std::io::{self, Write};

use super::{Closed, ConnInfo, Io, Output, stamp};
use crate::types::Dir;

/// Lines held past this are written at once, so a huge batch holds little.
const HOLD_BYTES: usize = 16 << 10;

/// The `#0001 open ...` / `#0001 closed ...` lines.
#[derive(Default)]
pub struct Report {
    held: Vec<u8>,
}

impl Report {
    fn line(&mut self, line: &str) {
        self.held.extend_from_slice(line.as_bytes());
        self.held.push(b'\n');
        if self.held.len() >= HOLD_BYTES {
            self.write_out();
        }
    }

    /// Writes the held lines, ignoring failure: a closed stderr must not stop the relay.
    fn write_out(&mut self) {
        if !self.held.is_empty() {
            let _ = io::stderr().lock().write_all(&self.held);
            self.held.clear();
        }
    }
}

impl Output for Report {
    fn name(&self) -> &'static str {
        "the connection lines on stderr"
    }

    fn kind(&self) -> &'static str {
        "lines"
    }

    fn open(&mut self, conn: &mut ConnInfo, _io: &mut Io) {
        self.line(&open_line(conn));
    }

    fn close(&mut self, conn: &ConnInfo, closed: &Closed, io: &mut Io) {
        // Any log failure of this connection is told before its closed line (and after the
        // lines before it).
        if !io.errors.is_empty() {
            self.write_out();
            io.report_errors();
        }
        self.line(&closed_line(conn, closed));
    }

    fn flush(&mut self, _io: &mut Io) {
        self.write_out();
    }

    fn finish(&mut self, _io: &mut Io) {
        self.write_out();
    }
}

/// `#0001 open 127.0.0.1:41126 -> 127.0.0.1:8000`
pub fn open_line(conn: &ConnInfo) -> String {
    format!("#{} open {} -> {}", conn.label, conn.client, conn.target)
}

/// `#0001 closed 127.0.0.1:41126 -> 127.0.0.1:8000 after 0.006819s: client sent 87 bytes,
/// server sent 209 bytes; server EOF, then client EOF`
pub fn closed_line(conn: &ConnInfo, closed: &Closed) -> String {
    let how: Vec<String> = closed
        .ends
        .iter()
        .map(|(s, e)| format!("{} {e}", s.name()))
        .collect();
    format!(
        "#{} closed {} -> {} after {}: client sent {} bytes, server sent {} bytes; {}",
        conn.label,
        conn.client,
        conn.target,
        stamp::duration(conn.started, closed.at),
        closed.bytes[Dir::ClientToServer.index()],
        closed.bytes[Dir::ServerToClient.index()],
        how.join(", then "),
    )
}

//! The connection lines on stderr: one as a connection opens, one as it closes with the bytes
//! each way, the duration and how each side ended. Only addresses and numbers are printed,
//! never a byte from the network.

use super::{Closed, ConnInfo, Io, Output, eprint_line, stamp};
use crate::types::Dir;

/// The `#0001 open ...` / `#0001 closed ...` lines.
pub struct Report;

impl Output for Report {
    fn name(&self) -> &'static str {
        "the connection lines on stderr"
    }

    fn kind(&self) -> &'static str {
        "lines"
    }

    fn open(&mut self, conn: &mut ConnInfo, _io: &mut Io) {
        eprint_line(&open_line(conn));
    }

    fn close(&mut self, conn: &ConnInfo, closed: &Closed, io: &mut Io) {
        // Any log failure of this connection is told before its closed line.
        io.report_errors();
        eprint_line(&closed_line(conn, closed));
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

//! `connections.jsonl`: one JSON line per connection as it ends, in the log directory, so a
//! run with thousands of connections can be searched with jq. The file is appended to (runs
//! and processes sharing a directory add to it), one `write` per line.

use std::net::SocketAddr;
use std::time::SystemTime;

use chrono::{DateTime, Local, SecondsFormat};

use super::files::FileId;
use super::{Closed, ConnInfo, Io, Output, stamp};
use crate::types::Dir;

/// The index's file name in the log directory.
pub const NAME: &str = "connections.jsonl";

/// The index output.
#[derive(Default)]
pub struct Index {
    file: Option<FileId>,
    /// The listening address of each rule, for the `listen` field.
    listens: Vec<SocketAddr>,
}

impl Index {
    pub fn new(listens: Vec<SocketAddr>) -> Index {
        Index {
            file: None,
            listens,
        }
    }
}

impl Output for Index {
    fn close(&mut self, conn: &ConnInfo, closed: &Closed, io: &mut Io) {
        let file = match self.file {
            Some(f) => f,
            None => {
                let (f, err) = io.files.open_append(io.dir.join(NAME));
                io.errors.extend(err);
                *self.file.get_or_insert(f)
            }
        };
        let line = json_line(conn, closed, self.listens.get(conn.rule));
        let r = io.files.write(file, line.as_bytes());
        io.check(r);
    }
}

/// RFC 3339 with microseconds, in local time with its offset.
pub fn rfc3339(t: SystemTime) -> String {
    DateTime::<Local>::from(t).to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One connection's line, newline included.
pub fn json_line(conn: &ConnInfo, closed: &Closed, listen: Option<&SocketAddr>) -> String {
    let ends: Vec<String> = closed
        .ends
        .iter()
        .map(|(side, how)| {
            format!(
                "{{\"side\":\"{}\",\"how\":{}}}",
                side.name(),
                json_str(&how.to_string())
            )
        })
        .collect();
    let files: Vec<String> = conn.files.iter().map(|f| json_str(f)).collect();
    let opt = |a: Option<&SocketAddr>| a.map_or("null".to_string(), |a| json_str(&a.to_string()));
    let d = closed.at.duration_since(conn.started).unwrap_or_default();
    format!(
        "{{\"number\":{},\"id\":{},\"rule\":{},\"listen\":{},\"client\":{},\"target\":{},\"target_name\":{},\
         \"local\":{},\"start\":{},\"end\":{},\"duration_s\":{},\"connected\":{},\
         \"bytes_client_to_server\":{},\"bytes_server_to_client\":{},\"undelivered\":[{},{}],\
         \"ends\":[{}],\"files\":[{}]}}\n",
        json_str(&conn.label),
        conn.id,
        conn.rule,
        opt(listen),
        json_str(&conn.client.to_string()),
        json_str(&conn.target.to_string()),
        json_str(&conn.target_name),
        json_str(&conn.local.to_string()),
        json_str(&rfc3339(conn.started)),
        json_str(&rfc3339(closed.at)),
        stamp::seconds(d).trim_end_matches('s'),
        conn.connected.is_some(),
        closed.bytes[Dir::ClientToServer.index()],
        closed.bytes[Dir::ServerToClient.index()],
        closed.undelivered[0],
        closed.undelivered[1],
        ends.join(","),
        files.join(","),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{End, Side};
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn escapes() {
        assert_eq!(
            json_str("a\"b\\c\n\u{1b}[2J"),
            "\"a\\\"b\\\\c\\n\\u001b[2J\""
        );
        assert_eq!(json_str("é"), "\"é\"");
    }

    #[test]
    fn one_line_per_connection() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let conn = ConnInfo {
            id: 7,
            label: "0007".into(),
            rule: 0,
            target_name: "db:5432".into(),
            client: "127.0.0.1:5000".parse().unwrap(),
            target: "10.0.0.7:5432".parse().unwrap(),
            local: "10.0.0.2:40000".parse().unwrap(),
            started: t,
            connected: Some(t),
            chunks: [0; 2],
            offsets: [0; 2],
            files: vec!["log-a.log".into(), "log-binary-b.log".into()],
        };
        let closed = Closed {
            at: t + Duration::from_millis(1500),
            bytes: [10, 20],
            undelivered: [0, 0],
            ends: vec![
                (Side::Client, End::Fin),
                (Side::Server, End::Error("boom \"x\"".into())),
            ],
            held: Default::default(),
            tcp: [None, None],
        };
        let line = json_line(&conn, &closed, Some(&"127.0.0.1:8080".parse().unwrap()));
        assert!(line.ends_with("}\n") && line.lines().count() == 1);
        for part in [
            "\"number\":\"0007\"",
            "\"listen\":\"127.0.0.1:8080\"",
            "\"client\":\"127.0.0.1:5000\"",
            "\"target_name\":\"db:5432\"",
            "\"duration_s\":1.500000",
            "\"bytes_client_to_server\":10",
            "\"ends\":[{\"side\":\"client\",\"how\":\"EOF\"},{\"side\":\"server\",\"how\":\"error (boom \\\"x\\\")\"}]",
            "\"files\":[\"log-a.log\",\"log-binary-b.log\"]",
        ] {
            assert!(line.contains(part), "{part} in {line}");
        }
    }
}

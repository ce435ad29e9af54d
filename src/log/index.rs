//! `connections.jsonl`: one JSON line per connection as it ends, in the log directory, so a
//! run with thousands of connections can be searched with jq. The file is appended to (runs
//! and processes sharing a directory add to it), one `write` per line.
//!
//! Under `--log-budget` each line also counts the bytes not recorded per direction
//! (`"not_recorded":[0,491520]`), and every removal the budget makes has a line of its own:
//! `{"removed":"0001","files":[...],"bytes":N,"reason":"log budget"}`, `"removed":"capture"`
//! for a capture part. Those lines have no `number`: `select(.number)` keeps the connections.
//!
//! The index counts against the budget too: once this run has put an eighth of the budget in
//! `connections.jsonl`, its lines go on in parts of that size, `connections-<stamp>-1.jsonl`,
//! ..., which the budget removes in turn, oldest first. A removed part takes its lines and
//! removal notes with it, so its own note says what the index no longer holds, counting from
//! the start of the run: `{"removed":"index","files":[...],"bytes":N,"lines_of":"0017-0040",
//! "lines_removed":"0017-0040","files_removed":"0001-0038,0040","reason":"log budget"}`:
//! the connections whose lines were in this part, every connection whose line is gone, and
//! every connection whose files are gone. Together with the lines still there, the latest such
//! note accounts for every connection of the run.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::SystemTime;

use crate::config::parse::Size;

use chrono::{DateTime, Local, SecondsFormat};

use super::budget::{CAPTURE, INDEX, Removal};
use super::event::ConnId;
use super::files::FileId;
use super::{Closed, ConnInfo, Io, Output, eprint_line, naming, stamp};
use crate::types::Dir;

/// The index's file name in the log directory.
pub const NAME: &str = "connections.jsonl";

/// The index output.
#[derive(Default)]
pub struct Index {
    file: Option<FileId>,
    /// The listening address of each rule, for the `listen` field.
    listens: Vec<SocketAddr>,
    /// Under a log budget, the parts (see the module doc).
    parts: Option<Parts>,
    /// Put before connection numbers, as the labels have it.
    prefix: Option<String>,
    /// The faults' story lines of each open connection, for its line's `faults` field.
    faults: HashMap<ConnId, Faults>,
    /// The TLS fields of each open intercepted connection, for its line's `tls` field.
    tls: HashMap<ConnId, serde_json::Map<String, serde_json::Value>>,
}

/// Most fault lines a connection's index line lists (the hex dump has every one).
pub const FAULT_LINES: usize = 64;

#[derive(Default)]
struct Faults {
    lines: Vec<serde_json::Value>,
    more: u64,
}

struct Parts {
    /// The most bytes of this run's lines a part takes.
    size: u64,
    /// The run's start, which names the parts.
    stamp: String,
    /// The part being written: 0 for `connections.jsonl`.
    number: u32,
    /// The connections whose lines the part holds.
    ids: Vec<ConnId>,
    /// Every connection whose line went with a removed part, and whose files were removed.
    lines_removed: Ranges,
    files_removed: Ranges,
}

impl Index {
    /// `part_size`: under a log budget, the size of this run's index parts. `prefix`: what
    /// connection labels have before their number.
    pub fn new(listens: Vec<SocketAddr>, part_size: Option<u64>, prefix: Option<String>) -> Index {
        Index {
            file: None,
            listens,
            parts: part_size.map(|size| Parts {
                size,
                stamp: String::new(),
                number: 0,
                ids: Vec::new(),
                lines_removed: Ranges::default(),
                files_removed: Ranges::default(),
            }),
            prefix,
            faults: HashMap::new(),
            tls: HashMap::new(),
        }
    }

    /// Appends a line, of connection `id` if it is one; under a budget, begins the next part
    /// first when the line would take this one past its size.
    fn write(&mut self, line: &str, id: Option<ConnId>, io: &mut Io) {
        let file = match self.file {
            Some(f) => f,
            None => {
                let (f, err) = io.files.open_append(io.dir.join(NAME));
                io.errors.extend(err);
                *self.file.get_or_insert(f)
            }
        };
        let file = match &mut self.parts {
            Some(p) if io.files.size(file).saturating_add(line.len() as u64) > p.size => {
                io.close_index_part(file, std::mem::take(&mut p.ids));
                p.number = p.number.saturating_add(1);
                let name = naming::index_part(&p.stamp, p.number);
                if p.number == 1 {
                    eprint_line(&format!(
                        "tcpspy: log budget: the index goes on in parts of {}: {name}, ...",
                        Size(p.size)
                    ));
                }
                let (f, err) = io.files.create(io.dir.join(name));
                io.errors.extend(err);
                self.file = Some(f);
                f
            }
            _ => file,
        };
        if let (Some(p), Some(id)) = (&mut self.parts, id) {
            p.ids.push(id);
        }
        let r = io.files.write(file, line.as_bytes());
        io.check(r);
    }
}

/// A set of connections as their labels have them (with `prefix` before the numbers).
fn labels(prefix: &Option<String>, r: &Ranges) -> String {
    r.text(|id| match prefix {
        Some(p) => format!("{p}-{}", naming::number(id)),
        None => naming::number(id),
    })
}

/// A set of connection ids, as ranges: `0001-0038,0040`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges(BTreeMap<ConnId, ConnId>);

impl Ranges {
    pub fn insert(&mut self, id: ConnId) {
        let below = self.0.range(..=id).next_back().map(|(&a, &b)| (a, b));
        if let Some((_, end)) = below
            && end >= id
        {
            return;
        }
        let mut start = id;
        let mut end = id;
        if let Some((a, b)) = below
            && b.checked_add(1) == Some(id)
        {
            start = a;
        }
        if let Some(next) = id.checked_add(1)
            && let Some(e) = self.0.remove(&next)
        {
            end = e;
        }
        self.0.insert(start, end);
    }

    /// The set as text, each id written by `label`.
    pub fn text(&self, label: impl Fn(ConnId) -> String) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(&a, &b)| match a == b {
                true => label(a),
                false => format!("{}-{}", label(a), label(b)),
            })
            .collect();
        parts.join(",")
    }
}

impl Output for Index {
    fn name(&self) -> &'static str {
        "the connection index"
    }

    fn kind(&self) -> &'static str {
        "index"
    }

    fn start(&mut self, _io: &mut Io) {
        if let Some(p) = &mut self.parts {
            p.stamp = stamp::file_stamp(SystemTime::now());
        }
    }

    fn rule(&mut self, index: usize, rule: &crate::config::Rule, _io: &mut Io) {
        while self.listens.len() <= index {
            self.listens.push(rule.listen);
        }
        self.listens[index] = rule.listen;
    }

    fn note(
        &mut self,
        conn: &ConnInfo,
        dir: Dir,
        stage: &'static str,
        text: &str,
        at: SystemTime,
        _io: &mut Io,
    ) {
        let f = self.faults.entry(conn.id).or_default();
        if f.lines.len() >= FAULT_LINES {
            f.more = f.more.saturating_add(1);
            return;
        }
        f.lines.push(serde_json::json!({
            "at": rfc3339(at),
            "fault": stage,
            "stream": match dir {
                Dir::ClientToServer => "upstream",
                Dir::ServerToClient => "downstream",
            },
            "what": text,
        }));
    }

    fn tls(&mut self, conn: &ConnInfo, _at: SystemTime, what: &crate::tls::Event, _io: &mut Io) {
        let (key, value) = what.json();
        self.tls
            .entry(conn.id)
            .or_default()
            .insert(key.to_string(), value);
    }

    fn close(&mut self, conn: &ConnInfo, closed: &Closed, io: &mut Io) {
        let mut line = json_line(conn, closed, self.listens.get(conn.rule));
        if let Some(t) = self.tls.remove(&conn.id) {
            line.truncate(line.len().saturating_sub(2));
            let t = serde_json::Value::Object(t).to_string();
            line.push_str(&format!(",\"tls\":{t}}}\n"));
        }
        if let Some(f) = self.faults.remove(&conn.id) {
            line.truncate(line.len().saturating_sub(2));
            let list = serde_json::Value::Array(f.lines).to_string();
            line.push_str(&format!(",\"faults\":{list}"));
            if f.more > 0 {
                line.push_str(&format!(",\"faults_not_listed\":{}", f.more));
            }
            line.push_str("}\n");
        }
        if self.parts.is_some() {
            line.truncate(line.len().saturating_sub(2));
            line.push_str(&format!(
                ",\"not_recorded\":[{},{}]}}\n",
                conn.not_recorded[0], conn.not_recorded[1]
            ));
        }
        self.write(&line, Some(conn.id), io);
    }

    fn removed(&mut self, removal: &Removal, io: &mut Io) {
        let mut line = removal_line(removal);
        if let Some(p) = &mut self.parts {
            match removal.what.as_str() {
                CAPTURE => {}
                INDEX => {
                    let mut of = Ranges::default();
                    for &id in &removal.ids {
                        of.insert(id);
                        p.lines_removed.insert(id);
                    }
                    let extra = format!(
                        ",\"lines_of\":{},\"lines_removed\":{},\"files_removed\":{}",
                        json_str(&labels(&self.prefix, &of)),
                        json_str(&labels(&self.prefix, &p.lines_removed)),
                        json_str(&labels(&self.prefix, &p.files_removed)),
                    );
                    let at = line.rfind(",\"reason\"").unwrap_or(line.len());
                    line.insert_str(at, &extra);
                }
                _ => {
                    for &id in &removal.ids {
                        p.files_removed.insert(id);
                    }
                }
            }
        }
        self.write(&line, None, io);
    }

    fn finish(&mut self, io: &mut Io) {
        if let Some(f) = self.file.take() {
            io.files.close(f);
        }
    }
}

/// A removal's line, newline included.
pub fn removal_line(r: &Removal) -> String {
    let files: Vec<String> = r.files.iter().map(|f| json_str(f)).collect();
    format!(
        "{{\"removed\":{},\"files\":[{}],\"bytes\":{},\"reason\":\"log budget\"}}\n",
        json_str(&r.what),
        files.join(","),
        r.bytes
    )
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
    let files: Vec<String> = conn.files.iter().map(json_str).collect();
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
    fn ranges_merge() {
        let mut r = Ranges::default();
        for id in [5, 1, 2, 3, 9, 4, 7, 3, 11, 10] {
            r.insert(id);
        }
        assert_eq!(r.text(|id| format!("{id:04}")), "0001-0005,0007,0009-0011");
        r.insert(8);
        r.insert(6);
        assert_eq!(r.text(|id| id.to_string()), "1-11");
        r.insert(u64::MAX);
        r.insert(0);
        assert_eq!(r.text(|id| id.to_string()), format!("0-11,{}", u64::MAX));
        assert_eq!(Ranges::default().text(|id| id.to_string()), "");
    }

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
            files: ["log-a.log", "log-binary-b.log"].into_iter().collect(),
            gaps: [None; 2],
            not_recorded: [0; 2],
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
        assert_eq!(
            removal_line(&Removal {
                what: "0007".into(),
                files: vec!["log-a.log".into()],
                bytes: 12,
                ids: vec![7],
            }),
            "{\"removed\":\"0007\",\"files\":[\"log-a.log\"],\"bytes\":12,\"reason\":\"log budget\"}\n"
        );
    }
}

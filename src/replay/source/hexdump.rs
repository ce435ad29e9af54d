//! Reads a hex dump back into a [`Recording`]: tcpspy's (every version: a chunk header names
//! its side, `Received (#3, 0000A000) 1024 bytes from 127.0.0.1:110 (server) at TIME`, and
//! `Disconnected from PEER (side): HOW at TIME` tells each end) and gotcpspy's, the seed
//! article's layout, whose lines name only a peer (`Received (#0, 00000000) 38 bytes from
//! 127.0.0.1-49544`, `Disconnected from [--1]-8080`) and carry no times.
//!
//! In gotcpspy's dumps the server's chunks are "from" the proxy's own address on the upstream
//! connection, which is also in the file's name (`log-STAMP-0001-LOCAL-REMOTE.log`), and the
//! client's "from" the listening address; failing the name, an ephemeral port (32768 and up)
//! marks the upstream side, and failing that the first to speak is taken for the client.
//!
//! Every chunk is checked against its header (length, number, offset in its direction): a
//! damaged or cut file gives an error naming its line, never a guess. Pure: text in,
//! recording out.

use std::time::Duration;

use chrono::NaiveDateTime;

use crate::replay::recording::{Act, Recording};
use crate::types::Side;

/// Who a line says acted: a side (tcpspy) or only a peer's name (gotcpspy).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Who {
    Side(Side),
    Peer(String),
}

enum Raw {
    /// A chunk: who, bytes, time, and its header's number, offset and line.
    Data(Who, Vec<u8>, Option<NaiveDateTime>, [u64; 2], usize),
    End(Who, Option<Act>, Option<NaiveDateTime>),
}

/// A chunk being read: its header's figures and the bytes of its dump lines so far.
struct Open {
    who: Who,
    number: u64,
    offset: u64,
    len: usize,
    at: Option<NaiveDateTime>,
    line: usize,
    data: Vec<u8>,
}

/// True if `text` looks like a hex dump (of either layout).
pub fn looks_like(text: &str) -> bool {
    text.lines().take(64).any(|l| {
        l.starts_with("Received (#") || l.starts_with("Connected to ") || l.starts_with("Proxy ")
    })
}

/// Reads the dump `text`; `file_name` (without directory) helps tell gotcpspy's sides apart.
pub fn read(text: &str, origin: &str, file_name: Option<&str>) -> Result<Recording, String> {
    let mut raws: Vec<Raw> = Vec::new();
    let mut open: Option<Open> = None;
    let mut start: Option<NaiveDateTime> = None;
    for (i, line) in text.lines().enumerate() {
        let lineno = i.saturating_add(1);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if is_dump_line(line) {
            let c = open
                .as_mut()
                .ok_or_else(|| format!("line {lineno}: a dump line outside a chunk"))?;
            dump_line(line, &mut c.data).map_err(|e| format!("line {lineno}: {e}"))?;
            continue;
        }
        if let Some(c) = open.take() {
            raws.push(close(c)?);
        }
        if let Some(rest) = line.strip_prefix("Received (#") {
            let c = header(rest, lineno).map_err(|e| format!("line {lineno}: {e}"))?;
            if start.is_none() {
                start = c.at;
            }
            open = Some(c);
        } else if let Some(rest) = line.strip_prefix("Disconnected from ") {
            let (who, act, at) = disconnected(rest);
            if start.is_none() {
                start = at;
            }
            raws.push(Raw::End(who, act, at));
        } else if let Some(rest) = line.strip_prefix("Connected to ") {
            if let Some((_, t)) = rest.split_once(" at ") {
                let t = t.split(" (").next().unwrap_or(t);
                start = start.or_else(|| time(t));
            }
        } else if line.starts_with(crate::log::hexdump::NOT_RECORDED)
            || line.starts_with("Not recording ")
        {
            return Err(format!(
                "line {lineno}: the recording lacks bytes the log budget left out, so it \
                 cannot be played as it was"
            ));
        }
    }
    if let Some(c) = open.take() {
        raws.push(close(c)?);
    }
    let sides = assign_sides(&raws, file_name)?;
    let mut rec = Recording::new(origin);
    let mut next = [(0u64, 0u64); 2];
    for raw in raws {
        match raw {
            Raw::Data(who, bytes, at, [number, offset], line) => {
                let side = sides.side(&who);
                let n = &mut next[side.index()];
                if (number, offset) != *n {
                    return Err(format!(
                        "line {line}: chunk #{number} of the {} at offset {offset:#x}, \
                         expected #{} at {:#x}: a chunk is missing or out of place",
                        side.name(),
                        n.0,
                        n.1
                    ));
                }
                n.0 = n.0.saturating_add(1);
                n.1 = n.1.saturating_add(bytes.len() as u64);
                rec.data(side, bytes, since(start, at));
            }
            Raw::End(who, Some(act), at) => rec.end(sides.side(&who), act, since(start, at)),
            Raw::End(_, None, _) => {}
        }
    }
    Ok(rec)
}

fn since(start: Option<NaiveDateTime>, at: Option<NaiveDateTime>) -> Option<Duration> {
    let d = at?.signed_duration_since(start?);
    Some(d.to_std().unwrap_or(Duration::ZERO))
}

/// `2026.11.29-12.27.54.030824` (tcpspy) or `2012.04.20-19.55.17` (gotcpspy), local time.
fn time(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    NaiveDateTime::parse_from_str(s, "%Y.%m.%d-%H.%M.%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y.%m.%d-%H.%M.%S"))
        .ok()
}

/// Parses what follows `Received (#`: `3, 0000A000) 1024 bytes from PEER (side) at TIME`, or
/// gotcpspy's `3, 0000A000) 1024 bytes from PEER`.
fn header(rest: &str, line: usize) -> Result<Open, String> {
    let bad = || format!("bad chunk header {:?}", cut(rest));
    let (number, rest) = rest.split_once(", ").ok_or_else(bad)?;
    let (offset, rest) = rest.split_once(") ").ok_or_else(bad)?;
    let (len, rest) = rest.split_once(" bytes from ").ok_or_else(bad)?;
    let number = number
        .parse()
        .map_err(|_| format!("bad chunk number {number:?}"))?;
    let offset =
        u64::from_str_radix(offset, 16).map_err(|_| format!("bad chunk offset {offset:?}"))?;
    let len: usize = len
        .parse()
        .map_err(|_| format!("bad chunk length {len:?}"))?;
    let (who, at) = match side_and_time(rest) {
        Some((side, at)) => (Who::Side(side), at),
        None => (Who::Peer(rest.trim().to_string()), None),
    };
    Ok(Open {
        who,
        number,
        offset,
        len,
        at,
        line,
        data: Vec::with_capacity(len.min(1 << 20)),
    })
}

/// `PEER (client) at TIME` → the side and the time.
fn side_and_time(rest: &str) -> Option<(Side, Option<NaiveDateTime>)> {
    for side in Side::BOTH {
        let tag = format!(" ({}) at ", side.name());
        if let Some((_, t)) = rest.rsplit_once(&tag) {
            return Some((side, time(t)));
        }
    }
    None
}

/// What follows `Disconnected from `: tcpspy's `PEER (side): HOW at TIME` or gotcpspy's bare
/// `PEER` (any read error ended its copier: taken for a FIN).
fn disconnected(rest: &str) -> (Who, Option<Act>, Option<NaiveDateTime>) {
    for side in Side::BOTH {
        let tag = format!(" ({}): ", side.name());
        if let Some((_, tail)) = rest.split_once(&tag) {
            let (how, at) = match tail.rsplit_once(" at ") {
                Some((how, t)) => (how, time(t)),
                None => (tail, None),
            };
            return (Who::Side(side), end_act(how), at);
        }
    }
    (Who::Peer(rest.trim().to_string()), Some(Act::Fin), None)
}

/// A recorded end as the side did it. tcpspy's own closes (a stop, the idle timeout, a
/// fault's close, the reset it gave a side because the other broke) are not the peer's act.
pub fn end_act(how: &str) -> Option<Act> {
    if how.starts_with("EOF") {
        Some(Act::Fin)
    } else if how.starts_with("reset by tcpspy") || how.starts_with("closed by") {
        None
    } else if how.starts_with("reset") || how.starts_with("error") {
        Some(Act::Reset)
    } else {
        None
    }
}

fn close(c: Open) -> Result<Raw, String> {
    if c.data.len() != c.len {
        return Err(format!(
            "line {}: chunk #{} says {} bytes but its dump holds {}: the file is cut short or \
             damaged",
            c.line,
            c.number,
            c.len,
            c.data.len()
        ));
    }
    Ok(Raw::Data(c.who, c.data, c.at, [c.number, c.offset], c.line))
}

fn cut(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Which side each gotcpspy peer is.
struct Sides {
    server_peer: Option<String>,
}

impl Sides {
    fn side(&self, who: &Who) -> Side {
        match who {
            Who::Side(s) => *s,
            Who::Peer(p) if Some(p) == self.server_peer.as_ref() => Side::Server,
            Who::Peer(_) => Side::Client,
        }
    }
}

fn assign_sides(raws: &[Raw], file_name: Option<&str>) -> Result<Sides, String> {
    let mut peers: Vec<&str> = Vec::new();
    for r in raws {
        let who = match r {
            Raw::Data(w, ..) | Raw::End(w, ..) => w,
        };
        if let Who::Peer(p) = who
            && !peers.contains(&p.as_str())
        {
            peers.push(p);
        }
    }
    if peers.len() > 2 {
        return Err(format!(
            "the dump names {} peers ({}); a connection has two",
            peers.len(),
            peers.join(", ")
        ));
    }
    // The file name holds the upstream leg's local address: the server's chunks' "from".
    let named: Vec<&&str> = peers
        .iter()
        .filter(|p| !p.is_empty() && file_name.is_some_and(|f| f.contains(&format!("-{p}-"))))
        .collect();
    if let [one] = named.as_slice() {
        return Ok(Sides {
            server_peer: Some(one.to_string()),
        });
    }
    let ephemeral: Vec<bool> = peers.iter().map(|p| port(p) >= 32768).collect();
    if let ([a, b], [ea, eb]) = (peers.as_slice(), ephemeral.as_slice())
        && ea != eb
    {
        let server = if *ea { a } else { b };
        return Ok(Sides {
            server_peer: Some(server.to_string()),
        });
    }
    // The first to speak is the client; the other peer, if any, the server.
    Ok(Sides {
        server_peer: peers.get(1).map(|p| p.to_string()),
    })
}

/// The port at the end of a printable address (`127.0.0.1-49544`, `[--1]-8080`), or 0.
fn port(peer: &str) -> u32 {
    peer.rsplit(['-', ':'])
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

fn is_dump_line(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 10 && b[..8].iter().all(u8::is_ascii_hexdigit) && b.get(8..10) == Some(b"  ")
}

/// The column of byte `i` of a dump line (`hexdump -C`'s and Go's `hex.Dump`'s).
fn hex_col(i: usize) -> usize {
    10 + 3 * i + usize::from(i >= 8)
}

fn dump_line(line: &str, data: &mut Vec<u8>) -> Result<(), String> {
    let b = line.as_bytes();
    let offset = b
        .get(..8)
        .and_then(|o| std::str::from_utf8(o).ok())
        .and_then(|o| u64::from_str_radix(o, 16).ok())
        .ok_or("bad dump line offset")?;
    let expected = (data.len() as u64) % (1 << 32);
    if offset != expected {
        return Err(format!(
            "dump line at offset {offset:08x}, expected {expected:08x}: a line is missing or \
             out of place"
        ));
    }
    for i in 0..16 {
        let c = hex_col(i);
        match b.get(c..c + 2) {
            Some([b' ', b' ']) | None => break,
            Some(&[h, l]) => match (hex_digit(h), hex_digit(l)) {
                (Some(h), Some(l)) => data.push(h << 4 | l),
                _ => {
                    return Err(format!(
                        "bad hex {:?} in a dump line",
                        String::from_utf8_lossy(&[h, l])
                    ));
                }
            },
            Some(_) => break,
        }
    }
    Ok(())
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCPSPY: &str = "\
Connected to 127.0.0.1:18000 at 2026.11.29-12.27.54.030734 (client 127.0.0.1:41184, via 127.0.0.1:48306; connect took 0.000584s)
First byte from 127.0.0.1:41184 (client) 0.000089s after connect
Received (#0, 00000000) 5 bytes from 127.0.0.1:41184 (client) at 2026.11.29-12.27.54.030824
00000000  68 65 6c 6c 6f                                    |hello|
Received (#0, 00000000) 18 bytes from 127.0.0.1:18000 (server) at 2026.11.29-12.27.54.037446
00000000  48 54 54 50 2f 31 2e 30  20 32 30 30 20 4f 4b 0d  |HTTP/1.0 200 OK.|
00000010  0a 0a                                             |..|
Disconnected from 127.0.0.1:18000 (server): EOF at 2026.11.29-12.27.54.037863
Disconnected from 127.0.0.1:41184 (client): reset at 2026.11.29-12.27.54.039795
Finished at 2026.11.29-12.27.54.039841, duration 0.009691s, 18 bytes in, 5 bytes out
";

    #[test]
    fn reads_tcpspy_dumps_with_times_and_ends() {
        let r = read(TCPSPY, "t", None).unwrap();
        assert_eq!(r.steps.len(), 4);
        assert_eq!(r.stream(Side::Client), b"hello");
        assert_eq!(r.stream(Side::Server), b"HTTP/1.0 200 OK\r\n\n");
        assert_eq!(r.steps[0].at, Some(Duration::from_micros(90)));
        assert_eq!(r.steps[2].act, Act::Fin);
        assert_eq!(r.steps[2].side, Side::Server);
        assert_eq!(r.steps[3].act, Act::Reset);
    }

    const GOTCPSPY: &str = "\
Connected to 127.0.0.1:110 at 2012.04.20-19.55.17
Received (#0, 00000000) 6 bytes from 127.0.0.1-49544
00000000  2b 4f 4b 0d 0a 00                                 |+OK...|
Sent (#0) to [--1]-8080
Received (#0, 00000000) 11 bytes from [--1]-8080
00000000  55 53 45 52 20 74 65 73  74 0d 0a                 |USER test..|
Sent (#0) to 127.0.0.1-49544
Disconnected from 127.0.0.1-49544
Disconnected from [--1]-8080
Finished at 2012.04.20-19.55.17, duration 5.253979s
";

    #[test]
    fn reads_gotcpspy_dumps_by_file_name_and_by_port() {
        let name = "log-2012.04.20-19.55.17-0001-127.0.0.1-49544-127.0.0.1-110.log";
        for file in [Some(name), None] {
            let r = read(GOTCPSPY, "g", file).unwrap();
            assert_eq!(r.stream(Side::Server), b"+OK\r\n\0", "{file:?}");
            assert_eq!(r.stream(Side::Client), b"USER test\r\n");
            assert_eq!(r.first_side(), Some(Side::Server));
            assert_eq!(r.end_of(Side::Server), Some(&Act::Fin));
            assert!(r.steps.iter().all(|s| s.at.is_none()));
        }
    }

    #[test]
    fn a_cut_dump_names_its_line() {
        let cut = &TCPSPY[..TCPSPY.find("00000010").unwrap()];
        let e = read(cut, "t", None).unwrap_err();
        assert!(e.starts_with("line 5: chunk #0 says 18 bytes"), "{e}");
        let bad = TCPSPY.replace("48 54 54", "48 5g 54");
        let e = read(&bad, "t", None).unwrap_err();
        assert!(e.starts_with("line 6: bad hex"), "{e}");
        let bad = TCPSPY.replace("(#0, 00000000) 5 bytes", "(#0, zz) 5 bytes");
        assert_eq!(
            read(&bad, "t", None).unwrap_err(),
            "line 3: bad chunk offset \"zz\""
        );
    }

    #[test]
    fn a_missing_chunk_names_its_line() {
        let bad = TCPSPY.replace("(#0, 00000000) 18 bytes", "(#1, 00000012) 18 bytes");
        let e = read(&bad, "t", None).unwrap_err();
        assert!(
            e.starts_with("line 5: chunk #1 of the server at offset 0x12, expected #0 at 0x0"),
            "{e}"
        );
    }

    #[test]
    fn never_panics_on_prefixes() {
        for cut in 0..TCPSPY.len() {
            if TCPSPY.is_char_boundary(cut) {
                let _ = read(&TCPSPY[..cut], "t", None);
            }
        }
        let _ = read("Received (#", "t", None);
        let _ = read("00000000  zz", "t", None);
    }
}

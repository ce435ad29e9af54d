//! `--log-budget`: runs that relay ten times the budget and more keep the log directory at or
//! under it; the oldest finished connections' files go first, each removal noted in the index;
//! open connections are never cut, their chunks are left out instead and the hex dumps say
//! which, and recording resumes when room comes back. What is left is consistent: every hex
//! dump parses, its chunks and the stretches it says it left out cover each direction, the
//! binary logs hold the recorded bytes, every capture part is a whole pcapng file.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::thread;

use serde_json::Value;
use tcpspy::log::hexdump;

use crate::util::*;

const BUDGET: u64 = 1 << 20;

/// Bytes in the files of `dir`.
fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn assert_within(dir: &Path, when: &str) {
    let size = dir_size(dir);
    assert!(
        size <= BUDGET,
        "{when}: {size} bytes in the log directory, over the budget of {BUDGET}"
    );
}

/// `connections.jsonl`: the connection lines by number, and the removal notes.
fn index(dir: &Path) -> (HashMap<String, Value>, Vec<Value>) {
    let text = std::fs::read_to_string(dir.join("connections.jsonl")).unwrap();
    let mut conns = HashMap::new();
    let mut removals = Vec::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v.get("removed").is_some() {
            assert_eq!(v["reason"], "log budget", "{line}");
            removals.push(v);
        } else {
            let n = v["number"].as_str().unwrap().to_string();
            assert!(conns.insert(n, v).is_none(), "one line per connection");
        }
    }
    (conns, removals)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Checks a hex dump against the streams it recorded part of: it parses, its chunks and the
/// stretches it says it left out cover both directions whole, every chunk there holds the
/// stream's bytes at its offset. Returns, per direction, the recorded bytes in order (what the
/// binary log holds) and the bytes left out.
fn check_hex_dump(path: &Path, streams: [&[u8]; 2]) -> ([Vec<u8>; 2], [u64; 2]) {
    let text = std::fs::read_to_string(path).unwrap();
    let chunks = hexdump::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let lengths = hexdump::coverage(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        lengths,
        [streams[0].len() as u64, streams[1].len() as u64],
        "{}",
        path.display()
    );
    let mut recorded = [Vec::new(), Vec::new()];
    for c in &chunks {
        let at = c.offset as usize;
        let whole = streams[c.dir.index()];
        assert!(
            whole.get(at..at + c.len) == Some(&c.data[..]),
            "{}: chunk #{} differs from the stream",
            path.display(),
            c.number
        );
        recorded[c.dir.index()].extend_from_slice(&c.data);
    }
    let mut missing = [0u64; 2];
    for g in hexdump::gaps(&text) {
        missing[g.dir.index()] += g.len;
    }
    assert!(
        text.lines()
            .last()
            .unwrap_or("")
            .starts_with("Finished at ")
    );
    (recorded, missing)
}

/// Walks a pcapng file block by block: a section header first, every block's two lengths
/// equal and the blocks ending with the file. Returns the number of packets.
fn check_pcapng(path: &Path) -> usize {
    let b = std::fs::read(path).unwrap();
    assert_eq!(
        b.get(..4),
        Some(&[0x0a, 0x0d, 0x0d, 0x0a][..]),
        "{}",
        path.display()
    );
    let mut at = 0;
    let mut packets = 0;
    while at < b.len() {
        let word = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as usize;
        let (kind, len) = (word(at), word(at + 4));
        assert!(
            len >= 12 && len % 4 == 0 && at + len <= b.len(),
            "{}",
            path.display()
        );
        assert_eq!(word(at + len - 4), len, "{}: block at {at}", path.display());
        packets += usize::from(kind == 6);
        at += len;
    }
    packets
}

/// Over a hundred connections relay more than ten times the budget, one after another: the
/// directory stays under the budget after every connection and at the end; the oldest
/// finished connections' files and the capture's old parts are removed, each noted in the
/// index; what is left is consistent.
#[test]
fn many_connections_stay_within_the_budget() {
    let (dir, target, taddr, mut spy) =
        logging_spy(&["--log", "hex,binary,pcap", "--log-budget", "1M"]);
    let n = 100u64;
    let streams: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
        .map(|k| (data(100 + k, 60_000), data(300 + k, 50_000)))
        .collect();
    let relayed: usize = streams.iter().map(|(u, d)| u.len() + d.len()).sum();
    assert!(relayed as u64 >= 10 * BUDGET);
    for (k, (up, down)) in streams.iter().enumerate() {
        let (got_up, got_down) = both_ways(spy.addr, target.try_clone().unwrap(), up, down);
        assert!(&got_up == up && &got_down == down, "connection {k}");
        spy.wait_closed(k as u64 + 1);
        assert_within(dir.path(), &format!("after connection {}", k + 1));
    }
    assert_eq!(spy.stop(), 0, "{:#?}", spy.seen);
    assert_within(dir.path(), "at the end");

    assert!(
        spy.seen.iter().any(|l| l
            == "tcpspy: log budget 1M reached: removing the files of the oldest finished \
                connections; each removal is noted in the index (connections*.jsonl)"),
        "{:#?}",
        spy.seen
    );
    let summary = spy
        .seen
        .iter()
        .find(|l| l.starts_with("tcpspy: log budget 1M: "))
        .unwrap_or_else(|| panic!("{:#?}", spy.seen));
    let peak: u64 = summary
        .split("(at most ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(peak <= BUDGET, "{summary}");

    let (conns, removals) = index(dir.path());
    assert_eq!(conns.len(), n as usize, "every connection has its line");
    let mut removed: HashMap<String, String> = HashMap::new();
    for r in &removals {
        let what = r["removed"].as_str().unwrap().to_string();
        for f in strings(&r["files"]) {
            assert!(!dir.path().join(&f).exists(), "{f} is noted removed");
            assert!(removed.insert(f, what.clone()).is_none());
        }
    }
    assert!(
        removals.len() as u64 >= n / 2,
        "{} removals",
        removals.len()
    );
    let parts_removed = removals
        .iter()
        .filter(|r| r["removed"] == "capture")
        .count();
    assert!(parts_removed >= 1, "old capture parts are removed");

    let files = log_index(dir.path(), taddr);
    let mut kept_conns = 0;
    for (k, (up, down)) in streams.iter().enumerate() {
        let number = format!("{:04}", k + 1);
        let line = &conns[&number];
        let listed = strings(&line["files"]);
        assert_eq!(listed.len(), 3);
        let gone: HashSet<bool> = listed
            .iter()
            .map(|f| {
                let there = dir.path().join(f).exists();
                let noted = removed.get(f) == Some(&number);
                assert!(there != noted, "{f}: kept, or removed and noted");
                there
            })
            .collect();
        assert_eq!(
            gone.len(),
            1,
            "a connection's files go together: {listed:?}"
        );
        if !dir.path().join(&listed[0]).exists() {
            continue;
        }
        kept_conns += 1;
        let (hex, bup, bdown) = &files[&(k as u64 + 1)];
        let (recorded, missing) = check_hex_dump(hex, [up, down]);
        assert!(
            std::fs::read(bup).unwrap() == recorded[0],
            "{}",
            bup.display()
        );
        assert!(
            std::fs::read(bdown).unwrap() == recorded[1],
            "{}",
            bdown.display()
        );
        let not_recorded: Vec<u64> = line["not_recorded"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(not_recorded, missing, "{number}");
    }
    assert!(kept_conns >= 1, "the latest connection is kept");
    assert!(
        dir.path()
            .join(conns[&format!("{n:04}")]["files"][0].as_str().unwrap())
            .exists(),
        "nothing needed the last one's room"
    );

    let mut captures: HashSet<String> = removed
        .keys()
        .filter(|f| f.starts_with("capture-"))
        .cloned()
        .collect();
    let mut kept_parts = 0;
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with("capture-") {
            assert!(name.ends_with(".pcapng"), "{name}");
            assert!(check_pcapng(&p) > 0, "{name} holds packets");
            kept_parts += 1;
            captures.insert(name);
        }
    }
    assert!(kept_parts >= 1);
    assert!(
        captures.len() >= 2 && captures.iter().any(|n| n.ends_with("-1.pcapng")),
        "the capture went on in numbered parts: {captures:?}"
    );
}

/// One connection sends ten times the budget: it is recorded until the budget is full, then
/// its chunks are left out to the end (relaying goes on, every byte arrives), stderr says so
/// once, the hex dump names the offsets it misses and the binary log holds the recorded part.
#[test]
fn one_long_connection_is_left_out_past_the_budget() {
    let (dir, target, taddr, mut spy) = logging_spy(&["--log-budget", "1M"]);
    let up = data(51, 10 << 20);
    let server = thread::spawn(move || {
        let mut s = accept(&target);
        let got = read_to_end(&mut s).unwrap();
        s.write_all(b"done").unwrap();
        got
    });
    let mut c = connect(spy.addr);
    let writer = send_then_shutdown(c.try_clone().unwrap(), up.clone());
    let full = "tcpspy: log budget 1M full with only open connections' files left: their data \
                is not recorded until room comes back (relaying goes on; each hex dump says \
                what it misses)";
    spy.wait_line(|l| l == full);
    assert_within(dir.path(), "with the connection open");
    writer.join().unwrap().unwrap();
    assert_eq!(read_to_end(&mut c).unwrap(), b"done");
    assert!(server.join().unwrap() == up, "every byte relayed");
    spy.wait_closed(1);
    assert_within(dir.path(), "after the connection");
    assert_eq!(spy.stop(), 0, "{:#?}", spy.seen);
    assert_within(dir.path(), "at the end");
    assert_eq!(spy.seen.iter().filter(|l| *l == full).count(), 1);
    assert!(!spy.seen.iter().any(|l| l.contains("recording resumed")));

    let (hex, bup, bdown) = log_files(dir.path(), 1, taddr);
    let (recorded, missing) = check_hex_dump(&hex, [&up, b"done"]);
    let kept = recorded[0].len();
    assert!(kept > 0 && (kept as u64) < BUDGET, "{kept} bytes recorded");
    assert_eq!(missing[0], up.len() as u64 - kept as u64);
    assert!(
        recorded[0] == up[..kept],
        "the recorded part is the stream's start"
    );
    assert!(std::fs::read(bup).unwrap() == up[..kept]);
    // The reply is tiny: recorded unless the budget is full to its last few hundred bytes.
    assert!(std::fs::read(bdown).unwrap() == recorded[1]);
    assert_eq!(recorded[1].len() as u64 + missing[1], 4);
    let text = std::fs::read_to_string(&hex).unwrap();
    let gaps: Vec<hexdump::Missing> = hexdump::gaps(&text)
        .into_iter()
        .filter(|g| g.dir == tcpspy::types::Dir::ClientToServer)
        .collect();
    assert_eq!(gaps.len(), 1, "one stretch, to the end");
    assert_eq!(gaps[0].offset, kept as u64);
    let paused = format!(
        "Not recording {} (client) from chunk #{} ({:08X}) on: the log budget is full; \
         relaying goes on",
        c.local_addr().unwrap(),
        gaps[0].first,
        kept
    );
    assert!(text.lines().any(|l| l == paused), "{paused}");
    let to_end = text
        .lines()
        .find(|l| l.starts_with(hexdump::NOT_RECORDED) && l.contains(" (client), "))
        .unwrap();
    assert!(to_end.ends_with("; not recorded to the end"), "{to_end}");
    let (conns, removals) = index(dir.path());
    assert!(removals.is_empty());
    assert_eq!(
        conns["0001"]["not_recorded"],
        serde_json::json!([up.len() as u64 - kept as u64, missing[1]])
    );
}

/// Two connections fill the budget while both are open, so the second one's chunks are left
/// out; when the first finishes, its files make room, the second records again, and stderr
/// and the hex dump say so.
#[test]
fn recording_resumes_when_room_comes_back() {
    let (dir, target, taddr, mut spy) = logging_spy(&["--log-budget", "1M", "--buffer-size", "4K"]);
    // #0001 stays open throughout; #0002 records first, then finishes.
    let mut b = connect(spy.addr);
    let mut bs = accept(&target);
    let mut c = connect(spy.addr);
    let mut cs = accept(&target);
    let c_up = data(61, 80_000);
    let b_up = data(62, 340_000);
    c.write_all(&c_up).unwrap();
    let mut got = vec![0u8; c_up.len()];
    cs.read_exact(&mut got).unwrap();
    let writer = {
        let mut b = b.try_clone().unwrap();
        let first = b_up[..300_000].to_vec();
        thread::spawn(move || b.write_all(&first))
    };
    let mut got = vec![0u8; 300_000];
    bs.read_exact(&mut got).unwrap();
    writer.join().unwrap().unwrap();
    // Closing #0002 goes through the logger behind #0001's chunks: once its closed line is
    // out, #0001 has been left out.
    c.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut cs).unwrap().is_empty());
    drop(cs);
    assert!(read_to_end(&mut c).unwrap().is_empty());
    spy.wait_closed(2);
    assert!(
        spy.seen
            .iter()
            .any(|l| l.starts_with("tcpspy: log budget 1M full with only open connections")),
        "{:#?}",
        spy.seen
    );
    assert_within(dir.path(), "with #0002 finished");
    let c_files = log_files(dir.path(), 2, taddr);
    b.write_all(&b_up[300_000..]).unwrap();
    b.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut bs).unwrap() == b_up[300_000..]);
    drop(bs);
    assert!(read_to_end(&mut b).unwrap().is_empty());
    spy.wait_closed(1);
    assert_within(dir.path(), "with #0001 finished");
    assert_eq!(spy.stop(), 0, "{:#?}", spy.seen);
    assert!(
        spy.seen.iter().any(|l| l
            == "tcpspy: log budget: room again, recording resumed (later pauses are told in the \
                hex dumps and the summary)"),
        "{:#?}",
        spy.seen
    );

    let (conns, removals) = index(dir.path());
    assert_eq!(removals.len(), 1, "{removals:?}");
    assert_eq!(removals[0]["removed"], "0002");
    for f in [&c_files.0, &c_files.1, &c_files.2] {
        assert!(!f.exists(), "{} was removed", f.display());
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(strings(&removals[0]["files"]).iter().any(|n| n == name));
    }
    let (hex, bup, _) = log_files(dir.path(), 1, taddr);
    let (recorded, missing) = check_hex_dump(&hex, [&b_up, b""]);
    assert!(std::fs::read(bup).unwrap() == recorded[0]);
    let text = std::fs::read_to_string(&hex).unwrap();
    let gaps = hexdump::gaps(&text);
    assert_eq!(gaps.len(), 1, "one stretch left out, then recording again");
    let end = gaps[0].offset + gaps[0].len;
    assert!(
        gaps[0].offset > 0 && end < b_up.len() as u64,
        "{:?}",
        gaps[0]
    );
    assert_eq!(missing[0], gaps[0].len);
    assert!(
        text.lines().any(|l| l.starts_with(hexdump::NOT_RECORDED)
            && l.ends_with(&format!(
                "; recording again from #{}",
                gaps[0].first + gaps[0].chunks
            ))),
        "{text}"
    );
    assert_eq!(
        conns["0001"]["not_recorded"],
        serde_json::json!([gaps[0].len, 0])
    );
}

/// `0001-0038,0040` as the set of numbers it names.
fn parse_ranges(s: &str) -> HashSet<u64> {
    let mut set = HashSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
        set.extend(a..=b);
    }
    set
}

/// Hundreds of small connections, whose index lines and removal notes alone are several times
/// a small budget: the index counts, goes on in numbered parts, the oldest are removed too,
/// and the latest index note with the lines still there accounts for every connection: its
/// line is there or noted removed, its files are there or noted removed.
#[test]
fn the_index_counts_and_goes_on_in_parts() {
    const SMALL: u64 = 64 << 10;
    let (dir, target, _taddr, mut spy) = logging_spy(&["--log-budget", "64K"]);
    let n = 400u64;
    for k in 1..=n {
        let (up, down) = both_ways(spy.addr, target.try_clone().unwrap(), b"ping\n", b"pong\n");
        assert_eq!(
            (up.as_slice(), down.as_slice()),
            (&b"ping\n"[..], &b"pong\n"[..])
        );
        spy.wait_closed(k);
        let size = dir_size(dir.path());
        assert!(size <= SMALL, "after connection {k}: {size} bytes");
    }
    assert_eq!(spy.stop(), 0, "{:#?}", spy.seen);
    assert!(dir_size(dir.path()) <= SMALL);
    assert!(
        spy.seen.iter().any(|l| l
            .starts_with("tcpspy: log budget: the index goes on in parts of 16K: connections-")
            && l.ends_with("-1.jsonl, ...")),
        "{:#?}",
        spy.seen
    );

    // The index files kept, oldest first: connections.jsonl, then the parts by number.
    let mut parts: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name()?.to_str()?.to_string();
            if name == "connections.jsonl" {
                return Some((0, p));
            }
            let n = name.strip_prefix("connections-")?.strip_suffix(".jsonl")?;
            Some((n.rsplit('-').next()?.parse().ok()?, p))
        })
        .collect();
    parts.sort();
    assert!(parts.len() >= 2 && parts[0].0 == 0, "{parts:?}");
    assert!(
        parts.last().unwrap().0 >= 3,
        "several parts were written: {parts:?}"
    );
    let mut lines: HashMap<u64, Value> = HashMap::new();
    let mut noted: HashSet<String> = HashSet::new();
    let mut latest: Option<Value> = None;
    for (_, p) in &parts {
        for line in std::fs::read_to_string(p).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            match v.get("removed").and_then(Value::as_str) {
                None => {
                    lines.insert(v["id"].as_u64().unwrap(), v);
                }
                Some(what) => {
                    for f in strings(&v["files"]) {
                        assert!(!dir.path().join(&f).exists(), "{f} noted removed");
                        noted.insert(f);
                    }
                    if what == "index" {
                        latest = Some(v);
                    }
                }
            }
        }
    }
    let latest = latest.expect("index parts were removed, and noted");
    let lines_removed = parse_ranges(latest["lines_removed"].as_str().unwrap());
    let files_removed = parse_ranges(latest["files_removed"].as_str().unwrap());
    assert!(!lines_removed.is_empty());
    for id in 1..=n {
        let kept = lines.get(&id);
        assert!(
            kept.is_some() != lines_removed.contains(&id),
            "connection {id}: its line is there, or noted removed"
        );
        let Some(line) = kept else { continue };
        for f in strings(&line["files"]) {
            assert!(
                dir.path().join(&f).exists() || noted.contains(&f) || files_removed.contains(&id),
                "connection {id}: {f} is there, or noted removed"
            );
        }
    }
    let last = &lines[&n];
    for f in strings(&last["files"]) {
        assert!(
            dir.path().join(&f).exists(),
            "the latest connection's {f} is kept"
        );
    }
}

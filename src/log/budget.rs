//! `--log-budget`: a cap on the bytes this run keeps in its log files (hex dumps, binary logs,
//! `connections.jsonl`, the capture), and what gives way when it is reached.
//!
//! The count is [`Files::used`]: every byte written to a file this run opened, less what was
//! cut or removed. Earlier runs' files are neither counted nor touched.
//!
//! - **A chunk is recorded whole or not at all.** Before a chunk reaches the outputs, the
//!   logging thread asks each for an upper bound of what the chunk will add to its files
//!   ([`super::Output::data_cost`]) and admits the chunk only if all of it fits under the
//!   budget less a [reserve](Budget::reserve), so the files never pass the budget because of
//!   data.
//! - **Oldest finished first.** To make room, the files of the oldest finished connections are
//!   removed, and the closed parts of the capture and of the index (both go on in parts of an
//!   eighth of the budget), in the order they were finished. Each removal is noted: a line in
//!   the index (`{"removed":"0001","files":[...],"bytes":N,"reason":"log budget"}`; see
//!   [`super::index`] for an index part's), or on stderr when there is no index; the first is
//!   also told on stderr. An index part goes only after the files of every connection it
//!   lists, and `connections.jsonl` itself (which earlier runs share) stays: it holds this
//!   run's first part.
//! - **Open connections are never cut.** When only open connections' files are left, their
//!   chunks are not recorded (relaying goes on); each hex dump says which chunks and offsets
//!   it misses, the capture leaves a sequence gap with a comment, the index line counts the
//!   bytes, and stderr says so once. Recording resumes when room comes back (a finished
//!   connection can be removed): once there is room for a whole chunk's records and an eighth
//!   of the budget beyond, so that a connection does not flap between recorded and not, small
//!   chunks slipping in between the big ones refused.
//! - **Lines that must not be lost** (a connection's ends, its index line, the removal notes,
//!   the capture's headers and handshakes) are always written. The reserve, one chunk's worth
//!   (`--buffer-size`, at least 16K, at most a quarter of the budget), keeps room for them;
//!   only when more connections end at once than it holds do they take the files past the
//!   budget, which stderr and the summary then say.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;

use super::eprint_line;
use super::event::ConnId;
use super::files::Files;
use crate::config::parse::Size;

/// Room kept free under the budget before each event other than a chunk: more than the lines
/// a connection's end writes (its hex dump's last lines, its index line, its last packets).
pub const EVENT_ROOM: u64 = 4096;

/// The smallest reserve for lines that must not be lost.
pub const MIN_RESERVE: u64 = 16 << 10;

/// A stretch of a direction not recorded: from chunk `first` at `offset`, `chunks` chunks and
/// `bytes` bytes so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gap {
    pub first: u64,
    pub offset: u64,
    pub chunks: u64,
    pub bytes: u64,
}

/// Files removed together: a connection's (by its number), a capture part or an index part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    /// The connection's number (`0001`), [`CAPTURE`] or [`INDEX`].
    pub what: String,
    /// The files' names within their directory.
    pub files: Vec<String>,
    pub bytes: u64,
    /// The connection whose files these were, or, for an index part, the connections whose
    /// lines it held.
    pub ids: Vec<ConnId>,
}

/// What the budget did over the run, for the exit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub limit: u64,
    /// Bytes kept at the end.
    pub kept: u64,
    /// The most kept at any time.
    pub peak: u64,
    pub removed_connections: u64,
    /// Capture parts removed.
    pub removed_parts: u64,
    pub removed_index_parts: u64,
    pub removed_bytes: u64,
    pub not_recorded_bytes: u64,
    pub not_recorded_chunks: u64,
    /// Connections with at least one chunk not recorded.
    pub connections_not_recorded: u64,
}

impl Stats {
    /// The exit's line about the budget.
    pub fn line(&self) -> String {
        let mut s = format!(
            "tcpspy: log budget {}: {} bytes kept (at most {} at any time)",
            Size(self.limit),
            self.kept,
            self.peak
        );
        if self.removed_connections + self.removed_parts + self.removed_index_parts > 0 {
            s.push_str(&format!(
                "; removed the files of {} finished connections, {} capture parts and {} index \
                 parts ({} bytes)",
                self.removed_connections,
                self.removed_parts,
                self.removed_index_parts,
                self.removed_bytes
            ));
        }
        if self.not_recorded_chunks > 0 {
            s.push_str(&format!(
                "; not recorded: {} bytes in {} chunks of {} connections",
                self.not_recorded_bytes, self.not_recorded_chunks, self.connections_not_recorded
            ));
        }
        s
    }
}

struct Removable {
    what: String,
    files: Vec<(PathBuf, u64)>,
    ids: Vec<ConnId>,
}

/// The budget's state on the logging thread.
pub struct Budget {
    limit: u64,
    reserve: u64,
    hysteresis: u64,
    /// What can be removed, oldest first.
    removable: VecDeque<Removable>,
    /// Files of connections not finished yet, gathered as their outputs close them.
    closing: HashMap<ConnId, Vec<(PathBuf, u64)>>,
    /// Removals to be noted in the index.
    notes: Vec<Removal>,
    notes_to_stderr: bool,
    said_removing: bool,
    said_refusing: bool,
    said_resumed: bool,
    said_over: bool,
    stats: Stats,
}

impl Budget {
    /// A budget of `limit` bytes for a run reading chunks of up to `chunk` bytes. Removals are
    /// noted on stderr when there is no index to note them in.
    pub fn new(limit: u64, chunk: usize, notes_to_stderr: bool) -> Budget {
        let reserve = (chunk as u64).clamp(MIN_RESERVE, (limit / 4).max(MIN_RESERVE));
        Budget {
            limit,
            reserve,
            hysteresis: limit / 8,
            removable: VecDeque::new(),
            closing: HashMap::new(),
            notes: Vec::new(),
            notes_to_stderr,
            said_removing: false,
            said_refusing: false,
            said_resumed: false,
            said_over: false,
            stats: Stats {
                limit,
                ..Stats::default()
            },
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The room under the budget that chunks may not take, kept for the lines that must not
    /// be lost.
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// The size of a capture part: an eighth of the budget, so that closed parts can be
    /// removed while the current one grows.
    pub fn part_size(&self) -> u64 {
        (self.limit / 8).max(MIN_RESERVE)
    }

    /// Whether a chunk whose records take at most `cost` bytes may be recorded; makes room
    /// for it first if it can. `resuming`: its direction is not being recorded now; it then
    /// needs room for a whole chunk's records (`whole`, at most) and the hysteresis beyond, so
    /// that small chunks do not slip in between the big ones refused (see the module doc).
    pub fn admit(&mut self, files: &mut Files, cost: u64, whole: u64, resuming: bool) -> bool {
        let need = match resuming {
            true => cost.max(whole).saturating_add(self.hysteresis),
            false => cost,
        };
        let ceiling = self.limit.saturating_sub(self.reserve);
        self.make_room(files, ceiling, need);
        let fits = files.used().saturating_add(need) <= ceiling;
        if !fits && !self.said_refusing {
            self.said_refusing = true;
            eprint_line(&format!(
                "tcpspy: log budget {} full with only open connections' files left: their \
                 data is not recorded until room comes back (relaying goes on; each hex \
                 dump says what it misses)",
                Size(self.limit)
            ));
        } else if fits && resuming && !self.said_resumed {
            self.said_resumed = true;
            eprint_line(
                "tcpspy: log budget: room again, recording resumed (later pauses are told \
                 in the hex dumps and the summary)",
            );
        }
        fits
    }

    /// Before an event other than a chunk: keeps [`EVENT_ROOM`] free under the budget if
    /// removing finished files can.
    pub fn before_event(&mut self, files: &mut Files) {
        self.make_room(files, self.limit, EVENT_ROOM);
    }

    /// After a batch: notes the peak, and says once if the files went past the budget.
    pub fn after_batch(&mut self, files: &Files) {
        let used = files.used();
        self.stats.peak = self.stats.peak.max(used);
        if used > self.limit && !self.said_over {
            self.said_over = true;
            eprint_line(&format!(
                "tcpspy: log budget {}: the files are {} bytes past it: the ends of more open \
                 connections than its reserve ({} bytes) holds; those lines are never dropped \
                 (a larger --log-budget avoids this)",
                Size(self.limit),
                used - self.limit,
                self.reserve
            ));
        }
    }

    /// Removes the oldest removable files until `need` more bytes fit under `ceiling`, or
    /// nothing is left to remove.
    fn make_room(&mut self, files: &mut Files, ceiling: u64, need: u64) {
        while files.used().saturating_add(need) > ceiling {
            let Some(item) = self.removable.pop_front() else {
                return;
            };
            let mut removal = Removal {
                what: item.what,
                files: Vec::with_capacity(item.files.len()),
                bytes: 0,
                ids: item.ids,
            };
            for (path, size) in item.files {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    // Removed by someone else: the bytes are gone all the same.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        eprint_line(&format!(
                            "tcpspy: log budget: cannot remove {}: {e}; it stays, and counts",
                            path.display()
                        ));
                        continue;
                    }
                }
                files.forget(size);
                removal.bytes = removal.bytes.saturating_add(size);
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                removal.files.extend(name);
            }
            match removal.what.as_str() {
                CAPTURE => self.stats.removed_parts += 1,
                INDEX => self.stats.removed_index_parts += 1,
                _ => self.stats.removed_connections += 1,
            }
            self.stats.removed_bytes = self.stats.removed_bytes.saturating_add(removal.bytes);
            if !self.said_removing {
                self.said_removing = true;
                let noted = if self.notes_to_stderr {
                    "each removal is told here"
                } else {
                    "each removal is noted in the index (connections*.jsonl)"
                };
                eprint_line(&format!(
                    "tcpspy: log budget {} reached: removing the files of the oldest finished \
                     connections; {noted}",
                    Size(self.limit)
                ));
            }
            if self.notes_to_stderr {
                eprint_line(&format!(
                    "tcpspy: log budget: removed {} ({}, {} bytes)",
                    removal.what,
                    removal.files.join(", "),
                    removal.bytes
                ));
            } else {
                self.notes.push(removal);
            }
        }
    }

    /// A connection's output closed one of its files: removable once the connection is
    /// finished.
    pub fn retire(&mut self, conn: ConnId, path: PathBuf, size: u64) {
        self.closing.entry(conn).or_default().push((path, size));
    }

    /// The connection is finished: its files join the removable ones, behind the older.
    pub fn finished(&mut self, conn: ConnId, label: &str, not_recorded: [u64; 2]) {
        if not_recorded.iter().any(|&n| n > 0) {
            self.stats.connections_not_recorded += 1;
        }
        if let Some(files) = self.closing.remove(&conn) {
            self.removable.push_back(Removable {
                what: label.to_string(),
                files,
                ids: vec![conn],
            });
        }
    }

    /// A capture part is closed: removable at once.
    pub fn retire_part(&mut self, path: PathBuf, size: u64) {
        self.removable.push_back(Removable {
            what: CAPTURE.to_string(),
            files: vec![(path, size)],
            ids: Vec::new(),
        });
    }

    /// An index part is closed, with the lines of connections `ids`: removable once
    /// everything finished before it is.
    pub fn retire_index_part(&mut self, path: PathBuf, size: u64, ids: Vec<ConnId>) {
        self.removable.push_back(Removable {
            what: INDEX.to_string(),
            files: vec![(path, size)],
            ids,
        });
    }

    /// A chunk was not recorded.
    pub fn not_recorded(&mut self, bytes: u64) {
        self.stats.not_recorded_chunks += 1;
        self.stats.not_recorded_bytes = self.stats.not_recorded_bytes.saturating_add(bytes);
    }

    /// The removals not noted yet.
    pub fn take_notes(&mut self) -> Vec<Removal> {
        std::mem::take(&mut self.notes)
    }

    /// The run's figures, as they stand.
    pub fn stats(&self, files: &Files) -> Stats {
        Stats {
            kept: files.used(),
            peak: self.stats.peak.max(files.used()),
            ..self.stats.clone()
        }
    }
}

/// What a removed capture part is called in the notes.
pub const CAPTURE: &str = "capture";
/// What a removed index part is called in the notes.
pub const INDEX: &str = "index";

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `n` bytes to a new file of connection `conn` and closes it.
    fn file(files: &mut Files, dir: &std::path::Path, name: &str, n: usize) -> (PathBuf, u64) {
        let (id, err) = files.create(dir.join(name));
        assert!(err.is_none());
        files.write(id, &vec![b'x'; n]).unwrap();
        files.close(id).expect("created by this run")
    }

    fn on_disk(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    }

    #[test]
    fn files_count_what_this_run_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared.jsonl");
        std::fs::write(&shared, vec![b'o'; 500]).unwrap();
        let mut files = Files::new(2);
        let (idx, _) = files.open_append(shared);
        files.write(idx, b"0123456789").unwrap();
        let (a, _) = files.create(dir.path().join("a"));
        files.write(a, &[1; 100]).unwrap();
        files.truncate(a, 60).unwrap();
        assert_eq!(
            files.used(),
            70,
            "appended bytes and the cut file, not the old ones"
        );
        let (b, _) = files.create(dir.path().join("b"));
        let (c, _) = files.create(dir.path().join("c"));
        // Evicted and reopened: still counted once.
        files.write(b, &[2; 5]).unwrap();
        files.write(c, &[3; 5]).unwrap();
        files.write(a, &[4; 5]).unwrap();
        assert_eq!(files.used(), 85);
        assert_eq!(files.close(a), Some((dir.path().join("a"), 65)));
        assert_eq!(files.used(), 85, "closing keeps the bytes counted");
        assert_eq!(
            files.close(idx),
            None,
            "the shared file is not this run's to remove"
        );
        files.forget(65);
        assert_eq!(files.used(), 20);
    }

    #[test]
    fn removes_oldest_finished_first_and_notes_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Files::new(8);
        let mut b = Budget::new(100_000, 16 << 10, false);
        assert_eq!(b.reserve(), 16 << 10);
        for (n, label) in [(1u64, "0001"), (2, "0002"), (3, "0003")] {
            let (p, s) = file(&mut files, dir.path(), &format!("{label}-hex"), 20_000);
            b.retire(n, p, s);
            let (p, s) = file(&mut files, dir.path(), &format!("{label}-bin"), 5_000);
            b.retire(n, p, s);
        }
        b.finished(2, "0002", [0, 0]);
        b.finished(1, "0001", [0, 0]);
        assert_eq!(files.used(), 75_000);
        // The ceiling for chunks is 100000 - 16384: a chunk of 20000 needs one removal.
        assert!(b.admit(&mut files, 20_000, 0, false));
        assert_eq!(
            b.take_notes(),
            [Removal {
                what: "0002".into(),
                files: vec!["0002-hex".into(), "0002-bin".into()],
                bytes: 25_000,
                ids: vec![2],
            }],
            "the first finished goes first, whatever its number"
        );
        assert_eq!(files.used(), 50_000);
        assert_eq!(on_disk(dir.path()), 50_000);
        // Connection 3 is open: only 0001 can go, and then nothing.
        assert!(!b.admit(&mut files, 60_000, 0, false));
        assert_eq!(b.take_notes().len(), 1);
        assert_eq!(files.used(), 25_000, "0003's files stay");
        assert!(!b.admit(&mut files, 60_000, 0, false));
        assert!(b.take_notes().is_empty());
        // Resuming takes room for a whole chunk and an eighth of the budget beyond.
        let ceiling = 100_000 - b.reserve();
        let room = ceiling - files.used();
        assert!(!b.admit(&mut files, room - 1000, 0, true));
        assert!(
            !b.admit(&mut files, 100, room - 12_000, true),
            "a small one waits"
        );
        assert!(b.admit(&mut files, 100, room - 12_500, true));
        b.not_recorded(60_000);
        b.finished(3, "0003", [60_000, 0]);
        let s = b.stats(&files);
        assert_eq!(
            (s.removed_connections, s.removed_bytes, s.kept),
            (2, 50_000, 25_000)
        );
        assert_eq!(s.connections_not_recorded, 1);
        let line = s.line();
        assert!(
            line.contains("removed the files of 2 finished connections, 0 capture parts and 0")
                && line.contains("not recorded: 60000 bytes in 1 chunks of 1 connections"),
            "{line}"
        );
    }

    #[test]
    fn closed_parts_are_removed_in_turn() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Files::new(8);
        let mut b = Budget::new(1 << 20, 64 << 10, false);
        assert_eq!(b.part_size(), 128 << 10);
        let (p, s) = file(&mut files, dir.path(), "capture-1.pcapng", 300_000);
        b.retire_part(p, s);
        let (p, s) = file(&mut files, dir.path(), "0001", 300_000);
        b.retire(1, p, s);
        b.finished(1, "0001", [0, 0]);
        let (p, s) = file(&mut files, dir.path(), "capture-2.pcapng", 300_000);
        b.retire_part(p, s);
        let (p, s) = file(&mut files, dir.path(), "connections-1.jsonl", 100_000);
        b.retire_index_part(p, s, vec![1]);
        b.before_event(&mut files);
        assert!(b.take_notes().is_empty(), "room enough for an event");
        assert!(b.admit(&mut files, 500_000, 0, false));
        let notes = b.take_notes();
        let what: Vec<&str> = notes.iter().map(|n| n.what.as_str()).collect();
        assert_eq!(what, [CAPTURE, "0001"]);
        assert_eq!(files.used(), 400_000);
        assert!(b.admit(&mut files, 900_000, 0, false));
        let notes = b.take_notes();
        assert_eq!(notes.len(), 2);
        assert_eq!(
            (notes[1].what.as_str(), notes[1].ids.clone()),
            (INDEX, vec![1])
        );
        let s = b.stats(&files);
        assert_eq!(
            (
                s.removed_parts,
                s.removed_connections,
                s.removed_index_parts
            ),
            (2, 1, 1)
        );
    }
}

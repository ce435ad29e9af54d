//! The log files: created with mode 0600 (they hold passwords), only ever appended to, and at
//! most `max_open` of them open at once. Two sockets per connection already use most of the
//! descriptors a process gets, so the least recently written file is closed when another must
//! open, and reopened in append mode when its connection next has data; the bytes on disk are
//! the same as if it had stayed open.
//!
//! A file that fails (cannot be created, disk full, size limit, directory gone) returns its
//! error once; after that it is left as it is, valid up to where writing stopped, and further
//! writes to it are skipped.
//!
//! The set also counts the bytes this run has put on disk ([`Files::used`]): every write and
//! cut of every file it opened, still open or closed, until [`Files::forget`] says a closed
//! one was removed. The log budget ([`super::budget`]) decides on that count.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use std::time::Duration;

use slab::Slab;

/// How long opening a log file waits for a free descriptor before the file fails.
pub const DESCRIPTOR_WAIT: Duration = Duration::from_secs(10);

/// A file in the set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId(usize);

/// A file's first failure: where and what.
#[derive(Debug)]
pub struct FileError {
    pub path: PathBuf,
    pub error: io::Error,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "log file {}: {}", self.path.display(), self.error)
    }
}

struct Entry {
    /// Boxed to its length: thousands of idle connections keep three each.
    path: Box<Path>,
    file: Option<File>,
    used: u64,
    failed: bool,
    /// Bytes this run put in the file (appended to it, for a shared file such as the index).
    size: u64,
    /// This run created the file (so it may remove it); false for a shared file, or a name
    /// that could not be created and may be someone else's.
    created: bool,
}

/// The open-file set of the logging thread.
pub struct Files {
    entries: Slab<Entry>,
    /// Open files by last use, oldest first.
    lru: BTreeMap<u64, usize>,
    tick: u64,
    max_open: usize,
    /// Bytes this run has on disk in the files it opened (see the module doc).
    used: u64,
}

impl Files {
    pub fn new(max_open: usize) -> Files {
        Files {
            entries: Slab::new(),
            lru: BTreeMap::new(),
            tick: 0,
            max_open: max_open.max(1),
            used: 0,
        }
    }

    /// Bytes this run has written to its files, less what was cut or removed since.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Takes `bytes` off [`Files::used`]: a closed file of that size was removed.
    pub fn forget(&mut self, bytes: u64) {
        self.used = self.used.saturating_sub(bytes);
    }

    /// Creates a new file at `path`, or at `path.1`, `path.2`, ... if that name is taken: a log
    /// is never overwritten or appended to by another connection.
    pub fn create(&mut self, path: PathBuf) -> (FileId, Option<FileError>) {
        self.add(path, true, create_unique)
    }

    /// Opens `path` for appending, creating it (mode 0600) if missing: for files that many
    /// runs share, such as the connection index.
    pub fn open_append(&mut self, path: PathBuf) -> (FileId, Option<FileError>) {
        self.add(path, false, |p| reopen(p).map(|f| (f, p.to_path_buf())))
    }

    /// Opens a file with `open` (which may pick another name) and adds it to the set; a file
    /// that cannot be opened is kept as failed, its error returned once.
    fn add(
        &mut self,
        path: PathBuf,
        own: bool,
        open: impl Fn(&Path) -> io::Result<(File, PathBuf)>,
    ) -> (FileId, Option<FileError>) {
        let (entry, err) = match self.open_with_room(|| open(&path)) {
            Ok((file, path)) => (
                Entry {
                    path: path.into_boxed_path(),
                    file: Some(file),
                    used: 0,
                    failed: false,
                    size: 0,
                    created: own,
                },
                None,
            ),
            Err(error) => {
                let err = FileError {
                    path: path.clone(),
                    error,
                };
                (
                    Entry {
                        path: path.into_boxed_path(),
                        file: None,
                        used: 0,
                        failed: true,
                        size: 0,
                        created: false,
                    },
                    Some(err),
                )
            }
        };
        let key = self.entries.insert(entry);
        if self.entries[key].file.is_some() {
            self.touch(key);
        }
        (FileId(key), err)
    }

    /// Appends `bytes`; the error comes back only the first time the file fails.
    pub fn write(&mut self, id: FileId, bytes: &[u8]) -> Result<(), FileError> {
        let Some(entry) = self.entries.get(id.0) else {
            return Ok(());
        };
        if entry.failed || bytes.is_empty() {
            return Ok(());
        }
        if entry.file.is_none() {
            let path = entry.path.clone();
            match self.open_with_room(|| reopen(&path)) {
                Ok(f) => self.entries[id.0].file = Some(f),
                Err(e) => return Err(self.fail(id.0, e)),
            }
        }
        self.touch(id.0);
        let entry = &mut self.entries[id.0];
        let result = match &mut entry.file {
            Some(f) => f.write_all(bytes),
            None => Ok(()),
        };
        // Counted even when the write failed part way: what reached the disk is not known,
        // and the budget must not count less than is there.
        let n = bytes.len() as u64;
        entry.size = entry.size.saturating_add(n);
        self.used = self.used.saturating_add(n);
        result.map_err(|e| self.fail(id.0, e))
    }

    /// Cuts the file to `len` bytes.
    pub fn truncate(&mut self, id: FileId, len: u64) -> Result<(), FileError> {
        let Some(entry) = self.entries.get(id.0) else {
            return Ok(());
        };
        if entry.failed {
            return Ok(());
        }
        let result = match &entry.file {
            Some(f) => f.set_len(len),
            None => OpenOptions::new()
                .write(true)
                .open(&entry.path)
                .and_then(|f| f.set_len(len)),
        };
        if result.is_ok() && len < entry.size {
            let cut = entry.size - len;
            self.used = self.used.saturating_sub(cut);
            self.entries[id.0].size = len;
        }
        result.map_err(|e| self.fail(id.0, e))
    }

    /// Closes and forgets a file. Returns its path and the bytes this run put in it if this run
    /// created it (those bytes stay counted in [`Files::used`] until [`Files::forget`]).
    pub fn close(&mut self, id: FileId) -> Option<(PathBuf, u64)> {
        let e = self.entries.try_remove(id.0)?;
        if e.file.is_some() {
            self.lru.remove(&e.used);
        }
        e.created.then_some((e.path.into_path_buf(), e.size))
    }

    /// The bytes this run put in a file so far.
    pub fn size(&self, id: FileId) -> u64 {
        self.entries.get(id.0).map_or(0, |e| e.size)
    }

    /// The file's name within its directory.
    pub fn file_name(&self, id: FileId) -> Option<String> {
        let name = self.path(id)?.file_name()?;
        Some(name.to_string_lossy().into_owned())
    }

    pub fn path(&self, id: FileId) -> Option<&Path> {
        self.entries.get(id.0).map(|e| &*e.path)
    }

    /// Files open right now.
    pub fn open_count(&self) -> usize {
        self.lru.len()
    }

    fn fail(&mut self, key: usize, error: io::Error) -> FileError {
        let e = &mut self.entries[key];
        e.failed = true;
        if e.file.take().is_some() {
            self.lru.remove(&e.used);
        }
        FileError {
            path: e.path.to_path_buf(),
            error,
        }
    }

    fn touch(&mut self, key: usize) {
        let e = &mut self.entries[key];
        if e.used == self.tick && self.lru.get(&e.used) == Some(&key) {
            return;
        }
        self.lru.remove(&e.used);
        self.tick += 1;
        e.used = self.tick;
        self.lru.insert(self.tick, key);
    }

    /// Opens a file once there is room under `max_open`, closing the least recently used
    /// ones. Out of descriptors with none of ours left to close, it waits for some to free up
    /// (up to [`DESCRIPTOR_WAIT`]): the log queue fills meanwhile and holds the relay back, so
    /// nothing is lost; only after that does the file fail.
    fn open_with_room<T>(&mut self, mut open: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        while self.lru.len() >= self.max_open {
            self.evict_oldest();
        }
        let mut pause = Duration::from_millis(1);
        let mut waited = Duration::ZERO;
        loop {
            match open() {
                Err(e) if is_out_of_descriptors(&e) && !self.lru.is_empty() => self.evict_oldest(),
                Err(e) if is_out_of_descriptors(&e) && waited < DESCRIPTOR_WAIT => {
                    std::thread::sleep(pause);
                    waited += pause;
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((_, key)) = self.lru.pop_first() {
            self.entries[key].file = None;
        }
    }
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

fn create_unique(path: &Path) -> io::Result<(File, PathBuf)> {
    let mut candidate = path.to_path_buf();
    for n in 1..=100 {
        match OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(&candidate)
        {
            Ok(f) => return Ok((f, candidate)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let mut name = path.as_os_str().to_os_string();
                name.push(format!(".{n}"));
                candidate = PathBuf::from(name);
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "100 files of this name exist",
    ))
}

fn reopen(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn bounded_open_set_keeps_content() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Files::new(2);
        let ids: Vec<FileId> = (0..5)
            .map(|i| {
                let (id, err) = files.create(dir.path().join(format!("f{i}")));
                assert!(err.is_none());
                id
            })
            .collect();
        assert!(files.open_count() <= 2);
        for round in 0..3u8 {
            for (i, id) in ids.iter().enumerate() {
                files.write(*id, &[b'a' + i as u8, b'0' + round]).unwrap();
                assert!(files.open_count() <= 2);
            }
        }
        for (i, id) in ids.iter().enumerate() {
            let p = files.path(*id).unwrap().to_path_buf();
            files.close(*id);
            let c = (b'a' + i as u8) as char;
            assert_eq!(
                std::fs::read_to_string(&p).unwrap(),
                format!("{c}0{c}1{c}2")
            );
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(files.open_count(), 0);
    }

    #[test]
    fn never_overwrites_and_reports_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        std::fs::write(&p, "old").unwrap();
        let mut files = Files::new(8);
        let (id, err) = files.create(p.clone());
        assert!(err.is_none());
        assert_eq!(files.path(id).unwrap(), dir.path().join("x.log.1"));
        files.write(id, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");

        let (bad, err) = files.create(dir.path().join("missing/dir/y.log"));
        let err = err.expect("creating in a missing directory fails");
        assert!(err.to_string().contains("missing/dir/y.log"), "{err}");
        assert!(
            files.write(bad, b"z").is_ok(),
            "reported once, then skipped"
        );
    }
}

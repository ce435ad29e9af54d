//! The binary logs: per connection, one file per direction holding exactly the bytes that
//! direction delivered, nothing added. Each chunk is an owned copy made by the reactor when it
//! was read (gotcpspy handed its logger a slice of the read buffer that the next read
//! overwrote), written with one `write` per chunk. Bytes logged but never delivered (the
//! destination broke first) are cut off when the connection closes. Under `--log-budget`,
//! chunks not recorded are missing from the file (the hex dump says which); the cut at the
//! close accounts for them.

use std::collections::HashMap;
use std::time::SystemTime;

use super::event::ConnId;
use super::files::FileId;
use super::{Closed, ConnInfo, Io, Output, naming, stamp};
use crate::types::Dir;

/// The binary-log output: two files per connection, indexed by [`Dir`].
#[derive(Default)]
pub struct BinaryLog {
    conns: HashMap<ConnId, Files2>,
}

/// Stretches of a stream as (offset, length).
type Stretches = Vec<(u64, u64)>;

struct Files2 {
    files: [FileId; 2],
    /// The stretches not recorded per direction, as (offset, length), merged when adjacent;
    /// boxed and made on the first, as most connections never have one.
    missing: Option<Box<[Stretches; 2]>>,
}

/// Bytes of `missing` below stream offset `end`.
fn missing_below(missing: &[(u64, u64)], end: u64) -> u64 {
    missing
        .iter()
        .map(|&(at, len)| end.min(at.saturating_add(len)).saturating_sub(at))
        .sum()
}

impl Output for BinaryLog {
    fn name(&self) -> &'static str {
        "the binary logs"
    }

    fn kind(&self) -> &'static str {
        "binary"
    }

    fn data_cost(&self, _conn: &ConnInfo, _dir: Dir, len: usize) -> u64 {
        len as u64
    }

    fn not_recorded(
        &mut self,
        conn: &ConnInfo,
        dir: Dir,
        _at: SystemTime,
        bytes: &[u8],
        _io: &mut Io,
    ) {
        let Some(c) = self.conns.get_mut(&conn.id) else {
            return;
        };
        let at = conn.offsets[dir.index()];
        let len = bytes.len() as u64;
        let missing = &mut c.missing.get_or_insert_with(Default::default)[dir.index()];
        match missing.last_mut() {
            Some((start, n)) if start.saturating_add(*n) == at => *n = n.saturating_add(len),
            _ => missing.push((at, len)),
        }
    }

    fn open(&mut self, conn: &mut ConnInfo, io: &mut Io) {
        let stamp = stamp::file_stamp(conn.started);
        let files = Dir::BOTH.map(|d| {
            let name = naming::binary_name(&stamp, &conn.label, d, &conn.local, &conn.target);
            let (fid, err) = io.files.create(io.dir.join(name));
            io.errors.extend(err);
            conn.files.extend(io.files.file_name(fid));
            fid
        });
        self.conns.insert(
            conn.id,
            Files2 {
                files,
                missing: None,
            },
        );
    }

    fn data(&mut self, conn: &ConnInfo, dir: Dir, _at: SystemTime, bytes: &[u8], io: &mut Io) {
        if let Some(c) = self.conns.get(&conn.id) {
            let r = io.files.write(c.files[dir.index()], bytes);
            io.check(r);
        }
    }

    fn close(&mut self, conn: &ConnInfo, closed: &Closed, io: &mut Io) {
        let Some(c) = self.conns.remove(&conn.id) else {
            return;
        };
        for dir in Dir::BOTH {
            let i = dir.index();
            let n = closed.undelivered[i];
            if n > 0 {
                let delivered = conn.offsets[i].saturating_sub(n);
                let missing = c.missing.as_ref().map_or(&[][..], |m| &m[i][..]);
                let kept = delivered.saturating_sub(missing_below(missing, delivered));
                let r = io.files.truncate(c.files[i], kept);
                io.check(r);
            }
        }
        for f in c.files {
            io.close_file(conn.id, f);
        }
    }

    fn finish(&mut self, io: &mut Io) {
        for (_, c) in self.conns.drain() {
            for f in c.files {
                io.files.close(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_stretches_below_an_offset() {
        let m = [(100, 50), (300, 10)];
        assert_eq!(missing_below(&m, 0), 0);
        assert_eq!(missing_below(&m, 120), 20);
        assert_eq!(missing_below(&m, 200), 50);
        assert_eq!(missing_below(&m, 1000), 60);
        assert_eq!(missing_below(&[], 1000), 0);
    }
}

//! The binary logs: per connection, one file per direction holding exactly the bytes that
//! direction delivered, nothing added. Each chunk is an owned copy made by the reactor when it
//! was read (gotcpspy handed its logger a slice of the read buffer that the next read
//! overwrote), written with one `write` per chunk. Bytes logged but never delivered (the
//! destination broke first) are cut off when the connection closes.

use std::collections::HashMap;
use std::time::SystemTime;

use super::event::ConnId;
use super::files::FileId;
use super::{Closed, ConnInfo, Io, Output, naming, stamp};
use crate::types::Dir;

/// The binary-log output: two files per connection, indexed by [`Dir`].
#[derive(Default)]
pub struct BinaryLog {
    conns: HashMap<ConnId, [FileId; 2]>,
}

impl Output for BinaryLog {
    fn open(&mut self, conn: &mut ConnInfo, io: &mut Io) {
        let stamp = stamp::file_stamp(conn.started);
        let files = Dir::BOTH.map(|d| {
            let name = naming::binary_name(&stamp, &conn.label, d, &conn.local, &conn.target);
            let (fid, err) = io.files.create(io.dir.join(name));
            io.errors.extend(err);
            conn.files.extend(io.files.file_name(fid));
            fid
        });
        self.conns.insert(conn.id, files);
    }

    fn data(&mut self, conn: &ConnInfo, dir: Dir, _at: SystemTime, bytes: &[u8], io: &mut Io) {
        if let Some(files) = self.conns.get(&conn.id) {
            let r = io.files.write(files[dir.index()], bytes);
            io.check(r);
        }
    }

    fn close(&mut self, conn: &ConnInfo, closed: &Closed, io: &mut Io) {
        let Some(files) = self.conns.remove(&conn.id) else {
            return;
        };
        for dir in Dir::BOTH {
            let n = closed.undelivered[dir.index()];
            if n > 0 {
                let kept = conn.offsets[dir.index()].saturating_sub(n);
                let r = io.files.truncate(files[dir.index()], kept);
                io.check(r);
            }
        }
        for f in files {
            io.files.close(f);
        }
    }

    fn finish(&mut self, io: &mut Io) {
        for (_, files) in self.conns.drain() {
            for f in files {
                io.files.close(f);
            }
        }
    }
}

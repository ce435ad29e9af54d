//! The binary logs: per connection, one file per direction holding exactly the bytes that
//! direction carried, nothing added. Each chunk is an owned copy made by the reactor when it
//! was read (gotcpspy handed its logger a slice of the read buffer that the next read
//! overwrote), written with one `write` per chunk.

use std::net::SocketAddr;
use std::path::Path;

use crate::conn::Dir;

use super::files::{FileError, FileId, Files};
use super::naming;

/// A connection's two binary files, indexed by [`Dir`].
pub struct BinaryLog {
    files: [FileId; 2],
}

impl BinaryLog {
    /// Creates both files; errors are returned for reporting, the log carries on without them.
    pub fn create(
        files: &mut Files,
        dir: &Path,
        stamp: &str,
        id: u64,
        local: &SocketAddr,
        remote: &SocketAddr,
        errors: &mut Vec<FileError>,
    ) -> BinaryLog {
        let mut make = |d: Dir| {
            let (fid, err) =
                files.create(dir.join(naming::binary_name(stamp, id, d, local, remote)));
            errors.extend(err);
            fid
        };
        BinaryLog {
            files: [make(Dir::ClientToServer), make(Dir::ServerToClient)],
        }
    }

    pub fn write(&self, files: &mut Files, dir: Dir, bytes: &[u8]) -> Result<(), FileError> {
        files.write(self.files[dir.index()], bytes)
    }

    pub fn close(&self, files: &mut Files) {
        for f in self.files {
            files.close(f);
        }
    }

    pub fn file(&self, dir: Dir) -> FileId {
        self.files[dir.index()]
    }
}

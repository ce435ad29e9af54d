//! stdout for the outputs that write to it (the live view, `--pcap -`): a descriptor of its
//! own, and writes that wait for a slow reader for as long as tcpspy runs (the queue then
//! fills and the relay slows down, nothing is dropped) but give up at the stop's
//! [`Deadline`], so that a reader that stopped reading cannot keep tcpspy from exiting.
//!
//! The deadline is set when the logging thread is asked to finish ([`GRACE`] after the relay
//! has stopped); a write waiting for room looks at it every [`TICK`].

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sys::{self, PIPE_BUF, Writable};

/// How long stdout's reader gets, once tcpspy has stopped relaying, to take what is left for
/// it; after that, what it has not taken is dropped (and counted).
pub const GRACE: Duration = Duration::from_secs(2);

/// How often a write waiting for room looks at the deadline.
pub const TICK: Duration = Duration::from_millis(100);

/// When writes to stdout give up; unset while tcpspy runs. Shared by the logging thread and
/// the thread that stops it.
#[derive(Clone, Debug, Default)]
pub struct Deadline(Arc<Mutex<Option<Instant>>>);

impl Deadline {
    pub fn set(&self, at: Instant) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }

    pub fn get(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn passed(&self) -> bool {
        self.get().is_some_and(|d| Instant::now() >= d)
    }
}

/// Why a write stopped short.
#[derive(Debug)]
pub enum Cut {
    /// The reader has gone (EPIPE): `tcpspy -x | head`.
    Gone(io::Error),
    /// Another error.
    Failed(io::Error),
    /// The deadline passed with the reader not reading.
    GaveUp,
}

/// A write that stopped short: how far it got, and why.
#[derive(Debug)]
pub struct Short {
    pub written: usize,
    pub why: Cut,
}

/// stdout, or any descriptor written the same way.
pub struct Stdout {
    file: File,
    kind: Writable,
}

impl Stdout {
    /// tcpspy's stdout.
    pub fn open() -> io::Result<Stdout> {
        Stdout::new(io::stdout().as_fd())
    }

    /// A descriptor of the file behind `fd`, as [`sys::writable_copy`] makes it.
    pub fn new(fd: BorrowedFd<'_>) -> io::Result<Stdout> {
        let (file, kind) = sys::writable_copy(fd)?;
        Ok(Stdout { file, kind })
    }

    /// Writes all of `buf`, waiting for room as long as it takes, unless `deadline` passes.
    pub fn write_all(&mut self, buf: &[u8], deadline: &Deadline) -> Result<(), Short> {
        let mut done = 0;
        while done < buf.len() {
            if deadline.passed() {
                return Err(Short {
                    written: done,
                    why: Cut::GaveUp,
                });
            }
            let left = &buf[done..];
            let piece = match self.kind {
                Writable::Blocking => {
                    match sys::wait_writable(self.file.as_fd(), self.wait(deadline)) {
                        Ok(true) => &left[..left.len().min(PIPE_BUF)],
                        Ok(false) => continue,
                        Err(e) => return Err(short(done, e)),
                    }
                }
                Writable::NonBlocking | Writable::File => left,
            };
            match self.file.write(piece) {
                Ok(0) => return Err(short(done, io::ErrorKind::WriteZero.into())),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = sys::wait_writable(self.file.as_fd(), self.wait(deadline)) {
                        return Err(short(done, e));
                    }
                }
                Err(e) => return Err(short(done, e)),
            }
        }
        Ok(())
    }

    /// How long to wait for room before looking at the deadline again.
    fn wait(&self, deadline: &Deadline) -> Duration {
        match deadline.get() {
            Some(d) => d.saturating_duration_since(Instant::now()).min(TICK),
            None => TICK,
        }
    }
}

fn short(written: usize, e: io::Error) -> Short {
    let why = match e.kind() {
        io::ErrorKind::BrokenPipe => Cut::Gone(e),
        _ => Cut::Failed(e),
    };
    Short { written, why }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};

    fn pipe() -> (File, File) {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two new descriptors into the array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both were just created and belong to nobody else.
        unsafe {
            (
                File::from(OwnedFd::from_raw_fd(fds[0])),
                File::from(OwnedFd::from_raw_fd(fds[1])),
            )
        }
    }

    /// A reader that reads nothing: the write waits until the deadline, then gives up with
    /// what the pipe took, and the pipe's own descriptor stays blocking.
    #[test]
    fn gives_up_at_the_deadline() {
        let (mut r, w) = pipe();
        let mut out = Stdout::new(w.as_fd()).unwrap();
        assert_eq!(out.kind, Writable::NonBlocking);
        let deadline = Deadline::default();
        let d = deadline.clone();
        let start = Instant::now();
        let setter = std::thread::spawn(move || {
            // The deadline comes later, as the stop does: the write must notice it.
            d.set(Instant::now() + Duration::from_millis(300));
        });
        let big = vec![7u8; 4 << 20];
        let err = out.write_all(&big, &deadline).unwrap_err();
        setter.join().unwrap();
        assert!(matches!(err.why, Cut::GaveUp), "{err:?}");
        assert!(
            err.written > 0 && err.written < big.len(),
            "{}",
            err.written
        );
        assert!(start.elapsed() >= Duration::from_millis(300));
        // SAFETY: F_GETFL on a descriptor we hold.
        let flags = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&w), libc::F_GETFL) };
        assert_eq!(
            flags & libc::O_NONBLOCK,
            0,
            "the shared descriptor is untouched"
        );
        drop((out, w));
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!(
            got.len(),
            err.written,
            "what it says it wrote is what was written"
        );
    }

    #[test]
    fn reader_gone_and_reader_reading() {
        let (mut r, w) = pipe();
        let mut out = Stdout::new(w.as_fd()).unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            r.read_to_end(&mut got).map(|_| got.len())
        });
        let big = vec![1u8; 1 << 20];
        out.write_all(&big, &Deadline::default()).unwrap();
        drop((out, w));
        assert_eq!(reader.join().unwrap().unwrap(), big.len());

        let (r, w) = pipe();
        let mut out = Stdout::new(w.as_fd()).unwrap();
        drop(r);
        let err = out.write_all(b"x", &Deadline::default()).unwrap_err();
        assert!(matches!(err.why, Cut::Gone(_)), "{err:?}");
    }

    #[test]
    fn a_file_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("out")).unwrap();
        let mut out = Stdout::new(f.as_fd()).unwrap();
        assert_eq!(out.kind, Writable::File);
        let deadline = Deadline::default();
        out.write_all(b"hello", &deadline).unwrap();
        assert_eq!(std::fs::read(dir.path().join("out")).unwrap(), b"hello");
    }
}

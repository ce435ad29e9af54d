//! What holds a direction's bytes in flight (read but not yet written): relay buffers, and,
//! when nothing needs to see the bytes (`--log none`), pipes that splice(2) moves them through
//! inside the kernel. A direction holds one only while bytes are in flight, and gives a buffer
//! back as soon as its sink took everything, so an idle connection holds none and a busy one
//! holds one only while its destination is slow.
//!
//! Both are bounded: at most [`Pool::max_buffers`] buffers exist at once, whatever the number
//! of connections, which is what keeps memory flat under 1000 busy connections or a crowd of
//! clients that stopped reading. A direction that finds none left relays through the one
//! scratch buffer instead, peeking at its source and consuming only what its sink took (see
//! [`crate::relay::pipeline`]). Freed buffers are kept for reuse up to a bound, so a steady
//! stream allocates nothing.

use crate::sys::Pipe;

/// Pipes in existence at most (in flight or kept): two descriptors each, so they have a place
/// in the descriptor budget. Past it, directions fall back to buffers.
pub const MAX_PIPES: usize = 64;

/// Bytes a pipe holds. Bigger means fewer syscalls per byte (a 1 GiB download cost 0.69 CPU
/// seconds with 64 KiB pipes, 0.51 with 256 KiB, 0.41 with 1 MiB), but the kernel charges
/// pipe pages to the user (fs.pipe-user-pages-soft, 64 MiB by default) whether they hold
/// bytes or not: 64 pipes of 256 KiB stay well inside it.
pub const PIPE_SIZE: usize = 256 << 10;

/// Bytes all relay buffers together may hold: with the default 64 KiB buffers, 64 of them.
/// Past it a direction relays without one (peeking), so the bound costs some system calls
/// under heavy load, never a byte or a stall.
pub const RELAY_MEMORY: usize = 4 << 20;

/// Relay buffers, the scratch buffer, and pipes when splicing.
pub struct Pool {
    free: Vec<Box<[u8]>>,
    size: usize,
    keep: usize,
    /// Buffers handed out and not yet returned.
    out: usize,
    max_out: usize,
    scratch: Box<[u8]>,
    splice: bool,
    pipes: Vec<Pipe>,
    pipes_out: usize,
}

impl Pool {
    /// A pool of `size`-byte buffers, at most `max_out` of them in use at once, keeping at most
    /// `keep` of them when they are not.
    pub fn new(size: usize, keep: usize, max_out: usize) -> Pool {
        Pool {
            free: Vec::new(),
            size,
            keep: keep.min(max_out),
            out: 0,
            max_out,
            scratch: vec![0u8; size].into_boxed_slice(),
            splice: false,
            pipes: Vec::new(),
            pipes_out: 0,
        }
    }

    /// The pool the reactor uses: buffers of `size` bytes, [`RELAY_MEMORY`] of them at most
    /// (never fewer than 4).
    pub fn for_relay(size: usize) -> Pool {
        let max = (RELAY_MEMORY / size.max(1)).max(4);
        Pool::new(size, max, max)
    }

    /// Also hands out pipes, for directions whose bytes nobody logs.
    pub fn with_splice(mut self) -> Pool {
        self.splice = true;
        self
    }

    /// A buffer, unless [`max_buffers`](Pool::max_buffers) are in use.
    pub fn get(&mut self) -> Option<Box<[u8]>> {
        if self.out >= self.max_out {
            return None;
        }
        self.out += 1;
        Some(
            self.free
                .pop()
                .unwrap_or_else(|| vec![0u8; self.size].into_boxed_slice()),
        )
    }

    pub fn put(&mut self, buf: Box<[u8]>) {
        self.out = self.out.saturating_sub(1);
        if self.free.len() < self.keep {
            self.free.push(buf);
        }
    }

    /// True when a buffer can be had.
    pub fn has_buffer(&self) -> bool {
        self.out < self.max_out
    }

    /// Buffers in use.
    pub fn buffers_out(&self) -> usize {
        self.out
    }

    pub fn max_buffers(&self) -> usize {
        self.max_out
    }

    /// The one scratch buffer that directions without a buffer of their own peek into; its
    /// contents do not outlive the call that filled it.
    pub fn scratch(&mut self) -> &mut [u8] {
        &mut self.scratch
    }

    /// The size of every buffer.
    pub fn buffer_size(&self) -> usize {
        self.size
    }

    /// Bytes a pipe holds: [`PIPE_SIZE`], or the buffer size if larger.
    pub fn pipe_size(&self) -> usize {
        self.size.max(PIPE_SIZE)
    }

    /// A pipe to splice through, if splicing is on and one can be had (a failure to make one,
    /// out of descriptors say, only means the bytes go through a buffer instead).
    pub fn get_pipe(&mut self) -> Option<Pipe> {
        if !self.splice {
            return None;
        }
        let pipe = match self.pipes.pop() {
            Some(p) => p,
            None if self.pipes_out < MAX_PIPES => Pipe::new(self.pipe_size()).ok()?,
            None => return None,
        };
        self.pipes_out += 1;
        Some(pipe)
    }

    /// Takes back a pipe; `empty` says whether it holds no bytes (only an empty one is reused).
    pub fn put_pipe(&mut self, pipe: Pipe, empty: bool) {
        self.pipes_out = self.pipes_out.saturating_sub(1);
        if empty && self.pipes.len() < self.keep {
            self.pipes.push(pipe);
        }
    }

    /// Pipes in use.
    pub fn pipes_out(&self) -> usize {
        self.pipes_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_up_to_the_bound() {
        let mut p = Pool::new(16, 1, 8);
        let mut a = p.get().unwrap();
        a[0] = 7;
        let b = p.get().unwrap();
        p.put(a);
        p.put(b);
        assert_eq!(p.free.len(), 1);
        assert_eq!(
            p.get().unwrap()[0],
            7,
            "the kept buffer is the first one returned"
        );
        assert_eq!(p.get().unwrap().len(), 16);
    }

    #[test]
    fn never_more_than_the_bound_out() {
        let mut p = Pool::new(16, 4, 2);
        let a = p.get().unwrap();
        let _b = p.get().unwrap();
        assert!(p.get().is_none() && !p.has_buffer());
        p.put(a);
        assert!(p.has_buffer());
        assert!(p.get().is_some());
        assert_eq!(p.buffers_out(), 2);
        assert_eq!(Pool::for_relay(64 << 10).max_buffers(), 64);
        assert_eq!(Pool::for_relay(16 << 20).max_buffers(), 4);
    }

    #[test]
    fn pipes_only_when_splicing_and_never_reused_with_bytes() {
        let mut p = Pool::new(4096, 2, 2);
        assert!(p.get_pipe().is_none());
        let mut p = p.with_splice();
        let a = p.get_pipe().expect("a pipe");
        let b = p.get_pipe().expect("another");
        p.put_pipe(a, true);
        p.put_pipe(b, false);
        assert_eq!((p.pipes.len(), p.pipes_out), (1, 0));
    }
}

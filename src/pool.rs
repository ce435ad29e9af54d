//! What holds a direction's bytes in flight (read but not yet written): a buffer, or, when
//! nothing needs to see the bytes (`--log none`), a pipe that splice(2) moves them through
//! inside the kernel. A direction holds one only while bytes are in flight; an idle connection
//! holds none. Freed ones are kept for reuse up to a bound, so a steady stream allocates
//! nothing and a burst does not pin its peak forever.

use crate::sys::Pipe;

/// Pipes in existence at most (in flight or kept): two descriptors each, so they have a place
/// in the descriptor budget. Past it, directions fall back to buffers.
pub const MAX_PIPES: usize = 64;

/// Bytes a pipe holds. Bigger means fewer syscalls per byte (a 1 GiB download cost 0.69 CPU
/// seconds with 64 KiB pipes, 0.51 with 256 KiB, 0.41 with 1 MiB), but the kernel charges
/// pipe pages to the user (fs.pipe-user-pages-soft, 64 MiB by default) whether they hold
/// bytes or not: 64 pipes of 256 KiB stay well inside it.
pub const PIPE_SIZE: usize = 256 << 10;

/// A free list of equally sized byte buffers, and of pipes when splicing.
pub struct Pool {
    free: Vec<Box<[u8]>>,
    size: usize,
    keep: usize,
    splice: bool,
    pipes: Vec<Pipe>,
    pipes_out: usize,
}

impl Pool {
    /// A pool of `size`-byte buffers that keeps at most `keep` of them when they are not in use.
    pub fn new(size: usize, keep: usize) -> Pool {
        Pool {
            free: Vec::new(),
            size,
            keep,
            splice: false,
            pipes: Vec::new(),
            pipes_out: 0,
        }
    }

    /// Also hands out pipes of `size` bytes, for directions whose bytes nobody logs.
    pub fn with_splice(mut self) -> Pool {
        self.splice = true;
        self
    }

    pub fn get(&mut self) -> Box<[u8]> {
        self.free
            .pop()
            .unwrap_or_else(|| vec![0u8; self.size].into_boxed_slice())
    }

    pub fn put(&mut self, buf: Box<[u8]>) {
        if self.free.len() < self.keep {
            self.free.push(buf);
        }
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
        self.pipes_out -= 1;
        if empty && self.pipes.len() < self.keep {
            self.pipes.push(pipe);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_up_to_the_bound() {
        let mut p = Pool::new(16, 1);
        let mut a = p.get();
        a[0] = 7;
        let b = p.get();
        p.put(a);
        p.put(b);
        assert_eq!(p.free.len(), 1);
        assert_eq!(p.get()[0], 7, "the kept buffer is the first one returned");
        assert_eq!(p.get().len(), 16);
    }

    #[test]
    fn pipes_only_when_splicing_and_never_reused_with_bytes() {
        let mut p = Pool::new(4096, 2);
        assert!(p.get_pipe().is_none());
        let mut p = p.with_splice();
        let a = p.get_pipe().expect("a pipe");
        let b = p.get_pipe().expect("another");
        p.put_pipe(a, true);
        p.put_pipe(b, false);
        assert_eq!((p.pipes.len(), p.pipes_out), (1, 0));
    }
}

//! Relay buffers. A direction holds a buffer only while bytes are in flight (read but not yet
//! written); an idle connection holds none. Freed buffers are kept for reuse up to a bound, so
//! a steady stream allocates nothing and a burst does not pin its peak memory forever.

/// A free list of equally sized byte buffers.
pub struct Pool {
    free: Vec<Box<[u8]>>,
    size: usize,
    keep: usize,
}

impl Pool {
    /// A pool of `size`-byte buffers that keeps at most `keep` of them when they are not in use.
    pub fn new(size: usize, keep: usize) -> Pool {
        Pool {
            free: Vec::new(),
            size,
            keep,
        }
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
}

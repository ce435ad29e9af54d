//! The data the bench's source serves: a seeded, position-dependent byte stream that the
//! client regenerates to check what it received. It is the shared harness's stream
//! (`loadgen`), so a loss, a duplicate, a reordering or a shift anywhere is detected, and it is
//! generated at memory speed, so the source and the check cost little beside the proxy.
//!
//! Byte `o` is byte `o % 8` (little endian) of word `w = o / 8`, where
//! `word(w) = table[w mod 65536] ^ w * 0x9E3779B97F4A7C15` and the table comes from xorshift64*.

const TABLE_WORDS: usize = 1 << 16;
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The harness's default seed ("tcpspy!!").
pub const SEED: u64 = 0x7463_7073_7079_2121;

pub struct Pattern {
    table: Vec<u64>,
}

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        let mut x = if seed == 0 { GOLDEN } else { seed };
        let mut table = Vec::with_capacity(TABLE_WORDS);
        for _ in 0..TABLE_WORDS {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            table.push(x.wrapping_mul(0x2545_F491_4F6C_DD1D));
        }
        Pattern { table }
    }

    fn word(&self, w: u64) -> u64 {
        self.table[(w as usize) & (TABLE_WORDS - 1)] ^ w.wrapping_mul(GOLDEN)
    }

    /// Fills `out` with the stream's bytes from offset `off`.
    pub fn fill(&self, off: u64, out: &mut [u8]) {
        let mut w = off / 8;
        let skip = (off % 8) as usize;
        let mut rest = &mut out[..];
        if skip != 0 {
            let b = self.word(w).to_le_bytes();
            let take = (8 - skip).min(rest.len());
            rest[..take].copy_from_slice(&b[skip..skip + take]);
            rest = &mut rest[take..];
            w += 1;
        }
        let mut chunks = rest.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.word(w).to_le_bytes());
            w += 1;
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            let n = tail.len();
            tail.copy_from_slice(&self.word(w).to_le_bytes()[..n]);
        }
    }

    /// The stream offset of the first byte of `got` (which should hold the stream from `off`)
    /// that is wrong; `scratch` is reused for the expected bytes.
    pub fn first_mismatch(&self, off: u64, got: &[u8], scratch: &mut Vec<u8>) -> Option<u64> {
        scratch.resize(got.len(), 0);
        self.fill(off, scratch);
        if got == &scratch[..] {
            return None;
        }
        let at = got.iter().zip(scratch.iter()).position(|(a, b)| a != b)?;
        Some(off + at as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    // Taken from the harness's own `loadgen serve` (default seed): the two generators must
    // agree, or the bench and the harness would not be measuring the same stream.
    #[test]
    fn same_stream_as_the_harness() {
        let p = Pattern::new(SEED);
        let mut b = vec![0u8; 1 << 20];
        p.fill(0, &mut b);
        assert_eq!(
            hex(&b[..24]),
            "6de8ae9bca0ee290d7f25fae04254b03e13e130423721f07"
        );
        assert_eq!(hex(&b[99_990..100_000]), "7d760eb6968a2024fec0");
        assert_eq!(hex(&b[600_001..600_011]), "607cd1da8e819d61c33a");
        assert_eq!(
            hex(&Sha256::digest(&b[..100_000])),
            "4781c0b275fab1b175762657f0b772ac19c16802498b851e9806faa52a0bce77"
        );
        assert_eq!(
            hex(&Sha256::digest(&b)),
            "7bb72d3d6fa83b6750e0c7fd53adf52ac28a745d23efaf8337890f909697f954"
        );
    }

    #[test]
    fn any_offset_and_length_is_a_slice_of_the_whole() {
        let p = Pattern::new(7);
        let mut whole = vec![0u8; 4096];
        p.fill(0, &mut whole);
        for off in [0usize, 1, 3, 7, 8, 9, 100, 1001] {
            for len in [0usize, 1, 2, 7, 8, 9, 15, 16, 17, 333] {
                let mut part = vec![0u8; len];
                p.fill(off as u64, &mut part);
                assert_eq!(part, whole[off..off + len], "off {off} len {len}");
            }
        }
    }

    #[test]
    fn mismatch_is_found_where_it_is() {
        let p = Pattern::new(SEED);
        let mut got = vec![0u8; 1000];
        p.fill(5000, &mut got);
        let mut scratch = Vec::new();
        assert_eq!(p.first_mismatch(5000, &got, &mut scratch), None);
        got[123] ^= 1;
        assert_eq!(p.first_mismatch(5000, &got, &mut scratch), Some(5123));
        // The right bytes at the wrong place are wrong too.
        let mut shifted = vec![0u8; 1000];
        p.fill(5001, &mut shifted);
        assert!(p.first_mismatch(5000, &shifted, &mut scratch).is_some());
        assert_ne!(Pattern::new(1).word(0), Pattern::new(2).word(0));
    }
}

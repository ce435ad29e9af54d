//! `corrupt`: each byte, with probability `probability`, has one of its bits flipped on its
//! way. The record keeps what the source sent; the toxic's story line lists every flip
//! (`flipped 2 bits: bit 3 of byte 1234 (0x41 -> 0x49), bit 0 of byte 1290 (0x20 -> 0x21)`,
//! stream offsets), so what the destination received can be rebuilt from the record
//! ([`received`]). The flipped bytes are found by skipping a geometric number of bytes at a
//! time, not by drawing per byte.

use super::rng::Rng;
use super::toxic::{Behaviour, Cx};

pub struct Corrupt {
    probability: f64,
    /// The stream offset of the next byte to flip, once drawn.
    next: Option<u64>,
}

impl Corrupt {
    pub fn new(probability: f64) -> Corrupt {
        Corrupt {
            probability,
            next: None,
        }
    }

    /// Bytes to skip before the next flip: geometric with parameter p.
    fn gap(&self, rng: &mut Rng) -> u64 {
        let p = self.probability;
        if p >= 1.0 {
            return 0;
        }
        let u = rng.unit();
        let g = ((1.0 - u).ln() / (1.0 - p).ln()).floor();
        if (0.0..1e18).contains(&g) {
            g as u64
        } else {
            u64::MAX / 2
        }
    }
}

impl Behaviour for Corrupt {
    fn chunk(&mut self, bytes: &mut [u8], at: u64, cx: &mut Cx) {
        if self.probability <= 0.0 {
            return;
        }
        let end = at.saturating_add(bytes.len() as u64);
        let mut next = match self.next {
            Some(n) if n >= at => n,
            _ => at.saturating_add(self.gap(cx.rng)),
        };
        let mut flips = Vec::new();
        while next < end {
            let i = usize::try_from(next - at).unwrap_or(usize::MAX);
            let Some(b) = bytes.get_mut(i) else { break };
            let bit = cx.rng.below(8) as u8;
            let was = *b;
            *b ^= 1 << bit;
            flips.push(format!(
                "bit {bit} of byte {next} (0x{was:02x} -> 0x{:02x})",
                *b
            ));
            next = next.saturating_add(1).saturating_add(self.gap(cx.rng));
        }
        self.next = Some(next);
        if !flips.is_empty() {
            cx.note(format!(
                "flipped {} bit{}: {}",
                flips.len(),
                if flips.len() == 1 { "" } else { "s" },
                flips.join(", ")
            ));
        }
    }
}

/// The flips a `corrupt` story line lists: (stream offset, bit).
pub fn flips(line: &str) -> Vec<(u64, u8)> {
    let Some((_, list)) = line.split_once("flipped ") else {
        return Vec::new();
    };
    let Some((_, list)) = list.split_once(": ") else {
        return Vec::new();
    };
    list.split(", ")
        .filter_map(|f| {
            let rest = f.strip_prefix("bit ")?;
            let (bit, rest) = rest.split_once(" of byte ")?;
            let offset = rest.split(' ').next()?;
            Some((offset.parse().ok()?, bit.parse().ok()?))
        })
        .filter(|&(_, bit)| bit < 8)
        .collect()
}

/// What the destination received, from what the source sent (the record) and the flips.
pub fn received(sent: &[u8], flips: &[(u64, u8)]) -> Vec<u8> {
    let mut out = sent.to_vec();
    for &(offset, bit) in flips {
        if let Some(b) = usize::try_from(offset).ok().and_then(|i| out.get_mut(i)) {
            *b ^= 1 << (bit & 7);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn flips_are_told_and_can_be_undone() {
        let sent: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
        let mut c = Corrupt::new(0.01);
        let (mut rng, mut notes) = (Rng::new(5), Vec::new());
        let mut got = Vec::new();
        for (i, part) in sent.chunks(700).enumerate() {
            let mut b = part.to_vec();
            let mut cx = Cx {
                now: Instant::now(),
                rng: &mut rng,
                notes: &mut notes,
            };
            c.chunk(&mut b, (i * 700) as u64, &mut cx);
            got.extend_from_slice(&b);
        }
        let all: Vec<(u64, u8)> = notes.iter().flat_map(|n| flips(n)).collect();
        assert!((10..100).contains(&all.len()), "{}", all.len());
        let differ = sent.iter().zip(&got).filter(|(a, b)| a != b).count();
        assert_eq!(differ, all.len(), "each flip is one changed byte");
        assert_eq!(received(&sent, &all), got);
        let mut every = Corrupt::new(1.0);
        let mut b = vec![0u8; 10];
        every.chunk(
            &mut b,
            0,
            &mut Cx {
                now: Instant::now(),
                rng: &mut rng,
                notes: &mut notes,
            },
        );
        assert!(b.iter().all(|x| x.count_ones() == 1));
    }
}

//! The faults' random numbers: SplitMix64, seeded per connection, direction and toxic from
//! `--seed`, so that a run repeats what it did (toxicity, jitter, slicer sizes, corrupt bits).
//! Written here rather than taken from a crate because the sequence for a seed must stay the
//! same across versions (a crate's generator may change its stream in a minor release).

/// A small, fast generator (Steele, Lea and Flood's SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A generator for one toxic on one direction of one connection.
    pub fn for_toxic(seed: u64, conn: u64, dir: usize, name: &str) -> Rng {
        let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
        for part in [conn, dir as u64] {
            h = mix(h ^ part);
        }
        for b in name.bytes() {
            h = mix(h ^ u64::from(b));
        }
        Rng(h)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        match n {
            0 => 0,
            n => self.next_u64() % n,
        }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p >= 1.0 || (p > 0.0 && self.unit() < p)
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_per_seed_and_differs_per_toxic() {
        let a: Vec<u64> = (0..4)
            .scan(Rng::for_toxic(7, 1, 0, "x"), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .scan(Rng::for_toxic(7, 1, 0, "x"), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..4)
            .scan(Rng::for_toxic(7, 2, 0, "x"), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut r = Rng::new(1);
        let hits = (0..10_000).filter(|_| r.chance(0.25)).count();
        assert!((2000..3000).contains(&hits), "{hits}");
        assert!((0..1000).all(|_| r.below(10) < 10));
        assert!(!Rng::new(3).chance(0.0) && Rng::new(3).chance(1.0));
    }
}

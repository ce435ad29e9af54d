//! The arithmetic of the bench: medians over rounds, latency percentiles, rates, and how a
//! download is shared out among connections. Pure, so the figures can be checked by hand.

/// The median; the mean of the two middle values for an even count; NaN for none. NaNs are
/// left out (a round without the figure).
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// The nearest-rank percentile `p` (0-100] of sorted values, as the shared harness computes
/// it: the smallest value with at least p% of the values at or below it.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Latency figures of one series of round trips, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(mut micros: Vec<f64>) -> Latency {
        micros.sort_by(f64::total_cmp);
        Latency {
            p50: percentile(&micros, 50.0),
            p99: percentile(&micros, 99.0),
            max: micros.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// Megabytes (10^6 bytes, as the harness counts them) per second.
pub fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        bytes as f64 / secs / 1e6
    } else {
        f64::NAN
    }
}

/// CPU seconds per GiB relayed.
pub fn secs_per_gib(cpu_secs: f64, bytes: u64) -> f64 {
    if bytes > 0 {
        cpu_secs / (bytes as f64 / (1u64 << 30) as f64)
    } else {
        f64::NAN
    }
}

/// Shares `total` bytes out among `parts` connections as consecutive ranges of one stream
/// (offset, length): every connection carries a different part, so bytes delivered on the
/// wrong connection are caught too. The first `total % parts` get one byte more.
pub fn split(total: u64, parts: u32) -> Vec<(u64, u64)> {
    let parts = u64::from(parts.max(1));
    let (each, extra) = (total / parts, total % parts);
    let mut off = 0;
    (0..parts)
        .map(|i| {
            let len = each + u64::from(i < extra);
            let range = (off, len);
            off += len;
            range
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[5.0]), 5.0);
        assert!(median(&[]).is_nan());
        assert_eq!(median(&[f64::NAN, 1.0, 3.0]), 2.0);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), 2.0);
        assert!(percentile(&[], 50.0).is_nan());
        let l = Latency::of(vec![30.0, 10.0, 20.0]);
        assert_eq!((l.p50, l.p99, l.max), (20.0, 30.0, 30.0));
    }

    #[test]
    fn rates() {
        assert_eq!(mb_per_s(2_000_000, 0.5), 4.0);
        assert!(mb_per_s(1, 0.0).is_nan());
        assert_eq!(secs_per_gib(0.5, 1 << 29), 1.0);
        assert!(secs_per_gib(1.0, 0).is_nan());
    }

    #[test]
    fn split_covers_the_stream_once() {
        assert_eq!(split(10, 3), vec![(0, 4), (4, 3), (7, 3)]);
        assert_eq!(split(8, 1), vec![(0, 8)]);
        assert_eq!(split(2, 4), vec![(0, 1), (1, 1), (2, 0), (2, 0)]);
        let parts = split(256 << 20, 8);
        assert!(parts.iter().all(|&(_, l)| l == 32 << 20));
        assert_eq!(parts.last().map(|&(o, l)| o + l), Some(256 << 20));
    }
}

//! Time as the logs show it, in local time like gotcpspy: `2026.11.29-10.05.10` in file names,
//! with microseconds (`2026.11.29-10.05.10.123456`) inside the logs, durations as `5.253979s`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Local};

const FILE_FORMAT: &str = "%Y.%m.%d-%H.%M.%S";

/// The whole-second stamp used in file names.
pub fn file_stamp(t: SystemTime) -> String {
    DateTime::<Local>::from(t).format(FILE_FORMAT).to_string()
}

/// Microseconds since the epoch (negative before it).
fn micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

/// Formats timestamps with microseconds, converting to local time once per second: the hex
/// dump writes one per chunk and the calendar conversion is the expensive part.
#[derive(Default)]
pub struct Stamper {
    second: Option<i64>,
    prefix: String,
}

impl Stamper {
    /// Appends `2026.11.29-10.05.10.123456` for `t`.
    pub fn write(&mut self, t: SystemTime, out: &mut Vec<u8>) {
        let us = micros(t);
        let (sec, frac) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
        if self.second != Some(sec) {
            let whole = UNIX_EPOCH
                .checked_add(Duration::from_secs(sec.max(0) as u64))
                .unwrap_or(UNIX_EPOCH);
            self.prefix = file_stamp(whole);
            self.second = Some(sec);
        }
        out.extend_from_slice(self.prefix.as_bytes());
        out.push(b'.');
        let mut digits = [b'0'; 6];
        let mut f = frac;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (f % 10) as u8;
            f /= 10;
        }
        out.extend_from_slice(&digits);
    }

    pub fn string(&mut self, t: SystemTime) -> String {
        let mut v = Vec::with_capacity(26);
        self.write(t, &mut v);
        String::from_utf8_lossy(&v).into_owned()
    }
}

/// `5.253979s`: seconds with microseconds, as a duration between two stamps.
pub fn duration(from: SystemTime, to: SystemTime) -> String {
    seconds(to.duration_since(from).unwrap_or_default())
}

/// `5.253979s`.
pub fn seconds(d: Duration) -> String {
    format!("{}.{:06}s", d.as_secs(), d.subsec_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_and_durations() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_042);
        let mut s = Stamper::default();
        let full = s.string(t);
        assert_eq!(full.len(), 26);
        assert!(full.ends_with(".000042"), "{full}");
        assert_eq!(&full[..19], file_stamp(t));
        let later = t + Duration::from_micros(999_999);
        assert!(s.string(later).ends_with(".000041"), "second rolls over");
        assert_eq!(
            duration(t, t + Duration::from_micros(5_253_979)),
            "5.253979s"
        );
        assert_eq!(duration(later, t), "0.000000s");
    }
}

//! Compares the server's answer in a replay with the recorded one: `--ignore` patterns mask
//! what changes by nature (dates, ids) on both sides, then the first difference is found and
//! the differing bytes counted. Offsets in reports are those of the real streams, not of the
//! masked ones. Pure.

use regex_automata::dfa::{dense, regex::Regex};
use regex_automata::util::syntax;

/// Most states' memory one `--ignore` pattern may take (its DFA is built at start-up).
const DFA_LIMIT: usize = 16 << 20;

/// The `--ignore` patterns: byte regexes (no Unicode: `.` and `[^\r]` match any byte).
#[derive(Debug, Default)]
pub struct Mask {
    regexes: Vec<(String, Regex)>,
}

impl Mask {
    pub fn new(patterns: &[String]) -> Result<Mask, String> {
        let mut regexes = Vec::with_capacity(patterns.len());
        for p in patterns {
            let re = Regex::builder()
                .syntax(syntax::Config::new().unicode(false).utf8(false))
                .dense(
                    dense::Config::new()
                        .dfa_size_limit(Some(DFA_LIMIT))
                        .determinize_size_limit(Some(DFA_LIMIT)),
                )
                .build(p)
                .map_err(|e| format!("--ignore {p:?}: {e}"))?;
            regexes.push((p.clone(), re));
        }
        Ok(Mask { regexes })
    }

    /// `bytes` with every match of every pattern cut out.
    pub fn apply(&self, bytes: &[u8]) -> Masked {
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for (_, re) in &self.regexes {
            ranges.extend(
                re.find_iter(bytes)
                    .filter(|m| m.end() > m.start())
                    .map(|m| (m.start(), m.end())),
            );
        }
        ranges.sort_unstable();
        let mut out = Masked {
            bytes: Vec::with_capacity(bytes.len()),
            runs: vec![(0, 0)],
            masked: 0,
        };
        let mut at = 0usize;
        for (s, e) in ranges {
            if e <= at {
                continue;
            }
            let s = s.max(at);
            out.bytes.extend_from_slice(bytes.get(at..s).unwrap_or(&[]));
            out.masked = out.masked.saturating_add(e - s);
            at = e;
            out.runs.push((out.bytes.len(), at));
        }
        out.bytes.extend_from_slice(bytes.get(at..).unwrap_or(&[]));
        out
    }
}

/// A stream with the masked parts cut out, and where its bytes were in the real one.
pub struct Masked {
    pub bytes: Vec<u8>,
    /// (offset in `bytes`, offset in the real stream) where each kept run starts.
    runs: Vec<(usize, usize)>,
    /// Bytes cut out.
    pub masked: usize,
}

impl Masked {
    /// Where byte `at` of the masked stream was in the real one.
    pub fn original(&self, at: usize) -> usize {
        let i = self.runs.partition_point(|&(m, _)| m <= at);
        match i.checked_sub(1).and_then(|i| self.runs.get(i)) {
            Some(&(m, o)) => o.saturating_add(at - m),
            None => at,
        }
    }
}

/// The first difference between the recorded and the received answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// Where it is in each real stream.
    pub recorded_at: usize,
    pub received_at: usize,
    /// Bytes that differ, in the masked streams: those at the same offset that are not equal,
    /// and those one stream has past the other's end.
    pub count: usize,
}

/// Compares two answers after masking; `None` when they are the same.
pub fn compare(mask: &Mask, recorded: &[u8], received: &[u8]) -> Option<Difference> {
    let (a, b) = (mask.apply(recorded), mask.apply(received));
    let first = a
        .bytes
        .iter()
        .zip(&b.bytes)
        .position(|(x, y)| x != y)
        .or_else(|| (a.bytes.len() != b.bytes.len()).then(|| a.bytes.len().min(b.bytes.len())))?;
    let unequal = a.bytes.iter().zip(&b.bytes).filter(|(x, y)| x != y).count();
    let extra = a.bytes.len().abs_diff(b.bytes.len());
    Some(Difference {
        recorded_at: a.original(first),
        received_at: b.original(first),
        count: unequal.saturating_add(extra),
    })
}

/// A few lines of hex dump of `bytes` around `at` (the line before it, its own and the next),
/// with the stream's offsets, `hexdump -C`'s layout; past the end, a line says so.
pub fn excerpt(bytes: &[u8], at: usize) -> String {
    let line_of = at - at % 16;
    let from = line_of.saturating_sub(16);
    let to = line_of.saturating_add(32).min(bytes.len());
    let mut out = String::new();
    let mut off = from;
    while off < to {
        let end = off.saturating_add(16).min(to);
        let chunk = bytes.get(off..end).unwrap_or(&[]);
        let mut hex = String::with_capacity(49);
        for i in 0..16 {
            if i == 8 {
                hex.push(' ');
            }
            match chunk.get(i) {
                Some(b) => hex.push_str(&format!("{b:02x} ")),
                None => hex.push_str("   "),
            }
        }
        let text: String = chunk
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!("{off:08x}  {hex} |{text}|\n"));
        off = end;
    }
    if at >= bytes.len() {
        out.push_str(&format!(
            "{:08x}  (end: {} bytes in all)\n",
            bytes.len(),
            bytes.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(p: &[&str]) -> Mask {
        Mask::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn masks_cut_matches_and_keep_real_offsets() {
        let m = mask(&["Date: [^\r]*"]);
        let a = b"HTTP/1.1 200\r\nDate: Mon, 1 Dec\r\nX: 1\r\n";
        let b = b"HTTP/1.1 200\r\nDate: Tuesday, 2 Dec\r\nX: 2\r\n";
        let d = compare(&m, a, b).unwrap();
        assert_eq!(d.count, 1);
        assert_eq!(&a[d.recorded_at..d.recorded_at + 1], b"1");
        assert_eq!(&b[d.received_at..d.received_at + 1], b"2");
        assert_eq!(compare(&m, a, a), None);
        assert!(compare(&Mask::default(), a, b).is_some());
        let same = b"HTTP/1.1 200\r\nDate: Tue\r\nX: 1\r\n";
        assert_eq!(compare(&m, a, same), None);
    }

    #[test]
    fn lengths_that_differ_count() {
        let d = compare(&Mask::default(), b"abcdef", b"abc").unwrap();
        assert_eq!((d.recorded_at, d.received_at, d.count), (3, 3, 3));
        let d = compare(&Mask::default(), b"", b"xy").unwrap();
        assert_eq!(d.count, 2);
    }

    #[test]
    fn bad_patterns_are_refused_and_excerpts_show_offsets() {
        assert!(
            Mask::new(&["(".to_string()])
                .unwrap_err()
                .starts_with("--ignore \"(\"")
        );
        let data: Vec<u8> = (0u8..40).collect();
        let e = excerpt(&data, 33);
        assert!(e.starts_with("00000010  10 11"), "{e}");
        assert!(e.contains("\n00000020  20 21"), "{e}");
        assert!(excerpt(b"ab", 2).contains("(end: 2 bytes in all)"));
    }
}

//! What the bench found, and its two renderings: the table for people and JSON for machines.
//! Pure: the figures come in as plain numbers, so the formatting is tested without sockets.

use crate::config::parse::Size;
use crate::log::index::json_str;
use std::fmt::Write as _;
use std::time::Duration;

use super::stats::{Latency, mb_per_s, median, secs_per_gib};

/// One download, as its client saw it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transfer {
    pub bytes: u64,
    /// From the first connect to the last byte of the last connection.
    pub secs: f64,
}

impl Transfer {
    pub fn mb_per_s(&self) -> f64 {
        mb_per_s(self.bytes, self.secs)
    }
}

/// One round of the download bench: direct, then through tcpspy.
#[derive(Clone, Debug, PartialEq)]
pub struct DownloadRound {
    pub direct: Transfer,
    pub proxied: Transfer,
    /// Bytes the proxy relayed, both directions (the download and the requests).
    pub relayed: u64,
    /// Bytes in the log files after the round.
    pub log_bytes: u64,
    /// CPU seconds of the proxy's reactor thread and of its logging thread.
    pub reactor_cpu: f64,
    pub logger_cpu: f64,
    /// Binary log files compared with the stream (0 when there are none).
    pub logs_verified: u32,
    /// Seconds from the start of the proxied download until every log was written.
    pub logged_secs: f64,
    /// Seconds the same file system took to take `log_bytes` written without any network
    /// (the same write sizes, no formatting): the most logging could ever do here.
    pub disk_secs: Option<f64>,
    /// With `--sustained`, the part of `logged_secs` and of `disk_secs` spent in the final
    /// fdatasync: what the page cache had absorbed and the disk had still to take.
    pub log_sync_secs: Option<f64>,
    pub disk_sync_secs: Option<f64>,
    /// How far the process's resident set rose over the proxied download, above its level
    /// with the proxy started and idle; the same over the direct download (the bench's own
    /// share, which its preparation keeps near zero). `None` when /proc could not tell.
    pub proxy_rss: Option<u64>,
    pub direct_rss: Option<u64>,
}

impl DownloadRound {
    fn figures(&self) -> [f64; FIGURES] {
        let cpu = self.reactor_cpu + self.logger_cpu;
        let logged = self.relayed as f64 / 1e6 / self.logged_secs;
        let limit = self
            .disk_secs
            .map_or(f64::NAN, |s| self.relayed as f64 / 1e6 / s);
        [
            self.direct.mb_per_s(),
            self.proxied.mb_per_s(),
            self.proxied.mb_per_s() / self.direct.mb_per_s(),
            self.proxy_rss.map_or(f64::NAN, |b| b as f64 / MIB),
            self.log_bytes as f64,
            ratio(self.log_bytes as f64, self.relayed as f64),
            secs_per_gib(cpu, self.relayed),
            secs_per_gib(self.reactor_cpu, self.relayed),
            secs_per_gib(self.logger_cpu, self.relayed),
            logged,
            limit,
            ratio(logged, limit),
        ]
    }
}

const FIGURES: usize = 12;

const MIB: f64 = (1u64 << 20) as f64;

const DOWNLOAD_KEYS: [&str; FIGURES] = [
    "direct_mb_per_s",
    "proxied_mb_per_s",
    "proxied_over_direct",
    "proxy_rss_growth_mib",
    "log_bytes",
    "log_bytes_per_relayed_byte",
    "proxy_cpu_s_per_gib",
    "reactor_cpu_s_per_gib",
    "logger_cpu_s_per_gib",
    "logged_mb_per_s",
    "disk_limit_mb_per_s",
    "logged_over_disk_limit",
];

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

/// The download bench's settings and rounds.
#[derive(Clone, Debug, PartialEq)]
pub struct DownloadReport {
    pub bytes: u64,
    pub connections: u32,
    /// The proxy's `--log` (`hex,binary`, `none`, ...).
    pub log: String,
    /// The proxy's `--log-queue` and `--buffer-size`, in bytes.
    pub log_queue: u64,
    pub buffer_size: u64,
    /// How long each client waited after connecting before it read (`--pause`).
    pub pause: Duration,
    /// `--sustained`: logging and the disk are timed until every byte is on the disk.
    pub sustained: bool,
    /// The kernel's dirty limit, in bytes, when `--sustained` read it.
    pub dirty_limit: Option<u64>,
    pub rounds: Vec<DownloadRound>,
    /// Where the logs were kept, if they were.
    pub kept_logs: Option<String>,
}

impl DownloadReport {
    fn medians(&self) -> [f64; FIGURES] {
        let per_round: Vec<[f64; FIGURES]> =
            self.rounds.iter().map(DownloadRound::figures).collect();
        std::array::from_fn(|i| median(&per_round.iter().map(|f| f[i]).collect::<Vec<_>>()))
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "tcpspy bench: {} per round over {} on loopback, direct and through tcpspy \
             (logging {}; log queue {}, buffers {}), {} round{}",
            size(self.bytes),
            plural(self.connections.into(), "connection"),
            self.log,
            Size(self.log_queue),
            Size(self.buffer_size),
            self.rounds.len(),
            if self.rounds.len() == 1 { "" } else { "s" },
        );
        if !self.pause.is_zero() {
            let _ = writeln!(
                out,
                "slow reader: each client waits {:?} after connecting before it reads; MB/s count \
                 from then",
                self.pause
            );
        }
        if self.sustained {
            let logs = median(
                &self
                    .rounds
                    .iter()
                    .map(|r| r.log_bytes as f64)
                    .collect::<Vec<_>>(),
            );
            let _ = write!(
                out,
                "sustained: the clock stops when every log is on the disk (fdatasync), for tcpspy \
                 and the disk alike; {:.1} GB of logs per round",
                logs / 1e9
            );
            match self.dirty_limit {
                Some(d) if logs < d as f64 => {
                    let _ = writeln!(
                        out,
                        ", under the dirty limit ({:.1} GB): the page cache holds them until \
                         the fdatasync",
                        d as f64 / 1e9
                    );
                }
                Some(d) => {
                    let _ = writeln!(out, " against a dirty limit of {:.1} GB", d as f64 / 1e9);
                }
                None => out.push('\n'),
            }
        }
        out.push('\n');
        let header = [
            "round",
            "direct MB/s",
            "tcpspy MB/s",
            "tcpspy/direct",
            "RSS +MiB",
            "log MB",
            "log B per B",
            "CPU s/GiB",
            "reactor",
            "logger",
            "logged MB/s",
            "disk MB/s",
            "of disk",
        ];
        let row = |name: String, f: [f64; FIGURES]| -> Vec<String> {
            vec![
                name,
                num(f[0]),
                num(f[1]),
                format!("{}x", fixed(f[2], 3)),
                num(f[3]),
                num(f[4] / 1e6),
                fixed(f[5], 2),
                fixed(f[6], 2),
                fixed(f[7], 2),
                fixed(f[8], 2),
                num(f[9]),
                num(f[10]),
                if f[11].is_finite() {
                    format!("{:.0}%", f[11] * 100.0)
                } else {
                    "-".into()
                },
            ]
        };
        let mut rows: Vec<Vec<String>> = self
            .rounds
            .iter()
            .enumerate()
            .map(|(i, r)| row((i + 1).to_string(), r.figures()))
            .collect();
        rows.push(row("median".into(), self.medians()));
        out.push_str(&grid(&header, &rows));
        out.push('\n');
        out.push_str(
            "MB = 10^6 bytes; RSS +MiB = how far the process's resident memory rose during the \
             download through tcpspy, over its level with the proxy started and idle (the \
             bench's own buffers are in that level: the rise is the proxy's);\n\
             log B per B = bytes written to logs per byte relayed;\n\
             CPU s/GiB = CPU seconds of the proxy's own threads (reactor + logger, writing every \
             log included) per GiB relayed;\n",
        );
        out.push_str(if self.sustained {
            "logged MB/s = bytes relayed / time until every log was on the disk (written, then \
             fdatasync);\n\
             disk MB/s = the same, had the logs' bytes been written with no network and no \
             formatting, then fdatasync, measured right after (what this disk takes); \
             of disk = logged / disk.\n"
        } else {
            "logged MB/s = bytes relayed / time until every log was written (the download may end \
             first: the log queue holds the rest);\n\
             disk MB/s = the same, had the logs' bytes been written with no network and no \
             formatting, measured right after (the most logging can do on this file system); \
             of disk = logged / disk.\n"
        });
        let logs: u32 = self.rounds.iter().map(|r| r.logs_verified).sum();
        let _ = writeln!(
            out,
            "data verified: all {} downloads ({} each) arrived intact, compared byte for byte \
             with the generator{}",
            self.rounds.len() * 2,
            size(self.bytes),
            if logs > 0 {
                format!(
                    "; so did the {} binary log files of the server's data",
                    logs
                )
            } else {
                String::new()
            },
        );
        if let Some(dir) = &self.kept_logs {
            let _ = writeln!(out, "logs kept in {dir}");
        }
        out
    }

    pub fn json(&self) -> String {
        let rounds: Vec<String> = self
            .rounds
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut o = Obj::default();
                o.num("round", (i + 1) as f64);
                o.num("direct_bytes", r.direct.bytes as f64);
                o.num("direct_secs", r.direct.secs);
                o.num("proxied_bytes", r.proxied.bytes as f64);
                o.num("proxied_secs", r.proxied.secs);
                o.num("relayed_bytes", r.relayed as f64);
                o.num("reactor_cpu_s", r.reactor_cpu);
                o.num("logger_cpu_s", r.logger_cpu);
                o.num("binary_logs_verified", r.logs_verified.into());
                o.num("logged_secs", r.logged_secs);
                o.opt("disk_secs", r.disk_secs);
                o.opt("log_sync_secs", r.log_sync_secs);
                o.opt("disk_sync_secs", r.disk_sync_secs);
                o.opt("proxy_rss_growth_bytes", r.proxy_rss.map(|b| b as f64));
                o.opt("direct_rss_growth_bytes", r.direct_rss.map(|b| b as f64));
                for (k, v) in DOWNLOAD_KEYS.iter().zip(r.figures()) {
                    o.num(k, v);
                }
                o.finish()
            })
            .collect();
        let mut med = Obj::default();
        for (k, v) in DOWNLOAD_KEYS.iter().zip(self.medians()) {
            med.num(k, v);
        }
        let mut o = Obj::default();
        o.str("mode", "download");
        o.num("bytes", self.bytes as f64);
        o.num("connections", self.connections.into());
        o.str("log", &self.log);
        o.num("log_queue", self.log_queue as f64);
        o.num("buffer_size", self.buffer_size as f64);
        o.num("pause_secs", self.pause.as_secs_f64());
        o.raw("sustained", if self.sustained { "true" } else { "false" });
        o.opt("dirty_limit_bytes", self.dirty_limit.map(|b| b as f64));
        o.raw("verified", "true");
        o.raw("rounds", &format!("[{}]", rounds.join(",")));
        o.raw("median", &med.finish());
        match &self.kept_logs {
            Some(d) => o.str("kept_logs", d),
            None => o.raw("kept_logs", "null"),
        }
        o.finish()
    }
}

/// One round of one exchange size in the round-trip bench.
#[derive(Clone, Debug, PartialEq)]
pub struct RttRound {
    pub round: u32,
    pub size: usize,
    pub direct: Latency,
    pub proxied: Latency,
}

impl RttRound {
    fn figures(&self) -> [f64; 6] {
        [
            self.direct.p50,
            self.direct.p99,
            self.proxied.p50,
            self.proxied.p99,
            self.proxied.p50 - self.direct.p50,
            self.proxied.p99 - self.direct.p99,
        ]
    }
}

const RTT_KEYS: [&str; 6] = [
    "direct_p50_us",
    "direct_p99_us",
    "proxied_p50_us",
    "proxied_p99_us",
    "added_p50_us",
    "added_p99_us",
];

/// The round-trip bench's settings and rounds.
#[derive(Clone, Debug, PartialEq)]
pub struct RttReport {
    pub sizes: Vec<usize>,
    pub exchanges: u32,
    pub log: String,
    pub rounds: u32,
    pub runs: Vec<RttRound>,
    pub kept_logs: Option<String>,
}

impl RttReport {
    fn medians(&self, size: usize) -> [f64; 6] {
        let per_round: Vec<[f64; 6]> = self
            .runs
            .iter()
            .filter(|r| r.size == size)
            .map(RttRound::figures)
            .collect();
        std::array::from_fn(|i| median(&per_round.iter().map(|f| f[i]).collect::<Vec<_>>()))
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "tcpspy bench --rtt: {} request/response exchanges per size on one connection, \
             direct and through tcpspy (logging {}), {} round{}",
            self.exchanges,
            self.log,
            self.rounds,
            if self.rounds == 1 { "" } else { "s" },
        );
        out.push('\n');
        let header = [
            "size",
            "round",
            "direct p50 µs",
            "direct p99",
            "tcpspy p50 µs",
            "tcpspy p99",
            "added p50 µs",
            "added p99",
        ];
        let row = |size: usize, name: String, f: [f64; 6]| -> Vec<String> {
            let mut v = vec![self::size(size as u64), name];
            v.extend(f.iter().map(|&x| fixed(x, 1)));
            v
        };
        let mut rows = Vec::new();
        for &s in &self.sizes {
            for r in self.runs.iter().filter(|r| r.size == s) {
                rows.push(row(s, r.round.to_string(), r.figures()));
            }
            rows.push(row(s, "median".into(), self.medians(s)));
        }
        out.push_str(&grid(&header, &rows));
        out.push('\n');
        out.push_str(
            "Round trip: write the request, read the echo of the same size (TCP_NODELAY). \
             added = tcpspy - direct.\n",
        );
        let _ = writeln!(
            out,
            "data verified: every echo of the {} exchanges matched what was sent",
            self.runs.len() as u64 * 2 * u64::from(self.exchanges)
        );
        if let Some(dir) = &self.kept_logs {
            let _ = writeln!(out, "logs kept in {dir}");
        }
        out
    }

    pub fn json(&self) -> String {
        let sizes: Vec<String> = self
            .sizes
            .iter()
            .map(|&s| {
                let runs: Vec<String> = self
                    .runs
                    .iter()
                    .filter(|r| r.size == s)
                    .map(|r| {
                        let mut o = Obj::default();
                        o.num("round", r.round.into());
                        for (k, v) in RTT_KEYS.iter().zip(r.figures()) {
                            o.num(k, v);
                        }
                        o.num("direct_max_us", r.direct.max);
                        o.num("proxied_max_us", r.proxied.max);
                        o.finish()
                    })
                    .collect();
                let mut med = Obj::default();
                for (k, v) in RTT_KEYS.iter().zip(self.medians(s)) {
                    med.num(k, v);
                }
                let mut o = Obj::default();
                o.num("size", s as f64);
                o.raw("rounds", &format!("[{}]", runs.join(",")));
                o.raw("median", &med.finish());
                o.finish()
            })
            .collect();
        let mut o = Obj::default();
        o.str("mode", "rtt");
        o.num("exchanges", self.exchanges.into());
        o.num("rounds", self.rounds.into());
        o.str("log", &self.log);
        o.raw("verified", "true");
        o.raw("sizes", &format!("[{}]", sizes.join(",")));
        match &self.kept_logs {
            Some(d) => o.str("kept_logs", d),
            None => o.raw("kept_logs", "null"),
        }
        o.finish()
    }
}

/// A JSON object written field by field.
#[derive(Default)]
struct Obj {
    fields: Vec<String>,
}

impl Obj {
    fn raw(&mut self, key: &str, value: &str) {
        self.fields.push(format!("{}:{value}", json_str(key)));
    }

    fn str(&mut self, key: &str, value: &str) {
        self.raw(key, &json_str(value));
    }

    /// Whole numbers print as integers; NaN and infinities (a figure that does not apply, a
    /// division by zero) as null, which JSON can carry.
    fn num(&mut self, key: &str, v: f64) {
        let text = if !v.is_finite() {
            "null".to_string()
        } else if v.fract() == 0.0 && v.abs() < 9e15 {
            format!("{}", v as i64)
        } else {
            format!("{v}")
        };
        self.raw(key, &text);
    }

    /// A figure that may be missing: null then.
    fn opt(&mut self, key: &str, v: Option<f64>) {
        self.num(key, v.unwrap_or(f64::NAN));
    }

    fn finish(self) -> String {
        format!("{{{}}}", self.fields.join(","))
    }
}

/// Left-aligns the first column, right-aligns the others.
fn grid(header: &[&str], rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        rows.iter()
            .filter_map(|r| r.get(i))
            .map(|c| c.chars().count())
            .chain([header[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, c) in cells.enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i == 0 {
                let _ = write!(l, "{c:<w$}");
            } else {
                let _ = write!(l, "  {c:>w$}");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    out
}

/// A rate or size with as many decimals as make sense for its size.
fn num(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fixed(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "-".into()
    }
}

/// `256 MiB`, `16 KiB`, `64 B`, `100 TiB`, or the exact count when it is not a round binary size.
pub fn size(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} B")
}

fn plural(n: u64, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(direct: f64, proxied: f64, logger: f64) -> DownloadRound {
        DownloadRound {
            direct: Transfer {
                bytes: 1 << 30,
                secs: (1u64 << 30) as f64 / (direct * 1e6),
            },
            proxied: Transfer {
                bytes: 1 << 30,
                secs: (1u64 << 30) as f64 / (proxied * 1e6),
            },
            relayed: 1 << 30,
            log_bytes: 6 << 30,
            reactor_cpu: 0.5,
            logger_cpu: logger,
            logs_verified: 1,
            // Logged at 400 MB/s (of 1 GiB), where the disk alone took 1 s.
            logged_secs: (1u64 << 30) as f64 / 400e6,
            disk_secs: Some(1.0),
            log_sync_secs: None,
            disk_sync_secs: None,
            proxy_rss: Some(9 << 19),
            direct_rss: Some(0),
        }
    }

    fn report() -> DownloadReport {
        DownloadReport {
            bytes: 1 << 30,
            connections: 1,
            log: "hex,binary".into(),
            log_queue: 8 << 20,
            buffer_size: 64 << 10,
            pause: Duration::ZERO,
            sustained: false,
            dirty_limit: None,
            rounds: vec![
                round(5000.0, 500.0, 2.0),
                round(4000.0, 1000.0, 1.0),
                round(6000.0, 600.0, 3.0),
            ],
            kept_logs: None,
        }
    }

    #[test]
    fn download_table() {
        let t = report().table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "tcpspy bench: 1 GiB per round over 1 connection on loopback, direct and through \
             tcpspy (logging hex,binary; log queue 8M, buffers 64K), 3 rounds"
        );
        assert_eq!(
            lines[2],
            "round   direct MB/s  tcpspy MB/s  tcpspy/direct  RSS +MiB  log MB  log B per B  CPU s/GiB  reactor  logger  logged MB/s  disk MB/s  of disk"
        );
        // Columns are right-aligned under their headers.
        assert_eq!(
            lines[3],
            "1              5000          500         0.100x      4.50    6442         6.00       2.50     0.50    2.00          400       1074      37%"
        );
        // Each column's median on its own: 5000 direct, 600 via tcpspy, ratio median 0.1
        // (0.1, 0.25, 0.1), 2.0 + 0.5 CPU.
        assert_eq!(
            lines[6],
            "median         5000          600         0.100x      4.50    6442         6.00       2.50     0.50    2.00          400       1074      37%"
        );
        assert!(
            !t.contains("slow reader") && !t.contains("sustained"),
            "{t}"
        );
        assert!(t.contains("logged MB/s = bytes relayed / time until every log was written"));
        assert!(t.contains("data verified: all 6 downloads (1 GiB each) arrived intact"));
        assert!(t.contains("so did the 3 binary log files"));
        assert!(!t.contains("logs kept"));
    }

    #[test]
    fn slow_reader_and_sustained_say_so() {
        let mut r = report();
        r.pause = Duration::from_secs(5);
        r.sustained = true;
        r.dirty_limit = Some(4_900_000_000);
        r.rounds[0].proxy_rss = None;
        let t = r.table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[1],
            "slow reader: each client waits 5s after connecting before it reads; MB/s count from \
             then"
        );
        // 6 GiB of logs per round, over the limit.
        assert_eq!(
            lines[2],
            "sustained: the clock stops when every log is on the disk (fdatasync), for tcpspy and \
             the disk alike; 6.4 GB of logs per round against a dirty limit of 4.9 GB"
        );
        // A round whose memory could not be read shows a dash; the median is of the others.
        assert!(lines[5].starts_with("1 "), "{t}");
        assert_eq!(lines[5].split_whitespace().nth(4), Some("-"), "{t}");
        assert_eq!(lines[8].split_whitespace().nth(4), Some("4.50"), "{t}");
        assert!(t.contains("until every log was on the disk (written, then fdatasync)"));
        r.dirty_limit = Some(10_000_000_000);
        assert!(r.table().contains("under the dirty limit (10.0 GB)"));
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["pause_secs"], 5);
        assert_eq!(v["sustained"], true);
        assert_eq!(v["dirty_limit_bytes"], 10_000_000_000u64);
        assert!(v["rounds"][0]["proxy_rss_growth_bytes"].is_null());
        assert_eq!(v["rounds"][1]["proxy_rss_growth_bytes"], 9 << 19);
        assert_eq!(v["median"]["proxy_rss_growth_mib"], 4.5);
    }

    #[test]
    fn download_json_parses_and_holds_every_round() {
        let mut r = report();
        r.kept_logs = Some("/tmp/x \"y\"".into());
        r.rounds[1].log_bytes = 0;
        r.rounds[1].relayed = 0;
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["mode"], "download");
        assert_eq!(v["bytes"], 1u64 << 30);
        assert_eq!(v["log_queue"], 8 << 20);
        assert_eq!(v["pause_secs"], 0);
        assert_eq!(v["sustained"], false);
        assert!(v["dirty_limit_bytes"].is_null());
        assert_eq!(v["verified"], true);
        assert_eq!(v["kept_logs"], "/tmp/x \"y\"");
        let rounds = v["rounds"].as_array().unwrap();
        assert_eq!(rounds.len(), 3);
        assert_eq!(
            rounds[0]["direct_mb_per_s"].as_f64().unwrap().round(),
            5000.0
        );
        // A figure that cannot be computed is null, not an invalid NaN.
        assert!(rounds[1]["log_bytes_per_relayed_byte"].is_null());
        assert_eq!(
            v["median"]["proxied_mb_per_s"].as_f64().unwrap().round(),
            600.0
        );
    }

    #[test]
    fn rtt_table_and_json() {
        let lat = |p50, p99| Latency {
            p50,
            p99,
            max: p99 * 2.0,
        };
        let r = RttReport {
            sizes: vec![64, 16 << 10],
            exchanges: 100,
            log: "none".into(),
            rounds: 1,
            runs: vec![
                RttRound {
                    round: 1,
                    size: 64,
                    direct: lat(50.0, 80.0),
                    proxied: lat(70.0, 110.0),
                },
                RttRound {
                    round: 1,
                    size: 16 << 10,
                    direct: lat(15.0, 20.0),
                    proxied: lat(60.0, 100.0),
                },
            ],
            kept_logs: None,
        };
        let t = r.table();
        assert!(t.contains("64 B    median           50.0        80.0           70.0       110.0          20.0       30.0"), "{t}");
        assert!(t.contains("16 KiB  median"));
        assert!(t.contains("every echo of the 400 exchanges matched"));
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["mode"], "rtt");
        assert_eq!(v["sizes"][1]["size"], 16384);
        assert_eq!(v["sizes"][1]["median"]["added_p50_us"], 45);
        assert_eq!(v["sizes"][0]["rounds"][0]["proxied_max_us"], 220);
    }

    #[test]
    fn strings_and_sizes() {
        assert_eq!(json_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
        assert_eq!(size(256 << 20), "256 MiB");
        assert_eq!(size(8 << 30), "8 GiB");
        assert_eq!(size(100 << 40), "100 TiB");
        assert_eq!(size(16 << 10), "16 KiB");
        assert_eq!(size(1000), "1000 B");
        assert_eq!(num(5536.14), "5536");
        assert_eq!(num(13.44), "13.4");
        assert_eq!(num(1.5), "1.50");
        assert_eq!(num(f64::NAN), "-");
    }
}

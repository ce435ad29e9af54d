//! `tcpspy bench`'s flags (clap) and the settings they become.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::config::parse::{self, Size};
use crate::config::{Formats, defaults};

const BENCH_EXAMPLES: &str = "\
Examples:
  tcpspy bench                         256 MiB x 3 rounds, logging hex,binary
  tcpspy bench --log none --connections 8
  tcpspy bench --rtt                   64 B and 16 KiB round trips, direct and proxied
  tcpspy bench --sustained             logs timed until on the disk, past the page cache
  tcpspy bench --bytes 2G --pause 5s   a slow reader: what the proxy holds (RSS +MiB)
  tcpspy bench --json --keep-logs      machine-readable results; the logs stay on disk";

/// `--bytes` when none is given and the logs need not outgrow the page cache.
pub const DEFAULT_BYTES: u64 = 256 << 20;

/// Longest `--pause`: a reader that waits longer is gone, not slow.
pub const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// Most connections a bench download may use: each one is two client-side threads.
pub const MAX_CONNECTIONS: u32 = 256;

/// Largest exchange `--rtt-sizes` takes: an echo this big is a download, not a round trip.
pub const MAX_RTT_SIZE: u64 = 16 << 20;

/// `tcpspy bench`'s flags, as typed.
#[derive(clap::Args, Debug)]
#[command(after_help = BENCH_EXAMPLES)]
pub struct BenchArgs {
    /// Bytes per round, split over the connections (default 256M; with --sustained, enough to
    /// log 1.5x the kernel's dirty limit)
    #[arg(long, value_name = "SIZE")]
    pub bytes: Option<Size>,

    /// Rounds (each one direct download, then one through tcpspy); the table gives the median
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rounds: u32,

    /// Parallel connections per download, each carrying its share of --bytes
    #[arg(long, value_name = "C", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CONNECTIONS)))]
    pub connections: u32,

    /// What the proxy records: a comma list of `hex`, `binary` and `pcap`, or `none`
    #[arg(long = "log", value_name = "FORMATS", default_value = defaults::FORMATS)]
    pub log: Formats,

    /// Where the temporary log directory is made (default: the system's temporary directory)
    #[arg(long = "log-dir", value_name = "DIR")]
    pub log_dir: Option<PathBuf>,

    /// Keep the logs afterwards and say where they are
    #[arg(long = "keep-logs")]
    pub keep_logs: bool,

    /// Print the results as JSON on stdout (every round and the medians)
    #[arg(long)]
    pub json: bool,

    /// Time the logs, and the disk alone, until every byte is on the disk (fdatasync)
    #[arg(long, conflicts_with = "rtt")]
    pub sustained: bool,

    /// Each client connects, then waits this long before it reads (a slow reader; at most 1h)
    #[arg(long, value_name = "DURATION", value_parser = pause, conflicts_with = "rtt")]
    pub pause: Option<Pause>,

    /// Measure round-trip latency of small request/response exchanges instead of downloads
    #[arg(long)]
    pub rtt: bool,

    /// With --rtt: the exchange sizes, a comma list (each at most 16M)
    #[arg(long = "rtt-sizes", value_name = "SIZES", default_value = "64,16K",
          value_parser = rtt_sizes)]
    pub rtt_sizes: RttSizes,

    /// With --rtt: exchanges measured per size, target and round (after a short warm-up)
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub exchanges: u32,

    /// The proxy's --log-queue
    #[arg(long = "log-queue", value_name = "SIZE", default_value = defaults::LOG_QUEUE,
          value_parser = parse::log_queue)]
    pub log_queue: Size,

    /// The proxy's --buffer-size
    #[arg(long = "buffer-size", value_name = "SIZE", default_value = defaults::BUFFER_SIZE,
          value_parser = parse::buffer_size)]
    pub buffer_size: Size,

    /// The proxy's --no-splice: with --log none, relay with read/write, for the crossover
    /// between the two
    #[arg(long = "no-splice")]
    pub no_splice: bool,

    /// A fault on the proxy's connections, as tcpspy's --fault (repeatable): with --rtt and
    /// `latency:latency=10`, the latency added beside the asked 10 ms is its accuracy
    #[arg(long = "fault", value_name = "TYPE[:ATTR=VALUE,...]",
          value_parser = crate::faults::spec::parse_flag)]
    pub fault: Vec<crate::faults::spec::Flag>,
}

/// `--rtt-sizes`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RttSizes(pub Vec<usize>);

fn rtt_sizes(s: &str) -> Result<RttSizes> {
    let sizes = parse::parse_size_list(s)?;
    if let Some(big) = sizes.iter().find(|&&s| s > MAX_RTT_SIZE) {
        bail!("{} is over the largest exchange, 16M", Size(*big));
    }
    Ok(RttSizes(sizes.into_iter().map(|s| s as usize).collect()))
}

/// `--pause`, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pause(pub Duration);

fn pause(s: &str) -> Result<Pause> {
    let d = parse::parse_duration(s)?;
    if d > MAX_PAUSE {
        bail!("a pause of {s} is over the longest, 1h");
    }
    Ok(Pause(d))
}

/// What `tcpspy bench` measures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BenchMode {
    /// Bulk downloads: throughput, log volume, proxy CPU and memory.
    Download {
        /// How long each client waits after connecting before it reads.
        pause: Duration,
        /// The logging rate and the disk's are measured until every byte is on the disk.
        sustained: bool,
    },
    /// Request/response exchanges of each size: round-trip latency.
    Rtt { sizes: Vec<usize>, exchanges: u32 },
}

/// `tcpspy bench`'s settings, checked.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub mode: BenchMode,
    /// `None` only with `--sustained` and no `--bytes`: sized at run time from the kernel's
    /// dirty limit.
    pub bytes: Option<u64>,
    pub rounds: u32,
    pub connections: u32,
    pub formats: Formats,
    /// The parent of the temporary log directory.
    pub log_parent: PathBuf,
    pub keep_logs: bool,
    pub json: bool,
    pub log_queue: usize,
    pub buffer_size: usize,
    /// Splice what nothing logs (the proxy's default; off with `--no-splice`).
    pub splice: bool,
    /// The proxy's toxics (`--fault`).
    pub faults: Vec<crate::faults::Toxic>,
}

impl BenchConfig {
    pub fn from_args(args: BenchArgs) -> Result<BenchConfig> {
        let bytes = match args.bytes {
            Some(b) if b.0 < u64::from(args.connections) => bail!(
                "--bytes {b} is less than a byte per connection ({})",
                args.connections
            ),
            Some(b) => Some(b.0),
            None if args.sustained => None,
            None => Some(DEFAULT_BYTES),
        };
        if args.sustained && args.log.is_none() {
            bail!("--sustained measures the logs, and --log none writes none");
        }
        let mode = if args.rtt {
            BenchMode::Rtt {
                sizes: args.rtt_sizes.0,
                exchanges: args.exchanges,
            }
        } else {
            BenchMode::Download {
                pause: args.pause.map_or(Duration::ZERO, |p| p.0),
                sustained: args.sustained,
            }
        };
        Ok(BenchConfig {
            mode,
            bytes,
            rounds: args.rounds,
            connections: args.connections,
            formats: args.log,
            log_parent: args.log_dir.unwrap_or_else(std::env::temp_dir),
            keep_logs: args.keep_logs,
            json: args.json,
            log_queue: args.log_queue.bytes(),
            buffer_size: args.buffer_size.bytes(),
            splice: !args.no_splice,
            faults: args.fault.into_iter().map(|f| f.toxic).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Top {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn bench(list: &[&str]) -> Result<BenchConfig, String> {
        let mut v = vec!["bench"];
        v.extend_from_slice(list);
        let top = Top::try_parse_from(v).map_err(|e| e.to_string())?;
        BenchConfig::from_args(top.bench).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_rtt() {
        let c = bench(&[]).unwrap();
        assert_eq!(
            c.mode,
            BenchMode::Download {
                pause: Duration::ZERO,
                sustained: false
            }
        );
        assert_eq!(c.bytes, Some(256 << 20));
        assert_eq!((c.rounds, c.connections), (3, 1));
        assert_eq!(c.formats.to_string(), "hex,binary");
        assert!(!c.keep_logs && !c.json);
        let c = bench(&[
            "--rtt",
            "--rtt-sizes",
            "64,16K",
            "--exchanges",
            "50",
            "--log",
            "none",
        ])
        .unwrap();
        assert_eq!(
            c.mode,
            BenchMode::Rtt {
                sizes: vec![64, 16 << 10],
                exchanges: 50
            }
        );
        assert!(c.formats.is_none());
        assert!(bench(&["--bytes", "1G", "--connections", "8"]).is_ok());
        let c = bench(&["--sustained", "--pause", "1.5s"]).unwrap();
        assert_eq!(
            c.mode,
            BenchMode::Download {
                pause: Duration::from_millis(1500),
                sustained: true
            }
        );
        // Sized later, from the machine's dirty limit.
        assert_eq!(c.bytes, None);
        assert_eq!(
            bench(&["--sustained", "--bytes", "8M"]).unwrap().bytes,
            Some(8 << 20)
        );
    }

    #[test]
    fn each_bad_value_is_named() {
        for (list, needle) in [
            (&["--bytes", "0"][..], "the size must be greater than 0"),
            (
                &["--bytes", "2", "--connections", "3"][..],
                "less than a byte per connection",
            ),
            (&["--rounds", "0"][..], "0 is not in 1..=1000"),
            (&["--connections", "0"][..], "0 is not in 1..=256"),
            (
                &["--rtt", "--exchanges", "0"][..],
                "0 is not in 1..=10000000",
            ),
            (&["--rtt", "--rtt-sizes", "64,,1K"][..], "expected a size"),
            (
                &["--rtt", "--rtt-sizes", "1G"][..],
                "1G is over the largest exchange, 16M",
            ),
            (
                &["--pause", "2h"][..],
                "a pause of 2h is over the longest, 1h",
            ),
            (&["--pause", "soon"][..], "expected a duration"),
            (&["--rtt", "--pause", "1s"][..], "cannot be used with"),
            (&["--sustained", "--rtt"][..], "cannot be used with"),
            (
                &["--sustained", "--log", "none"][..],
                "--log none writes none",
            ),
        ] {
            let e = bench(list).unwrap_err();
            assert!(e.contains(needle), "{list:?}: {e}");
        }
    }
}

//! `tcpspy bench`'s flags (clap) and the settings they become.

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::config::parse::{self, Size};
use crate::config::{Formats, defaults};

const BENCH_EXAMPLES: &str = "\
Examples:
  tcpspy bench                       256 MiB x 3 rounds, logging hex,binary
  tcpspy bench --log none --connections 8
  tcpspy bench --rtt                 64 B and 16 KiB round trips, direct and proxied
  tcpspy bench --json --keep-logs    machine-readable results; the logs stay on disk";

/// Most connections a bench download may use: each one is two client-side threads.
pub const MAX_CONNECTIONS: u32 = 256;

/// Largest exchange `--rtt-sizes` takes: an echo this big is a download, not a round trip.
pub const MAX_RTT_SIZE: u64 = 16 << 20;

/// `tcpspy bench`'s flags, as typed.
#[derive(clap::Args, Debug)]
#[command(after_help = BENCH_EXAMPLES)]
pub struct BenchArgs {
    /// Bytes to download per round, split over the connections (K, M, G: powers of 1024)
    #[arg(long, value_name = "SIZE", default_value = "256M")]
    pub bytes: Size,

    /// Rounds (each one direct download, then one through tcpspy); the table gives the median
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rounds: u32,

    /// Parallel connections per download, each carrying its share of --bytes
    #[arg(long, value_name = "C", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CONNECTIONS)))]
    pub connections: u32,

    /// What the proxy records: a comma list of `hex` and `binary`, or `none`
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

/// What `tcpspy bench` measures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BenchMode {
    /// Bulk downloads: throughput, log volume, proxy CPU.
    Download,
    /// Request/response exchanges of each size: round-trip latency.
    Rtt { sizes: Vec<usize>, exchanges: u32 },
}

/// `tcpspy bench`'s settings, checked.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub mode: BenchMode,
    pub bytes: u64,
    pub rounds: u32,
    pub connections: u32,
    pub formats: Formats,
    /// The parent of the temporary log directory.
    pub log_parent: PathBuf,
    pub keep_logs: bool,
    pub json: bool,
    pub log_queue: usize,
    pub buffer_size: usize,
}

impl BenchConfig {
    pub fn from_args(args: BenchArgs) -> Result<BenchConfig> {
        let bytes = args.bytes.0;
        if bytes < u64::from(args.connections) {
            bail!(
                "--bytes {} is less than a byte per connection ({})",
                args.bytes,
                args.connections
            );
        }
        let mode = if args.rtt {
            BenchMode::Rtt {
                sizes: args.rtt_sizes.0,
                exchanges: args.exchanges,
            }
        } else {
            BenchMode::Download
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
        assert_eq!(c.mode, BenchMode::Download);
        assert_eq!(c.bytes, 256 << 20);
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
        ] {
            let e = bench(list).unwrap_err();
            assert!(e.contains(needle), "{list:?}: {e}");
        }
    }
}

//! The command line: what the user types (clap structs), then checked and resolved into a
//! [`Config`] that the rest of tcpspy runs on. Nothing past this module sees a raw string.
//!
//! Two stages, as ripgrep does it: [`Args`] is what clap parses; [`Config::from_args`] validates
//! it, resolves the target once (start-up, never on the reactor) and prepares the log directory.
//! The pure parsers (`parse_*`) are apart so unit tests and the fuzzer reach them without I/O.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Example:
  tcpspy --listen 8080 --target example.com:80 --log-dir logs
      relays 127.0.0.1:8080 to example.com:80 and writes, per connection, a hex dump of both
      directions and one binary file per direction into ./logs
  tcpspy --listen 8080 --target db.example:5432 --log pcap --pcap - | wireshark -k -i -
      shows every relayed connection live in Wireshark, as TCP between the client and the target
  tcpspy --listen 7379 --target 127.0.0.1:6379 --log none --text
      prints what each side says as it is said, as text, writing no files

To see what tcpspy costs on this machine, without any set-up: tcpspy bench

The flags of the original gotcpspy work too: tcpspy -host example.com -port 80 -listen_port 8080";

/// A TCP/IP spy proxy: relays each connection to a target and records both directions.
#[derive(Parser, Debug, Default)]
#[command(
    name = "tcpspy",
    version,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    /// Where to listen: IP:PORT, [IPv6]:PORT, or a bare PORT (binds 127.0.0.1; give 0.0.0.0:PORT
    /// to accept from other hosts: anyone who can connect can then reach the target)
    #[arg(short = 'l', long, value_name = "ADDR", conflicts_with = "listen_port")]
    pub listen: Option<String>,

    /// Where to relay each connection: HOST:PORT, IP:PORT or [IPv6]:PORT; a name is resolved
    /// once, at start-up
    #[arg(short = 't', long, value_name = "HOST:PORT", conflicts_with_all = ["host", "port"])]
    pub target: Option<String>,

    /// Directory for the log files (created if missing)
    #[arg(short = 'd', long = "log-dir", value_name = "DIR", default_value = ".")]
    pub log_dir: PathBuf,

    /// What to record: a comma list of `hex`, `binary` and `pcap` (one Wireshark capture of
    /// every connection), or `none`
    #[arg(long = "log", value_name = "FORMATS", default_value = "hex,binary")]
    pub log: String,

    /// Where the capture goes: a new file PATH, or `-` for stdout (pipe it into `wireshark -k -i
    /// -` or `tshark -r -`). Adds `pcap` to --log. Default: capture-<time>.pcapng in the log
    /// directory
    #[arg(long = "pcap", value_name = "PATH|-")]
    pub pcap: Option<PathBuf>,

    /// Print every chunk to stdout as it is relayed, as a hex dump (the layout of the log
    /// files), each headed by its connection, direction and time
    #[arg(short = 'x', long = "hexdump", conflicts_with = "text")]
    pub hexdump: bool,

    /// Print every chunk to stdout as it is relayed, as text: control and non-ASCII bytes are
    /// escaped (\r, \t, \x1b), a newline is a line break
    #[arg(long = "text")]
    pub text: bool,

    /// Most bytes waiting for the logging thread; when full, tcpspy stops reading sockets until
    /// the logger catches up (nothing is dropped). Suffixes K, M, G (powers of 1024)
    #[arg(long = "log-queue", value_name = "SIZE", default_value = "64M")]
    pub log_queue: String,

    /// Size of each relay buffer (one per direction, only while data is in flight)
    #[arg(long = "buffer-size", value_name = "SIZE", default_value = "64K")]
    pub buffer_size: String,

    /// Give up connecting to the target after this long (e.g. 10s, 500ms)
    #[arg(
        long = "connect-timeout",
        value_name = "DURATION",
        default_value = "10s"
    )]
    pub connect_timeout: String,

    /// Another forwarding rule, [BIND:]PORT=HOST:PORT (repeatable; BIND defaults to
    /// 127.0.0.1): `-L 5432=db:5432 -L 0.0.0.0:8080=web:80`
    #[arg(short = 'L', long = "forward", value_name = "[BIND:]PORT=HOST:PORT")]
    pub forward: Vec<String>,

    /// With `--log none`, relay with read and write instead of splice(2) (which moves the
    /// bytes from socket to socket inside the kernel); for comparisons and old kernels
    #[arg(long = "no-splice")]
    pub no_splice: bool,

    /// Let several tcpspy processes listen on the same port (SO_REUSEPORT); the kernel spreads
    /// connections over them. Connection numbers then carry the process id
    #[arg(long = "reuse-port")]
    pub reuse_port: bool,

    /// Close a connection after this long without a byte either way (e.g. 5m); off by default
    #[arg(long = "idle-timeout", value_name = "DURATION", default_value = "off")]
    pub idle_timeout: String,

    /// Most connections relayed at once; past it, new clients wait in the kernel's backlog
    #[arg(long = "max-connections", value_name = "N", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most log files open at once (the others are reopened when written); default: an eighth
    /// of the descriptor limit, at most 1024
    #[arg(long = "max-open-files", value_name = "N")]
    pub max_open_files: Option<usize>,

    /// What to do when a log file cannot be written: `report` it once and keep relaying, or
    /// `exit` (close every connection, then exit with status 1)
    #[arg(long = "on-log-error", value_name = "ACTION", default_value = "report")]
    pub on_log_error: LogErrorAction,

    /// gotcpspy's -host: the target host (with --port)
    #[arg(
        long,
        value_name = "HOST",
        requires = "port",
        help_heading = "gotcpspy compatibility"
    )]
    pub host: Option<String>,

    /// gotcpspy's -port: the target port (with --host)
    #[arg(
        long,
        value_name = "PORT",
        requires = "host",
        help_heading = "gotcpspy compatibility"
    )]
    pub port: Option<String>,

    /// gotcpspy's -listen_port: the port to listen on (127.0.0.1, unlike gotcpspy)
    #[arg(
        long = "listen_port",
        alias = "local_port",
        value_name = "PORT",
        help_heading = "gotcpspy compatibility"
    )]
    pub listen_port: Option<String>,

    /// Slows the logging thread down by this many microseconds per chunk, so tests can
    /// exercise the full-queue path. Not for users.
    #[arg(long = "debug-log-delay-us", hide = true, default_value_t = 0)]
    pub debug_log_delay_us: u64,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What tcpspy does besides proxying (the proxy itself takes the top-level flags).
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Measures tcpspy on this machine: downloads on loopback, direct and through tcpspy
    ///
    /// An embedded source serves pseudo-random data on loopback; the bench downloads it
    /// directly, then through a tcpspy proxy in the same process (the same reactor and
    /// logging, into a temporary directory), checks every byte, and prints throughput, log
    /// volume and the proxy's CPU per GiB, per round and the median. With --rtt it times
    /// small request/response exchanges instead. Needs no server and no set-up.
    Bench(BenchArgs),
}

/// `tcpspy bench`'s flags, as typed.
#[derive(clap::Args, Debug, Default)]
#[command(after_help = BENCH_EXAMPLES)]
pub struct BenchArgs {
    /// Bytes to download per round, split over the connections (K, M, G: powers of 1024)
    #[arg(long, value_name = "SIZE", default_value = "256M")]
    pub bytes: String,

    /// Rounds (each one direct download, then one through tcpspy); the table gives the median
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub rounds: u32,

    /// Parallel connections per download, each carrying its share of --bytes
    #[arg(long, value_name = "C", default_value_t = 1)]
    pub connections: u32,

    /// What the proxy records: a comma list of `hex` and `binary`, or `none`
    #[arg(long = "log", value_name = "FORMATS", default_value = "hex,binary")]
    pub log: String,

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

    /// With --rtt: the exchange sizes, a comma list
    #[arg(long = "rtt-sizes", value_name = "SIZES", default_value = "64,16K")]
    pub rtt_sizes: String,

    /// With --rtt: exchanges measured per size, target and round (after a short warm-up)
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub exchanges: u32,

    /// The proxy's --log-queue
    #[arg(long = "log-queue", value_name = "SIZE", default_value = "64M")]
    pub log_queue: String,

    /// The proxy's --buffer-size
    #[arg(long = "buffer-size", value_name = "SIZE", default_value = "64K")]
    pub buffer_size: String,
}

const BENCH_EXAMPLES: &str = "\
Examples:
  tcpspy bench                       256 MiB x 3 rounds, logging hex,binary
  tcpspy bench --log none --connections 8
  tcpspy bench --rtt                 64 B and 16 KiB round trips, direct and proxied
  tcpspy bench --json --keep-logs    machine-readable results; the logs stay on disk";

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

/// Most connections a bench download may use: each one is two client-side threads.
pub const BENCH_MAX_CONNECTIONS: u32 = 256;

/// Largest exchange `--rtt-sizes` takes: an echo this big is a download, not a round trip.
pub const BENCH_MAX_RTT_SIZE: usize = 16 << 20;

impl BenchConfig {
    pub fn from_args(args: BenchArgs) -> Result<BenchConfig> {
        let bytes = parse_size(&args.bytes).with_context(|| format!("--bytes {:?}", args.bytes))?;
        if !(1..=1000).contains(&args.rounds) {
            bail!("--rounds {}: must be between 1 and 1000", args.rounds);
        }
        if !(1..=BENCH_MAX_CONNECTIONS).contains(&args.connections) {
            bail!(
                "--connections {}: must be between 1 and {BENCH_MAX_CONNECTIONS}",
                args.connections
            );
        }
        if (bytes as u64) < u64::from(args.connections) {
            bail!(
                "--bytes {:?} is less than a byte per connection ({})",
                args.bytes,
                args.connections
            );
        }
        let formats = parse_formats(&args.log).with_context(|| format!("--log {:?}", args.log))?;
        // The proxy checks these too, but only after the first direct download.
        let (log_queue, buffer_size) = parse_queue_and_buffer(&args.log_queue, &args.buffer_size)?;
        let mode = if args.rtt {
            let sizes = parse_size_list(&args.rtt_sizes)
                .with_context(|| format!("--rtt-sizes {:?}", args.rtt_sizes))?;
            if let Some(big) = sizes.iter().find(|&&s| s > BENCH_MAX_RTT_SIZE) {
                bail!("--rtt-sizes: {big} is over the largest exchange, 16M");
            }
            if !(1..=10_000_000).contains(&args.exchanges) {
                bail!(
                    "--exchanges {}: must be between 1 and 10000000",
                    args.exchanges
                );
            }
            BenchMode::Rtt {
                sizes,
                exchanges: args.exchanges,
            }
        } else {
            BenchMode::Download
        };
        Ok(BenchConfig {
            mode,
            bytes: bytes as u64,
            rounds: args.rounds,
            connections: args.connections,
            formats,
            log_parent: args.log_dir.unwrap_or_else(std::env::temp_dir),
            keep_logs: args.keep_logs,
            json: args.json,
            log_queue,
            buffer_size,
        })
    }
}

/// Parses a comma list of sizes (`64,16K`).
pub fn parse_size_list(s: &str) -> Result<Vec<usize>> {
    s.split(',').map(|w| parse_size(w.trim())).collect()
}

/// What a log write failure does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogErrorAction {
    /// Report it once per file and keep relaying.
    #[default]
    Report,
    /// Stop tcpspy: close every connection, write what can be written, exit with status 1.
    Exit,
}

/// One forwarding rule: a listening address and the target its connections go to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub listen: SocketAddr,
    pub target: SocketAddr,
    /// The target as the user wrote it (a name stays a name), for messages and the hex dump.
    pub target_name: String,
    /// The rule as the user gave it, for messages.
    pub spec: String,
}

/// Which records are written for each connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Formats {
    pub hex: bool,
    pub binary: bool,
    /// The one capture of the run (where it goes: [`Capture`]).
    pub pcap: bool,
    /// The live view on stdout (`-x`, `--text`); it writes no file.
    pub live: Option<Live>,
}

impl Formats {
    /// True when some output needs the relayed bytes themselves, not only the connection
    /// events.
    pub fn wants_data(&self) -> bool {
        self.records() || self.live.is_some()
    }

    /// True when something is recorded (`--log` is not `none`); the live view is not a record.
    pub fn records(&self) -> bool {
        self.hex || self.binary || self.pcap
    }

    /// `--log none`: nothing recorded (the live view may still be on).
    pub fn is_none(&self) -> bool {
        !self.records()
    }
}

/// The live view: every chunk printed to stdout as it is relayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Live {
    pub mode: LiveMode,
    /// ANSI colours per direction: stdout is a terminal and NO_COLOR is not set.
    pub colour: bool,
}

/// How the live view shows a chunk's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveMode {
    /// `-x`: `hexdump -C` lines, as in the hex dump files.
    Hex,
    /// `--text`: the bytes as text, everything unprintable escaped.
    Text,
}

impl LiveMode {
    /// The flag that asks for it, for messages.
    pub fn flag(self) -> &'static str {
        match self {
            LiveMode::Hex => "-x/--hexdump",
            LiveMode::Text => "--text",
        }
    }
}

/// Whether the live view is coloured: only on a terminal, and not when NO_COLOR is set to
/// anything but the empty string (no-color.org).
pub fn wants_colour(stdout_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stdout_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

impl fmt::Display for Formats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.hex, "hex"),
            (self.binary, "binary"),
            (self.pcap, "pcap"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// Where the capture goes (when [`Formats::pcap`] is on).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Capture {
    /// `capture-<time>.pcapng` in the log directory.
    #[default]
    LogDir,
    /// A new file at this path (`--pcap PATH`).
    File(PathBuf),
    /// Streamed to stdout (`--pcap -`).
    Stdout,
}

impl fmt::Display for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capture::LogDir => f.write_str("the log directory"),
            Capture::File(p) => write!(f, "{}", p.display()),
            Capture::Stdout => f.write_str("stdout"),
        }
    }
}

/// Everything tcpspy runs on, validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub rules: Vec<Rule>,
    /// Listen with SO_REUSEPORT, and put the process id in connection numbers.
    pub reuse_port: bool,
    pub log_dir: PathBuf,
    pub formats: Formats,
    pub capture: Capture,
    pub log_queue: usize,
    pub buffer_size: usize,
    pub connect_timeout: Duration,
    pub idle_timeout: Option<Duration>,
    pub max_connections: usize,
    /// `None`: sized from the descriptor limit at start-up.
    pub max_open_files: Option<usize>,
    pub on_log_error: LogErrorAction,
    /// Splice when nothing logs the bytes (`--no-splice` turns it off).
    pub splice: bool,
    /// The `#0001 open`/`closed` lines on stderr (the bench turns them off: its progress bar
    /// is there).
    pub connection_lines: bool,
    pub debug_log_delay: Duration,
}

impl Config {
    /// Checks the arguments, resolves the target and prepares the log directory.
    pub fn from_args(args: Args) -> Result<Config> {
        let short_form = args.listen.is_some()
            || args.listen_port.is_some()
            || args.target.is_some()
            || args.host.is_some()
            || args.forward.is_empty();
        // Rules as written, resolved after the pure checks below.
        let mut specs: Vec<(String, SocketAddr, String, String, u16)> = Vec::new();
        if short_form {
            let listen = match (&args.listen, &args.listen_port) {
                (Some(l), _) => parse_listen(l).with_context(|| format!("--listen {l:?}"))?,
                (None, Some(p)) => {
                    parse_listen(p).with_context(|| format!("--listen_port {p:?}"))?
                }
                (None, None) => bail!("--listen is required (for example --listen 8080)"),
            };
            let (target_name, (host, port)) = match (&args.target, &args.host, &args.port) {
                (Some(t), _, _) => (
                    t.clone(),
                    parse_target(t).with_context(|| format!("--target {t:?}"))?,
                ),
                (None, Some(h), Some(p)) => {
                    let port = parse_port(p).with_context(|| format!("--port {p:?}"))?;
                    if port == 0 {
                        bail!("--port {p:?}: the target port cannot be 0");
                    }
                    let host = h.trim_start_matches('[').trim_end_matches(']').to_string();
                    (join_host_port(&host, port), (host, port))
                }
                _ => bail!("--target is required (for example --target 127.0.0.1:8000)"),
            };
            let spec = format!("--listen {listen} --target {target_name}");
            specs.push((spec, listen, target_name, host, port));
        }
        for f in &args.forward {
            let (listen, target_name, (host, port)) =
                parse_forward(f).with_context(|| format!("--forward {f:?}"))?;
            specs.push((format!("--forward {f}"), listen, target_name, host, port));
        }
        let mut formats =
            parse_formats(&args.log).with_context(|| format!("--log {:?}", args.log))?;
        let capture = match &args.pcap {
            None => Capture::LogDir,
            Some(p) => {
                if formats.is_none() {
                    bail!(
                        "--log none and --pcap contradict each other \
                         (for the capture alone: --log pcap --pcap {})",
                        p.display()
                    );
                }
                formats.pcap = true;
                parse_capture(p).with_context(|| format!("--pcap {:?}", p))?
            }
        };
        let live_mode = match (args.hexdump, args.text) {
            (true, _) => Some(LiveMode::Hex),
            (false, true) => Some(LiveMode::Text),
            (false, false) => None,
        };
        if let Some(mode) = live_mode {
            if capture == Capture::Stdout {
                bail!(
                    "{} and --pcap - would both write to stdout; give the capture a file \
                     (--pcap PATH)",
                    mode.flag()
                );
            }
            formats.live = Some(Live {
                mode,
                colour: wants_colour(
                    std::io::stdout().is_terminal(),
                    std::env::var_os("NO_COLOR").as_deref(),
                ),
            });
        }
        if capture == Capture::Stdout && std::io::stdout().is_terminal() {
            // A capture holds the network's bytes: on a terminal they would be escape codes.
            bail!("--pcap -: stdout is a terminal; pipe it (| wireshark -k -i -) or give a file");
        }
        let (log_queue, buffer_size) = parse_queue_and_buffer(&args.log_queue, &args.buffer_size)?;
        let connect_timeout = parse_duration(&args.connect_timeout)
            .with_context(|| format!("--connect-timeout {:?}", args.connect_timeout))?;
        let idle_timeout = match args.idle_timeout.trim() {
            "off" | "none" | "0" => None,
            t => Some(parse_duration(t).with_context(|| format!("--idle-timeout {t:?}"))?),
        };
        if args.max_connections == 0 {
            bail!("--max-connections must be at least 1");
        }
        if args.max_open_files == Some(0) {
            bail!("--max-open-files must be at least 1");
        }
        let mut rules = Vec::with_capacity(specs.len());
        for (spec, listen, target_name, host, port) in specs {
            let target =
                resolve(&host, port).with_context(|| format!("target {target_name} ({spec})"))?;
            rules.push(Rule {
                listen,
                target,
                target_name,
                spec,
            });
        }
        if formats.hex || formats.binary || (formats.pcap && capture == Capture::LogDir) {
            prepare_log_dir(&args.log_dir)?;
        }
        if let Capture::File(p) = &capture {
            check_capture_dir(p)?;
        }
        Ok(Config {
            rules,
            reuse_port: args.reuse_port,
            log_dir: args.log_dir,
            formats,
            capture,
            log_queue,
            buffer_size,
            connect_timeout,
            idle_timeout,
            max_connections: args.max_connections,
            max_open_files: args.max_open_files,
            on_log_error: args.on_log_error,
            connection_lines: true,
            splice: !args.no_splice,
            debug_log_delay: Duration::from_micros(args.debug_log_delay_us),
        })
    }
}

/// Parses the command line, accepting gotcpspy's single-dash long flags (`-host`, `-port`,
/// `-listen_port`, `-local_port`) by rewriting them to their double-dash form first: clap would
/// otherwise read `-host` as `-h -o -s -t`.
pub fn parse_args<I, T>(argv: I) -> std::result::Result<Args, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    Args::try_parse_from(argv.into_iter().map(|a| rewrite_legacy_flag(a.into())))
}

fn rewrite_legacy_flag(arg: OsString) -> OsString {
    const LEGACY: [&str; 4] = ["host", "port", "listen_port", "local_port"];
    let Some(s) = arg.to_str() else { return arg };
    let Some(rest) = s.strip_prefix('-') else {
        return arg;
    };
    if rest.starts_with('-') {
        return arg;
    }
    let name = rest.split('=').next().unwrap_or(rest);
    if LEGACY.contains(&name) {
        OsString::from(format!("-{s}"))
    } else {
        arg
    }
}

/// Parses `--log-queue` and `--buffer-size` (512 bytes to 16 MiB).
fn parse_queue_and_buffer(log_queue: &str, buffer_size: &str) -> Result<(usize, usize)> {
    let queue = parse_size(log_queue).with_context(|| format!("--log-queue {log_queue:?}"))?;
    let buffer =
        parse_size(buffer_size).with_context(|| format!("--buffer-size {buffer_size:?}"))?;
    if !(512..=16 << 20).contains(&buffer) {
        bail!("--buffer-size {buffer_size:?}: must be between 512 and 16M");
    }
    Ok((queue, buffer))
}

/// Parses a port number, saying "out of range" rather than "invalid digit" for 70000.
pub fn parse_port(s: &str) -> Result<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        bail!("the port must be a number from 0 to 65535");
    }
    s.parse::<u16>()
        .map_err(|_| anyhow!("port {s} out of range (0-65535)"))
}

/// Parses `--listen`: `IP:PORT`, `[IPv6]:PORT` or a bare `PORT`, which binds 127.0.0.1.
pub fn parse_listen(s: &str) -> Result<SocketAddr> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            parse_port(s)?,
        ));
    }
    let (host, port) = split_host_port(s)?;
    let port = parse_port(port)?;
    let ip: IpAddr = match host {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h.parse().map_err(|_| {
            anyhow!("{h:?} is not an IP address (listen takes IP:PORT, [IPv6]:PORT or PORT)")
        })?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// Parses `--forward [BIND:]PORT=HOST:PORT` into the listening address, the target as
/// written, and its host and port.
pub fn parse_forward(s: &str) -> Result<(SocketAddr, String, (String, u16))> {
    let (listen, target) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("expected [BIND:]PORT=HOST:PORT"))?;
    let listen = parse_listen(listen)?;
    Ok((listen, target.trim().to_string(), parse_target(target)?))
}

/// Parses `--target` into host and port; the host is not resolved here.
pub fn parse_target(s: &str) -> Result<(String, u16)> {
    let (host, port) = split_host_port(s.trim())?;
    if host.is_empty() {
        bail!("the host is missing (HOST:PORT)");
    }
    let port = parse_port(port)?;
    if port == 0 {
        bail!("the target port cannot be 0");
    }
    Ok((host.to_string(), port))
}

/// Splits `host:port` or `[v6]:port`; a bare IPv6 address without brackets is refused because
/// its last group cannot be told from a port.
fn split_host_port(s: &str) -> Result<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| anyhow!("missing ']' after the IPv6 address"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| anyhow!("missing :PORT after [{host}]"))?;
        return Ok((host, port));
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("missing :PORT (expected HOST:PORT)"))?;
    if host.contains(':') {
        bail!("an IPv6 address needs brackets: [{host}]:PORT");
    }
    Ok((host, port))
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Resolves the target once; the first address the resolver gives is used for the whole run.
pub fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let mut addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| anyhow!("cannot resolve {host:?}: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| anyhow!("cannot resolve {host:?}: no address"))
}

/// Parses `--log`: `hex`, `binary`, `pcap` (comma separated) or `none`.
pub fn parse_formats(s: &str) -> Result<Formats> {
    let mut f = Formats::default();
    let mut none = false;
    for word in s.split(',').map(str::trim) {
        match word {
            "hex" => f.hex = true,
            "binary" => f.binary = true,
            "pcap" => f.pcap = true,
            "none" => none = true,
            "" => bail!("empty format name"),
            other => bail!("unknown format {other:?} (known: hex, binary, pcap, none)"),
        }
    }
    if none && f.records() {
        bail!("`none` cannot be combined with other formats");
    }
    Ok(f)
}

/// Parses `--pcap`: `-` is stdout, anything else a file path.
pub fn parse_capture(p: &Path) -> Result<Capture> {
    if p.as_os_str().is_empty() {
        bail!("expected a file path, or - for stdout");
    }
    Ok(if p.as_os_str() == "-" {
        Capture::Stdout
    } else {
        Capture::File(p.to_path_buf())
    })
}

/// Parses a byte size: `65536`, `64K`, `64M`, `1G` (powers of 1024; `KiB`/`KB`/`B` accepted).
pub fn parse_size(s: &str) -> Result<usize> {
    let s = s.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        bail!("expected a size such as 65536, 64K or 64M");
    }
    let (num, unit) = s.split_at(digits);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        other => bail!("unknown size unit {other:?} (use K, M or G)"),
    };
    let n: usize = num.parse().map_err(|_| anyhow!("size {s} too large"))?;
    let size = n
        .checked_mul(1usize << shift)
        .ok_or_else(|| anyhow!("size {s} too large"))?;
    if size == 0 {
        bail!("the size must be greater than 0");
    }
    Ok(size)
}

/// Parses a duration: `10s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let digits = s
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (num, unit) = s.split_at(digits);
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow!("expected a duration such as 10s or 500ms"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => bail!("unknown duration unit {other:?} (use ms, s, m or h)"),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| anyhow!("duration {s} out of range"))
}

/// Creates the log directory if missing and proves it writable by creating a file in it.
fn prepare_log_dir(dir: &PathBuf) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("log directory {}", dir.display()))?;
    let probe = dir.join(format!(".tcpspy-probe-{}", std::process::id()));
    std::fs::File::create(&probe)
        .with_context(|| format!("log directory {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Fails at start-up, not on the logging thread, when the capture cannot go where it is asked.
fn check_capture_dir(path: &Path) -> Result<()> {
    if path.is_dir() {
        bail!(
            "--pcap {}: is a directory (give a file name, or use --log pcap and --log-dir)",
            path.display()
        );
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "--pcap {}: {} is not a directory",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

/// The end of the "listening on" line: what is logged, and where, and the live view.
pub fn logging_summary(config: &Config) -> String {
    let logs = logs_summary(config);
    match config.formats.live.map(|l| l.mode) {
        None => logs,
        Some(LiveMode::Hex) => format!("{logs}; live hex dump on stdout"),
        Some(LiveMode::Text) => format!("{logs}; live text on stdout"),
    }
}

fn logs_summary(config: &Config) -> String {
    let f = config.formats;
    if f.is_none() {
        return "logging none".into();
    }
    let dir = config.log_dir.display();
    if !f.pcap || config.capture == Capture::LogDir {
        return format!("logging {f} in {dir}");
    }
    let files = Formats { pcap: false, ..f };
    if files.is_none() {
        format!("logging pcap to {}", config.capture)
    } else {
        format!("logging {files} in {dir}, pcap to {}", config.capture)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        let mut v = vec!["tcpspy"];
        v.extend_from_slice(list);
        match parse_args(v) {
            Ok(a) => a,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen("8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parse_listen("0.0.0.0:80").unwrap(),
            "0.0.0.0:80".parse().unwrap()
        );
        assert_eq!(
            parse_listen("[::1]:9000").unwrap(),
            "[::1]:9000".parse().unwrap()
        );
        assert_eq!(
            parse_listen("localhost:1").unwrap(),
            "127.0.0.1:1".parse().unwrap()
        );
        assert!(
            parse_listen("70000")
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
        assert!(
            parse_listen("::1:80")
                .unwrap_err()
                .to_string()
                .contains("brackets")
        );
        assert!(parse_listen("example.com:80").is_err());
        assert!(parse_listen("").is_err());
        assert!(parse_listen("[::1]").is_err());
        assert!(parse_listen("1.2.3.4:").is_err());
    }

    #[test]
    fn forward_forms() {
        let (l, name, t) = parse_forward("5432=db.example:5432").unwrap();
        assert_eq!(l, "127.0.0.1:5432".parse().unwrap());
        assert_eq!(
            (name.as_str(), t),
            ("db.example:5432", ("db.example".into(), 5432))
        );
        let (l, _, t) = parse_forward("[::1]:8080=[::1]:80").unwrap();
        assert_eq!(l, "[::1]:8080".parse().unwrap());
        assert_eq!(t, ("::1".into(), 80));
        assert_eq!(
            parse_forward("0.0.0.0:1=h:2").unwrap().0,
            "0.0.0.0:1".parse().unwrap()
        );
        assert!(parse_forward("8080").is_err());
        assert!(parse_forward("8080=").is_err());
        assert!(parse_forward("=h:1").is_err());
        assert!(parse_forward("99999=h:1").is_err());
    }

    #[test]
    fn several_rules() {
        let c = Config::from_args(args(&[
            "-l",
            "1",
            "-t",
            "127.0.0.1:2",
            "-L",
            "3=127.0.0.1:4",
            "--forward",
            "[::1]:5=[::1]:6",
            "--log",
            "none",
        ]))
        .unwrap();
        let r: Vec<(String, String)> = c
            .rules
            .iter()
            .map(|r| (r.listen.to_string(), r.target.to_string()))
            .collect();
        assert_eq!(
            r,
            [
                ("127.0.0.1:1", "127.0.0.1:2"),
                ("127.0.0.1:3", "127.0.0.1:4"),
                ("[::1]:5", "[::1]:6")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(c.rules[1].spec, "--forward 3=127.0.0.1:4");
        let c = Config::from_args(args(&["-L", "3=127.0.0.1:4", "--log", "none"])).unwrap();
        assert_eq!(c.rules.len(), 1, "--forward alone needs no --listen");
        assert!(!c.reuse_port);
    }

    #[test]
    fn target_forms() {
        assert_eq!(
            parse_target("example.com:80").unwrap(),
            ("example.com".into(), 80)
        );
        assert_eq!(parse_target("[::1]:5432").unwrap(), ("::1".into(), 5432));
        assert!(parse_target(":80").is_err());
        assert!(parse_target("host:0").is_err());
        assert!(
            parse_target("host:99999")
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
        assert!(parse_target("host").is_err());
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("4k").unwrap(), 4096);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert!(parse_size("0").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("5T").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("1e999").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(
            parse_formats("hex,binary").unwrap(),
            Formats {
                hex: true,
                binary: true,
                pcap: false,
                live: None
            }
        );
        assert_eq!(
            parse_formats("binary").unwrap(),
            Formats {
                hex: false,
                binary: true,
                pcap: false,
                live: None
            }
        );
        assert!(parse_formats("none").unwrap().is_none());
        assert!(parse_formats("none,hex").is_err());
        assert!(parse_formats("pdf").is_err());
        assert_eq!(
            parse_formats("hex, binary").unwrap().to_string(),
            "hex,binary"
        );
        let all = parse_formats("pcap,hex,binary").unwrap();
        assert!(all.pcap && all.hex && all.binary);
        assert_eq!(all.to_string(), "hex,binary,pcap");
        assert!(parse_formats("pcap").unwrap().wants_data());
        assert!(parse_formats("none,pcap").is_err());
    }

    #[test]
    fn pcap_flag() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let base = ["-l", "1", "-t", "127.0.0.1:5432", "-d", d];
        let with = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            Config::from_args(args(&v))
        };
        // --log pcap: the capture goes to the log directory.
        let c = with(&["--log", "pcap"]).unwrap();
        assert!(c.formats.pcap && !c.formats.hex);
        assert_eq!(c.capture, Capture::LogDir);
        assert_eq!(logging_summary(&c), format!("logging pcap in {d}"));
        // --pcap PATH adds pcap to the default formats and names the file.
        let path = dir.path().join("x.pcapng");
        let c = with(&["--pcap", path.to_str().unwrap()]).unwrap();
        assert_eq!(c.formats.to_string(), "hex,binary,pcap");
        assert_eq!(c.capture, Capture::File(path.clone()));
        assert_eq!(
            logging_summary(&c),
            format!("logging hex,binary in {d}, pcap to {}", path.display())
        );
        let c = with(&["--log", "pcap", "--pcap", path.to_str().unwrap()]).unwrap();
        assert_eq!(
            logging_summary(&c),
            format!("logging pcap to {}", path.display())
        );
        assert_eq!(parse_capture(Path::new("-")).unwrap(), Capture::Stdout);
        assert!(parse_capture(Path::new("")).is_err());
        let e = with(&["--pcap", d]).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        let e = with(&["--log", "none", "--pcap", "x.pcapng"]).unwrap_err();
        assert!(e.to_string().contains("--log pcap --pcap x.pcapng"), "{e}");
        let missing = dir.path().join("no/such/dir/x.pcapng");
        let e = with(&["--pcap", missing.to_str().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("is not a directory"), "{e}");
    }

    #[test]
    fn live_view_flags() {
        let base = ["-l", "1", "-t", "127.0.0.1:2", "--log", "none"];
        let with = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            Config::from_args(args(&v))
        };
        let c = with(&[]).unwrap();
        assert_eq!(c.formats.live, None);
        assert!(!c.formats.wants_data());
        // --log none -x: the bytes reach the logger, and still nothing is recorded.
        let c = with(&["-x"]).unwrap();
        assert_eq!(c.formats.live.map(|l| l.mode), Some(LiveMode::Hex));
        assert!(c.formats.wants_data() && c.formats.is_none());
        assert_eq!(c.formats.to_string(), "none");
        assert_eq!(logging_summary(&c), "logging none; live hex dump on stdout");
        let c = with(&["--text"]).unwrap();
        assert_eq!(c.formats.live.map(|l| l.mode), Some(LiveMode::Text));
        assert_eq!(logging_summary(&c), "logging none; live text on stdout");
        assert!(parse_args(["tcpspy", "-x", "--text"]).is_err());
        let e = Config::from_args(args(&[
            "-l",
            "1",
            "-t",
            "127.0.0.1:2",
            "--log",
            "pcap",
            "--pcap",
            "-",
            "--hexdump",
        ]))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "-x/--hexdump and --pcap - would both write to stdout; give the capture a file \
             (--pcap PATH)"
        );
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        fn set(v: &str) -> Option<&OsStr> {
            Some(OsStr::new(v))
        }
        assert!(wants_colour(true, None));
        assert!(wants_colour(true, set("")), "an empty NO_COLOR is unset");
        assert!(!wants_colour(true, set("1")));
        assert!(!wants_colour(true, set("0")), "any value counts");
        assert!(!wants_colour(false, None));
        assert!(!wants_colour(false, set("")));
    }

    #[test]
    fn legacy_flags_are_aliases() {
        let a = args(&["-host", "10.0.0.1", "-port", "110", "-listen_port", "8080"]);
        assert_eq!(a.host.as_deref(), Some("10.0.0.1"));
        assert_eq!(a.port.as_deref(), Some("110"));
        assert_eq!(a.listen_port.as_deref(), Some("8080"));
        let a = args(&["--host=h", "--port=1", "-local_port=9"]);
        assert_eq!(a.listen_port.as_deref(), Some("9"));
        let c = Config::from_args(args(&[
            "-host",
            "127.0.0.1",
            "-port",
            "110",
            "-listen_port",
            "8080",
            "--log",
            "none",
        ]))
        .unwrap();
        assert_eq!(c.rules[0].listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.rules[0].target, "127.0.0.1:110".parse().unwrap());
        assert_eq!(c.rules[0].target_name, "127.0.0.1:110");
    }

    #[test]
    fn short_flags_and_defaults() {
        let c =
            Config::from_args(args(&["-l", "[::1]:0", "-t", "[::1]:7", "--log", "none"])).unwrap();
        assert_eq!(c.rules[0].listen, "[::1]:0".parse().unwrap());
        assert_eq!(c.rules[0].target_name, "[::1]:7");
        assert_eq!(c.log_queue, 64 << 20);
        assert_eq!(c.buffer_size, 64 << 10);
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, None);
        assert_eq!(c.max_connections, 10_000);
        assert_eq!(c.on_log_error, LogErrorAction::Report);
        let c = Config::from_args(args(&[
            "-l",
            "1",
            "-t",
            "127.0.0.1:2",
            "--log",
            "none",
            "--idle-timeout",
            "90s",
            "--on-log-error",
            "exit",
            "--max-open-files",
            "7",
        ]))
        .unwrap();
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(90)));
        assert_eq!(c.on_log_error, LogErrorAction::Exit);
        assert_eq!(c.max_open_files, Some(7));
        let a = args(&["-l", "1", "-t", "h:1"]);
        assert_eq!(a.log_dir, PathBuf::from("."));
        assert_eq!(
            parse_formats(&a.log).unwrap(),
            Formats {
                hex: true,
                binary: true,
                pcap: false,
                live: None
            }
        );
        assert_eq!(a.pcap, None);
    }

    #[test]
    fn bench_subcommand() {
        let a = args(&["bench"]);
        let Some(Command::Bench(b)) = a.command else {
            panic!("no bench subcommand");
        };
        let c = BenchConfig::from_args(b).unwrap();
        assert_eq!(c.mode, BenchMode::Download);
        assert_eq!(c.bytes, 256 << 20);
        assert_eq!((c.rounds, c.connections), (3, 1));
        assert_eq!(c.formats.to_string(), "hex,binary");
        assert!(!c.keep_logs && !c.json);
        let a = args(&[
            "bench",
            "--rtt",
            "--rtt-sizes",
            "64,16K",
            "--exchanges",
            "50",
            "--log",
            "none",
        ]);
        let Some(Command::Bench(b)) = a.command else {
            panic!("no bench subcommand");
        };
        let c = BenchConfig::from_args(b).unwrap();
        assert_eq!(
            c.mode,
            BenchMode::Rtt {
                sizes: vec![64, 16 << 10],
                exchanges: 50
            }
        );
        assert!(c.formats.is_none());
        // The proxy's flags keep working without a subcommand, and do not mix with one.
        assert!(args(&["-l", "1", "-t", "h:1"]).command.is_none());
        assert!(parse_args(["tcpspy", "--listen", "1", "bench"]).is_err());
        assert!(parse_args(["tcpspy", "bench", "--listen", "1"]).is_err());
        let bad = |list: &[&str]| {
            let mut v = vec!["tcpspy", "bench"];
            v.extend_from_slice(list);
            match parse_args(v).map(|a| a.command) {
                Ok(Some(Command::Bench(b))) => BenchConfig::from_args(b).is_err(),
                _ => true,
            }
        };
        assert!(bad(&["--bytes", "0"]));
        assert!(bad(&["--bytes", "2", "--connections", "3"]));
        assert!(bad(&["--rounds", "0"]));
        assert!(bad(&["--connections", "0"]));
        assert!(bad(&["--rtt", "--exchanges", "0"]));
        assert!(bad(&["--rtt", "--rtt-sizes", "64,,1K"]));
        assert!(!bad(&["--bytes", "1G", "--connections", "8"]));
    }

    #[test]
    fn missing_and_conflicting() {
        let e = Config::from_args(args(&["-l", "1"])).unwrap_err();
        assert!(e.to_string().contains("--target is required"));
        let e = Config::from_args(args(&["-t", "127.0.0.1:1"])).unwrap_err();
        assert!(e.to_string().contains("--listen is required"));
        assert!(parse_args(["tcpspy", "-t", "a:1", "--host", "b", "--port", "2"]).is_err());
        assert!(parse_args(["tcpspy", "--host", "b"]).is_err());
    }
}

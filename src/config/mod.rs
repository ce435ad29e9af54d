//! What tcpspy runs on, checked: the [`Config`] the command line becomes, its rules and log
//! settings, and ([`parse`]) the pure parsers and typed values that every flag goes through.
//! A leaf: the command line builds these, the reactor, the logging thread and the bench read
//! them, and this module depends on none of them.

pub mod parse;

use std::ffi::OsStr;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The defaults of the flags that the proxy and the bench share, as the user would type them.
pub mod defaults {
    /// `--log-queue`: enough for bursts, small enough for small machines. A bigger queue
    /// costs its size in memory under a slow reader or a slow disk and buys no throughput once
    /// traffic outlasts a burst (measured side by side: README, "Performance").
    pub const LOG_QUEUE: &str = "8M";
    /// `--buffer-size`.
    pub const BUFFER_SIZE: &str = "64K";
    /// `--connect-timeout`.
    pub const CONNECT_TIMEOUT: &str = "10s";
    /// `--max-connections`.
    pub const MAX_CONNECTIONS: usize = 10_000;
    /// `--log`.
    pub const FORMATS: &str = "hex,binary";
}

/// Bounds of `--buffer-size`: a relay buffer from 512 bytes to 16 MiB.
pub const BUFFER_SIZE_RANGE: (u64, u64) = (512, 16 << 20);
/// Bounds of `--log-queue`: at least two chunks of the largest buffer fit the smallest queue
/// only if the user says so; 64 KiB to 4 GiB.
pub const LOG_QUEUE_RANGE: (u64, u64) = (64 << 10, 4 << 30);
/// Bounds of `--log-budget`: at least 64 KiB (room for a few connections' records and the
/// reserve kept for their ends), at most [`parse::MAX_SIZE`].
pub const LOG_BUDGET_RANGE: (u64, u64) = (64 << 10, parse::MAX_SIZE);
/// Most connections at once: each is two descriptors and its state.
pub const MAX_CONNECTIONS: usize = 1 << 20;
/// Most log files kept open at once.
pub const MAX_OPEN_FILES: usize = 1 << 20;

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

    /// True when something is written into the log directory (the capture may go elsewhere).
    pub fn uses_log_dir(&self, capture: &Capture) -> bool {
        self.hex || self.binary || (self.pcap && *capture == Capture::LogDir)
    }
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

/// Everything the proxy runs on, validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub rules: Vec<Rule>,
    /// Listen with SO_REUSEPORT, and put the process id in connection numbers.
    pub reuse_port: bool,
    pub log_dir: PathBuf,
    pub formats: Formats,
    pub capture: Capture,
    pub log_queue: usize,
    /// `--log-budget`: the most bytes this run keeps in its log files (`None`: no cap).
    pub log_budget: Option<u64>,
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
    /// Faults: each rule's toxics, the seed, the control API (`--fault`, `--faults`,
    /// `--control`, `--seed`).
    pub faults: crate::faults::Plan,
    /// The proxy listeners (`--socks5`, `--http-proxy`, `--transparent`): each rule's kind,
    /// by rule index (a rule past the end is a forward rule), and who may use them.
    pub proxy: ProxyPlan,
    /// `--tls` and its companions; `None` without `--tls`.
    pub tls: Option<TlsConfig>,
}

/// The TLS interception's part of the [`Config`] (`--tls`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// By rule index: intercept TLS on this rule's connections.
    pub rules: Vec<bool>,
    /// `--ca-dir` (default `$XDG_CONFIG_HOME/tcpspy`, else `~/.config/tcpspy`).
    pub ca_dir: Option<PathBuf>,
    /// `--tls-cert`, `--tls-key`.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// `--target-ca`.
    pub target_ca: Option<PathBuf>,
    /// `--insecure`.
    pub insecure: bool,
    /// `--keylog`, else `SSLKEYLOGFILE`.
    pub keylog: Option<PathBuf>,
}

impl TlsConfig {
    /// True if rule `rule` intercepts TLS.
    pub fn on(&self, rule: usize) -> bool {
        self.rules.get(rule).copied().unwrap_or(false)
    }
}

/// The proxy listeners' part of the [`Config`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyPlan {
    pub kinds: Vec<crate::proxy::Kind>,
    pub policy: crate::proxy::Policy,
}

impl ProxyPlan {
    pub fn kind(&self, rule: usize) -> crate::proxy::Kind {
        self.kinds.get(rule).copied().unwrap_or_default()
    }

    pub fn is_on(&self) -> bool {
        self.kinds.iter().any(|k| *k != crate::proxy::Kind::Forward)
    }
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
}

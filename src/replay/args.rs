//! The flags of `tcpspy replay` and `tcpspy mock`, as clap parses them (typed by the parsers
//! of [`crate::config::parse`]); [`super::run`] checks them as a whole.

use std::path::PathBuf;

use clap::Args;

use super::mock::OnMismatch;
use super::script::Pace;
use crate::config::parse::{Listen, Span, Target};
use crate::config::{Capture, Formats};

/// Where the new conversation is recorded: like any connection, but only when asked (a
/// replay run to compare writes no file unless told to).
#[derive(Args, Debug, Clone)]
pub struct Record {
    /// Record the new conversation into this directory (created if missing), as tcpspy
    /// records any connection: hex dump and binary logs unless --log says otherwise
    #[arg(short = 'd', long = "log-dir", value_name = "DIR")]
    pub log_dir: Option<PathBuf>,

    /// What to record: a comma list of `hex`, `binary` and `pcap`, or `none` (the default
    /// without --log-dir; `hex,binary` with it)
    #[arg(long = "log", value_name = "FORMATS")]
    pub log: Option<Formats>,

    /// Where the capture goes (adds `pcap` to --log): a new file PATH
    #[arg(long = "pcap", value_name = "PATH")]
    pub pcap: Option<Capture>,
}

/// `tcpspy replay SOURCE --target HOST:PORT`.
#[derive(Args, Debug, Clone)]
pub struct ReplayArgs {
    /// The recording: a log directory (with --connection N), a hex dump (tcpspy's or
    /// gotcpspy's), a capture (with --connection N if it holds several), or a client-side
    /// binary log
    #[arg(value_name = "SOURCE")]
    pub source: PathBuf,

    /// The server to replay against: HOST:PORT, IP:PORT or [IPv6]:PORT
    #[arg(short = 't', long, value_name = "HOST:PORT")]
    pub target: Target,

    /// Which connection of a log directory or capture: its number (`0001` or `1`)
    #[arg(short = 'c', long, value_name = "N")]
    pub connection: Option<String>,

    /// How long a client chunk waits for the server bytes recorded before it; then it goes
    /// anyway (and the end waits as long for the server's); 0 waits for ever
    #[arg(long = "turn-timeout", value_name = "DURATION", default_value = "2s")]
    pub turn_timeout: Span,

    /// `asap`: each chunk as soon as its turn comes; `original`: after the recorded gap
    #[arg(long, value_name = "PACE", default_value = "asap")]
    pub pace: Pace,

    /// A byte regex masked out of both answers before they are compared (repeatable), e.g.
    /// 'Date: [^\r]*'
    #[arg(long = "ignore", value_name = "REGEX")]
    pub ignore: Vec<String>,

    /// Print the result as one JSON object on stdout
    #[arg(long)]
    pub json: bool,

    /// Give up connecting to the target after this long
    #[arg(long = "connect-timeout", value_name = "DURATION", default_value = crate::config::defaults::CONNECT_TIMEOUT)]
    pub connect_timeout: Span,

    #[command(flatten)]
    pub record: Record,
}

/// `tcpspy mock SOURCE --listen [BIND:]PORT`.
#[derive(Args, Debug, Clone)]
pub struct MockArgs {
    /// The recordings: a hex dump, a capture (each conversation), a log directory (each
    /// connection; with --connection N only that one) or a directory of recordings
    #[arg(value_name = "SOURCE")]
    pub source: PathBuf,

    /// Where to listen: [BIND:]PORT (a bare port binds 127.0.0.1)
    #[arg(short = 'l', long, value_name = "[BIND:]PORT")]
    pub listen: Listen,

    /// Only this connection of a log directory or capture
    #[arg(short = 'c', long, value_name = "N")]
    pub connection: Option<String>,

    /// What a client that departs from the recorded one gets: `close`, `reset`, or
    /// `continue` (answers go on, turn by turn)
    #[arg(long = "on-mismatch", value_name = "ACTION", default_value = "close")]
    pub on_mismatch: OnMismatch,

    /// `asap`: each answer as soon as its turn comes; `original`: after the recorded gap
    #[arg(long, value_name = "PACE", default_value = "asap")]
    pub pace: Pace,

    #[command(flatten)]
    pub record: Record,
}

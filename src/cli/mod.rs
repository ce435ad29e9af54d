//! The command line: what the user types, parsed by clap into typed values (every flag's
//! value goes through a parser of [`crate::config::parse`]), then checked as a whole and
//! resolved into a [`Config`]: the target resolved once (at start-up, never on the reactor),
//! the log directory prepared. Nothing past this module sees a raw string.
//!
//! Two stages, as ripgrep does it: [`Args`] is what clap parses; [`config`] validates the
//! combination and does the start-up I/O. Subcommands keep their own flags with their code
//! (`tcpspy bench`: [`crate::bench::args`]).

use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};

use crate::bench::args::BenchArgs;
use crate::config::parse::{self, Forward, Listen, Optional, Port, Size, Span, Target};
use crate::config::{
    self, Capture, Config, Formats, Live, LiveMode, LogErrorAction, Rule, defaults,
};

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
#[derive(Parser, Debug)]
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
    pub listen: Option<Listen>,

    /// Where to relay each connection: HOST:PORT, IP:PORT or [IPv6]:PORT; a name is resolved
    /// once, at start-up
    #[arg(short = 't', long, value_name = "HOST:PORT", conflicts_with_all = ["host", "port"])]
    pub target: Option<Target>,

    /// Directory for the log files (created if missing)
    #[arg(short = 'd', long = "log-dir", value_name = "DIR", default_value = ".")]
    pub log_dir: PathBuf,

    /// What to record: a comma list of `hex`, `binary` and `pcap` (one Wireshark capture of
    /// every connection), or `none`
    #[arg(long = "log", value_name = "FORMATS", default_value = defaults::FORMATS)]
    pub log: Formats,

    /// Where the capture goes: a new file PATH, or `-` for stdout (pipe it into `wireshark -k -i
    /// -` or `tshark -r -`). Adds `pcap` to --log. Default: capture-<time>.pcapng in the log
    /// directory
    #[arg(long = "pcap", value_name = "PATH|-")]
    pub pcap: Option<Capture>,

    /// Print every chunk to stdout as it is relayed, as a hex dump (the layout of the log
    /// files), each headed by its connection, direction and time
    #[arg(short = 'x', long = "hexdump", conflicts_with = "text")]
    pub hexdump: bool,

    /// Print every chunk to stdout as it is relayed, as text: control and non-ASCII bytes are
    /// escaped (\r, \t, \x1b), a newline is a line break
    #[arg(long = "text")]
    pub text: bool,

    /// Most bytes waiting for the logging thread (64K to 4G); when full, tcpspy stops reading
    /// sockets and accepting until the logger catches up (nothing is dropped). Suffixes K, M, G
    /// (powers of 1024)
    #[arg(long = "log-queue", value_name = "SIZE", default_value = defaults::LOG_QUEUE,
          value_parser = parse::log_queue)]
    pub log_queue: Size,

    /// Most bytes this run keeps in its log files (64K and up): past it, the files of the oldest
    /// finished connections are removed (each removal noted in connections.jsonl), and when
    /// only open connections are left their data is not recorded until there is room again
    /// (relaying goes on; the hex dumps say what they miss). Default: no cap
    #[arg(long = "log-budget", value_name = "SIZE", value_parser = parse::log_budget)]
    pub log_budget: Option<Size>,

    /// Size of each relay buffer (512 to 16M; one per direction, only while data is in flight)
    #[arg(long = "buffer-size", value_name = "SIZE", default_value = defaults::BUFFER_SIZE,
          value_parser = parse::buffer_size)]
    pub buffer_size: Size,

    /// Give up connecting to the target after this long (e.g. 10s, 500ms; at most 365d)
    #[arg(long = "connect-timeout", value_name = "DURATION",
          default_value = defaults::CONNECT_TIMEOUT)]
    pub connect_timeout: Span,

    /// Another forwarding rule, [BIND:]PORT=HOST:PORT (repeatable; BIND defaults to
    /// 127.0.0.1): `-L 5432=db:5432 -L 0.0.0.0:8080=web:80`
    #[arg(short = 'L', long = "forward", value_name = "[BIND:]PORT=HOST:PORT")]
    pub forward: Vec<Forward>,

    /// With `--log none`, relay with read and write instead of splice(2) (which moves the
    /// bytes from socket to socket inside the kernel); for comparisons and old kernels
    #[arg(long = "no-splice")]
    pub no_splice: bool,

    /// Let several tcpspy processes listen on the same port (SO_REUSEPORT); the kernel spreads
    /// connections over them. Connection numbers then carry the process id
    #[arg(long = "reuse-port")]
    pub reuse_port: bool,

    /// Close a connection after this long without a byte either way (e.g. 5m); `off` (the
    /// default) or 0 for never
    #[arg(long = "idle-timeout", value_name = "DURATION", default_value = "off")]
    pub idle_timeout: Optional,

    /// Most connections relayed at once; past it, new clients wait in the kernel's backlog
    #[arg(long = "max-connections", value_name = "N",
          default_value_t = defaults::MAX_CONNECTIONS, value_parser = max_connections)]
    pub max_connections: usize,

    /// Most log files open at once (the others are reopened when written); default: an eighth
    /// of the descriptor limit, at most 1024
    #[arg(long = "max-open-files", value_name = "N", value_parser = max_open_files)]
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
    pub port: Option<Port>,

    /// gotcpspy's -listen_port: the port to listen on (127.0.0.1, unlike gotcpspy)
    #[arg(
        long = "listen_port",
        alias = "local_port",
        value_name = "PORT",
        help_heading = "gotcpspy compatibility"
    )]
    pub listen_port: Option<Listen>,

    /// A fault on the relayed connections, Toxiproxy's toxic with its attributes:
    /// TYPE[:ATTR=VALUE,...] (repeatable), e.g. `latency:latency=300,jitter=50`. Types:
    /// latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data, corrupt;
    /// besides the type's attributes: stream=upstream|downstream|both, toxicity=P, name=N,
    /// match=REGEX or after_bytes=N (wait for them before acting), proxy=NAME (one rule:
    /// rule1, rule2, ... in the order given, or a --faults proxy's name; default every rule)
    #[arg(long = "fault", value_name = "TYPE[:ATTR=VALUE,...]", value_parser = parse_fault,
          help_heading = "Faults")]
    pub fault: Vec<crate::faults::spec::Flag>,

    /// Toxiproxy's populate JSON: an array of {name, listen, upstream, enabled, toxics}; each
    /// proxy is one more rule, with its toxics
    #[arg(long = "faults", value_name = "FILE", help_heading = "Faults")]
    pub faults: Option<PathBuf>,

    /// Serve Toxiproxy's HTTP API on [BIND:]PORT (BIND defaults to 127.0.0.1), so that its
    /// clients add and remove proxies and toxics while tcpspy runs
    #[arg(long = "control", value_name = "[BIND:]PORT", help_heading = "Faults")]
    pub control: Option<Listen>,

    /// The seed of the faults' random numbers (toxicity, jitter, slicer, corrupt): the same
    /// seed repeats a run. Default: drawn at start-up, and said on stderr
    #[arg(long = "seed", value_name = "N", help_heading = "Faults")]
    pub seed: Option<u64>,

    /// A SOCKS5 proxy listener on [BIND:]PORT (repeatable; BIND defaults to 127.0.0.1):
    /// clients name their destination (IPv4, IPv6 or a host name, resolved off the reactor)
    #[arg(
        long = "socks5",
        value_name = "[BIND:]PORT",
        help_heading = "Proxy listeners"
    )]
    pub socks5: Vec<Listen>,

    /// An HTTP proxy listener on [BIND:]PORT (repeatable): `CONNECT host:port` tunnels, and
    /// requests in absolute form (`GET http://host/...`) are relayed to their host
    #[arg(
        long = "http-proxy",
        value_name = "[BIND:]PORT",
        help_heading = "Proxy listeners"
    )]
    pub http_proxy: Vec<Listen>,

    /// A listener for connections the firewall redirected (iptables -j REDIRECT, nftables
    /// redirect): each goes to its original destination (SO_ORIGINAL_DST)
    #[arg(
        long = "transparent",
        value_name = "[BIND:]PORT",
        help_heading = "Proxy listeners"
    )]
    pub transparent: Vec<Listen>,

    /// The proxy listeners' only user and password: SOCKS5 username/password (RFC 1929),
    /// HTTP `Proxy-Authorization: Basic`
    #[arg(long = "proxy-auth", value_name = "USER:PASS", value_parser = parse_proxy_auth,
          help_heading = "Proxy listeners")]
    pub proxy_auth: Option<(String, String)>,

    /// A destination the proxy listeners may connect to (repeatable; default: any): a host
    /// glob (`*.example.com`), an address or CIDR (`10.0.0.0/8`, `[::1]`), or `*`, each with an
    /// optional `:PORT` (`*:443`). Others are refused (SOCKS "not allowed by ruleset", HTTP 403)
    #[arg(long = "allow", value_name = "PATTERN", value_parser = parse_allow,
          help_heading = "Proxy listeners")]
    pub allow: Vec<crate::proxy::Pattern>,

    /// See inside TLS: a client's ClientHello (at the start, or after a STARTTLS-style
    /// go-ahead such as PostgreSQL's) is answered by tcpspy, which connects to the target with
    /// TLS itself, so every record holds the plaintext. `--tls` for every rule, or
    /// `--tls=NAMES` (comma-separated: rule1, rule2, ... in the order given, a --faults proxy's
    /// name, or socks5, http-proxy, transparent for those listeners)
    #[arg(long = "tls", value_name = "NAMES", num_args = 0..=1, require_equals = true,
          default_missing_value = "", help_heading = "TLS")]
    pub tls: Option<String>,

    /// Where tcpspy keeps its CA (made on first use): tcpspy-ca.pem is the certificate
    /// clients must trust. Default: $XDG_CONFIG_HOME/tcpspy, else ~/.config/tcpspy
    #[arg(
        long = "ca-dir",
        value_name = "DIR",
        requires = "tls",
        help_heading = "TLS"
    )]
    pub ca_dir: Option<PathBuf>,

    /// Serve this certificate (PEM chain) to every client instead of making one per name
    #[arg(long = "tls-cert", value_name = "FILE", requires_all = ["tls", "tls_key"],
          help_heading = "TLS")]
    pub tls_cert: Option<PathBuf>,

    /// The key of --tls-cert (PEM)
    #[arg(
        long = "tls-key",
        value_name = "FILE",
        requires = "tls_cert",
        help_heading = "TLS"
    )]
    pub tls_key: Option<PathBuf>,

    /// Verify targets' certificates against the CAs in this PEM file instead of the system's
    #[arg(
        long = "target-ca",
        value_name = "FILE",
        requires = "tls",
        help_heading = "TLS"
    )]
    pub target_ca: Option<PathBuf>,

    /// Do not verify targets' certificates (the record says so)
    #[arg(
        long = "insecure",
        requires = "tls",
        conflicts_with = "target_ca",
        help_heading = "TLS"
    )]
    pub insecure: bool,

    /// Write both legs' TLS secrets to FILE in the NSS key log format (Wireshark reads it);
    /// SSLKEYLOGFILE does the same when set
    #[arg(
        long = "keylog",
        value_name = "FILE",
        requires = "tls",
        help_heading = "TLS"
    )]
    pub keylog: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

fn parse_proxy_auth(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((u, p)) if !u.is_empty() && u.len() <= 255 && p.len() <= 255 => {
            Ok((u.to_string(), p.to_string()))
        }
        _ => Err("expected USER:PASS (each at most 255 bytes, USER not empty)".into()),
    }
}

fn parse_allow(s: &str) -> Result<crate::proxy::Pattern, String> {
    s.parse()
}

fn parse_fault(s: &str) -> Result<crate::faults::spec::Flag, String> {
    crate::faults::spec::parse_flag(s)
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

    /// Plays a recorded connection again against a server and compares the answers
    ///
    /// Connects to --target and sends the recorded client's chunks turn by turn: each waits
    /// until the server has sent as many bytes as it had before that chunk in the recording
    /// (or --turn-timeout). Then compares the server's answer with the recorded one: identical
    /// exits 0; different prints the first difference as a hex dump excerpt of both sides and
    /// exits 1; an error (cannot connect, bad recording) exits 2. The new conversation is
    /// recorded like any connection with --log-dir.
    Replay(crate::replay::args::ReplayArgs),

    /// Answers clients as the recorded server did
    ///
    /// Listens on --listen; once a client has sent what the recorded client sent up to a
    /// turn, it gets the server's bytes of that turn, and the recorded end (FIN or reset).
    /// Given several recordings (a directory, a capture), each client gets the first whose
    /// first client chunk matches. A client that departs gets --on-mismatch; the mismatch
    /// goes to stderr and to the logs. Runs until SIGINT or SIGTERM.
    Mock(crate::replay::args::MockArgs),
}

fn max_connections(s: &str) -> Result<usize> {
    parse::count(s, 1, config::MAX_CONNECTIONS)
}

fn max_open_files(s: &str) -> Result<usize> {
    parse::count(s, 1, config::MAX_OPEN_FILES)
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

/// A clap error as tcpspy's one line: `invalid value 'lots' for '--log-queue <SIZE>': ...`.
/// clap's own rendering spreads over several lines (a usage block, a hint); start-up errors
/// are one line on stderr.
pub fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty() && !l.starts_with("Usage:"))
        .collect();
    let joined = lines.join(" ");
    joined
        .strip_prefix("error: ")
        .unwrap_or(&joined)
        .to_string()
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

/// Checks the arguments as a whole, resolves the targets and prepares the log directory.
pub fn config(args: Args) -> Result<Config> {
    let short_form = args.listen.is_some()
        || args.listen_port.is_some()
        || args.target.is_some()
        || args.host.is_some()
        || (args.forward.is_empty()
            && args.faults.is_none()
            && args.control.is_none()
            && args.socks5.is_empty()
            && args.http_proxy.is_empty()
            && args.transparent.is_empty());
    // Rules as written, resolved after the checks below.
    let mut specs: Vec<(String, SocketAddr, Target)> = Vec::new();
    if short_form {
        let listen = match (args.listen, args.listen_port) {
            (Some(Listen(l)), _) | (None, Some(Listen(l))) => l,
            (None, None) => bail!("--listen is required (for example --listen 8080)"),
        };
        let target = match (&args.target, &args.host, args.port) {
            (Some(t), _, _) => t.clone(),
            (None, Some(h), Some(Port(p))) => Target::new(h, p),
            _ => bail!("--target is required (for example --target 127.0.0.1:8000)"),
        };
        let spec = format!("--listen {listen} --target {}", target.text);
        specs.push((spec, listen, target));
    }
    for f in &args.forward {
        specs.push((format!("--forward {}", f.text), f.listen, f.target.clone()));
    }
    let mut formats = args.log;
    let capture = match &args.pcap {
        None => Capture::LogDir,
        Some(c) => {
            if formats.is_none() {
                bail!(
                    "--log none and --pcap contradict each other \
                     (for the capture alone: --log pcap --pcap {c})"
                );
            }
            formats.pcap = true;
            c.clone()
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
            colour: config::wants_colour(
                std::io::stdout().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            ),
        });
    }
    if capture == Capture::Stdout && std::io::stdout().is_terminal() {
        // A capture holds the network's bytes: on a terminal they would be escape codes.
        bail!("--pcap -: stdout is a terminal; pipe it (| wireshark -k -i -) or give a file");
    }
    let file_proxies = match &args.faults {
        Some(path) => load_faults(path)?,
        None => Vec::new(),
    };
    let mut names: Vec<String> = (1..=specs.len()).map(|i| format!("rule{i}")).collect();
    let mut upstreams: Vec<String> = specs.iter().map(|(_, _, t)| t.text.clone()).collect();
    let mut toxics: Vec<Vec<crate::faults::Toxic>> = vec![Vec::new(); specs.len()];
    let mut disabled = Vec::new();
    for p in file_proxies {
        if !p.enabled {
            disabled.push(p);
            continue;
        }
        let path = args.faults.as_deref().unwrap_or(Path::new("")).display();
        let listen = crate::control::addr::listen(&p.listen)
            .map_err(|e| anyhow!("--faults {path}: proxy {:?}: {e}", p.name))?;
        let target = crate::control::addr::upstream(&p.upstream)
            .map_err(|e| anyhow!("--faults {path}: proxy {:?}: {e}", p.name))?;
        specs.push((
            format!("--faults {path} (proxy {:?})", p.name),
            listen,
            target,
        ));
        names.push(p.name.clone());
        upstreams.push(p.upstream.clone());
        toxics.push(p.toxics);
    }
    let proxies: Vec<(crate::proxy::Kind, std::net::SocketAddr)> = [
        (crate::proxy::Kind::Socks5, &args.socks5),
        (crate::proxy::Kind::HttpProxy, &args.http_proxy),
        (crate::proxy::Kind::Transparent, &args.transparent),
    ]
    .into_iter()
    .flat_map(|(k, ls)| ls.iter().map(move |l| (k, l.0)))
    .collect();
    let policy = crate::proxy::Policy {
        auth: args.proxy_auth.clone(),
        allow: args.allow.clone(),
    };
    for (kind, at) in &proxies {
        if !at.ip().is_loopback() && policy.auth.is_none() && policy.allow.is_empty() {
            bail!(
                "{} {at}: a proxy listener beyond loopback is an open proxy; give --proxy-auth \
                 USER:PASS or --allow PATTERN",
                kind.flag()
            );
        }
    }
    if specs.is_empty() && args.control.is_none() && proxies.is_empty() {
        bail!("--listen is required (for example --listen 8080)");
    }
    for f in &args.fault {
        let chosen: Vec<usize> = match &f.proxy {
            None => (0..names.len()).collect(),
            Some(p) => match names.iter().position(|n| n == p) {
                Some(i) => vec![i],
                None => bail!(
                    "--fault {}: no proxy named {p:?} (the rules are {})",
                    f.toxic.name,
                    names.join(", ")
                ),
            },
        };
        for i in chosen {
            if toxics[i].iter().any(|t| t.name == f.toxic.name) {
                bail!(
                    "--fault: two toxics named {:?} on {} (give one a name=...)",
                    f.toxic.name,
                    names[i]
                );
            }
            toxics[i].push(f.toxic.clone());
        }
    }
    let rule_names = names.clone();
    let plan_rules: Vec<crate::faults::RulePlan> = names
        .into_iter()
        .zip(upstreams)
        .zip(toxics)
        .map(|((name, upstream), toxics)| crate::faults::RulePlan {
            name,
            upstream,
            toxics,
        })
        .collect();
    let faults = crate::faults::Plan {
        rules: plan_rules,
        seed: args.seed.unwrap_or_else(random_seed),
        control: args.control.map(|l| l.0),
        disabled,
    };
    let mut rules = Vec::with_capacity(specs.len());
    for (spec, listen, target) in specs {
        let addr = resolve(&target.host, target.port)
            .with_context(|| format!("target {} ({spec})", target.text))?;
        rules.push(Rule {
            listen,
            target: addr,
            target_name: target.text,
            spec,
        });
    }
    let mut kinds = vec![crate::proxy::Kind::Forward; rules.len()];
    for (kind, listen) in proxies {
        let unspecified = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        rules.push(Rule {
            listen,
            target: unspecified,
            target_name: format!("{} destinations", kind.stage()),
            spec: format!("{} {listen}", kind.flag()),
        });
        kinds.push(kind);
    }
    let tls = match &args.tls {
        None => None,
        Some(names) => Some(tls_config(&args, names, &rule_names, &kinds)?),
    };
    let to_files = formats.hex || formats.binary || (formats.pcap && capture != Capture::Stdout);
    if args.log_budget.is_some() && !to_files {
        bail!("--log-budget: no log file is written (--log {formats}), so there is nothing to cap");
    }
    if formats.uses_log_dir(&capture) {
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
        log_queue: args.log_queue.bytes(),
        log_budget: args.log_budget.map(|s| s.0),
        buffer_size: args.buffer_size.bytes(),
        connect_timeout: args.connect_timeout.0,
        idle_timeout: args.idle_timeout.0,
        max_connections: args.max_connections,
        max_open_files: args.max_open_files,
        on_log_error: args.on_log_error,
        connection_lines: true,
        splice: !args.no_splice,
        faults,
        proxy: config::ProxyPlan { kinds, policy },
        tls,
    })
}

/// `--tls[=NAMES]` and its companions.
fn tls_config(
    args: &Args,
    names: &str,
    rule_names: &[String],
    kinds: &[crate::proxy::Kind],
) -> Result<config::TlsConfig> {
    let mut rules = vec![names.is_empty(); kinds.len()];
    for name in names.split(',').filter(|n| !n.is_empty()) {
        let mut found = false;
        for (i, on) in rules.iter_mut().enumerate() {
            let by_name = rule_names.get(i).is_some_and(|n| n == name);
            let by_kind = kinds.get(i).is_some_and(|k| {
                *k != crate::proxy::Kind::Forward && k.flag() == format!("--{name}")
            });
            if by_name || by_kind {
                *on = true;
                found = true;
            }
        }
        if !found {
            let mut known: Vec<String> = rule_names.to_vec();
            known.extend(
                kinds
                    .iter()
                    .filter(|k| **k != crate::proxy::Kind::Forward)
                    .map(|k| k.flag().trim_start_matches('-').to_string()),
            );
            bail!(
                "--tls={name}: no rule of that name (the rules are {})",
                known.join(", ")
            );
        }
    }
    let keylog = args.keylog.clone().or_else(|| {
        std::env::var_os("SSLKEYLOGFILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    Ok(config::TlsConfig {
        rules,
        ca_dir: args.ca_dir.clone(),
        cert: args.tls_cert.clone().zip(args.tls_key.clone()),
        target_ca: args.target_ca.clone(),
        insecure: args.insecure,
        keylog,
    })
}

/// Reads and parses a `--faults` file (Toxiproxy's populate JSON).
fn load_faults(path: &Path) -> Result<Vec<crate::faults::spec::ProxySpec>> {
    let body = std::fs::read(path).with_context(|| format!("--faults {}", path.display()))?;
    crate::faults::spec::populate(&body).map_err(|e| anyhow!("--faults {}: {e}", path.display()))
}

/// A seed for a run that was given none: the clock's nanoseconds and the process id.
fn random_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32)
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

/// Creates the log directory if missing and proves it writable by creating a file in it.
pub fn prepare_log_dir(dir: &Path) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn args(list: &[&str]) -> Args {
        let mut v = vec!["tcpspy"];
        v.extend_from_slice(list);
        match parse_args(v) {
            Ok(a) => a,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    /// The one-line message of a command line clap refuses.
    fn refused(list: &[&str]) -> String {
        let mut v = vec!["tcpspy"];
        v.extend_from_slice(list);
        match parse_args(v) {
            Ok(a) => panic!("{list:?} was accepted: {a:?}"),
            Err(e) => one_line(&e),
        }
    }

    #[test]
    fn several_rules() {
        let c = config(args(&[
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
        let c = config(args(&["-L", "3=127.0.0.1:4", "--log", "none"])).unwrap();
        assert_eq!(c.rules.len(), 1, "--forward alone needs no --listen");
        assert!(!c.reuse_port);
    }

    #[test]
    fn values_are_refused_in_one_line_naming_the_flag() {
        assert_eq!(
            refused(&["-l", "1", "-t", "h:1", "--log-queue", "lots"]),
            "invalid value 'lots' for '--log-queue <SIZE>': expected a size such as 65536, 64K or 64M"
        );
        assert_eq!(
            refused(&[
                "-l",
                "1",
                "-t",
                "h:1",
                "--connect-timeout",
                "10000000000000000000"
            ]),
            "invalid value '10000000000000000000' for '--connect-timeout <DURATION>': \
             duration 10000000000000000000 out of range (at most 365d)"
        );
        assert_eq!(
            refused(&[
                "-l",
                "1",
                "-t",
                "h:1",
                "--idle-timeout",
                "10000000000000000000"
            ]),
            "invalid value '10000000000000000000' for '--idle-timeout <DURATION>': \
             duration 10000000000000000000 out of range (at most 365d)"
        );
        assert_eq!(
            refused(&[
                "-l",
                "1",
                "-t",
                "h:1",
                "--max-open-files",
                "18446744073709551615"
            ]),
            "invalid value '18446744073709551615' for '--max-open-files <N>': \
             18446744073709551615 is out of range (1 to 1048576)"
        );
        assert_eq!(
            refused(&["-l", "1", "-t", "h:1", "--max-connections", "0"]),
            "invalid value '0' for '--max-connections <N>': 0 is out of range (1 to 1048576)"
        );
        assert_eq!(
            refused(&["-l", "1", "-t", "h:1", "--buffer-size", "100"]),
            "invalid value '100' for '--buffer-size <SIZE>': must be between 512 and 16M"
        );
        assert_eq!(
            refused(&["-l", "70000", "-t", "h:1"]),
            "invalid value '70000' for '--listen <ADDR>': port 70000 out of range (0-65535)"
        );
        assert_eq!(
            refused(&["-l", "1", "-t", "h:1", "--log", "pdf"]),
            "invalid value 'pdf' for '--log <FORMATS>': unknown format \"pdf\" \
             (known: hex, binary, pcap, none)"
        );
        let e = refused(&["-x", "--text"]);
        assert!(
            e.starts_with("the argument '--hexdump' cannot be used with '--text'"),
            "{e}"
        );
    }

    #[test]
    fn zero_idle_timeouts_are_off() {
        for off in ["0", "0s", "0ms", "off", "none"] {
            let c = config(args(&[
                "-l",
                "1",
                "-t",
                "127.0.0.1:2",
                "--log",
                "none",
                "--idle-timeout",
                off,
            ]))
            .unwrap();
            assert_eq!(c.idle_timeout, None, "{off}");
        }
    }

    #[test]
    fn pcap_flag() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let base = ["-l", "1", "-t", "127.0.0.1:5432", "-d", d];
        let with = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            config(args(&v))
        };
        // --log pcap: the capture goes to the log directory.
        let c = with(&["--log", "pcap"]).unwrap();
        assert!(c.formats.pcap && !c.formats.hex);
        assert_eq!(c.capture, Capture::LogDir);
        assert_eq!(config::logging_summary(&c), format!("logging pcap in {d}"));
        // --pcap PATH adds pcap to the default formats and names the file.
        let path = dir.path().join("x.pcapng");
        let c = with(&["--pcap", path.to_str().unwrap()]).unwrap();
        assert_eq!(c.formats.to_string(), "hex,binary,pcap");
        assert_eq!(c.capture, Capture::File(path.clone()));
        assert_eq!(
            config::logging_summary(&c),
            format!("logging hex,binary in {d}, pcap to {}", path.display())
        );
        let c = with(&["--log", "pcap", "--pcap", path.to_str().unwrap()]).unwrap();
        assert_eq!(
            config::logging_summary(&c),
            format!("logging pcap to {}", path.display())
        );
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
            config(args(&v))
        };
        let c = with(&[]).unwrap();
        assert_eq!(c.formats.live, None);
        assert!(!c.formats.wants_data());
        // --log none -x: the bytes reach the logger, and still nothing is recorded.
        let c = with(&["-x"]).unwrap();
        assert_eq!(c.formats.live.map(|l| l.mode), Some(LiveMode::Hex));
        assert!(c.formats.wants_data() && c.formats.is_none());
        assert_eq!(c.formats.to_string(), "none");
        assert_eq!(
            config::logging_summary(&c),
            "logging none; live hex dump on stdout"
        );
        let c = with(&["--text"]).unwrap();
        assert_eq!(c.formats.live.map(|l| l.mode), Some(LiveMode::Text));
        assert_eq!(
            config::logging_summary(&c),
            "logging none; live text on stdout"
        );
        let e = config(args(&[
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
    fn log_budget_flag() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let with = |extra: &[&str]| {
            let mut v = vec!["-l", "1", "-t", "127.0.0.1:2", "-d", d];
            v.extend_from_slice(extra);
            config(args(&v))
        };
        assert_eq!(with(&[]).unwrap().log_budget, None);
        assert_eq!(
            with(&["--log-budget", "1M"]).unwrap().log_budget,
            Some(1 << 20)
        );
        assert_eq!(
            refused(&["-l", "1", "-t", "h:1", "--log-budget", "1K"]),
            "invalid value '1K' for '--log-budget <SIZE>': must be between 64K and 1048576G"
        );
        let e = with(&["--log", "none", "--log-budget", "1M"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--log-budget: no log file is written (--log none), so there is nothing to cap"
        );
        let e = with(&["--log", "pcap", "--pcap", "-", "--log-budget", "1M"]);
        // stdout is not a terminal under the test harness only sometimes: either refusal
        // is right, as long as the budget is not taken for a capture on stdout.
        assert!(e.is_err());
        let c = with(&["--log", "pcap", "--log-budget", "1M"]).unwrap();
        assert_eq!(c.log_budget, Some(1 << 20), "a capture file counts");
    }

    #[test]
    fn legacy_flags_are_aliases() {
        let a = args(&["-host", "10.0.0.1", "-port", "110", "-listen_port", "8080"]);
        assert_eq!(a.host.as_deref(), Some("10.0.0.1"));
        assert_eq!(a.port, Some(Port(110)));
        assert_eq!(
            a.listen_port.map(|l| l.0.to_string()).as_deref(),
            Some("127.0.0.1:8080")
        );
        let a = args(&["--host=h", "--port=1", "-local_port=9"]);
        assert_eq!(a.listen_port.map(|l| l.0.port()), Some(9));
        let c = config(args(&[
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
        assert_eq!(
            refused(&["-host", "h", "-port", "0", "-listen_port", "1"]),
            "invalid value '0' for '--port <PORT>': the target port cannot be 0"
        );
    }

    #[test]
    fn short_flags_and_defaults() {
        let c = config(args(&["-l", "[::1]:0", "-t", "[::1]:7", "--log", "none"])).unwrap();
        assert_eq!(c.rules[0].listen, "[::1]:0".parse().unwrap());
        assert_eq!(c.rules[0].target_name, "[::1]:7");
        assert_eq!(c.log_queue, 8 << 20);
        assert_eq!(c.buffer_size, 64 << 10);
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, None);
        assert_eq!(c.max_connections, 10_000);
        assert_eq!(c.on_log_error, LogErrorAction::Report);
        let c = config(args(&[
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
        assert_eq!(a.log.to_string(), "hex,binary");
        assert_eq!(a.pcap, None);
    }

    #[test]
    fn missing_and_conflicting() {
        let e = config(args(&["-l", "1"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--target is required (for example --target 127.0.0.1:8000)"
        );
        let e = config(args(&["-t", "127.0.0.1:1"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--listen is required (for example --listen 8080)"
        );
        let e = refused(&["-t", "a:1", "--host", "b", "--port", "2"]);
        assert!(
            e.starts_with("the argument '--target <HOST:PORT>' cannot be used with"),
            "{e}"
        );
        let e = refused(&["--host", "b"]);
        assert!(
            e.starts_with("the following required arguments were not provided"),
            "{e}"
        );
        // The proxy's flags and a subcommand do not mix.
        let e = refused(&["--listen", "1", "bench"]);
        assert_eq!(
            e,
            "the subcommand 'bench' cannot be used with '--listen <ADDR>'"
        );
    }
}

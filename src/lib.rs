//! tcpspy: a TCP/IP spy proxy. It relays each accepted connection to a target and records
//! both directions: a hex dump in read order, one binary file per direction, and a capture of
//! every connection that Wireshark opens.
//!
//! The parts, one file per role:
//! - [`cli`]: the command line, checked into a [`config::Config`];
//! - [`config`], [`types`], [`stop`]: leaves every other part shares (settings, the words of a
//!   connection, the stop handle);
//! - [`reactor`]: the one thread that polls every socket (mio) and drives the connections;
//! - [`relay`]: a connection's state machine and its two directions (pipelines of stages),
//!   without sockets;
//! - [`pool`]: relay buffers, held only while bytes are in flight;
//! - [`log`]: the logging thread, its bounded queue and one module per output format;
//! - [`sys`]: socket and process settings std lacks;
//! - [`bench`]: `tcpspy bench`, direct and proxied downloads in one process;
//! - [`replay`]: `tcpspy replay` and `tcpspy mock`, a recording played again as a scripted
//!   client or server, in the same reactor and logged by the same thread.

pub mod bench;
pub mod cli;
pub mod config;
pub mod control;
pub mod faults;
pub mod log;
pub mod pool;
pub mod proxy;
pub mod reactor;
pub mod relay;
pub mod replay;
pub mod stop;
pub mod sys;
pub mod tls;
pub mod types;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, anyhow, bail};
use mio::{Poll, Waker};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

use config::{Config, LogErrorAction};
use log::{LogConfig, Logger};
use reactor::{Reactor, Settings, Totals, WAKER};
use stop::StopHandle;

/// What a finished run relayed and logged.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub totals: Totals,
    pub log: log::LogStats,
}

/// A proxy ready to run: listeners bound, logging thread started, reactor built. The CLI runs
/// one on the main thread until a signal; the bench runs one on a thread of its own and stops
/// it through a [`StopHandle`].
pub struct Proxy {
    reactor: Reactor,
    logger: Logger,
    addrs: Vec<SocketAddr>,
    limits: Limits,
    /// Where the control API listens, if it does.
    control: Option<SocketAddr>,
    /// The start-up line of `--tls`.
    tls_line: Option<String>,
}

/// How the descriptor limit was shared out at start-up.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections relayed at once: `--max-connections`, or fewer if descriptors are short.
    pub max_connections: usize,
    /// Log files kept open at once.
    pub max_open_files: usize,
    /// RLIMIT_NOFILE, raised to its hard limit.
    pub nofile: u64,
}

impl Proxy {
    /// Binds every rule's listener and starts the logging thread.
    pub fn new(config: &Config) -> Result<Proxy> {
        // Two sockets per connection and the log files: take every descriptor we may have,
        // then share them out so that neither can starve the other.
        let limit = sys::raise_nofile_limit().context("cannot read the descriptor limit")?;
        let logging = config.formats.wants_data();
        // Splicing keeps pipes (two descriptors each) beside the sockets.
        let pipes = if config.splice && !logging {
            2 * pool::MAX_PIPES as u64
        } else {
            0
        };
        let budget = sys::fd_budget(
            limit,
            config.rules.len() as u64 + pipes,
            config.formats.records(),
            config.max_open_files,
        );
        let (max_open_files, fd_conns) = budget.ok_or_else(|| {
            anyhow!("the descriptor limit ({limit}) leaves no room for a connection; raise it (ulimit -n)")
        })?;
        let max_connections = config.max_connections.min(fd_conns);
        let limits = Limits {
            max_connections,
            max_open_files,
            nofile: limit,
        };
        sys::ignore_file_size_signal();
        let mut listeners = Vec::with_capacity(config.rules.len());
        let mut addrs = Vec::with_capacity(config.rules.len());
        for rule in &config.rules {
            let l = sys::listen(rule.listen, config.reuse_port)
                .with_context(|| format!("cannot listen on {} ({})", rule.listen, rule.spec))?;
            addrs.push(l.local_addr().unwrap_or(rule.listen));
            listeners.push(l);
        }
        // Port 0 became a real port: the logs name the bound address.
        let mut bound_rules = config.rules.clone();
        for (rule, addr) in bound_rules.iter_mut().zip(&addrs) {
            rule.listen = *addr;
        }
        let poll = Poll::new().context("cannot create the poll")?;
        let waker =
            Arc::new(Waker::new(poll.registry(), WAKER).context("cannot create the waker")?);
        let stop = StopHandle::new(waker.clone());
        let keylog = match config.tls.as_ref().and_then(|t| t.keylog.as_ref()) {
            Some(p) => {
                Some(Arc::new(log::keylog::open(p).with_context(|| {
                    format!("--keylog {}: cannot open it", p.display())
                })?))
            }
            None => None,
        };
        let logger = Logger::start(
            LogConfig {
                dir: config.log_dir.clone(),
                formats: config.formats,
                capture: config.capture.clone(),
                rules: bound_rules,
                queue_bound: config.log_queue,
                chunk: config.buffer_size,
                max_open_files,
                stop_on_error: (config.on_log_error == LogErrorAction::Exit).then(|| stop.clone()),
                stop: Some(stop.clone()),
                label_prefix: config.reuse_port.then(|| std::process::id().to_string()),
                connection_lines: config.connection_lines,
                budget: config.log_budget,
                keylog,
            },
            Some(waker),
        )
        .context("cannot start the logging thread")?;
        let lives: Vec<Arc<faults::Live>> = config
            .faults
            .rules
            .iter()
            .map(|r| faults::Live::new(r.toxics.clone()))
            .collect();
        let settings = Settings {
            rules: config.rules.clone(),
            buffer_size: config.buffer_size,
            connect_timeout: config.connect_timeout,
            idle_timeout: config.idle_timeout,
            label_prefix: config.reuse_port.then(|| std::process::id().to_string()),
            max_connections,
            log_data: logging,
            splice: config.splice && !logging,
            faults: lives.clone(),
            seed: config.faults.seed,
            proxy: config.proxy.clone(),
            mock: None,
        };
        let mut reactor = Reactor::new(poll, stop.clone(), listeners, settings, logger.sender())
            .context("cannot register the listeners")?;
        let mut tls_line = None;
        if let Some(t) = &config.tls {
            let plan = tls::Plan::new(&tls::plan::Flags {
                ca_dir: t.ca_dir.clone(),
                cert: t.cert.clone(),
                target_ca: t.target_ca.clone(),
                insecure: t.insecure,
                keys: t.keylog.is_some() || config.formats.pcap,
            })
            .map_err(|e| anyhow!("{e}"))?;
            tls_line = Some(tls_summary(&plan, t));
            reactor.with_tls(plan, config.formats.pcap, t.rules.clone());
        }
        let control = match config.faults.control {
            None => None,
            Some(at) => {
                let l = std::net::TcpListener::bind(at)
                    .with_context(|| format!("cannot listen on {at} (--control)"))?;
                let bound = l.local_addr().unwrap_or(at);
                let queue = control::command::Queue::new(stop.waker().clone());
                reactor.with_control(queue.clone());
                let mut proxies: Vec<control::api::Proxy> = config
                    .faults
                    .rules
                    .iter()
                    .zip(&addrs)
                    .zip(&lives)
                    .enumerate()
                    .map(|(i, ((r, a), live))| control::api::Proxy {
                        name: r.name.clone(),
                        listen: a.to_string(),
                        upstream: r.upstream.clone(),
                        enabled: true,
                        index: Some(i),
                        live: live.clone(),
                    })
                    .collect();
                proxies.extend(config.faults.disabled.iter().map(|p| control::api::Proxy {
                    name: p.name.clone(),
                    listen: p.listen.clone(),
                    upstream: p.upstream.clone(),
                    enabled: false,
                    index: None,
                    live: faults::Live::new(p.toxics.clone()),
                }));
                control::start(l, proxies, queue)?;
                Some(bound)
            }
        };
        Ok(Proxy {
            tls_line,
            reactor,
            logger,
            addrs,
            limits,
            control,
        })
    }

    /// The control API's address (`--control`), bound.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The address each rule listens on (port 0 resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn stop_handle(&self) -> StopHandle {
        self.reactor.stop_handle()
    }

    /// Stops on SIGINT or SIGTERM; a second one exits the process at once.
    pub fn watch_signals(&mut self) -> Result<()> {
        let armed = Arc::new(AtomicBool::new(false));
        for (sig, code) in [(SIGINT, 130), (SIGTERM, 143)] {
            // The exit hook goes first so that it sees the flag as the previous signal left it.
            signal_hook::flag::register_conditional_shutdown(sig, code, armed.clone())?;
            signal_hook::flag::register(sig, armed.clone())?;
        }
        let signals = signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM, SIGUSR1])?;
        self.reactor.watch_signals(signals)?;
        Ok(())
    }

    /// Relays until stopped, then writes every log and stops the logging thread.
    pub fn run(self) -> Result<Outcome> {
        let totals = self.reactor.run().context("poll failed")?;
        let log = self.logger.finish();
        Ok(Outcome { totals, log })
    }
}

/// The start-up line of `--tls`: the certificate clients must trust, and how targets are
/// checked.
fn tls_summary(plan: &tls::Plan, t: &config::TlsConfig) -> String {
    let certs = match plan.certs.ca_path() {
        Some(p) => {
            let made = match &plan.certs {
                tls::ca::Certs::Authority(a) if a.created => "made now",
                _ => "kept",
            };
            format!("clients must trust {} (tcpspy's CA, {made})", p.display())
        }
        None => "clients get --tls-cert".to_string(),
    };
    let keylog = match &t.keylog {
        Some(k) => format!("; secrets to {}", k.display()),
        None => String::new(),
    };
    format!(
        "tcpspy: TLS: {certs}; targets' certificates {}{keylog}",
        plan.roots
    )
}

/// The start-up lines of faults: each rule's toxics, and the seed that repeats the run.
fn faults_lines(config: &Config, bound: &[SocketAddr]) {
    let plan = &config.faults;
    if !plan.is_on() {
        return;
    }
    for (r, addr) in plan.rules.iter().zip(bound) {
        if !r.toxics.is_empty() {
            let list: Vec<String> = r.toxics.iter().map(|t| t.summary()).collect();
            log::eprint_line(&format!(
                "tcpspy: faults on {} ({addr}): {}",
                r.name,
                list.join("; ")
            ));
        }
    }
    log::eprint_line(&format!(
        "tcpspy: faults: seed {} (--seed {} repeats this run's draws)",
        plan.seed, plan.seed
    ));
}

/// The CLI's main job: runs the proxy until SIGINT or SIGTERM and prints a summary.
pub fn run(config: Config) -> Result<Outcome> {
    let mut proxy = Proxy::new(&config)?;
    for (i, (rule, bound)) in config.rules.iter().zip(proxy.local_addrs()).enumerate() {
        let kind = config.proxy.kind(i);
        if kind != proxy::Kind::Forward {
            log::eprint_line(&format!(
                "tcpspy: listening on {bound}, a {} proxy ({}); {}; up to {} connections at once",
                kind.name(),
                rule.spec,
                config::logging_summary(&config),
                proxy.limits().max_connections,
            ));
            continue;
        }
        let resolved = match rule.target_name == rule.target.to_string() {
            true => String::new(),
            false => format!(" ({})", rule.target),
        };
        log::eprint_line(&format!(
            "tcpspy: listening on {bound}, relaying to {}{resolved}; {}; up to {} connections at once",
            rule.target_name,
            config::logging_summary(&config),
            proxy.limits().max_connections,
        ));
    }
    faults_lines(&config, proxy.local_addrs());
    if let Some(line) = &proxy.tls_line {
        log::eprint_line(line);
    }
    if let Some(at) = proxy.control_addr() {
        log::eprint_line(&format!(
            "tcpspy: control API (Toxiproxy's) on http://{at}; proxies: {}",
            config
                .faults
                .rules
                .iter()
                .map(|r| r.name.as_str())
                .chain(config.faults.disabled.iter().map(|p| p.name.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    proxy.watch_signals()?;
    let outcome = proxy.run()?;
    let t = &outcome.totals;
    log::eprint_line(&format!(
        "tcpspy: stopped; connections: {}; clients sent {} bytes, servers sent {} bytes; \
         reads paused for the log: {}; log file errors: {}; busiest: {}",
        t.connections,
        t.bytes[0],
        t.bytes[1],
        t.log_stalls,
        outcome.log.file_errors,
        t.busiest_text(),
    ));
    if outcome.log.stopped_by_error {
        bail!("stopped because a log file could not be written (--on-log-error exit)");
    }
    if !outcome.log.failures.is_empty() {
        bail!(
            "not everything was logged: {}",
            outcome.log.failures.join("; ")
        );
    }
    Ok(outcome)
}

//! tcpspy: a TCP/IP spy proxy. It relays each accepted connection to a target and records
//! both directions: a hex dump in read order and one binary file per direction.
//!
//! The parts, one file per role:
//! - [`cli`]: the command line, checked into a [`cli::Config`];
//! - [`reactor`]: the one thread that polls every socket (mio) and drives the connections;
//! - [`conn`] and [`half`]: a connection's state machine and one direction of it;
//! - [`pool`]: relay buffers, held only while bytes are in flight;
//! - [`log`]: the logging thread, its bounded queue and one module per output format;
//! - [`sys`]: socket and process settings std lacks;
//! - [`bench`]: `tcpspy bench`, direct and proxied downloads in one process.

pub mod bench;
pub mod cli;
pub mod conn;
pub mod half;
pub mod log;
pub mod pool;
pub mod reactor;
pub mod sys;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use mio::{Poll, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};

use cli::Config;
use log::{LogConfig, Logger};
use reactor::{Reactor, Settings, StopHandle, Totals, WAKER};

/// Log files kept open at once by the logging thread (the rest are reopened when written).
pub const MAX_OPEN_LOG_FILES: usize = 1024;

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
}

impl Proxy {
    /// Binds every rule's listener and starts the logging thread.
    pub fn new(config: &Config) -> Result<Proxy> {
        Proxy::build(config, Logger::start)
    }

    /// As [`Proxy::new`], with every log file but without the `#0001 open`/`closed` lines on
    /// stderr: the bench draws its progress bar there. File errors are still reported.
    pub fn without_connection_lines(config: &Config) -> Result<Proxy> {
        Proxy::build(config, |cfg, waker| {
            let mut outputs: Vec<Box<dyn log::Output>> = Vec::new();
            if cfg.formats.hex {
                outputs.push(Box::new(log::hexdump::HexLog::default()));
            }
            if cfg.formats.binary {
                outputs.push(Box::new(log::binary::BinaryLog::default()));
            }
            Logger::start_with(cfg, outputs, waker)
        })
    }

    fn build(
        config: &Config,
        start_logger: impl FnOnce(LogConfig, Option<Arc<Waker>>) -> std::io::Result<Logger>,
    ) -> Result<Proxy> {
        // Two sockets per connection and the log files: take every descriptor we may have.
        let _ = sys::raise_nofile_limit();
        let mut listeners = Vec::with_capacity(config.rules.len());
        let mut addrs = Vec::with_capacity(config.rules.len());
        for rule in &config.rules {
            let l = sys::listen(rule.listen)
                .with_context(|| format!("cannot listen on {}", rule.listen))?;
            addrs.push(l.local_addr().unwrap_or(rule.listen));
            listeners.push(l);
        }
        let poll = Poll::new().context("cannot create the poll")?;
        let waker =
            Arc::new(Waker::new(poll.registry(), WAKER).context("cannot create the waker")?);
        let logger = start_logger(
            LogConfig {
                dir: config.log_dir.clone(),
                formats: config.formats,
                rules: config.rules.clone(),
                queue_bound: config.log_queue,
                chunk: config.buffer_size,
                max_open_files: MAX_OPEN_LOG_FILES,
                debug_delay: config.debug_log_delay,
            },
            Some(waker.clone()),
        )
        .context("cannot start the logging thread")?;
        let settings = Settings {
            rules: config.rules.clone(),
            buffer_size: config.buffer_size,
            connect_timeout: config.connect_timeout,
            log_data: config.formats.wants_data(),
        };
        let reactor = Reactor::new(poll, waker, listeners, settings, logger.sender())
            .context("cannot register the listeners")?;
        Ok(Proxy {
            reactor,
            logger,
            addrs,
        })
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
        let signals = signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM])?;
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

/// The CLI's main job: runs the proxy until SIGINT or SIGTERM and prints a summary.
pub fn run(config: Config) -> Result<Outcome> {
    let mut proxy = Proxy::new(&config)?;
    for (rule, bound) in config.rules.iter().zip(proxy.local_addrs()) {
        log::eprint_line(&format!(
            "tcpspy: listening on {bound}, relaying to {}{}; logging {} {}",
            rule.target_name,
            if rule.target_name == rule.target.to_string() {
                String::new()
            } else {
                format!(" ({})", rule.target)
            },
            config.formats,
            if config.formats.is_none() {
                String::new()
            } else {
                format!("in {}", config.log_dir.display())
            },
        ));
    }
    proxy.watch_signals()?;
    let outcome = proxy.run()?;
    let t = &outcome.totals;
    log::eprint_line(&format!(
        "tcpspy: stopped; connections: {}; clients sent {} bytes, servers sent {} bytes; \
         reads paused for the log: {}; log file errors: {}",
        t.connections, t.bytes[0], t.bytes[1], t.log_stalls, outcome.log.file_errors,
    ));
    Ok(outcome)
}

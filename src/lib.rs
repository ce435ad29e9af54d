//! tcpspy: a TCP/IP spy proxy. It relays each accepted connection to a target and records
//! both directions: a hex dump in read order and one binary file per direction.
//!
//! The parts, one file per role:
//! - [`cli`]: the command line, checked into a [`cli::Config`];
//! - [`reactor`]: the one thread that polls every socket (mio) and drives the connections;
//! - [`conn`] and [`half`]: a connection's state machine and one direction of it;
//! - [`pool`]: relay buffers, held only while bytes are in flight;
//! - [`log`]: the logging thread, its bounded queue and one module per output format;
//! - [`sys`]: socket and process settings std lacks.

pub mod cli;
pub mod conn;
pub mod half;
pub mod log;
pub mod pool;
pub mod reactor;
pub mod sys;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use mio::{Poll, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};

use cli::Config;
use log::{LogConfig, Logger};
use reactor::{Reactor, Settings, Totals, WAKER};

/// Log files kept open at once by the logging thread (the rest are reopened when written).
pub const MAX_OPEN_LOG_FILES: usize = 1024;

/// Runs the proxy until SIGINT or SIGTERM; returns what it relayed.
pub fn run(config: Config) -> Result<Totals> {
    // Two sockets per connection and the log files: take every descriptor we may have.
    let _ = sys::raise_nofile_limit();
    let mut listeners = Vec::with_capacity(config.rules.len());
    for rule in &config.rules {
        let l = sys::listen(rule.listen)
            .with_context(|| format!("cannot listen on {}", rule.listen))?;
        let bound = l.local_addr().unwrap_or(rule.listen);
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
        listeners.push(l);
    }
    let poll = Poll::new().context("cannot create the poll")?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).context("cannot create the waker")?);
    let logger = Logger::start(
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
    let mut reactor = Reactor::new(poll, waker, listeners, settings, logger.sender())
        .context("cannot register the listeners")?;
    reactor.watch_signals(signals()?)?;
    let totals = reactor.run().context("poll failed")?;
    let stats = logger.finish();
    log::eprint_line(&format!(
        "tcpspy: stopped; connections: {}; clients sent {} bytes, servers sent {} bytes; \
         reads paused for the log: {}; log file errors: {}",
        totals.connections, totals.bytes[0], totals.bytes[1], totals.log_stalls, stats.file_errors,
    ));
    Ok(totals)
}

/// SIGINT and SIGTERM start a graceful stop through the poll; a second one exits at once.
fn signals() -> Result<signal_hook_mio::v1_0::Signals> {
    let armed = Arc::new(AtomicBool::new(false));
    for (sig, code) in [(SIGINT, 130), (SIGTERM, 143)] {
        // The exit hook goes first so that it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(sig, code, armed.clone())?;
        signal_hook::flag::register(sig, armed.clone())?;
    }
    Ok(signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM])?)
}

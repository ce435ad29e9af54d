//! The runs of `tcpspy replay` and `tcpspy mock`: the recording read, a logging thread and a
//! reactor set up as the proxy's are (no second networking stack: the scripted peer is a side
//! of an ordinary connection), then, for a replay, the verdict. Exit status of a replay: 0
//! identical, 1 different, 2 error (each an exit of its own, so a script can tell them apart).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use mio::{Poll, Waker};
use serde_json::json;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

use super::args::{MockArgs, Record, ReplayArgs};
use super::compare::{self, Mask};
use super::peer::{MockPlan, ScriptPeer};
use super::recording::{Act, Recording};
use super::script::Options;
use super::source;
use crate::config::{Capture, Formats, ProxyPlan, Rule};
use crate::log::{LogConfig, Logger};
use crate::reactor::{Reactor, Settings, WAKER};
use crate::stop::StopHandle;
use crate::types::{End, Side};

/// What the new conversation is recorded as: the formats, the directory, the capture.
fn recording_of(r: &Record) -> Result<(Formats, PathBuf, Capture)> {
    let mut formats = match r.log {
        Some(f) => f,
        None if r.log_dir.is_some() => Formats {
            hex: true,
            binary: true,
            ..Formats::default()
        },
        None => Formats::default(),
    };
    let capture = match &r.pcap {
        None => Capture::LogDir,
        Some(Capture::Stdout) => bail!("--pcap -: stdout is for the result; give a file"),
        Some(c) => {
            formats.pcap = true;
            c.clone()
        }
    };
    let dir = r.log_dir.clone().unwrap_or_else(|| PathBuf::from("."));
    if formats.uses_log_dir(&capture) {
        crate::cli::prepare_log_dir(&dir)?;
    }
    Ok((formats, dir, capture))
}

/// A logging thread and a reactor, as the proxy has them.
fn engine(
    rules: Vec<Rule>,
    record: &Record,
    connection_lines: bool,
    listeners: Vec<mio::net::TcpListener>,
    mock: Option<Arc<MockPlan>>,
    connect_timeout: std::time::Duration,
) -> Result<(Reactor, Logger, StopHandle)> {
    let (formats, dir, capture) = recording_of(record)?;
    let poll = Poll::new().context("cannot create the poll")?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).context("cannot create the waker")?);
    let stop = StopHandle::new(waker.clone());
    let buffer = 64 << 10;
    let logger = Logger::start(
        LogConfig {
            dir,
            formats,
            capture,
            rules: rules.clone(),
            queue_bound: 8 << 20,
            chunk: buffer,
            max_open_files: 64,
            stop_on_error: None,
            stop: Some(stop.clone()),
            label_prefix: None,
            connection_lines,
            budget: None,
            keylog: None,
        },
        Some(waker),
    )
    .context("cannot start the logging thread")?;
    let settings = Settings {
        rules,
        buffer_size: buffer,
        connect_timeout,
        idle_timeout: None,
        label_prefix: None,
        max_connections: 1000,
        log_data: formats.wants_data(),
        splice: false,
        faults: Vec::new(),
        seed: 0,
        proxy: ProxyPlan::default(),
        mock,
    };
    let reactor = Reactor::new(poll, stop.clone(), listeners, settings, logger.sender())
        .context("cannot register the listeners")?;
    Ok((reactor, logger, stop))
}

/// What a replay found.
struct Verdict {
    difference: Option<compare::Difference>,
    recorded: Vec<u8>,
    received: Vec<u8>,
    /// Bytes the server sent in all (more than `received` keeps past [`super::peer::KEPT`]).
    received_total: u64,
    sent: u64,
    timeouts: u32,
    server_end: Option<String>,
    recorded_end: Option<&'static str>,
    masked: [usize; 2],
}

fn act_name(a: &Act) -> &'static str {
    match a {
        Act::Fin => "EOF",
        Act::Reset => "reset",
        Act::Data(_) => "data",
    }
}

fn play(args: &ReplayArgs, rec: Recording, mask: &Mask) -> Result<Verdict> {
    let target = crate::cli::resolve(&args.target.host, args.target.port)
        .with_context(|| format!("target {}", args.target.text))?;
    let rule = Rule {
        listen: crate::reactor::tap::unspecified(&target),
        target,
        target_name: args.target.text.clone(),
        spec: format!("replay {}", args.source.display()),
    };
    let (mut reactor, logger, _stop) = engine(
        vec![rule],
        &args.record,
        false,
        Vec::new(),
        None,
        args.connect_timeout.0,
    )?;
    let options = Options {
        pace: args.pace,
        turn_timeout: Some(args.turn_timeout.0).filter(|d| !d.is_zero()),
    };
    let recorded = rec.stream(Side::Server);
    let recorded_end = rec.end_of(Side::Server).map(act_name);
    let now = Instant::now();
    let (peer, shared) = ScriptPeer::client(
        &rec,
        options,
        crate::reactor::tap::unspecified(&target),
        now,
    );
    let started = reactor.play(peer, target, now);
    let totals = match started {
        Ok(_) => Some(reactor.run().context("poll failed")?),
        Err(e) => {
            drop(reactor);
            let _ = logger.finish();
            bail!("cannot connect to {target}: {e}");
        }
    };
    let stats = logger.finish();
    let s = shared
        .lock()
        .map_err(|_| anyhow!("the replay's state was lost"))?;
    let ends = s.ends.clone().unwrap_or_default();
    for (side, how) in &ends {
        match (side, how) {
            (Side::Server, End::ConnectFailed(e)) => bail!("cannot connect to {target}: {e}"),
            (Side::Server, End::ConnectTimeout) => bail!(
                "cannot connect to {target}: no answer within {} (--connect-timeout)",
                crate::log::stamp::seconds(args.connect_timeout.0)
            ),
            _ => {}
        }
    }
    if !stats.failures.is_empty() {
        bail!("not everything was logged: {}", stats.failures.join("; "));
    }
    let server_end = ends
        .iter()
        .find(|(side, _)| *side == Side::Server)
        .map(|(_, how)| how.to_string());
    let received = s.heard.clone();
    let received_total = s.heard_total;
    Ok(Verdict {
        difference: compare::compare(mask, &recorded, &received),
        masked: [mask.apply(&recorded).masked, mask.apply(&received).masked],
        recorded,
        received,
        received_total,
        sent: totals.map_or(0, |t| t.bytes[0]),
        timeouts: s.timeouts,
        server_end,
        recorded_end,
    })
}

/// `tcpspy replay`: prints the verdict and returns its exit status.
pub fn replay(args: ReplayArgs) -> ExitCode {
    let source = args.source.display().to_string();
    let fail = |e: String| {
        if args.json {
            let v = json!({"result": "error", "source": source, "target": args.target.text, "error": e});
            println!("{v}");
        }
        crate::log::eprint_line(&format!("tcpspy replay: error: {e}"));
        ExitCode::from(2)
    };
    let rec = match source::open(&args.source, args.connection.as_deref()) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if rec.steps.is_empty() {
        return fail(format!(
            "{}: the recording holds no bytes and no end",
            rec.origin
        ));
    }
    let mask = match Mask::new(&args.ignore) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let origin = rec.origin.clone();
    // A lone client log has no answer to compare with: the replay only says what came back.
    let compared = rec.steps.iter().any(|st| st.side == Side::Server);
    let v = match play(&args, rec, &mask) {
        Ok(v) => v,
        Err(e) => return fail(format!("{e:#}")),
    };
    let target = &args.target.text;
    let mut notes = Vec::new();
    if v.timeouts > 0 {
        notes.push(format!(
            "{} turn(s) went on the turn timeout ({}), the server's bytes not having come",
            v.timeouts,
            crate::log::stamp::seconds(args.turn_timeout.0)
        ));
    }
    let end_now = v.server_end.clone().unwrap_or_else(|| "open".into());
    if let Some(was) = v.recorded_end
        && !end_now.starts_with(was)
    {
        notes.push(format!("the server ended with {end_now} (recorded: {was})"));
    }
    if !compared {
        if args.json {
            let out = json!({
                "result": "not_compared",
                "source": origin,
                "target": target,
                "client_bytes_sent": v.sent,
                "received_bytes": v.received_total,
                "server_end": v.server_end,
            });
            println!("{out}");
        } else {
            println!(
                "tcpspy replay: sent: {target} got the {} bytes of {origin} and answered {} bytes; \
                 the recording holds no answer to compare with (a client-side log alone)",
                v.sent, v.received_total
            );
        }
        return ExitCode::SUCCESS;
    }
    if args.json {
        let diff = v.difference.as_ref().map(|d| {
            json!({"recorded_offset": d.recorded_at, "received_offset": d.received_at, "differing_bytes": d.count})
        });
        let out = json!({
            "result": if v.difference.is_some() { "different" } else { "identical" },
            "source": origin,
            "target": target,
            "client_bytes_sent": v.sent,
            "recorded_bytes": v.recorded.len(),
            "received_bytes": v.received_total,
            "masked_bytes": {"recorded": v.masked[0], "received": v.masked[1]},
            "first_difference": diff,
            "turn_timeouts": v.timeouts,
            "server_end": v.server_end,
            "recorded_server_end": v.recorded_end,
        });
        println!("{out}");
    }
    let masked = match v.masked {
        [0, 0] => String::new(),
        [a, b] if a == b => format!(" ({a} bytes masked by --ignore on each side)"),
        [a, b] => format!(" ({a} recorded and {b} received bytes masked by --ignore)"),
    };
    let tail = match notes.is_empty() {
        true => String::new(),
        false => format!("; {}", notes.join("; ")),
    };
    match &v.difference {
        None => {
            if !args.json {
                println!(
                    "tcpspy replay: identical: {target} answered the {} bytes of {origin} as recorded, {} bytes{masked}{tail}",
                    v.sent, v.received_total
                );
            }
            ExitCode::SUCCESS
        }
        Some(d) => {
            if !args.json {
                println!(
                    "tcpspy replay: different: {target}'s answer departs from {origin} at byte {} \
                     (received: byte {}); {}; recorded {} bytes, received {}{masked}{tail}",
                    d.recorded_at,
                    d.received_at,
                    match d.count {
                        1 => "1 byte differs".to_string(),
                        n => format!("{n} bytes differ"),
                    },
                    v.recorded.len(),
                    v.received_total
                );
                print!(
                    "recorded:\n{}received:\n{}",
                    compare::excerpt(&v.recorded, d.recorded_at),
                    compare::excerpt(&v.received, d.received_at)
                );
            }
            ExitCode::from(1)
        }
    }
}

/// `tcpspy mock`: answers clients until SIGINT or SIGTERM.
pub fn mock(args: MockArgs) -> Result<()> {
    let recordings =
        source::all(&args.source, args.connection.as_deref()).map_err(|e| anyhow!(e))?;
    let listen: SocketAddr = args.listen.0;
    let listener =
        crate::sys::listen(listen, false).with_context(|| format!("cannot listen on {listen}"))?;
    let bound = listener.local_addr().unwrap_or(listen);
    let rule = Rule {
        listen: bound,
        target: bound,
        target_name: format!("mock of {}", args.source.display()),
        spec: format!("mock {} --listen {listen}", args.source.display()),
    };
    let n = recordings.len();
    let plan = Arc::new(MockPlan {
        recordings,
        on_mismatch: args.on_mismatch,
        options: Options {
            pace: args.pace,
            turn_timeout: None,
        },
    });
    let (mut reactor, logger, _stop) = engine(
        vec![rule],
        &args.record,
        true,
        vec![listener],
        Some(plan),
        crate::config::parse::parse_duration(crate::config::defaults::CONNECT_TIMEOUT)
            .unwrap_or(std::time::Duration::from_secs(10)),
    )?;
    let (formats, dir, _) = recording_of(&args.record)?;
    let logs = match formats.records() {
        true => format!("logging {formats} in {}", dir.display()),
        false => "logging nothing (--log-dir DIR to record)".into(),
    };
    crate::log::eprint_line(&format!(
        "tcpspy mock: listening on {bound}, answering as recorded in {} ({n} recording{}); {logs}",
        args.source.display(),
        if n == 1 { "" } else { "s" }
    ));
    let armed = Arc::new(AtomicBool::new(false));
    for (sig, code) in [(SIGINT, 130), (SIGTERM, 143)] {
        signal_hook::flag::register_conditional_shutdown(sig, code, armed.clone())?;
        signal_hook::flag::register(sig, armed.clone())?;
    }
    let signals = signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM, SIGUSR1])?;
    reactor.watch_signals(signals)?;
    let totals = reactor.run().context("poll failed")?;
    let stats = logger.finish();
    crate::log::eprint_line(&format!(
        "tcpspy mock: stopped; clients: {}; they sent {} bytes, the mock answered {} bytes",
        totals.connections, totals.bytes[0], totals.bytes[1]
    ));
    if !stats.failures.is_empty() {
        bail!("not everything was logged: {}", stats.failures.join("; "));
    }
    Ok(())
}

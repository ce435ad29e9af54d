//! `tcpspy bench`: the original article's experiment as a command. An embedded source on
//! loopback serves pseudo-random data; the bench downloads it directly, then through a tcpspy
//! proxy (the same [`Proxy`]: reactor, log queue and logging thread) in the same process,
//! checks every byte, and reports throughput, log volume and the proxy's CPU per GiB. With
//! `--rtt` it times small request/response exchanges instead.
//!
//! The parts: [`pattern`] (the data), [`net`] (source and clients, on threads of their own),
//! [`cpu`] (the proxy's CPU time apart from the bench's), [`stats`] and [`report`] (pure
//! figures and their table and JSON). This file runs the rounds.

pub mod args;
pub mod cpu;
pub mod net;
pub mod pattern;
pub mod report;
pub mod stats;

use std::io::{IsTerminal, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Proxy;
use crate::config::parse;
use crate::config::{Capture, Config, LogErrorAction, Rule, defaults};
use args::{BenchConfig, BenchMode};
use net::{Done, Fail, Source};
use pattern::Pattern;
use report::{DownloadReport, DownloadRound, RttReport, RttRound, Transfer};
use stats::Latency;

/// Runs the bench as configured and prints the results on stdout.
pub fn run(cfg: BenchConfig) -> Result<()> {
    let logs = Logs::create(&cfg)?;
    let pattern = Arc::new(Pattern::new(pattern::SEED));
    let out = match &cfg.mode {
        BenchMode::Download => {
            let rounds = downloads(&cfg, &logs, &pattern)?;
            let report = DownloadReport {
                bytes: cfg.bytes,
                connections: cfg.connections,
                log: cfg.formats.to_string(),
                rounds,
                kept_logs: logs.finish()?,
            };
            if cfg.json {
                report.json()
            } else {
                report.table()
            }
        }
        BenchMode::Rtt { sizes, exchanges } => {
            let runs = round_trips(&cfg, sizes, *exchanges, &logs, &pattern)?;
            let report = RttReport {
                sizes: sizes.clone(),
                exchanges: *exchanges,
                log: cfg.formats.to_string(),
                rounds: cfg.rounds,
                runs,
                kept_logs: logs.finish()?,
            };
            if cfg.json {
                report.json()
            } else {
                report.table()
            }
        }
    };
    println!("{}", out.trim_end());
    Ok(())
}

/// The temporary log directory: one subdirectory per proxy run, removed as soon as it has
/// been measured (a round of 256 MiB leaves ~1.5 GB) unless the logs are to be kept.
struct Logs {
    dir: Option<tempfile::TempDir>,
    keep: bool,
}

impl Logs {
    fn create(cfg: &BenchConfig) -> Result<Logs> {
        let dir = if cfg.formats.is_none() {
            None
        } else {
            std::fs::create_dir_all(&cfg.log_parent)
                .with_context(|| format!("log directory {}", cfg.log_parent.display()))?;
            Some(
                tempfile::Builder::new()
                    .prefix("tcpspy-bench-")
                    .tempdir_in(&cfg.log_parent)
                    .with_context(|| {
                        format!("cannot make a directory in {}", cfg.log_parent.display())
                    })?,
            )
        };
        if let Some(d) = dir.as_ref().filter(|_| !cfg.keep_logs) {
            remove_on_signal(d.path().to_path_buf())?;
        }
        Ok(Logs {
            dir,
            keep: cfg.keep_logs,
        })
    }

    /// The directory for one proxy run (the proxy creates it).
    fn for_run(&self, name: &str) -> PathBuf {
        match &self.dir {
            Some(d) => d.path().join(name),
            // With --log none nothing is written; the proxy is not even told a directory.
            None => PathBuf::from("."),
        }
    }

    fn done_with(&self, path: &Path) -> Result<()> {
        if self.dir.is_some() && !self.keep {
            std::fs::remove_dir_all(path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
        Ok(())
    }

    /// Removes the directory, or keeps it and says where it is.
    fn finish(self) -> Result<Option<String>> {
        match self.dir {
            Some(d) if self.keep => Ok(Some(d.keep().display().to_string())),
            Some(d) => {
                let path = d.path().display().to_string();
                d.close().with_context(|| format!("cannot remove {path}"))?;
                Ok(None)
            }
            None => Ok(None),
        }
    }
}

/// On SIGINT or SIGTERM, removes the temporary log directory (gigabytes, in the middle of a
/// round) and exits: the default action would leave it behind. The thread waits in a read,
/// so it costs no CPU while the proxy is measured.
fn remove_on_signal(dir: PathBuf) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot watch for SIGINT")?;
    thread::Builder::new()
        .name("bench-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let _ = std::fs::remove_dir_all(&dir);
                crate::log::eprint_line(&format!(
                    "\ntcpspy: bench interrupted; removed {}",
                    dir.display()
                ));
                std::process::exit(128 + sig);
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// The proxy's configuration: the defaults of `tcpspy --listen 127.0.0.1:0 --target TARGET`
/// with the bench's log settings, so the bench runs tcpspy as a user would by hand.
fn proxy_config(cfg: &BenchConfig, target: SocketAddr, log_dir: &Path) -> Result<Config> {
    if cfg.formats.uses_log_dir(&Capture::LogDir) {
        std::fs::create_dir_all(log_dir)
            .with_context(|| format!("log directory {}", log_dir.display()))?;
    }
    Ok(Config {
        rules: vec![Rule {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            target,
            target_name: target.to_string(),
            spec: "tcpspy bench".into(),
        }],
        reuse_port: false,
        log_dir: log_dir.to_path_buf(),
        formats: cfg.formats,
        capture: Capture::LogDir,
        log_queue: cfg.log_queue,
        buffer_size: cfg.buffer_size,
        connect_timeout: parse::parse_duration(defaults::CONNECT_TIMEOUT)?,
        idle_timeout: None,
        max_connections: defaults::MAX_CONNECTIONS,
        max_open_files: None,
        on_log_error: LogErrorAction::Report,
        splice: true,
        // The progress bar is on stderr.
        connection_lines: false,
    })
}

/// A proxy running on its own thread ("tcpspy-reactor"); the logging thread is its own.
struct Running {
    addr: SocketAddr,
    stop: crate::stop::StopHandle,
    thread: thread::JoinHandle<(Result<crate::Outcome>, Duration)>,
}

impl Running {
    fn start(config: &Config) -> Result<Running> {
        let proxy = Proxy::new(config)?;
        let addr = *proxy
            .local_addrs()
            .first()
            .ok_or_else(|| anyhow!("the proxy has no listener"))?;
        let stop = proxy.stop_handle();
        let thread = thread::Builder::new()
            .name("tcpspy-reactor".into())
            .spawn(move || {
                let outcome = proxy.run();
                (outcome, cpu::thread())
            })
            .context("cannot start the reactor thread")?;
        Ok(Running { addr, stop, thread })
    }

    /// Stops the proxy and waits until every log is written and the logging thread is gone;
    /// returns what it relayed and the reactor thread's CPU time.
    fn stop(self) -> Result<(crate::Outcome, Duration)> {
        self.stop.stop();
        let (outcome, cpu) = self
            .thread
            .join()
            .map_err(|_| anyhow!("the proxy's reactor thread panicked"))?;
        Ok((outcome?, cpu))
    }
}

fn progress(len: u64, prefix: String, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let template = match unit {
        "bytes" => "{prefix:>24} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
        _ => "{prefix:>24} [{bar:30}] {pos}/{len} exchanges",
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
        .with_style(style)
        .with_prefix(prefix)
}

fn fail(what: &str, f: Fail) -> anyhow::Error {
    anyhow!("{what}: {f}")
}

fn downloads(cfg: &BenchConfig, logs: &Logs, pattern: &Arc<Pattern>) -> Result<Vec<DownloadRound>> {
    let source = Source::bind(pattern.clone(), cfg.bytes).context("cannot start the source")?;
    let ranges = stats::split(cfg.bytes, cfg.connections);
    let mut rounds = Vec::new();
    for round in 1..=cfg.rounds {
        let label = |how: &str| format!("round {round}/{} {how}", cfg.rounds);
        let pb = progress(cfg.bytes, label("direct"), "bytes");
        let (direct, _) = download(&source, source.addr(), &ranges, pattern, &pb)
            .map_err(|f| fail(&format!("round {round}, direct download"), f))?;
        pb.finish_and_clear();

        let dir = logs.for_run(&format!("round-{round}"));
        let config = proxy_config(cfg, source.addr(), &dir)?;
        let pb = progress(cfg.bytes, label("via tcpspy"), "bytes");
        // Everything the process spends from here to the proxy's end, less the source's and
        // the clients' own time, is the proxy's.
        // The proxied round and the file system's own measurement both start with nothing
        // waiting to be written back, or the earlier rounds' gigabytes would slow them.
        if cfg.formats.records() {
            sync_disks();
        }
        let window = cpu::Window::open();
        let started = Instant::now();
        let proxy = Running::start(&config)?;
        let fetched = download(&source, proxy.addr, &ranges, pattern, &pb);
        let stopped = proxy.stop();
        let logged_secs = started.elapsed().as_secs_f64();
        let proxy_cpu = match &fetched {
            Ok((_, own)) => window.others(*own),
            Err(_) => Duration::ZERO,
        };
        pb.finish_and_clear();
        let (proxied, _) =
            fetched.map_err(|f| fail(&format!("round {round}, download through tcpspy"), f))?;
        let (outcome, reactor_cpu) = stopped?;
        let relayed = outcome.totals.bytes[0] + outcome.totals.bytes[1];
        let expected = cfg.bytes + net::REQUEST as u64 * u64::from(cfg.connections);
        if relayed != expected {
            bail!("round {round}: tcpspy counted {relayed} bytes relayed, expected {expected}");
        }
        let (log_bytes, logs_verified, disk_secs) = if cfg.formats.is_none() {
            (0, 0, None)
        } else {
            let bytes = dir_bytes(&dir)?;
            let verified = if cfg.formats.binary {
                verify_binary_logs(&dir, source.addr(), &ranges, pattern)
                    .with_context(|| format!("round {round}: the binary logs"))?
            } else {
                0
            };
            logs.done_with(&dir)?;
            let disk = disk_limit(
                &logs.for_run(&format!("disk-{round}")),
                bytes,
                cfg.buffer_size,
            )
            .with_context(|| format!("round {round}: measuring the file system"))?;
            (bytes, verified, Some(disk.as_secs_f64()))
        };
        rounds.push(DownloadRound {
            direct,
            proxied,
            relayed,
            log_bytes,
            reactor_cpu: reactor_cpu.as_secs_f64(),
            logger_cpu: proxy_cpu.saturating_sub(reactor_cpu).as_secs_f64(),
            logs_verified,
            logged_secs,
            disk_secs,
        });
    }
    Ok(rounds)
}

/// Writes back everything waiting to be written.
fn sync_disks() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// How long the file system under `dir` takes to take `bytes` written as the logs write them
/// (per chunk of `chunk` bytes: its hex dump, ~4.95 times as much, in one write, and the chunk
/// in another, to two files), with no network and no formatting: the most logging could do.
fn disk_limit(dir: &Path, bytes: u64, chunk: usize) -> Result<Duration> {
    use std::io::Write;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let binary = vec![0x5au8; chunk];
    let mut hex = Vec::new();
    crate::log::hexdump::dump(&binary, &mut hex);
    let mut files = [
        std::fs::File::create(dir.join("hex"))?,
        std::fs::File::create(dir.join("binary"))?,
    ];
    sync_disks();
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        for (f, part) in files.iter_mut().zip([&hex, &binary]) {
            let n = part.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            f.write_all(&part[..n])?;
            left -= n as u64;
            if left == 0 {
                break;
            }
        }
    }
    let took = start.elapsed();
    drop(files);
    // Measured, not kept: these are not logs.
    std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    Ok(took)
}

/// Downloads every range from `addr` in parallel and checks it; returns the transfer as the
/// clients saw it and the CPU time the source's and clients' threads used.
fn download(
    source: &Source,
    addr: SocketAddr,
    ranges: &[(u64, u64)],
    pattern: &Arc<Pattern>,
    pb: &ProgressBar,
) -> Result<(Transfer, Duration), Fail> {
    let spawn_err = |e: std::io::Error| Fail::Io(format!("cannot start a bench thread: {e}"));
    let servers = source
        .serve_downloads(ranges.len() as u32)
        .map_err(spawn_err)?;
    let start = Instant::now();
    let clients = ranges
        .iter()
        .map(|&(off, len)| net::spawn_fetch(addr, off, len, pattern.clone(), pb.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(spawn_err)?;
    let mut own = Duration::ZERO;
    let mut end = start;
    for c in clients {
        let Done { result, cpu } = net::join(c);
        own += cpu;
        end = end.max(result?);
    }
    // A failed client returned above: its source thread ends on its own timeout.
    for s in servers {
        let Done { result, cpu } = net::join(s);
        own += cpu;
        result?;
    }
    let bytes = ranges.iter().map(|&(_, len)| len).sum();
    let secs = end.duration_since(start).as_secs_f64();
    Ok((Transfer { bytes, secs }, own))
}

/// Total size of the files in `dir` (the proxy writes no subdirectories).
fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let meta = entry.and_then(|e| e.metadata())?;
        total += meta.len();
    }
    Ok(total)
}

/// Checks that each connection's server-to-client binary log holds exactly the range that
/// connection downloaded: the logs are the point of tcpspy, so they are verified as the
/// downloads are. Returns the number of files checked.
fn verify_binary_logs(
    dir: &Path,
    source: SocketAddr,
    ranges: &[(u64, u64)],
    pattern: &Pattern,
) -> Result<u32> {
    // The server's data is in the binary file named after the source's address.
    let suffix = format!("-{}-{}.log", source.ip(), source.port());
    let mut found = vec![false; ranges.len()];
    let mut buf = vec![0u8; 1 << 20];
    let mut expected = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("log-binary-") && name.ends_with(&suffix)) {
            continue;
        }
        let len = entry.metadata()?.len();
        let mut file = std::fs::File::open(entry.path())?;
        let mut head = [0u8; 8];
        let n = file.read(&mut head)?;
        // Which range is it? The one of that length whose first bytes it starts with.
        let which = ranges.iter().enumerate().position(|(i, &(off, l))| {
            let mut want = [0u8; 8];
            pattern.fill(off, &mut want[..n]);
            !found[i] && l == len && head[..n] == want[..n]
        });
        let Some(i) = which else {
            bail!("{name} ({len} bytes) is no connection's download");
        };
        let (off, _) = ranges[i];
        let mut file = std::fs::File::open(entry.path())?;
        let mut pos = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            if let Some(at) = pattern.first_mismatch(off + pos, &buf[..n], &mut expected) {
                bail!("{name} differs from the download at byte {}", at - off);
            }
            pos += n as u64;
        }
        found[i] = true;
    }
    let missing = found.iter().filter(|f| !**f).count();
    if missing > 0 {
        bail!("{missing} of {} downloads have no binary log", ranges.len());
    }
    Ok(ranges.len() as u32)
}

fn round_trips(
    cfg: &BenchConfig,
    sizes: &[usize],
    exchanges: u32,
    logs: &Logs,
    pattern: &Arc<Pattern>,
) -> Result<Vec<RttRound>> {
    let source = Source::bind(pattern.clone(), 0).context("cannot start the echo source")?;
    // As the harness does: a tenth of the count, at most 100, to warm caches and the path.
    let warmup = (exchanges / 10).min(100);
    let mut runs = Vec::new();
    for round in 1..=cfg.rounds {
        for &size in sizes {
            let label = |how: &str| {
                format!(
                    "round {round}/{} {} {how}",
                    cfg.rounds,
                    report::size(size as u64)
                )
            };
            let what = |how: &str| format!("round {round}, {} exchanges {how}", size);
            let pb = progress(exchanges.into(), label("direct"), "exchanges");
            let direct = exchange(
                &source,
                source.addr(),
                size,
                warmup,
                exchanges,
                pattern,
                &pb,
            )
            .map_err(|f| fail(&what("direct"), f))?;
            pb.finish_and_clear();

            let dir = logs.for_run(&format!("round-{round}-{size}"));
            let proxy = Running::start(&proxy_config(cfg, source.addr(), &dir)?)?;
            let pb = progress(exchanges.into(), label("via tcpspy"), "exchanges");
            let proxied = exchange(&source, proxy.addr, size, warmup, exchanges, pattern, &pb);
            let stopped = proxy.stop();
            pb.finish_and_clear();
            let proxied = proxied.map_err(|f| fail(&what("through tcpspy"), f))?;
            stopped?;
            if !cfg.formats.is_none() {
                logs.done_with(&dir)?;
            }
            runs.push(RttRound {
                round,
                size,
                direct,
                proxied,
            });
        }
    }
    Ok(runs)
}

fn exchange(
    source: &Source,
    addr: SocketAddr,
    size: usize,
    warmup: u32,
    exchanges: u32,
    pattern: &Pattern,
    pb: &ProgressBar,
) -> Result<Latency, Fail> {
    let echo = source
        .serve_echo()
        .map_err(|e| Fail::Io(format!("cannot start the echo thread: {e}")))?;
    let micros = net::pingpong(addr, size, warmup, exchanges, pattern, pb)?;
    let echoed = net::join(echo).result?;
    let sent = u64::from(warmup + exchanges) * size as u64;
    if echoed != sent {
        return Err(Fail::Corrupt(format!(
            "the source echoed {echoed} bytes of {sent}"
        )));
    }
    Ok(Latency::of(micros))
}

//! `tcpspy bench`: the original article's experiment as a command. An embedded source on
//! loopback serves pseudo-random data; the bench downloads it directly, then through a tcpspy
//! proxy (the same [`Proxy`]: reactor, log queue and logging thread) in the same process,
//! checks every byte, and reports throughput, log volume, the proxy's CPU per GiB and its
//! memory growth. `--sustained` times the logs until they are on the disk, `--pause` makes the
//! clients slow readers; with `--rtt` it times small request/response exchanges instead.
//!
//! The parts: [`pattern`] (the data), [`net`] (source and clients, on threads of their own),
//! [`cpu`] and [`mem`] (the proxy's CPU time and memory apart from the bench's), [`disk`]
//! (dirty limit, free space, flushes), [`stats`] and [`report`] (pure figures and their table
//! and JSON). This file runs the rounds.

pub mod args;
pub mod cpu;
pub mod disk;
pub mod mem;
pub mod net;
pub mod pattern;
pub mod report;
pub mod stats;

use std::io::{IsTerminal, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
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
        BenchMode::Download { pause, sustained } => {
            let plan = Plan::new(&cfg, *sustained, &logs)?;
            let rounds = downloads(&cfg, &plan, *pause, &logs, &pattern)?;
            let report = DownloadReport {
                bytes: plan.bytes,
                connections: cfg.connections,
                log: cfg.formats.to_string(),
                log_queue: cfg.log_queue as u64,
                buffer_size: cfg.buffer_size as u64,
                pause: *pause,
                sustained: plan.sustained,
                dirty_limit: plan.dirty,
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

    /// The temporary directory, if anything is logged.
    fn root(&self) -> Option<&Path> {
        self.dir.as_ref().map(|d| d.path())
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
        log_budget: None,
        buffer_size: cfg.buffer_size,
        connect_timeout: parse::parse_duration(defaults::CONNECT_TIMEOUT)?,
        idle_timeout: None,
        max_connections: defaults::MAX_CONNECTIONS,
        max_open_files: None,
        on_log_error: LogErrorAction::Report,
        splice: cfg.splice,
        // The progress bar is on stderr.
        connection_lines: false,
        faults: crate::faults::Plan {
            rules: vec![crate::faults::RulePlan {
                name: "bench".into(),
                upstream: target.to_string(),
                toxics: cfg.faults.clone(),
            }],
            ..Default::default()
        },
        proxy: Default::default(),
        tls: None,
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
        "bytes" => "{prefix:>24} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
        "sync" => "{prefix:>24} (fdatasync of every log file)",
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

/// A download round's volume, settled before the first round.
struct Plan {
    bytes: u64,
    /// With `--sustained`: the kernel's dirty limit in bytes, when it could be read.
    dirty: Option<u64>,
    sustained: bool,
}

impl Plan {
    /// Sizes the rounds (with `--sustained` and no `--bytes`: logs of 1.5 times the dirty
    /// limit, so that the page cache cannot hold them), then refuses them if the logs would
    /// not fit the free space under the log directory.
    fn new(cfg: &BenchConfig, sustained: bool, logs: &Logs) -> Result<Plan> {
        let dirty = if sustained {
            match (disk::dirty_limit(), cfg.bytes) {
                (Ok(d), _) => Some(d),
                (Err(_), Some(_)) => None,
                (Err(e), None) => {
                    return Err(anyhow!(
                        "--sustained without --bytes sizes its rounds from the kernel's dirty \
                         limit, and it could not be read ({e}): give --bytes"
                    ));
                }
            }
        } else {
            None
        };
        let bytes = match (cfg.bytes, dirty) {
            (Some(b), _) => b,
            (None, Some(d)) => {
                disk::bytes_for_logs(&cfg.formats, d.saturating_mul(3) / 2).max(args::DEFAULT_BYTES)
            }
            (None, None) => args::DEFAULT_BYTES,
        };
        if let Some(root) = logs.root() {
            let per_round = disk::expected_log_bytes(&cfg.formats, bytes);
            // A round's logs are removed before the disk's own copy of them is written, unless
            // they are kept.
            let kept = if cfg.keep_logs { cfg.rounds } else { 0 };
            let needed = per_round.saturating_mul(u64::from(kept) + 1);
            let free = disk::free_bytes(root)
                .with_context(|| format!("cannot ask {} for its free space", root.display()))?;
            if needed > free {
                let what = if cfg.keep_logs {
                    format!(
                        "{} rounds of {} logging {}, kept (--keep-logs), need",
                        cfg.rounds,
                        report::size(bytes),
                        cfg.formats
                    )
                } else {
                    format!(
                        "a round of {} logging {} needs",
                        report::size(bytes),
                        cfg.formats
                    )
                };
                bail!(
                    "{what} about {} of disk, and {} has {} free: lower --bytes, or give \
                     --log-dir on a larger file system",
                    disk::gb(needed),
                    cfg.log_parent.display(),
                    disk::gb(free)
                );
            }
        }
        Ok(Plan {
            bytes,
            dirty,
            sustained,
        })
    }
}

fn downloads(
    cfg: &BenchConfig,
    plan: &Plan,
    pause: Duration,
    logs: &Logs,
    pattern: &Arc<Pattern>,
) -> Result<Vec<DownloadRound>> {
    let bytes = plan.bytes;
    let source = Source::bind(pattern.clone(), bytes, pause).context("cannot start the source")?;
    let ranges = stats::split(bytes, cfg.connections);
    let mut rounds = Vec::new();
    for round in 1..=cfg.rounds {
        let label = |how: &str| format!("round {round}/{} {how}", cfg.rounds);
        let failed = |how: &'static str| move |f| fail(&format!("round {round}, {how}"), f);
        let pb = progress(bytes, label("direct"), "bytes");
        let clients = Prepared::start(&source, &ranges, pause, pattern, &pb)
            .map_err(failed("direct download"))?;
        let peak = mem::Peak::start();
        let direct = clients.go(source.addr());
        let (direct_rss, _) = finish_peak(peak);
        let (direct, _, _) = direct.map_err(failed("direct download"))?;
        pb.finish_and_clear();

        let dir = logs.for_run(&format!("round-{round}"));
        let config = proxy_config(cfg, source.addr(), &dir)?;
        // The proxied round and the file system's own measurement both start with nothing
        // waiting to be written back, or the earlier rounds' gigabytes would slow them. Before
        // the threads start: a source waits for its client no longer than IO_TIMEOUT.
        if cfg.formats.records() {
            sync_disks();
        }
        let pb = progress(bytes, label("via tcpspy"), "bytes");
        let clients = Prepared::start(&source, &ranges, pause, pattern, &pb)
            .map_err(failed("download through tcpspy"))?;
        // Everything the process spends from here to the proxy's end, less the source's and
        // the clients' own time, is the proxy's.
        let window = cpu::Window::open();
        let started = Instant::now();
        let proxy = Running::start(&config)?;
        // The proxy's idle level: started, nothing relayed yet.
        let peak = mem::Peak::start();
        let fetched = clients.go(proxy.addr);
        let stopped = proxy.stop();
        let written = Instant::now();
        let (proxy_rss, sampler_cpu) = finish_peak(peak);
        let proxy_cpu = match &fetched {
            Ok((_, own, _)) => window.others(own.saturating_add(sampler_cpu)),
            Err(_) => Duration::ZERO,
        };
        pb.finish_and_clear();
        let (proxied, _, reading) = fetched.map_err(failed("download through tcpspy"))?;
        let (outcome, reactor_cpu) = stopped?;
        let relayed = outcome.totals.bytes[0] + outcome.totals.bytes[1];
        let expected = bytes + net::REQUEST as u64 * u64::from(cfg.connections);
        if relayed != expected {
            bail!("round {round}: tcpspy counted {relayed} bytes relayed, expected {expected}");
        }
        // A paused reader's wait is not the proxy's time.
        let from = if pause.is_zero() { started } else { reading };
        let mut logged_secs = written.saturating_duration_since(from).as_secs_f64();
        let mut figures = DiskFigures::default();
        if cfg.formats.records() {
            if plan.sustained {
                let pb = progress(0, label("syncing logs"), "sync");
                // Nothing advances a bar while fdatasync waits: draw it once.
                pb.tick();
                let t = Instant::now();
                disk::sync_files(&dir)
                    .with_context(|| format!("round {round}: syncing the logs to disk"))?;
                let sync = t.elapsed().as_secs_f64();
                pb.finish_and_clear();
                logged_secs += sync;
                figures.log_sync_secs = Some(sync);
            }
            figures.log_bytes = dir_bytes(&dir)?;
            if cfg.formats.binary {
                figures.logs_verified =
                    verify_binary_logs(&dir, source.addr(), &ranges, pattern)
                        .with_context(|| format!("round {round}: the binary logs"))?;
            }
            logs.done_with(&dir)?;
            let pb = progress(figures.log_bytes, label("disk alone"), "bytes");
            let disk = disk_limit(
                &logs.for_run(&format!("disk-{round}")),
                figures.log_bytes,
                cfg.buffer_size,
                plan.sustained,
                &pb,
            )
            .with_context(|| format!("round {round}: measuring the file system"))?;
            pb.finish_and_clear();
            figures.disk_secs = Some(disk.total.as_secs_f64());
            figures.disk_sync_secs = disk.sync.map(|d| d.as_secs_f64());
        }
        rounds.push(DownloadRound {
            direct,
            proxied,
            relayed,
            log_bytes: figures.log_bytes,
            reactor_cpu: reactor_cpu.as_secs_f64(),
            logger_cpu: proxy_cpu.saturating_sub(reactor_cpu).as_secs_f64(),
            logs_verified: figures.logs_verified,
            logged_secs,
            disk_secs: figures.disk_secs,
            log_sync_secs: figures.log_sync_secs,
            disk_sync_secs: figures.disk_sync_secs,
            proxy_rss,
            direct_rss,
        });
    }
    Ok(rounds)
}

/// What a round's logs and the file system's own run of them came to.
#[derive(Default)]
struct DiskFigures {
    log_bytes: u64,
    logs_verified: u32,
    disk_secs: Option<f64>,
    log_sync_secs: Option<f64>,
    disk_sync_secs: Option<f64>,
}

/// The resident set's growth, if /proc could tell, and the CPU the sampler (if there was one)
/// spent, which is the bench's and not the proxy's.
fn finish_peak(peak: std::io::Result<mem::Peak>) -> (Option<u64>, Duration) {
    match peak.and_then(mem::Peak::finish) {
        Ok((grew, cpu)) => (Some(grew), cpu),
        Err(_) => (None, Duration::ZERO),
    }
}

/// Writes back everything waiting to be written.
fn sync_disks() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// How long the file system took in [`disk_limit`], and how much of it was the flush.
struct DiskRun {
    total: Duration,
    sync: Option<Duration>,
}

/// How long the file system under `dir` takes to take `bytes` written as the logs write them
/// (per chunk of `chunk` bytes: its hex dump, ~4.95 times as much, in one write, and the chunk
/// in another, to two files), with no network and no formatting: the most logging could do.
/// With `sync`, the clock runs until both files are on the disk (fdatasync), as the logs'
/// does with `--sustained`.
fn disk_limit(
    dir: &Path,
    bytes: u64,
    chunk: usize,
    sync: bool,
    pb: &ProgressBar,
) -> Result<DiskRun> {
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
            pb.inc(n as u64);
            if left == 0 {
                break;
            }
        }
    }
    let flushed = if sync {
        pb.set_message("(fdatasync)");
        let t = Instant::now();
        for f in &files {
            f.sync_data()?;
        }
        Some(t.elapsed())
    } else {
        None
    };
    let total = start.elapsed();
    drop(files);
    // Measured, not kept: these are not logs.
    std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    Ok(DiskRun {
        total,
        sync: flushed,
    })
}

/// A download's source and client threads, started, with their buffers allocated: nothing is
/// fetched until [`Prepared::go`] gives the clients an address.
struct Prepared {
    servers: Vec<thread::JoinHandle<Done<u64>>>,
    clients: Vec<net::Client>,
    bytes: u64,
    paused: bool,
}

impl Prepared {
    fn start(
        source: &Source,
        ranges: &[(u64, u64)],
        pause: Duration,
        pattern: &Arc<Pattern>,
        pb: &ProgressBar,
    ) -> Result<Prepared, Fail> {
        let spawn_err = |e: std::io::Error| Fail::Io(format!("cannot start a bench thread: {e}"));
        let (ready, prepared) = mpsc::channel();
        let servers = source
            .serve_downloads(ranges.len() as u32, &ready)
            .map_err(spawn_err)?;
        let clients = ranges
            .iter()
            .map(|&(off, len)| {
                net::spawn_fetch(off, len, pause, pattern.clone(), pb.clone(), &ready)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(spawn_err)?;
        for _ in 0..servers.len() + clients.len() {
            prepared
                .recv_timeout(net::IO_TIMEOUT)
                .map_err(|_| Fail::Io("a bench thread did not get ready".into()))?;
        }
        Ok(Prepared {
            servers,
            clients,
            bytes: ranges.iter().map(|&(_, len)| len).sum(),
            paused: !pause.is_zero(),
        })
    }

    /// Downloads every range from `addr` in parallel and checks it; returns the transfer as
    /// the clients saw it (timed from when they started reading), the CPU time the source's
    /// and clients' threads used, and when the first client started reading.
    fn go(self, addr: SocketAddr) -> Result<(Transfer, Duration, Instant), Fail> {
        let start = Instant::now();
        for c in &self.clients {
            c.go.send(addr)
                .map_err(|_| Fail::Io("a bench client ended before it started".into()))?;
        }
        let mut own = Duration::ZERO;
        let mut end = start;
        let mut reading: Option<Instant> = None;
        for c in self.clients {
            let Done { result, cpu } = net::join(c.thread);
            own += cpu;
            let f = result?;
            end = end.max(f.end);
            reading = Some(reading.map_or(f.reading, |r| r.min(f.reading)));
        }
        // A failed client returned above: its source thread ends on its own timeout.
        for s in self.servers {
            let Done { result, cpu } = net::join(s);
            own += cpu;
            result?;
        }
        let from = match reading {
            Some(r) if self.paused => r,
            _ => start,
        };
        let secs = end.saturating_duration_since(from).as_secs_f64();
        Ok((
            Transfer {
                bytes: self.bytes,
                secs,
            },
            own,
            from,
        ))
    }
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
    let source =
        Source::bind(pattern.clone(), 0, Duration::ZERO).context("cannot start the echo source")?;
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

//! The logging thread: everything tcpspy writes about connections goes through it, so the
//! reactor never waits on a disk or a terminal.
//!
//! It blocks for the first event, takes every event queued behind it, hands each to every
//! [`Output`], then reports the bytes done to the queue (which may wake a paused reactor).
//! Outputs write each chunk with one `write` per file from a shared scratch buffer: nothing is
//! held back in user space, so a file is current as soon as its batch is written (`tail -f`
//! shows traffic live) and there is nothing to flush at the end but closing.
//!
//! **Failures.** Each call into an output runs under `catch_unwind`: an output that panics is
//! turned off for the rest of the run (the others keep writing), the panic is told on stderr
//! with the output's name, the proxy is stopped through the [`StopHandle`], and the exit fails
//! naming it ([`LogStats::failures`]). If the thread itself fails, the queue is declared dead
//! ([`queue::Receiver::die`]) so that the reactor is never held back by it, and the proxy is
//! stopped the same way.
//!
//! **Stopping.** [`Logger::finish`] writes everything queued: files get every byte; stdout's
//! reader gets [`stdout::GRACE`] to take what is left, then what it has not taken is dropped
//! and counted, so that a reader that stopped reading cannot keep tcpspy from exiting.
//!
//! One module per output: [`hexdump`], [`binary`], [`pcap`] (the capture of the run),
//! [`index`] (`connections.jsonl`), [`live`] (the live view on stdout),
//! [`report`] (the stderr lines). [`files`] owns the descriptors, [`budget`] the
//! `--log-budget` cap on them, [`stdout`] the writes to stdout, [`queue`] the hand-off,
//! [`naming`] and [`stamp`] the pure formatting.

pub mod binary;
pub mod budget;
pub mod event;
pub mod files;
pub mod hexdump;
pub mod index;
pub mod keylog;
pub mod live;
pub mod naming;
pub mod pcap;
pub mod queue;
pub mod report;
pub mod stamp;
pub mod stdout;
pub mod trim;

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use mio::Waker;

use crate::config::{Capture, Formats, Rule};
use crate::stop::StopHandle;
use crate::sys::TcpStats;
use crate::types::{Dir, End, Hold, Side};

use budget::{Budget, Gap, Removal};
use event::{ConnId, Event, Holds};
use files::{FileError, FileId, Files};
use queue::{Receiver, Sender};
use stamp::Stamper;
use stdout::Deadline;

/// The environment variable of the test-only hook that makes a part of the logger panic.
///
/// Nothing a peer, the disk or the user does makes an output panic (that is the point), so
/// the tests of what a panic does need a way to cause one. Read once, as the logger starts;
/// the value names an output by its [`Output::kind`] (`hex`, `binary`, `pcap`, `index`,
/// `live`, `lines`), which then panics at its first chunk, or `logger`, for the logging thread
/// itself. Not a feature: nothing documents it to users.
pub const TEST_PANIC_VAR: &str = "TCPSPY_TEST_ONLY_PANIC";

/// What the logging thread needs to know.
#[derive(Clone, Debug)]
pub struct LogConfig {
    pub dir: PathBuf,
    pub formats: Formats,
    pub capture: Capture,
    pub rules: Vec<Rule>,
    pub queue_bound: usize,
    pub chunk: usize,
    pub max_open_files: usize,
    /// Stops the proxy at the first log failure (`--on-log-error exit`).
    pub stop_on_error: Option<StopHandle>,
    /// Print the `#0001 open`/`closed` lines on stderr.
    pub connection_lines: bool,
    /// Stops the proxy when the live view's reader goes away (`tcpspy -x | head`).
    pub stop: Option<StopHandle>,
    /// Put before connection numbers (`4242-0001`) so that processes sharing a port
    /// (`--reuse-port`) never write the same file name.
    pub label_prefix: Option<String>,
    /// `--log-budget`: the most bytes this run keeps in its log files.
    pub budget: Option<u64>,
    /// `--keylog` (or `SSLKEYLOGFILE`), opened.
    pub keylog: Option<Arc<std::fs::File>>,
}

/// What the logging thread did, for the exit summary.
#[derive(Clone, Debug, Default)]
pub struct LogStats {
    pub file_errors: u64,
    /// A log failure stopped the proxy (`--on-log-error exit`).
    pub stopped_by_error: bool,
    /// What was not logged and makes the exit fail, one sentence each: an output that
    /// panicked, the logging thread failing, stdout given up at the stop.
    pub failures: Vec<String>,
    /// What `--log-budget` did.
    pub budget: Option<budget::Stats>,
}

/// A connection as every output sees it.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub id: ConnId,
    /// The connection's number as logs show it: `0001`, or `4242-0001` with a process prefix.
    pub label: String,
    pub rule: usize,
    /// The rule's target as the user wrote it.
    pub target_name: String,
    pub client: SocketAddr,
    pub target: SocketAddr,
    /// tcpspy's address on the upstream connection.
    pub local: SocketAddr,
    pub started: SystemTime,
    /// When the upstream connect completed.
    pub connected: Option<SystemTime>,
    /// Chunks logged so far per direction (the number of the next one).
    pub chunks: [u64; 2],
    /// Bytes logged so far per direction (the offset of the next chunk).
    pub offsets: [u64; 2],
    /// The names of the connection's log files, as outputs created them.
    pub files: FileNames,
    /// Under `--log-budget`: the stretch of each direction being left out now, if any.
    pub gaps: [Option<Gap>; 2],
    /// Under `--log-budget`: bytes left out so far per direction.
    pub not_recorded: [u64; 2],
}

/// The names of a connection's log files, in one string, a name per line (names are made
/// of numbers and addresses, never a newline): an idle connection's three names cost one
/// allocation, not four.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileNames(String);

impl FileNames {
    pub fn push(&mut self, name: &str) {
        if !self.0.is_empty() {
            self.0.push('\n');
        }
        self.0.push_str(name);
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split('\n').filter(|n| !n.is_empty())
    }
}

impl Extend<String> for FileNames {
    fn extend<I: IntoIterator<Item = String>>(&mut self, names: I) {
        for name in names {
            self.push(&name);
        }
    }
}

impl<S: AsRef<str>> FromIterator<S> for FileNames {
    fn from_iter<I: IntoIterator<Item = S>>(names: I) -> FileNames {
        let mut all = FileNames::default();
        for name in names {
            all.push(name.as_ref());
        }
        all
    }
}

impl ConnInfo {
    /// The address of a side.
    pub fn peer(&self, side: Side) -> &SocketAddr {
        match side {
            Side::Client => &self.client,
            Side::Server => &self.target,
        }
    }
}

/// How a connection ended, as its last event says.
#[derive(Clone, Debug)]
pub struct Closed {
    pub at: SystemTime,
    /// Bytes delivered per direction.
    pub bytes: [u64; 2],
    /// Bytes logged but never delivered per direction.
    pub undelivered: [u64; 2],
    /// How each side ended, in order.
    pub ends: Vec<(Side, End)>,
    /// Pauses of reading per direction.
    pub held: [Holds; 2],
    /// The kernel's view of each socket at the end, indexed by [`Side`].
    pub tcp: [Option<TcpStats>; 2],
}

/// What outputs share: the open-file set, a scratch buffer, the time formatter, and the file
/// errors to report at the end of the batch.
pub struct Io {
    pub dir: PathBuf,
    pub files: Files,
    pub scratch: Vec<u8>,
    pub stamper: Stamper,
    pub errors: Vec<FileError>,
    /// File errors reported so far.
    pub reported: u64,
    stop_on_error: Option<StopHandle>,
    /// When writes to stdout give up (set as the logger is asked to finish).
    pub deadline: Deadline,
    /// `--log-budget`.
    pub budget: Option<Budget>,
    /// What the exit must report as not logged (see [`LogStats::failures`]).
    pub failures: Vec<String>,
}

impl Io {
    /// Closes a file of connection `conn`; under a budget, it becomes removable once the
    /// connection is finished.
    pub fn close_file(&mut self, conn: ConnId, f: FileId) {
        if let Some((path, size)) = self.files.close(f)
            && let Some(b) = &mut self.budget
        {
            b.retire(conn, path, size);
        }
    }

    /// Closes a full part of the index holding the lines of connections `ids`; under a
    /// budget, it is removable behind them. (The first part, `connections.jsonl`, is shared
    /// with other runs and stays.)
    pub fn close_index_part(&mut self, f: FileId, ids: Vec<ConnId>) {
        if let Some((path, size)) = self.files.close(f)
            && let Some(b) = &mut self.budget
        {
            b.retire_index_part(path, size, ids);
        }
    }

    /// Closes a full part of the capture; under a budget, it is removable at once.
    pub fn close_part(&mut self, f: FileId) {
        if let Some((path, size)) = self.files.close(f)
            && let Some(b) = &mut self.budget
        {
            b.retire_part(path, size);
        }
    }

    /// Reports the file errors kept so far on stderr, once each.
    pub fn report_errors(&mut self) {
        for e in self.errors.drain(..) {
            self.reported += 1;
            match &self.stop_on_error {
                Some(stop) => {
                    eprint_line(&format!("tcpspy: {e}; stopping (--on-log-error exit)"));
                    stop.stop();
                }
                None => eprint_line(&format!("tcpspy: {e}; nothing more is written to it")),
            }
        }
    }

    /// Keeps a file error for reporting.
    pub fn check<T>(&mut self, r: Result<T, FileError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }
}

/// One kind of record. Each event of a connection reaches every output in order; an output
/// keeps its own per-connection state.
pub trait Output: Send {
    /// What it writes, for messages: "the hex dumps".
    fn name(&self) -> &'static str;
    /// A short word for it: `hex`, as `--log` says.
    fn kind(&self) -> &'static str;
    /// The most bytes a chunk of `len` bytes adds to this output's files (for the log budget;
    /// 0 for an output that writes no file).
    fn data_cost(&self, _conn: &ConnInfo, _dir: Dir, _len: usize) -> u64 {
        0
    }
    /// A chunk the log budget leaves out of the files (`conn.gaps` holds its stretch so far).
    /// Outputs that write no file show it as any other chunk.
    fn not_recorded(
        &mut self,
        conn: &ConnInfo,
        dir: Dir,
        at: SystemTime,
        bytes: &[u8],
        io: &mut Io,
    ) {
        self.data(conn, dir, at, bytes, io);
    }
    /// A stretch left out ended: recording `resumed`, or the connection closed first.
    fn gap_end(&mut self, _conn: &ConnInfo, _dir: Dir, _gap: &Gap, _resumed: bool, _io: &mut Io) {}
    /// The log budget removed files.
    fn removed(&mut self, _removal: &Removal, _io: &mut Io) {}
    /// The start of the run, before any event.
    fn start(&mut self, _io: &mut Io) {}
    /// A new connection; an output that creates files adds their names to `conn.files`.
    fn open(&mut self, _conn: &mut ConnInfo, _io: &mut Io) {}
    fn connected(&mut self, _conn: &ConnInfo, _at: SystemTime, _io: &mut Io) {}
    /// A chunk; `conn.offsets` and `conn.chunks` are still those before it.
    fn data(&mut self, _conn: &ConnInfo, _dir: Dir, _at: SystemTime, _bytes: &[u8], _io: &mut Io) {}
    fn end(&mut self, _conn: &ConnInfo, _side: Side, _how: &End, _at: SystemTime, _io: &mut Io) {}
    /// `dir` stopped reading its source from `since` for `lasted`, because of `why`.
    fn held(
        &mut self,
        _conn: &ConnInfo,
        _dir: Dir,
        _why: Hold,
        _since: SystemTime,
        _lasted: Duration,
        _io: &mut Io,
    ) {
    }
    /// A stage of `dir` (a fault) acted: `text` says what it did.
    fn note(
        &mut self,
        _conn: &ConnInfo,
        _dir: Dir,
        _stage: &'static str,
        _text: &str,
        _at: SystemTime,
        _io: &mut Io,
    ) {
    }
    /// Rule `index` was added or changed while running (the control API).
    fn rule(&mut self, _index: usize, _rule: &Rule, _io: &mut Io) {}

    /// A TLS leg's handshake, or the interception failing (`--tls`).
    fn tls(&mut self, _conn: &ConnInfo, _at: SystemTime, _what: &crate::tls::Event, _io: &mut Io) {}

    /// TLS secrets, NSS key log lines.
    fn keys(&mut self, _lines: &str, _io: &mut Io) {}

    /// The client leg's TLS records of an intercepted connection (the capture shows them).
    fn wire(&mut self, _conn: &ConnInfo, _dir: Dir, _at: SystemTime, _bytes: &[u8], _io: &mut Io) {}
    /// The last event of a connection.
    fn close(&mut self, _conn: &ConnInfo, _closed: &Closed, _io: &mut Io) {}
    /// The end of a batch of events: push out anything held back.
    fn flush(&mut self, _io: &mut Io) {}
    /// The end of the run: write what is left.
    fn finish(&mut self, _io: &mut Io) {}
}

/// The running logging thread; [`Logger::finish`] stops it after everything queued is written.
pub struct Logger {
    tx: Arc<Sender>,
    handle: Option<JoinHandle<LogStats>>,
    deadline: Deadline,
}

impl Logger {
    /// Starts the thread with the outputs `cfg` asks for. `waker` wakes the reactor when the
    /// queue drains.
    pub fn start(cfg: LogConfig, waker: Option<Arc<Waker>>) -> io::Result<Logger> {
        let part_size = cfg
            .budget
            .map(|b| Budget::new(b, cfg.chunk, false).part_size());
        let mut outputs: Vec<Box<dyn Output>> = Vec::new();
        if cfg.formats.hex {
            outputs.push(Box::new(hexdump::HexLog::default()));
        }
        if cfg.formats.binary {
            outputs.push(Box::new(binary::BinaryLog::default()));
        }
        if cfg.formats.pcap {
            outputs.push(Box::new(pcap::PcapLog::new(cfg.capture.clone(), part_size)));
        }
        if has_index(&cfg) {
            outputs.push(Box::new(index::Index::new(
                cfg.rules.iter().map(|r| r.listen).collect(),
                part_size,
                cfg.label_prefix.clone(),
            )));
        }
        if let Some(l) = cfg.formats.live {
            outputs.push(Box::new(live::LiveView::new(l, cfg.stop.clone())));
        }
        if cfg.connection_lines {
            outputs.push(Box::new(report::Report::default()));
        }
        if let Some(f) = &cfg.keylog {
            outputs.push(Box::new(keylog::KeyLog::new(f.clone())));
        }
        Logger::start_with(cfg, outputs, waker)
    }

    /// Starts the thread with the given outputs.
    pub fn start_with(
        cfg: LogConfig,
        outputs: Vec<Box<dyn Output>>,
        waker: Option<Arc<Waker>>,
    ) -> io::Result<Logger> {
        let (tx, rx) = queue::channel(cfg.queue_bound, cfg.chunk, waker);
        let test_panic = std::env::var(TEST_PANIC_VAR).ok();
        let stop = cfg.stop.clone();
        let worker = Worker::new(cfg, outputs, test_panic);
        let deadline = worker.io.deadline.clone();
        let handle = std::thread::Builder::new()
            .name("tcpspy-log".into())
            .spawn(
                move || match catch_unwind(AssertUnwindSafe(|| worker.run(&rx))) {
                    Ok(stats) => stats,
                    Err(panic) => {
                        rx.die();
                        let what = format!("the logging thread failed ({})", panic_text(&*panic));
                        eprint_line(&format!("tcpspy: {what}; nothing more is logged; stopping"));
                        if let Some(stop) = stop {
                            stop.stop();
                        }
                        LogStats {
                            failures: vec![what],
                            ..LogStats::default()
                        }
                    }
                },
            )?;
        Ok(Logger {
            tx: Arc::new(tx),
            handle: Some(handle),
            deadline,
        })
    }

    pub fn sender(&self) -> Arc<Sender> {
        self.tx.clone()
    }

    /// Writes everything queued, closes every file and waits for the thread. stdout gets
    /// [`stdout::GRACE`] from now to take what is left for it.
    pub fn finish(mut self) -> LogStats {
        self.stop()
    }

    fn stop(&mut self) -> LogStats {
        let Some(h) = self.handle.take() else {
            return LogStats::default();
        };
        self.deadline.set(Instant::now() + stdout::GRACE);
        self.tx.send(Event::Stop);
        self.tx.wake_logger();
        let mut stats = h.join().unwrap_or_else(|panic| LogStats {
            failures: vec![format!(
                "the logging thread failed ({})",
                panic_text(&*panic)
            )],
            ..LogStats::default()
        });
        let dropped = self.tx.dropped();
        if dropped > 0 {
            stats.failures.push(format!(
                "{dropped} events came after it and were not logged"
            ));
        }
        stats
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        self.stop();
    }
}

/// True when the run writes `connections.jsonl`: something is recorded in the log directory.
fn has_index(cfg: &LogConfig) -> bool {
    cfg.formats.hex || cfg.formats.binary || (cfg.formats.pcap && cfg.capture == Capture::LogDir)
}

/// A panic's message, as `panic!` was given it.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    let msg = match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (None, Some(s)) => s.clone(),
        (None, None) => "a panic without a message".to_string(),
    };
    format!("panic: {msg}")
}

/// An output, and whether it failed.
struct Slot {
    out: Box<dyn Output>,
    failed: bool,
    /// The test-only hook ([`TEST_PANIC_VAR`]) names this output.
    test_panic: bool,
}

/// The outputs, each call into one guarded (see the module doc).
struct Outputs {
    slots: Vec<Slot>,
    stop: Option<StopHandle>,
    /// The test-only hook names the logging thread itself.
    test_panic: bool,
}

impl Outputs {
    /// Calls `f` on every output that has not failed; one that panics is turned off.
    fn each(&mut self, io: &mut Io, f: impl FnMut(&mut dyn Output, &mut Io)) {
        self.each_hooked(io, false, f);
    }

    /// [`Outputs::each`]; with `hooked`, the output the test-only hook names panics first.
    fn each_hooked(
        &mut self,
        io: &mut Io,
        hooked: bool,
        mut f: impl FnMut(&mut dyn Output, &mut Io),
    ) {
        for slot in &mut self.slots {
            if slot.failed {
                continue;
            }
            let out = &mut *slot.out;
            let hook = hooked && slot.test_panic;
            let Err(panic) = catch_unwind(AssertUnwindSafe(|| {
                if hook {
                    panic!("test-only panic of {} ({TEST_PANIC_VAR})", out.name());
                }
                f(&mut *out, &mut *io)
            })) else {
                continue;
            };
            slot.failed = true;
            let what = format!("{} failed ({})", slot.out.name(), panic_text(&*panic));
            eprint_line(&format!(
                "tcpspy: {what}; nothing more is written to it (the other logs go on); stopping"
            ));
            io.failures.push(what);
            if let Some(stop) = &self.stop {
                stop.stop();
            }
        }
    }

    /// The most bytes a chunk adds to the files of every output still on.
    fn data_cost(&self, conn: &ConnInfo, dir: Dir, len: usize) -> u64 {
        self.slots
            .iter()
            .filter(|s| !s.failed)
            .map(|s| s.out.data_cost(conn, dir, len))
            .fold(0, u64::saturating_add)
    }
}

struct Worker {
    cfg: LogConfig,
    outputs: Outputs,
    /// Boxed: a map holds up to twice the slots it has entries, and an idle connection should
    /// not pay that for a whole `ConnInfo`.
    conns: HashMap<ConnId, Box<ConnInfo>>,
    io: Io,
}

impl Worker {
    fn new(cfg: LogConfig, outputs: Vec<Box<dyn Output>>, test_panic: Option<String>) -> Worker {
        let budget = cfg
            .budget
            .map(|b| Budget::new(b, cfg.chunk, !has_index(&cfg)));
        Worker {
            io: Io {
                dir: cfg.dir.clone(),
                files: Files::new(cfg.max_open_files),
                scratch: Vec::with_capacity(cfg.chunk / 16 * hexdump::LINE + 256),
                stamper: Stamper::default(),
                errors: Vec::new(),
                reported: 0,
                stop_on_error: cfg.stop_on_error.clone(),
                deadline: Deadline::default(),
                budget,
                failures: Vec::new(),
            },
            outputs: Outputs {
                slots: outputs
                    .into_iter()
                    .map(|out| Slot {
                        test_panic: test_panic.as_deref() == Some(out.kind()),
                        out,
                        failed: false,
                    })
                    .collect(),
                stop: cfg.stop.clone(),
                test_panic: test_panic.as_deref() == Some("logger"),
            },
            conns: HashMap::new(),
            cfg,
        }
    }

    fn run(mut self, rx: &Receiver) -> LogStats {
        let mut batch = VecDeque::new();
        let mut spent = Vec::new();
        self.outputs.each(&mut self.io, |out, io| out.start(io));
        self.io.report_errors();
        let mut trim = trim::Trim::new();
        loop {
            match trim.wait(Instant::now()) {
                Some(idle) => {
                    if !rx.recv_batch_timeout(&mut batch, idle) {
                        trim.run(Instant::now());
                        continue;
                    }
                }
                None => rx.recv_batch(&mut batch),
            }
            let mut cost = 0usize;
            let mut stop = false;
            for event in batch.drain(..) {
                cost = cost.saturating_add(event.cost());
                match event {
                    Event::Stop => stop = true,
                    Event::Data { id, dir, at, bytes } => {
                        self.data(id, dir, at, &bytes);
                        spent.push(bytes);
                    }
                    other => self.control(other),
                }
                self.note_removals();
            }
            self.outputs.each(&mut self.io, |out, io| out.flush(io));
            self.io.report_errors();
            if let Some(b) = &mut self.io.budget {
                b.after_batch(&self.io.files);
            }
            rx.release(cost, &mut spent);
            trim.passed(cost);
            if stop {
                break;
            }
        }
        self.outputs.each(&mut self.io, |out, io| out.finish(io));
        self.io.report_errors();
        let budget = self.io.budget.as_ref().map(|b| b.stats(&self.io.files));
        if let Some(s) = &budget {
            eprint_line(&s.line());
        }
        LogStats {
            file_errors: self.io.reported,
            stopped_by_error: self.io.reported > 0 && self.io.stop_on_error.is_some(),
            failures: std::mem::take(&mut self.io.failures),
            budget,
        }
    }

    /// Hands the budget's removals to the outputs (the index notes them).
    fn note_removals(&mut self) {
        let Some(b) = &mut self.io.budget else {
            return;
        };
        for removal in b.take_notes() {
            self.outputs
                .each(&mut self.io, |out, io| out.removed(&removal, io));
        }
    }

    fn data(&mut self, id: ConnId, dir: Dir, at: SystemTime, bytes: &[u8]) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let i = dir.index();
        let len = bytes.len() as u64;
        if self.outputs.test_panic {
            panic!("test-only panic of the logging thread ({TEST_PANIC_VAR}=logger)");
        }
        let record = match &mut self.io.budget {
            None => true,
            Some(b) => {
                let cost = self.outputs.data_cost(conn, dir, bytes.len());
                let whole = self.outputs.data_cost(conn, dir, self.cfg.chunk);
                cost == 0 || b.admit(&mut self.io.files, cost, whole, conn.gaps[i].is_some())
            }
        };
        if record {
            if let Some(gap) = conn.gaps[i].take() {
                self.outputs.each(&mut self.io, |out, io| {
                    out.gap_end(conn, dir, &gap, true, io)
                });
            }
            self.outputs.each_hooked(&mut self.io, true, |out, io| {
                out.data(conn, dir, at, bytes, io)
            });
        } else {
            let gap = conn.gaps[i].get_or_insert(Gap {
                first: conn.chunks[i],
                offset: conn.offsets[i],
                ..Gap::default()
            });
            gap.chunks = gap.chunks.saturating_add(1);
            gap.bytes = gap.bytes.saturating_add(len);
            conn.not_recorded[i] = conn.not_recorded[i].saturating_add(len);
            if let Some(b) = &mut self.io.budget {
                b.not_recorded(len);
            }
            self.outputs.each(&mut self.io, |out, io| {
                out.not_recorded(conn, dir, at, bytes, io)
            });
        }
        conn.chunks[i] = conn.chunks[i].saturating_add(1);
        conn.offsets[i] = conn.offsets[i].saturating_add(len);
    }

    fn control(&mut self, event: Event) {
        if let Some(b) = &mut self.io.budget {
            b.before_event(&mut self.io.files);
        }
        match event {
            Event::Open {
                id,
                rule,
                client,
                target,
                local,
                at,
                target_name,
            } => {
                let label = match &self.cfg.label_prefix {
                    Some(p) => format!("{p}-{}", naming::number(id)),
                    None => naming::number(id),
                };
                let mut conn = Box::new(ConnInfo {
                    id,
                    label,
                    rule,
                    target_name: target_name.unwrap_or_else(|| {
                        self.cfg
                            .rules
                            .get(rule)
                            .map(|r| r.target_name.clone())
                            .unwrap_or_default()
                    }),
                    client,
                    target,
                    local,
                    started: at,
                    connected: None,
                    chunks: [0; 2],
                    offsets: [0; 2],
                    files: FileNames::default(),
                    gaps: [None; 2],
                    not_recorded: [0; 2],
                });
                self.outputs
                    .each(&mut self.io, |out, io| out.open(&mut conn, io));
                self.conns.insert(id, conn);
            }
            Event::Connected { id, at } => {
                let Some(conn) = self.conns.get_mut(&id) else {
                    return;
                };
                conn.connected = Some(at);
                self.outputs
                    .each(&mut self.io, |out, io| out.connected(conn, at, io));
            }
            Event::Held {
                id,
                dir,
                why,
                since,
                lasted,
            } => {
                let Some(conn) = self.conns.get(&id) else {
                    return;
                };
                self.outputs.each(&mut self.io, |out, io| {
                    out.held(conn, dir, why, since, lasted, io)
                });
            }
            Event::End { id, side, how, at } => {
                let Some(conn) = self.conns.get(&id) else {
                    return;
                };
                self.outputs
                    .each(&mut self.io, |out, io| out.end(conn, side, &how, at, io));
            }
            Event::Close {
                id,
                at,
                bytes,
                undelivered,
                ends,
                held,
                tcp,
            } => {
                let Some(mut conn) = self.conns.remove(&id) else {
                    return;
                };
                for dir in Dir::BOTH {
                    if let Some(gap) = conn.gaps[dir.index()].take() {
                        self.outputs.each(&mut self.io, |out, io| {
                            out.gap_end(&conn, dir, &gap, false, io)
                        });
                    }
                }
                let closed = Closed {
                    at,
                    bytes,
                    undelivered,
                    ends,
                    held: *held,
                    tcp: *tcp,
                };
                self.outputs
                    .each(&mut self.io, |out, io| out.close(&conn, &closed, io));
                if let Some(b) = &mut self.io.budget {
                    b.finished(conn.id, &conn.label, conn.not_recorded);
                }
            }
            Event::Note {
                id,
                dir,
                stage,
                text,
                at,
            } => {
                let Some(conn) = self.conns.get(&id) else {
                    return;
                };
                self.outputs.each(&mut self.io, |out, io| {
                    out.note(conn, dir, stage, &text, at, io)
                });
            }
            Event::Rule { index, rule } => {
                while self.cfg.rules.len() <= index {
                    self.cfg.rules.push((*rule).clone());
                }
                self.cfg.rules[index] = (*rule).clone();
                self.outputs
                    .each(&mut self.io, |out, io| out.rule(index, &rule, io));
            }
            Event::Tls { id, at, what } => {
                let Some(conn) = self.conns.get(&id) else {
                    return;
                };
                self.outputs
                    .each(&mut self.io, |out, io| out.tls(conn, at, &what, io));
            }
            Event::Keys(lines) => {
                self.outputs
                    .each(&mut self.io, |out, io| out.keys(&lines, io));
            }
            Event::Wire { id, dir, at, bytes } => {
                let Some(conn) = self.conns.get(&id) else {
                    return;
                };
                self.outputs
                    .each(&mut self.io, |out, io| out.wire(conn, dir, at, &bytes, io));
            }
            Event::Line(line) => eprint_line(&line),
            Event::Data { .. } | Event::Stop => {}
        }
    }
}

/// Writes one line to stderr in one `write`, ignoring failure: a closed stderr must not stop
/// the relay.
pub fn eprint_line(line: &str) {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    let _ = io::stderr().lock().write_all(&buf);
}

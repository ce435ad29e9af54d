//! The logging thread: everything tcpspy writes about connections goes through it, so the
//! reactor never waits on a disk or a terminal.
//!
//! It blocks for the first event, takes every event queued behind it, hands each to every
//! [`Output`], then reports the bytes done to the queue (which may wake a paused reactor).
//! Outputs write each chunk with one `write` per file from a shared scratch buffer: nothing is
//! held back in user space, so a file is current as soon as its batch is written (`tail -f`
//! shows traffic live) and there is nothing to flush at the end but closing.
//!
//! One module per output: [`hexdump`], [`binary`], [`pcap`] (the capture of the run),
//! [`index`] (`connections.jsonl`), [`live`] (the live view on stdout),
//! [`report`] (the stderr lines). [`files`]
//! owns the descriptors, [`queue`] the hand-off, [`naming`] and [`stamp`] the pure formatting.

pub mod binary;
pub mod event;
pub mod files;
pub mod hexdump;
pub mod index;
pub mod live;
pub mod naming;
pub mod pcap;
pub mod queue;
pub mod report;
pub mod stamp;

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use mio::Waker;

use crate::config::{Capture, Formats, Rule};
use crate::stop::StopHandle;
use crate::sys::TcpStats;
use crate::types::{Dir, End, Hold, Side};

use event::{ConnId, Event, Holds};
use files::{FileError, Files};
use queue::{Receiver, Sender};
use stamp::Stamper;

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
}

/// What the logging thread did, for the exit summary.
#[derive(Clone, Debug, Default)]
pub struct LogStats {
    pub file_errors: u64,
    /// A log failure stopped the proxy (`--on-log-error exit`).
    pub stopped_by_error: bool,
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
    pub files: Vec<String>,
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
}

impl Io {
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
}

impl Logger {
    /// Starts the thread with the outputs `cfg` asks for. `waker` wakes the reactor when the
    /// queue drains.
    pub fn start(cfg: LogConfig, waker: Option<Arc<Waker>>) -> io::Result<Logger> {
        let mut outputs: Vec<Box<dyn Output>> = Vec::new();
        if cfg.formats.hex {
            outputs.push(Box::new(hexdump::HexLog::default()));
        }
        if cfg.formats.binary {
            outputs.push(Box::new(binary::BinaryLog::default()));
        }
        if cfg.formats.pcap {
            outputs.push(Box::new(pcap::PcapLog::new(cfg.capture.clone())));
        }
        if cfg.formats.hex
            || cfg.formats.binary
            || (cfg.formats.pcap && cfg.capture == Capture::LogDir)
        {
            outputs.push(Box::new(index::Index::new(
                cfg.rules.iter().map(|r| r.listen).collect(),
            )));
        }
        if let Some(l) = cfg.formats.live {
            outputs.push(Box::new(live::LiveView::new(l, cfg.stop.clone())));
        }
        if cfg.connection_lines {
            outputs.push(Box::new(report::Report));
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
        let worker = Worker::new(cfg, outputs);
        let handle = std::thread::Builder::new()
            .name("tcpspy-log".into())
            .spawn(move || worker.run(rx))?;
        Ok(Logger {
            tx: Arc::new(tx),
            handle: Some(handle),
        })
    }

    pub fn sender(&self) -> Arc<Sender> {
        self.tx.clone()
    }

    /// Writes everything queued, closes every file and waits for the thread.
    pub fn finish(mut self) -> LogStats {
        self.stop()
    }

    fn stop(&mut self) -> LogStats {
        match self.handle.take() {
            Some(h) => {
                self.tx.send(Event::Stop);
                self.tx.wake_logger();
                h.join().unwrap_or_default()
            }
            None => LogStats::default(),
        }
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Worker {
    cfg: LogConfig,
    outputs: Vec<Box<dyn Output>>,
    conns: HashMap<ConnId, ConnInfo>,
    io: Io,
}

impl Worker {
    fn new(cfg: LogConfig, outputs: Vec<Box<dyn Output>>) -> Worker {
        Worker {
            io: Io {
                dir: cfg.dir.clone(),
                files: Files::new(cfg.max_open_files),
                scratch: Vec::with_capacity(cfg.chunk / 16 * hexdump::LINE + 256),
                stamper: Stamper::default(),
                errors: Vec::new(),
                reported: 0,
                stop_on_error: cfg.stop_on_error.clone(),
            },
            outputs,
            conns: HashMap::new(),
            cfg,
        }
    }

    fn run(mut self, rx: Receiver) -> LogStats {
        let mut batch = VecDeque::new();
        let mut spent = Vec::new();
        for out in &mut self.outputs {
            out.start(&mut self.io);
        }
        self.io.report_errors();
        loop {
            rx.recv_batch(&mut batch);
            let mut cost = 0;
            let mut stop = false;
            for event in batch.drain(..) {
                cost += event.cost();
                match event {
                    Event::Stop => stop = true,
                    Event::Data { id, dir, at, bytes } => {
                        self.data(id, dir, at, &bytes);
                        spent.push(bytes);
                    }
                    other => self.control(other),
                }
            }
            for out in &mut self.outputs {
                out.flush(&mut self.io);
            }
            self.io.report_errors();
            rx.release(cost, &mut spent);
            if stop {
                break;
            }
        }
        for out in &mut self.outputs {
            out.finish(&mut self.io);
        }
        self.io.report_errors();
        LogStats {
            file_errors: self.io.reported,
            stopped_by_error: self.io.reported > 0 && self.io.stop_on_error.is_some(),
        }
    }

    fn data(&mut self, id: ConnId, dir: Dir, at: SystemTime, bytes: &[u8]) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        for out in &mut self.outputs {
            out.data(conn, dir, at, bytes, &mut self.io);
        }
        conn.chunks[dir.index()] += 1;
        conn.offsets[dir.index()] += bytes.len() as u64;
    }

    fn control(&mut self, event: Event) {
        match event {
            Event::Open {
                id,
                rule,
                client,
                target,
                local,
                at,
            } => {
                let label = match &self.cfg.label_prefix {
                    Some(p) => format!("{p}-{}", naming::number(id)),
                    None => naming::number(id),
                };
                let mut conn = ConnInfo {
                    id,
                    label,
                    rule,
                    target_name: self
                        .cfg
                        .rules
                        .get(rule)
                        .map(|r| r.target_name.clone())
                        .unwrap_or_default(),
                    client,
                    target,
                    local,
                    started: at,
                    connected: None,
                    chunks: [0; 2],
                    offsets: [0; 2],
                    files: Vec::new(),
                };
                for out in &mut self.outputs {
                    out.open(&mut conn, &mut self.io);
                }
                self.conns.insert(id, conn);
            }
            Event::Connected { id, at } => {
                let Some(conn) = self.conns.get_mut(&id) else {
                    return;
                };
                conn.connected = Some(at);
                for out in &mut self.outputs {
                    out.connected(conn, at, &mut self.io);
                }
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
                for out in &mut self.outputs {
                    out.held(conn, dir, why, since, lasted, &mut self.io);
                }
            }
            Event::End { id, side, how, at } => {
                let Some(conn) = self.conns.get(&id) else {
                    return;
                };
                for out in &mut self.outputs {
                    out.end(conn, side, &how, at, &mut self.io);
                }
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
                let Some(conn) = self.conns.remove(&id) else {
                    return;
                };
                let closed = Closed {
                    at,
                    bytes,
                    undelivered,
                    ends,
                    held,
                    tcp,
                };
                for out in &mut self.outputs {
                    out.close(&conn, &closed, &mut self.io);
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
                for out in &mut self.outputs {
                    out.note(conn, dir, stage, &text, at, &mut self.io);
                }
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

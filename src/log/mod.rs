//! The logging thread: everything tcpspy writes about connections goes through it — the hex
//! dump, the binary files, and the connection lines on stderr — so the reactor never waits on
//! a disk or a terminal.
//!
//! It blocks for the first event, takes every event queued behind it, writes them, then
//! reports the bytes done to the queue (which may wake a paused reactor). Each chunk is written
//! with one `write` per file, from a scratch buffer shared by all connections: nothing is held
//! back in user space, so a file is current as soon as its batch is written (`tail -f` shows
//! traffic live) and there is nothing to flush at the end but closing.
//!
//! One module per output format ([`hexdump`], [`binary`]); [`files`] owns the descriptors.

pub mod binary;
pub mod event;
pub mod files;
pub mod hexdump;
pub mod naming;
pub mod queue;
pub mod stamp;

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use mio::Waker;

use crate::cli::{Formats, Rule};
use crate::conn::{Dir, End, Side};

use binary::BinaryLog;
use event::{ConnId, Event};
use files::{FileError, FileId, Files};
use queue::{Receiver, Sender};
use stamp::Stamper;

/// What the logging thread needs to know.
#[derive(Clone, Debug)]
pub struct LogConfig {
    pub dir: PathBuf,
    pub formats: Formats,
    pub rules: Vec<Rule>,
    pub queue_bound: usize,
    pub chunk: usize,
    pub max_open_files: usize,
    /// Test hook: a pause per batch, to make the queue fill up.
    pub debug_delay: Duration,
}

/// What the logging thread did, for the exit summary.
#[derive(Clone, Debug, Default)]
pub struct LogStats {
    pub file_errors: u64,
}

/// The running logging thread; [`Logger::finish`] stops it after everything queued is written.
pub struct Logger {
    tx: Arc<Sender>,
    handle: Option<JoinHandle<LogStats>>,
}

impl Logger {
    /// Starts the thread. `waker` wakes the reactor when the queue drains.
    pub fn start(cfg: LogConfig, waker: Option<Arc<Waker>>) -> io::Result<Logger> {
        let (tx, rx) = queue::channel(cfg.queue_bound, cfg.chunk, waker);
        let worker = Worker::new(cfg);
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

/// One connection as the logger knows it.
struct Record {
    rule: usize,
    client: SocketAddr,
    target: SocketAddr,
    local: SocketAddr,
    started: SystemTime,
    hex: Option<FileId>,
    binary: Option<BinaryLog>,
    chunks: [u64; 2],
    offsets: [u64; 2],
}

impl Record {
    fn peer(&self, side: Side) -> &SocketAddr {
        match side {
            Side::Client => &self.client,
            Side::Server => &self.target,
        }
    }
}

struct Worker {
    cfg: LogConfig,
    files: Files,
    conns: HashMap<ConnId, Record>,
    scratch: Vec<u8>,
    stamper: Stamper,
    errors: Vec<FileError>,
    stats: LogStats,
}

impl Worker {
    fn new(cfg: LogConfig) -> Worker {
        Worker {
            files: Files::new(cfg.max_open_files),
            conns: HashMap::new(),
            scratch: Vec::with_capacity(cfg.chunk / 16 * hexdump::LINE + 256),
            stamper: Stamper::default(),
            errors: Vec::new(),
            stats: LogStats::default(),
            cfg,
        }
    }

    fn run(mut self, rx: Receiver) -> LogStats {
        let mut batch = VecDeque::new();
        let mut spent = Vec::new();
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
            self.report_errors();
            if !self.cfg.debug_delay.is_zero() {
                std::thread::sleep(self.cfg.debug_delay);
            }
            rx.release(cost, &mut spent);
            if stop {
                break;
            }
        }
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.close_files(id);
        }
        self.stats
    }

    fn data(&mut self, id: ConnId, dir: Dir, at: SystemTime, bytes: &[u8]) {
        let Some(rec) = self.conns.get_mut(&id) else {
            return;
        };
        let i = dir.index();
        if let Some(hex) = rec.hex {
            self.scratch.clear();
            let side = dir.source();
            let peer = *rec.peer(side);
            hexdump::chunk_header(
                &mut self.scratch,
                &mut self.stamper,
                rec.chunks[i],
                rec.offsets[i],
                bytes.len(),
                &peer,
                side,
                at,
            );
            hexdump::dump(bytes, &mut self.scratch);
            if let Err(e) = self.files.write(hex, &self.scratch) {
                self.errors.push(e);
            }
        }
        if let Some(b) = &rec.binary
            && let Err(e) = b.write(&mut self.files, dir, bytes)
        {
            self.errors.push(e);
        }
        rec.chunks[i] += 1;
        rec.offsets[i] += bytes.len() as u64;
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
            } => self.open(id, rule, client, target, local, at),
            Event::Connected { id, at } => {
                let Some(rec) = self.conns.get(&id) else {
                    return;
                };
                let Some(hex) = rec.hex else { return };
                self.scratch.clear();
                let name = &self.cfg.rules[rec.rule].target_name;
                hexdump::connected(
                    &mut self.scratch,
                    &mut self.stamper,
                    name,
                    &rec.target,
                    &rec.client,
                    &rec.local,
                    at,
                );
                self.write_hex(hex);
            }
            Event::End { id, side, how, at } => {
                let Some(rec) = self.conns.get(&id) else {
                    return;
                };
                let Some(hex) = rec.hex else { return };
                self.scratch.clear();
                let name = &self.cfg.rules[rec.rule].target_name;
                hexdump::ended(
                    &mut self.scratch,
                    &mut self.stamper,
                    side,
                    rec.peer(side),
                    &how,
                    name,
                    &rec.target,
                    at,
                );
                self.write_hex(hex);
            }
            Event::Close {
                id,
                at,
                bytes,
                undelivered,
                ends,
            } => self.close(id, at, bytes, undelivered, &ends),
            Event::Data { .. } | Event::Stop => {}
        }
    }

    fn open(
        &mut self,
        id: ConnId,
        rule: usize,
        client: SocketAddr,
        target: SocketAddr,
        local: SocketAddr,
        at: SystemTime,
    ) {
        let mut rec = Record {
            rule,
            client,
            target,
            local,
            started: at,
            hex: None,
            binary: None,
            chunks: [0; 2],
            offsets: [0; 2],
        };
        let formats = self.cfg.formats;
        if formats.wants_data() {
            let stamp = stamp::file_stamp(at);
            if formats.hex {
                let path = self
                    .cfg
                    .dir
                    .join(naming::hex_name(&stamp, id, &local, &target));
                let (fid, err) = self.files.create(path);
                self.errors.extend(err);
                rec.hex = Some(fid);
            }
            if formats.binary {
                rec.binary = Some(BinaryLog::create(
                    &mut self.files,
                    &self.cfg.dir,
                    &stamp,
                    id,
                    &local,
                    &target,
                    &mut self.errors,
                ));
            }
        }
        self.conns.insert(id, rec);
        eprint_line(&format!(
            "#{} open {client} -> {target}",
            naming::number(id)
        ));
    }

    fn close(
        &mut self,
        id: ConnId,
        at: SystemTime,
        bytes: [u64; 2],
        undelivered: [u64; 2],
        ends: &[(Side, End)],
    ) {
        let Some(rec) = self.conns.get(&id) else {
            return;
        };
        self.scratch.clear();
        for dir in Dir::BOTH {
            let n = undelivered[dir.index()];
            if n == 0 {
                continue;
            }
            // The binary log holds what the direction carried: cut what never arrived.
            if let Some(b) = &rec.binary {
                let kept = rec.offsets[dir.index()].saturating_sub(n);
                if let Err(e) = self.files.truncate(b.file(dir), kept) {
                    self.errors.push(e);
                }
            }
            let (src, dst) = (dir.source(), dir.source().other());
            hexdump::undelivered(&mut self.scratch, n, src, rec.peer(src), dst, rec.peer(dst));
        }
        if let Some(hex) = rec.hex {
            hexdump::finished(&mut self.scratch, &mut self.stamper, rec.started, at, bytes);
            self.write_hex(hex);
        }
        let rec = &self.conns[&id];
        let how: Vec<String> = ends
            .iter()
            .map(|(s, e)| format!("{} {e}", s.name()))
            .collect();
        let line = format!(
            "#{} closed {} -> {} after {}: client sent {} bytes, server sent {} bytes; {}",
            naming::number(id),
            rec.client,
            rec.target,
            stamp::duration(rec.started, at),
            bytes[Dir::ClientToServer.index()],
            bytes[Dir::ServerToClient.index()],
            how.join(", then "),
        );
        self.close_files(id);
        self.report_errors();
        eprint_line(&line);
    }

    fn close_files(&mut self, id: ConnId) {
        if let Some(rec) = self.conns.remove(&id) {
            if let Some(hex) = rec.hex {
                self.files.close(hex);
            }
            if let Some(b) = rec.binary {
                b.close(&mut self.files);
            }
        }
    }

    fn write_hex(&mut self, hex: FileId) {
        if let Err(e) = self.files.write(hex, &self.scratch) {
            self.errors.push(e);
        }
    }

    fn report_errors(&mut self) {
        for e in self.errors.drain(..) {
            self.stats.file_errors += 1;
            eprint_line(&format!("tcpspy: {e}; nothing more is written to it"));
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

//! The bench's two network ends on loopback, each on threads of its own: the embedded source
//! (serves ranges of the [`Pattern`] stream, or echoes) and the clients (download and verify,
//! or time round trips). Every thread reports its own CPU time with its result, so the proxy's
//! CPU can be told apart from theirs (see [`super::cpu`]). Every wait has a timeout.
//!
//! A download connection starts with a 16-byte request, the stream range it wants (offset and
//! length, little-endian u64s): parallel connections each carry a different part of one
//! stream, and the source needs no state shared between them.
//!
//! Download threads are started, and their buffers allocated and touched, before the download
//! begins: each says it is ready, and the clients wait for the address to fetch from. So the
//! process's memory before a download already holds the bench's own part of it, and what it
//! gains during the download is the proxy's ([`super::mem`]). Each thread's CPU time counts
//! from the end of that preparation.

use std::cell::Cell;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use socket2::SockRef;

use super::cpu;
use super::pattern::Pattern;

/// Longest any socket operation of the bench may wait: a stuck proxy fails the bench instead
/// of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes per read or write: as the harness's loadgen does.
const CHUNK: usize = 256 << 10;

/// Bytes of the request that opens a download connection (offset and length).
pub const REQUEST: usize = 16;

/// Why a bench connection failed.
#[derive(Debug)]
pub enum Fail {
    /// The bytes that arrived are not the bytes sent: the thing the bench exists to catch.
    Corrupt(String),
    Io(String),
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Corrupt(m) => write!(f, "data corrupted: {m}"),
            Fail::Io(m) => f.write_str(m),
        }
    }
}

fn io_fail(what: &str) -> impl Fn(io::Error) -> Fail + '_ {
    move |e| Fail::Io(format!("{what}: {e}"))
}

/// What a bench thread did, and the CPU time it used (after its preparation).
pub struct Done<T> {
    pub result: Result<T, Fail>,
    pub cpu: Duration,
}

thread_local! {
    /// The thread's CPU time when its preparation ended.
    static PREPARED: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Ends a thread's preparation: its CPU time counts from here.
fn prepared() {
    PREPARED.with(|p| p.set(cpu::thread()));
}

fn spawn<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> Result<T, Fail> + Send + 'static,
) -> io::Result<JoinHandle<Done<T>>> {
    thread::Builder::new().name(name.into()).spawn(move || {
        let result = work();
        Done {
            result,
            cpu: cpu::thread().saturating_sub(PREPARED.with(Cell::get)),
        }
    })
}

/// A buffer whose every page is resident: `vec![0; n]` would map zero pages that become
/// resident only when first written, in the middle of the measurement.
fn touched(len: usize) -> Vec<u8> {
    vec![0xa5; len]
}

/// Tells the caller a thread is prepared; the caller waits for every one (bounded).
pub type Ready = mpsc::Sender<()>;

/// Waits for a bench thread; a panic in it is a failure like any other.
pub fn join<T>(h: JoinHandle<Done<T>>) -> Done<T> {
    h.join().unwrap_or_else(|_| Done {
        result: Err(Fail::Io("a bench thread panicked".into())),
        cpu: Duration::ZERO,
    })
}

/// The embedded source: a loopback listener serving the stream's first `total` bytes.
pub struct Source {
    listener: Arc<TcpListener>,
    addr: SocketAddr,
    pattern: Arc<Pattern>,
    total: u64,
    /// How long a write may wait for a reader: [`IO_TIMEOUT`], and a paused reader's pause.
    write_timeout: Duration,
}

impl Source {
    /// A source whose readers may pause up to `pause` before they read.
    pub fn bind(pattern: Arc<Pattern>, total: u64, pause: Duration) -> io::Result<Source> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        // On Linux a receive timeout bounds accept() too: a source thread whose client never
        // came gives up instead of waiting forever.
        SockRef::from(&listener).set_read_timeout(Some(IO_TIMEOUT))?;
        let addr = listener.local_addr()?;
        Ok(Source {
            listener: Arc::new(listener),
            addr,
            pattern,
            total,
            write_timeout: IO_TIMEOUT.saturating_add(pause),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts `n` threads, each serving the range one connection asks for; each returns the
    /// bytes it sent. Each sends on `ready` once its buffer is allocated.
    pub fn serve_downloads(&self, n: u32, ready: &Ready) -> io::Result<Vec<JoinHandle<Done<u64>>>> {
        (0..n)
            .map(|_| {
                let (l, p, total) = (self.listener.clone(), self.pattern.clone(), self.total);
                let (ready, timeout) = (ready.clone(), self.write_timeout);
                spawn("bench-source", move || {
                    let buf = touched(CHUNK.min(usize::try_from(total).unwrap_or(CHUNK)));
                    prepared();
                    // The caller stopped waiting: it has failed already.
                    ready
                        .send(())
                        .map_err(|_| Fail::Io("the bench stopped".into()))?;
                    serve_range(&l, &p, total, buf, timeout)
                })
            })
            .collect()
    }

    /// Starts a thread that echoes one connection until it ends; it returns the bytes echoed.
    pub fn serve_echo(&self) -> io::Result<JoinHandle<Done<u64>>> {
        let (l, timeout) = (self.listener.clone(), self.write_timeout);
        spawn("bench-echo", move || echo(&l, timeout))
    }
}

fn accept(l: &TcpListener, write_timeout: Duration) -> Result<TcpStream, Fail> {
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_read_timeout(Some(IO_TIMEOUT))
                    .and_then(|()| s.set_write_timeout(Some(write_timeout)))
                    .map_err(io_fail("source: socket timeouts"))?;
                return Ok(s);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                return Err(Fail::Io(format!(
                    "source: no connection came within {IO_TIMEOUT:?}"
                )));
            }
            Err(e) => return Err(Fail::Io(format!("source: accept: {e}"))),
        }
    }
}

fn serve_range(
    l: &TcpListener,
    pattern: &Pattern,
    total: u64,
    mut buf: Vec<u8>,
    timeout: Duration,
) -> Result<u64, Fail> {
    let mut s = accept(l, timeout)?;
    let mut req = [0u8; REQUEST];
    s.read_exact(&mut req)
        .map_err(io_fail("source: reading the request"))?;
    let (off, len) = decode_request(&req);
    let end = off
        .checked_add(len)
        .filter(|&e| e <= total)
        .ok_or_else(|| Fail::Io(format!("source: request {off}+{len} is out of the stream")))?;
    if buf.is_empty() && len > 0 {
        return Err(Fail::Io("source: no buffer for a non-empty range".into()));
    }
    let mut pos = off;
    while pos < end {
        let n = (end - pos).min(buf.len() as u64) as usize;
        pattern.fill(pos, &mut buf[..n]);
        s.write_all(&buf[..n])
            .map_err(|e| Fail::Io(format!("source: write at offset {pos}: {e}")))?;
        pos += n as u64;
    }
    s.shutdown(Shutdown::Write)
        .map_err(io_fail("source: shutdown"))?;
    Ok(len)
}

fn echo(l: &TcpListener, timeout: Duration) -> Result<u64, Fail> {
    let mut s = accept(l, timeout)?;
    // Without NODELAY the tail of a large message can wait for a delayed ACK (40 ms).
    s.set_nodelay(true).map_err(io_fail("echo: nodelay"))?;
    let mut buf = vec![0u8; 64 << 10];
    let mut echoed = 0u64;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => return Ok(echoed),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(Fail::Io(format!("echo: read: {e}"))),
        };
        s.write_all(&buf[..n]).map_err(io_fail("echo: write"))?;
        echoed += n as u64;
    }
}

pub fn encode_request(off: u64, len: u64) -> [u8; REQUEST] {
    let mut r = [0u8; REQUEST];
    r[..8].copy_from_slice(&off.to_le_bytes());
    r[8..].copy_from_slice(&len.to_le_bytes());
    r
}

pub fn decode_request(r: &[u8; REQUEST]) -> (u64, u64) {
    let mut off = [0u8; 8];
    let mut len = [0u8; 8];
    off.copy_from_slice(&r[..8]);
    len.copy_from_slice(&r[8..]);
    (u64::from_le_bytes(off), u64::from_le_bytes(len))
}

fn connect(addr: SocketAddr) -> Result<TcpStream, Fail> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| Fail::Io(format!("connect to {addr}: {e}")))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(io_fail("client: socket timeouts"))?;
    Ok(s)
}

/// When a download's client started reading (after its pause) and when its last byte came.
#[derive(Clone, Copy, Debug)]
pub struct Fetched {
    pub reading: Instant,
    pub end: Instant,
}

/// A download client, prepared: it waits for the address to fetch from.
pub struct Client {
    pub thread: JoinHandle<Done<Fetched>>,
    pub go: mpsc::Sender<SocketAddr>,
}

/// Starts a client thread that allocates its buffers, sends on `ready`, waits (at most
/// [`IO_TIMEOUT`]) for an address on [`Client::go`], then downloads stream range
/// `off..off+len` from it, waiting `pause` after its request before it reads, and compares
/// every byte with the generator.
pub fn spawn_fetch(
    off: u64,
    len: u64,
    pause: Duration,
    pattern: Arc<Pattern>,
    progress: ProgressBar,
    ready: &Ready,
) -> io::Result<Client> {
    let (go, addr) = mpsc::channel();
    let ready = ready.clone();
    let thread = spawn("bench-client", move || {
        let buf = touched(CHUNK);
        let expected = touched(CHUNK);
        prepared();
        ready
            .send(())
            .map_err(|_| Fail::Io("the bench stopped".into()))?;
        let addr = addr
            .recv_timeout(IO_TIMEOUT)
            .map_err(|_| Fail::Io("client: no address to fetch from".into()))?;
        fetch(addr, (off, len), pause, &pattern, &progress, buf, expected)
    })?;
    Ok(Client { thread, go })
}

fn fetch(
    addr: SocketAddr,
    (off, len): (u64, u64),
    pause: Duration,
    pattern: &Pattern,
    progress: &ProgressBar,
    mut buf: Vec<u8>,
    mut expected: Vec<u8>,
) -> Result<Fetched, Fail> {
    let mut s = connect(addr)?;
    s.write_all(&encode_request(off, len))
        .map_err(io_fail("client: sending the request"))?;
    if !pause.is_zero() {
        // The slow reader is the load itself: the source writes on meanwhile, and the proxy
        // holds what it holds.
        progress.set_message(format!("(the reader waits {pause:?})"));
        thread::sleep(pause);
        progress.set_message("");
    }
    let reading = Instant::now();
    let mut got = 0u64;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Fail::Io(format!(
                    "client: read after {got} of {len} bytes: {e}"
                )));
            }
        };
        if got + n as u64 > len {
            return Err(Fail::Corrupt(format!(
                "received more than the {len} bytes sent"
            )));
        }
        if let Some(at) = pattern.first_mismatch(off + got, &buf[..n], &mut expected) {
            return Err(Fail::Corrupt(format!(
                "wrong byte at offset {} of a {len}-byte download",
                at - off
            )));
        }
        got += n as u64;
        progress.inc(n as u64);
    }
    if got != len {
        return Err(Fail::Corrupt(format!(
            "the download ended after {got} of {len} bytes"
        )));
    }
    Ok(Fetched {
        reading,
        end: Instant::now(),
    })
}

/// `exchanges` timed round trips of `size` bytes on one connection (after `warmup` untimed
/// ones), each echo compared with what was sent; returns each round trip in microseconds.
/// Runs on the calling thread.
pub fn pingpong(
    addr: SocketAddr,
    size: usize,
    warmup: u32,
    exchanges: u32,
    pattern: &Pattern,
    progress: &ProgressBar,
) -> Result<Vec<f64>, Fail> {
    let mut s = connect(addr)?;
    s.set_nodelay(true).map_err(io_fail("client: nodelay"))?;
    let mut out = vec![0u8; size];
    let mut back = vec![0u8; size];
    let mut micros = Vec::with_capacity(exchanges as usize);
    for i in 0..u64::from(warmup + exchanges) {
        pattern.fill(i * size as u64, &mut out);
        let t = Instant::now();
        s.write_all(&out)
            .map_err(|e| Fail::Io(format!("client: write in exchange {i}: {e}")))?;
        s.read_exact(&mut back).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                Fail::Corrupt(format!("the echo of exchange {i} was cut short"))
            } else {
                Fail::Io(format!("client: read in exchange {i}: {e}"))
            }
        })?;
        let dt = t.elapsed();
        if back != out {
            return Err(Fail::Corrupt(format!("the echo of exchange {i} differs")));
        }
        if i >= u64::from(warmup) {
            micros.push(dt.as_secs_f64() * 1e6);
            progress.inc(1);
        }
    }
    s.shutdown(Shutdown::Write)
        .map_err(io_fail("client: shutdown"))?;
    // Wait for the echo side's FIN, so the connection is over when this returns.
    match s.read(&mut back) {
        Ok(0) => Ok(micros),
        Ok(_) => Err(Fail::Corrupt("bytes after the last echo".into())),
        Err(e) => Err(Fail::Io(format!("client: waiting for the end: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let r = encode_request(1 << 40, 12345);
        assert_eq!(decode_request(&r), (1 << 40, 12345));
    }

    #[test]
    fn download_and_echo_on_loopback() {
        let pattern = Arc::new(Pattern::new(3));
        let src = Source::bind(pattern.clone(), 1 << 20, Duration::ZERO).unwrap();
        let (ready, prepared) = mpsc::channel();
        let servers = src.serve_downloads(2, &ready).unwrap();
        let hidden = ProgressBar::hidden();
        let fetch = |off, len| {
            let c = spawn_fetch(
                off,
                len,
                Duration::ZERO,
                pattern.clone(),
                hidden.clone(),
                &ready,
            )
            .unwrap();
            c.go.send(src.addr()).unwrap();
            c.thread
        };
        let (a, b) = (fetch(0, 1000), fetch(1000, 300_000));
        for _ in 0..4 {
            prepared.recv_timeout(IO_TIMEOUT).unwrap();
        }
        assert!(join(a).result.is_ok());
        assert!(join(b).result.is_ok());
        let mut sent: Vec<u64> = servers
            .into_iter()
            .map(|h| join(h).result.unwrap())
            .collect();
        sent.sort();
        assert_eq!(sent, vec![1000, 300_000]);

        let echo = src.serve_echo().unwrap();
        let rtt = pingpong(src.addr(), 100, 2, 5, &pattern, &ProgressBar::hidden()).unwrap();
        assert_eq!(rtt.len(), 5);
        assert_eq!(join(echo).result.unwrap(), 700);
    }

    #[test]
    fn a_wrong_stream_is_caught() {
        // The source serves seed 3, the client expects seed 4.
        let src = Source::bind(Arc::new(Pattern::new(3)), 1 << 20, Duration::ZERO).unwrap();
        let (ready, _prepared) = mpsc::channel();
        let server = src.serve_downloads(1, &ready).unwrap();
        let c = spawn_fetch(
            0,
            5000,
            Duration::ZERO,
            Arc::new(Pattern::new(4)),
            ProgressBar::hidden(),
            &ready,
        )
        .unwrap();
        c.go.send(src.addr()).unwrap();
        match join(c.thread).result {
            Err(Fail::Corrupt(m)) => assert!(m.contains("wrong byte at offset 0"), "{m}"),
            other => panic!("expected corruption, got {:?}", other.err()),
        }
        for h in server {
            let _ = join(h);
        }
    }
}

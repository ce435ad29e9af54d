//! Helpers for the integration tests: run the real binary, wait for what it prints (never
//! sleep), make test data, find and read the log files. Every wait has a deadline.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Longest a test waits for anything.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tcpspy")
}

/// A running tcpspy whose stderr is read line by line.
pub struct Spy {
    pub child: Child,
    pub addr: SocketAddr,
    lines: Receiver<String>,
    pub seen: Vec<String>,
    /// Every byte tcpspy wrote to stderr so far, as written.
    pub stderr: Arc<Mutex<Vec<u8>>>,
}

impl Spy {
    /// Starts `tcpspy --listen 127.0.0.1:0 ARGS` and waits for its "listening on" line.
    pub fn start(args: &[&str]) -> Spy {
        Spy::start_listening("127.0.0.1:0", args)
    }

    pub fn start_listening(listen: &str, args: &[&str]) -> Spy {
        let mut cmd = Command::new(bin());
        cmd.arg("--listen").arg(listen).args(args);
        Spy::spawn(cmd)
    }

    pub fn spawn(cmd: Command) -> Spy {
        Spy::spawn_with(cmd, Stdio::null())
    }

    /// Starts `tcpspy --listen 127.0.0.1:0 ARGS` with its stdout piped to `child.stdout`.
    pub fn start_piped(args: &[&str]) -> Spy {
        let mut cmd = Command::new(bin());
        cmd.arg("--listen").arg("127.0.0.1:0").args(args);
        Spy::spawn_with(cmd, Stdio::piped())
    }

    pub fn spawn_with(mut cmd: Command, stdout: Stdio) -> Spy {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpspy starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        let raw = Arc::new(Mutex::new(Vec::new()));
        let raw2 = raw.clone();
        // Bytes, not `lines()`: a line that is not UTF-8 must reach the test, not end the reader.
        thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                raw2.lock().unwrap().extend_from_slice(&line);
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                if tx.send(String::from_utf8_lossy(text).into_owned()).is_err() {
                    break;
                }
            }
        });
        let mut spy = Spy {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            lines,
            seen: Vec::new(),
            stderr: raw,
        };
        let line = spy.wait_line(|l| l.contains("listening on "));
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split(", ").next())
            .expect("address after 'listening on'");
        spy.addr = addr.parse().expect("a socket address");
        spy
    }

    /// Waits for a stderr line matching `pred` and returns it (panics after [`WAIT`]).
    pub fn wait_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return l;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no matching line in {WAIT:?}; saw {:#?}", self.seen)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("tcpspy's stderr closed; saw {:#?}", self.seen)
                }
            }
        }
    }

    /// Waits until `n` stderr lines, counting those seen already, match `pred`.
    pub fn wait_count(&mut self, n: usize, pred: impl Fn(&str) -> bool) {
        while self.seen.iter().filter(|l| pred(l)).count() < n {
            self.wait_line(&pred);
        }
    }

    /// Waits for the "closed" line of connection `n`.
    pub fn wait_closed(&mut self, n: u64) -> String {
        let tag = format!("#{n:04} closed ");
        self.wait_line(|l| l.starts_with(&tag))
    }

    /// Every stderr line until tcpspy exits.
    pub fn rest(&mut self) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(RecvTimeoutError::Disconnected) => return self.seen.clone(),
                Err(RecvTimeoutError::Timeout) => panic!("stderr still open after {WAIT:?}"),
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code.
    pub fn stop(&mut self) -> i32 {
        self.signal(libc::SIGTERM);
        self.wait_exit()
    }

    pub fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        // The stderr reader ends when the process exits (it holds the only write end).
        self.rest();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "tcpspy did not exit");
            thread::yield_now();
        }
    }

    /// A status field of /proc/PID/status in KiB (VmRSS, VmHWM).
    pub fn status_kib(&self, field: &str) -> u64 {
        proc_status_kib(self.pid(), field)
    }
}

impl Drop for Spy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn proc_status_kib(pid: i32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Runs tcpspy to completion (for start-up errors): exit code and stderr.
pub fn run_to_exit(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpspy starts");
    let (tx, rx) = mpsc::channel();
    let mut stderr = child.stderr.take().expect("piped");
    thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    let err = match rx.recv_timeout(WAIT) {
        Ok(s) => s,
        Err(_) => {
            let _ = child.kill();
            panic!("tcpspy {args:?} did not exit");
        }
    };
    let code = child.wait().expect("wait").code().unwrap_or(-1);
    (code, err)
}

/// Runs tcpspy to completion: exit code, stdout and stderr. Kills it and panics if it has not
/// closed its output within `limit`.
pub fn run_with_output(args: &[&str], limit: Duration) -> (i32, String, String) {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpspy starts");
    let read_all = |mut r: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            let _ = tx.send(s);
        });
        rx
    };
    let out = read_all(Box::new(child.stdout.take().expect("piped")));
    let err = read_all(Box::new(child.stderr.take().expect("piped")));
    let deadline = Instant::now() + limit;
    let mut collect = |rx: Receiver<String>| {
        let left = deadline.saturating_duration_since(Instant::now());
        rx.recv_timeout(left).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("tcpspy {args:?} did not finish in {limit:?}");
        })
    };
    let (stdout, stderr) = (collect(out), collect(err));
    let code = child.wait().expect("wait").code().unwrap_or(-1);
    (code, stdout, stderr)
}

/// The usual setup: a log directory, a target listener, and tcpspy relaying to the one and
/// logging into the other (plus `extra` arguments).
pub fn logging_spy(extra: &[&str]) -> (tempfile::TempDir, TcpListener, SocketAddr, Spy) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let target = listener();
    let taddr = target.local_addr().expect("the target's address");
    let t = taddr.to_string();
    let mut args = vec!["-t", &t, "-d", dir.path().to_str().expect("a UTF-8 path")];
    args.extend_from_slice(extra);
    let spy = Spy::start(&args);
    (dir, target, taddr, spy)
}

/// A listener on a free loopback port.
pub fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

/// A listener on a free loopback port with a backlog of 4096 (std's is 128): a burst of
/// upstream connects from tcpspy must not overflow it, or the kernel drops the handshakes it
/// has no room for and the server never sees those connections.
pub fn wide_listener() -> TcpListener {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind 127.0.0.1:0");
    s.listen(4096).expect("listen");
    s.into()
}

/// Connects with timeouts on every read and write, so a broken relay fails the test instead
/// of hanging it.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    timeouts(&s);
    s
}

pub fn accept(l: &TcpListener) -> TcpStream {
    let (s, _) = l.accept().expect("accept");
    timeouts(&s);
    s
}

pub fn timeouts(s: &TcpStream) {
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.set_write_timeout(Some(WAIT)).expect("timeout");
}

/// Deterministic pseudo-random bytes (xorshift64*), different per seed.
pub fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    v
}

pub fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

pub fn read_to_end(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    s.read_to_end(&mut v)?;
    Ok(v)
}

/// Writes `data` then shuts down writing, in a thread.
pub fn send_then_shutdown(mut s: TcpStream, data: Vec<u8>) -> thread::JoinHandle<io::Result<()>> {
    thread::spawn(move || {
        s.write_all(&data)?;
        s.shutdown(Shutdown::Write)
    })
}

/// One connection through `proxy` to the server behind `target`: the client sends `up` and the
/// server `down`, both at once, each half-closing when done. Returns what the server and the
/// client received.
pub fn both_ways(
    proxy: SocketAddr,
    target: TcpListener,
    up: &[u8],
    down: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let down = down.to_vec();
    let server = thread::spawn(move || {
        let mut s = accept(&target);
        let writer = send_then_shutdown(s.try_clone().unwrap(), down);
        let got = read_to_end(&mut s).unwrap();
        writer.join().unwrap().unwrap();
        got
    });
    let mut c = connect(proxy);
    let writer = send_then_shutdown(c.try_clone().unwrap(), up.to_vec());
    let got_down = read_to_end(&mut c).unwrap();
    writer.join().unwrap().unwrap();
    (server.join().unwrap(), got_down)
}

/// The log files of connection `n` in `dir`: (hex dump, binary client-to-server, binary
/// server-to-client). The server-to-client binary file is the one named after the target.
pub fn log_files(dir: &Path, n: u64, target: SocketAddr) -> (PathBuf, PathBuf, PathBuf) {
    match log_index(dir, target).remove(&n) {
        Some(files) => files,
        None => panic!(
            "no complete set of logs for connection {n} in {}",
            dir.display()
        ),
    }
}

/// Every connection's log files in `dir`, by connection number (one directory scan).
pub fn log_index(
    dir: &Path,
    target: SocketAddr,
) -> std::collections::HashMap<u64, (PathBuf, PathBuf, PathBuf)> {
    let target_suffix = format!("-{}.log", tcpspy::log::naming::printable_addr(&target));
    let mut parts: std::collections::HashMap<u64, [Option<PathBuf>; 3]> = Default::default();
    for e in std::fs::read_dir(dir).expect("log dir") {
        let p = e.expect("entry").path();
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        let (rest, binary) = match name.strip_prefix("log-binary-") {
            Some(r) => (r, true),
            None => match name.strip_prefix("log-") {
                Some(r) => (r, false),
                None => continue,
            },
        };
        // <YYYY.MM.DD-HH.MM.SS>-<NNNN>-...: the number follows the 19-character stamp.
        let Some(num) = rest
            .get(20..)
            .and_then(|r| r.split('-').next())
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        let slot = parts.entry(num).or_default();
        let i = match (binary, rest.ends_with(&target_suffix)) {
            (false, _) => 0,
            (true, false) => 1,
            (true, true) => 2,
        };
        slot[i] = Some(p);
    }
    parts
        .into_iter()
        .filter_map(|(n, [h, u, d])| Some((n, (h?, u?, d?))))
        .collect()
}

/// Checks that connection `n`'s three logs hold exactly `up` (client to server) and `down`.
pub fn assert_logs(dir: &Path, n: u64, target: SocketAddr, up: &[u8], down: &[u8]) {
    let (hex, bup, bdown) = log_files(dir, n, target);
    assert_eq!(
        sha(&std::fs::read(&bup).unwrap()),
        sha(up),
        "binary log {}",
        bup.display()
    );
    assert_eq!(
        sha(&std::fs::read(&bdown).unwrap()),
        sha(down),
        "binary log {}",
        bdown.display()
    );
    let text = std::fs::read_to_string(&hex).unwrap();
    let streams =
        tcpspy::log::hexdump::streams(&text).unwrap_or_else(|e| panic!("{}: {e}", hex.display()));
    assert_eq!(sha(&streams[0]), sha(up), "hex dump, client to server");
    assert_eq!(sha(&streams[1]), sha(down), "hex dump, server to client");
    // Chunk numbers count from 0 per direction without gaps.
    let chunks = tcpspy::log::hexdump::parse(&text).unwrap();
    for dir in [0usize, 1] {
        let nums: Vec<u64> = chunks
            .iter()
            .filter(|c| c.dir as usize == dir)
            .map(|c| c.number)
            .collect();
        assert!(
            nums.iter().enumerate().all(|(i, n)| *n == i as u64),
            "chunk numbers {nums:?}"
        );
    }
    let last = text.lines().last().unwrap_or("");
    assert!(
        last.ends_with(&format!("{} bytes in, {} bytes out", down.len(), up.len())),
        "last line: {last}"
    );
    assert!(
        text.starts_with("Connected to "),
        "first line of {}",
        hex.display()
    );
}

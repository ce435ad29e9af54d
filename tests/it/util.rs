//! Helpers for the integration tests: run the real binary, wait for what it prints or for a
//! state the kernel shows of it (its sockets, threads and pipes; never a sleep in the hope that
//! something happened), make test data, find and read the log files, hold ports, declare the
//! programs a test runs. Every wait has a deadline.

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

thread_local! {
    /// The programs the running test declared with [`need`] (libtest runs each test on a
    /// thread of its own).
    static NEEDED: std::cell::RefCell<Vec<&'static str>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// True when `program` is an executable file in a directory of PATH, as `command -v` finds it.
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Declares that the running test runs `program`. Called at the top of the test's own body,
/// where `./test` reads it: `./test` installs the program's package (as root, with apt) or
/// skips the test by name. Run any other way, a test whose program is missing fails here,
/// saying so, rather than passing without it.
pub fn need(program: &'static str) {
    if !on_path(program) {
        panic!("needs {program}; run ./test, which installs or skips it");
    }
    NEEDED.with(|n| n.borrow_mut().push(program));
}

/// A command running `program`, which the running test must have declared with [`need`]: a
/// test that runs a program without declaring it fails, on every machine, before it can pass
/// on one that has the program and fail on one that has not.
pub fn tool(program: &'static str) -> Command {
    assert!(
        NEEDED.with(|n| n.borrow().contains(&program)),
        "this test runs {program} without need(\"{program}\") at the top of its body: \
         ./test could neither install it nor skip the test"
    );
    Command::new(program)
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

/// A loopback port held by a socket bound to it (with SO_REUSEADDR) that does not listen.
/// For a server that must be told its port (redis-server cannot bind port 0 and say which port
/// it got), and for a target that refuses: while it is held no bind to port 0 and no outgoing
/// connection gets the port (the kernel skips ports bound so), a server that binds it itself
/// with SO_REUSEADDR (as redis-server does) can listen on it, and until one does, connecting to
/// it is refused.
pub struct HeldPort {
    _sock: socket2::Socket,
    pub addr: SocketAddr,
}

pub fn held_port() -> HeldPort {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    sock.set_reuse_address(true).expect("SO_REUSEADDR");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    sock.bind(&any.into()).expect("bind 127.0.0.1:0");
    let addr = sock
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("the bound address");
    HeldPort { _sock: sock, addr }
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

/// Waits until `cond` holds, checking it every millisecond (a polling interval: the condition
/// decides, not the time); panics naming `what` after [`WAIT`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// One TCP socket as the kernel lists it in /proc/net/tcp (or tcp6), which shows every socket
/// of this network namespace, tcpspy's included.
#[derive(Clone, Copy, Debug)]
pub struct TcpRow {
    /// Bytes written and not yet acknowledged by the peer.
    pub tx_queue: u64,
    /// Bytes received and not yet read by the socket's owner.
    pub rx_queue: u64,
    /// The pending timer: 1 retransmit, 2 keepalive, 4 zero window probe.
    pub timer: u8,
}

/// An address as /proc/net/tcp writes it: the address's bytes in memory order, printed as
/// native-endian 32-bit words, then the port.
fn proc_net_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for i in (0..ip.len()).step_by(8) {
        let word = u32::from_str_radix(ip.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => {
            let v6 = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?);
            // A dual-stack socket lists an IPv4 peer as ::ffff:a.b.c.d.
            match v6.to_ipv4_mapped() {
                Some(v4) => v4.into(),
                None => v6.into(),
            }
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The kernel's row for the socket from `local` to `remote`, if it has one.
pub fn tcp_row(local: SocketAddr, remote: SocketAddr) -> Option<TcpRow> {
    let unmap = |a: SocketAddr| match a.ip() {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), a.port()),
            None => a,
        },
        _ => a,
    };
    let (local, remote) = (unmap(local), unmap(remote));
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local rem st tx_queue:rx_queue tr:when ...
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 6
                || proc_net_addr(f[1]) != Some(local)
                || proc_net_addr(f[2]) != Some(remote)
            {
                continue;
            }
            let (tx, rx) = f[4].split_once(':')?;
            let (tr, _) = f[5].split_once(':')?;
            return Some(TcpRow {
                tx_queue: u64::from_str_radix(tx, 16).ok()?,
                rx_queue: u64::from_str_radix(rx, 16).ok()?,
                timer: u8::from_str_radix(tr, 16).ok()?,
            });
        }
    }
    None
}

/// True when the socket from `local` to `remote` holds bytes that its peer has no room for:
/// the kernel is probing a zero window. The peer's owner has stopped reading: its receive
/// buffer is full, and the sender can only wait.
pub fn peer_window_closed(local: SocketAddr, remote: SocketAddr) -> bool {
    tcp_row(local, remote).is_some_and(|r| r.timer == 4)
}

/// True when a stream through tcpspy is blocked at tcpspy, both ways: tcpspy has stopped
/// reading `into` (our socket sending to tcpspy finds tcpspy's window closed), and tcpspy's
/// socket to `out` (our socket receiving from tcpspy) finds `out`'s window closed. Then
/// tcpspy holds bytes it has read and cannot pass on, and waits for `out` to drain.
pub fn blocked_at_tcpspy(into: &TcpStream, out: &TcpStream) -> bool {
    let (Ok(a), Ok(b), Ok(c), Ok(d)) = (
        into.local_addr(),
        into.peer_addr(),
        out.peer_addr(),
        out.local_addr(),
    ) else {
        return false;
    };
    peer_window_closed(a, b) && peer_window_closed(c, d)
}

/// The threads of process `pid`, as /proc/PID/task shows them: name, state (`R` running, `S`
/// asleep, ...) and, asleep, the kernel function it sleeps in (wchan: `pipe_write` for a
/// write to a full pipe, `poll_schedule_timeout` for poll(2), `do_epoll_wait` for epoll).
pub fn threads(pid: i32) -> Vec<(String, char, String)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let p = t.path();
            let stat = std::fs::read_to_string(p.join("stat")).ok()?;
            let state = stat[stat.rfind(')')? + 2..].chars().next()?;
            let name = std::fs::read_to_string(p.join("comm")).ok()?;
            let wchan = std::fs::read_to_string(p.join("wchan")).unwrap_or_default();
            Some((name.trim_end().to_string(), state, wchan))
        })
        .collect()
}

/// True when signal `sig` is pending for process `pid`: sent and not yet taken by any of its
/// threads (ShdPnd and each thread's SigPnd in /proc). Signals of one kind do not queue: a
/// second one sent while the first is pending is lost.
pub fn signal_pending(pid: i32, sig: i32) -> bool {
    let bit = 1u64 << (sig - 1);
    let pending = |path: std::path::PathBuf, field: &str| {
        std::fs::read_to_string(path).is_ok_and(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
                .is_some_and(|m| m & bit != 0)
        })
    };
    let proc = PathBuf::from(format!("/proc/{pid}"));
    pending(proc.join("status"), "ShdPnd:")
        || std::fs::read_dir(proc.join("task")).is_ok_and(|tasks| {
            tasks
                .flatten()
                .any(|t| pending(t.path().join("status"), "SigPnd:"))
        })
}

/// Bytes waiting to be read on our own descriptor `fd` (a socket or a pipe): FIONREAD.
pub fn unread_bytes(fd: &impl std::os::fd::AsRawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(r, 0, "FIONREAD: {}", io::Error::last_os_error());
    n as usize
}

/// True when the pipe whose read end is `fd` is full: a writer blocks. Asked of a writer of
/// our own, opened through /proc and polled, never written to (the bytes a full pipe holds vary
/// with how the writes fell into its pages).
pub fn pipe_full(fd: &impl std::os::fd::AsRawFd) -> bool {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .expect("a writer of the pipe");
    let mut p = libc::pollfd {
        fd: writer.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: poll on one descriptor we own, without waiting.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    assert!(n >= 0, "poll: {}", io::Error::last_os_error());
    n == 0
}

//! The capture (`--log pcap`, `--pcap`), read back by tshark as a user would: it opens without
//! a word on stderr, its checksums are good, `follow` gives back every byte of every direction,
//! and real protocols (HTTP from curl, Redis from a real redis-server) are dissected as such.
//! tshark, curl and redis-server come from apt: `./test` installs them, or skips these tests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

/// What tshark says on stderr whenever it runs as root, whatever the file.
const ROOT_NOTICE: &str = "Running as user \"root\"";

/// Waits for a child with a deadline; its stdout (unless taken already) and stderr are read in
/// threads so that a full pipe cannot stall it.
fn finish(mut child: Child, what: &str) -> (i32, String, String) {
    let out = child.stdout.take();
    let mut err = child.stderr.take().expect("stderr piped");
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut out) = out {
            let _ = out.read_to_string(&mut s);
        }
        let _ = tx.send((0, s));
    });
    thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        let _ = tx2.send((1, s));
    });
    let mut got = [None, None];
    for _ in 0..2 {
        match rx.recv_timeout(WAIT) {
            Ok((i, s)) => got[i] = Some(s),
            Err(_) => {
                let _ = child.kill();
                panic!("{what} did not finish within {WAIT:?}");
            }
        }
    }
    let code = child.wait().expect("wait").code().unwrap_or(-1);
    let [out, err] = got.map(Option::unwrap_or_default);
    (code, out, err)
}

/// stderr without tshark's root notice.
fn clean(err: &str) -> String {
    err.lines()
        .filter(|l| !l.starts_with(ROOT_NOTICE))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `tshark ARGS`, which must exit 0 with nothing on stderr; returns its stdout.
fn tshark(args: &[&str]) -> String {
    let child = tool("tshark")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tshark runs");
    let (code, out, err) = finish(child, "tshark");
    assert_eq!(code, 0, "tshark {args:?} failed: {err}");
    assert_eq!(clean(&err), "", "tshark {args:?} wrote to stderr");
    out
}

/// The one capture file in `dir`.
fn capture_in(dir: &Path) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("log dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("capture-") && name.ends_with(".pcapng")
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one capture in {}: {found:?}",
        dir.display()
    );
    found[0].clone()
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// One TCP stream as `tshark -z follow,tcp,raw` gives it back.
struct Followed {
    /// The first sender (our client) and the other end, as `ip:port` or `[ipv6]:port`.
    nodes: [String; 2],
    bytes: [Vec<u8>; 2],
}

impl std::fmt::Debug for Followed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} bytes) <-> {} ({} bytes)",
            self.nodes[0],
            self.bytes[0].len(),
            self.nodes[1],
            self.bytes[1].len()
        )
    }
}

/// Follows streams `0..n` of `file` in one tshark run.
fn follow(file: &Path, n: usize) -> Vec<Followed> {
    let mut args = vec!["-r", file.to_str().unwrap(), "-q"];
    let specs: Vec<String> = (0..n).map(|i| format!("follow,tcp,raw,{i}")).collect();
    for s in &specs {
        args.extend(["-z", s]);
    }
    let out = tshark(&args);
    let mut streams = Vec::new();
    let mut cur: Option<Followed> = None;
    for line in out.lines() {
        if line.starts_with("=====") {
            if let Some(f) = cur.take() {
                streams.push(f);
            }
        } else if line.starts_with("Follow: ") || line.starts_with("Filter: ") {
            cur.get_or_insert(Followed {
                nodes: Default::default(),
                bytes: Default::default(),
            });
        } else if let Some(f) = cur.as_mut() {
            if let Some(a) = line.strip_prefix("Node 0: ") {
                f.nodes[0] = a.to_string();
            } else if let Some(a) = line.strip_prefix("Node 1: ") {
                f.nodes[1] = a.to_string();
            } else if let Some(h) = line.strip_prefix('\t') {
                f.bytes[1].extend(unhex(h.trim()));
            } else if !line.is_empty() {
                f.bytes[0].extend(unhex(line.trim()));
            }
        }
    }
    assert_eq!(streams.len(), n, "streams followed:\n{out}");
    streams
}

/// Writes `data` on `from` while reading exactly as much from `to`, and checks it arrived.
fn pass(from: &TcpStream, to: &mut TcpStream, data: &[u8]) {
    let mut w = from.try_clone().unwrap();
    thread::scope(|s| {
        s.spawn(move || w.write_all(data).unwrap());
        let mut got = vec![0u8; data.len()];
        to.read_exact(&mut got).unwrap();
        assert!(got == data, "relayed bytes differ");
    });
}

/// Closes with a RST (SO_LINGER 0).
fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
}

/// Reads until EOF or a reset, whichever the relay gives.
fn read_until_gone(s: &mut TcpStream) -> Vec<u8> {
    let mut v = Vec::new();
    match s.read_to_end(&mut v) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("read: {e}"),
    }
    v
}

/// A client and the server socket tcpspy connected for it.
fn pair(spy: SocketAddr, target: &std::net::TcpListener) -> (TcpStream, TcpStream) {
    let c = connect(spy);
    let s = accept(target);
    (c, s)
}

/// What one connection's stream must hold.
struct Want {
    client: SocketAddr,
    /// Indexed by [`UP`] and [`DOWN`].
    bytes: [Vec<u8>; 2],
}

const UP: usize = 0;
const DOWN: usize = 1;

/// Passes `len` test bytes from `from` to `to` and records them in `w`.
fn step(w: &mut Want, dir: usize, from: &TcpStream, to: &mut TcpStream, seed: u64, len: usize) {
    let bytes = data(seed, len);
    pass(from, to, &bytes);
    w.bytes[dir].extend_from_slice(&bytes);
}

/// Four connections at once, their steps interleaved: data both ways, a half-close by the
/// client, a reset by the server, a reset by the client, chunks larger than one IP packet.
/// tshark must open the capture cleanly, find every checksum good, and `follow` must give back
/// each direction of each connection byte for byte.
#[test]
fn follow_gives_back_every_byte() {
    need("tshark");
    let (dir, target, taddr, mut spy) = logging_spy(&["--log", "pcap", "--buffer-size", "256K"]);
    spy.wait_count(1, |l| l.contains("capture in "));
    let line = spy.seen.iter().find(|l| l.contains("capture in ")).unwrap();
    assert!(line.contains(dir.path().to_str().unwrap()), "{line}");

    let (mut a, mut a_srv) = pair(spy.addr, &target);
    let (mut b, mut b_srv) = pair(spy.addr, &target);
    let (mut c, mut c_srv) = pair(spy.addr, &target);
    let (mut d, mut d_srv) = pair(spy.addr, &target);
    // Per connection: the client's address, and the bytes each way the capture must give back.
    let mut want: Vec<Want> = [&a, &b, &c, &d]
        .iter()
        .map(|s| Want {
            client: s.local_addr().unwrap(),
            bytes: [Vec::new(), Vec::new()],
        })
        .collect();
    step(&mut want[0], UP, &a, &mut a_srv, 1, 300_000);
    step(&mut want[1], UP, &b, &mut b_srv, 2, 1000);
    step(&mut want[2], UP, &c, &mut c_srv, 3, 10_000);
    step(&mut want[3], UP, &d, &mut d_srv, 4, 20);
    step(&mut want[0], UP, &a, &mut a_srv, 5, 7);
    step(&mut want[2], DOWN, &c_srv, &mut c, 6, 5000);
    step(&mut want[0], DOWN, &a_srv, &mut a, 7, 400_000);
    step(&mut want[3], DOWN, &d_srv, &mut d, 8, 333);

    // B: the client half-closes, then the server answers at length.
    b.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut b_srv).unwrap().is_empty());
    step(&mut want[1], DOWN, &b_srv, &mut b, 9, 150_000);
    // C: the server resets.
    reset(c_srv);
    assert!(read_until_gone(&mut c).is_empty());
    // D: the client resets.
    reset(d);
    assert!(read_until_gone(&mut d_srv).is_empty());
    b_srv.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut b).unwrap().is_empty());
    // A: both ways more, then both close.
    step(&mut want[0], DOWN, &a_srv, &mut a, 10, 1);
    step(&mut want[0], UP, &a, &mut a_srv, 11, 70_000);
    a.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut a_srv).unwrap().is_empty());
    a_srv.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut a).unwrap().is_empty());
    spy.wait_count(4, |l| l.contains(" closed "));
    assert_eq!(spy.stop(), 0);

    let file = capture_in(dir.path());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let f = file.to_str().unwrap();
    let listing = tshark(&["-r", f]);
    assert!(listing.lines().count() > 20, "{listing}");

    // Every IP and TCP checksum verified and good (1 = good, 0 = bad, 2 = unchecked).
    let sums = tshark(&[
        "-r",
        f,
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "ip.check_checksum:TRUE",
        "-T",
        "fields",
        "-e",
        "ip.checksum.status",
        "-e",
        "tcp.checksum.status",
    ]);
    assert!(sums.lines().all(|l| l == "1\t1"), "checksums:\n{sums}");

    // Warnings: the two resets (each after its comment), and nothing else: no lost segment,
    // no ACK of unseen data, no full window.
    let warn = tshark(&[
        "-r",
        f,
        "-Y",
        "_ws.expert.severity >= 6291456",
        "-T",
        "fields",
        "-e",
        "tcp.srcport",
        "-e",
        "_ws.expert.message",
    ]);
    let mut warnings: Vec<&str> = warn.lines().collect();
    warnings.sort();
    let mut expected = vec![
        format!("{}\tserver reset,Connection reset (RST)", taddr.port()),
        format!(
            "{}\tclient reset,Connection reset (RST)",
            want[3].client.port()
        ),
    ];
    expected.sort();
    assert_eq!(warnings, expected, "expert warnings:\n{warn}");

    // Four streams, each direction byte for byte.
    let streams = follow(&file, 4);
    let by_client: HashMap<String, &Followed> =
        streams.iter().map(|s| (s.nodes[0].clone(), s)).collect();
    for w in &want {
        let client = w.client;
        let s = by_client
            .get(&client.to_string())
            .unwrap_or_else(|| panic!("no stream from {client}: {streams:?}"));
        assert_eq!(s.nodes[1], taddr.to_string());
        assert_eq!(
            sha(&s.bytes[0]),
            sha(&w.bytes[UP]),
            "{client} to the target"
        );
        assert_eq!(
            sha(&s.bytes[1]),
            sha(&w.bytes[DOWN]),
            "the target to {client}"
        );
    }

    // The streams really are interleaved in the file, as they happened.
    let order = tshark(&["-r", f, "-T", "fields", "-e", "tcp.stream"]);
    let switches = order
        .lines()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] != w[1])
        .count();
    assert!(switches > 6, "streams one after the other: {order}");

    // Chunks larger than an IP packet were split: no packet exceeds what IPv4 can carry.
    let lens = tshark(&["-r", f, "-T", "fields", "-e", "ip.len"]);
    let max = lens.lines().filter_map(|l| l.parse::<u32>().ok()).max();
    assert!(max.is_some_and(|m| m <= 65535), "largest packet {max:?}");
}

/// A tiny HTTP server: answers `n` requests with one canned response each, then closes.
fn http_server(n: usize) -> (SocketAddr, thread::JoinHandle<Vec<String>>) {
    let l = listener();
    let addr = l.local_addr().unwrap();
    let h = thread::spawn(move || {
        let mut requests = Vec::new();
        for _ in 0..n {
            let mut s = accept(&l);
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let k = s.read(&mut buf).unwrap();
                assert!(k > 0, "request cut short");
                req.extend_from_slice(&buf[..k]);
            }
            requests.push(String::from_utf8_lossy(&req).into_owned());
            s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\
                  Connection: close\r\n\r\nhello\n",
            )
            .unwrap();
        }
        requests
    });
    (addr, h)
}

fn curl(url: &str) -> String {
    let child = tool("curl")
        .args(["-s", "-S", "--max-time", "20", url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl runs");
    let (code, out, err) = finish(child, "curl");
    assert_eq!(code, 0, "curl {url}: {err}");
    out
}

/// curl through tcpspy: `-Y http` finds both requests and both responses, and a second
/// format (the hex dump) is written alongside.
#[test]
fn curl_session_is_dissected_as_http() {
    need("curl");
    need("tshark");
    let dir = tempfile::tempdir().unwrap();
    let (taddr, server) = http_server(2);
    let mut spy = Spy::start(&[
        "-t",
        &taddr.to_string(),
        "-d",
        dir.path().to_str().unwrap(),
        "--log",
        "hex,pcap",
    ]);
    assert_eq!(curl(&format!("http://{}/hello.txt", spy.addr)), "hello\n");
    assert_eq!(curl(&format!("http://{}/again?x=1", spy.addr)), "hello\n");
    spy.wait_closed(2);
    assert_eq!(spy.stop(), 0);
    let requests = server.join().unwrap();
    assert!(requests[0].starts_with("GET /hello.txt HTTP/1.1\r\n"));

    let file = capture_in(dir.path());
    let f = file.to_str().unwrap();
    // The target port is not 80: tell tshark, as a user would with "Decode As".
    let decode = format!("tcp.port=={},http", taddr.port());
    let reqs = tshark(&[
        "-r",
        f,
        "-d",
        &decode,
        "-Y",
        "http.request",
        "-T",
        "fields",
        "-e",
        "http.request.method",
        "-e",
        "http.request.uri",
        "-e",
        "http.host",
    ]);
    assert_eq!(
        reqs,
        format!("GET\t/hello.txt\t{0}\nGET\t/again?x=1\t{0}\n", spy.addr)
    );
    let resps = tshark(&[
        "-r",
        f,
        "-d",
        &decode,
        "-Y",
        "http.response",
        "-T",
        "fields",
        "-e",
        "http.response.code",
        "-e",
        "http.file_data",
    ]);
    assert_eq!(resps.lines().count(), 2, "{resps}");
    assert!(resps.lines().all(|l| l.starts_with("200\t")), "{resps}");
    // The hex dump is there too: one per connection.
    let dumps = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            n.to_string_lossy().starts_with("log-")
        })
        .count();
    assert_eq!(dumps, 2);
}

/// A real redis-server on loopback, killed on drop.
pub struct Redis {
    child: Child,
    /// Where it listens: a port held for it, which it binds itself (redis-server cannot bind
    /// port 0 and say which port it got; its `--port 0` means no TCP at all).
    pub port: HeldPort,
}

impl Redis {
    pub fn start() -> Redis {
        let port = held_port();
        let dir = std::env::temp_dir();
        let mut child = tool("redis-server")
            .args([
                "--port",
                &port.addr.port().to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let redis = Redis { child, port };
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.contains("Ready to accept connections") => break,
                Ok(l) => seen.push(l),
                Err(_) => panic!("redis-server did not start: {seen:#?}"),
            }
        }
        // Keep draining its output so that it never blocks on a full pipe.
        thread::spawn(move || while rx.recv().is_ok() {});
        redis
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one RESP command and reads its reply up to `until`.
fn redis_cmd(s: &mut TcpStream, args: &[&str], reply: &[u8]) {
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(cmd.as_bytes()).unwrap();
    let mut got = vec![0u8; reply.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(reply)
    );
}

/// A Redis session through tcpspy with a real redis-server: tshark dissects it as RESP.
#[test]
fn redis_session_is_dissected_as_resp() {
    need("redis-server");
    need("tshark");
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let target = redis.port.addr.to_string();
    let mut spy = Spy::start(&[
        "-t",
        &target,
        "-d",
        dir.path().to_str().unwrap(),
        "--log",
        "pcap",
    ]);
    let mut s = connect(spy.addr);
    redis_cmd(&mut s, &["SET", "spied", "hello"], b"+OK\r\n");
    redis_cmd(&mut s, &["GET", "spied"], b"$5\r\nhello\r\n");
    redis_cmd(&mut s, &["INCRBY", "counter", "42"], b":42\r\n");
    s.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut s).unwrap().is_empty());
    spy.wait_closed(1);
    assert_eq!(spy.stop(), 0);
    drop(redis);

    let file = capture_in(dir.path());
    let decode = format!("tcp.port=={},resp", target.rsplit(':').next().unwrap());
    let out = tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-d",
        &decode,
        "-Y",
        "resp",
        "-T",
        "fields",
        "-e",
        "_ws.col.Protocol",
        "-e",
        "resp.bulk_string.value",
        "-e",
        "resp.string",
        "-e",
        "resp.integer",
    ]);
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
    assert!(rows.iter().all(|r| r[0] == "RESP"), "{out}");
    let hexed = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let set = [hexed("SET"), hexed("spied"), hexed("hello")].join(",");
    assert!(rows.iter().any(|r| r[1] == set), "SET spied hello in {out}");
    assert!(rows.iter().any(|r| r[2] == "OK"), "+OK in {out}");
    assert!(rows.iter().any(|r| r[3] == "42"), ":42 in {out}");
    assert_eq!(rows.len(), 6, "three commands, three replies: {out}");
}

/// `--pcap -` streams to stdout: tshark reading the pipe shows each exchange while the
/// connection is still open, and exits cleanly when tcpspy stops.
#[test]
fn live_capture_through_a_pipe() {
    need("tshark");
    let target = listener();
    let taddr = target.local_addr().unwrap();
    let mut spy = Spy::start_piped(&["-t", &taddr.to_string(), "--log", "pcap", "--pcap", "-"]);
    assert!(
        spy.seen
            .iter()
            .any(|l| l.contains("logging pcap to stdout")),
        "{:?}",
        spy.seen
    );
    let pipe = spy.child.stdout.take().unwrap();
    let mut tshark = tool("tshark")
        .args([
            "-l",
            "-r",
            "-",
            "-T",
            "fields",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.payload",
        ])
        .stdin(Stdio::from(pipe))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tshark runs");
    let out = tshark.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let hexed = |s: &[u8]| s.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let wait_for = |port: u16, payload: &[u8]| {
        let want = format!("{port}\t{}", hexed(payload));
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l == want => return,
                Ok(_) => {}
                Err(e) => panic!("tshark never showed {want:?}: {e}"),
            }
        }
    };

    let mut c = connect(spy.addr);
    let mut s = accept(&target);
    let cport = c.local_addr().unwrap().port();
    for round in 0..3 {
        let ping = format!("ping {round}\n");
        let pong = format!("pong {round}\n");
        pass(&c, &mut s, ping.as_bytes());
        wait_for(cport, ping.as_bytes());
        pass(&s, &mut c, pong.as_bytes());
        wait_for(taddr.port(), pong.as_bytes());
    }
    drop(c);
    drop(s);
    spy.wait_closed(1);
    assert_eq!(spy.stop(), 0);
    let (code, _, err) = finish(tshark, "tshark -r -");
    assert_eq!(code, 0, "{err}");
    assert_eq!(clean(&err), "");
}

/// The reader of `--pcap -` goes away: tcpspy says so once and relays on.
#[test]
fn closed_pipe_is_reported_once_and_relaying_goes_on() {
    let target = listener();
    let taddr = target.local_addr().unwrap();
    let mut spy = Spy::start_piped(&["-t", &taddr.to_string(), "--log", "pcap", "--pcap", "-"]);
    drop(spy.child.stdout.take());
    for n in 1..=3u64 {
        let (mut c, mut s) = pair(spy.addr, &target);
        let msg = data(n, 100_000);
        pass(&c, &mut s, &msg);
        pass(&s, &mut c, &msg);
        c.shutdown(Shutdown::Write).unwrap();
        assert!(read_to_end(&mut s).unwrap().is_empty());
        drop(s);
        assert!(read_to_end(&mut c).unwrap().is_empty());
        spy.wait_closed(n);
    }
    assert_eq!(spy.stop(), 0);
    let gone: Vec<&String> = spy
        .seen
        .iter()
        .filter(|l| l.contains("capture on stdout"))
        .collect();
    assert_eq!(gone.len(), 1, "{:#?}", spy.seen);
    assert!(gone[0].contains("the reader has gone"), "{}", gone[0]);
    let last = spy.seen.last().unwrap();
    assert!(last.contains("log file errors: 1"), "{last}");
}

/// `--pcap PATH` writes there, alongside the other logs; an existing file is not overwritten.
#[test]
fn pcap_path_is_used_and_never_overwritten() {
    need("curl");
    need("tshark");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.pcapng");
    std::fs::write(&path, b"keep me").unwrap();
    let (taddr, server) = http_server(1);
    let mut spy = Spy::start(&[
        "-t",
        &taddr.to_string(),
        "-d",
        dir.path().join("logs").to_str().unwrap(),
        "--pcap",
        path.to_str().unwrap(),
    ]);
    spy.wait_count(1, |l| l.contains("capture in "));
    let line = spy.seen.iter().find(|l| l.contains("capture in ")).unwrap();
    let actual = dir.path().join("mine.pcapng.1");
    assert!(line.ends_with(actual.to_str().unwrap()), "{line}");
    assert_eq!(curl(&format!("http://{}/x", spy.addr)), "hello\n");
    spy.wait_closed(1);
    assert_eq!(spy.stop(), 0);
    server.join().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
    let streams = follow(&actual, 1);
    assert!(streams[0].bytes[0].starts_with(b"GET /x HTTP/1.1\r\n"));
    // The default formats are still written: three files and the connection index.
    assert_eq!(
        std::fs::read_dir(dir.path().join("logs")).unwrap().count(),
        4
    );
    assert!(dir.path().join("logs/connections.jsonl").exists());
}

/// A target that refuses: the capture shows the client's SYN answered by a RST/ACK from the
/// target port, with the reason as the packet's comment.
#[test]
fn refused_connect_is_a_syn_answered_by_a_reset() {
    need("tshark");
    let dir = tempfile::tempdir().unwrap();
    let held = held_port(); // nobody listens there, and nobody else gets the port
    let taddr = held.addr;
    let mut spy = Spy::start(&[
        "-t",
        &taddr.to_string(),
        "-d",
        dir.path().to_str().unwrap(),
        "--log",
        "pcap",
    ]);
    // tcpspy resets the client so soon that connect() itself may already report it.
    match TcpStream::connect_timeout(&spy.addr, WAIT) {
        Ok(mut c) => {
            timeouts(&c);
            assert!(read_until_gone(&mut c).is_empty());
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
    }
    spy.wait_closed(1);
    assert_eq!(spy.stop(), 0);
    let file = capture_in(dir.path());
    let out = tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-T",
        "fields",
        "-e",
        "tcp.srcport",
        "-e",
        "tcp.dstport",
        "-e",
        "tcp.flags",
        "-e",
        "frame.comment",
    ]);
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 2, "{out}");
    let t = taddr.port().to_string();
    let c = rows[0][0];
    assert_eq!(
        rows[0][1..3],
        [t.as_str(), "0x0002"],
        "SYN to the target: {out}"
    );
    assert!(
        rows[0][3].starts_with("tcpspy connection #0001: client "),
        "{out}"
    );
    assert_eq!(
        rows[1][..3],
        [t.as_str(), c, "0x0014"],
        "RST/ACK from the target: {out}"
    );
    assert!(rows[1][3].starts_with("server connect failed ("), "{out}");
}

/// IPv6 on both legs, and an IPv6 client relayed to an IPv4 target (written as IPv6 with the
/// IPv4 address mapped): tshark follows both byte for byte with good checksums.
#[test]
fn ipv6_and_mixed_families() {
    need("tshark");
    let dir = tempfile::tempdir().unwrap();
    for (n, target) in [("[::1]:0", 1u64), ("127.0.0.1:0", 2)]
        .iter()
        .map(|(t, n)| (*n, std::net::TcpListener::bind(t).expect("bind loopback")))
    {
        let sub = dir.path().join(n.to_string());
        let taddr = target.local_addr().unwrap();
        let mut spy = Spy::start_listening(
            "[::1]:0",
            &[
                "-t",
                &taddr.to_string(),
                "-d",
                sub.to_str().unwrap(),
                "--log",
                "pcap",
            ],
        );
        let (mut c, mut s) = pair(spy.addr, &target);
        let client = c.local_addr().unwrap();
        let (up, down) = (data(20 + n, 70_000), data(30 + n, 3000));
        pass(&c, &mut s, &up);
        pass(&s, &mut c, &down);
        drop(c);
        drop(s);
        spy.wait_closed(1);
        assert_eq!(spy.stop(), 0);

        let file = capture_in(&sub);
        let f = file.to_str().unwrap();
        let streams = follow(&file, 1);
        let shown_target = match taddr.ip() {
            IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), taddr.port()),
            IpAddr::V6(_) => taddr,
        };
        assert_eq!(
            streams[0].nodes,
            [client.to_string(), shown_target.to_string()]
        );
        assert_eq!(sha(&streams[0].bytes[0]), sha(&up));
        assert_eq!(sha(&streams[0].bytes[1]), sha(&down));
        let sums = tshark(&[
            "-r",
            f,
            "-o",
            "tcp.check_checksum:TRUE",
            "-T",
            "fields",
            "-e",
            "ipv6.src",
            "-e",
            "tcp.checksum.status",
        ]);
        assert!(
            sums.lines().all(|l| l.ends_with("\t1") && l.contains(':')),
            "{sums}"
        );
    }
}

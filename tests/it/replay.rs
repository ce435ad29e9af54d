//! `tcpspy replay` and `tcpspy mock` with real servers and clients: an HTTP session from curl
//! to nginx recorded through tcpspy replays identical with the date masked and differs once
//! the file changes; a redis-cli session is answered by the mock with redis stopped; a hex
//! dump written by the real gotcpspy replays; damaged recordings are one error line naming the
//! line, exit 2; a client that departs from the recording gets what --on-mismatch says.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread;

use crate::pcap::Redis;
use crate::util::*;

/// A real nginx serving `root` on a held loopback port, killed on drop.
struct Nginx {
    child: Child,
    port: HeldPort,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(root: &Path) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = held_port();
        let d = dir.path().display();
        let conf = format!(
            "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid;\n\
             error_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
             server {{ listen {}; root {}; }} }}\n",
            port.addr,
            root.display()
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = tool("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx runs");
        let addr = port.addr;
        wait_until("nginx accepts connections", || {
            TcpStream::connect(addr).is_ok()
        });
        Nginx {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tcpspy ARGS` to its end: exit code, stdout, stderr.
fn tcpspy(args: &[&str]) -> (i32, String, String) {
    run_with_output(args, WAIT)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// Records what `session` does through a tcpspy relaying to `target`, into a new directory;
/// waits for `n` connections to close.
fn record(target: SocketAddr, n: u64, session: impl FnOnce(SocketAddr)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let t = target.to_string();
    let mut spy = Spy::start(&["-t", &t, "-d", path(dir.path()), "--log", "hex,binary,pcap"]);
    session(spy.addr);
    for i in 1..=n {
        spy.wait_closed(i);
    }
    assert_eq!(spy.stop(), 0);
    dir
}

#[test]
fn http_from_curl_to_nginx_replays_identical_then_differs() {
    need("nginx");
    need("curl");
    let www = tempfile::tempdir().unwrap();
    let file = www.path().join("hello.txt");
    std::fs::write(&file, "Hello from nginx.\n").unwrap();
    let nginx = Nginx::start(www.path());
    let rec = record(nginx.port.addr, 1, |spy| {
        let out = tool("curl")
            .arg("-s")
            .arg(format!("http://{spy}/hello.txt"))
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"Hello from nginx.\n");
    });
    let target = nginx.port.addr.to_string();
    let dir = path(rec.path());
    let replays = tempfile::tempdir().unwrap();
    let (code, out, err) = tcpspy(&[
        "replay",
        dir,
        "--connection",
        "1",
        "--target",
        &target,
        "--ignore",
        "Date: [^\r]*",
        "-d",
        path(replays.path()),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("tcpspy replay: identical: "), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    // The new conversation was recorded like any connection.
    let index = std::fs::read_to_string(replays.path().join("connections.jsonl")).unwrap();
    assert!(
        index.contains(&format!("\"target\":\"{target}\"")),
        "{index}"
    );
    let dumps: Vec<PathBuf> = std::fs::read_dir(replays.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("log-") && !n.starts_with("log-binary-")
        })
        .collect();
    assert_eq!(dumps.len(), 1);
    let dump = std::fs::read_to_string(&dumps[0]).unwrap();
    assert!(dump.contains("GET /hello.txt HTTP/1.1") || dump.contains("|GET /hello.txt H|"));

    // Without the mask the Date line differs, unless the second is the same: not asserted.
    // The served file changes: the answer differs, and the difference is shown.
    std::fs::write(&file, "Hello from a changed nginx, with more to say.\n").unwrap();
    let (code, out, err) = tcpspy(&[
        "replay",
        dir,
        "--connection",
        "1",
        "--target",
        &target,
        "--ignore",
        "Date: [^\r]*",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let first = out.lines().next().unwrap();
    assert!(first.starts_with("tcpspy replay: different: "), "{out}");
    // The new file is 28 bytes longer: so is the answer.
    let sizes = first.split(" differ; recorded ").nth(1).expect("the sizes");
    let n: Vec<usize> = sizes
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .take(2)
        .collect();
    assert_eq!(n[1], n[0] + 28, "{out}");
    assert!(out.contains("\nrecorded:\n"), "{out}");
    assert!(out.contains("\nreceived:\n"), "{out}");
    // The excerpts show the Content-Length line of each: 18 bytes recorded, 46 now.
    assert!(out.contains("6e 67 74 68 3a 20 31 38  0d 0a"), "{out}");
    assert!(out.contains("6e 67 74 68 3a 20 34 36  0d 0a"), "{out}");

    let (code, out, _) = tcpspy(&[
        "replay",
        dir,
        "--connection",
        "1",
        "--target",
        &target,
        "--ignore",
        "Date: [^\r]*",
        "--json",
    ]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["result"], "different");
    assert!(v["first_difference"]["differing_bytes"].as_u64().unwrap() > 0);
    assert!(v["client_bytes_sent"].as_u64().unwrap() > 0);
}

fn redis_cli(port: u16, args: &[&str]) -> (bool, String) {
    let out = tool("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text.trim().to_string())
}

#[test]
fn redis_cli_is_answered_by_the_mock_with_redis_stopped() {
    need("redis-server");
    need("redis-cli");
    let redis = Redis::start();
    let rec = record(redis.port.addr, 2, |spy| {
        assert_eq!(redis_cli(spy.port(), &["SET", "greeting", "hello"]).1, "OK");
        assert_eq!(redis_cli(spy.port(), &["GET", "greeting"]).1, "hello");
    });
    let stopped = redis.port.addr;
    drop(redis);
    assert!(TcpStream::connect(stopped).is_err(), "redis is stopped");
    let logs = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["mock", path(rec.path()), "--listen", "127.0.0.1:0", "-d"])
        .arg(logs.path());
    let mut mock = Spy::spawn(cmd);
    let port = mock.addr.port();
    // In the other order than recorded: each client gets the recording its command matches.
    assert_eq!(
        redis_cli(port, &["GET", "greeting"]),
        (true, "hello".into())
    );
    assert_eq!(
        redis_cli(port, &["SET", "greeting", "hello"]),
        (true, "OK".into())
    );
    mock.wait_closed(2);
    // A command that was never recorded: the mismatch on stderr, and the connection closed.
    let (ok, text) = redis_cli(port, &["GET", "other"]);
    assert!(!ok || text.is_empty() || text.contains("closed"), "{text}");
    let line = mock.wait_line(|l| l.contains("mock: "));
    assert!(line.contains("offset "), "{line}");
    assert!(line.contains("received "), "{line}");
    mock.wait_closed(3);
    assert_eq!(mock.stop(), 0);
    // The mock's conversations are recorded like any connection's, the mismatch with them.
    let dump: String = std::fs::read_dir(logs.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains("-0003-"))
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("log-binary")
        })
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(dump.contains("Mock server on "), "{dump}");
    assert!(dump.contains("offset "), "{dump}");
}

/// The POP3-like server the gotcpspy fixture was recorded against: a greeting, then an answer
/// per line, and a close after QUIT.
fn pop_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            timeouts(&s);
            let _ = s.write_all(b"+OK POP3 ready\r\n");
            let mut buf = Vec::new();
            let mut chunk = [0u8; 256];
            'conn: while let Ok(n) = s.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    let line: Vec<u8> = buf.drain(..i + 2).collect();
                    if line.starts_with(b"USER") {
                        let _ = s.write_all(b"+OK send PASS\r\n");
                    } else if line.starts_with(b"QUIT") {
                        let _ = s.write_all(b"+OK bye\r\n");
                        break 'conn;
                    }
                }
            }
        }
    });
    addr
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/log-2026.12.03-06.32.14-0001-127.0.0.1-51686-127.0.0.1-18110.log")
}

/// A hex dump written by the real gotcpspy (the seed article's program, built from
/// /work/shared/bench/peers/gotcpspy, relaying a client to this same server): its lines name
/// no side and carry no times, and the server speaks first.
#[test]
fn a_gotcpspy_hex_dump_replays() {
    let server = pop_server().to_string();
    let f = fixture();
    let (code, out, err) = tcpspy(&["replay", path(&f), "--target", &server]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("tcpspy replay: identical: "), "{out}");
    assert!(out.contains("answered the 17 bytes of"), "{out}");
    assert!(out.contains("as recorded, 40 bytes"), "{out}");
    // Renamed, the sides are told apart by the ports.
    let dir = tempfile::tempdir().unwrap();
    let renamed = dir.path().join("pop.txt");
    std::fs::copy(&f, &renamed).unwrap();
    let (code, out, _) = tcpspy(&["replay", path(&renamed), "--target", &server]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn damaged_recordings_are_one_error_line_naming_the_line() {
    let text = std::fs::read_to_string(fixture()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.log");
    // Cut in the middle of the third chunk's dump line.
    let at = text.find("00000000  2b 4f 4b 20 73").unwrap() + 20;
    std::fs::write(&cut, &text[..at]).unwrap();
    let server = pop_server().to_string();
    let (code, out, err) = tcpspy(&["replay", path(&cut), "--target", &server]);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(out, "");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "tcpspy replay: error: {}: line 8: chunk #1 says 15 bytes",
            cut.display()
        )),
        "{err}"
    );
    let bad = dir.path().join("bad.log");
    std::fs::write(&bad, text.replace("55 53 45 52", "55 53 4x 52")).unwrap();
    let (code, _, err) = tcpspy(&["replay", path(&bad), "--target", &server]);
    assert_eq!(code, 2);
    assert!(err.contains(": line 6: bad hex \"4x\""), "{err}");
    // No server: one line, exit 2.
    let gone = held_port().addr.to_string();
    let (code, _, err) = tcpspy(&["replay", path(&fixture()), "--target", &gone]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("tcpspy replay: error: cannot connect to "),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn the_mock_plays_a_server_that_speaks_first_and_resets_on_mismatch() {
    let mut mock = Spy::spawn({
        let mut c = std::process::Command::new(bin());
        c.args([
            "mock",
            path(&fixture()),
            "--listen",
            "127.0.0.1:0",
            "--on-mismatch",
            "reset",
        ]);
        c
    });
    // As recorded: the greeting comes first, each answer after its line, then the close.
    let mut s = connect(mock.addr);
    let mut got = vec![0u8; 16];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, b"+OK POP3 ready\r\n");
    s.write_all(b"USER test\r\n").unwrap();
    let mut got = vec![0u8; 15];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, b"+OK send PASS\r\n");
    s.write_all(b"QUIT\r\n").unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"+OK bye\r\n", "then the recorded FIN");
    drop(s);
    mock.wait_closed(1);
    // Another user: a reset, and the mismatch said.
    let mut s = connect(mock.addr);
    let mut got = vec![0u8; 16];
    s.read_exact(&mut got).unwrap();
    s.write_all(b"USER eve\r\n").unwrap();
    let mut rest = Vec::new();
    let e = s.read_to_end(&mut rest).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    let line = mock.wait_line(|l| l.contains("mock: mismatch"));
    assert!(
        line.contains("offset 5: expected 74 65 73 74 0d 0a 51 55 49 54 0d 0a \"test..QUIT..\", received 65 76 65 0d 0a \"eve..\"; resetting"),
        "{line}"
    );
    assert_eq!(mock.stop(), 0);
}

/// What a client reads until the connection ends, by FIN or by reset: the server's reset
/// reaches a client that has half-closed as tcpspy closes such a side, with a FIN, in the
/// recording and in the mock alike.
fn until_closed(c: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("{e}"),
        }
    }
}

/// A server that answers only after the client's FIN, then resets: recorded through tcpspy,
/// the mock plays both, the half-close awaited and the reset played (its record says so).
#[test]
fn the_mock_awaits_a_half_close_and_plays_a_recorded_reset() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = l.local_addr().unwrap();
    thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        timeouts(&s);
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let _ = s.write_all(format!("got {} bytes\n", got.len()).as_bytes());
        let _ = socket2::SockRef::from(&s).set_linger(Some(std::time::Duration::ZERO));
    });
    let rec = record(server, 1, |spy| {
        let mut c = connect(spy);
        c.write_all(b"hello").unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(until_closed(&mut c), b"got 5 bytes\n");
    });
    let logs = tempfile::tempdir().unwrap();
    let mut mock = Spy::spawn({
        let mut c = std::process::Command::new(bin());
        c.args(["mock", path(rec.path()), "--listen", "127.0.0.1:0", "-d"])
            .arg(logs.path());
        c
    });
    let mut c = connect(mock.addr);
    c.write_all(b"hello").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(until_closed(&mut c), b"got 5 bytes\n");
    let closed = mock.wait_closed(1);
    assert!(
        closed.ends_with("client EOF, then server reset"),
        "{closed}"
    );
    assert_eq!(mock.stop(), 0);
}

/// A line server: `pong` for each `ping`, closing after the client's FIN.
fn ping_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            thread::spawn(move || {
                timeouts(&s);
                let mut buf = [0u8; 256];
                let mut line = Vec::new();
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    for &b in &buf[..n] {
                        line.push(b);
                        if b == b'\n' {
                            let _ = s.write_all(b"pong\n");
                            line.clear();
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Every record of a connection replays: the log directory by number (its hex dump), the
/// capture, a directory as written before the index existed, the binary logs with the index
/// alone, and the client's binary log alone.
#[test]
fn every_record_of_a_connection_replays() {
    let server = ping_server();
    let rec = record(server, 1, |spy| {
        let mut c = connect(spy);
        for _ in 0..2 {
            c.write_all(b"ping\n").unwrap();
            let mut got = [0u8; 5];
            c.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"pong\n");
        }
        c.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(until_closed(&mut c), b"");
    });
    let names: Vec<String> = std::fs::read_dir(rec.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let find = |p: &str| names.iter().find(|n| n.starts_with(p)).cloned().unwrap();
    let capture = rec.path().join(find("capture-"));
    let binaries: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("log-binary-"))
        .collect();
    // A directory as written before connections.jsonl: the hex dump and the binary logs.
    let old = tempfile::tempdir().unwrap();
    for n in names.iter().filter(|n| n.starts_with("log-")) {
        std::fs::copy(rec.path().join(n), old.path().join(n)).unwrap();
    }
    // Binary logs and the index only (the hex dump gone): the index's names tell the sides.
    let bare = tempfile::tempdir().unwrap();
    for n in binaries
        .iter()
        .copied()
        .chain([&"connections.jsonl".to_string()])
    {
        std::fs::copy(rec.path().join(n), bare.path().join(n)).unwrap();
    }
    let client_log = binaries
        .iter()
        .find(|b| !b.ends_with(&format!("-{}.log", server.port())))
        .map(|b| rec.path().join(b))
        .unwrap();
    let target = server.to_string();
    let dir = path(rec.path());
    for args in [
        vec!["replay", dir, "--connection", "1"],
        vec!["replay", path(&capture)],
        vec!["replay", path(old.path()), "--connection", "1"],
        vec!["replay", path(bare.path()), "--connection", "0001"],
    ] {
        let mut args = args.clone();
        args.extend(["--target", &target]);
        let (code, out, err) = tcpspy(&args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        assert!(out.starts_with("tcpspy replay: identical: "), "{out}");
        assert!(out.contains("answered the 10 bytes of"), "{out}");
        assert!(out.contains("as recorded, 10 bytes"), "{out}");
    }
    // The client's log alone: sent as one stream, the answer only told (nothing to compare).
    let (code, out, err) = tcpspy(&[
        "replay",
        path(&client_log),
        "--target",
        &target,
        "--turn-timeout",
        "200ms",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("tcpspy replay: sent: "), "{out}");
    assert!(out.contains("got the 10 bytes of"), "{out}");
    assert!(
        out.contains("and answered 10 bytes; the recording holds no answer"),
        "{out}"
    );
}

/// `--pace original` keeps the recorded gaps: a dump whose second ping came 400 ms after the
/// first answer takes at least that long to replay, and is still identical.
#[test]
fn original_pace_keeps_the_recorded_gaps() {
    let server = ping_server();
    let dump = "\
Connected to 127.0.0.1:7 at 2026.12.03-10.00.00.000000 (client 127.0.0.1:5, via 127.0.0.1:6; connect took 0.000010s)
Received (#0, 00000000) 5 bytes from 127.0.0.1:5 (client) at 2026.12.03-10.00.00.000100
00000000  70 69 6e 67 0a                                    |ping.|
Received (#0, 00000000) 5 bytes from 127.0.0.1:7 (server) at 2026.12.03-10.00.00.000200
00000000  70 6f 6e 67 0a                                    |pong.|
Received (#1, 00000005) 5 bytes from 127.0.0.1:5 (client) at 2026.12.03-10.00.00.400200
00000000  70 69 6e 67 0a                                    |ping.|
Received (#1, 00000005) 5 bytes from 127.0.0.1:7 (server) at 2026.12.03-10.00.00.400300
00000000  70 6f 6e 67 0a                                    |pong.|
Disconnected from 127.0.0.1:5 (client): EOF at 2026.12.03-10.00.00.400400
Disconnected from 127.0.0.1:7 (server): EOF at 2026.12.03-10.00.00.400500
";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("paced.log");
    std::fs::write(&file, dump).unwrap();
    let target = server.to_string();
    let started = std::time::Instant::now();
    let (code, out, err) = tcpspy(&[
        "replay",
        path(&file),
        "--target",
        &target,
        "--pace",
        "original",
    ]);
    let took = started.elapsed();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("tcpspy replay: identical: "), "{out}");
    assert!(took >= std::time::Duration::from_millis(400), "{took:?}");
}

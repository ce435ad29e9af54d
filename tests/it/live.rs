//! The live view on stdout (`-x`, `--text`): the hex dump it prints is the file's, text is
//! escaped, colours only on a terminal without NO_COLOR, and a closed stdout ends tcpspy
//! quietly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::process::{ChildStdout, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Instant;

use tcpspy::log::hexdump;

use crate::util::*;

/// Reads tcpspy's stdout to the end in a thread.
fn read_all(mut out: ChildStdout) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    })
}

/// One connection through the spy: the client sends `up` (in one write), the server answers
/// `down` once it has all of it, then both close.
fn exchange(spy: SocketAddr, target: &TcpListener, up: &[u8], down: &[u8]) -> SocketAddr {
    let mut c = connect(spy);
    let mut s = accept(target);
    let client = c.local_addr().unwrap();
    thread::scope(|sc| {
        let mut w = c.try_clone().unwrap();
        sc.spawn(move || w.write_all(up).unwrap());
        let mut got = vec![0u8; up.len()];
        s.read_exact(&mut got).unwrap();
        assert!(got == up, "relayed bytes differ");
    });
    thread::scope(|sc| {
        let mut w = s.try_clone().unwrap();
        sc.spawn(move || w.write_all(down).unwrap());
        let mut got = vec![0u8; down.len()];
        c.read_exact(&mut got).unwrap();
        assert!(got == down, "relayed bytes differ");
    });
    c.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut s).unwrap().is_empty());
    drop(s);
    assert!(read_to_end(&mut c).unwrap().is_empty());
    client
}

/// `#0001 client A -> server B, N bytes (#n, OFFSET) at TIME` as the hex dump file writes it,
/// `Received (#n, OFFSET) N bytes from A (client) at TIME`, so that [`hexdump::parse`] reads
/// the live view; the header's addresses are checked on the way.
fn file_header(line: &str, client: SocketAddr, target: SocketAddr) -> Option<String> {
    let rest = line.strip_prefix("#0001 ")?;
    let (side, rest) = rest.split_once(' ')?;
    let (src, rest) = rest.split_once(" -> ")?;
    let (dst, rest) = rest.split_once(", ")?;
    let (len, rest) = rest.split_once(" bytes (#")?;
    let (number_offset, time) = rest.split_once(") at ")?;
    let (c, t) = (client.to_string(), target.to_string());
    match side {
        "client" => assert_eq!((src, dst), (c.as_str(), format!("server {t}").as_str())),
        "server" => assert_eq!((src, dst), (t.as_str(), format!("client {c}").as_str())),
        _ => return None,
    }
    Some(format!(
        "Received (#{number_offset}) {len} bytes from {src} ({side}) at {time}"
    ))
}

/// `-x` prints each chunk as the hex dump file has it: same chunks, numbers, offsets and
/// bytes, with the connection's open and closed lines of stderr around them. The log queue is
/// small, so the view also shows that nothing is dropped when the logger falls behind.
#[test]
fn hexdump_on_stdout_is_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let target = listener();
    let taddr = target.local_addr().unwrap();
    let mut spy = Spy::start_piped(&[
        "-t",
        &taddr.to_string(),
        "-d",
        dir.path().to_str().unwrap(),
        "--log-queue",
        "64K",
        "-x",
    ]);
    let listening = spy.seen[0].clone();
    assert!(
        listening.contains("logging hex,binary in ")
            && listening.contains("; live hex dump on stdout"),
        "{listening}"
    );
    let out = read_all(spy.child.stdout.take().unwrap());
    let up = data(1, 1 << 20);
    let down = data(2, 300_000);
    let client = exchange(spy.addr, &target, &up, &down);
    spy.wait_closed(1);
    assert_eq!(spy.stop(), 0);
    let live = String::from_utf8(out.join().unwrap()).expect("the view is ASCII");
    assert!(!live.contains('\x1b'), "no colour into a pipe");

    // The view reads on its own: the connection's lines of stderr frame its chunks.
    let lines: Vec<&str> = live.lines().collect();
    let opened = spy
        .seen
        .iter()
        .find(|l| l.starts_with("#0001 open "))
        .unwrap();
    let closed = spy
        .seen
        .iter()
        .find(|l| l.starts_with("#0001 closed "))
        .unwrap();
    assert_eq!(lines.first(), Some(&opened.as_str()));
    assert_eq!(lines.last(), Some(&closed.as_str()));

    let as_file: String = lines
        .iter()
        .map(|l| file_header(l, client, taddr).unwrap_or_else(|| l.to_string()) + "\n")
        .collect();
    let seen = hexdump::parse(&as_file).unwrap();
    let (hex, _, _) = log_files(dir.path(), 1, taddr);
    let file = hexdump::parse(&std::fs::read_to_string(hex).unwrap()).unwrap();
    assert!(seen.len() >= 2, "{} chunks", seen.len());
    assert_eq!(seen.len(), file.len(), "chunks on stdout and in the file");
    assert!(seen == file, "stdout's chunks differ from the file's");
    let streams = hexdump::streams(&as_file).unwrap();
    assert!(streams[0] == up && streams[1] == down, "every byte shown");
}

/// `--log none -x`: the bytes still reach the view, and no file is written.
#[test]
fn live_view_with_log_none_writes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = listener();
    let taddr = target.local_addr().unwrap();
    let mut spy = Spy::start_piped(&[
        "-t",
        &taddr.to_string(),
        "-d",
        dir.path().to_str().unwrap(),
        "--log",
        "none",
        "--hexdump",
    ]);
    assert!(
        spy.seen[0].contains("; logging none; live hex dump on stdout;"),
        "{}",
        spy.seen[0]
    );
    let out = read_all(spy.child.stdout.take().unwrap());
    let up = b"PING\r\n".to_vec();
    let down = data(3, 5000);
    let client = exchange(spy.addr, &target, &up, &down);
    spy.wait_closed(1);
    assert_eq!(spy.stop(), 0);
    let live = String::from_utf8(out.join().unwrap()).unwrap();
    let as_file: String = live
        .lines()
        .map(|l| file_header(l, client, taddr).unwrap_or_else(|| l.to_string()) + "\n")
        .collect();
    let streams = hexdump::streams(&as_file).unwrap();
    assert!(streams[0] == up && streams[1] == down, "{live}");
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(files.is_empty(), "{files:?}");
}

/// `--text`: printable ASCII as it is, a newline as a line break, everything else escaped —
/// ESC and NUL, `\r`, `\t`, the backslash itself, and each byte of UTF-8.
#[test]
fn text_escapes_what_a_terminal_would_obey() {
    let target = listener();
    let taddr = target.local_addr().unwrap();
    let mut spy = Spy::start_piped(&["-t", &taddr.to_string(), "--log", "none", "--text"]);
    let out = read_all(spy.child.stdout.take().unwrap());
    let up = "\x1b[2J\x1b]0;owned\x07 NUL\0\r\n\tcafé C:\\tmp\r\n".as_bytes();
    let down = b"+OK\r\n";
    let client = exchange(spy.addr, &target, up, down);
    spy.wait_closed(1);
    assert_eq!(spy.stop(), 0);
    let raw = out.join().unwrap();
    assert!(
        raw.iter().all(|&b| b == b'\n' || (0x20..0x7f).contains(&b)),
        "only printable ASCII and newlines: {raw:?}"
    );
    let text = String::from_utf8(raw).unwrap();
    // The times vary: cut them off the headers after checking their shape.
    let lines: Vec<String> = text
        .lines()
        .map(|l| match l.split_once(" at 20") {
            Some((head, stamp)) if l.contains(" bytes (#") => {
                assert_eq!(stamp.len(), 24, "{l}");
                format!("{head} at TIME")
            }
            _ => l.to_string(),
        })
        .collect();
    let closed = spy
        .seen
        .iter()
        .find(|l| l.starts_with("#0001 closed "))
        .unwrap();
    let want = [
        format!("#0001 open {client} -> {taddr}"),
        format!(
            "#0001 client {client} -> server {taddr}, {} bytes (#0, 00000000) at TIME",
            up.len()
        ),
        r"\x1b[2J\x1b]0;owned\x07 NUL\x00\r".to_string(),
        r"\tcaf\xc3\xa9 C:\\tmp\r".to_string(),
        format!("#0001 server {taddr} -> client {client}, 5 bytes (#0, 00000000) at TIME"),
        r"+OK\r".to_string(),
        closed.clone(),
    ];
    assert_eq!(lines, want);
}

/// `tcpspy -x | head`: once the reader has gone, tcpspy stops by itself, exit status 0, with
/// no error and no panic.
#[test]
fn closed_stdout_ends_tcpspy_quietly() {
    let target = listener();
    let taddr = target.local_addr().unwrap();
    let mut spy = Spy::start_piped(&["-t", &taddr.to_string(), "--log", "none", "-x"]);
    let out = spy.child.stdout.take().unwrap();
    // `head -n 5`: five lines, then the pipe is closed.
    let (tx, head) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(out).lines().take(5) {
            let _ = tx.send(line.unwrap());
        }
    });
    exchange(spy.addr, &target, &data(4, 1000), b"ok\n");
    let five: Vec<String> = (0..5).map(|_| head.recv_timeout(WAIT).unwrap()).collect();
    reader.join().unwrap();
    assert!(five[0].starts_with("#0001 open "), "{five:?}");
    assert!(five[1].starts_with("#0001 client "), "{five:?}");
    assert!(five[2].starts_with("00000000  "), "{five:?}");
    // The next thing to show meets the closed pipe: the closed line, or else the next
    // connection (which finds tcpspy gone if the closed line came after the reader left).
    if let Ok(mut c) = std::net::TcpStream::connect(spy.addr) {
        let _ = c.write_all(b"more\n");
    }
    assert_eq!(spy.wait_exit(), 0, "{:#?}", spy.seen);
    let last = spy.seen.last().unwrap();
    assert!(
        last.starts_with("tcpspy: stopped; ") && last.contains("log file errors: 0;"),
        "{:#?}",
        spy.seen
    );
    for l in &spy.seen {
        assert!(
            !l.contains("panicked") && !l.contains("tcpspy: error") && !l.contains("live view"),
            "{l}"
        );
    }
}

/// Runs `tcpspy -x` with a terminal as stdout (and stderr), relays one exchange, stops it, and
/// returns everything the terminal showed.
fn on_a_terminal(no_color: Option<&str>) -> String {
    let target = listener();
    let taddr = target.local_addr().unwrap();
    // script(1) (bsdutils, always on Debian) gives the command a terminal; the shell prints
    // its pid before becoming tcpspy, so that the test can stop it.
    let cmd = format!(
        "echo pid=$$; exec '{}' -l 127.0.0.1:0 -t {taddr} --log none -x",
        bin()
    );
    let mut script = tool("script");
    script
        .args(["-qefc", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    match no_color {
        Some(v) => script.env("NO_COLOR", v),
        None => script.env_remove("NO_COLOR"),
    };
    let mut child = script.spawn().expect("script runs");
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut screen = Screen {
        rx,
        seen: Vec::new(),
    };
    let text = screen.wait(|s| s.contains("pid=") && s.contains(" connections at once"));
    let pid: i32 = field(&text, "pid=", "\r").parse().unwrap();
    let addr: SocketAddr = field(&text, "listening on ", ",").parse().unwrap();
    exchange(addr, &target, b"hello\n", b"world\n");
    // Once on stderr, once in the view.
    screen.wait(|s| s.matches("#0001 closed ").count() == 2);
    // SAFETY: kill(2) on the pid the shell printed before exec'ing tcpspy, our grandchild.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let text = screen.wait_end();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{text}");
    text
}

fn field<'a>(text: &'a str, after: &str, until: &str) -> &'a str {
    let rest = text.split(after).nth(1).unwrap_or_else(|| panic!("{text}"));
    rest.split(until).next().unwrap()
}

/// What a terminal received, as it arrives.
struct Screen {
    rx: Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Screen {
    fn wait(&mut self, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = String::from_utf8_lossy(&self.seen).into_owned();
            if done(&text) {
                return text;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(b) => self.seen.extend_from_slice(&b),
                Err(_) => panic!("not on the terminal in {WAIT:?}: {text:?}"),
            }
        }
    }

    fn wait_end(&mut self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(b) => self.seen.extend_from_slice(&b),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return String::from_utf8_lossy(&self.seen).into_owned();
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("the terminal is still open"),
            }
        }
    }
}

/// On a terminal each direction has its colour, set and reset on every line.
#[test]
fn colours_on_a_terminal() {
    need("script");
    let text = on_a_terminal(None);
    for want in [
        "\x1b[1;31m#0001 client 127.0.0.1:",
        "\x1b[31m00000000  68 65 6c 6c 6f 0a                                 |hello.|\x1b[0m\r\n",
        "\x1b[1;34m#0001 server 127.0.0.1:",
        "\x1b[34m00000000  77 6f 72 6c 64 0a                                 |world.|\x1b[0m\r\n",
    ] {
        assert!(text.contains(want), "{want:?} in {text:?}");
    }
    let open = text.lines().find(|l| l.starts_with("#0001 open ")).unwrap();
    assert!(!open.contains('\x1b'), "{open:?}");
}

/// NO_COLOR set (to anything): no colour, even on a terminal.
#[test]
fn no_color_turns_colours_off() {
    need("script");
    let text = on_a_terminal(Some("1"));
    assert!(text.contains("#0001 client 127.0.0.1:"), "{text:?}");
    assert!(
        text.contains("00000000  68 65 6c 6c 6f 0a                                 |hello.|\r\n"),
        "{text:?}"
    );
    assert!(!text.contains('\x1b'), "{text:?}");
}

/// The capture and the view cannot share stdout; `-x` and `--text` exclude each other.
#[test]
fn live_view_and_capture_on_stdout_are_refused() {
    for flag in ["-x", "--text"] {
        let (code, err) = run_to_exit(&[
            "-l",
            "127.0.0.1:0",
            "-t",
            "127.0.0.1:1",
            "--pcap",
            "-",
            flag,
        ]);
        assert_eq!(code, 1, "{err}");
        assert_eq!(err.lines().count(), 1, "{err:?}");
        assert!(
            err.starts_with("tcpspy: error: ") && err.contains("would both write to stdout"),
            "{err:?}"
        );
    }
    let (code, err) = run_to_exit(&["-l", "127.0.0.1:0", "-t", "127.0.0.1:1", "-x", "--text"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
}

//! Keeping on under load, faults and hostile peers: descriptor exhaustion, the connection cap,
//! timeouts, stalled readers, stopping, log write failures, many connections.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as u64
}

/// Sets another process's soft descriptor limit (the hard limit stays).
fn set_soft_nofile(pid: i32, soft: u64) {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit on our child with valid pointers.
    unsafe {
        assert_eq!(
            libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old),
            0
        );
        let new = libc::rlimit {
            rlim_cur: soft,
            rlim_max: old.rlim_max,
        };
        assert_eq!(
            libc::prlimit(pid, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()),
            0
        );
    }
}

fn open_fds(pid: i32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64
}

/// A tcpspy command whose process gets `limit` for `resource` before it starts.
fn limited(resource: libc::__rlimit_resource_t, limit: u64, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(["--listen", "127.0.0.1:0"]).args(args);
    // SAFETY: setrlimit is async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(resource, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// An echo server: one thread per connection, echoing until EOF.
fn echo_server(l: std::net::TcpListener) {
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            timeouts(&s);
            thread::spawn(move || {
                let mut buf = [0u8; 65536];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
}

fn echo_once(c: &mut TcpStream, msg: &[u8]) {
    c.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    c.read_exact(&mut got).unwrap();
    assert_eq!(got, msg);
}

/// Out of descriptors: new clients wait (in the backlog or accepted), tcpspy burns no CPU
/// meanwhile, existing connections keep flowing, and everyone is served once descriptors free.
#[test]
fn descriptor_exhaustion_waits_without_spinning_then_serves() {
    let dir = tempfile::tempdir().unwrap();
    let target = listener();
    let taddr = target.local_addr().unwrap();
    echo_server(target);
    let mut spy = Spy::start(&["-t", &taddr.to_string(), "-d", dir.path().to_str().unwrap()]);
    let mut early: Vec<TcpStream> = (0..3).map(|_| connect(spy.addr)).collect();
    for (i, c) in early.iter_mut().enumerate() {
        echo_once(c, format!("early {i}").as_bytes());
    }
    // Leave room for about one more connection's sockets, not its logs.
    let limit = open_fds(spy.pid()) + 2;
    set_soft_nofile(spy.pid(), limit);
    let mut late: Vec<TcpStream> = (0..30).map(|_| connect(spy.addr)).collect();
    for (i, c) in late.iter_mut().enumerate() {
        c.write_all(format!("late {i:02}").as_bytes()).unwrap();
    }
    // The "out of descriptors" line goes through the logging thread, which is itself waiting
    // for a descriptor to open the new connections' logs: the sign of exhaustion to wait for
    // is the descriptor table itself, full.
    let deadline = Instant::now() + WAIT;
    while open_fds(spy.pid()) < limit {
        assert!(
            Instant::now() < deadline,
            "tcpspy never used up its descriptors"
        );
        thread::yield_now();
    }
    // Connections made before keep flowing.
    echo_once(&mut early[0], b"still flowing");
    // A measurement window, not a synchronisation: the CPU tcpspy burns while it cannot
    // accept is the thing under test, over a span the test measures, and a tcpspy that spun
    // would burn the whole span. The span is time by nature; nothing is waited for in it.
    let (before, since) = (cpu_ticks(spy.pid()), Instant::now());
    thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(spy.pid()) - before;
    let span = since.elapsed();
    let used_secs = used as f64 / ticks_per_second() as f64;
    assert!(
        used_secs <= span.as_secs_f64() / 20.0,
        "{used_secs}s of CPU in {span:?} of exhaustion"
    );

    set_soft_nofile(spy.pid(), 4096);
    for (i, c) in late.iter_mut().enumerate() {
        let mut got = [0u8; 7];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, format!("late {i:02}").as_bytes());
    }
    drop(early);
    drop(late);
    let mut closed = 0;
    while closed < 33 {
        spy.wait_line(|l| l.contains(" closed "));
        closed += 1;
    }
    assert!(
        spy.seen.iter().any(|l| l.contains("out of descriptors")),
        "{:#?}",
        spy.seen
    );
    assert!(
        spy.seen
            .iter()
            .any(|l| l.contains("descriptors available again")),
        "{:#?}",
        spy.seen
    );
    assert!(
        !spy.seen.iter().any(|l| l.contains("reset by tcpspy")),
        "nobody was turned away"
    );
    assert!(
        !spy.seen.iter().any(|l| l.contains("log file")),
        "no log failed: {:#?}",
        spy.seen
    );
    // Every connection's logs are complete: each echoed exactly what it sent.
    let mut index = log_index(dir.path(), taddr);
    for n in 1..=33 {
        let (_, up, down) = index.remove(&n).unwrap();
        let up = std::fs::read(up).unwrap();
        assert!(!up.is_empty());
        assert_eq!(up, std::fs::read(down).unwrap(), "connection {n}");
    }
}

/// At --max-connections the extra clients wait in the kernel's backlog and are relayed as
/// earlier connections end.
#[test]
fn max_connections_leaves_the_rest_in_the_backlog() {
    let target = listener();
    let taddr = target.local_addr().unwrap();
    let mut spy = Spy::start(&[
        "-t",
        &taddr.to_string(),
        "--log",
        "none",
        "--max-connections",
        "3",
    ]);
    let (tx, accepted) = mpsc::channel();
    thread::spawn(move || {
        for s in target.incoming() {
            let Ok(s) = s else { return };
            let _ = tx.send(());
            thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let mut first: Vec<TcpStream> = (0..3).map(|_| connect(spy.addr)).collect();
    for c in &mut first {
        echo_once(c, b"in");
    }
    let mut extra: Vec<TcpStream> = (0..2).map(|_| connect(spy.addr)).collect();
    for c in &mut extra {
        c.write_all(b"waiting").unwrap();
    }
    // Round trips on a held connection after the extra clients connected: had tcpspy taken
    // them, their upstream connects would have reached the target by now.
    for _ in 0..3 {
        echo_once(&mut first[2], b"ping");
    }
    let upstream: usize = accepted.try_iter().count();
    assert_eq!(
        upstream, 3,
        "only three upstream connections while at the cap"
    );
    assert!(!spy.seen.iter().any(|l| l.starts_with("#0004")));

    drop(first.remove(0));
    spy.wait_closed(1);
    let mut got = [0u8; 7];
    extra[0].read_exact(&mut got).unwrap();
    assert_eq!(
        &got, b"waiting",
        "the first waiting client is relayed once one ended"
    );
    drop(first.remove(0));
    extra[1].read_exact(&mut got).unwrap();
    assert_eq!(&got, b"waiting");
    spy.wait_line(|l| l.starts_with("#0005 open"));
    let opened = spy
        .seen
        .iter()
        .position(|l| l.starts_with("#0004 open"))
        .unwrap();
    let closed = spy
        .seen
        .iter()
        .position(|l| l.starts_with("#0001 closed"))
        .unwrap();
    assert!(closed < opened, "#4 opened only after #1 closed");
}

/// A target that never answers the SYN: the client is reset after --connect-timeout and the
/// hex dump says why.
#[test]
fn connect_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // A listener whose accept queue is full drops further SYNs: connects to it hang.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    sock.listen(0).unwrap();
    let taddr = sock.local_addr().unwrap().as_socket().unwrap();
    let _filler = TcpStream::connect(taddr).unwrap();
    let mut spy = Spy::start(&[
        "-t",
        &taddr.to_string(),
        "-d",
        dir.path().to_str().unwrap(),
        "--connect-timeout",
        "300ms",
    ]);
    let mut c = connect(spy.addr);
    let started = Instant::now();
    let mut buf = [0u8; 8];
    match c.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected the client to be closed, got {other:?}"),
    }
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "not before the timeout"
    );
    let line = spy.wait_closed(1);
    assert!(
        line.contains("server connect timed out, then client reset by tcpspy"),
        "{line}"
    );
    let (hex, _, _) = log_files(dir.path(), 1, taddr);
    let text = std::fs::read_to_string(hex).unwrap();
    assert!(
        text.contains(&format!("Unable to connect to {taddr}: connect timed out")),
        "{text}"
    );
    drop(sock);
}

/// --idle-timeout closes a connection with no traffic, and not one with traffic: round trips
/// one after the other, each waiting for its echo, until the connection has lived half again
/// the timeout; then silence, and tcpspy closes both sides no sooner than the timeout after the
/// last echo. Both are lower bounds on durations the test measures, which is what is tested.
#[test]
fn idle_timeout() {
    const IDLE: Duration = Duration::from_secs(1);
    let target = listener();
    let taddr = target.local_addr().unwrap();
    echo_server(target);
    let mut spy = Spy::start(&[
        "-t",
        &taddr.to_string(),
        "--log",
        "none",
        "--idle-timeout",
        "1s",
    ]);
    let mut c = connect(spy.addr);
    let started = Instant::now();
    let mut round_trips = 0u64;
    let mut last = started;
    while started.elapsed() < IDLE * 3 / 2 {
        last = Instant::now();
        echo_once(&mut c, format!("{round_trips:08}").as_bytes());
        round_trips += 1;
    }
    // Then silence: tcpspy closes both sides (FIN, not a reset).
    let mut buf = [0u8; 8];
    assert_eq!(c.read(&mut buf).unwrap(), 0, "EOF from tcpspy");
    assert!(
        last.elapsed() >= IDLE,
        "closed {:?} after the last echo began",
        last.elapsed()
    );
    let line = spy.wait_closed(1);
    assert!(
        line.contains("client idle timeout, closed by tcpspy, then server idle timeout"),
        "{line}"
    );
    let bytes = 8 * round_trips;
    assert!(
        line.contains(&format!(
            "client sent {bytes} bytes, server sent {bytes} bytes"
        )),
        "{line}"
    );
}

/// A client that stops reading while the server pushes 1 GiB: tcpspy's memory stays bounded,
/// and every byte arrives once the client reads again. The stall is seen, not waited for: the
/// memory is read once tcpspy is blocked both ways (it has stopped reading the server and has
/// bytes the client has no room for).
#[test]
fn stalled_reader_keeps_memory_bounded() {
    const TOTAL: usize = 1 << 30;
    let target = listener();
    let taddr = target.local_addr().unwrap();
    let spy = Spy::start(&["-t", &taddr.to_string(), "--log", "none"]);
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sent2 = sent.clone();
    let (sock_tx, sock_rx) = mpsc::channel();
    let server = thread::spawn(move || {
        let mut s = accept(&target);
        sock_tx.send(s.try_clone().unwrap()).unwrap();
        let block = data(9, 1 << 20);
        let mut done = 0usize;
        while done < TOTAL {
            let off = done % block.len();
            done += s
                .write(&block[off..block.len().min(off + TOTAL - done)])
                .unwrap();
            sent2.store(done, std::sync::atomic::Ordering::Release);
        }
    });
    let mut c = connect(spy.addr);
    let s = sock_rx.recv_timeout(WAIT).unwrap();
    wait_until("tcpspy blocked by the client that does not read", || {
        blocked_at_tcpspy(&s, &c)
    });
    drop(s);
    let in_flight = sent.load(std::sync::atomic::Ordering::Acquire);
    let rss_stalled = spy.status_kib("VmRSS");
    assert!(
        in_flight < 256 << 20,
        "the server could push only what buffers hold ({in_flight})"
    );
    let mut block = vec![0u8; 1 << 20];
    let expect = data(9, 1 << 20);
    let mut got = 0usize;
    while got < TOTAL {
        let n = c.read(&mut block[..(TOTAL - got).min(1 << 20)]).unwrap();
        assert!(n > 0, "EOF after {got} bytes");
        for (i, b) in block[..n].iter().enumerate() {
            if *b != expect[(got + i) % expect.len()] {
                panic!("byte {} differs", got + i);
            }
        }
        got += n;
    }
    server.join().unwrap();
    let peak = spy.status_kib("VmHWM");
    eprintln!(
        "stalled with {in_flight} bytes pushed: RSS {rss_stalled} KiB; peak over 1 GiB {peak} KiB"
    );
    assert!(
        rss_stalled < 16 * 1024,
        "RSS while stalled {rss_stalled} KiB"
    );
    assert!(peak < 16 * 1024, "peak RSS {peak} KiB");
}

/// SIGTERM in the middle of a download: exit 0, a summary, and each binary log holds exactly
/// the bytes that went through.
#[test]
fn sigterm_mid_transfer_keeps_logs_exact() {
    let (dir, target, taddr, mut spy) = logging_spy(&[]);
    let stream = data(11, 256 << 20);
    let server = thread::spawn(move || {
        let mut s = accept(&target);
        let mut req = [0u8; 5];
        s.read_exact(&mut req).unwrap();
        // Until tcpspy goes away.
        let _ = s.write_all(&stream);
    });
    let mut c = connect(spy.addr);
    c.write_all(b"hello").unwrap();
    let mut got = vec![0u8; 4 << 20];
    c.read_exact(&mut got).unwrap();
    spy.signal(libc::SIGTERM);
    let mut rest = Vec::new();
    match c.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
    }
    got.extend_from_slice(&rest);
    assert_eq!(spy.wait_exit(), 0);
    server.join().unwrap();
    let summary = spy
        .seen
        .iter()
        .find(|l| l.starts_with("tcpspy: stopped"))
        .cloned()
        .unwrap_or_default();
    assert!(summary.contains("connections: 1"), "{summary}");
    assert!(
        summary.contains(&format!("servers sent {} bytes", got.len())),
        "{summary}: client got {}",
        got.len()
    );
    assert!(
        spy.seen
            .iter()
            .any(|l| l.contains("closed by tcpspy on shutdown")),
        "{:#?}",
        spy.seen
    );
    let (_, up, down) = log_files(dir.path(), 1, taddr);
    assert_eq!(std::fs::read(up).unwrap(), b"hello");
    let logged = std::fs::read(down).unwrap();
    assert_eq!(
        logged.len(),
        got.len(),
        "the binary log holds what the client got"
    );
    assert!(logged == got);
}

/// A second signal while the first stop is still writing logs exits at once. The first stop
/// cannot finish: the live view (`-x`) goes to a pipe nobody reads, which the test lets fill up
/// before signalling, so the logger is blocked writing to it and everything queued behind
/// (the "stopping" line included).
#[test]
fn second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let target = listener();
    let taddr = target.local_addr().unwrap();
    let mut spy = Spy::start_piped(&[
        "-t",
        &taddr.to_string(),
        "-d",
        dir.path().to_str().unwrap(),
        "-x",
    ]);
    let view = spy.child.stdout.take().unwrap();
    thread::spawn(move || {
        let s = accept(&target);
        let _ = send_then_shutdown(s, data(12, 32 << 20)).join();
    });
    let mut c = connect(spy.addr);
    // The relay goes on until the log queue (8 MiB) is full.
    let mut got = vec![0u8; 1 << 20];
    c.read_exact(&mut got).unwrap();
    wait_until("the live view's pipe full", || pipe_full(&view));
    spy.signal(libc::SIGTERM);
    // Signals of one kind do not queue: the second must come after the first was taken. (The
    // "stopping" line says so too, but it goes through the logger, which is held up.)
    wait_until("the first SIGTERM taken", || {
        !signal_pending(spy.pid(), libc::SIGTERM)
    });
    spy.signal(libc::SIGTERM);
    assert_eq!(spy.wait_exit(), 143, "exit status of the second SIGTERM");
    drop(view);
}

/// Log files hit RLIMIT_FSIZE: each failure is reported once with the path and the OS error,
/// the relay goes on, and each file is valid up to where writing stopped.
#[test]
fn file_size_limit_is_reported_once_and_relay_goes_on() {
    const LIMIT: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let target = listener();
    let taddr = target.local_addr().unwrap();
    let args = ["-t", &taddr.to_string(), "-d", dir.path().to_str().unwrap()];
    let mut spy = Spy::spawn(limited(libc::RLIMIT_FSIZE, LIMIT, &args));
    let down = data(13, 4 << 20);
    let down2 = down.clone();
    thread::spawn(move || {
        let s = accept(&target);
        send_then_shutdown(s, down2).join().unwrap().unwrap();
    });
    let mut c = connect(spy.addr);
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        sha(&read_to_end(&mut c).unwrap()),
        sha(&down),
        "the relay went on"
    );
    spy.wait_closed(1);
    let (hex, up, bdown) = log_files(dir.path(), 1, taddr);
    let errors: Vec<&String> = spy
        .seen
        .iter()
        .filter(|l| l.contains("File too large"))
        .collect();
    assert_eq!(errors.len(), 2, "one line per failed file: {errors:#?}");
    for p in [&hex, &bdown] {
        assert!(
            errors.iter().any(|l| l.contains(p.to_str().unwrap())),
            "{} named in {errors:#?}",
            p.display()
        );
    }
    assert_eq!(std::fs::read(up).unwrap(), b"");
    let logged = std::fs::read(&bdown).unwrap();
    assert_eq!(logged.len() as u64, LIMIT);
    assert!(
        logged == down[..LIMIT as usize],
        "the binary log is the stream's start"
    );
    // The hex dump parses, but for its last chunk, which stops where writing did.
    let text = String::from_utf8(std::fs::read(&hex).unwrap()).unwrap();
    let whole = &text[..text.rfind("\nReceived (#").unwrap() + 1];
    let streams = tcpspy::log::hexdump::streams(whole).unwrap();
    assert!(!streams[1].is_empty() && down.starts_with(&streams[1]));
    assert_eq!(spy.stop(), 0);
}

/// With --on-log-error exit, the first log failure stops tcpspy with status 1.
#[test]
fn on_log_error_exit_stops() {
    let dir = tempfile::tempdir().unwrap();
    let target = listener();
    let taddr = target.local_addr().unwrap();
    let args = [
        "-t",
        &taddr.to_string(),
        "-d",
        dir.path().to_str().unwrap(),
        "--on-log-error",
        "exit",
    ];
    let mut spy = Spy::spawn(limited(libc::RLIMIT_FSIZE, 4096, &args));
    thread::spawn(move || {
        let s = accept(&target);
        let _ = send_then_shutdown(s, data(14, 1 << 20)).join();
    });
    let mut c = connect(spy.addr);
    let _ = read_to_end(&mut c);
    assert_eq!(spy.wait_exit(), 1);
    let err = spy
        .seen
        .iter()
        .find(|l| l.starts_with("tcpspy: error:"))
        .cloned()
        .unwrap_or_default();
    assert!(err.contains("--on-log-error exit"), "{:#?}", spy.seen);
    assert!(
        spy.seen
            .iter()
            .any(|l| l.contains("File too large") && l.contains("stopping"))
    );
}

/// The log directory removed mid-run: new connections' files fail, each reported once, and
/// the relay goes on.
#[test]
fn log_dir_removed_mid_run() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("logs");
    let target = listener();
    let taddr = target.local_addr().unwrap();
    echo_server(target);
    let mut spy = Spy::start(&["-t", &taddr.to_string(), "-d", dir.to_str().unwrap()]);
    let mut c = connect(spy.addr);
    echo_once(&mut c, b"before");
    drop(c);
    spy.wait_closed(1);
    std::fs::remove_dir_all(&dir).unwrap();
    let mut c = connect(spy.addr);
    echo_once(&mut c, b"after the directory went away");
    drop(c);
    spy.wait_closed(2);
    let failures: Vec<&String> = spy
        .seen
        .iter()
        .filter(|l| l.contains("No such file or directory"))
        .collect();
    assert_eq!(
        failures.len(),
        3,
        "three files, one line each: {failures:#?}"
    );
    assert!(
        failures
            .iter()
            .all(|l| l.contains(dir.to_str().unwrap()) && l.contains("-0002-"))
    );
}

/// Many connections at once with logging, more than the open-file bound: every log complete.
fn many_connections(n: usize, max_open_files: &str) {
    let dir = tempfile::tempdir().unwrap();
    let target = listener();
    let taddr = target.local_addr().unwrap();
    let _ = tcpspy::sys::raise_nofile_limit();
    let server = thread::spawn(move || mio_echo(target, n));
    let mut spy = Spy::start(&[
        "-t",
        &taddr.to_string(),
        "-d",
        dir.path().to_str().unwrap(),
        "--max-open-files",
        max_open_files,
    ]);
    let mut clients: Vec<TcpStream> = (0..n).map(|_| connect(spy.addr)).collect();
    // Two rounds, so that files closed by the open-file bound are reopened and appended to.
    for round in 0..2u8 {
        for (i, c) in clients.iter_mut().enumerate() {
            c.write_all(format!("{round}:{i:05};").as_bytes()).unwrap();
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let mut got = [0u8; 8];
            c.read_exact(&mut got).unwrap();
            assert_eq!(&got, format!("{round}:{i:05};").as_bytes());
        }
    }
    let idle_rss = spy.status_kib("VmRSS");
    eprintln!("{n} idle connections: tcpspy RSS {idle_rss} KiB");
    for c in &clients {
        c.shutdown(Shutdown::Write).unwrap();
    }
    for c in &mut clients {
        assert_eq!(read_to_end(c).unwrap(), b"");
    }
    drop(clients);
    let mut closed = 0;
    while closed < n {
        spy.wait_line(|l| l.contains(" closed "));
        closed += 1;
    }
    server.join().unwrap();
    let mut index = log_index(dir.path(), taddr);
    for k in 1..=n as u64 {
        let (hex, up, down) = index.remove(&k).unwrap_or_else(|| panic!("logs of {k}"));
        let up = std::fs::read(up).unwrap();
        assert_eq!(up.len(), 16, "connection {k}");
        assert_eq!(up, std::fs::read(down).unwrap(), "connection {k}");
        let s = tcpspy::log::hexdump::streams(&std::fs::read_to_string(hex).unwrap()).unwrap();
        assert_eq!(s[0], up);
    }
    assert_eq!(spy.stop(), 0);
}

/// A single-threaded echo server for `n` connections, so the test holds thousands of them.
fn mio_echo(l: std::net::TcpListener, n: usize) {
    use mio::{Events, Interest, Poll, Token};
    l.set_nonblocking(true).unwrap();
    let mut l = mio::net::TcpListener::from_std(l);
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut l, Token(usize::MAX), Interest::READABLE)
        .unwrap();
    let mut conns: Vec<Option<mio::net::TcpStream>> = Vec::new();
    let mut done = 0;
    let mut events = Events::with_capacity(1024);
    let deadline = Instant::now() + Duration::from_secs(300);
    while done < n {
        assert!(Instant::now() < deadline, "echo server timed out");
        poll.poll(&mut events, Some(Duration::from_secs(1)))
            .unwrap();
        for ev in events.iter() {
            if ev.token() == Token(usize::MAX) {
                while let Ok((mut s, _)) = l.accept() {
                    poll.registry()
                        .register(&mut s, Token(conns.len()), Interest::READABLE)
                        .unwrap();
                    conns.push(Some(s));
                }
                continue;
            }
            let i = ev.token().0;
            let Some(s) = conns[i].as_mut() else { continue };
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => {
                        let _ = s.shutdown(Shutdown::Write);
                        conns[i] = None;
                        done += 1;
                        break;
                    }
                    // Echoes are 8 bytes: the socket buffer always has room.
                    Ok(k) => s.write_all(&buf[..k]).unwrap(),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }
}

#[test]
fn a_thousand_connections_with_few_open_files() {
    many_connections(1000, "16");
}

/// The full count for this machine (hard descriptor limit 20000): run with
/// `cargo test --release -- --ignored nine_thousand`.
#[test]
#[ignore]
fn nine_thousand_connections() {
    many_connections(9000, "1024");
}

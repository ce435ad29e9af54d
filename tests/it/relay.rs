//! The relay through the real binary: data both ways, half-closes, failures, many connections,
//! and the logs that record them.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::mpsc;
use std::thread;

use crate::util::*;

/// Several MiB both ways at once; the peers' checksums and all three logs must match.
#[test]
fn random_data_both_ways_at_once() {
    let (dir, target, taddr, mut spy) = logging_spy(&[]);
    let up = data(1, 6 << 20);
    let down = data(2, 5 << 20);

    let (got_up, got_down) = both_ways(spy.addr, target, &up, &down);
    assert_eq!(sha(&got_up), sha(&up), "client to server");
    assert_eq!(sha(&got_down), sha(&down), "server to client");
    let line = spy.wait_closed(1);
    assert!(
        line.contains(&format!(
            "client sent {} bytes, server sent {} bytes",
            up.len(),
            down.len()
        )),
        "{line}"
    );
    assert_logs(dir.path(), 1, taddr, &up, &down);
}

/// The client shuts down writing, then reads a 1 MiB reply to the end.
#[test]
fn half_close_by_client() {
    let (dir, target, taddr, mut spy) = logging_spy(&[]);
    let request = b"GET /big please\n".to_vec();
    let reply = data(3, 1 << 20);

    let reply2 = reply.clone();
    let server = thread::spawn(move || {
        let mut s = accept(&target);
        let got = read_to_end(&mut s).unwrap(); // the client's FIN must arrive
        s.write_all(&reply2).unwrap();
        got
    });
    let mut c = connect(spy.addr);
    c.write_all(&request).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let got = read_to_end(&mut c).unwrap();
    assert_eq!(server.join().unwrap(), request);
    assert_eq!(sha(&got), sha(&reply));
    let line = spy.wait_closed(1);
    assert!(line.contains("client EOF, then server EOF"), "{line}");
    assert_logs(dir.path(), 1, taddr, &request, &reply);
}

/// The server sends and shuts down writing, then reads what the client sends after.
#[test]
fn half_close_by_server() {
    let (dir, target, taddr, mut spy) = logging_spy(&[]);
    let banner = data(4, 300_000);
    let after = data(5, 700_000);

    let banner2 = banner.clone();
    let server = thread::spawn(move || {
        let mut s = accept(&target);
        s.write_all(&banner2).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        read_to_end(&mut s).unwrap()
    });
    let mut c = connect(spy.addr);
    let got = read_to_end(&mut c).unwrap(); // EOF from the server, passed on
    assert_eq!(sha(&got), sha(&banner));
    c.write_all(&after).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(sha(&server.join().unwrap()), sha(&after));
    let line = spy.wait_closed(1);
    assert!(line.contains("server EOF, then client EOF"), "{line}");
    assert_logs(dir.path(), 1, taddr, &after, &banner);
}

/// A target that refuses: the client is closed at once, the failure is on stderr and in the
/// hex dump, and tcpspy goes on serving.
#[test]
fn target_down() {
    let dir = tempfile::tempdir().unwrap();
    let held = held_port(); // nobody listens there, and nobody else gets the port
    let taddr = held.addr;
    let mut spy = Spy::start(&["-t", &taddr.to_string(), "-d", dir.path().to_str().unwrap()]);
    for n in 1..=2 {
        // The reset can come so fast that connect() itself reports it.
        match TcpStream::connect_timeout(&spy.addr, WAIT) {
            Ok(mut c) => {
                timeouts(&c);
                let mut buf = [0u8; 16];
                match c.read(&mut buf) {
                    Ok(0) => {}
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
                    other => panic!("expected the client to be closed, got {other:?}"),
                }
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        }
        let line = spy.wait_closed(n);
        assert!(line.contains("server connect failed"), "{line}");
        assert!(line.contains("refused"), "{line}");
        let (hex, _, _) = log_files(dir.path(), n, taddr);
        let text = std::fs::read_to_string(hex).unwrap();
        assert!(
            text.contains(&format!("Unable to connect to {taddr}: connect failed")),
            "{text}"
        );
        assert!(text.contains("Finished at "), "{text}");
    }
    assert!(spy.child.try_wait().unwrap().is_none(), "tcpspy still runs");
}

/// The target resets mid-stream: the client sees the reset promptly and the logs keep what
/// passed before it.
#[test]
fn target_resets_mid_stream() {
    let (dir, target, taddr, mut spy) = logging_spy(&[]);
    let hello = b"hello, server".to_vec();
    let partial = data(6, 100_000);

    let partial2 = partial.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let mut s = accept(&target);
        let mut buf = vec![0u8; 13];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&partial2).unwrap();
        // Wait until the client has the partial reply, then reset.
        ready_rx.recv_timeout(WAIT).unwrap();
        socket2::SockRef::from(&s)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        drop(s);
    });
    let mut c = connect(spy.addr);
    c.write_all(&hello).unwrap();
    let mut got = vec![0u8; partial.len()];
    c.read_exact(&mut got).unwrap();
    assert_eq!(got, partial);
    ready_tx.send(()).unwrap();
    server.join().unwrap();
    let mut buf = [0u8; 16];
    let e = c.read(&mut buf).expect_err("the reset reaches the client");
    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
    let line = spy.wait_closed(1);
    assert!(
        line.contains("server reset, then client reset by tcpspy"),
        "{line}"
    );
    let (hex, bup, bdown) = log_files(dir.path(), 1, taddr);
    assert_eq!(std::fs::read(bup).unwrap(), hello);
    assert_eq!(std::fs::read(bdown).unwrap(), partial);
    let text = std::fs::read_to_string(hex).unwrap();
    assert!(
        text.contains(&format!("Disconnected from {taddr} (server): reset")),
        "{text}"
    );
}

/// 200 connections open at once, each with its own data, all relayed and logged.
#[test]
fn two_hundred_concurrent_connections() {
    const N: usize = 200;
    let (dir, target, taddr, mut spy) = logging_spy(&[]);

    // An echo server that answers each connection with its bytes reversed in order of arrival.
    let server = thread::spawn(move || {
        let mut handles = Vec::new();
        for _ in 0..N {
            let mut s = accept(&target);
            handles.push(thread::spawn(move || {
                let got = read_to_end(&mut s).unwrap();
                s.write_all(&got).unwrap();
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
    });
    // Open all connections first, so they are all held at once.
    let clients: Vec<TcpStream> = (0..N).map(|_| connect(spy.addr)).collect();
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            thread::spawn(move || {
                let msg = data(100 + i as u64, 1000 + i * 37);
                c.write_all(&msg).unwrap();
                c.shutdown(Shutdown::Write).unwrap();
                let got = read_to_end(&mut c).unwrap();
                assert_eq!(got, msg, "connection {i}");
                msg
            })
        })
        .collect();
    let sent: Vec<Vec<u8>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    server.join().unwrap();
    let mut closed = std::collections::HashSet::new();
    while closed.len() < N {
        let l = spy.wait_line(|l| l.contains(" closed "));
        assert!(l.contains("client EOF") && l.contains("server EOF"), "{l}");
        closed.insert(l[1..5].to_string());
    }
    // Logs are per connection number; which client got which number depends on accept order,
    // so match by content.
    let mut index = log_index(dir.path(), taddr);
    let mut logged: Vec<Vec<u8>> = (1..=N as u64)
        .map(|n| {
            let (_, up, down) = index.remove(&n).unwrap();
            let up = std::fs::read(up).unwrap();
            assert_eq!(up, std::fs::read(down).unwrap(), "echo of connection {n}");
            up
        })
        .collect();
    let mut sent = sent;
    logged.sort();
    sent.sort();
    assert!(logged == sent, "the logs hold every connection's bytes");
}

/// With a tiny log queue and a logger that cannot keep up, reading pauses instead of queueing:
/// nothing is missing from the logs and memory stays small.
///
/// The logger is held up for real: the live view (`-x`) goes to a pipe that the test leaves
/// unread until tcpspy has stopped reading for the log. That is seen from outside: the logging
/// thread sleeps in a write to the full pipe, the reactor sleeps too while the server's bytes
/// wait for it (the server's socket finds tcpspy's window closed), and the client, reading all
/// along, has been given all that tcpspy sent it (so tcpspy is not waiting for the client).
#[test]
fn tiny_log_queue_loses_nothing_and_bounds_memory() {
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
    let view = spy.child.stdout.take().unwrap();
    let down = data(7, 32 << 20);
    let down2 = down.clone();
    let (sock_tx, sock_rx) = mpsc::channel();
    let server = thread::spawn(move || {
        let s = accept(&target);
        sock_tx.send(s.try_clone().unwrap()).unwrap();
        send_then_shutdown(s, down2).join().unwrap().unwrap();
    });
    let mut c = connect(spy.addr);
    c.shutdown(Shutdown::Write).unwrap();
    let (client, to_client) = (c.local_addr().unwrap(), spy.addr);
    let s = sock_rx.recv_timeout(WAIT).unwrap();
    let (server_end, from_server) = (s.local_addr().unwrap(), s.peer_addr().unwrap());
    drop(s);
    let reader = thread::spawn(move || read_to_end(&mut c).unwrap());
    // Sampled in this order, so that a relay merely slower than the server cannot pass for
    // one that stopped: the server's bytes wait for tcpspy before and after every thread of
    // tcpspy is seen asleep, the logging thread waiting on the full pipe.
    let pid = spy.pid();
    wait_until("tcpspy stopped reading for the log", || {
        peer_window_closed(server_end, from_server)
            && tcp_row(to_client, client).is_some_and(|r| r.tx_queue == 0)
            && {
                let t = threads(pid);
                t.iter().all(|(_, state, _)| *state == 'S')
                    && t.iter().any(|(name, _, wchan)| {
                        // Blocked on the pipe: in write(2), or polling for room to write.
                        name == "tcpspy-log"
                            && (wchan.ends_with("pipe_write") || wchan.starts_with("poll_schedule"))
                    })
            }
            && peer_window_closed(server_end, from_server)
    });
    // Now the view is read, and everything flows.
    let shown = thread::spawn(move || {
        let mut view = view;
        std::io::copy(&mut view, &mut std::io::sink()).unwrap()
    });
    let got = reader.join().unwrap();
    server.join().unwrap();
    assert_eq!(sha(&got), sha(&down));
    spy.wait_closed(1);
    let peak_kib = spy.status_kib("VmHWM");
    assert_eq!(spy.stop(), 0);
    let summary = spy
        .seen
        .iter()
        .find(|l| l.contains("tcpspy: stopped"))
        .cloned()
        .unwrap_or_default();
    let stalls: u64 = summary
        .split("reads paused for the log: ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no stall count in {summary:?}"));
    assert!(
        stalls > 0,
        "the queue filled up and reading paused: {summary}"
    );
    // 32 MiB went through; had the queue not held the reader back it would all be in memory.
    eprintln!("peak RSS {peak_kib} KiB, {stalls} stalls");
    assert!(peak_kib < 16 * 1024, "peak RSS {peak_kib} KiB");
    assert_logs(dir.path(), 1, taddr, b"", &down);
    // A hex dump line shows 16 bytes.
    let shown = shown.join().unwrap();
    assert!(shown > 4 * down.len() as u64, "{shown} bytes of view");
}

/// The pipes in `pid`'s descriptor table, by name (`pipe:[123]`), with the bytes each holds.
/// The count comes through /proc/PID/fd/N opened as one more reader of the same pipe: FIONREAD
/// tells what it holds and nothing is taken from it.
fn pipes(pid: i32) -> HashMap<String, usize> {
    let mut found = HashMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return found;
    };
    for e in dir.flatten() {
        let Ok(link) = std::fs::read_link(e.path()) else {
            continue; // closed meanwhile
        };
        let name = link.to_string_lossy().into_owned();
        if !name.starts_with("pipe:[") || found.contains_key(&name) {
            continue;
        }
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(e.path());
        if let Ok(reader) = reader {
            found.insert(name, unread_bytes(&reader));
        }
    }
    found
}

/// Nothing logged: bulk bytes are spliced from socket to socket through a pipe, or with
/// --no-splice copied through a buffer; both ways at once, with a half-close, every byte
/// arrives. Seen from outside: while the client does not read, the bytes tcpspy cannot pass on
/// sit in a pipe of its descriptor table; with --no-splice, at a moment when tcpspy holds bytes
/// it cannot pass on, and all along the download, it has no pipe at all.
///
/// What else tcpspy holds is no pipe (on this machine: the poll is an epoll, mio's waker an
/// eventfd, the signal pipe of signal-hook-mio a socket pair); stderr is a pipe to the test,
/// and a descriptor inherited from whoever ran the tests may be one: pipes present before the
/// first connection do not count.
#[test]
fn unlogged_relay_with_and_without_splice() {
    for splice in [true, false] {
        let target = listener();
        let taddr = target.local_addr().unwrap();
        let t = taddr.to_string();
        let mut args = vec!["-t", &t, "--log", "none"];
        if !splice {
            args.push("--no-splice");
        }
        let mut spy = Spy::start(&args);
        let before = pipes(spy.pid());
        let new_pipes = |pid| {
            let mut now = pipes(pid);
            now.retain(|name, _| !before.contains_key(name));
            now
        };
        let up = data(31, 24 << 20);
        let down = data(32, 40 << 20);

        let (sock_tx, sock_rx) = mpsc::channel();
        let down2 = down.clone();
        let server = thread::spawn(move || {
            let mut s = accept(&target);
            sock_tx.send(s.try_clone().unwrap()).unwrap();
            let writer = send_then_shutdown(s.try_clone().unwrap(), down2);
            let got = read_to_end(&mut s).unwrap();
            writer.join().unwrap().unwrap();
            got
        });
        let mut c = connect(spy.addr);
        let s = sock_rx.recv_timeout(WAIT).unwrap();
        let uploader = send_then_shutdown(c.try_clone().unwrap(), up.clone());
        // The client does not read yet: the download fills the buffers up to tcpspy, and
        // tcpspy holds what it read last until the client drains.
        if splice {
            wait_until("a pipe of tcpspy's holding bytes of the download", || {
                new_pipes(spy.pid()).values().any(|&n| n > 0)
            });
        } else {
            wait_until("tcpspy blocked with bytes for the client", || {
                blocked_at_tcpspy(&s, &c)
            });
        }
        // Then the download, read in pieces; without splice, no pipe shows up at any of them.
        let mut got_down = Vec::with_capacity(down.len());
        let mut buf = vec![0u8; 1 << 20];
        loop {
            if !splice {
                let p = new_pipes(spy.pid());
                assert!(
                    p.is_empty(),
                    "--no-splice, and pipes after {} bytes: {p:?}",
                    got_down.len()
                );
            }
            let n = c.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got_down.extend_from_slice(&buf[..n]);
        }
        uploader.join().unwrap().unwrap();
        let got_up = server.join().unwrap();
        assert_eq!(sha(&got_up), sha(&up), "splice {splice}");
        assert_eq!(sha(&got_down), sha(&down), "splice {splice}");
        let line = spy.wait_closed(1);
        assert!(
            line.contains(&format!(
                "client sent {} bytes, server sent {} bytes",
                up.len(),
                down.len()
            )),
            "{line}"
        );
    }
}

/// A client that half-closes and then resets while the server is silent: tcpspy resets the
/// server at once instead of holding it until the server writes.
#[test]
fn reset_after_fin_reaches_the_other_side() {
    let target = listener();
    let taddr = target.local_addr().unwrap();
    let mut spy = Spy::start(&["-t", &taddr.to_string(), "--log", "none"]);
    let (fin_tx, fin_rx) = std::sync::mpsc::channel();
    let server = thread::spawn(move || {
        let mut s = accept(&target);
        // The request and its FIN.
        assert_eq!(read_to_end(&mut s).unwrap(), b"request");
        fin_tx.send(()).unwrap();
        // Then silence from the server, until the reset comes through: with no events asked
        // for, poll wakes only for an error or a hang-up, not for the FIN already read.
        let mut pfd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&s),
            events: 0,
            revents: 0,
        };
        // SAFETY: poll on one descriptor we own.
        let n = unsafe { libc::poll(&mut pfd, 1, WAIT.as_millis() as i32) };
        assert_eq!(n, 1, "no reset within {WAIT:?}");
        // A reset after the FIN shows as EPIPE on the socket (Linux: CLOSE_WAIT + RST).
        s.take_error().unwrap().map(|e| e.kind())
    });
    let mut c = connect(spy.addr);
    c.write_all(b"request").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    fin_rx.recv_timeout(WAIT).unwrap();
    socket2::SockRef::from(&c)
        .set_linger(Some(std::time::Duration::ZERO))
        .unwrap();
    drop(c);
    let got = server.join().unwrap();
    assert_eq!(
        got,
        Some(ErrorKind::BrokenPipe),
        "the server's socket was reset"
    );
    let line = spy.wait_closed(1);
    assert!(
        line.contains("client reset, then server reset by tcpspy"),
        "{line}"
    );
}

//! Backpressure from the log: when the logging thread cannot keep up (here: a reader of the
//! live view that stops reading), the queue fills, and tcpspy stops reading *and accepting*
//! until the logger catches up. Nothing is dropped and memory does not grow with the clients
//! that keep coming: they wait in the kernel's backlog.

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::util::*;

/// Clients that connect and close at once, while stdout's reader has stopped reading: each
/// connection is a few events for a queue that is full, so tcpspy must stop taking them. The
/// backlog fills, and the next client's connect times out (the kernel drops its SYN); had
/// tcpspy kept accepting, every connect would succeed and the queue would grow without bound.
/// Once stdout is read again, every client that got in is in the live view.
#[test]
fn a_full_log_queue_stops_accepting_until_it_drains() {
    let target = listener();
    let taddr = target.local_addr().unwrap();
    thread::spawn(move || {
        for s in target.incoming() {
            drop(s);
        }
    });
    let mut cmd = Command::new(bin());
    cmd.args(["--listen", "127.0.0.1:0", "-t", &taddr.to_string()])
        .args(["--log", "none", "-x", "--log-queue", "64K"]);
    let mut spy = Spy::spawn_with(cmd, std::process::Stdio::piped());
    let mut stdout = spy.child.stdout.take().unwrap();
    // The smallest pipe the kernel makes (a page): what the logger writes into it before it
    // blocks frees room in the queue, and each line it frees lets one more client in.
    // SAFETY: fcntl on a descriptor we own; a failure leaves the default size, and the bound
    // below counts a page of lines either way only if the resize worked, so check it.
    let pipe_size = unsafe {
        libc::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&stdout),
            libc::F_SETPIPE_SZ,
            4096,
        )
    };
    assert_eq!(pipe_size, 4096, "F_SETPIPE_SZ");
    let addr = spy.addr;
    // Far more clients than the backlog (4096) holds.
    let clients = thread::spawn(move || {
        let mut connected = 0u64;
        for _ in 0..20_000 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(c) => {
                    connected += 1;
                    drop(c);
                }
                Err(e) => return (connected, Some(e)),
            }
        }
        (connected, None)
    });
    let (connected, refused) = clients.join().unwrap();
    let e = refused
        .unwrap_or_else(|| panic!("all {connected} clients got in while the log queue was full"));
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
    assert!(connected >= 100, "only {connected} clients got in");
    // In: what the backlog holds, plus what tcpspy accepted before the queue was full (each
    // connection puts at least one event of at least 64 bytes in the 64 KiB queue), plus one
    // per open line in the page of pipe (at least 40 bytes each). Without the pause it takes
    // clients up to --max-connections (about 10000 here).
    let somaxconn: u64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096);
    // (Linux queues one more than the backlog; a few more for good measure.)
    let most = somaxconn.min(4096) + 16 + (64 << 10) / 64 + 4096 / 40;
    assert!(
        connected <= most,
        "{connected} clients got in while the log queue was full (at most {most})"
    );
    // Read the view again: every client that got in is relayed and logged.
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    spy.wait_count(connected as usize, |l| l.contains(" closed "));
    assert_eq!(spy.stop(), 0);
    let view = reader.join().unwrap();
    let opened = view.lines().filter(|l| l.contains(" open ")).count();
    let closed = view.lines().filter(|l| l.contains(" closed ")).count();
    assert_eq!((opened, closed), (connected as usize, connected as usize));
}

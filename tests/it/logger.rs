//! The logging thread when things go wrong: an output that panics is turned off while the
//! others keep writing, a logging thread that fails stops tcpspy, and a stdout reader that
//! stops reading cannot hold up the stop. In each case the exit fails and says why.
//!
//! Nothing a peer or the disk does makes an output panic, so the panics are made with the
//! test-only hook `tcpspy::log::TEST_PANIC_VAR`.

use std::io::{Read, Write};
use std::process::Command;
use std::time::Instant;

use tcpspy::log::TEST_PANIC_VAR;
use tcpspy::log::stdout::GRACE;

use crate::util::*;

/// tcpspy logging hex and binary into a new directory, with the panic hook set to `what`.
fn panicking_spy(what: &str, extra: &[&str]) -> (tempfile::TempDir, std::net::TcpListener, Spy) {
    let dir = tempfile::tempdir().unwrap();
    let target = listener();
    let mut cmd = Command::new(bin());
    cmd.env(TEST_PANIC_VAR, what)
        .args(["--listen", "127.0.0.1:0", "-t"])
        .arg(target.local_addr().unwrap().to_string())
        .arg("-d")
        .arg(dir.path())
        .args(extra);
    (dir, target, Spy::spawn(cmd))
}

/// The hex dump output panics at its first chunk: it is turned off, the binary logs and the
/// index still get the connection, tcpspy stops by itself and exits 1 naming the output and
/// the panic.
#[test]
fn a_panicking_output_is_turned_off_and_the_exit_fails() {
    let (dir, target, mut spy) = panicking_spy("hex", &[]);
    let taddr = target.local_addr().unwrap();
    let mut c = connect(spy.addr);
    let mut s = accept(&target);
    c.write_all(b"hello").unwrap();
    let mut got = [0u8; 5];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello", "the relay went on");
    let panic = format!("panic: test-only panic of the hex dumps ({TEST_PANIC_VAR})");
    let line = spy.wait_line(|l| l.starts_with("tcpspy: the hex dumps failed"));
    assert_eq!(
        line,
        format!(
            "tcpspy: the hex dumps failed ({panic}); nothing more is written to it (the other \
             logs go on); stopping"
        )
    );
    // Nobody signals it: the panic stopped it.
    assert_eq!(spy.wait_exit(), 1, "{:#?}", spy.seen);
    assert_eq!(
        spy.seen.last().map(String::as_str),
        Some(
            format!("tcpspy: error: not everything was logged: the hex dumps failed ({panic})")
                .as_str()
        )
    );
    assert!(
        spy.seen.iter().any(|l| l.starts_with("#0001 closed ")),
        "{:#?}",
        spy.seen
    );
    let (hex, up, down) = log_files(dir.path(), 1, taddr);
    assert_eq!(
        std::fs::read(up).unwrap(),
        b"hello",
        "the binary log goes on"
    );
    assert_eq!(std::fs::read(down).unwrap(), b"");
    let hex = std::fs::read_to_string(hex).unwrap();
    assert!(
        hex.starts_with("Connected to ") && !hex.contains("Received"),
        "the hex dump stops where it failed: {hex}"
    );
    let index = std::fs::read_to_string(dir.path().join("connections.jsonl")).unwrap();
    assert!(
        index.contains("\"bytes_client_to_server\":5"),
        "the index goes on: {index}"
    );
}

/// The logging thread itself fails: the queue stops holding the reactor, tcpspy stops by
/// itself and exits 1 saying so, with the count of events that were never logged.
#[test]
fn a_failing_logging_thread_stops_tcpspy_and_the_exit_fails() {
    let (_dir, target, mut spy) = panicking_spy("logger", &["--log-queue", "64K"]);
    let mut c = connect(spy.addr);
    let mut s = accept(&target);
    c.write_all(b"hello").unwrap();
    let mut got = [0u8; 5];
    s.read_exact(&mut got).unwrap();
    let panic = format!("panic: test-only panic of the logging thread ({TEST_PANIC_VAR}=logger)");
    let line = spy.wait_line(|l| l.starts_with("tcpspy: the logging thread failed"));
    assert_eq!(
        line,
        format!("tcpspy: the logging thread failed ({panic}); nothing more is logged; stopping")
    );
    assert_eq!(spy.wait_exit(), 1, "{:#?}", spy.seen);
    let last = spy.seen.last().cloned().unwrap_or_default();
    let head =
        format!("tcpspy: error: not everything was logged: the logging thread failed ({panic}); ");
    let dropped: u64 = last
        .strip_prefix(&head)
        .and_then(|r| r.strip_suffix(" events came after it and were not logged"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{last}"));
    assert!(dropped >= 1, "at least the close and the stop: {last}");
    assert!(
        spy.seen.iter().any(|l| l.starts_with("tcpspy: stopped; ")),
        "{:#?}",
        spy.seen
    );
}

/// One exchange through `spy`, complete before this returns: the client sends `up`, the
/// server `down`, both close.
fn relay_one(spy: &Spy, target: std::net::TcpListener, up: &[u8], down: &[u8]) {
    let (got_up, got_down) = both_ways(spy.addr, target, up, down);
    assert!(got_up == up && got_down == down, "relayed bytes differ");
}

/// SIGTERM with a stdout reader that stopped reading: tcpspy waits the grace period for it,
/// then gives up on stdout, writes every file in full, says what stdout lost and exits 1.
/// (Before, it waited for the reader for ever: only a second signal ended it.)
fn stalled_stdout_reader(extra: &[&str], lost_line: &str) {
    let dir = tempfile::tempdir().unwrap();
    let target = listener();
    let taddr = target.local_addr().unwrap();
    let mut args = vec![
        "-t".to_string(),
        taddr.to_string(),
        "-d".to_string(),
        dir.path().to_str().unwrap().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut spy = Spy::start_piped(&args);
    // Held open and never read until tcpspy has exited: a reader that stopped reading.
    let mut stalled = spy.child.stdout.take().unwrap();
    let up = data(41, 1 << 20);
    let down = data(42, 100_000);
    relay_one(&spy, target, &up, &down);
    let signalled = Instant::now();
    spy.signal(libc::SIGTERM);
    assert_eq!(spy.wait_exit(), 1, "{:#?}", spy.seen);
    assert!(
        signalled.elapsed() >= GRACE,
        "the reader had its grace period"
    );
    let lost = spy
        .seen
        .iter()
        .find(|l| l.starts_with(lost_line))
        .cloned()
        .unwrap_or_else(|| panic!("no {lost_line:?} in {:#?}", spy.seen));
    let n: u64 = lost[lost_line.len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{lost}"));
    assert!(n >= 1, "{lost}");
    assert!(
        lost.contains("its reader stopped reading (it had 2s after the relay stopped)"),
        "{lost}"
    );
    let last = spy.seen.last().cloned().unwrap_or_default();
    assert_eq!(
        last,
        format!(
            "tcpspy: error: not everything was logged: {}",
            &lost["tcpspy: ".len()..]
        )
    );
    // Files get everything.
    assert_logs(dir.path(), 1, taddr, &up, &down);
    let mut shown = Vec::new();
    stalled.read_to_end(&mut shown).unwrap();
    assert!(
        !shown.is_empty() && shown.len() < 4 << 20,
        "{}",
        shown.len()
    );
}

#[test]
fn a_stalled_live_view_reader_does_not_hold_up_the_stop() {
    stalled_stdout_reader(&["-x"], "tcpspy: the live view on stdout lost ");
}

#[test]
fn a_stalled_capture_reader_does_not_hold_up_the_stop() {
    stalled_stdout_reader(&["--pcap", "-"], "tcpspy: the capture on stdout lost ");
}

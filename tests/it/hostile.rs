//! Everything a peer sends is data: hostile bytes from both sides (terminal escapes, NUL, BEL,
//! path pieces, format strings, CR/LF with forged log lines, invalid UTF-8, a very long line)
//! must reach the other side and the logs unchanged, and nowhere else: not stderr, not a file
//! name, not a file outside the log directory.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::thread;

use crate::util::*;

/// Markers placed in the payloads: none may show on stderr.
const MARKERS: [&str; 6] = [
    "FORGED",
    "passwd",
    "owned title",
    "%n",
    "{}",
    "example.invalid",
];

/// Bytes a hostile peer sends, tagged so the two sides' payloads differ.
fn hostile(tag: &str) -> Vec<u8> {
    let pieces: [&[u8]; 11] = [
        b"\x1b[2J\x1b[H",          // clear screen, cursor home
        b"\x1b]0;owned title\x07", // OSC window title, BEL
        b"\x1b]8;;http://example.invalid/\x1b\\link\x1b]8;;\x1b\\", // OSC 8 link, ST
        b"\x1b[31;1mred\x1b[0m\x1bP+q544e\x1b\\", // SGR, DCS
        b"\x9b2J\xc2\x9b2J",       // 8-bit CSI, raw and UTF-8
        b"\x07\x07\x00\x00\x08\x7f", // BEL, NUL, BS, DEL
        b"/../../../../etc/passwd\0/tmp/x",
        b"%s%s%n%x%p %1$s",
        b"{} {0} {:?} {name} }}{{",
        b"\r\n#0099 closed FORGED line\r\n\rtcpspy: stopped FORGED\n",
        b"\xff\xfe\xc0\x80\xed\xa0\x80\x80\xe2\x82", // not UTF-8
    ];
    let mut v = Vec::new();
    for p in pieces {
        v.extend_from_slice(p);
        v.extend_from_slice(tag.as_bytes());
    }
    // A 100 KiB line with an escape every 97 bytes.
    v.extend((0..100_000u32).map(|i| {
        if i % 97 == 0 {
            0x1b
        } else {
            b'A' + (i % 26) as u8
        }
    }));
    v.push(b'\n');
    v
}

/// Printable ASCII and newlines only: nothing a terminal would act on.
fn assert_inert(what: &str, bytes: &[u8]) {
    if let Some(i) = bytes
        .iter()
        .position(|b| !(b' '..=b'~').contains(b) && *b != b'\n')
    {
        let from = i.saturating_sub(60);
        panic!(
            "{what}: byte {:#04x} at {i}, in {:?}",
            bytes[i],
            String::from_utf8_lossy(&bytes[from..(i + 20).min(bytes.len())])
        );
    }
}

/// `log-<stamp>-<NNNN>-127.0.0.1-<port>-127.0.0.1-<port>.log` (the hex dump) or
/// `log-binary-<stamp>-<NNNN>-127.0.0.1-<port>.log`, stamp `YYYY.MM.DD-HH.MM.SS`.
fn is_log_name(name: &str) -> bool {
    let (rest, addrs) = if let Some(r) = name.strip_prefix("log-binary-") {
        (r, 1)
    } else if let Some(r) = name.strip_prefix("log-") {
        (r, 2)
    } else {
        return false;
    };
    let Some(rest) = rest.strip_suffix(".log") else {
        return false;
    };
    let Some((stamp, rest)) = rest.split_at_checked(19) else {
        return false;
    };
    let stamp_ok = stamp.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 | 13 | 16 => b == b'.',
        10 => b == b'-',
        _ => b.is_ascii_digit(),
    });
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = rest.split('-').collect();
    stamp_ok
        && parts.len() == 2 + 2 * addrs
        && parts[0].is_empty()
        && parts[1].len() >= 4
        && digits(parts[1])
        && parts[2..]
            .chunks(2)
            .all(|a| a[0] == "127.0.0.1" && digits(a[1]) && a[1].parse::<u16>().is_ok())
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn log_names_are_recognised() {
    assert!(is_log_name(
        "log-2026.11.29-10.23.40-0001-127.0.0.1-48428-127.0.0.1-8000.log"
    ));
    assert!(is_log_name(
        "log-binary-2026.11.29-10.23.40-12345-127.0.0.1-8000.log"
    ));
    for bad in [
        "log-binary-2026.11.29-10.23.40-0001-127.0.0.1-8000-127.0.0.1-1.log",
        "log-2026.11.29-10.23.40-0001-127.0.0.1-48428.log",
        "log-2026.11.29-10.23.40-001-127.0.0.1-1-127.0.0.1-2.log",
        "log-2026.11.29-10.23.40-0001-127.0.0.1-1-127.0.0.1-2.log.1",
        "log-2026.11.29-10.23.40-0001-..-1-127.0.0.1-2.log",
        "log-binary-2026.11.29-10.23.40-0001-127.0.0.1-99999.log",
        "x",
    ] {
        assert!(!is_log_name(bad), "{bad}");
    }
}

#[test]
fn hostile_bytes_stay_data() {
    let top = tempfile::tempdir().unwrap();
    let logs = top.path().join("logs");
    let cwd = tempfile::tempdir().unwrap();
    let target = listener();
    let taddr: SocketAddr = target.local_addr().unwrap();
    let mut cmd = Command::new(bin());
    cmd.current_dir(cwd.path()).args([
        "--listen",
        "127.0.0.1:0",
        "-t",
        &taddr.to_string(),
        "-d",
        logs.to_str().unwrap(),
    ]);
    let mut spy = Spy::spawn(cmd);

    // 1: both sides send hostile bytes and half-close.
    let (up, down) = (hostile("client"), hostile("server"));
    let down2 = down.clone();
    let server = thread::spawn(move || {
        let mut s = accept(&target);
        let writer = send_then_shutdown(s.try_clone().unwrap(), down2);
        let got = read_to_end(&mut s).unwrap();
        writer.join().unwrap().unwrap();
        (got, target)
    });
    let mut c = connect(spy.addr);
    let writer = send_then_shutdown(c.try_clone().unwrap(), up.clone());
    let got_down = read_to_end(&mut c).unwrap();
    writer.join().unwrap().unwrap();
    let (got_up, target) = server.join().unwrap();
    assert_eq!(sha(&got_up), sha(&up), "client to server");
    assert_eq!(sha(&got_down), sha(&down), "server to client");
    spy.wait_closed(1);

    // 2: hostile bytes both ways, then the server resets.
    let (up2, down2) = (hostile("again"), hostile("reset"));
    let (reset_tx, reset_rx) = mpsc::channel::<()>();
    let (n_up, down3) = (up2.len(), down2.clone());
    let server = thread::spawn(move || {
        let mut s = accept(&target);
        let mut got = vec![0u8; n_up];
        s.read_exact(&mut got).unwrap();
        s.write_all(&down3).unwrap();
        reset_rx.recv_timeout(WAIT).unwrap();
        socket2::SockRef::from(&s)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        got
    });
    let mut c = connect(spy.addr);
    c.write_all(&up2).unwrap();
    let mut got = vec![0u8; down2.len()];
    c.read_exact(&mut got).unwrap();
    assert_eq!(sha(&got), sha(&down2));
    reset_tx.send(()).unwrap();
    assert_eq!(sha(&server.join().unwrap()), sha(&up2));
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest); // a reset or an EOF: either ends it
    assert!(rest.is_empty(), "nothing after the reset");
    let line = spy.wait_closed(2);
    assert!(line.contains("server reset"), "{line}");
    spy.stop();

    // stderr: tcpspy's own lines, and nothing of the payloads.
    let err = spy.stderr.lock().unwrap().clone();
    let text = String::from_utf8_lossy(&err);
    assert!(
        text.contains("#0001 closed ") && text.contains("#0002 closed "),
        "{text}"
    );
    assert_inert("stderr", &err);
    for m in MARKERS {
        assert!(!text.contains(m), "stderr shows {m:?}: {text}");
    }
    assert_eq!(
        text.lines()
            .filter(|l| l.contains(" closed ") && l.starts_with('#'))
            .count(),
        2,
        "a forged closed line: {text}"
    );

    // Files: three per connection in the log directory, named by the pattern, nowhere else.
    assert_eq!(
        names(top.path()),
        ["logs"],
        "files beside the log directory"
    );
    assert!(
        names(cwd.path()).is_empty(),
        "files in tcpspy's working directory"
    );
    let mut files = names(&logs);
    // The connection index holds addresses and numbers only: no byte of the payload.
    let index = std::fs::read(logs.join("connections.jsonl")).unwrap();
    assert_eq!(index.iter().filter(|b| **b == b'\n').count(), 2);
    assert!(
        index
            .iter()
            .all(|b| *b == b'\n' || (0x20..0x7f).contains(b)),
        "index bytes"
    );
    files.retain(|f| f != "connections.jsonl");
    assert_eq!(files.len(), 6, "{files:?}");
    for f in &files {
        assert!(is_log_name(f), "unexpected file name {f:?}");
        let meta = std::fs::symlink_metadata(logs.join(f)).unwrap();
        assert!(meta.is_file(), "{f:?} is not a plain file");
    }

    // The logs hold exactly the bytes, and the hex dumps stay inert text.
    assert_logs(&logs, 1, taddr, &up, &down);
    assert_logs(&logs, 2, taddr, &up2, &down2);
    for n in [1, 2] {
        let (hex, _, _) = log_files(&logs, n, taddr);
        assert_inert(&hex.display().to_string(), &std::fs::read(&hex).unwrap());
    }
}

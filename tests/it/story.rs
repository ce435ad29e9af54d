//! The story of a connection: what its hex dump tells beyond the bytes, the connection index,
//! and the summary on SIGUSR1 and at exit.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::util::*;

/// Connect time, first byte each way, a long pause with its cause, how each side closed, and
/// the kernel's TCP figures for both sockets.
#[test]
fn hex_dump_tells_the_story() {
    let (dir, target, taddr, mut spy) = logging_spy(&[]);
    let upload = data(21, 16 << 20);
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let mut s = accept(&target);
        s.write_all(b"220 ready\r\n").unwrap();
        // The pause under test: the server stops reading while the client uploads.
        go_rx.recv_timeout(WAIT).unwrap();
        thread::sleep(Duration::from_millis(300));
        let got = read_to_end(&mut s).unwrap();
        s.write_all(b"bye").unwrap();
        got.len()
    });
    let mut c = connect(spy.addr);
    let mut banner = [0u8; 11];
    c.read_exact(&mut banner).unwrap();
    go_tx.send(()).unwrap();
    c.write_all(&upload).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut c).unwrap(), b"bye");
    assert_eq!(server.join().unwrap(), upload.len());
    spy.wait_closed(1);
    let (hex, _, _) = log_files(dir.path(), 1, taddr);
    let text = std::fs::read_to_string(hex).unwrap();
    let caddr = c.local_addr().unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("0000")).collect();
    let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
    assert!(lines[0].contains("; connect took 0."), "{}", lines[0]);
    assert!(
        has(&format!("First byte from {taddr} (server) 0.")),
        "{lines:#?}"
    );
    assert!(
        has(&format!("First byte from {caddr} (client) 0.")),
        "{lines:#?}"
    );
    let pause = lines
        .iter()
        .find(|l| l.starts_with(&format!("Reads from {caddr} (client) paused for ")))
        .unwrap_or_else(|| panic!("no pause line in {lines:#?}"));
    assert!(
        pause.ends_with(&format!(": {taddr} (server) not draining")),
        "{pause}"
    );
    let secs: f64 = pause
        .split("paused for ")
        .nth(1)
        .unwrap()
        .split('s')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(secs >= 0.1, "{pause}");
    assert!(
        has(&format!("Reads from {caddr} (client) paused ")),
        "total line"
    );
    assert!(has(&format!("Disconnected from {caddr} (client): EOF at ")));
    assert!(has(&format!("TCP {caddr} (client): rtt ")), "{lines:#?}");
    assert!(has(&format!("TCP {taddr} (server): rtt ")), "{lines:#?}");
    // Who closed first: the client's FIN comes before the server's.
    let client_fin = lines
        .iter()
        .position(|l| l.starts_with(&format!("Disconnected from {caddr}")))
        .unwrap();
    let server_fin = lines
        .iter()
        .position(|l| l.starts_with(&format!("Disconnected from {taddr}")))
        .unwrap();
    assert!(client_fin < server_fin);
    assert!(lines.last().unwrap().starts_with("Finished at "));
}

/// connections.jsonl: one JSON line per connection as it ends, searchable with jq.
#[test]
fn connection_index() {
    let (dir, target, taddr, mut spy) = logging_spy(&[]);
    let server = thread::spawn(move || {
        for i in 0..3u8 {
            let mut s = accept(&target);
            let got = read_to_end(&mut s).unwrap();
            s.write_all(&vec![i; got.len() * 2]).unwrap();
        }
    });
    for i in 0..3usize {
        let mut c = connect(spy.addr);
        c.write_all(&vec![b'x'; 10 + i]).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        read_to_end(&mut c).unwrap();
        spy.wait_closed(i as u64 + 1);
    }
    server.join().unwrap();
    let text = std::fs::read_to_string(dir.path().join("connections.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["number"], format!("{:04}", i + 1));
        assert_eq!(r["rule"], 0);
        assert_eq!(r["target"], taddr.to_string());
        assert_eq!(r["listen"], spy.addr.to_string());
        assert_eq!(r["bytes_client_to_server"], 10 + i);
        assert_eq!(r["bytes_server_to_client"], 2 * (10 + i));
        assert_eq!(r["ends"][0]["side"], "client");
        assert_eq!(r["ends"][0]["how"], "EOF");
        let start = r["start"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(start).is_ok(),
            "{start}"
        );
        assert!(chrono::DateTime::parse_from_rfc3339(r["end"].as_str().unwrap()).is_ok());
        let files = r["files"].as_array().unwrap();
        assert_eq!(files.len(), 3);
        for f in files {
            assert!(dir.path().join(f.as_str().unwrap()).exists(), "{f}");
        }
    }
}

/// SIGUSR1 prints a summary (open and closed connections, bytes, the busiest) and so does
/// the exit.
#[test]
fn summary_on_sigusr1_and_exit() {
    let target = listener();
    let taddr = target.local_addr().unwrap();
    let mut spy = Spy::start(&["-t", &taddr.to_string(), "--log", "none"]);
    let (big_tx, big_rx) = mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let mut small = accept(&target);
        let mut b = [0u8; 5];
        small.read_exact(&mut b).unwrap();
        small.write_all(b"pong!").unwrap();
        assert_eq!(read_to_end(&mut small).unwrap(), b"");
        drop(small);
        let mut big = accept(&target);
        big.write_all(&data(22, 300_000)).unwrap();
        big_rx.recv_timeout(WAIT).unwrap();
        big
    });
    let mut c1 = connect(spy.addr);
    c1.write_all(b"ping!").unwrap();
    c1.read_exact(&mut [0u8; 5]).unwrap();
    drop(c1);
    spy.wait_closed(1);
    let mut c2 = connect(spy.addr);
    c2.read_exact(&mut vec![0u8; 300_000]).unwrap();
    spy.signal(libc::SIGUSR1);
    let line = spy.wait_line(|l| l.starts_with("tcpspy: connections: "));
    assert!(line.contains("connections: 2 (1 open, 1 closed)"), "{line}");
    assert!(
        line.contains("clients sent 5 bytes, servers sent 300005 bytes"),
        "{line}"
    );
    assert!(
        line.contains(&format!(
            "busiest: #0002 {} -> {taddr} open (300000 bytes), #0001",
            c2.local_addr().unwrap()
        )),
        "{line}"
    );
    big_tx.send(()).unwrap();
    let _big = server.join().unwrap();
    assert!(
        spy.child.try_wait().unwrap().is_none(),
        "SIGUSR1 does not stop tcpspy"
    );
    assert_eq!(spy.stop(), 0);
    let last = spy
        .seen
        .iter()
        .find(|l| l.starts_with("tcpspy: stopped"))
        .unwrap();
    assert!(last.contains("busiest: #0002"), "{last}");
}

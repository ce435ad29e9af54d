//! The story of a connection: what its hex dump tells beyond the bytes, the connection index,
//! and the summary on SIGUSR1 and at exit.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::util::*;

/// How long the server keeps not reading once the test has seen the upload blocked at tcpspy:
/// the pause under test. A pause gets its line from 100 ms on (HOLD_REPORT); the rest leaves
/// tcpspy time to reach its hold, had it been descheduled when the test looked.
const PAUSE: Duration = Duration::from_millis(300);

/// Connect time, first byte each way, a long pause with its cause, how each side closed, and
/// the kernel's TCP figures for both sockets.
///
/// The pause: the server reads nothing until the test has seen the upload blocked at tcpspy (it
/// has stopped reading the client, and its socket to the server has bytes the server has no
/// room for), and then for [`PAUSE`] more, measured. That wait is the thing under test, not a
/// guess that something happened meanwhile: the hex dump must tell a pause that lasted at
/// least until the server began to read, which a missing or a short pause cannot fake.
#[test]
fn hex_dump_tells_the_story() {
    // A log queue that holds the whole upload: reading pauses for the server alone.
    let (dir, target, taddr, mut spy) = logging_spy(&["--log-queue", "64M"]);
    let upload = data(21, 16 << 20);
    let (sock_tx, sock_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let mut s = accept(&target);
        s.write_all(b"220 ready\r\n").unwrap();
        sock_tx.send(s.try_clone().unwrap()).unwrap();
        go_rx.recv_timeout(WAIT).unwrap();
        let got = read_to_end(&mut s).unwrap();
        s.write_all(b"bye").unwrap();
        got.len()
    });
    let mut c = connect(spy.addr);
    let mut banner = [0u8; 11];
    c.read_exact(&mut banner).unwrap();
    let s = sock_rx.recv_timeout(WAIT).unwrap();
    let uploader = send_then_shutdown(c.try_clone().unwrap(), upload.clone());
    wait_until("the upload blocked at tcpspy", || blocked_at_tcpspy(&c, &s));
    drop(s); // the server's own handle closes it when done
    let blocked = Instant::now();
    while blocked.elapsed() < PAUSE {
        thread::sleep(PAUSE - blocked.elapsed());
    }
    let draining = SystemTime::now();
    go_tx.send(()).unwrap();
    uploader.join().unwrap().unwrap();
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
    // The pause lines of the upload: `Reads from C (client) paused for 0.312345s from STAMP:
    // S (server) not draining`. The one that ended last must have lasted until the server
    // began to read.
    let prefix = format!("Reads from {caddr} (client) paused for ");
    let cause = format!(": {taddr} (server) not draining");
    let pauses: Vec<(f64, SystemTime)> = lines
        .iter()
        .filter_map(|l| {
            l.strip_prefix(prefix.as_str())?
                .strip_suffix(cause.as_str())
        })
        .map(|rest| {
            let (secs, stamp) = rest.split_once("s from ").expect("a duration and a stamp");
            (secs.parse().expect("seconds"), local_stamp(stamp))
        })
        .collect();
    let (secs, from) = pauses
        .iter()
        .copied()
        .max_by_key(|(secs, from)| *from + Duration::from_secs_f64(*secs))
        .unwrap_or_else(|| panic!("no pause line in {lines:#?}"));
    assert!(secs >= 0.1, "a pause line for a pause of {secs}s");
    // The stamp and the duration are rounded down to microseconds; 1 ms more covers that and
    // the drift between the clock tcpspy stamps with and the one it measures with.
    let ended = from + Duration::from_secs_f64(secs) + Duration::from_millis(1);
    assert!(
        ended >= draining,
        "the pause ({secs}s from {from:?}) ended before the server read ({draining:?})"
    );
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

/// A hex dump's stamp (`2026.11.29-12.27.54.030734`, local time) as a time.
fn local_stamp(stamp: &str) -> SystemTime {
    use chrono::TimeZone;
    let t = chrono::NaiveDateTime::parse_from_str(stamp, "%Y.%m.%d-%H.%M.%S%.f")
        .unwrap_or_else(|e| panic!("{stamp:?}: {e}"));
    chrono::Local
        .from_local_datetime(&t)
        .earliest()
        .unwrap_or_else(|| panic!("{stamp:?} is no local time"))
        .into()
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

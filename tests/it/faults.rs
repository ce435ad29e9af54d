//! Faults from the command line and a populate file, through the real binary: every toxic
//! with a real client and server on loopback, lower bounds for time only (every round trip at
//! least the latency, a transfer at least size / rate), exact bytes for slicer, limit_data and
//! corrupt, ECONNRESET for resets, the content triggers, and the record of the faults read
//! back from every log.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

/// A server that echoes what each connection sends, until it closes.
fn echo_server(l: TcpListener) {
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

fn hex_dump(dir: &Path, n: u64, target: SocketAddr) -> String {
    let (hex, _, _) = log_files(dir, n, target);
    std::fs::read_to_string(hex).unwrap()
}

/// The lines of a hex dump that tell faults.
fn fault_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("Fault ")).collect()
}

#[test]
fn latency_holds_every_round_trip() {
    let (dir, target, taddr, mut spy) = logging_spy(&["--fault", "latency:latency=100,jitter=20"]);
    echo_server(target);
    let mut c = connect(spy.addr);
    for i in 0..5u8 {
        let t = Instant::now();
        c.write_all(&[b'a' + i; 10]).unwrap();
        let mut got = [0u8; 10];
        c.read_exact(&mut got).unwrap();
        assert_eq!(got, [b'a' + i; 10]);
        // 100 - 20 ms of jitter at the least, each way counted once (downstream only).
        assert!(
            t.elapsed() >= Duration::from_millis(80),
            "{:?}",
            t.elapsed()
        );
    }
    drop(c);
    spy.wait_closed(1);
    assert_eq!(spy.stop(), 0);
    let text = hex_dump(dir.path(), 1, taddr);
    let held = fault_lines(&text)
        .iter()
        .filter(|l| l.contains("latency_downstream: held bytes"))
        .count();
    assert_eq!(held, 5, "{text}");
    assert!(
        fault_lines(&text)[0]
            .contains("latency_downstream: latency latency=100 jitter=20 on downstream: on this"),
        "{text}"
    );
}

#[test]
fn latency_on_a_thousand_connections() {
    let target = wide_listener();
    let taddr = target.local_addr().unwrap();
    let n = 1000;
    let server = thread::spawn(move || {
        let mut held = Vec::new();
        for _ in 0..n {
            let (mut s, _) = target.accept().unwrap();
            timeouts(&s);
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
            held.push(s);
        }
        held
    });
    let mut spy = Spy::start(&[
        "-t",
        &taddr.to_string(),
        "--log",
        "none",
        "--fault",
        "latency:latency=100",
    ]);
    let mut conns = Vec::new();
    for _ in 0..n {
        let mut c = connect(spy.addr);
        c.write_all(b"x").unwrap();
        conns.push((c, Instant::now()));
    }
    for (c, sent) in &mut conns {
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
        assert!(
            sent.elapsed() >= Duration::from_millis(100),
            "{:?}",
            sent.elapsed()
        );
    }
    drop(server.join().unwrap());
    drop(conns);
    spy.wait_closed(n);
    assert_eq!(spy.stop(), 0);
}

#[test]
fn bandwidth_takes_size_over_rate() {
    let (dir, target, taddr, mut spy) =
        logging_spy(&["--fault", "bandwidth:rate=500,stream=upstream"]);
    let up = data(1, 100_000);
    let t = Instant::now();
    let (server_got, client_got) = both_ways(spy.addr, target, &up, b"");
    // 100 000 bytes at 500 KB/s: at least 200 ms.
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(sha(&server_got), sha(&up));
    assert!(client_got.is_empty());
    spy.wait_closed(1);
    assert_eq!(spy.stop(), 0);
    assert_logs(dir.path(), 1, taddr, &up, b"");
    let text = hex_dump(dir.path(), 1, taddr);
    assert!(
        fault_lines(&text).iter().any(|l| l.contains("(500 KB/s)")),
        "{text}"
    );
}

#[test]
fn slicer_delivers_exact_bytes_in_slices() {
    let (dir, target, taddr, mut spy) = logging_spy(&[
        "--fault",
        "slicer:average_size=100,size_variation=10,delay=100,stream=both",
    ]);
    let up = data(2, 10_000);
    let down = data(3, 20_000);
    let (server_got, client_got) = both_ways(spy.addr, target, &up, &down);
    assert_eq!(sha(&server_got), sha(&up));
    assert_eq!(sha(&client_got), sha(&down));
    spy.wait_closed(1);
    assert_eq!(spy.stop(), 0);
    assert_logs(dir.path(), 1, taddr, &up, &down);
    let text = hex_dump(dir.path(), 1, taddr);
    let sliced: Vec<&str> = fault_lines(&text)
        .into_iter()
        .filter(|l| l.contains(" writes of "))
        .collect();
    assert!(!sliced.is_empty(), "{text}");
    for l in sliced {
        let sizes = l.split(" writes of ").nth(1).unwrap();
        let hi: u64 = sizes.split(['-', ' ']).nth(1).unwrap().parse().unwrap();
        assert!(hi <= 110, "{l}");
    }
}

#[test]
fn limit_data_cuts_at_exactly_n_bytes() {
    let (dir, target, taddr, mut spy) =
        logging_spy(&["--fault", "limit_data:bytes=1000,stream=upstream"]);
    let mut c = connect(spy.addr);
    let mut s = accept(&target);
    let up = data(4, 10_000);
    // The client may see its writes refused once tcpspy closed: what counts is the server's.
    let writer = thread::spawn(move || {
        let _ = c.write_all(&up);
        c
    });
    let got = read_to_end(&mut s).unwrap();
    assert_eq!(got, data(4, 10_000)[..1000]);
    drop(writer.join().unwrap());
    let closed = spy.wait_closed(1);
    assert!(
        closed.contains("closed by fault limit_data_upstream"),
        "{closed}"
    );
    assert_eq!(spy.stop(), 0);
    let text = hex_dump(dir.path(), 1, taddr);
    assert!(
        text.contains("closing the connection at byte 1000"),
        "{text}"
    );
}

#[test]
fn corrupt_flips_what_the_record_says() {
    let (dir, target, taddr, mut spy) =
        logging_spy(&["--fault", "corrupt:probability=0.01", "--seed", "42"]);
    let down = data(5, 50_000);
    let (_, client_got) = both_ways(spy.addr, target, b"hi", &down);
    assert_eq!(client_got.len(), down.len());
    assert_ne!(client_got, down, "some bits were flipped");
    spy.wait_closed(1);
    assert_eq!(spy.stop(), 0);
    // The logs hold what the server sent; the fault lines say what the client got instead.
    assert_logs(dir.path(), 1, taddr, b"hi", &down);
    let text = hex_dump(dir.path(), 1, taddr);
    let flips: Vec<(u64, u8)> = fault_lines(&text)
        .iter()
        .flat_map(|l| tcpspy::faults::corrupt::flips(l))
        .collect();
    let differ = down.iter().zip(&client_got).filter(|(a, b)| a != b).count();
    assert_eq!(flips.len(), differ);
    assert_eq!(
        tcpspy::faults::corrupt::received(&down, &flips),
        client_got,
        "the received view, rebuilt from the record"
    );
}

#[test]
fn reset_peer_resets_the_client() {
    let (dir, target, taddr, mut spy) = logging_spy(&["--fault", "reset_peer:timeout=100"]);
    let mut c = connect(spy.addr);
    let mut s = accept(&target);
    let t = Instant::now();
    s.write_all(b"hello").unwrap();
    let mut buf = [0u8; 16];
    let e = loop {
        match c.read(&mut buf) {
            Ok(0) => panic!("EOF, not a reset"),
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
    assert!(
        t.elapsed() >= Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    // The server is reset too.
    s.set_read_timeout(Some(WAIT)).unwrap();
    let e = s.read(&mut buf).map(|n| n.to_string()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
    let closed = spy.wait_closed(1);
    assert!(
        closed.contains("reset by fault reset_peer_downstream"),
        "{closed}"
    );
    assert_eq!(spy.stop(), 0);
    let text = hex_dump(dir.path(), 1, taddr);
    assert!(
        text.contains("(client): reset by fault reset_peer_downstream"),
        "{text}"
    );
}

#[test]
fn timeout_closes_after_its_time_and_lets_nothing_through() {
    let (_dir, target, _taddr, mut spy) =
        logging_spy(&["--fault", "timeout:timeout=200,stream=upstream"]);
    // The toxic's time runs from the connection's start, as Toxiproxy's does: the clock starts
    // before the connect, so that the bound below holds whenever tcpspy counted.
    let t = Instant::now();
    let mut c = connect(spy.addr);
    let mut s = accept(&target);
    c.write_all(b"anyone there?").unwrap();
    let got = read_to_end(&mut s).unwrap();
    assert!(got.is_empty(), "nothing gets through: {got:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty());
    let closed = spy.wait_closed(1);
    assert!(
        closed.contains("closed by fault timeout_upstream"),
        "{closed}"
    );
    assert_eq!(spy.stop(), 0);
}

#[test]
fn slow_close_holds_the_fin() {
    let (_dir, target, _taddr, mut spy) = logging_spy(&["--fault", "slow_close:delay=300"]);
    let mut c = connect(spy.addr);
    let mut s = accept(&target);
    s.write_all(b"bye").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let t = Instant::now();
    let got = read_to_end(&mut c).unwrap();
    assert_eq!(got, b"bye");
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    drop((c, s));
    spy.wait_closed(1);
    assert_eq!(spy.stop(), 0);
}

#[test]
fn a_match_resets_when_the_server_says_commit() {
    let (dir, target, taddr, mut spy) =
        logging_spy(&["--fault", "reset_peer:timeout=0,match=COMMIT"]);
    let mut c = connect(spy.addr);
    let mut s = accept(&target);
    // A whole transaction, then the COMMIT the client must never get past.
    s.write_all(b"BEGIN; UPDATE t SET x = 1; COMMIT; and more")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    let e = loop {
        match c.read(&mut buf) {
            Ok(0) => panic!("EOF after {got:?}"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
    assert!(
        b"BEGIN; UPDATE t SET x = 1; COMMIT".starts_with(&got),
        "no byte past the match: {:?}",
        String::from_utf8_lossy(&got)
    );
    spy.wait_closed(1);
    assert_eq!(spy.stop(), 0);
    let text = hex_dump(dir.path(), 1, taddr);
    assert!(
        text.contains("matched \"COMMIT\" ending at byte 33"),
        "{text}"
    );
    assert!(text.contains("triggered at byte 33"), "{text}");
}

#[test]
fn after_bytes_stalls_past_the_first_bytes() {
    let (_dir, target, _taddr, mut spy) = logging_spy(&[
        "--fault",
        "timeout:timeout=300,after_bytes=1000,stream=upstream",
    ]);
    let mut c = connect(spy.addr);
    let mut s = accept(&target);
    let up = data(6, 5000);
    c.write_all(&up).unwrap();
    let got = read_to_end(&mut s).unwrap();
    assert_eq!(got, up[..1000], "the first 1000 bytes, then nothing");
    let closed = spy.wait_closed(1);
    assert!(
        closed.contains("closed by fault timeout_upstream"),
        "{closed}"
    );
    assert_eq!(spy.stop(), 0);
}

/// Which of 12 connections a toxic with toxicity 0.5 took, in a run with `seed`.
fn toxicity_draws(seed: &str) -> Vec<bool> {
    let target = listener();
    let taddr = target.local_addr().unwrap();
    let mut spy = Spy::start(&[
        "-t",
        &taddr.to_string(),
        "--log",
        "none",
        "--seed",
        seed,
        "--fault",
        "limit_data:bytes=1,toxicity=0.5,stream=upstream",
    ]);
    let mut took = Vec::new();
    for i in 0..12u64 {
        let mut c = connect(spy.addr);
        let mut s = accept(&target);
        c.write_all(b"0123456789").unwrap();
        // limit_data may have closed the connection already (tcpspy's socket had unread
        // bytes, so the kernel reset it): what counts is what the server got.
        let _ = c.shutdown(Shutdown::Write);
        let got = read_to_end(&mut s).unwrap();
        took.push(got.len() == 1);
        drop((c, s));
        spy.wait_closed(i + 1);
    }
    assert_eq!(spy.stop(), 0);
    took
}

#[test]
fn toxicity_repeats_with_a_seed() {
    let a = toxicity_draws("7");
    assert_eq!(a, toxicity_draws("7"), "the same seed, the same draws");
    assert!(a.contains(&true) && a.contains(&false), "{a:?}");
}

#[test]
fn a_populate_file_with_toxics() {
    let dir = tempfile::tempdir().unwrap();
    let target = listener();
    let taddr = target.local_addr().unwrap();
    echo_server(target);
    let file = dir.path().join("faults.json");
    std::fs::write(
        &file,
        format!(
            r#"[{{"name": "echo", "listen": "127.0.0.1:0", "upstream": "{taddr}",
                 "toxics": [{{"type": "latency", "attributes": {{"latency": 150}}}}]}},
                {{"name": "off", "listen": "127.0.0.1:0", "upstream": "{taddr}", "enabled": false}}]"#
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["--faults", file.to_str().unwrap(), "--log", "none"]);
    let mut spy = Spy::spawn(cmd);
    spy.wait_line(|l| l.contains("faults on echo") && l.contains("latency_downstream"));
    let mut c = connect(spy.addr);
    let t = Instant::now();
    c.write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    drop(c);
    spy.wait_closed(1);
    assert_eq!(spy.stop(), 0);
    assert_eq!(
        spy.seen
            .iter()
            .filter(|l| l.contains("listening on"))
            .count(),
        1,
        "the disabled proxy does not listen: {:?}",
        spy.seen
    );

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"[{"name": "x", "upstream": "127.0.0.1:1", "toxics": [{"type": "nope"}]}]"#,
    )
    .unwrap();
    let (code, err) = run_to_exit(&["--faults", bad.to_str().unwrap(), "--log", "none"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid toxic type"), "{err}");
    let (code, err) = run_to_exit(&["-l", "0", "-t", "127.0.0.1:1", "--fault", "latency:x=1"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown attribute \"x\""), "{err}");
    let (code, err) = run_to_exit(&[
        "-l",
        "0",
        "-t",
        "127.0.0.1:1",
        "--log",
        "none",
        "--fault",
        "latency:proxy=nosuch",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no proxy named \"nosuch\" (the rules are rule1)"),
        "{err}"
    );
}

#[test]
fn the_record_of_faults_is_read_back_from_every_log() {
    need("tshark");
    let dir = tempfile::tempdir().unwrap();
    let target = listener();
    let taddr = target.local_addr().unwrap();
    let mut spy = Spy::start_piped(&[
        "-t",
        &taddr.to_string(),
        "-d",
        dir.path().to_str().unwrap(),
        "--log",
        "hex,binary,pcap",
        "-x",
        "--fault",
        "corrupt:probability=0.05,stream=upstream",
        "--fault",
        "reset_peer:timeout=0,match=STOP",
        "--seed",
        "3",
    ]);
    let mut out = spy.child.stdout.take().unwrap();
    let live = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let mut c = connect(spy.addr);
    let mut s = accept(&target);
    let up = data(7, 2000);
    c.write_all(&up).unwrap();
    let mut got = vec![0u8; up.len()];
    s.read_exact(&mut got).unwrap();
    s.write_all(b"ok STOP").unwrap();
    let mut buf = [0u8; 64];
    while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
    drop((c, s));
    spy.wait_closed(1);
    assert_eq!(spy.stop(), 0);

    // The hex dump: the story lines, and both views.
    let text = hex_dump(dir.path(), 1, taddr);
    let lines = fault_lines(&text);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Fault corrupt") && l.contains("flipped")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Fault reset_peer") && l.contains("reset both sides")),
        "{text}"
    );
    let flips: Vec<(u64, u8)> = lines
        .iter()
        .flat_map(|l| tcpspy::faults::corrupt::flips(l))
        .collect();
    assert_eq!(tcpspy::faults::corrupt::received(&up, &flips), got);
    let (_, bup, _) = log_files(dir.path(), 1, taddr);
    assert_eq!(
        std::fs::read(bup).unwrap(),
        up,
        "the binary log holds what the client sent"
    );

    // connections.jsonl: a faults field.
    let index = std::fs::read_to_string(dir.path().join("connections.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(index.lines().next().unwrap()).unwrap();
    let faults = line["faults"].as_array().expect("a faults field");
    assert!(
        faults.iter().any(|f| f["fault"] == "corrupt"
            && f["stream"] == "upstream"
            && f["what"].as_str().unwrap().contains("flipped")),
        "{line}"
    );
    assert!(
        faults
            .iter()
            .any(|f| f["fault"] == "reset_peer" && f["stream"] == "downstream"),
        "{line}"
    );
    assert_eq!(
        line["ends"][0]["how"], "reset by fault reset_peer_downstream",
        "{line}"
    );

    // The live view: a line per fault.
    let live = String::from_utf8(live.join().unwrap()).unwrap();
    assert!(
        live.lines()
            .any(|l| l.starts_with("#0001 fault corrupt client ") && l.contains("flipped")),
        "{live}"
    );
    assert!(
        live.lines()
            .any(|l| l.starts_with("#0001 fault reset_peer server ")),
        "{live}"
    );

    // The capture: packet comments tshark reads.
    let capture = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "pcapng"))
        .expect("a capture");
    let out = tool("tshark")
        .args([
            "-r",
            capture.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "frame.comment",
        ])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let comments = String::from_utf8_lossy(&out.stdout);
    assert!(
        comments.contains("tcpspy fault (client -> server; payloads here are as the client sent them): corrupt_upstream: flipped"),
        "{comments}"
    );
    assert!(
        comments.contains("reset by fault reset_peer_downstream"),
        "{comments}"
    );
}

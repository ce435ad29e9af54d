//! `tcpspy bench`: it runs on its own (no server of the user's), verifies the data, prints a
//! table or JSON, cleans up its logs, and fails on bad arguments. No timings are asserted.

use std::path::Path;
use std::time::Duration;

use crate::util::*;

/// Longest a small bench may take on a busy 2-core machine.
const LIMIT: Duration = Duration::from_secs(120);

fn bench(args: &[&str]) -> (String, String) {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    let (code, out, err) = run_with_output(&all, LIMIT);
    assert_eq!(
        code, 0,
        "tcpspy {all:?} failed\nstdout:\n{out}\nstderr:\n{err}"
    );
    (out, err)
}

fn entries(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[test]
fn downloads_verify_and_clean_up() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().to_str().unwrap();
    let (out, err) = bench(&["--bytes", "8M", "--rounds", "1", "--log-dir", dir]);
    assert!(
        out.starts_with("tcpspy bench: 8 MiB per round over 1 connection"),
        "{out}"
    );
    assert!(
        out.contains("data verified: all 2 downloads (8 MiB each) arrived intact"),
        "{out}"
    );
    assert!(out.contains("so did the 1 binary log files"), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("median"))
        .expect("a median row");
    // median, direct, proxied, ratio, log MB, log per byte, CPU, reactor, logger, logged,
    // disk limit, fraction of it.
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells.len(), 12, "{row}");
    let (logged, disk): (f64, f64) = (cells[9].parse().unwrap(), cells[10].parse().unwrap());
    assert!(logged > 0.0 && disk > 0.0, "{row}");
    assert!(cells[11].ends_with('%'), "{row}");
    let log_per_byte: f64 = cells[5].parse().unwrap();
    assert!(
        (4.0..8.0).contains(&log_per_byte),
        "a hex dump and a binary copy are ~6 bytes per byte: {row}"
    );
    // Nothing but the progress bar (hidden: stderr is not a terminal) goes to stderr.
    assert_eq!(err, "");
    assert!(entries(parent.path()).is_empty(), "the logs were removed");
}

#[test]
fn json_parses_and_logs_are_kept_when_asked() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().to_str().unwrap();
    let (out, _) = bench(&[
        "--bytes",
        "4M",
        "--rounds",
        "2",
        "--connections",
        "3",
        "--log",
        "binary",
        "--json",
        "--keep-logs",
        "--log-dir",
        dir,
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(v["mode"], "download");
    assert_eq!(v["verified"], true);
    assert_eq!(v["bytes"], 4 << 20);
    assert_eq!(v["connections"], 3);
    assert_eq!(v["log"], "binary");
    let rounds = v["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2);
    for r in rounds {
        assert_eq!(r["proxied_bytes"], 4 << 20);
        // The downloads and the three 16-byte requests.
        assert_eq!(r["relayed_bytes"], (4 << 20) + 3 * 16);
        assert_eq!(r["binary_logs_verified"], 3);
        // Binary logs only: the relayed bytes, and the three lines of the connection index.
        let index = r["log_bytes"].as_u64().unwrap() - ((4 << 20) + 3 * 16);
        assert!((300..3000).contains(&index), "{index} bytes of index");
        assert!(r["proxied_mb_per_s"].as_f64().unwrap() > 0.0);
        assert!(r["proxy_cpu_s_per_gib"].as_f64().unwrap() > 0.0);
    }
    assert!(v["median"]["proxied_over_direct"].as_f64().unwrap() > 0.0);
    let kept = v["kept_logs"].as_str().expect("where the logs are");
    let kept = Path::new(kept);
    assert!(kept.starts_with(parent.path()), "{}", kept.display());
    // One directory per round, each with three connections' six binary files and the index.
    for round in ["round-1", "round-2"] {
        let files = entries(&kept.join(round));
        assert_eq!(files.len(), 7, "{files:?}");
        let total: u64 = files
            .iter()
            .filter(|f| !f.ends_with("connections.jsonl"))
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum();
        assert_eq!(total, (4 << 20) + 3 * 16);
        let index = std::fs::read_to_string(kept.join(round).join("connections.jsonl")).unwrap();
        assert_eq!(index.lines().count(), 3);
    }
}

#[test]
fn without_logging() {
    let (out, _) = bench(&["--bytes", "8M", "--rounds", "1", "--log", "none", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["log"], "none");
    assert_eq!(v["rounds"][0]["log_bytes"], 0);
    assert_eq!(v["rounds"][0]["binary_logs_verified"], 0);
    assert!(v["kept_logs"].is_null());
}

#[test]
fn round_trips() {
    let (out, _) = bench(&[
        "--rtt",
        "--exchanges",
        "50",
        "--rtt-sizes",
        "64,1K",
        "--rounds",
        "1",
    ]);
    assert!(out.starts_with("tcpspy bench --rtt: 50 "), "{out}");
    let median_of = |size: &str| {
        out.lines()
            .find(|l| l.starts_with(size) && l.contains(" median "))
            .unwrap_or_else(|| panic!("no median row for {size}: {out}"))
            .split_whitespace()
            .count()
    };
    // size (two words), median, then six figures.
    assert_eq!(median_of("64 B "), 9);
    assert_eq!(median_of("1 KiB "), 9);
    assert!(
        out.contains("every echo of the 200 exchanges matched"),
        "{out}"
    );
    let (json, _) = bench(&[
        "--rtt",
        "--exchanges",
        "20",
        "--rtt-sizes",
        "100",
        "--rounds",
        "2",
        "--json",
        "--log",
        "none",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["mode"], "rtt");
    assert_eq!(v["sizes"][0]["size"], 100);
    assert_eq!(v["sizes"][0]["rounds"].as_array().unwrap().len(), 2);
    assert!(v["sizes"][0]["median"]["proxied_p50_us"].as_f64().unwrap() > 0.0);
}

#[test]
fn bad_arguments_fail_with_one_line() {
    for (args, needle) in [
        (&["bench", "--bytes", "0"][..], "--bytes"),
        (&["bench", "--rounds", "0"][..], "--rounds"),
        (&["bench", "--connections", "5000"][..], "--connections"),
        (&["bench", "--log", "pdf"][..], "unknown format"),
        (&["bench", "--rtt", "--rtt-sizes", "1G"][..], "--rtt-sizes"),
    ] {
        let (code, out, err) = run_with_output(args, LIMIT);
        // A value the command line refuses is a usage error: status 2, one line.
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert_eq!(out, "");
        assert!(
            err.starts_with("tcpspy: error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
    // The proxy's flags and the subcommand do not mix.
    let (code, _, err) = run_with_output(&["--listen", "1", "bench"], LIMIT);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn interrupted_bench_removes_its_logs() {
    let parent = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(bin())
        .args(["bench", "--bytes", "2G", "--rounds", "1", "--log-dir"])
        .arg(parent.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (polling what the bench creates, up to WAIT) until the proxied download is under way
    // and writing logs: 2 GiB through the logger takes far longer than this test waits.
    let deadline = std::time::Instant::now() + WAIT;
    let logging = || {
        entries(parent.path())
            .iter()
            .any(|d| d.join("round-1").is_dir())
    };
    while !logging() {
        assert!(std::time::Instant::now() < deadline, "no round-1 logs");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        let _ = tx.send(s);
    });
    let err = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
        let _ = child.kill();
        panic!("the bench did not stop on SIGINT");
    });
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("bench interrupted; removed"), "{err}");
    assert!(entries(parent.path()).is_empty(), "logs left behind");
}

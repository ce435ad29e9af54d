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
    // median, direct, proxied, ratio, RSS growth, log MB, log per byte, CPU, reactor, logger,
    // logged, disk limit, fraction of it.
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells.len(), 13, "{row}");
    let header = out.lines().find(|l| l.starts_with("round ")).unwrap();
    assert!(
        header.contains("tcpspy/direct  RSS +MiB  log MB"),
        "{header}"
    );
    let rss: f64 = cells[4].parse().unwrap();
    assert!(rss >= 0.0, "{row}");
    let (logged, disk): (f64, f64) = (cells[10].parse().unwrap(), cells[11].parse().unwrap());
    assert!(logged > 0.0 && disk > 0.0, "{row}");
    assert!(cells[12].ends_with('%'), "{row}");
    let log_per_byte: f64 = cells[6].parse().unwrap();
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

/// The cells of a table's median row.
fn median_row(out: &str) -> Vec<String> {
    out.lines()
        .find(|l| l.starts_with("median"))
        .unwrap_or_else(|| panic!("no median row: {out}"))
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn sustained_logging_is_timed_until_the_disk_has_it() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().to_str().unwrap();
    let (out, _) = bench(&[
        "--sustained",
        "--bytes",
        "4M",
        "--rounds",
        "2",
        "--json",
        "--log-dir",
        dir,
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(v["sustained"], true);
    assert_eq!(v["bytes"], 4 << 20);
    // The kernel's limit, read from /proc: far above what a 4 MiB round writes.
    let dirty = v["dirty_limit_bytes"].as_u64().expect("the dirty limit");
    assert!(dirty > 0);
    for r in v["rounds"].as_array().unwrap() {
        assert_eq!(r["binary_logs_verified"], 1);
        let (sync, logged) = (
            r["log_sync_secs"].as_f64().expect("the logs' fdatasync"),
            r["logged_secs"].as_f64().unwrap(),
        );
        // The flush is part of the logging time, and of the disk's.
        assert!(sync >= 0.0 && logged >= sync, "{r}");
        let disk_sync = r["disk_sync_secs"].as_f64().expect("the disk's fdatasync");
        assert!(r["disk_secs"].as_f64().unwrap() >= disk_sync, "{r}");
        assert!(r["logged_mb_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["disk_limit_mb_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["logged_over_disk_limit"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert!(v["median"]["logged_over_disk_limit"].as_f64().unwrap() > 0.0);
    assert!(entries(parent.path()).is_empty(), "the logs were removed");

    let (out, _) = bench(&[
        "--sustained",
        "--bytes",
        "2M",
        "--rounds",
        "1",
        "--log-dir",
        dir,
    ]);
    assert!(
        out.contains("sustained: the clock stops when every log is on the disk (fdatasync)"),
        "{out}"
    );
    assert!(out.contains("under the dirty limit"), "{out}");
    assert!(out.contains("then fdatasync"), "{out}");
    assert_eq!(median_row(&out).len(), 13, "{out}");
    assert!(entries(parent.path()).is_empty(), "the logs were removed");
}

#[test]
fn a_slow_reader_shows_the_proxys_memory() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().to_str().unwrap();
    let started = std::time::Instant::now();
    let (out, _) = bench(&[
        "--pause",
        "300ms",
        "--bytes",
        "8M",
        "--rounds",
        "2",
        "--connections",
        "2",
        "--json",
        "--log-dir",
        dir,
    ]);
    // Every client of both rounds, direct and proxied, waited its 300 ms.
    assert!(started.elapsed() >= Duration::from_millis(4 * 300));
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(v["pause_secs"], 0.3);
    assert_eq!(v["verified"], true);
    assert_eq!(v["log_queue"], 8 << 20);
    for r in v["rounds"].as_array().unwrap() {
        assert_eq!(r["proxied_bytes"], 8 << 20);
        assert_eq!(r["binary_logs_verified"], 2);
        let grew = r["proxy_rss_growth_bytes"]
            .as_u64()
            .expect("the proxy's RSS growth");
        // The log queue and relay buffers, not the 8 MiB download twice over, nor the bench's.
        assert!(grew < 256 << 20, "{r}");
        let own = r["direct_rss_growth_bytes"]
            .as_u64()
            .expect("the bench's own growth");
        assert!(own < 32 << 20, "{r}");
        assert!(r["proxy_rss_growth_mib"].as_f64().is_some(), "{r}");
        assert!(r["proxied_mb_per_s"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert!(v["median"]["proxy_rss_growth_mib"].as_f64().is_some());
    assert!(entries(parent.path()).is_empty(), "the logs were removed");

    let (out, _) = bench(&["--pause", "200ms", "--bytes", "4M", "--rounds", "1"]);
    assert!(
        out.contains("slow reader: each client waits 200ms after connecting before it reads"),
        "{out}"
    );
    assert!(out.contains("RSS +MiB = how far the process's resident memory rose"));
    assert!(out.contains("data verified: all 2 downloads (4 MiB each) arrived intact"));
    let median = median_row(&out);
    assert_eq!(median.len(), 13, "{out}");
    assert!(median[4].parse::<f64>().unwrap() >= 0.0, "{out}");
}

#[test]
fn a_round_that_cannot_fit_the_disk_is_refused() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().to_str().unwrap();
    // 100 TiB logged as hex and binary is ~650 TB of logs.
    let (code, out, err) = run_with_output(&["bench", "--bytes", "100T", "--log-dir", dir], LIMIT);
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, "");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("tcpspy: error: a round of 100 TiB logging hex,binary needs about"),
        "{err}"
    );
    assert!(
        err.contains(&format!("and {dir} has ")) && err.contains("free"),
        "{err}"
    );
    assert!(entries(parent.path()).is_empty(), "nothing was left behind");
    // Nothing logged, nothing to sync.
    let (code, _, err) = run_with_output(&["bench", "--sustained", "--log", "none"], LIMIT);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--log none writes none"), "{err}");
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
        (&["bench", "--pause", "2h"][..], "--pause"),
        (&["bench", "--rtt", "--pause", "1s"][..], "--pause"),
        (&["bench", "--rtt", "--sustained"][..], "--sustained"),
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
        // Binary logs only: a round fits the free space of a small CI disk.
        .args([
            "bench",
            "--bytes",
            "2G",
            "--log",
            "binary",
            "--rounds",
            "1",
            "--log-dir",
        ])
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

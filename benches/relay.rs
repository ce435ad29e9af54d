//! The relay on loopback, in bytes/s of downloads: straight from a source, through tcpspy
//! without logging, and through tcpspy writing hex and binary logs. The proxy is the real one
//! (`Proxy`: reactor, log queue, logging thread) on a thread of its own, as `tcpspy bench`
//! runs it; each iteration is one connection downloading 8 MiB.
//!
//! With logging, the log queue is small (8 MiB) so that a few iterations reach the steady
//! state where the logger, not the queue, sets the pace; each connection's logs are deleted
//! after its iteration (outside the timing) so the disk does not fill up.
//!
//! Beside the downloads, the paths that small exchanges take: round trips of 64 B and 16 KiB
//! on one connection (a read that comes back short ends the turn: no extra `recv`), and
//! churn (connect, 100 B echoed, close), with the connection lines on stderr batched per
//! round of events (their output goes to the bench's stderr).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BYTES: usize = 8 << 20;

/// Serves BYTES of fixed data to every connection, forever (the process ends it).
fn source() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind the source");
    let addr = l.local_addr().expect("source address");
    let data: Vec<u8> = (0..BYTES as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.write_all(&data);
        }
    });
    addr
}

/// Echoes every connection's bytes back until it closes.
fn echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind the echo server");
    let addr = l.local_addr().expect("echo address");
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_nodelay(true);
            thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A proxy to `target` on a thread of its own; its stop handle and thread.
fn proxy(
    target: SocketAddr,
    log: &str,
    dir: &Path,
    lines: bool,
) -> (
    SocketAddr,
    tcpspy::stop::StopHandle,
    thread::JoinHandle<anyhow::Result<tcpspy::Outcome>>,
) {
    let args = tcpspy::cli::parse_args([
        "tcpspy",
        "--listen",
        "127.0.0.1:0",
        "--target",
        &target.to_string(),
        "--log",
        log,
        "--log-queue",
        "8M",
        "--log-dir",
        dir.to_str().expect("a UTF-8 temporary path"),
    ])
    .expect("arguments");
    let mut config = tcpspy::cli::config(args).expect("config");
    config.connection_lines = lines;
    let proxy = tcpspy::Proxy::new(&config).expect("proxy");
    let addr = proxy.local_addrs()[0];
    let stop = proxy.stop_handle();
    let reactor = thread::Builder::new()
        .name("tcpspy-reactor".into())
        .spawn(move || proxy.run())
        .expect("reactor thread");
    (addr, stop, reactor)
}

/// `n` round trips of `size` bytes on one connection.
fn round_trips(addr: SocketAddr, size: usize, n: u64) -> Duration {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let out = vec![7u8; size];
    let mut back = vec![0u8; size];
    let t = Instant::now();
    for _ in 0..n {
        s.write_all(&out).expect("write");
        s.read_exact(&mut back).expect("read");
    }
    t.elapsed()
}

/// `n` connections, each echoing 100 bytes, then closed.
fn churn(addr: SocketAddr, n: u64) -> Duration {
    let mut back = [0u8; 100];
    let t = Instant::now();
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(&[1u8; 100]).expect("write");
        s.read_exact(&mut back).expect("read");
    }
    t.elapsed()
}

fn exchanges(c: &mut Criterion) {
    let target = echo();
    let dir = tempfile::tempdir().expect("temporary directory");
    let (addr, stop, reactor) = proxy(target, "none", dir.path(), true);
    for size in [64usize, 16 << 10] {
        let mut g = c.benchmark_group(format!("round trip {size} B, --log none"));
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(3));
        g.bench_function("direct", |b| {
            b.iter_custom(|n| round_trips(target, size, n))
        });
        g.bench_function("tcpspy", |b| b.iter_custom(|n| round_trips(addr, size, n)));
        g.finish();
    }
    let mut g = c.benchmark_group("churn: connect, 100 B echoed, close; --log none");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("direct", |b| b.iter_custom(|n| churn(target, n)));
    g.bench_function("tcpspy", |b| b.iter_custom(|n| churn(addr, n)));
    g.finish();
    stop.stop();
    reactor.join().expect("reactor").expect("proxy run");
}

fn download(addr: SocketAddr, buf: &mut [u8]) -> Duration {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut got = 0;
    loop {
        match s.read(buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => panic!("read: {e}"),
        }
    }
    assert_eq!(got, BYTES, "short download");
    t.elapsed()
}

fn clear(dir: &Path) {
    for e in std::fs::read_dir(dir).expect("log dir").flatten() {
        // The logger may still hold the file open: unlinking it is fine on Unix.
        let _ = std::fs::remove_file(e.path());
    }
}

fn relay(c: &mut Criterion) {
    let src = source();
    let mut buf = vec![0u8; 256 << 10];
    let mut g = c.benchmark_group("relay 8 MiB download");
    g.throughput(Throughput::Bytes(BYTES as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("direct", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| download(src, &mut buf)).sum())
    });
    for log in ["none", "hex,binary"] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (addr, stop, reactor) = proxy(src, log, dir.path(), false);
        g.bench_function(format!("tcpspy --log {log}"), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let t = download(addr, &mut buf);
                        clear(dir.path());
                        t
                    })
                    .sum()
            })
        });
        stop.stop();
        reactor.join().expect("reactor").expect("proxy run");
    }
    g.finish();
}

criterion_group!(benches, relay, exchanges);
criterion_main!(benches);

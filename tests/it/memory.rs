//! Memory stays flat whatever the load: with the defaults and logging everything, tcpspy's
//! resident memory grows less than 16 MiB over its idle baseline with 1000 connections all
//! busy at once behind slow readers (the README's memory formula). The relay buffers are
//! bounded for the whole process, the log queue is bounded in bytes, and a direction that
//! finds no buffer free leaves its bytes in the kernel.

use std::io::{Read, Write};
use std::sync::{Arc, Barrier};
use std::thread;

use crate::util::*;

/// Most a load may add to tcpspy's resident memory over its idle baseline.
const GROWTH_KIB: u64 = 16 * 1024;

/// A client whose receive buffer is small: tcpspy can give it little before it reads, so
/// without a process-wide bound every connection would pin a relay buffer in tcpspy.
fn slow_reader(addr: std::net::SocketAddr) -> std::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    s.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    s.connect_timeout(&addr.into(), WAIT).expect("connect");
    let s: std::net::TcpStream = s.into();
    timeouts(&s);
    s
}

#[test]
fn a_thousand_busy_connections_stay_under_16_mib() {
    const CONNS: usize = 1000;
    const EACH: usize = 128 << 10;
    let dir = tempfile::tempdir().unwrap();
    let target = wide_listener();
    let t = target.local_addr().unwrap().to_string();
    let spy = Spy::start(&["-t", &t, "-d", dir.path().to_str().unwrap()]);
    let base = spy.status_kib("VmRSS");
    // The peak from here on (Linux: "5" resets VmHWM to the current RSS).
    std::fs::write(format!("/proc/{}/clear_refs", spy.pid()), "5").unwrap();
    // Every server writes at once while no client reads: each connection has bytes in flight
    // in both kernels and in tcpspy. Then the clients read, all together.
    let written = Arc::new(Barrier::new(CONNS + 1));
    let reading = Arc::new(Barrier::new(CONNS + 1));
    let payload = Arc::new(data(5, EACH));
    let spawn = |f: Box<dyn FnOnce() + Send>| {
        thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(f)
            .expect("a thread")
    };
    let servers = {
        let (written, payload) = (written.clone(), payload.clone());
        spawn(Box::new(move || {
            let mut handles = Vec::new();
            for _ in 0..CONNS {
                let mut s = accept(&target);
                let (written, payload) = (written.clone(), payload.clone());
                handles.push(spawn(Box::new(move || {
                    // What fits goes at once; then this server waits with the rest pending.
                    s.set_nonblocking(true).unwrap();
                    let mut sent = s.write(&payload).unwrap_or(0);
                    written.wait();
                    s.set_nonblocking(false).unwrap();
                    s.write_all(&payload[sent..]).unwrap();
                    sent = payload.len();
                    assert_eq!(sent, EACH);
                })));
            }
            for h in handles {
                h.join().unwrap();
            }
        }))
    };
    let clients: Vec<_> = (0..CONNS)
        .map(|_| {
            let mut c = slow_reader(spy.addr);
            let (reading, payload) = (reading.clone(), payload.clone());
            spawn(Box::new(move || {
                reading.wait();
                let mut got = Vec::with_capacity(EACH);
                c.read_to_end(&mut got).unwrap();
                assert!(
                    got == *payload,
                    "a client got {} bytes, not the payload",
                    got.len()
                );
            }))
        })
        .collect();
    written.wait();
    reading.wait();
    for c in clients {
        c.join().unwrap();
    }
    servers.join().unwrap();
    let mut spy = spy;
    spy.wait_count(CONNS, |l| l.contains(" closed "));
    let peak = spy.status_kib("VmHWM");
    eprintln!("{CONNS} busy connections: RSS {base} KiB idle, peak {peak} KiB");
    assert!(
        peak.saturating_sub(base) < GROWTH_KIB,
        "RSS grew {} KiB over the idle {base} KiB",
        peak.saturating_sub(base)
    );
    assert_eq!(spy.stop(), 0);
    // Everything was logged: the index has a line per connection.
    let index = std::fs::read_to_string(dir.path().join("connections.jsonl")).unwrap();
    assert_eq!(index.lines().count(), CONNS);
}

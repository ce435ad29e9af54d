//! Name resolution off the reactor: a few threads each take a name, resolve it with the
//! system's resolver (`ToSocketAddrs`, blocking), and hand the answer back through a queue and
//! the reactor's waker. A slow or dead DNS server holds only the threads and connections
//! waiting for it; the reactor gives up on an answer at its own deadline and ignores it if it
//! comes later.
//!
//! Test hook: `TCPSPY_TEST_ONLY_RESOLVE_DELAY=NAME=SECONDS[,NAME=SECONDS]` makes resolving
//! NAME take that long, as a dead DNS server would (a hosts file cannot make a lookup slow).

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::Waker;

use crate::log::event::ConnId;

/// Threads resolving at once: as many slow names as this delay the other names.
pub const THREADS: usize = 8;

pub const TEST_DELAY_VAR: &str = "TCPSPY_TEST_ONLY_RESOLVE_DELAY";

/// An answer for connection `id` (in the pending table at `key`).
pub struct Answer {
    pub key: usize,
    pub id: ConnId,
    pub result: Result<Vec<SocketAddr>, String>,
}

struct Job {
    key: usize,
    id: ConnId,
    host: String,
    port: u16,
}

/// The resolver threads, and the answers waiting for the reactor.
pub struct Resolver {
    jobs: Option<mpsc::Sender<Job>>,
    answers: Arc<Mutex<Vec<Answer>>>,
}

impl Resolver {
    /// Starts the threads; each answer wakes `waker`.
    pub fn start(waker: Arc<Waker>) -> std::io::Result<Resolver> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let delays = test_delays();
        for i in 0..THREADS {
            let rx = rx.clone();
            let answers = answers.clone();
            let waker = waker.clone();
            let delays = delays.clone();
            std::thread::Builder::new()
                .name(format!("tcpspy-resolve-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        if let Some((_, d)) = delays.iter().find(|(n, _)| *n == job.host) {
                            std::thread::sleep(*d);
                        }
                        let result = (job.host.as_str(), job.port)
                            .to_socket_addrs()
                            .map(|a| a.collect::<Vec<_>>())
                            .map_err(|e| e.to_string())
                            .and_then(|a| match a.is_empty() {
                                true => Err("the name has no address".to_string()),
                                false => Ok(a),
                            });
                        if let Ok(mut q) = answers.lock() {
                            q.push(Answer {
                                key: job.key,
                                id: job.id,
                                result,
                            });
                        }
                        let _ = waker.wake();
                    }
                })?;
        }
        Ok(Resolver {
            jobs: Some(tx),
            answers,
        })
    }

    /// Asks for `host`; the answer comes through [`Resolver::drain`].
    pub fn ask(&self, key: usize, id: ConnId, host: &str, port: u16) -> bool {
        self.jobs.as_ref().is_some_and(|tx| {
            tx.send(Job {
                key,
                id,
                host: host.to_string(),
                port,
            })
            .is_ok()
        })
    }

    pub fn drain(&self) -> Vec<Answer> {
        match self.answers.lock() {
            Ok(mut q) => std::mem::take(&mut *q),
            Err(_) => Vec::new(),
        }
    }
}

fn test_delays() -> Vec<(String, Duration)> {
    let Ok(spec) = std::env::var(TEST_DELAY_VAR) else {
        return Vec::new();
    };
    spec.split(',')
        .filter_map(|item| {
            let (name, secs) = item.split_once('=')?;
            let secs: u64 = secs.trim().parse().ok()?;
            Some((name.trim().to_ascii_lowercase(), Duration::from_secs(secs)))
        })
        .collect()
}

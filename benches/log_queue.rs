//! The hand-off from the reactor to the logging thread (`tcpspy::log::queue`), end to end:
//! the producer copies each chunk in with `send_data` (waiting on a mio `Waker`, as the
//! reactor does, when the queue is full), a consumer thread takes batches with `recv_batch`
//! and gives the buffers back with `release`. Timed until the consumer has taken every event.
//! Small chunks show the cost per event (events/s), large ones the copy (bytes/s).

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mio::{Events, Poll, Token, Waker};
use tcpspy::log::event::Event;
use tcpspy::log::queue::{Receiver, Sender, channel};
use tcpspy::types::Dir;

const BOUND: usize = 64 << 20;

/// Takes every batch, as the logging thread does, counting the data events.
fn consume(rx: Receiver, taken: Arc<AtomicU64>) {
    let mut batch = VecDeque::new();
    let mut spent = Vec::new();
    loop {
        rx.recv_batch(&mut batch);
        let (mut cost, mut n, mut stop) = (0, 0, false);
        for ev in batch.drain(..) {
            cost += ev.cost();
            match ev {
                Event::Data { bytes, .. } => {
                    black_box(&bytes);
                    spent.push(bytes);
                    n += 1;
                }
                Event::Stop => stop = true,
                _ => {}
            }
        }
        rx.release(cost, &mut spent);
        taken.fetch_add(n, Ordering::Release);
        if stop {
            return;
        }
    }
}

struct Producer {
    tx: Sender,
    poll: Poll,
    events: Events,
}

impl Producer {
    fn send(&mut self, chunk: &[u8]) {
        while !self.tx.has_room() {
            // As the reactor does before it waits.
            self.tx.wake_logger();
            if self.tx.wait_for_room() {
                let _ = self
                    .poll
                    .poll(&mut self.events, Some(Duration::from_millis(100)));
            }
        }
        self.tx.send_data(chunk, |bytes| Event::Data {
            id: 1,
            dir: Dir::ServerToClient,
            at: SystemTime::UNIX_EPOCH,
            bytes,
        });
    }
}

fn queue(c: &mut Criterion) {
    let mut g = c.benchmark_group("log queue hand-off");
    for (size, throughput) in [
        (64usize, Throughput::Elements(1)),
        (1500, Throughput::Elements(1)),
        (64 << 10, Throughput::Bytes(64 << 10)),
    ] {
        let poll = Poll::new().expect("poll");
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).expect("waker"));
        let (tx, rx) = channel(BOUND, size, Some(waker));
        let taken = Arc::new(AtomicU64::new(0));
        let consumer = {
            let taken = taken.clone();
            thread::spawn(move || consume(rx, taken))
        };
        let mut p = Producer {
            tx,
            poll,
            events: Events::with_capacity(8),
        };
        let chunk = vec![0x5au8; size];
        g.throughput(throughput);
        g.bench_function(format!("{size} B chunks"), |b| {
            b.iter_custom(|iters| {
                let before = taken.load(Ordering::Acquire);
                let t = Instant::now();
                for i in 0..iters {
                    p.send(&chunk);
                    // The reactor wakes the logger once per turn; a turn reads up to 16 chunks.
                    if i % 16 == 15 {
                        p.tx.wake_logger();
                    }
                }
                p.tx.wake_logger();
                while taken.load(Ordering::Acquire) - before < iters {
                    thread::yield_now();
                }
                t.elapsed()
            })
        });
        p.tx.send(Event::Stop);
        p.tx.wake_logger();
        consumer.join().expect("consumer");
    }
    g.finish();
}

criterion_group!(benches, queue);
criterion_main!(benches);

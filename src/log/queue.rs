//! The hand-off from the reactor to the logging thread: a queue bounded in bytes that never
//! drops and never blocks the reactor.
//!
//! The reactor checks [`Sender::has_room`] before every socket read and pushes unconditionally
//! after it, so the queue holds at most its bound plus one chunk. When there is no room the
//! reactor arms a wake-up ([`Sender::wait_for_room`]) and stops reading; the logger, once it has
//! written enough to bring the queue under three quarters of its bound, wakes the reactor's
//! `mio::Poll`
//! through the [`Waker`]. Bytes count until the logger has *written* them, so memory held by
//! a batch in the logger's hands is inside the bound too.
//!
//! Every event counts at its real size ([`Event::cost`]: the event and the heap bytes it
//! owns). Data buffers of nearly a whole chunk go back to the reactor through a free list, so
//! a steady stream allocates nothing per chunk; the spares count against the same bound as
//! the queued bytes (queued + spare stays within the bound plus one chunk), so keeping them
//! never adds memory beyond `--log-queue`. Smaller chunks get a buffer of their own size,
//! freed by the logger: a 64 KiB spare holding a 10-byte chunk would charge (and hold) 64 KiB.
//!
//! If the logging thread dies, the queue is declared dead ([`Receiver::die`]): from then on
//! it always has room and drops what is sent, so the reactor is never held back by a logger
//! that will not drain it, and can finish the stop the logger asked for.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::Waker;

use super::event::Event;

/// Longest an event waits before the logger is woken for it (when less than a chunk is
/// queued): a connection's lines reach stderr at most this late.
pub const WAKE_DELAY: Duration = Duration::from_millis(2);

struct Inner {
    events: VecDeque<Event>,
    /// Spare data buffers, each of capacity `chunk`.
    free: Vec<Vec<u8>>,
    /// Their capacity in all: counted with `used` against the bound.
    free_bytes: usize,
    /// The logger is gone: nothing is queued any more (see the module doc).
    dead: bool,
    /// Events dropped since the queue died.
    dropped: u64,
    logger_waiting: bool,
    reactor_waiting: bool,
    /// Times the reactor found the queue full (each is one pause of all reads).
    stalls: u64,
    /// When the first event the logger has not been woken for was queued.
    unwoken_since: Option<Instant>,
}

struct Shared {
    inner: Mutex<Inner>,
    ready: Condvar,
    /// Bytes queued or being written by the logger.
    used: AtomicUsize,
    bound: usize,
    /// Queued bytes past which the logger is woken at once.
    wake_bytes: usize,
    /// The capacity of a recycled buffer: the largest chunk the reactor reads.
    chunk: usize,
    /// Set with `Inner::dead`, read without the lock by `has_room`.
    dead: AtomicBool,
    waker: Option<Arc<Waker>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic on the other side of the lock leaves plain data behind; keep going with it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The reactor's end.
pub struct Sender {
    shared: Arc<Shared>,
}

/// The logging thread's end.
pub struct Receiver {
    shared: Arc<Shared>,
}

/// A queue that holds about `bound` bytes, waking `waker` when the reactor waits for room.
pub fn channel(bound: usize, chunk: usize, waker: Option<Arc<Waker>>) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner {
            events: VecDeque::new(),
            free: Vec::new(),
            free_bytes: 0,
            dead: false,
            dropped: 0,
            logger_waiting: false,
            reactor_waiting: false,
            stalls: 0,
            unwoken_since: None,
        }),
        ready: Condvar::new(),
        used: AtomicUsize::new(0),
        bound,
        wake_bytes: chunk.min(bound / 2).max(1),
        chunk: chunk.max(1),
        dead: AtomicBool::new(false),
        waker,
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl Sender {
    /// True when the queue can take another chunk (always, once the logger is dead).
    pub fn has_room(&self) -> bool {
        self.shared.used.load(Ordering::Acquire) < self.shared.bound
            || self.shared.dead.load(Ordering::Acquire)
    }

    /// Asks to be woken when the queue has drained; returns false if it already has room (the
    /// logger may have drained it since [`has_room`](Self::has_room) was checked).
    pub fn wait_for_room(&self) -> bool {
        let mut inner = self.shared.lock();
        if self.has_room() {
            return false;
        }
        if !inner.reactor_waiting {
            inner.reactor_waiting = true;
            inner.stalls += 1;
        }
        true
    }

    /// Queues an event. Never blocks and never refuses: the caller checks `has_room` first.
    pub fn send(&self, event: Event) {
        let cost = event.cost();
        let mut inner = self.shared.lock();
        self.push(&mut inner, event, cost);
    }

    /// Queues a data event, copying `bytes` into a recycled buffer when it is nearly a chunk
    /// (else into one of its own size, see the module doc).
    pub fn send_data(&self, bytes: &[u8], make: impl FnOnce(Vec<u8>) -> Event) {
        let chunk = self.shared.chunk;
        let mut inner = self.shared.lock();
        let mut buf = if bytes.len() > chunk / 2 && bytes.len() <= chunk {
            match inner.free.pop() {
                Some(b) => {
                    inner.free_bytes = inner.free_bytes.saturating_sub(b.capacity());
                    b
                }
                None => Vec::with_capacity(chunk),
            }
        } else {
            Vec::with_capacity(bytes.len())
        };
        buf.clear();
        buf.extend_from_slice(bytes);
        let event = make(buf);
        let cost = event.cost();
        self.push(&mut inner, event, cost);
    }

    fn push(&self, inner: &mut Inner, event: Event, cost: usize) {
        if inner.dead {
            inner.dropped += 1;
            return;
        }
        let used = self
            .shared
            .used
            .fetch_add(cost, Ordering::AcqRel)
            .saturating_add(cost);
        // Spares give way to what is queued: together they stay within the bound.
        while used.saturating_add(inner.free_bytes) > self.shared.bound {
            let Some(spare) = inner.free.pop() else {
                break;
            };
            inner.free_bytes = inner.free_bytes.saturating_sub(spare.capacity());
        }
        inner.events.push_back(event);
        if inner.unwoken_since.is_none() {
            inner.unwoken_since = Some(Instant::now());
        }
    }

    /// Wakes the logger if it waits and there is something for it.
    pub fn wake_logger(&self) {
        let mut inner = self.shared.lock();
        inner.unwoken_since = None;
        if inner.logger_waiting && !inner.events.is_empty() {
            inner.logger_waiting = false;
            self.shared.ready.notify_one();
        }
    }

    /// When the logger must be woken for what is queued: at once if the queue holds a chunk's
    /// worth or is full, else [`WAKE_DELAY`] after the first event it has not been woken for.
    /// The reactor wakes it then, not per event: a wake-up per event cost a futex call and
    /// a switch to the logging thread, on a core the relay wanted, for one line at a time
    /// (two per connection when connections come and go by the thousand).
    pub fn wake_due(&self) -> Option<Instant> {
        let inner = self.shared.lock();
        let since = inner.unwoken_since?;
        if self.shared.used.load(Ordering::Acquire) >= self.shared.wake_bytes
            || inner.reactor_waiting
        {
            Some(since)
        } else {
            Some(since + WAKE_DELAY)
        }
    }

    /// How many times reading was paused because the queue was full.
    pub fn stalls(&self) -> u64 {
        self.shared.lock().stalls
    }

    /// True once the logging thread has died (see the module doc).
    pub fn is_dead(&self) -> bool {
        self.shared.dead.load(Ordering::Acquire)
    }

    /// Events dropped because the logging thread had died.
    pub fn dropped(&self) -> u64 {
        self.shared.lock().dropped
    }

    /// Bytes queued or being written, and bytes of spare buffers: together within the bound
    /// plus one event.
    pub fn memory(&self) -> (usize, usize) {
        let inner = self.shared.lock();
        (self.shared.used.load(Ordering::Acquire), inner.free_bytes)
    }
}

impl Receiver {
    /// Waits for at least one event and moves every queued event into `batch`.
    pub fn recv_batch(&self, batch: &mut VecDeque<Event>) {
        let mut inner = self.shared.lock();
        while inner.events.is_empty() {
            inner.logger_waiting = true;
            inner = self
                .shared
                .ready
                .wait(inner)
                .unwrap_or_else(|p| p.into_inner());
        }
        std::mem::swap(&mut inner.events, batch);
    }

    /// As [`recv_batch`](Receiver::recv_batch), waiting at most `timeout`; false if nothing
    /// came meanwhile.
    pub fn recv_batch_timeout(&self, batch: &mut VecDeque<Event>, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut inner = self.shared.lock();
        while inner.events.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                inner.logger_waiting = false;
                return false;
            }
            inner.logger_waiting = true;
            inner = self
                .shared
                .ready
                .wait_timeout(inner, left)
                .map_or_else(|p| p.into_inner().0, |(g, _)| g);
        }
        std::mem::swap(&mut inner.events, batch);
        true
    }

    /// Moves every queued event into `batch` without waiting; false if there was none (the
    /// simulation plays the logger with it, on the reactor's thread).
    pub fn try_recv_batch(&self, batch: &mut VecDeque<Event>) -> bool {
        let mut inner = self.shared.lock();
        if inner.events.is_empty() {
            return false;
        }
        batch.append(&mut inner.events);
        true
    }

    /// Reports `cost` bytes written and hands data buffers back for reuse; wakes the reactor
    /// if it waits and the queue is now under three quarters of its bound. A buffer is kept as a spare only
    /// if the queued bytes and the spares stay within the bound with it.
    pub fn release(&self, cost: usize, buffers: &mut Vec<Vec<u8>>) {
        let mut inner = self.shared.lock();
        let before = self
            .shared
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(cost))
            })
            .unwrap_or(0);
        let used = before.saturating_sub(cost);
        let chunk = self.shared.chunk;
        if !inner.dead {
            let mut i = 0;
            while i < buffers.len() {
                let room = self
                    .shared
                    .bound
                    .saturating_sub(used)
                    .saturating_sub(inner.free_bytes);
                if room < chunk {
                    break;
                }
                if buffers[i].capacity() == chunk {
                    let b = buffers.swap_remove(i);
                    inner.free_bytes += chunk;
                    inner.free.push(b);
                } else {
                    i += 1;
                }
            }
        }
        // Three quarters, not half: resumed at half, the reactor left the logger to drain a
        // long stretch alone and the relay stood still meanwhile; side by side (tcpspy bench,
        // 8M queue, 3 rounds x 2) the logged rate rose from 468 and 451 MB/s to 578 and 597.
        // A quarter of the bound still leaves each pause long enough to be worth a wake-up.
        let wake = inner.reactor_waiting && used <= self.shared.bound / 4 * 3;
        if wake {
            inner.reactor_waiting = false;
        }
        drop(inner);
        buffers.clear();
        if wake {
            self.wake_reactor();
        }
    }

    /// Declares the logger dead: drops what is queued and every spare, and from now on has
    /// room for everything and keeps nothing, so that the reactor never waits for it.
    pub fn die(&self) {
        let mut inner = self.shared.lock();
        inner.dead = true;
        self.shared.dead.store(true, Ordering::Release);
        let events = std::mem::take(&mut inner.events);
        let free = std::mem::take(&mut inner.free);
        inner.free_bytes = 0;
        inner.unwoken_since = None;
        inner.dropped += events.len() as u64;
        self.shared.used.store(0, Ordering::Release);
        let wake = std::mem::take(&mut inner.reactor_waiting);
        drop(inner);
        drop((events, free));
        if wake {
            self.wake_reactor();
        }
    }

    fn wake_reactor(&self) {
        if let Some(w) = &self.shared.waker {
            // A failed wake-up would leave the reactor paused for good, but it only fails if
            // the poll itself is gone, when nobody is left to wake.
            let _ = w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Dir;
    use std::time::SystemTime;

    const CHUNK: usize = 4096;

    fn data(tx: &Sender, n: usize) {
        tx.send_data(&vec![1u8; n], |bytes| Event::Data {
            id: 1,
            dir: Dir::ClientToServer,
            at: SystemTime::UNIX_EPOCH,
            bytes,
        });
    }

    /// What the logging thread does with a batch: adds up its cost, keeps the data buffers.
    fn take(rx: &Receiver) -> (usize, Vec<Vec<u8>>) {
        let mut batch = VecDeque::new();
        rx.recv_batch(&mut batch);
        let mut cost = 0;
        let mut bufs = Vec::new();
        for ev in batch.drain(..) {
            cost += ev.cost();
            if let Event::Data { bytes, .. } = ev {
                bufs.push(bytes);
            }
        }
        (cost, bufs)
    }

    fn full_cost() -> usize {
        std::mem::size_of::<Event>() + CHUNK
    }

    #[test]
    fn bounded_in_bytes_and_recycles() {
        let bound = 10 * full_cost();
        let (tx, rx) = channel(bound, CHUNK, None);
        let mut sent = 0;
        while tx.has_room() {
            data(&tx, CHUNK);
            sent += 1;
        }
        assert_eq!(sent, 10, "ten whole chunks and their events fill the bound");
        assert!(tx.wait_for_room());
        assert_eq!(tx.stalls(), 1);
        let (cost, mut bufs) = take(&rx);
        assert_eq!(cost, bound);
        assert!(!tx.has_room(), "bytes count until written, not until taken");
        rx.release(cost, &mut bufs);
        assert!(tx.has_room());
        assert!(!tx.wait_for_room());
        assert_eq!(
            tx.memory(),
            (0, 10 * CHUNK),
            "the buffers came back as spares"
        );
        data(&tx, CHUNK);
        assert_eq!(tx.memory(), (full_cost(), 9 * CHUNK), "and are reused");
    }

    /// The old queue kept a whole queue's worth of spares on top of a full queue: twice the
    /// bound. Now queued bytes and spares share it, whatever the order of sends and releases.
    #[test]
    fn spares_and_queue_share_the_bound() {
        let bound = 16 * full_cost();
        let (tx, rx) = channel(bound, CHUNK, None);
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut pending: Vec<(usize, Vec<Vec<u8>>)> = Vec::new();
        let mut peak = 0;
        for step in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 6 {
                // Mostly whole chunks, as a bulk transfer reads them; now and then a small one.
                0..=3 if tx.has_room() => {
                    let n = if x.is_multiple_of(8) {
                        1 + (x >> 8) as usize % CHUNK
                    } else {
                        CHUNK
                    };
                    data(&tx, n);
                }
                4 if !tx.shared.lock().events.is_empty() => pending.push(take(&rx)),
                _ => {
                    if let Some((cost, mut bufs)) = pending.pop() {
                        rx.release(cost, &mut bufs);
                    }
                }
            }
            let (used, spare) = tx.memory();
            peak = peak.max(used + spare);
            assert!(
                used + spare <= bound + full_cost(),
                "step {step}: {used} queued + {spare} spare over {bound} + one chunk"
            );
        }
        assert!(peak > bound / 2, "the test reached the bound ({peak})");
    }

    #[test]
    fn small_chunks_cost_their_size() {
        let (tx, rx) = channel(1 << 20, CHUNK, None);
        data(&tx, CHUNK);
        let (cost, mut bufs) = take(&rx);
        rx.release(cost, &mut bufs);
        assert_eq!(tx.memory(), (0, CHUNK));
        data(&tx, 10);
        assert_eq!(
            tx.memory(),
            (std::mem::size_of::<Event>() + 10, CHUNK),
            "a small chunk neither takes nor is charged a whole spare"
        );
        tx.send(Event::Line("x".repeat(100)));
        let (cost, mut bufs) = take(&rx);
        assert_eq!(cost, 2 * std::mem::size_of::<Event>() + 10 + 100);
        rx.release(cost, &mut bufs);
        assert_eq!(tx.memory(), (0, CHUNK), "small buffers are not kept");
    }

    #[test]
    fn a_dead_queue_has_room_and_keeps_nothing() {
        let mut poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(7)).unwrap());
        let (tx, rx) = channel(4 * full_cost(), CHUNK, Some(waker));
        while tx.has_room() {
            data(&tx, CHUNK);
        }
        assert!(tx.wait_for_room());
        rx.die();
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
        assert!(
            events.iter().any(|e| e.token() == mio::Token(7)),
            "the waiting reactor is woken"
        );
        assert!(tx.is_dead());
        assert!(tx.has_room());
        assert!(!tx.wait_for_room());
        data(&tx, CHUNK);
        tx.send(Event::Stop);
        assert_eq!(tx.memory(), (0, 0));
        assert_eq!(tx.dropped(), 4 + 2);
        assert_eq!(tx.wake_due(), None, "nothing to wake the logger for");
    }

    #[test]
    fn wakes_a_blocked_logger() {
        let (tx, rx) = channel(1 << 20, 1024, None);
        let t = std::thread::spawn(move || {
            let mut batch = VecDeque::new();
            rx.recv_batch(&mut batch);
            batch.len()
        });
        data(&tx, 10);
        tx.wake_logger();
        assert_eq!(t.join().ok(), Some(1));
    }
}

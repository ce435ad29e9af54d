//! The hand-off from the reactor to the logging thread: a queue bounded in bytes that never
//! drops and never blocks the reactor.
//!
//! The reactor checks [`Sender::has_room`] before every socket read and pushes unconditionally
//! after it, so the queue holds at most its bound plus one chunk. When there is no room the
//! reactor arms a wake-up ([`Sender::wait_for_room`]) and stops reading; the logger, once it has
//! written enough to bring the queue under half its bound, wakes the reactor's `mio::Poll`
//! through the [`Waker`]. Bytes count until the logger has *written* them, so memory held by
//! a batch in the logger's hands is inside the bound too.
//!
//! Data buffers go back to the reactor through a free list (recycled with each release), so a
//! steady stream allocates nothing per chunk.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::Waker;

use super::event::Event;

/// Longest an event waits before the logger is woken for it (when less than a chunk is
/// queued): a connection's lines reach stderr at most this late.
pub const WAKE_DELAY: Duration = Duration::from_millis(2);

/// Bytes charged for an event besides its payload, so that a flood of tiny chunks is bounded too.
pub const EVENT_OVERHEAD: usize = 64;

struct Inner {
    events: VecDeque<Event>,
    free: Vec<Vec<u8>>,
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
    keep_free: usize,
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
            logger_waiting: false,
            reactor_waiting: false,
            stalls: 0,
            unwoken_since: None,
        }),
        ready: Condvar::new(),
        used: AtomicUsize::new(0),
        bound,
        wake_bytes: chunk.min(bound / 2).max(1),
        // Enough to hold a full queue: when the logger lags (it usually does, it writes ~6
        // bytes per byte), every chunk comes back, and a buffer freed only to be allocated
        // again costs page faults on the reactor. The queue bound caps them either way.
        keep_free: (bound / chunk.max(1)).saturating_add(2).max(4),
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
    /// True when the queue can take another chunk.
    pub fn has_room(&self) -> bool {
        self.shared.used.load(Ordering::Acquire) < self.shared.bound
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

    /// Queues a data event, copying `bytes` into a recycled buffer.
    pub fn send_data(&self, bytes: &[u8], make: impl FnOnce(Vec<u8>) -> Event) {
        let mut inner = self.shared.lock();
        let mut buf = inner.free.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(bytes);
        let event = make(buf);
        let cost = event.cost();
        self.push(&mut inner, event, cost);
    }

    fn push(&self, inner: &mut Inner, event: Event, cost: usize) {
        self.shared.used.fetch_add(cost, Ordering::AcqRel);
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
    /// if it waits and the queue is now under half its bound.
    pub fn release(&self, cost: usize, buffers: &mut Vec<Vec<u8>>) {
        let mut inner = self.shared.lock();
        let room = self.shared.keep_free.saturating_sub(inner.free.len());
        inner.free.extend(buffers.drain(..).take(room));
        buffers.clear();
        let used = self.shared.used.fetch_sub(cost, Ordering::AcqRel) - cost;
        if inner.reactor_waiting && used <= self.shared.bound / 2 {
            inner.reactor_waiting = false;
            drop(inner);
            if let Some(w) = &self.shared.waker {
                // A failed wake-up would leave the reactor paused for good, but it only fails
                // if the poll itself is gone, when nobody is left to wake.
                let _ = w.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Dir;
    use std::time::SystemTime;

    fn data(tx: &Sender, n: usize) {
        tx.send_data(&vec![1u8; n], |bytes| Event::Data {
            id: 1,
            dir: Dir::ClientToServer,
            at: SystemTime::UNIX_EPOCH,
            bytes,
        });
    }

    #[test]
    fn bounded_in_bytes_and_recycles() {
        let (tx, rx) = channel(1000, 100, None);
        assert!(tx.has_room());
        data(&tx, 600);
        assert!(tx.has_room());
        data(&tx, 600);
        assert!(!tx.has_room(), "over the bound after a chunk");
        assert!(tx.wait_for_room());
        assert_eq!(tx.stalls(), 1);
        let mut batch = VecDeque::new();
        rx.recv_batch(&mut batch);
        assert_eq!(batch.len(), 2);
        assert!(!tx.has_room(), "bytes count until written, not until taken");
        let mut cost = 0;
        let mut bufs = Vec::new();
        for ev in batch.drain(..) {
            cost += ev.cost();
            if let Event::Data { bytes, .. } = ev {
                bufs.push(bytes);
            }
        }
        rx.release(cost, &mut bufs);
        assert!(tx.has_room());
        assert!(!tx.wait_for_room());
        assert_eq!(tx.shared.lock().free.len(), 2, "buffers came back");
        data(&tx, 10);
        assert_eq!(tx.shared.lock().free.len(), 1, "and are reused");
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

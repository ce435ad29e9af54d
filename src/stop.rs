//! The stop handle: how another thread asks the reactor to stop. The bench does, the logging
//! thread does when a log fails under `--on-log-error exit` or stdout's reader goes away; the
//! CLI's signals arrive through the poll itself. A leaf, so that the logger and the reactor
//! both use it without knowing each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mio::Waker;

/// A flag the reactor reads after every poll, and the waker that makes it look.
#[derive(Clone)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopHandle")
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

impl StopHandle {
    /// A handle for the reactor that will poll with `waker`'s poll.
    pub fn new(waker: Arc<Waker>) -> StopHandle {
        StopHandle {
            flag: Arc::new(AtomicBool::new(false)),
            waker,
        }
    }

    /// Asks the reactor to stop.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        // If the wake fails the poll is gone, and so is the reactor we meant to stop.
        let _ = self.waker.wake();
    }

    /// Sets the flag and returns whether it was set before (a second signal).
    pub fn stop_again(&self) -> bool {
        let was = self.flag.swap(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        was
    }

    pub fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// The waker of the reactor's poll, for other threads that hand it work.
    pub fn waker(&self) -> &Arc<Waker> {
        &self.waker
    }
}

//! What the control thread asks of the reactor, and the queue it goes through. The control
//! thread pushes a [`Command`] and wakes the reactor through its `mio::Waker`; the reactor
//! drains the queue on its WAKER token, applies each command between two polls, and answers
//! through the request's own one-shot channel. So the API answers only once the change is
//! made (or refused), and the reactor never waits for the API.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mio::Waker;
use mio::net::TcpListener;

use crate::config::Rule;
use crate::faults::Live;

/// How long the API waits for the reactor's answer (it is busy at most a turn; this only
/// matters once the reactor has stopped).
pub const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// A change to the relay.
pub enum Command {
    /// Rule `index` (a new rule if `None`) listens with `listener`, relays as `rule` says, with
    /// the toxics of `live`. Answers the rule's index.
    Listen {
        index: Option<usize>,
        rule: Rule,
        live: Arc<Live>,
        listener: TcpListener,
    },
    /// Rule `index` stops: its listener closes, and its connections.
    Close { index: usize },
    /// Rule `index`'s toxics changed: its open connections take them up now.
    Touch { index: usize },
}

/// A command and where its answer goes.
pub struct Request {
    pub command: Command,
    pub answer: mpsc::SyncSender<Result<usize, String>>,
}

/// The queue between the control thread and the reactor.
#[derive(Clone)]
pub struct Queue {
    pending: Arc<Mutex<VecDeque<Request>>>,
    waker: Arc<Waker>,
}

impl Queue {
    pub fn new(waker: Arc<Waker>) -> Queue {
        Queue {
            pending: Arc::default(),
            waker,
        }
    }

    /// Hands `command` to the reactor and waits for its answer.
    pub fn ask(&self, command: Command) -> Result<usize, String> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(Request {
                command,
                answer: tx,
            });
        self.waker
            .wake()
            .map_err(|e| format!("cannot wake the relay: {e}"))?;
        match rx.recv_timeout(ANSWER_WITHIN) {
            Ok(r) => r,
            Err(_) => Err("tcpspy is stopping".into()),
        }
    }

    /// Everything queued, oldest first (the reactor's side).
    pub fn drain(&self) -> Vec<Request> {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect()
    }
}

//! The listeners, and when to take new clients from them. Each listener is edge-triggered, so
//! once tcpspy stops accepting it must remember to come back by itself; it stops when:
//! - the connection table is at `--max-connections` (until a connection ends);
//! - the log queue is full (until the logger drains it): new clients would add events to a
//!   queue that is already at its bound, so they wait in the kernel's backlog instead;
//! - the process is out of descriptors (EMFILE/ENFILE): retried every [`ACCEPT_RETRY`] from the
//!   poll timeout, since no event will come. A client accepted just before its upstream socket
//!   failed for lack of descriptors waits here too, to be connected when descriptors free up.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use crate::log::event::ConnId;
use crate::sys;

/// How long to wait before accepting again after running out of descriptors.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// An accepted client whose upstream connect waits (for a free descriptor).
pub struct Waiting {
    pub rule: usize,
    pub client: TcpStream,
    pub addr: SocketAddr,
    pub id: ConnId,
    pub at: SystemTime,
}

/// Why accepting stopped (each clears on its own condition).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Paused {
    /// At `--max-connections`.
    pub full: bool,
    /// The log queue is full.
    pub log: bool,
    /// Out of descriptors: retry at this time.
    pub until: Option<Instant>,
}

/// What an accept attempt gave.
pub enum Accepted {
    Client(TcpStream, SocketAddr),
    /// Nothing more for now (would block, or paused).
    None,
    /// Out of descriptors.
    Exhausted(io::Error),
}

/// Every rule's listener, in rule order (a token per listener from `base`).
pub struct Listeners {
    slots: Vec<Option<TcpListener>>,
    pub paused: Paused,
    /// Clients accepted while out of descriptors, oldest first.
    pub waiting: VecDeque<Waiting>,
    /// Out of descriptors was reported and not yet its end.
    pub exhausted: bool,
}

impl Listeners {
    /// Registers every listener with the poll: listener `i` gets `Token(base + i)`.
    pub fn register(
        listeners: Vec<TcpListener>,
        registry: &Registry,
        base: usize,
    ) -> io::Result<Listeners> {
        let mut slots = Vec::with_capacity(listeners.len());
        for (i, mut l) in listeners.into_iter().enumerate() {
            registry.register(&mut l, Token(base + i), Interest::READABLE)?;
            slots.push(Some(l));
        }
        Ok(Listeners {
            slots,
            paused: Paused::default(),
            waiting: VecDeque::new(),
            exhausted: false,
        })
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// True if any reason to hold new clients back holds.
    pub fn is_paused(&self) -> bool {
        self.paused.full || self.paused.log || self.paused.until.is_some()
    }

    /// Takes one client from listener `rule`, if there is one.
    pub fn accept_one(&mut self, rule: usize) -> Accepted {
        let Some(Some(listener)) = self.slots.get(rule) else {
            return Accepted::None;
        };
        loop {
            match listener.accept() {
                Ok((sock, addr)) => return Accepted::Client(sock, addr),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Accepted::None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if sys::is_resource_exhaustion(&e) => return Accepted::Exhausted(e),
                // A client that gave up before we took it (ECONNABORTED) and the like: the
                // next one may be fine.
                Err(_) => {}
            }
        }
    }

    /// Stops accepting for [`ACCEPT_RETRY`]; returns true the first time (to say so once).
    pub fn out_of_descriptors(&mut self, now: Instant) -> bool {
        self.paused.until = now.checked_add(ACCEPT_RETRY);
        !std::mem::replace(&mut self.exhausted, true)
    }

    /// Puts `listener` in slot `i` (one past the last adds a slot), registered with
    /// `Token(base + i)`; a listener already there is closed first.
    pub fn set(
        &mut self,
        i: usize,
        mut listener: TcpListener,
        registry: &Registry,
        base: usize,
    ) -> io::Result<()> {
        if i > self.slots.len() {
            return Err(io::Error::other("no such listener slot"));
        }
        self.close_one(i, registry);
        registry.register(&mut listener, Token(base + i), Interest::READABLE)?;
        match self.slots.get_mut(i) {
            Some(slot) => *slot = Some(listener),
            None => self.slots.push(Some(listener)),
        }
        Ok(())
    }

    /// Closes listener `i`, if open (its rule was disabled).
    pub fn close_one(&mut self, i: usize, registry: &Registry) {
        if let Some(mut l) = self.slots.get_mut(i).and_then(Option::take) {
            let _ = registry.deregister(&mut l);
        }
    }

    /// Closes every listener (a stop).
    pub fn close(&mut self, registry: &Registry) {
        for slot in &mut self.slots {
            if let Some(mut l) = slot.take() {
                let _ = registry.deregister(&mut l);
            }
        }
    }
}

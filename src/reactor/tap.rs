//! What the log hears of a connection's relay: [`LogTap`] is the record stage as the
//! connection table lends it to a connection while driving it (chunks and ends to the log
//! queue, stamped as they happen; the pauses of reading kept in the connection's [`Story`] and
//! told when they last long enough to matter), and [`log_unconnected`] logs a connection that
//! never got as far as a table entry.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use crate::log::event::{ConnId, Event, Holds};
use crate::log::queue::Sender;
use crate::relay::Tap;
use crate::types::{Dir, End, Hold, Side};

/// Pauses shorter than this are only counted; longer ones get a line in the hex dump.
pub const HOLD_REPORT: Duration = Duration::from_millis(100);

/// What a connection's hex dump tells beyond its bytes: when and why reading paused.
#[derive(Default)]
pub struct Story {
    /// A pause under way per direction: when it began, and why.
    held: [Option<(Instant, SystemTime, Hold)>; 2],
    pub totals: [Holds; 2],
}

impl Story {
    /// Ends the pause of `dir`, if any; returns the event to log if it lasted long enough.
    pub fn release(&mut self, id: ConnId, dir: Dir, now: Instant) -> Option<Event> {
        let (began, since, why) = self.held[dir.index()].take()?;
        let lasted = now.saturating_duration_since(began);
        self.totals[dir.index()].add(why, lasted);
        (lasted >= HOLD_REPORT).then_some(Event::Held {
            id,
            dir,
            why,
            since,
            lasted,
        })
    }
}

/// Reports a connection's relay to the log queue, stamping each event when it happens.
pub struct LogTap<'a> {
    pub tx: &'a Sender,
    pub id: ConnId,
    /// Copy the relayed bytes to the log (false with `--log none` and no live view).
    pub data: bool,
    /// False while tcpspy stops: nothing more is read.
    pub may_read: bool,
    /// The connection's story, made on its first pause (most connections never pause long
    /// enough to need one, and an idle connection should cost little).
    pub story: Option<&'a mut Option<Box<Story>>>,
    pub now: Instant,
}

impl<'a> LogTap<'a> {
    /// A tap that reads nothing and copies no bytes (for ending a connection from outside).
    pub fn new(tx: &'a Sender, id: ConnId, now: Instant) -> LogTap<'a> {
        LogTap {
            tx,
            id,
            data: false,
            may_read: false,
            story: None,
            now,
        }
    }
}

impl Tap for LogTap<'_> {
    fn now(&self) -> Instant {
        self.now
    }

    fn wants_data(&self) -> bool {
        self.data
    }

    fn ready(&mut self) -> bool {
        self.may_read && (!self.data || self.tx.has_room() || !self.tx.wait_for_room())
    }

    fn data(&mut self, dir: Dir, bytes: &[u8]) {
        if self.data {
            let (id, at) = (self.id, SystemTime::now());
            self.tx
                .send_data(bytes, |bytes| Event::Data { id, dir, at, bytes });
        }
    }

    fn end(&mut self, side: Side, how: &End) {
        self.tx.send(Event::End {
            id: self.id,
            side,
            how: how.clone(),
            at: SystemTime::now(),
        });
    }

    fn hold(&mut self, dir: Dir, why: Hold) {
        // A stop also refuses reads; that is not a pause worth telling.
        if let (Some(story), true) = (&mut self.story, self.may_read) {
            let story = story.get_or_insert_with(Box::default);
            story.held[dir.index()] = Some((self.now, SystemTime::now(), why));
        }
    }

    fn release(&mut self, dir: Dir) {
        let (id, now) = (self.id, self.now);
        let story = self.story.as_mut().and_then(|s| s.as_deref_mut());
        if let Some(event) = story.and_then(|s| s.release(id, dir, now)) {
            self.tx.send(event);
        }
    }

    fn note(&mut self, dir: Dir, stage: &'static str, text: String) {
        self.tx.send(Event::Note {
            id: self.id,
            dir,
            stage,
            text,
            at: SystemTime::now(),
        });
    }
}

/// A connection that ended before it had a table entry (a connect that failed at once, a
/// client still waiting for a descriptor when tcpspy stopped): its open, its ends and its
/// close, all at once.
pub fn log_unconnected(
    tx: &Sender,
    id: ConnId,
    rule: usize,
    client: SocketAddr,
    target: SocketAddr,
    at: SystemTime,
    ends: Vec<(Side, End)>,
) {
    tx.send(Event::Open {
        id,
        rule,
        client,
        target,
        local: unspecified(&target),
        at,
        target_name: None,
    });
    log_ends(tx, id, ends);
}

/// The ends and the close of a connection that relayed nothing (its open is logged).
pub fn log_ends(tx: &Sender, id: ConnId, ends: Vec<(Side, End)>) {
    for (side, how) in &ends {
        tx.send(Event::End {
            id,
            side: *side,
            how: how.clone(),
            at: SystemTime::now(),
        });
    }
    tx.send(Event::Close {
        id,
        at: SystemTime::now(),
        bytes: [0; 2],
        undelivered: [0; 2],
        ends,
        held: Default::default(),
        tcp: Box::new([None, None]),
    });
}

/// The unspecified address of `like`'s family (a local address never bound).
pub fn unspecified(like: &SocketAddr) -> SocketAddr {
    let ip = match like {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

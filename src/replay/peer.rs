//! The scripted peer: one side of a connection played from a recording, as the reactor's
//! [`Transport::Script`](crate::reactor::transport::Transport) variant. To the relay it is a
//! stream like a socket: reading it gives the recorded side's next act when its turn has come
//! ([`super::script`]), writing it hands it the other side's bytes, and
//! [`Socket::due`] tells the connection table when it has something to do, since no poll
//! event ever comes for it. `tcpspy replay` plays the client against a real server, `tcpspy
//! mock` the server for a real client; everything goes through the relay, so the new
//! conversation is logged like any other.
//!
//! Its state is shared ([`Shared`]) with whoever started it: the replay reads the server's
//! answer from there once the reactor is done.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use super::mock::{self, Check, Choice, Mismatch, OnMismatch};
use super::recording::Recording;
use super::script::{Options, Out, Player};
use crate::log::event::{ConnId, Event};
use crate::log::queue::Sender;
use crate::relay::{Due, Socket, Stream};
use crate::types::{Dir, End, Side};

/// The names scripted peers give their story lines in the hex dump: the side they play
/// (`Replay client on ...`, `Mock server on ...`).
pub const STAGE_REPLAY: &str = "client";
pub const STAGE_MOCK: &str = "server";

/// What a scripted peer did, for its starter to read.
#[derive(Default)]
pub struct Shared {
    /// The other side's bytes (a replay compares them; a mock keeps them only until it has
    /// chosen its recording), at most [`KEPT`] past what the recording has.
    pub heard: Vec<u8>,
    /// How many bytes the other side sent in all.
    pub heard_total: u64,
    /// The other side half-closed.
    pub heard_end: bool,
    /// Acts that went on a turn timeout.
    pub timeouts: u32,
    /// The recording chosen (mock), by index.
    pub chosen: Option<usize>,
    /// The first departure of the client from the recorded one (mock).
    pub mismatch: Option<Mismatch>,
    /// How the connection's sides ended, once it closed.
    pub ends: Option<Vec<(Side, End)>>,
}

/// Bytes of the other side kept beyond the recorded amount: enough to show any difference,
/// bounded against a server that never stops.
pub const KEPT: usize = 16 << 20;

/// The recordings a mock answers from, and how.
#[derive(Debug)]
pub struct MockPlan {
    pub recordings: Vec<Recording>,
    pub on_mismatch: OnMismatch,
    pub options: Options,
}

enum Role {
    /// Plays the recorded client of one recording.
    Client,
    /// Plays the recorded server of the recording the client's first bytes choose.
    Server {
        plan: Arc<MockPlan>,
        check: Option<Check>,
    },
}

pub struct ScriptPeer {
    role: Role,
    options: Options,
    player: Option<Player>,
    shared: Arc<Mutex<Shared>>,
    addr: SocketAddr,
    log: Option<(Arc<Sender>, ConnId)>,
    /// The end this peer asks for (a mismatch, a replay that is over).
    end: Option<End>,
    /// Set once the end was asked for, so it is asked once.
    ended: bool,
    /// The recorded answer's length (a replay): what it awaits and how much of the answer it
    /// keeps.
    recorded: usize,
}

impl ScriptPeer {
    /// The client of `rec`, for a replay; `addr` is what it stands for in messages.
    pub fn client(
        rec: &Recording,
        options: Options,
        addr: SocketAddr,
        now: Instant,
    ) -> (ScriptPeer, Arc<Mutex<Shared>>) {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let player = Player::new(rec, Side::Client, options, now);
        let recorded = rec.stream(Side::Server).len();
        let peer = ScriptPeer {
            recorded,
            role: Role::Client,
            options,
            player: Some(player),
            shared: shared.clone(),
            addr,
            log: None,
            end: None,
            ended: false,
        };
        (peer, shared)
    }

    /// A server answering from `plan`'s recordings, for a mock; `addr` is the mock's address.
    pub fn server(plan: Arc<MockPlan>, addr: SocketAddr, now: Instant) -> ScriptPeer {
        let options = plan.options;
        let mut peer = ScriptPeer {
            recorded: 0,
            role: Role::Server { plan, check: None },
            options,
            player: None,
            shared: Arc::new(Mutex::new(Shared::default())),
            addr,
            log: None,
            end: None,
            ended: false,
        };
        peer.choose(now);
        peer
    }

    /// Where its story lines go: the connection it is a side of.
    pub fn bind(&mut self, log: Arc<Sender>, id: ConnId) {
        self.log = Some((log, id));
    }

    pub fn shared(&self) -> Arc<Mutex<Shared>> {
        self.shared.clone()
    }

    fn side(&self) -> Side {
        match self.role {
            Role::Client => Side::Client,
            Role::Server { .. } => Side::Server,
        }
    }

    fn with_shared(&self, f: impl FnOnce(&mut Shared)) {
        // A poisoned lock means a panic elsewhere; the record then simply lacks this.
        if let Ok(mut s) = self.shared.lock() {
            f(&mut s);
        }
    }

    fn note(&self, text: String, to_stderr: bool) {
        let Some((log, id)) = &self.log else { return };
        let (stage, command) = match self.role {
            Role::Client => (STAGE_REPLAY, "replay"),
            Role::Server { .. } => (STAGE_MOCK, "mock"),
        };
        if to_stderr {
            log.send(Event::Line(format!("#{id:04} {command}: {text}")));
        }
        log.send(Event::Note {
            id: *id,
            dir: Dir::from(self.side().other()),
            stage,
            text,
            at: SystemTime::now(),
        });
    }

    /// A mock picks its recording as soon as the client's bytes tell which.
    fn choose(&mut self, now: Instant) {
        let Role::Server { plan, check } = &mut self.role else {
            return;
        };
        if self.player.is_some() {
            return;
        }
        let (heard, heard_end) = match self.shared.lock() {
            Ok(s) => (s.heard.clone(), s.heard_end),
            Err(_) => (Vec::new(), false),
        };
        match mock::choose(&plan.recordings, &heard, heard_end) {
            Choice::Wait => {}
            Choice::Chosen(i) => {
                let Some(rec) = plan.recordings.get(i) else {
                    return;
                };
                let mut player = Player::new(rec, Side::Server, self.options, now);
                player.hear(heard.len(), now);
                if heard_end {
                    player.hear_end(now);
                }
                let mut c = Check::new(rec);
                let first = c.feed(&heard);
                *check = Some(c);
                self.player = Some(player);
                let origin = rec.origin.clone();
                let many = plan.recordings.len() > 1;
                self.with_shared(|s| s.chosen = Some(i));
                if many {
                    self.note(format!("answering as recorded in {origin}"), false);
                }
                if let Some(m) = first {
                    self.mismatch(m);
                }
            }
            Choice::None => {
                // Told against the recording the client went along with longest (the first of equals).
                let nearest = plan
                    .recordings
                    .iter()
                    .rev()
                    .filter_map(|r| Check::new(r).feed(&heard).map(|m| (m, &r.origin)))
                    .max_by_key(|(m, _)| m.offset);
                let (m, origin) = match nearest {
                    Some((m, o)) => (m, o.clone()),
                    None => (
                        Mismatch {
                            offset: 0,
                            expected: Vec::new(),
                            received: heard.iter().take(16).copied().collect(),
                        },
                        String::new(),
                    ),
                };
                let n = plan.recordings.len();
                let text = match n {
                    1 => format!("the client departs from the recorded one at {}", m.text()),
                    _ => format!(
                        "no recording of {n} has this first client chunk; the nearest, {origin}, \
                         departs at {}",
                        m.text()
                    ),
                };
                let on = plan.on_mismatch;
                self.note(text, true);
                self.with_shared(|s| s.mismatch = Some(m));
                self.end = Some(mismatch_end(on));
            }
        }
    }

    fn mismatch(&mut self, m: Mismatch) {
        let Role::Server { plan, .. } = &self.role else {
            return;
        };
        let on = plan.on_mismatch;
        let what = match on {
            OnMismatch::Close => "closing",
            OnMismatch::Reset => "resetting",
            OnMismatch::Continue => "going on",
        };
        self.note(format!("mismatch at {}; {what}", m.text()), true);
        let first = self
            .shared
            .lock()
            .map(|s| s.mismatch.is_none())
            .unwrap_or(false);
        if first {
            self.with_shared(|s| s.mismatch = Some(m));
        }
        if on != OnMismatch::Continue {
            self.end = Some(mismatch_end(on));
        }
    }
}

fn mismatch_end(on: OnMismatch) -> End {
    End::Fault {
        name: "mock (mismatch)".into(),
        reset: on == OnMismatch::Reset,
    }
}

impl Stream for ScriptPeer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let now = Instant::now();
        let Some(p) = &mut self.player else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        if self.end.is_some() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let out = p.read(buf, now);
        let timeouts = p.timeouts;
        self.with_shared(|s| s.timeouts = timeouts);
        match out {
            Out::Bytes(n) => Ok(n),
            Out::Fin => Ok(0),
            Out::Reset => Err(io::ErrorKind::ConnectionReset.into()),
            Out::Wait => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let now = Instant::now();
        let keep = match &self.role {
            Role::Client => self.recorded.saturating_add(KEPT),
            Role::Server { .. } if self.player.is_some() => 0,
            Role::Server { .. } => KEPT,
        };
        self.with_shared(|s| {
            s.heard_total = s.heard_total.saturating_add(buf.len() as u64);
            let room = keep.saturating_sub(s.heard.len()).min(buf.len());
            s.heard.extend_from_slice(buf.get(..room).unwrap_or(&[]));
        });
        if let Some(p) = &mut self.player {
            p.hear(buf.len(), now);
        }
        let found = match &mut self.role {
            Role::Server { check: Some(c), .. } => c.feed(buf),
            _ => None,
        };
        if let Some(m) = found {
            self.mismatch(m);
        }
        self.choose(now);
        Ok(buf.len())
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        let now = Instant::now();
        self.with_shared(|s| s.heard_end = true);
        if let Some(p) = &mut self.player {
            p.hear_end(now);
        }
        self.choose(now);
        Ok(())
    }
}

impl Socket for ScriptPeer {
    fn take_error(&self) -> io::Result<Option<io::Error>> {
        Ok(None)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }

    fn due(&mut self, now: Instant) -> Option<Due> {
        if self.ended {
            return Some(Due::Idle);
        }
        if let Some(how) = self.end.take() {
            self.ended = true;
            return Some(Due::End(how));
        }
        let Some(p) = &self.player else {
            return Some(Due::Idle);
        };
        if matches!(self.role, Role::Client)
            && let Some(t) = p.done_at()
        {
            if t <= now {
                let n = p.heard();
                let want = self.recorded;
                self.note(
                    format!(
                        "the recorded client is done; the server sent {n} of the {want} bytes \
                         recorded and did not close: ending the replay"
                    ),
                    false,
                );
                self.ended = true;
                return Some(Due::End(End::Fault {
                    name: "replay (done)".into(),
                    reset: false,
                }));
            }
            return Some(Due::At(t));
        }
        Some(p.due().map_or(Due::Idle, Due::At))
    }

    fn ended(&mut self, ends: &[(Side, End)]) {
        let ends = ends.to_vec();
        self.with_shared(|s| s.ends = Some(ends));
    }
}

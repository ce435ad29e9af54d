//! The reactor's part in `tcpspy replay` and `tcpspy mock`: connections with one scripted
//! side ([`ScriptPeer`]), relayed, timed and logged like any other. A replay is one
//! connection from a scripted client to the target, and the run ends with it; a mock answers
//! each accepted client with a scripted server instead of connecting upstream.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use mio::net::TcpStream;

use super::listen::Waiting;
use super::transport::Transport;
use super::{Reactor, add_faults};
use crate::log::event::{ConnId, Event};
use crate::relay::Conn;
use crate::replay::peer::{MockPlan, ScriptPeer};

impl Reactor {
    /// Starts a replay: connects to `target` (rule 0's) and relays between it and the scripted
    /// client; the run ends when this connection has. Returns its number.
    pub fn play(
        &mut self,
        mut client: ScriptPeer,
        target: SocketAddr,
        now: Instant,
    ) -> io::Result<ConnId> {
        let id = self.next_id;
        self.next_id = self.next_id.saturating_add(1);
        self.table.count_connection();
        let server = TcpStream::connect(target)?;
        let _ = server.set_nodelay(true);
        let local = server
            .local_addr()
            .unwrap_or_else(|_| super::tap::unspecified(&target));
        client.bind(self.log.clone(), id);
        self.log.send(Event::Open {
            id,
            rule: 0,
            client: local,
            target,
            local,
            at: SystemTime::now(),
            target_name: None,
        });
        let mut conn = Conn::new(Transport::Script(Box::new(client)), Transport::Tcp(server));
        add_faults(&self.settings, &mut conn, 0, id, now);
        let key = self.table.insert(id, 0, local, target, conn, now);
        self.register(key, false, now);
        self.once = true;
        Ok(id)
    }

    /// Answers an accepted client with a scripted server playing `plan`'s recordings.
    pub(super) fn mock(&mut self, w: Waiting, plan: Arc<MockPlan>, now: Instant) {
        let at = self
            .settings
            .rules
            .get(w.rule)
            .map_or_else(|| super::tap::unspecified(&w.addr), |r| r.listen);
        let local = w.client.local_addr().unwrap_or(at);
        let mut server = ScriptPeer::server(plan, local, now);
        server.bind(self.log.clone(), w.id);
        // No upstream leg: the client's own address stands for it, so that the files of the
        // two directions have names of their own.
        self.log.send(Event::Open {
            id: w.id,
            rule: w.rule,
            client: w.addr,
            target: local,
            local: w.addr,
            at: w.at,
            target_name: None,
        });
        self.log.send(Event::Connected {
            id: w.id,
            at: SystemTime::now(),
        });
        let mut conn = Conn::new(
            Transport::Tcp(w.client),
            Transport::Script(Box::new(server)),
        );
        conn.connected();
        let key = self.table.insert(w.id, w.rule, w.addr, local, conn, now);
        self.register(key, false, now);
        // The client's first event may be long in coming (a server that speaks first).
        self.table.drive(key, now);
    }
}

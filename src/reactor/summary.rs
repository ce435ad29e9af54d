//! What went through the reactor, for the summary on SIGUSR1 and at exit: the connection
//! count, the bytes each way, how often reading paused for the log, the busiest connections.

use std::net::SocketAddr;

use crate::log::event::ConnId;

/// What went through the reactor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub connections: u64,
    /// Bytes delivered, indexed by [`crate::types::Dir`].
    pub bytes: [u64; 2],
    /// Times reading paused because the log queue was full.
    pub log_stalls: u64,
    /// The connections that carried the most bytes, most first: (bytes, description).
    pub busiest: Vec<(u64, String)>,
}

/// Connections named in a summary's "busiest" list.
const BUSIEST: usize = 5;

impl Totals {
    /// Keeps `desc` among the busiest if it carried enough.
    pub fn rank(list: &mut Vec<(u64, String)>, bytes: u64, desc: impl FnOnce() -> String) {
        if list.len() < BUSIEST || list.last().is_some_and(|(b, _)| bytes > *b) {
            let at = list.partition_point(|(b, _)| *b >= bytes);
            list.insert(at, (bytes, desc()));
            list.truncate(BUSIEST);
        }
    }

    /// `#0004 127.0.0.1:5000 -> 127.0.0.1:8000 (1234 bytes), ...`
    pub fn busiest_text(&self) -> String {
        let v: Vec<String> = self
            .busiest
            .iter()
            .map(|(b, d)| format!("{d} ({b} bytes)"))
            .collect();
        if v.is_empty() {
            "none".into()
        } else {
            v.join(", ")
        }
    }
}

/// What went through so far, as SIGUSR1 and the exit print it.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Connections open (or waiting for a descriptor) now.
    pub open: u64,
    pub totals: Totals,
}

impl Summary {
    pub fn line(&self) -> String {
        let t = &self.totals;
        format!(
            "tcpspy: connections: {} ({} open, {} closed); clients sent {} bytes, servers sent {} bytes; \
             reads paused for the log: {}; busiest: {}",
            t.connections,
            self.open,
            t.connections.saturating_sub(self.open),
            t.bytes[0],
            t.bytes[1],
            t.log_stalls,
            t.busiest_text()
        )
    }
}

/// `#0004 127.0.0.1:5000 -> 127.0.0.1:8000`
pub fn describe(
    prefix: &Option<String>,
    id: ConnId,
    client: SocketAddr,
    target: SocketAddr,
) -> String {
    match prefix {
        Some(p) => format!("#{p}-{id:04} {client} -> {target}"),
        None => format!("#{id:04} {client} -> {target}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busiest_keeps_the_top_five_in_order() {
        let mut list = Vec::new();
        for (b, name) in [
            (5, "e"),
            (50, "a"),
            (1, "x"),
            (40, "b"),
            (30, "c"),
            (20, "d"),
            (10, "f"),
        ] {
            Totals::rank(&mut list, b, || name.to_string());
        }
        let names: Vec<&str> = list.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d", "f"]);
        let t = Totals {
            busiest: list,
            ..Totals::default()
        };
        assert!(t.busiest_text().starts_with("a (50 bytes), b (40 bytes)"));
        assert_eq!(Totals::default().busiest_text(), "none");
    }
}

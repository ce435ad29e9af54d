//! Reads tcpspy's (and gotcpspy's) binary logs: one direction's bytes, nothing else. A lone
//! client-side file is one stream with no turns; with the server's file beside it (a log
//! directory without a hex dump) the client's whole stream goes first, then the server's is
//! awaited. Pure.

use crate::replay::recording::Recording;
use crate::types::Side;

/// The client's stream alone, sent as one chunk.
pub fn client_only(bytes: Vec<u8>, origin: &str) -> Recording {
    let mut r = Recording::new(origin);
    r.data(Side::Client, bytes, None);
    r
}

/// Both directions' files: the client's stream, then the server's.
pub fn both(client: Vec<u8>, server: Vec<u8>, origin: &str) -> Recording {
    let mut r = client_only(client, origin);
    r.data(Side::Server, server, None);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_stream_then_the_other() {
        let r = both(b"ask".to_vec(), b"answer".to_vec(), "b");
        assert_eq!(r.steps.len(), 2);
        assert_eq!(r.first_side(), Some(Side::Client));
        assert_eq!(r.stream(Side::Server), b"answer");
        assert!(client_only(Vec::new(), "e").steps.is_empty());
    }
}

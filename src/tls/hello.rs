//! When a client's bytes are taken for a ClientHello: a chunk that begins a TLS handshake
//! record (content type 22, version 3.x) whose first message is a ClientHello (type 1), read
//! at a chunk boundary of the client's stream while nothing of the server's waits to be
//! delivered. That covers TLS from the first byte (HTTPS, MQTT over TLS, Redis with TLS) and
//! upgrades after the server's go-ahead: PostgreSQL's SSLRequest (`S`), SMTP, IMAP and POP3
//! STARTTLS, LDAP StartTLS, XMPP. A chunk shorter than the record header is taken if what it
//! has agrees; the handshake then reads the rest, and bytes that turn out not to be a
//! ClientHello are relayed as they came.

/// TLS record content type of a handshake.
const HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;

/// True if `chunk` can be the start of a ClientHello record.
pub fn starts_client_hello(chunk: &[u8]) -> bool {
    let at = |i: usize| chunk.get(i).copied();
    at(0) == Some(HANDSHAKE)
        && at(1).is_none_or(|v| v == 3)
        && at(2).is_none_or(|v| v <= 4)
        && at(5).is_none_or(|t| t == CLIENT_HELLO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hellos_and_not() {
        assert!(starts_client_hello(&[22, 3, 1, 2, 0, 1, 0, 1, 252]));
        assert!(starts_client_hello(&[22, 3, 3]));
        assert!(starts_client_hello(&[22]));
        assert!(!starts_client_hello(b""));
        assert!(!starts_client_hello(b"GET / HTTP/1.1\r\n"));
        assert!(!starts_client_hello(&[22, 2, 0]), "SSLv2-era version");
        assert!(!starts_client_hello(&[22, 3, 3, 0, 40, 2]), "a ServerHello");
        assert!(!starts_client_hello(&[23, 3, 3, 0, 5]), "application data");
        // PostgreSQL's SSLRequest is not one: it comes before.
        assert!(!starts_client_hello(&[0, 0, 0, 8, 4, 210, 22, 47]));
    }
}

//! Log file names, as gotcpspy made them:
//!
//! - hex dump: `log-<stamp>-<NNNN>-<local>-<remote>.log`, where `<local>` is the proxy's address
//!   on the upstream connection and `<remote>` the target's;
//! - binary, one per direction: `log-binary-<stamp>-<NNNN>-<peer>.log`, the client-to-server
//!   bytes named after `<local>`, the server-to-client bytes after `<remote>`;
//! - the capture, one per run: `capture-<stamp>.pcapng`; under `--log-budget` it goes on in
//!   parts named after the first: `capture-<stamp>-1.pcapng`, `capture-<stamp>-2.pcapng`, ...
//! - the connection index, `connections.jsonl`, shared by runs; under `--log-budget` this
//!   run's lines go on in parts of its own: `connections-<stamp>-1.jsonl`, ...
//!
//! Addresses come from the kernel, but every character outside `[A-Za-z0-9.-]` is still
//! replaced, so nothing can make a name leave the log directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::types::Dir;

/// `127.0.0.1:8080` becomes `127.0.0.1-8080`; `[::1]:8080` becomes `--1-8080`.
pub fn printable_addr(addr: &SocketAddr) -> String {
    addr.to_string()
        .chars()
        .filter(|c| !matches!(c, '[' | ']'))
        .map(|c| match c {
            ':' => '-',
            c if c.is_ascii_alphanumeric() || c == '.' || c == '-' => c,
            _ => '_',
        })
        .collect()
}

/// Connection numbers: four digits, wider past 9999.
pub fn number(id: u64) -> String {
    format!("{id:04}")
}

/// The hex dump's file name; `label` is the connection's number as [`number`] makes it.
pub fn hex_name(stamp: &str, label: &str, local: &SocketAddr, remote: &SocketAddr) -> String {
    format!(
        "log-{stamp}-{label}-{}-{}.log",
        printable_addr(local),
        printable_addr(remote)
    )
}

/// The binary log's file name for one direction.
pub fn binary_name(
    stamp: &str,
    label: &str,
    dir: Dir,
    local: &SocketAddr,
    remote: &SocketAddr,
) -> String {
    let peer = match dir {
        Dir::ClientToServer => local,
        Dir::ServerToClient => remote,
    };
    format!("log-binary-{stamp}-{label}-{}.log", printable_addr(peer))
}

/// The capture's file name.
pub fn capture_name(stamp: &str) -> String {
    format!("capture-{stamp}.pcapng")
}

/// The name of part `n` (from 1) of this run's connection index.
pub fn index_part(stamp: &str, n: u32) -> String {
    format!("connections-{stamp}-{n}.jsonl")
}

/// The name of part `n` of a capture whose first part is `first`: `-n` before the extension.
pub fn capture_part(first: &Path, n: u32) -> PathBuf {
    let stem = first
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match first.extension() {
        Some(ext) => format!("{stem}-{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{n}"),
    };
    first.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn names_as_gotcpspy() {
        let (l, r) = (a("127.0.0.1:49544"), a("10.0.0.5:110"));
        assert_eq!(
            hex_name("2012.04.20-19.55.17", "0001", &l, &r),
            "log-2012.04.20-19.55.17-0001-127.0.0.1-49544-10.0.0.5-110.log"
        );
        assert_eq!(
            binary_name("2012.04.20-19.55.17", "0001", Dir::ClientToServer, &l, &r),
            "log-binary-2012.04.20-19.55.17-0001-127.0.0.1-49544.log"
        );
        assert_eq!(
            binary_name("2012.04.20-19.55.17", "0001", Dir::ServerToClient, &l, &r),
            "log-binary-2012.04.20-19.55.17-0001-10.0.0.5-110.log"
        );
        assert_eq!(number(12345), "12345");
        assert_eq!(
            capture_name("2012.04.20-19.55.17"),
            "capture-2012.04.20-19.55.17.pcapng"
        );
        assert_eq!(
            capture_part(Path::new("logs/capture-2012.04.20-19.55.17.pcapng"), 2),
            Path::new("logs/capture-2012.04.20-19.55.17-2.pcapng")
        );
        assert_eq!(
            capture_part(Path::new("/tmp/run"), 1),
            Path::new("/tmp/run-1")
        );
    }

    #[test]
    fn ipv6_is_safe() {
        assert_eq!(printable_addr(&a("[::1]:8080")), "--1-8080");
        assert_eq!(printable_addr(&a("[fe80::1%2]:80")), "fe80--1_2-80");
        let n = hex_name("s", "0002", &a("[::1]:5000"), &a("[2001:db8::7]:443"));
        assert_eq!(n, "log-s-0002---1-5000-2001-db8--7-443.log");
        assert!(!n.contains('/') && !n.contains(':') && !n.contains('['));
    }
}

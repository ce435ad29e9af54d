//! Finds one connection's records in a log directory: by its line in `connections.jsonl`
//! (number or id), or, for directories written before the index existed, by the number in
//! the file names (`log-STAMP-NNNN-LOCAL-REMOTE.log`, `log-binary-STAMP-NNNN-PEER.log`).
//! Which record is read is the caller's choice ([`super::open`]): the hex dump first, for
//! its turns and times. Pure apart from listing and reading the directory.

use std::path::{Path, PathBuf};

/// The files that hold one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Files {
    /// The connection's number as the file names write it (`0001`).
    pub number: String,
    pub hex: Option<PathBuf>,
    /// The client's and the server's binary logs, when known apart.
    pub binary: [Option<PathBuf>; 2],
    /// Captures in the directory, which may hold the connection.
    pub captures: Vec<PathBuf>,
}

/// True if `index_number` (`"0001"`, `"4242-0001"` under --reuse-port) or `id` is `wanted`.
fn is_wanted(index_number: &str, id: Option<u64>, wanted: &str) -> bool {
    let tail = index_number.rsplit('-').next().unwrap_or(index_number);
    index_number == wanted
        || match wanted.parse::<u64>() {
            Ok(n) => tail.parse::<u64>().ok() == Some(n) || id == Some(n),
            Err(_) => false,
        }
}

/// The connection's files named by `connections.jsonl`'s text, if it has a line for it.
pub fn from_index(index: &str, wanted: &str) -> Option<(String, Vec<String>)> {
    index.lines().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let number = v.get("number")?.as_str()?;
        if !is_wanted(number, v.get("id").and_then(|i| i.as_u64()), wanted) {
            return None;
        }
        let files = v
            .get("files")?
            .as_array()?
            .iter()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect();
        Some((number.to_string(), files))
    })
}

/// The number in a log file's name, and whether it is a binary log.
pub fn name_number(name: &str) -> Option<(bool, &str)> {
    let rest = name.strip_prefix("log-")?;
    let (binary, rest) = match rest.strip_prefix("binary-") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    // The stamp is `YYYY.MM.DD-HH.MM.SS`: 19 characters, then `-`.
    let rest = rest.get(20..)?;
    let end = rest.find('-').unwrap_or(rest.len());
    let number = rest.get(..end)?;
    (!number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())).then_some((binary, number))
}

/// Sorts a connection's file names into its records. A binary log is the client's when its
/// peer is the hex dump's LOCAL part (the proxy's address toward the server, as gotcpspy
/// named the outgoing file), the server's when it is the REMOTE part.
pub fn sort(dir: &Path, number: &str, names: &[String]) -> Files {
    let mut files = Files {
        number: number.to_string(),
        ..Files::default()
    };
    let hex_name = names
        .iter()
        .find(|n| matches!(name_number(n), Some((false, _))));
    let hex_peers = hex_name.and_then(|h| {
        let stem = h.strip_suffix(".log").unwrap_or(h);
        let rest = stem.get(4..)?.get(20..)?;
        let rest = rest.get(rest.find('-')?.saturating_add(1)..)?;
        Some(rest.to_string())
    });
    let peer_of = |n: &str, num: &str| -> Option<String> {
        let stem = n.strip_suffix(".log").unwrap_or(n);
        stem.get(stem.find(num).map_or(0, |i| i + num.len() + 1)..)
            .map(str::to_string)
    };
    // No hex dump to tell: the client's file is named after tcpspy's own address toward the
    // server, an ephemeral port, the server's after the target's port; that tells them apart
    // when exactly one of the two is ephemeral.
    let ephemerals = names
        .iter()
        .filter_map(|n| match name_number(n) {
            Some((true, num)) => peer_of(n, num),
            _ => None,
        })
        .filter(|p| ephemeral(p))
        .count();
    for n in names {
        match name_number(n) {
            Some((false, _)) => files.hex = Some(dir.join(n)),
            Some((true, num)) => {
                let peer = peer_of(n, num);
                let side = match (peer.as_deref(), &hex_peers) {
                    (Some(p), Some(h)) if h.starts_with(&format!("{p}-")) => Some(0),
                    (Some(p), Some(h)) if h.ends_with(&format!("-{p}")) => Some(1),
                    (Some(p), None) if ephemerals == 1 => Some(usize::from(!ephemeral(p))),
                    _ => None,
                };
                // The index lists the client's binary log before the server's.
                let slot = side.unwrap_or(usize::from(files.binary[0].is_some()));
                if let Some(s) = files.binary.get_mut(slot)
                    && s.is_none()
                {
                    *s = Some(dir.join(n));
                }
            }
            None => {}
        }
    }
    files
}

/// True if a printable address (`127.0.0.1-48306`) ends in an ephemeral port (32768 and up,
/// Linux's default range).
fn ephemeral(peer: &str) -> bool {
    peer.rsplit('-')
        .next()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p >= 32768)
}

/// Lists the directory: the named connection's files (by the index, else by file names) and
/// the captures.
pub fn find(dir: &Path, wanted: &str) -> Result<Files, String> {
    let index = std::fs::read_to_string(dir.join(crate::log::index::NAME)).unwrap_or_default();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let captures: Vec<PathBuf> = names
        .iter()
        .filter(|n| n.starts_with("capture-") && n.ends_with(".pcapng"))
        .map(|n| dir.join(n))
        .collect();
    let mut files = match from_index(&index, wanted) {
        Some((number, listed)) => sort(dir, &number, &listed),
        None => {
            let mine: Vec<String> = names
                .iter()
                .filter(|n| name_number(n).is_some_and(|(_, num)| is_wanted(num, None, wanted)))
                .cloned()
                .collect();
            let number = mine
                .first()
                .and_then(|n| name_number(n))
                .map_or_else(|| wanted.to_string(), |(_, num)| num.to_string());
            sort(dir, &number, &mine)
        }
    };
    // The index may name files that are gone (removed by hand, or by the log budget).
    files.hex = files.hex.filter(|p| p.is_file());
    for b in &mut files.binary {
        *b = b.take().filter(|p| p.is_file());
    }
    files.captures = captures;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_names() {
        let hex = "log-2026.11.29-12.27.54-0001-127.0.0.1-48306-127.0.0.1-18000.log";
        assert_eq!(name_number(hex), Some((false, "0001")));
        let bin = "log-binary-2026.11.29-12.27.54-12345-127.0.0.1-18000.log";
        assert_eq!(name_number(bin), Some((true, "12345")));
        assert_eq!(name_number("log-x.log"), None);
        assert_eq!(name_number("connections.jsonl"), None);
    }

    #[test]
    fn index_lines_and_sides_of_binary_logs() {
        let index = "{\"removed\":\"0001\"}\n{\"number\":\"0002\",\"id\":2,\"files\":[\"log-2026.11.29-12.27.54-0002-127.0.0.1-48306-127.0.0.1-18000.log\",\"log-binary-2026.11.29-12.27.54-0002-127.0.0.1-18000.log\",\"log-binary-2026.11.29-12.27.54-0002-127.0.0.1-48306.log\"]}\n";
        let (number, names) = from_index(index, "2").unwrap();
        assert_eq!(number, "0002");
        assert!(from_index(index, "1").is_none());
        let f = sort(Path::new("d"), &number, &names);
        assert!(f.hex.is_some());
        let client = f.binary[0].as_ref().unwrap().display().to_string();
        assert!(client.ends_with("127.0.0.1-48306.log"), "{client}");
        let server = f.binary[1].as_ref().unwrap().display().to_string();
        assert!(server.ends_with("127.0.0.1-18000.log"), "{server}");
        // Without the hex dump, by the ports.
        let f = sort(Path::new("d"), &number, &names[1..]);
        let client = f.binary[0].as_ref().unwrap().display().to_string();
        assert!(client.ends_with("127.0.0.1-48306.log"), "{client}");
    }
}

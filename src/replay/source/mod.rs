//! Where recordings come from: one reader per format tcpspy writes ([`hexdump`], which also
//! reads gotcpspy's dumps; [`pcapng`]; [`binary`]) and [`logdir`], which finds a connection's
//! files in a log directory. [`open`] reads the one recording `tcpspy replay` plays; [`all`]
//! the set `tcpspy mock` answers from. Errors are one line naming the file and, inside it,
//! the line or packet.

pub mod binary;
pub mod hexdump;
pub mod logdir;
pub mod pcapng;

use std::path::Path;

use super::recording::Recording;

/// Most bytes a recording file may have: the whole of it is read into memory.
pub const MAX_FILE: u64 = 1 << 30;

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_FILE {
        return Err(format!(
            "{}: {} bytes, more than a recording may have ({MAX_FILE})",
            path.display(),
            meta.len()
        ));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn file_name(path: &Path) -> Option<&str> {
    path.file_name().and_then(|n| n.to_str())
}

/// What a file holds, told from its bytes (and, for binary logs, its name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Capture,
    HexDump,
    Binary,
}

pub fn kind(bytes: &[u8]) -> Kind {
    if pcapng::looks_like(bytes) {
        Kind::Capture
    } else if std::str::from_utf8(bytes).is_ok_and(hexdump::looks_like) {
        Kind::HexDump
    } else {
        Kind::Binary
    }
}

/// Reads one file as a recording (`connection` picks a capture's conversation).
pub fn file(path: &Path, connection: Option<&str>) -> Result<Recording, String> {
    let bytes = read_file(path)?;
    let origin = path.display().to_string();
    let at = |e: String| format!("{origin}: {e}");
    match kind(&bytes) {
        Kind::Capture => pcapng::read(&bytes, &origin, connection).map_err(at),
        Kind::HexDump => {
            let text = String::from_utf8_lossy(&bytes);
            hexdump::read(&text, &origin, file_name(path)).map_err(at)
        }
        Kind::Binary => Ok(binary::client_only(bytes, &origin)),
    }
}

/// The recording `tcpspy replay SOURCE` plays: a file, or connection `connection` of a log
/// directory (its hex dump, else its conversation in a capture there, else its binary logs).
pub fn open(source: &Path, connection: Option<&str>) -> Result<Recording, String> {
    if !source.is_dir() {
        return file(source, connection);
    }
    let Some(wanted) = connection else {
        return Err(format!(
            "{} is a log directory: say which connection with --connection N",
            source.display()
        ));
    };
    let files = logdir::find(source, wanted)?;
    if let Some(hex) = &files.hex {
        return file(hex, None);
    }
    for capture in &files.captures {
        let bytes = read_file(capture)?;
        if let Ok(r) = pcapng::read(&bytes, &capture.display().to_string(), Some(&files.number)) {
            return Ok(r);
        }
    }
    match &files.binary {
        [Some(c), Some(s)] => Ok(binary::both(
            read_file(c)?,
            read_file(s)?,
            &c.display().to_string(),
        )),
        [Some(c), None] => Ok(binary::client_only(read_file(c)?, &c.display().to_string())),
        _ => Err(format!(
            "{}: no record of connection {wanted} (no hex dump, capture or binary log of it)",
            source.display()
        )),
    }
}

/// The recordings `tcpspy mock SOURCE` answers from: one file (a capture: each of its
/// conversations, or the one `connection` names), one connection of a log directory, or
/// every hex dump in a directory, in the order of their names (a log directory's names start
/// with the time, then the number), or, if it has none, every conversation of its captures.
pub fn all(source: &Path, connection: Option<&str>) -> Result<Vec<Recording>, String> {
    if !source.is_dir() {
        let bytes = read_file(source)?;
        if kind(&bytes) == Kind::Capture && connection.is_none() {
            let origin = source.display().to_string();
            let all = pcapng::read_all(&bytes, &origin).map_err(|e| format!("{origin}: {e}"))?;
            return Ok(all.into_iter().map(|(_, r)| r).collect());
        }
        return Ok(vec![file(source, connection)?]);
    }
    if connection.is_some() {
        return Ok(vec![open(source, connection)?]);
    }
    let entries = std::fs::read_dir(source).map_err(|e| format!("{}: {e}", source.display()))?;
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    let mut out = Vec::new();
    let mut captured = Vec::new();
    for p in paths {
        let name = file_name(&p).unwrap_or("");
        if !p.is_file() || name.starts_with("log-binary-") || name.ends_with(".jsonl") {
            continue;
        }
        let bytes = read_file(&p)?;
        let origin = p.display().to_string();
        let at = |e: String| format!("{origin}: {e}");
        match kind(&bytes) {
            Kind::Capture => {
                let convs = pcapng::read_all(&bytes, &origin).map_err(at)?;
                captured.extend(convs.into_iter().map(|(_, r)| r));
            }
            Kind::HexDump => {
                let text = String::from_utf8_lossy(&bytes);
                out.push(hexdump::read(&text, &origin, Some(name)).map_err(at)?);
            }
            Kind::Binary => {}
        }
    }
    // A log directory holds each connection in its hex dump and in the capture alike: the
    // captures count only where there is no hex dump.
    if out.is_empty() {
        out = captured;
    }
    if out.is_empty() {
        return Err(format!(
            "{}: no recording in it (hex dumps or captures)",
            source.display()
        ));
    }
    Ok(out)
}

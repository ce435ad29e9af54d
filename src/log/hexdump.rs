//! The hex dump: both directions of a connection in the order they were read.
//!
//! ```text
//! Connected to 127.0.0.1:110 at 2026.11.29-10.05.10.000102 (client 127.0.0.1:50000, via 127.0.0.1:40000)
//! Received (#0, 00000000) 6 bytes from 127.0.0.1:110 (server) at 2026.11.29-10.05.10.000233
//! 00000000  2b 4f 4b 0d 0a 00                                 |+OK...|
//! Disconnected from 127.0.0.1:50000 (client): EOF at 2026.11.29-10.05.11.300000
//! Finished at 2026.11.29-10.05.11.300100, duration 1.299998s, 6 bytes in, 0 bytes out
//! ```
//! `#n` counts chunks per direction from 0 and the offset in parentheses is where the chunk
//! starts in its direction's stream (hex, 8 digits and more past 4 GiB); the dump lines are
//! `hexdump -C`'s, offsets relative to the chunk. "in" is server to client, "out" client to
//! server, as gotcpspy's binary logs called them.
//!
//! Under `--log-budget`, chunks that did not fit are left out, and the dump says so where they
//! would have been:
//!
//! ```text
//! Not recording 127.0.0.1:50000 (client) from chunk #5 (00050000) on: the log budget is full; relaying goes on
//! Not recorded (log budget full): 491520 bytes in 8 chunks from 127.0.0.1:50000 (client), #5 to #12 at 00050000-000C7FFF; recording again from #13
//! ```
//! (or `; not recorded to the end` when the connection closed first). Chunk numbers and
//! offsets stay those of the whole stream, so the chunks that are there say where they were.
//!
//! Formatting is pure and writes into a `Vec<u8>`; [`parse`] reads a dump back, [`gaps`] its
//! not-recorded lines and [`coverage`] checks the two together (tests and tools use them;
//! they must not panic on any input).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::types::{Dir, End, Hold, Side};

use super::budget::Gap;
use super::event::ConnId;
use super::files::FileId;
use super::stamp::Stamper;
use super::{Closed, ConnInfo, Io, Output, naming, stamp};

/// The hex-dump output: one file per connection.
#[derive(Default)]
pub struct HexLog {
    conns: HashMap<ConnId, FileId>,
}

impl HexLog {
    /// Writes the scratch buffer to the connection's file.
    fn write(&self, conn: &ConnInfo, io: &mut Io) {
        if let Some(f) = self.conns.get(&conn.id) {
            let r = io.files.write(*f, &io.scratch);
            io.check(r);
        }
    }
}

/// Room for the lines a chunk adds besides its dump: its header and the first-byte line.
const CHUNK_LINES: u64 = 512;

impl Output for HexLog {
    fn name(&self) -> &'static str {
        "the hex dumps"
    }

    fn kind(&self) -> &'static str {
        "hex"
    }

    fn data_cost(&self, _conn: &ConnInfo, _dir: Dir, len: usize) -> u64 {
        (len.div_ceil(16) as u64)
            .saturating_mul(LINE as u64)
            .saturating_add(CHUNK_LINES)
    }

    fn not_recorded(
        &mut self,
        conn: &ConnInfo,
        dir: Dir,
        at: SystemTime,
        _bytes: &[u8],
        io: &mut Io,
    ) {
        let Some(gap) = conn.gaps[dir.index()] else {
            return;
        };
        if gap.chunks != 1 {
            return;
        }
        io.scratch.clear();
        if conn.chunks[dir.index()] == 0 {
            first_byte(&mut io.scratch, conn, dir, at);
        }
        not_recording(&mut io.scratch, conn, dir, &gap);
        self.write(conn, io);
    }

    fn gap_end(&mut self, conn: &ConnInfo, dir: Dir, gap: &Gap, resumed: bool, io: &mut Io) {
        io.scratch.clear();
        not_recorded(&mut io.scratch, conn, dir, gap, resumed);
        self.write(conn, io);
    }

    fn open(&mut self, conn: &mut ConnInfo, io: &mut Io) {
        let stamp = stamp::file_stamp(conn.started);
        let name = naming::hex_name(&stamp, &conn.label, &conn.local, &conn.target);
        let (fid, err) = io.files.create(io.dir.join(name));
        io.errors.extend(err);
        conn.files.extend(io.files.file_name(fid));
        self.conns.insert(conn.id, fid);
    }

    fn connected(&mut self, conn: &ConnInfo, at: SystemTime, io: &mut Io) {
        io.scratch.clear();
        connected(&mut io.scratch, &mut io.stamper, conn, at);
        self.write(conn, io);
    }

    fn data(&mut self, conn: &ConnInfo, dir: Dir, at: SystemTime, bytes: &[u8], io: &mut Io) {
        let i = dir.index();
        let side = dir.source();
        io.scratch.clear();
        if conn.chunks[i] == 0 {
            first_byte(&mut io.scratch, conn, dir, at);
        }
        chunk_header(
            &mut io.scratch,
            &mut io.stamper,
            conn.chunks[i],
            conn.offsets[i],
            bytes.len(),
            conn.peer(side),
            side,
            at,
        );
        dump(bytes, &mut io.scratch);
        self.write(conn, io);
    }

    fn held(
        &mut self,
        conn: &ConnInfo,
        dir: Dir,
        why: Hold,
        since: SystemTime,
        lasted: Duration,
        io: &mut Io,
    ) {
        io.scratch.clear();
        held(
            &mut io.scratch,
            &mut io.stamper,
            conn,
            dir,
            why,
            since,
            lasted,
        );
        self.write(conn, io);
    }

    fn note(
        &mut self,
        conn: &ConnInfo,
        dir: Dir,
        stage: &'static str,
        text: &str,
        at: SystemTime,
        io: &mut Io,
    ) {
        io.scratch.clear();
        note(&mut io.scratch, &mut io.stamper, conn, dir, stage, text, at);
        self.write(conn, io);
    }

    fn tls(&mut self, conn: &ConnInfo, at: SystemTime, what: &crate::tls::Event, io: &mut Io) {
        io.scratch.clear();
        tls_line(&mut io.scratch, &mut io.stamper, conn, what, at);
        self.write(conn, io);
    }

    fn end(&mut self, conn: &ConnInfo, side: Side, how: &End, at: SystemTime, io: &mut Io) {
        io.scratch.clear();
        ended(&mut io.scratch, &mut io.stamper, conn, side, how, at);
        self.write(conn, io);
    }

    fn close(&mut self, conn: &ConnInfo, closed: &Closed, io: &mut Io) {
        io.scratch.clear();
        finished(&mut io.scratch, &mut io.stamper, conn, closed);
        self.write(conn, io);
        if let Some(f) = self.conns.remove(&conn.id) {
            io.close_file(conn.id, f);
        }
    }

    fn finish(&mut self, io: &mut Io) {
        for (_, f) in self.conns.drain() {
            io.files.close(f);
        }
    }
}

/// Appends the line for a direction's first chunk not recorded.
pub fn not_recording(out: &mut Vec<u8>, conn: &ConnInfo, dir: Dir, gap: &Gap) {
    let side = dir.source();
    let line = format!(
        "Not recording {} ({}) from chunk #{} ({:08X}) on: the log budget is full; relaying goes on\n",
        conn.peer(side),
        side.name(),
        gap.first,
        gap.offset,
    );
    out.extend_from_slice(line.as_bytes());
}

/// The words that open the line of a stretch not recorded; [`gaps`] finds them.
pub const NOT_RECORDED: &str = "Not recorded (log budget full): ";

/// Appends the line that closes a stretch not recorded: its bytes, chunks and offsets, and
/// whether recording resumed after it or the connection ended first.
pub fn not_recorded(out: &mut Vec<u8>, conn: &ConnInfo, dir: Dir, gap: &Gap, resumed: bool) {
    let side = dir.source();
    let last_chunk = gap.first.saturating_add(gap.chunks.saturating_sub(1));
    let last_byte = gap
        .offset
        .saturating_add(gap.bytes)
        .saturating_sub(u64::from(gap.bytes > 0));
    let then = if resumed {
        format!("recording again from #{}", last_chunk.saturating_add(1))
    } else {
        "not recorded to the end".to_string()
    };
    let line = format!(
        "{NOT_RECORDED}{} bytes in {} chunks from {} ({}), #{} to #{last_chunk} at {:08X}-{last_byte:08X}; {then}\n",
        gap.bytes,
        gap.chunks,
        conn.peer(side),
        side.name(),
        gap.first,
        gap.offset,
    );
    out.extend_from_slice(line.as_bytes());
}

/// Bytes per full dump line, newline included.
pub const LINE: usize = 79;
const ASCII_COL: usize = 61;

const fn hex_pairs() -> [[u8; 2]; 256] {
    let digits = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [digits[i >> 4], digits[i & 15]];
        i += 1;
    }
    t
}

const fn printable() -> [u8; 256] {
    let mut t = [b'.'; 256];
    let mut i = 0x20;
    while i < 0x7f {
        t[i] = i as u8;
        i += 1;
    }
    t
}

static HEX: [[u8; 2]; 256] = hex_pairs();
static ASCII: [u8; 256] = printable();

/// Column of the `i`th byte's two hex digits.
const fn hex_col(i: usize) -> usize {
    10 + 3 * i + if i >= 8 { 1 } else { 0 }
}

/// Appends `data` in `hexdump -C` layout (without hexdump's final offset line).
///
/// The logging thread runs this on every byte it logs, so whole lines are filled in place
/// from tables: the output grows by a memset of spaces, then each line gets its offset, hex
/// pairs and printable column written at fixed positions, with no formatting call per byte.
pub fn dump(data: &[u8], out: &mut Vec<u8>) {
    let full = data.len() / 16;
    let start = out.len();
    out.resize(start + full * LINE, b' ');
    fill_lines(&mut out[start..], &data[..full * 16]);
    let rest = &data[full * 16..];
    if !rest.is_empty() {
        let mut line = [b' '; LINE];
        let mut bytes = [0u8; 16];
        bytes[..rest.len()].copy_from_slice(rest);
        fill_line(&mut line, (full * 16) as u32, &bytes);
        // Pad the hex of the missing bytes and end the printable column early.
        for i in rest.len()..16 {
            let c = hex_col(i);
            line[c..c + 2].copy_from_slice(b"  ");
        }
        let end = ASCII_COL + rest.len();
        line[end] = b'|';
        line[end + 1] = b'\n';
        out.extend_from_slice(&line[..end + 2]);
    }
}

/// Fills `lines` (full lines of spaces) with the dump of `data` (16 bytes per line).
fn fill_lines(lines: &mut [u8], data: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("ssse3") {
        // SAFETY: the CPU has SSSE3, checked just above.
        unsafe { simd::fill_lines(lines, data) };
        return;
    }
    fill_lines_scalar(lines, data);
}

fn fill_lines_scalar(lines: &mut [u8], data: &[u8]) {
    let (lines, _) = lines.as_chunks_mut::<LINE>();
    let (chunks, _) = data.as_chunks::<16>();
    for (n, (line, bytes)) in lines.iter_mut().zip(chunks).enumerate() {
        fill_line(line, (n * 16) as u32, bytes);
    }
}

/// Full lines with SSSE3: the logger formats every byte it logs, and per-byte table lookups
/// kept it at about half its time. Sixteen bytes become their hex digits with two shuffles
/// through a digit table, the digits are spread into the `hh ` layout with two more, and the
/// printable column is a compare and a blend; the result is the same as the scalar path's
/// (tested on every byte value and on random data).
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{ASCII_COL, HEX, LINE};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have SSSE3.
    #[target_feature(enable = "ssse3")]
    pub unsafe fn fill_lines(lines: &mut [u8], data: &[u8]) {
        let digits = _mm_setr_epi8(
            b'0' as i8, b'1' as i8, b'2' as i8, b'3' as i8, b'4' as i8, b'5' as i8, b'6' as i8,
            b'7' as i8, b'8' as i8, b'9' as i8, b'a' as i8, b'b' as i8, b'c' as i8, b'd' as i8,
            b'e' as i8, b'f' as i8,
        );
        let low = _mm_set1_epi8(0x0f);
        // From 8 interleaved digit pairs (16 bytes) to `hh hh hh hh hh h` and `h hh hh `; -1
        // leaves a zero, made a space by the OR below.
        let first = _mm_setr_epi8(0, 1, -1, 2, 3, -1, 4, 5, -1, 6, 7, -1, 8, 9, -1, 10);
        let second = _mm_setr_epi8(
            11, -1, 12, 13, -1, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1,
        );
        let first_spaces = _mm_setr_epi8(0, 0, 32, 0, 0, 32, 0, 0, 32, 0, 0, 32, 0, 0, 32, 0);
        let second_spaces = _mm_setr_epi8(0, 32, 0, 0, 32, 0, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0);
        let below_space = _mm_set1_epi8(0x1f);
        let del = _mm_set1_epi8(0x7f);
        let dots = _mm_set1_epi8(b'.' as i8);
        let (lines, _) = lines.as_chunks_mut::<LINE>();
        let (chunks, _) = data.as_chunks::<16>();
        for (n, (line, bytes)) in lines.iter_mut().zip(chunks).enumerate() {
            let off = ((n * 16) as u32).to_be_bytes();
            for k in 0..4 {
                line[2 * k..2 * k + 2].copy_from_slice(&HEX[off[k] as usize]);
            }
            // SAFETY: `bytes` holds 16 bytes; every store below lies inside the 79-byte line
            // (the furthest ends at ASCII_COL + 16 = 77).
            unsafe {
                let v = _mm_loadu_si128(bytes.as_ptr().cast());
                let hi = _mm_shuffle_epi8(digits, _mm_and_si128(_mm_srli_epi16(v, 4), low));
                let lo = _mm_shuffle_epi8(digits, _mm_and_si128(v, low));
                for (half, col) in [
                    (_mm_unpacklo_epi8(hi, lo), 10),
                    (_mm_unpackhi_epi8(hi, lo), 35),
                ] {
                    let a = _mm_or_si128(_mm_shuffle_epi8(half, first), first_spaces);
                    let b = _mm_or_si128(_mm_shuffle_epi8(half, second), second_spaces);
                    _mm_storeu_si128(line.as_mut_ptr().add(col).cast(), a);
                    _mm_storel_epi64(line.as_mut_ptr().add(col + 16).cast(), b);
                }
                // Printable: above 0x1f and below 0x7f, as signed bytes (0x80.. are negative).
                let ok = _mm_and_si128(_mm_cmpgt_epi8(v, below_space), _mm_cmplt_epi8(v, del));
                let shown = _mm_or_si128(_mm_and_si128(ok, v), _mm_andnot_si128(ok, dots));
                _mm_storeu_si128(line.as_mut_ptr().add(ASCII_COL).cast(), shown);
            }
            line[ASCII_COL - 1] = b'|';
            line[ASCII_COL + 16] = b'|';
            line[LINE - 1] = b'\n';
        }
    }
}

/// Writes one full line's offset, hex pairs and printable column into a line of spaces.
#[inline(always)]
fn fill_line(line: &mut [u8; LINE], offset: u32, bytes: &[u8; 16]) {
    let off = offset.to_be_bytes();
    for k in 0..4 {
        line[2 * k..2 * k + 2].copy_from_slice(&HEX[off[k] as usize]);
    }
    for i in 0..16 {
        let b = bytes[i] as usize;
        let c = hex_col(i);
        line[c..c + 2].copy_from_slice(&HEX[b]);
        line[ASCII_COL + i] = ASCII[b];
    }
    line[ASCII_COL - 1] = b'|';
    line[ASCII_COL + 16] = b'|';
    line[LINE - 1] = b'\n';
}

/// Appends the line that opens a chunk.
#[allow(clippy::too_many_arguments)]
pub fn chunk_header(
    out: &mut Vec<u8>,
    stamper: &mut Stamper,
    number: u64,
    offset: u64,
    len: usize,
    peer: &SocketAddr,
    side: Side,
    at: SystemTime,
) {
    let mut s = String::with_capacity(96);
    let _ = write!(
        s,
        "Received (#{number}, {offset:08X}) {len} bytes from {peer} ({}) at ",
        side.name()
    );
    out.extend_from_slice(s.as_bytes());
    stamper.write(at, out);
    out.push(b'\n');
}

/// Appends the line written when the upstream connection is made.
pub fn connected(out: &mut Vec<u8>, stamper: &mut Stamper, conn: &ConnInfo, at: SystemTime) {
    out.extend_from_slice(b"Connected to ");
    push_target(out, &conn.target_name, &conn.target);
    out.extend_from_slice(b" at ");
    stamper.write(at, out);
    let took = stamp::duration(conn.started, at);
    let line = format!(
        " (client {}, via {}; connect took {took})\n",
        conn.client, conn.local
    );
    out.extend_from_slice(line.as_bytes());
}

fn push_target(out: &mut Vec<u8>, target_name: &str, target: &SocketAddr) {
    out.extend_from_slice(target_name.as_bytes());
    if target_name != target.to_string() {
        out.extend_from_slice(format!(" ({target})").as_bytes());
    }
}

/// Appends the line before a direction's first chunk: how long after the connect it came.
pub fn first_byte(out: &mut Vec<u8>, conn: &ConnInfo, dir: Dir, at: SystemTime) {
    let side = dir.source();
    let after = stamp::duration(conn.connected.unwrap_or(conn.started), at);
    let line = format!(
        "First byte from {} ({}) {after} after connect\n",
        conn.peer(side),
        side.name()
    );
    out.extend_from_slice(line.as_bytes());
}

/// Appends the line for a long pause of reading in `dir`.
pub fn held(
    out: &mut Vec<u8>,
    stamper: &mut Stamper,
    conn: &ConnInfo,
    dir: Dir,
    why: Hold,
    since: SystemTime,
    lasted: Duration,
) {
    let (src, dst) = (dir.source(), dir.source().other());
    let line = format!(
        "Reads from {} ({}) paused for {} from ",
        conn.peer(src),
        src.name(),
        stamp::seconds(lasted)
    );
    out.extend_from_slice(line.as_bytes());
    stamper.write(since, out);
    let cause = match why {
        Hold::Peer => format!(": {} ({}) not draining\n", conn.peer(dst), dst.name()),
        Hold::Log => ": the log queue was full\n".to_string(),
        Hold::Memory => ": every relay buffer was in use\n".to_string(),
    };
    out.extend_from_slice(cause.as_bytes());
}

/// Appends a stage's story line: `Fault latency on 127.0.0.1:8000 (server) -> 127.0.0.1:41126
/// (client) at TIME: held 300 ms`.
pub fn note(
    out: &mut Vec<u8>,
    stamper: &mut Stamper,
    conn: &ConnInfo,
    dir: Dir,
    stage: &str,
    text: &str,
    at: SystemTime,
) {
    let (src, dst) = (dir.source(), dir.source().other());
    let what = match stage {
        s if crate::proxy::STAGES.contains(&s) => "Proxy",
        crate::replay::peer::STAGE_REPLAY => "Replay",
        crate::replay::peer::STAGE_MOCK => "Mock",
        _ => "Fault",
    };
    let line = format!(
        "{what} {stage} on {} ({}) -> {} ({}) at ",
        conn.peer(src),
        src.name(),
        conn.peer(dst),
        dst.name()
    );
    out.extend_from_slice(line.as_bytes());
    stamper.write(at, out);
    out.extend_from_slice(b": ");
    // A stage's text is ours, but keep the one-line promise whatever it says.
    out.extend(text.bytes().map(|b| if b == b'\n' { b' ' } else { b }));
    out.push(b'\n');
}

/// Appends a TLS story line: `TLS with 127.0.0.1:41126 (client) at TIME: TLSv1.3
/// TLS13_AES_128_GCM_SHA256, SNI localhost, ...`.
pub fn tls_line(
    out: &mut Vec<u8>,
    stamper: &mut Stamper,
    conn: &ConnInfo,
    what: &crate::tls::Event,
    at: SystemTime,
) {
    let side = what.side();
    let line = format!("TLS with {} ({}) at ", conn.peer(side), side.name());
    out.extend_from_slice(line.as_bytes());
    stamper.write(at, out);
    out.extend_from_slice(b": ");
    out.extend(
        what.text()
            .bytes()
            .map(|b| if b == b'\n' { b' ' } else { b }),
    );
    out.push(b'\n');
}

/// Appends the line for a side's end: "Disconnected from ..." or, for a failed upstream
/// connect, "Unable to connect to ...".
pub fn ended(
    out: &mut Vec<u8>,
    stamper: &mut Stamper,
    conn: &ConnInfo,
    side: Side,
    how: &End,
    at: SystemTime,
) {
    match how {
        End::ConnectFailed(_) | End::ConnectTimeout => {
            out.extend_from_slice(b"Unable to connect to ");
            push_target(out, &conn.target_name, &conn.target);
            out.extend_from_slice(format!(": {how} at ").as_bytes());
        }
        _ => out.extend_from_slice(
            format!(
                "Disconnected from {} ({}): {how} at ",
                conn.peer(side),
                side.name()
            )
            .as_bytes(),
        ),
    }
    stamper.write(at, out);
    out.push(b'\n');
}

/// Appends the end of a hex dump: undelivered bytes, pauses, the kernel's TCP figures, and
/// the closing line.
pub fn finished(out: &mut Vec<u8>, stamper: &mut Stamper, conn: &ConnInfo, closed: &Closed) {
    for dir in Dir::BOTH {
        let (src, dst) = (dir.source(), dir.source().other());
        let n = closed.undelivered[dir.index()];
        if n > 0 {
            let line = format!(
                "Undelivered: the last {n} bytes from {} ({}) above never reached {} ({})\n",
                conn.peer(src),
                src.name(),
                conn.peer(dst),
                dst.name()
            );
            out.extend_from_slice(line.as_bytes());
        }
        let h = &closed.held[dir.index()];
        for ((count, time), cause) in [
            (
                h.peer,
                format!("{} ({}) to drain", conn.peer(dst), dst.name()),
            ),
            (h.log, "the log queue".to_string()),
            (h.memory, "a relay buffer".to_string()),
        ] {
            if count > 0 {
                let line = format!(
                    "Reads from {} ({}) paused {count} times, {} in all, waiting for {cause}\n",
                    conn.peer(src),
                    src.name(),
                    stamp::seconds(time)
                );
                out.extend_from_slice(line.as_bytes());
            }
        }
    }
    for side in [Side::Client, Side::Server] {
        if let Some(t) = &closed.tcp[side.index()] {
            let line = format!(
                "TCP {} ({}): rtt {:.3} ms (var {:.3} ms), {} retransmitted, {} lost, cwnd {}\n",
                conn.peer(side),
                side.name(),
                f64::from(t.rtt_us) / 1000.0,
                f64::from(t.rttvar_us) / 1000.0,
                t.retransmits,
                t.lost,
                t.cwnd
            );
            out.extend_from_slice(line.as_bytes());
        }
    }
    out.extend_from_slice(b"Finished at ");
    stamper.write(closed.at, out);
    out.extend_from_slice(
        format!(
            ", duration {}, {} bytes in, {} bytes out\n",
            stamp::duration(conn.started, closed.at),
            closed.bytes[Dir::ServerToClient.index()],
            closed.bytes[Dir::ClientToServer.index()],
        )
        .as_bytes(),
    );
}

/// A chunk read back from a hex dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub dir: Dir,
    pub number: u64,
    pub offset: u64,
    pub len: usize,
    pub data: Vec<u8>,
}

/// Reads the chunks of a hex dump back, checking each chunk's dump against its header.
pub fn parse(text: &str) -> Result<Vec<Chunk>, String> {
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut current: Option<Chunk> = None;
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if let Some(rest) = line.strip_prefix("Received (#") {
            if let Some(c) = current.take() {
                chunks.push(check(c)?);
            }
            current = Some(parse_header(rest).map_err(|e| format!("line {lineno}: {e}"))?);
        } else if is_dump_line(line) {
            let c = current
                .as_mut()
                .ok_or_else(|| format!("line {lineno}: dump line outside a chunk"))?;
            parse_dump_line(line, &mut c.data).map_err(|e| format!("line {lineno}: {e}"))?;
        } else if let Some(c) = current.take() {
            chunks.push(check(c)?);
        }
    }
    if let Some(c) = current.take() {
        chunks.push(check(c)?);
    }
    Ok(chunks)
}

/// Each direction's stream, rebuilt from a hex dump (indexed by [`Dir`]).
pub fn streams(text: &str) -> Result<[Vec<u8>; 2], String> {
    let mut s = [Vec::new(), Vec::new()];
    for c in parse(text)? {
        let v = &mut s[c.dir.index()];
        if c.offset != v.len() as u64 {
            return Err(format!(
                "chunk #{} of {:?} starts at {:#x}, expected {:#x}",
                c.number,
                c.dir,
                c.offset,
                v.len()
            ));
        }
        v.extend_from_slice(&c.data);
    }
    Ok(s)
}

/// A stretch of a direction that a hex dump says it did not record (a `Not recorded` line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Missing {
    pub dir: Dir,
    /// The first chunk left out, and how many.
    pub first: u64,
    pub chunks: u64,
    /// Where the stretch starts in its direction's stream, and its length.
    pub offset: u64,
    pub len: u64,
}

/// The stretches a hex dump says it did not record, in order; lines that do not parse are
/// not counted.
pub fn gaps(text: &str) -> Vec<Missing> {
    text.lines().filter_map(parse_gap).collect()
}

/// Parses `N bytes in M chunks from PEER (side), #a to #b at XXXXXXXX-YYYYYYYY; ...`.
fn parse_gap(line: &str) -> Option<Missing> {
    let rest = line.strip_prefix(NOT_RECORDED)?;
    let (len, rest) = rest.split_once(" bytes in ")?;
    let (chunks, rest) = rest.split_once(" chunks from ")?;
    let (dir, rest) = if let Some((_, r)) = rest.split_once(" (client), #") {
        (Dir::ClientToServer, r)
    } else {
        let (_, r) = rest.split_once(" (server), #")?;
        (Dir::ServerToClient, r)
    };
    let (first, rest) = rest.split_once(" to #")?;
    let (_, rest) = rest.split_once(" at ")?;
    let (offset, _) = rest.split_once('-')?;
    Some(Missing {
        dir,
        first: first.parse().ok()?,
        chunks: chunks.parse().ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        len: len.parse().ok()?,
    })
}

/// Checks that the chunks a hex dump holds and the stretches it says it left out follow each
/// other without a hole or an overlap in each direction, chunk numbers and offsets alike, and
/// returns each direction's length (indexed by [`Dir`]).
pub fn coverage(text: &str) -> Result<[u64; 2], String> {
    let mut next = [(0u64, 0u64); 2];
    let mut pieces: Vec<(Dir, u64, u64, u64, u64)> = parse(text)?
        .into_iter()
        .map(|c| (c.dir, c.number, 1, c.offset, c.len as u64))
        .collect();
    pieces.extend(
        gaps(text)
            .into_iter()
            .map(|g| (g.dir, g.first, g.chunks, g.offset, g.len)),
    );
    pieces.sort_by_key(|&(dir, number, ..)| (dir.index(), number));
    for (dir, number, chunks, offset, len) in pieces {
        let (n, o) = &mut next[dir.index()];
        if number != *n || offset != *o {
            return Err(format!(
                "{dir:?}: chunk #{number} at {offset:#x}, expected #{n} at {o:#x}"
            ));
        }
        *n = n.saturating_add(chunks);
        *o = o.saturating_add(len);
    }
    Ok([next[0].1, next[1].1])
}

fn check(c: Chunk) -> Result<Chunk, String> {
    if c.data.len() != c.len {
        return Err(format!(
            "chunk #{} says {} bytes, its dump holds {}",
            c.number,
            c.len,
            c.data.len()
        ));
    }
    Ok(c)
}

/// Parses `3, 0000A000) 1024 bytes from 127.0.0.1:110 (server) at ...` (after "Received (#").
fn parse_header(rest: &str) -> Result<Chunk, String> {
    let (number, rest) = rest.split_once(", ").ok_or("bad chunk header")?;
    let (offset, rest) = rest.split_once(") ").ok_or("bad chunk header")?;
    let (len, rest) = rest.split_once(" bytes from ").ok_or("bad chunk header")?;
    let dir = if rest.contains(" (client) at ") {
        Dir::ClientToServer
    } else if rest.contains(" (server) at ") {
        Dir::ServerToClient
    } else {
        return Err("chunk header names neither client nor server".into());
    };
    Ok(Chunk {
        dir,
        number: number.parse().map_err(|_| "bad chunk number")?,
        offset: u64::from_str_radix(offset, 16).map_err(|_| "bad chunk offset")?,
        len: len.parse().map_err(|_| "bad chunk length")?,
        data: Vec::new(),
    })
}

fn is_dump_line(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 10 && b[..8].iter().all(u8::is_ascii_hexdigit) && &b[8..10] == b"  "
}

fn parse_dump_line(line: &str, data: &mut Vec<u8>) -> Result<(), String> {
    let b = line.as_bytes();
    let offset = usize::from_str_radix(&line[..8], 16).map_err(|_| "bad line offset")?;
    if offset != data.len() % (1 << 32) {
        return Err(format!("line offset {offset:08x} out of sequence"));
    }
    for i in 0..16 {
        let c = hex_col(i);
        match b.get(c..c + 2) {
            Some([b' ', b' ']) | None => break,
            Some(pair) => {
                let s = std::str::from_utf8(pair).map_err(|_| "bad hex")?;
                data.push(u8::from_str_radix(s, 16).map_err(|_| format!("bad hex {s:?}"))?);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn dumped(data: &[u8]) -> String {
        let mut v = Vec::new();
        dump(data, &mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn matches_hexdump_c() {
        // Expected text is `printf ... | hexdump -C` without its final offset line.
        assert_eq!(
            dumped(b"hello\n"),
            "00000000  68 65 6c 6c 6f 0a                                 |hello.|\n"
        );
        assert_eq!(
            dumped(b"0123456789abcdefXYZ\x00\x7f\x80"),
            "00000000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|\n\
             00000010  58 59 5a 00 7f 80                                 |XYZ...|\n"
        );
        assert_eq!(
            dumped(b"+OK POP Ya! v1.0"),
            "00000000  2b 4f 4b 20 50 4f 50 20  59 61 21 20 76 31 2e 30  |+OK POP Ya! v1.0|\n"
        );
        assert_eq!(dumped(b""), "");
        let nine = dumped(b"123456789");
        assert_eq!(
            nine,
            "00000000  31 32 33 34 35 36 37 38  39                       |123456789|\n"
        );
    }

    #[test]
    fn fast_path_equals_the_plain_one() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut data: Vec<u8> = (0..=255u8).collect();
        data.extend((0..40_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        }));
        let full = data.len() / 16 * 16;
        let mut fast = vec![b' '; full / 16 * LINE];
        let mut plain = fast.clone();
        fill_lines(&mut fast, &data[..full]);
        fill_lines_scalar(&mut plain, &data[..full]);
        assert!(fast == plain, "the SIMD and scalar dumps differ");
    }

    #[test]
    fn every_byte_value_round_trips() {
        let data: Vec<u8> = (0..=255u8).cycle().take(4099).collect();
        let text = dumped(&data);
        assert_eq!(text.lines().count(), 4099usize.div_ceil(16));
        assert!(text.lines().all(|l| l.len() < LINE));
        let mut back = Vec::new();
        for l in text.lines() {
            parse_dump_line(l, &mut back).unwrap();
        }
        assert_eq!(back, data);
    }

    #[test]
    fn headers_and_lines() {
        let mut s = Stamper::default();
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let stamp = s.string(t);
        let peer: SocketAddr = "127.0.0.1:110".parse().unwrap();
        let mut out = Vec::new();
        chunk_header(
            &mut out,
            &mut s,
            2,
            0x1_0000_0000,
            38,
            &peer,
            Side::Server,
            t,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("Received (#2, 100000000) 38 bytes from 127.0.0.1:110 (server) at {stamp}\n")
        );
        let conn = ConnInfo {
            id: 3,
            label: "0003".into(),
            rule: 0,
            target_name: "web:80".into(),
            client: peer,
            target: "10.1.1.1:80".parse().unwrap(),
            local: "10.0.0.2:40000".parse().unwrap(),
            started: t,
            connected: Some(t + Duration::from_micros(250)),
            chunks: [0; 2],
            offsets: [0; 2],
            files: Default::default(),
            gaps: [None; 2],
            not_recorded: [0; 2],
        };
        let line = |f: &dyn Fn(&mut Vec<u8>, &mut Stamper)| {
            let mut out = Vec::new();
            f(&mut out, &mut Stamper::default());
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            line(&|o, s| connected(o, s, &conn, t + Duration::from_micros(250))),
            format!(
                "Connected to web:80 (10.1.1.1:80) at {}.000250 (client 127.0.0.1:110, via \
                 10.0.0.2:40000; connect took 0.000250s)\n",
                &stamp[..19]
            )
        );
        assert_eq!(
            line(&|o, _| first_byte(o, &conn, Dir::ServerToClient, t + Duration::from_millis(3))),
            "First byte from 10.1.1.1:80 (server) 0.002750s after connect\n"
        );
        assert_eq!(
            line(&|o, s| held(
                o,
                s,
                &conn,
                Dir::ClientToServer,
                Hold::Peer,
                t,
                Duration::from_millis(120)
            )),
            format!(
                "Reads from 127.0.0.1:110 (client) paused for 0.120000s from {stamp}: 10.1.1.1:80 (server) not draining\n"
            )
        );
        assert_eq!(
            line(&|o, s| ended(o, s, &conn, Side::Server, &End::ConnectTimeout, t)),
            format!("Unable to connect to web:80 (10.1.1.1:80): connect timed out at {stamp}\n")
        );
        assert_eq!(
            line(&|o, s| ended(o, s, &conn, Side::Client, &End::Fin, t)),
            format!("Disconnected from 127.0.0.1:110 (client): EOF at {stamp}\n")
        );
        let mut held_totals = [crate::log::event::Holds::default(); 2];
        held_totals[1].add(Hold::Peer, Duration::from_millis(5));
        held_totals[1].add(Hold::Peer, Duration::from_millis(7));
        let closed = Closed {
            at: t + Duration::from_micros(1_500_000),
            bytes: [5, 7],
            undelivered: [0, 3],
            ends: vec![(Side::Client, End::Fin), (Side::Server, End::Reset)],
            held: held_totals,
            tcp: [
                Some(crate::sys::TcpStats {
                    rtt_us: 45,
                    rttvar_us: 20,
                    retransmits: 1,
                    lost: 0,
                    cwnd: 10,
                }),
                None,
            ],
        };
        let text = line(&|o, s| finished(o, s, &conn, &closed));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..3],
            [
                "Undelivered: the last 3 bytes from 10.1.1.1:80 (server) above never reached 127.0.0.1:110 (client)",
                "Reads from 10.1.1.1:80 (server) paused 2 times, 0.012000s in all, waiting for 127.0.0.1:110 (client) to drain",
                "TCP 127.0.0.1:110 (client): rtt 0.045 ms (var 0.020 ms), 1 retransmitted, 0 lost, cwnd 10",
            ]
        );
        assert!(
            lines[3].ends_with(", duration 1.500000s, 7 bytes in, 5 bytes out"),
            "{text}"
        );
    }

    #[test]
    fn parse_rebuilds_streams() {
        let mut s = Stamper::default();
        let t = UNIX_EPOCH;
        let c: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut out = b"Connected to x at y\n".to_vec();
        let parts: [(Dir, &[u8]); 3] = [
            (Dir::ClientToServer, b"GET / HTTP/1.0\r\n\r\n"),
            (Dir::ServerToClient, &[0u8; 40]),
            (Dir::ClientToServer, b"more"),
        ];
        let mut offs = [0u64; 2];
        let mut nums = [0u64; 2];
        for (dir, data) in parts {
            let i = dir.index();
            chunk_header(
                &mut out,
                &mut s,
                nums[i],
                offs[i],
                data.len(),
                &c,
                dir.source(),
                t,
            );
            dump(data, &mut out);
            offs[i] += data.len() as u64;
            nums[i] += 1;
        }
        out.extend_from_slice(b"Finished at x\n");
        let text = String::from_utf8(out).unwrap();
        let st = streams(&text).unwrap();
        assert_eq!(st[0], b"GET / HTTP/1.0\r\n\r\nmore");
        assert_eq!(st[1], vec![0u8; 40]);
        let chunks = parse(&text).unwrap();
        assert_eq!(chunks.len(), 3);
        assert_eq!((chunks[2].number, chunks[2].offset), (1, 18));
    }

    /// The lines a gap writes read back as the stretch they name, and with the chunks that
    /// are there they cover each direction exactly.
    #[test]
    fn not_recorded_lines_round_trip() {
        let mut s = Stamper::default();
        let t = UNIX_EPOCH;
        let client: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut conn = ConnInfo {
            id: 1,
            label: "0001".into(),
            rule: 0,
            target_name: "t".into(),
            client,
            target: "[::1]:80".parse().unwrap(),
            local: "127.0.0.1:4000".parse().unwrap(),
            started: t,
            connected: Some(t),
            chunks: [0; 2],
            offsets: [0; 2],
            files: Default::default(),
            gaps: [None; 2],
            not_recorded: [0; 2],
        };
        let mut out = Vec::new();
        let mut chunk = |out: &mut Vec<u8>, conn: &mut ConnInfo, dir: Dir, data: &[u8]| {
            let i = dir.index();
            chunk_header(
                out,
                &mut s,
                conn.chunks[i],
                conn.offsets[i],
                data.len(),
                conn.peer(dir.source()),
                dir.source(),
                t,
            );
            dump(data, out);
            conn.chunks[i] += 1;
            conn.offsets[i] += data.len() as u64;
        };
        chunk(&mut out, &mut conn, Dir::ClientToServer, b"hello");
        let gap = Gap {
            first: 1,
            offset: 5,
            chunks: 3,
            bytes: 0x1_0000_0000,
        };
        not_recording(&mut out, &conn, Dir::ClientToServer, &gap);
        conn.chunks[0] += 3;
        conn.offsets[0] += gap.bytes;
        not_recorded(&mut out, &conn, Dir::ClientToServer, &gap, true);
        chunk(&mut out, &mut conn, Dir::ClientToServer, b"again");
        chunk(&mut out, &mut conn, Dir::ServerToClient, b"ok");
        let down = Gap {
            first: 1,
            offset: 2,
            chunks: 1,
            bytes: 7,
        };
        not_recorded(&mut out, &conn, Dir::ServerToClient, &down, false);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("Not ")).collect();
        assert_eq!(
            lines,
            [
                "Not recording 127.0.0.1:5000 (client) from chunk #1 (00000005) on: the log budget is full; relaying goes on",
                "Not recorded (log budget full): 4294967296 bytes in 3 chunks from 127.0.0.1:5000 (client), #1 to #3 at 00000005-100000004; recording again from #4",
                "Not recorded (log budget full): 7 bytes in 1 chunks from [::1]:80 (server), #1 to #1 at 00000002-00000008; not recorded to the end",
            ]
        );
        assert_eq!(
            gaps(&text),
            [
                Missing {
                    dir: Dir::ClientToServer,
                    first: 1,
                    chunks: 3,
                    offset: 5,
                    len: 0x1_0000_0000
                },
                Missing {
                    dir: Dir::ServerToClient,
                    first: 1,
                    chunks: 1,
                    offset: 2,
                    len: 7
                }
            ]
        );
        assert_eq!(coverage(&text), Ok([0x1_0000_0000 + 10, 9]));
        assert!(streams(&text).is_err(), "the streams have a hole");
        // A line dropped, or a chunk out of place, is caught.
        let without: String = text
            .lines()
            .filter(|l| !l.starts_with(NOT_RECORDED))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(coverage(&without).is_err());
        for junk in [
            "Not recorded (log budget full): ",
            "Not recorded (log budget full): x bytes in 1 chunks from a (client), #1 to #1 at 0-0",
            "Not recorded (log budget full): 1 bytes in 1 chunks from a (elsewhere), #1 to #1 at 0-0",
        ] {
            assert!(gaps(junk).is_empty(), "{junk}");
        }
    }

    proptest::proptest! {
        /// The readers of not-recorded lines take any text without a panic, and read back
        /// any stretch the writer can write.
        #[test]
        fn gap_lines_never_panic_and_round_trip(
            junk in ".{0,200}",
            first in 0u64..u64::MAX / 2,
            chunks in 1u64..1000,
            offset in 0u64..u64::MAX / 2,
            bytes in 1u64..u64::MAX / 4,
            server: bool,
        ) {
            let _ = gaps(&junk);
            let _ = coverage(&junk);
            let _ = gaps(&format!("{NOT_RECORDED}{junk}"));
            let conn = ConnInfo {
                id: 1,
                label: "0001".into(),
                rule: 0,
                target_name: "t".into(),
                client: "[::1]:1".parse().unwrap(),
                target: "10.0.0.1:2".parse().unwrap(),
                local: "[::1]:3".parse().unwrap(),
                started: UNIX_EPOCH,
                connected: None,
                chunks: [0; 2],
                offsets: [0; 2],
                files: Default::default(),
                gaps: [None; 2],
                not_recorded: [0; 2],
            };
            let dir = if server { Dir::ServerToClient } else { Dir::ClientToServer };
            let gap = Gap { first, offset, chunks, bytes };
            let mut out = Vec::new();
            not_recorded(&mut out, &conn, dir, &gap, server);
            let text = String::from_utf8(out).unwrap();
            proptest::prop_assert_eq!(
                gaps(&text),
                vec![Missing { dir, first, chunks, offset, len: bytes }]
            );
        }
    }

    #[test]
    fn parse_rejects_inconsistent_dumps() {
        let bad_len = "Received (#0, 00000000) 3 bytes from a (client) at t\n\
                       00000000  41 42                                            |AB|\n";
        assert!(parse(bad_len).is_err());
        let gap = "Received (#0, 00000005) 1 bytes from a (client) at t\n\
                   00000000  41                                               |A|\n";
        assert!(streams(gap).is_err());
        assert!(parse("00000000  41 |A|\n").is_err());
        assert!(parse("Received (#x, 0) 1 bytes from a (client) at t\n").is_err());
        for junk in [
            "",
            "Received (#",
            "00000000  zz",
            "Received (#1, 2) 3 bytes from (server) at ",
        ] {
            let _ = parse(junk);
        }
    }
}

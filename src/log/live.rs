//! The live view (`-x/--hexdump`, `--text`): every chunk printed to stdout as the logging
//! thread gets it, headed by its connection number, direction and time, between the
//! connection's open and closed lines (those of stderr) so that the view reads on its own.
//!
//! ```text
//! #0001 open 127.0.0.1:41126 -> 127.0.0.1:8000
//! #0001 client 127.0.0.1:41126 -> server 127.0.0.1:8000, 18 bytes (#0, 00000000) at 2026.11.29-10.23.40.478786
//! 00000000  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 30 0d 0a  |GET / HTTP/1.0..|
//! 00000010  0d 0a                                             |..|
//! #0001 closed 127.0.0.1:41126 -> 127.0.0.1:8000 after 0.006819s: ...
//! ```
//! `(#n, OFFSET)` are the chunk's number and offset in its direction, as in the hex dump file.
//! `-x` shows the bytes as the hex dump files do ([`hexdump::dump`]); `--text` as text in which
//! only printable ASCII and newlines reach the terminal as they are: every other byte is
//! escaped (`\r`, `\t`, `\\`, `\xNN`), ESC included, so a peer can neither move the cursor nor
//! retitle the window. A chunk that does not end in a newline gets one, so that each header
//! starts a line; the header's byte count is exact.
//!
//! On a terminal without NO_COLOR each direction has its colour (client red, server blue, as
//! Wireshark's Follow Stream shows them), set and reset on every line so that a view cut off
//! anywhere never leaves the terminal coloured.
//!
//! Output is built in a buffer and written at the end of each batch of events, or sooner when
//! it passes [`WRITE_AT`], waiting for the reader: a terminal that cannot keep up holds the
//! logging thread back, which fills the queue and pauses the relay; while tcpspy runs the
//! view never drops a chunk. A closed stdout (`tcpspy -x | head`) stops the proxy quietly.
//! Once tcpspy is stopping, the reader gets [`stdout::GRACE`] to take what is left; then the
//! view gives up, counts the chunks and lines it could not show, and says so at the end (the
//! exit status is then 1).

use std::io;
use std::time::SystemTime;

use crate::config::{Live, LiveMode};
use crate::stop::StopHandle;
use crate::types::Dir;

use super::stamp::Stamper;
use super::stdout::{self, Cut, Stdout};
use super::{Closed, ConnInfo, Io, Output, eprint_line, hexdump, report};

/// Bytes of output after which a batch is written out before its end: a batch can hold the
/// whole log queue, and its hex dump is five times that.
pub const WRITE_AT: usize = 256 << 10;

const RESET: &[u8] = b"\x1b[0m";

/// A direction's colours: the header's (bold), then the body's.
fn colours(dir: Dir) -> (&'static [u8], &'static [u8]) {
    match dir {
        Dir::ClientToServer => (b"\x1b[1;31m", b"\x1b[31m"),
        Dir::ServerToClient => (b"\x1b[1;34m", b"\x1b[34m"),
    }
}

/// Formats the live view; pure, so tests reach it without a stdout.
pub struct Format {
    live: Live,
    stamper: Stamper,
    /// A chunk's lines before they are coloured.
    lines: Vec<u8>,
}

impl Format {
    pub fn new(live: Live) -> Format {
        Format {
            live,
            stamper: Stamper::default(),
            lines: Vec::new(),
        }
    }

    /// Appends a chunk: its header, then its bytes as hex dump lines or text.
    pub fn chunk(
        &mut self,
        out: &mut Vec<u8>,
        conn: &ConnInfo,
        dir: Dir,
        at: SystemTime,
        bytes: &[u8],
    ) {
        if !self.live.colour {
            header(out, &mut self.stamper, conn, dir, at, bytes.len());
            body(self.live.mode, bytes, out);
            return;
        }
        let (head, rest) = colours(dir);
        self.lines.clear();
        header(
            &mut self.lines,
            &mut self.stamper,
            conn,
            dir,
            at,
            bytes.len(),
        );
        paint(&self.lines, head, out);
        self.lines.clear();
        body(self.live.mode, bytes, &mut self.lines);
        paint(&self.lines, rest, out);
        if self.lines.capacity() > WRITE_AT {
            // One large chunk must not keep its size of memory for the rest of the run.
            self.lines = Vec::new();
        }
    }

    /// Appends one uncoloured line (the connection's open and closed lines).
    pub fn line(&self, out: &mut Vec<u8>, line: &str) {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
}

/// Appends a fault's line: `#0001 fault latency server 127.0.0.1:8000 -> client
/// 127.0.0.1:41126 at TIME: latency_downstream: held bytes 0-186 for 300 ms`.
pub fn note_line(
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
        s if crate::proxy::STAGES.contains(&s) => "proxy",
        crate::replay::peer::STAGE_REPLAY => "replay",
        crate::replay::peer::STAGE_MOCK => "mock",
        _ => "fault",
    };
    let line = format!(
        "#{} {what} {stage} {} {} -> {} {} at ",
        conn.label,
        src.name(),
        conn.peer(src),
        dst.name(),
        conn.peer(dst),
    );
    out.extend_from_slice(line.as_bytes());
    stamper.write(at, out);
    out.extend_from_slice(b": ");
    // One line, and nothing that drives a terminal.
    out.extend(
        text.bytes()
            .map(|b| if b < 0x20 || b == 0x7f { b'?' } else { b }),
    );
    out.push(b'\n');
}

/// Appends `#0001 client 127.0.0.1:41126 -> server 127.0.0.1:8000, 18 bytes (#0, 00000000)
/// at TIME`: the chunk's number and offset are those of the hex dump file.
pub fn header(
    out: &mut Vec<u8>,
    stamper: &mut Stamper,
    conn: &ConnInfo,
    dir: Dir,
    at: SystemTime,
    len: usize,
) {
    let (src, dst) = (dir.source(), dir.source().other());
    let i = dir.index();
    let line = format!(
        "#{} {} {} -> {} {}, {len} bytes (#{}, {:08X}) at ",
        conn.label,
        src.name(),
        conn.peer(src),
        dst.name(),
        conn.peer(dst),
        conn.chunks[i],
        conn.offsets[i],
    );
    out.extend_from_slice(line.as_bytes());
    stamper.write(at, out);
    out.push(b'\n');
}

fn body(mode: LiveMode, bytes: &[u8], out: &mut Vec<u8>) {
    match mode {
        LiveMode::Hex => hexdump::dump(bytes, out),
        LiveMode::Text => text(bytes, out),
    }
}

/// Appends `data` as text: printable ASCII as it is, `\n` as a line break, `\r`, `\t` and `\\`
/// as those two characters, any other byte (controls, ESC, DEL, non-ASCII) as `\xNN`. Ends
/// with a line break, added if the data has none.
pub fn text(data: &[u8], out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(data.len() + data.len() / 8 + 1);
    for &b in data {
        match b {
            b'\n' => out.push(b'\n'),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(&[
                b'\\',
                b'x',
                DIGITS[usize::from(b >> 4)],
                DIGITS[usize::from(b & 15)],
            ]),
        }
    }
    if data.last().is_some_and(|&b| b != b'\n') {
        out.push(b'\n');
    }
}

/// Appends `lines` (each ending in a newline) with every non-empty line between `colour` and
/// a reset.
pub fn paint(lines: &[u8], colour: &[u8], out: &mut Vec<u8>) {
    out.reserve(lines.len() + 16 * lines.len().div_ceil(hexdump::LINE));
    for line in lines.split_inclusive(|&b| b == b'\n') {
        let bare = line.strip_suffix(b"\n").unwrap_or(line);
        if !bare.is_empty() {
            out.extend_from_slice(colour);
            out.extend_from_slice(bare);
            out.extend_from_slice(RESET);
        }
        if bare.len() < line.len() {
            out.push(b'\n');
        }
    }
}

/// The live view output: formats into a buffer, writes it to its own descriptor of stdout.
pub struct LiveView {
    format: Format,
    /// `None` before the start, and for good after a failed write.
    out: Option<Stdout>,
    buf: Vec<u8>,
    /// Where each chunk (true) or line (false) in `buf` ends: what a cut-off write lost.
    marks: Vec<(usize, bool)>,
    stop: Option<StopHandle>,
    /// The reader stopped reading and the stop's deadline passed.
    gave_up: bool,
    /// Chunks and lines never shown because of it.
    lost: (u64, u64),
}

impl LiveView {
    /// `stop` ends the run when stdout's reader goes away.
    pub fn new(live: Live, stop: Option<StopHandle>) -> LiveView {
        LiveView {
            format: Format::new(live),
            out: None,
            buf: Vec::new(),
            marks: Vec::new(),
            stop,
            gave_up: false,
            lost: (0, 0),
        }
    }

    /// Counts a chunk or line that will not be shown.
    fn lose(&mut self, chunk: bool) {
        if chunk {
            self.lost.0 += 1;
        } else {
            self.lost.1 += 1;
        }
    }

    /// True if something is to be formatted; counts it as lost if the view gave up.
    fn showing(&mut self, chunk: bool) -> bool {
        if self.gave_up {
            self.lose(chunk);
        }
        self.out.is_some()
    }

    fn mark(&mut self, chunk: bool) {
        self.marks.push((self.buf.len(), chunk));
    }

    /// Writes the buffer out, waiting for the reader; a failed write turns the view off.
    fn write_out(&mut self, io: &mut Io) {
        let Some(out) = &mut self.out else {
            self.buf.clear();
            self.marks.clear();
            return;
        };
        if self.buf.is_empty() {
            return;
        }
        let r = out.write_all(&self.buf, &io.deadline);
        self.buf.clear();
        if self.buf.capacity() > 4 * WRITE_AT {
            self.buf = Vec::new();
        }
        let cut = match r {
            Ok(()) => None,
            Err(short) => {
                self.out = None;
                match short.why {
                    Cut::Gone(_) => {
                        // `tcpspy -x | head`: the reader has seen what it wanted, and the view
                        // was the point of the run. Not an error: the run ends as if stopped
                        // by a signal.
                        if let Some(stop) = &self.stop {
                            stop.stop();
                        }
                        None
                    }
                    Cut::Failed(e) => {
                        failed(&e, io);
                        None
                    }
                    Cut::GaveUp => Some(short.written),
                }
            }
        };
        if let Some(written) = cut {
            self.gave_up = true;
            let lost: Vec<bool> = self
                .marks
                .iter()
                .filter(|&&(end, _)| end > written)
                .map(|&(_, chunk)| chunk)
                .collect();
            for chunk in lost {
                self.lose(chunk);
            }
        }
        self.marks.clear();
    }
}

fn failed(e: &io::Error, io: &mut Io) {
    io.reported += 1;
    eprint_line(&format!(
        "tcpspy: live view on stdout: {e}; nothing more is written to it"
    ));
}

impl Output for LiveView {
    fn name(&self) -> &'static str {
        "the live view on stdout"
    }

    fn kind(&self) -> &'static str {
        "live"
    }

    fn start(&mut self, io: &mut Io) {
        match Stdout::open() {
            Ok(out) => self.out = Some(out),
            Err(e) => failed(&e, io),
        }
    }

    fn open(&mut self, conn: &mut ConnInfo, _io: &mut Io) {
        if self.showing(false) {
            self.format.line(&mut self.buf, &report::open_line(conn));
            self.mark(false);
        }
    }

    fn data(&mut self, conn: &ConnInfo, dir: Dir, at: SystemTime, bytes: &[u8], io: &mut Io) {
        if !self.showing(true) {
            return;
        }
        self.format.chunk(&mut self.buf, conn, dir, at, bytes);
        self.mark(true);
        if self.buf.len() >= WRITE_AT {
            self.write_out(io);
        }
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
        if self.showing(false) {
            note_line(&mut self.buf, &mut io.stamper, conn, dir, stage, text, at);
            self.mark(false);
        }
    }

    fn tls(&mut self, conn: &ConnInfo, at: SystemTime, what: &crate::tls::Event, io: &mut Io) {
        if self.showing(false) {
            let side = what.side();
            let line = format!(
                "#{} TLS with {} {} at ",
                conn.label,
                side.name(),
                conn.peer(side)
            );
            self.buf.extend_from_slice(line.as_bytes());
            io.stamper.write(at, &mut self.buf);
            self.buf.extend_from_slice(b": ");
            self.buf.extend(
                what.text()
                    .bytes()
                    .map(|b| if b < 0x20 || b == 0x7f { b'?' } else { b }),
            );
            self.buf.push(b'\n');
            self.mark(false);
        }
    }

    fn close(&mut self, conn: &ConnInfo, closed: &Closed, _io: &mut Io) {
        if self.showing(false) {
            self.format
                .line(&mut self.buf, &report::closed_line(conn, closed));
            self.mark(false);
        }
    }

    fn flush(&mut self, io: &mut Io) {
        self.write_out(io);
    }

    fn finish(&mut self, io: &mut Io) {
        self.write_out(io);
        if self.gave_up {
            let (chunks, lines) = self.lost;
            let what = format!(
                "the live view on stdout lost {chunks} chunks and {lines} connection lines: its \
                 reader stopped reading (it had {}s after the relay stopped)",
                stdout::GRACE.as_secs()
            );
            eprint_line(&format!("tcpspy: {what}"));
            io.failures.push(what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::{Duration, UNIX_EPOCH};

    fn texted(data: &[u8]) -> String {
        let mut v = Vec::new();
        text(data, &mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn text_escapes_all_but_printable_ascii() {
        assert_eq!(
            texted(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            "GET / HTTP/1.1\\r\nHost: x\\r\n\\r\n"
        );
        assert_eq!(
            texted(b"\x1b[2J\x1b]0;pwned\x07"),
            "\\x1b[2J\\x1b]0;pwned\\x07\n"
        );
        assert_eq!(texted(b"a\x00b\tc\\d\x7f"), "a\\x00b\\tc\\\\d\\x7f\n");
        assert_eq!(
            texted("café €".as_bytes()),
            "caf\\xc3\\xa9 \\xe2\\x82\\xac\n"
        );
        assert_eq!(texted(b"\n\n"), "\n\n");
        assert_eq!(texted(b""), "");
        // Whatever the bytes, the output is printable ASCII and line breaks only.
        let all: Vec<u8> = (0..=255u8).collect();
        let t = texted(&all);
        assert!(t.bytes().all(|b| b == b'\n' || (0x20..0x7f).contains(&b)));
        assert_eq!(t.matches('\n').count(), 2, "the one newline, and one added");
    }

    #[test]
    fn paint_wraps_each_line() {
        let mut out = Vec::new();
        paint(b"one\n\ntwo\n", b"\x1b[31m", &mut out);
        assert_eq!(out, b"\x1b[31mone\x1b[0m\n\n\x1b[31mtwo\x1b[0m\n");
    }

    fn conn() -> ConnInfo {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        ConnInfo {
            id: 7,
            label: "0007".into(),
            rule: 0,
            target_name: "127.0.0.1:8000".into(),
            client: "127.0.0.1:41126".parse().unwrap(),
            target: "[::1]:8000".parse::<SocketAddr>().unwrap(),
            local: "127.0.0.1:40000".parse().unwrap(),
            started: t,
            connected: Some(t),
            chunks: [2, 0],
            offsets: [0x1234, 0],
            files: Default::default(),
            gaps: [None; 2],
            not_recorded: [0; 2],
        }
    }

    #[test]
    fn chunks_plain_and_coloured() {
        let c = conn();
        let t = c.started;
        let stamp = Stamper::default().string(t);
        let mut f = Format::new(Live {
            mode: LiveMode::Hex,
            colour: false,
        });
        let mut out = Vec::new();
        f.chunk(&mut out, &c, Dir::ClientToServer, t, b"hi\r\n");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "#0007 client 127.0.0.1:41126 -> server [::1]:8000, 4 bytes (#2, 00001234) at {stamp}\n\
                 00000000  68 69 0d 0a                                       |hi..|\n"
            )
        );
        let mut f = Format::new(Live {
            mode: LiveMode::Text,
            colour: true,
        });
        let mut out = Vec::new();
        f.chunk(&mut out, &c, Dir::ServerToClient, t, b"ok\x1b\n\nmore");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "\x1b[1;34m#0007 server [::1]:8000 -> client 127.0.0.1:41126, 9 bytes (#0, 00000000) at {stamp}\x1b[0m\n\
                 \x1b[34mok\\x1b\x1b[0m\n\
                 \n\
                 \x1b[34mmore\x1b[0m\n"
            )
        );
        let mut out = Vec::new();
        f.line(&mut out, &report::open_line(&c));
        assert_eq!(out, b"#0007 open 127.0.0.1:41126 -> [::1]:8000\n");
    }
}

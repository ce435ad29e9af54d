//! The capture: one pcapng stream per run, to a file or to stdout, in which every relayed
//! connection is a TCP conversation between the client's real address and the target's, as if
//! tcpspy were a wire between them. Wireshark then picks the dissector from the target port and
//! follows streams, and nobody needs root or an interface: tcpspy already holds every byte.
//!
//! What a connection becomes, at the times tcpspy saw things happen:
//! - accepted: a SYN from the client, whose comment gives the connection number;
//! - upstream connected: SYN-ACK from the target, ACK from the client. A connect that never
//!   completes (refused, timed out, tcpspy stopping) is a RST/ACK from the target answering the
//!   SYN, with the reason in its comment;
//! - a chunk: data segments from its source stamped with the time tcpspy read it (at most
//!   [`MSS`] bytes each, PSH on the last), then an ACK from the other side;
//! - a half-close: FIN from that side, ACKed;
//! - a reset or socket error on one side: RST from that side. The reset tcpspy then gives the
//!   other side is the same event seen from there, so it adds no packet;
//! - tcpspy stopping: FIN from each side that has not sent one.
//!
//! Bytes tcpspy read but could not deliver (the destination broke first) stay in the capture:
//! their source did send them, and the capture cannot take back what a live reader has already
//! seen. The packet that ends the connection says how many in its comment. That count is only
//! known when the connection closes, which is why the ends other than FIN are held until then
//! (the reactor sends them in the same breath as the close, so nothing else comes between).
//!
//! Format: pcapng (for the comments), little-endian, one interface of LINKTYPE_RAW (raw IPv4 and
//! IPv6 packets, no fake Ethernet), nanosecond timestamps, IP and TCP checksums computed. A
//! connection with one IPv4 and one IPv6 end is written as IPv6, the IPv4 address mapped
//! (`::ffff:a.b.c.d`).
//!
//! [`Conversation`] formats into a `Vec<u8>` and does no I/O; [`PcapLog`] writes each event's
//! packets with one `write`, so a reader of the pipe sees them as soon as the logger does.
//!
//! Under `--log-budget` the capture file is written in parts of an eighth of the budget, each
//! a whole pcapng file with its own header (`capture-<stamp>.pcapng`, then
//! `capture-<stamp>-1.pcapng`, ...), so that the oldest can be removed; a conversation simply
//! goes on in the next part. A chunk the budget leaves out is a gap in its sequence numbers
//! (Wireshark: "previous segment not captured"), and the next packet from that side says in its
//! comment how many bytes are missing before it.
//!
//! On stdout (`--pcap -`), once tcpspy is stopping, the reader gets [`stdout::GRACE`] to take
//! what is left; after that the capture gives up (it ends cut short) and says how many chunks
//! it could not write.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Capture;
use crate::types::{Dir, End, Side};

use super::event::ConnId;
use super::files::FileId;
use super::stdout::{self, Cut, Stdout};
use super::{Closed, ConnInfo, Io, Output, eprint_line, naming, stamp};

/// Raw IPv4 or IPv6 packets, told apart by their version nibble.
pub const LINKTYPE_RAW: u16 = 101;
/// Most payload bytes per segment: what fits an IPv4 packet (65535 bytes) after 40 bytes of IP
/// and TCP headers. Also announced as the MSS option of both SYNs.
pub const MSS: usize = 65495;
/// Window scale offered in both SYNs. The window (65535 << 14, 1 GiB) holds any chunk, so a
/// chunk and the ACK after it never look like a full window to Wireshark.
const WSCALE: u8 = 14;
/// The longest packet the capture may hold, as the interface block says (Wireshark's own
/// limit); ours are at most 40 + 20 + MSS bytes.
const SNAPLEN: u32 = 262_144;

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 1;
const EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;
/// Enhanced packet block bytes before the packet: type, length, interface, time (2), lengths (2).
const EPB_HEAD: usize = 28;
/// Longest comment written: ours are a line, but error texts come from the OS.
const MAX_COMMENT: usize = 1024;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// MSS, NOP, window scale: what both SYNs carry.
const SYN_OPTIONS: [u8; 8] = [2, 4, (MSS >> 8) as u8, MSS as u8, 1, 3, 3, WSCALE];

/// Decryption Secrets Block (pcapng): secrets that open the TLS records that follow.
const DSB: u32 = 0x0000_000A;
/// Its secrets type: a TLS key log (NSS format).
const DSB_TLS_KEY_LOG: u32 = 0x544c_534b;

/// Appends a Decryption Secrets Block holding NSS key log lines.
pub fn secrets(out: &mut Vec<u8>, key_log: &str) {
    let start = begin_block(out, DSB);
    out.extend_from_slice(&DSB_TLS_KEY_LOG.to_le_bytes());
    out.extend_from_slice(&(key_log.len() as u32).to_le_bytes());
    out.extend_from_slice(key_log.as_bytes());
    pad(out, key_log.len());
    end_block(out, start);
}

/// Appends the section header and the one interface every packet refers to.
pub fn header(out: &mut Vec<u8>) {
    let start = begin_block(out, SHB);
    out.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // version 1.0
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&u64::MAX.to_le_bytes()); // section length: not known, it is streamed
    option(
        out,
        SHB_USERAPPL,
        concat!("tcpspy ", env!("CARGO_PKG_VERSION")).as_bytes(),
    );
    option(out, OPT_END, &[]);
    end_block(out, start);

    let start = begin_block(out, IDB);
    out.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&SNAPLEN.to_le_bytes());
    option(out, IF_NAME, b"tcpspy");
    option(
        out,
        IF_DESCRIPTION,
        b"connections relayed by tcpspy, as TCP between client and target",
    );
    option(out, IF_TSRESOL, &[9]); // nanoseconds
    option(out, OPT_END, &[]);
    end_block(out, start);
}

fn begin_block(out: &mut Vec<u8>, kind: u32) -> usize {
    let start = out.len();
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // patched by end_block
    start
}

fn end_block(out: &mut Vec<u8>, start: usize) {
    let len = (out.len() - start + 4) as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
}

/// An option: code, length, value padded to 32 bits.
fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    pad(out, value.len());
}

fn pad(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&[0u8; 3][..(4 - len % 4) % 4]);
}

/// The ones'-complement sum of `data` read as big-endian 16-bit words (RFC 1071), folded to 16
/// bits; an odd last byte counts as a word with a zero low byte. Sums of pieces that each start
/// at an even offset add up to the sum of the whole.
pub fn ones_sum(data: &[u8]) -> u32 {
    let mut acc = 0u64;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut last = [0u8; 4];
    last[..rest.len()].copy_from_slice(rest);
    acc += u64::from(u32::from_ne_bytes(last));
    // Native-order words sum to the byte-swapped big-endian sum (RFC 1071, 2.B), so one swap
    // at the end replaces one per word.
    u32::from(u16::from_be(fold(acc)))
}

fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn checksum(sums: &[u32]) -> u16 {
    !fold(sums.iter().map(|&s| u64::from(s)).sum())
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// An initial sequence number, different per connection and side so that a client port
/// reused later in the run starts a conversation Wireshark tells apart (splitmix64).
fn isn(id: ConnId, side: Side) -> u32 {
    let mut z = id
        .wrapping_mul(2)
        .wrapping_add(side as u64)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as u32
}

/// An IPv4 address if the address is one, or an IPv4-mapped IPv6 address.
fn as_v4(ip: IpAddr) -> Option<[u8; 4]> {
    match ip {
        IpAddr::V4(a) => Some(a.octets()),
        IpAddr::V6(a) => a.to_ipv4_mapped().map(|a| a.octets()),
    }
}

fn as_v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// One connection as a TCP conversation: addresses, sequence numbers and how far it got.
/// Indexed by [`Side`] throughout.
pub struct Conversation {
    v6: bool,
    /// The first 4 bytes only for IPv4.
    addr: [[u8; 16]; 2],
    port: [u16; 2],
    /// The pseudo-header's addresses and protocol, summed; the same both ways.
    pseudo: u32,
    isn: [u32; 2],
    /// The sequence number each side sends next.
    next: [u32; 2],
    ip_id: [u16; 2],
    established: bool,
    fin: [bool; 2],
    reset: bool,
    /// Ends other than FIN, written at the close (see the module doc).
    held: Vec<(Side, End, SystemTime)>,
    /// Bytes each side sent that the capture left out since its last packet (log budget).
    skipped: [u64; 2],
    /// An intercepted TLS connection (`--tls`): from its first record on, the packets carry
    /// the client leg's TLS records, not the plaintext, and the capture's decryption secrets
    /// open them.
    pub wire: bool,
}

impl Conversation {
    pub fn new(id: ConnId, client: SocketAddr, target: SocketAddr) -> Conversation {
        let (c, t) = (client.ip(), target.ip());
        let mut addr = [[0u8; 16]; 2];
        let v6 = match (as_v4(c), as_v4(t)) {
            (Some(a), Some(b)) => {
                addr[0][..4].copy_from_slice(&a);
                addr[1][..4].copy_from_slice(&b);
                false
            }
            _ => {
                addr = [as_v6(c), as_v6(t)];
                true
            }
        };
        let n = if v6 { 16 } else { 4 };
        let pseudo = ones_sum(&addr[0][..n]) + ones_sum(&addr[1][..n]) + 6;
        let isn = [isn(id, Side::Client), isn(id, Side::Server)];
        Conversation {
            v6,
            addr,
            port: [client.port(), target.port()],
            pseudo,
            isn,
            next: isn,
            ip_id: [0; 2],
            established: false,
            fin: [false; 2],
            reset: false,
            held: Vec::new(),
            skipped: [0; 2],
            wire: false,
        }
    }

    /// The client's SYN, as tcpspy accepts the connection.
    pub fn open(&mut self, at: SystemTime, comment: &str, out: &mut Vec<u8>) {
        let c = Side::Client.index();
        let isn = self.isn[c];
        self.next[c] = isn.wrapping_add(1);
        self.packet(
            Side::Client,
            SYN,
            isn,
            0,
            &[],
            nanos(at),
            Some(comment),
            out,
        );
    }

    /// The handshake's other two packets, as the upstream connect completes.
    pub fn connected(&mut self, at: SystemTime, out: &mut Vec<u8>) {
        if self.established || self.reset {
            return;
        }
        self.established = true;
        let t = nanos(at);
        let (c, s) = (Side::Client.index(), Side::Server.index());
        let isn = self.isn[s];
        self.next[s] = isn.wrapping_add(1);
        let ack = self.next[c];
        self.packet(Side::Server, SYN | ACK, isn, ack, &[], t, None, out);
        let (seq, ack) = (self.next[c], self.next[s]);
        self.packet(Side::Client, ACK, seq, ack, &[], t, None, out);
    }

    /// A chunk read from the source of `dir`: its segments, then the other side's ACK.
    pub fn data(&mut self, dir: Dir, at: SystemTime, bytes: &[u8], out: &mut Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        // Chunks only come once connected; if that event were missing the stream would still
        // need its handshake to be followed.
        self.connected(at, out);
        let t = nanos(at);
        let (src, dst) = (dir.source(), dir.source().other());
        let (s, d) = (src.index(), dst.index());
        let segments = bytes.len().div_ceil(MSS);
        out.reserve(bytes.len() + (segments + 1) * (EPB_HEAD + 64 + 4 + 4));
        let mut left = segments;
        for seg in bytes.chunks(MSS) {
            left -= 1;
            let flags = if left == 0 { ACK | PSH } else { ACK };
            let (seq, ack) = (self.next[s], self.next[d]);
            self.packet(src, flags, seq, ack, seg, t, None, out);
            self.next[s] = seq.wrapping_add(seg.len() as u32);
        }
        let (seq, ack) = (self.next[d], self.next[s]);
        self.packet(dst, ACK, seq, ack, &[], t, None, out);
    }

    /// A chunk left out of the capture: its bytes still take their sequence numbers, so the
    /// gap shows, and the next packet from its source says how many are missing.
    pub fn skip(&mut self, dir: Dir, len: usize, at: SystemTime, out: &mut Vec<u8>) {
        if len == 0 || self.reset {
            return;
        }
        self.connected(at, out);
        let s = dir.source().index();
        self.next[s] = self.next[s].wrapping_add(len as u32);
        self.skipped[s] = self.skipped[s].saturating_add(len as u64);
    }

    /// A fault acted on `dir` (a stage's story line): a bare ACK from the destination,
    /// stamped then, carries it as its comment. Payloads stay as their source sent them; the
    /// comment says what the destination got instead (flipped bits, bytes held back).
    pub fn note(&mut self, dir: Dir, at: SystemTime, text: &str, out: &mut Vec<u8>) {
        if !self.established || self.reset {
            return;
        }
        let (src, dst) = (dir.source(), dir.source().other());
        let comment = format!(
            "tcpspy fault ({} -> {}; payloads here are as the {} sent them): {text}",
            src.name(),
            dst.name(),
            src.name()
        );
        let (seq, ack) = (self.next[dst.index()], self.next[src.index()]);
        self.packet(dst, ACK, seq, ack, &[], nanos(at), Some(&comment), out);
    }

    /// A side ended: a FIN is written now; any other end waits for [`Conversation::close`].
    pub fn end(&mut self, side: Side, how: &End, at: SystemTime, out: &mut Vec<u8>) {
        match how {
            // A TLS leg's records are taken after the relay's turn, its FIN during it: the
            // FIN waits for the close so that no record follows it.
            End::Fin if !self.wire => self.fin(side, nanos(at), None, out),
            other => self.held.push((side, other.clone(), at)),
        }
    }

    /// The connection closed: writes the ends held back, the first packet among them noting
    /// the bytes that never reached their destination.
    pub fn close(&mut self, undelivered: [u64; 2], out: &mut Vec<u8>) {
        let mut note = undelivered_note(undelivered);
        for (side, how, at) in std::mem::take(&mut self.held) {
            self.terminal(side, &how, nanos(at), &mut note, out);
        }
    }

    fn terminal(
        &mut self,
        side: Side,
        how: &End,
        t: u64,
        note: &mut Option<String>,
        out: &mut Vec<u8>,
    ) {
        if self.reset {
            return;
        }
        let mut comment = format!("{} {how}", side.name());
        if let Some(n) = note.take() {
            comment.push_str("; ");
            comment.push_str(&n);
        }
        if !self.established {
            // The target never answered; to the client it was refused.
            let ack = self.next[Side::Client.index()];
            self.packet(Side::Server, RST | ACK, 0, ack, &[], t, Some(&comment), out);
            self.reset = true;
            return;
        }
        match how {
            End::Fin => self.fin(side, t, Some(&comment), out),
            End::Shutdown | End::IdleTimeout | End::Tls(_) | End::Fault { reset: false, .. } => {
                // tcpspy closes both sockets: each side sees the other finish.
                let mut comment = Some(comment);
                for s in [side.other(), side] {
                    if !self.fin[s.index()] {
                        self.fin(s, t, comment.take().as_deref(), out);
                    }
                }
            }
            // A fault's reset reaches `side` as if from its peer (tcpspy resets both).
            End::Aborted | End::Fault { reset: true, .. } => {
                self.rst(side.other(), t, &comment, out)
            }
            End::Reset | End::Error(_) | End::ConnectFailed(_) | End::ConnectTimeout => {
                self.rst(side, t, &comment, out)
            }
        }
    }

    fn fin(&mut self, side: Side, t: u64, comment: Option<&str>, out: &mut Vec<u8>) {
        let (s, o) = (side.index(), side.other().index());
        if self.reset || self.fin[s] {
            return;
        }
        self.fin[s] = true;
        let (seq, ack) = (self.next[s], self.next[o]);
        self.packet(side, FIN | ACK, seq, ack, &[], t, comment, out);
        self.next[s] = seq.wrapping_add(1);
        let (seq, ack) = (self.next[o], self.next[s]);
        self.packet(side.other(), ACK, seq, ack, &[], t, None, out);
    }

    fn rst(&mut self, side: Side, t: u64, comment: &str, out: &mut Vec<u8>) {
        self.reset = true;
        let (seq, ack) = (self.next[side.index()], self.next[side.other().index()]);
        self.packet(side, RST | ACK, seq, ack, &[], t, Some(comment), out);
    }

    /// Appends one enhanced packet block: IP header, TCP header, payload, checksums filled in.
    #[allow(clippy::too_many_arguments)]
    fn packet(
        &mut self,
        from: Side,
        flags: u8,
        seq: u32,
        ack: u32,
        payload: &[u8],
        t: u64,
        comment: Option<&str>,
        out: &mut Vec<u8>,
    ) {
        let (s, d) = (from.index(), from.other().index());
        let joined;
        let comment = match std::mem::take(&mut self.skipped[s]) {
            0 => comment,
            n => {
                let note = format!(
                    "{n} bytes the {} sent before this packet were not recorded (log budget full)",
                    from.name()
                );
                joined = match comment {
                    Some(c) => format!("{c}; {note}"),
                    None => note,
                };
                Some(joined.as_str())
            }
        };
        let options: &[u8] = if flags & SYN != 0 { &SYN_OPTIONS } else { &[] };
        let tcp_len = 20 + options.len() + payload.len();
        let len = if self.v6 { 40 } else { 20 } + tcp_len;

        let start = begin_block(out, EPB);
        out.extend_from_slice(&0u32.to_le_bytes()); // interface 0
        out.extend_from_slice(&((t >> 32) as u32).to_le_bytes());
        out.extend_from_slice(&(t as u32).to_le_bytes());
        out.extend_from_slice(&(len as u32).to_le_bytes()); // captured
        out.extend_from_slice(&(len as u32).to_le_bytes()); // on the wire

        if self.v6 {
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            out.extend_from_slice(&[6, 64]); // next header TCP, hop limit
            out.extend_from_slice(&self.addr[s]);
            out.extend_from_slice(&self.addr[d]);
        } else {
            let id = self.ip_id[s];
            self.ip_id[s] = id.wrapping_add(1);
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&id.to_be_bytes());
            ip[6] = 0x40; // don't fragment
            ip[8] = 64; // TTL
            ip[9] = 6; // TCP
            ip[12..16].copy_from_slice(&self.addr[s][..4]);
            ip[16..20].copy_from_slice(&self.addr[d][..4]);
            let sum = checksum(&[ones_sum(&ip)]);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            out.extend_from_slice(&ip);
        }

        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&self.port[s].to_be_bytes());
        tcp[2..4].copy_from_slice(&self.port[d].to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&ack.to_be_bytes());
        tcp[12] = (((20 + options.len()) / 4) << 4) as u8;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&u16::MAX.to_be_bytes()); // window
        let sum = checksum(&[
            self.pseudo,
            tcp_len as u32,
            ones_sum(&tcp),
            ones_sum(options),
            ones_sum(payload),
        ]);
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());
        out.extend_from_slice(&tcp);
        out.extend_from_slice(options);
        out.extend_from_slice(payload);
        pad(out, len);

        if let Some(c) = comment {
            option(out, OPT_COMMENT, truncate(c, MAX_COMMENT).as_bytes());
            option(out, OPT_END, &[]);
        }
        end_block(out, start);
    }
}

/// `"120 bytes the client sent never reached the server"`, for each direction that lost some.
fn undelivered_note(undelivered: [u64; 2]) -> Option<String> {
    let notes: Vec<String> = Dir::BOTH
        .iter()
        .filter(|d| undelivered[d.index()] > 0)
        .map(|d| {
            format!(
                "{} bytes the {} sent never reached the {}",
                undelivered[d.index()],
                d.source().name(),
                d.source().other().name()
            )
        })
        .collect();
    (!notes.is_empty()).then(|| notes.join("; "))
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Where the capture is written.
enum Sink {
    /// Not opened, or failed: nothing more is written.
    Off,
    File(FileId),
    Stdout(Stdout),
}

/// The capture's parts under a log budget.
struct Parts {
    /// The most bytes a part takes before the next begins.
    size: u64,
    /// The name asked for the first part; the others are named after it.
    first: PathBuf,
    /// The number of the part being written (0 for the first).
    number: u32,
    /// The header every part starts with.
    header: Vec<u8>,
}

/// Room for what a chunk adds besides its bytes: per segment a block, IP and TCP headers and
/// padding; the ACK after it; a handshake if the connection had none; a new part's header.
fn packets_cost(len: usize) -> u64 {
    let segments = len.div_ceil(MSS).max(1) as u64;
    (len as u64)
        .saturating_add(segments.saturating_mul(100))
        .saturating_add(1024)
}

/// The capture output: one stream for the whole run.
pub struct PcapLog {
    capture: Capture,
    sink: Sink,
    conns: HashMap<ConnId, Conversation>,
    parts: Option<Parts>,
    /// stdout's reader stopped reading and the stop's deadline passed.
    gave_up: bool,
    /// Chunks that could not be written to stdout because of it.
    lost: u64,
}

impl PcapLog {
    /// `part_size`: under a log budget, the size of the capture's parts.
    pub fn new(capture: Capture, part_size: Option<u64>) -> PcapLog {
        PcapLog {
            capture,
            sink: Sink::Off,
            conns: HashMap::new(),
            parts: part_size.map(|size| {
                let mut head = Vec::new();
                header(&mut head);
                Parts {
                    size,
                    first: PathBuf::new(),
                    number: 0,
                    header: head,
                }
            }),
            gave_up: false,
            lost: 0,
        }
    }

    fn on(&self) -> bool {
        !matches!(self.sink, Sink::Off)
    }

    /// Writes the scratch buffer (`chunk`: the packets of a chunk); after a failure, reported
    /// once, the capture is off.
    fn write(&mut self, io: &mut Io, chunk: bool) {
        if io.scratch.is_empty() {
            return;
        }
        if let Sink::File(f) = self.sink {
            self.rotate_if_full(f, io);
        }
        let failed = match &mut self.sink {
            Sink::Off => false,
            Sink::File(f) => {
                let r = io.files.write(*f, &io.scratch);
                io.check(r).is_none()
            }
            Sink::Stdout(out) => match out.write_all(&io.scratch, &io.deadline) {
                Ok(()) => false,
                Err(short) => {
                    match short.why {
                        Cut::Gone(e) | Cut::Failed(e) => report_stdout(&e, io),
                        Cut::GaveUp => {
                            self.gave_up = true;
                            self.lost += u64::from(chunk);
                        }
                    }
                    true
                }
            },
        };
        if failed {
            // Nobody will read what comes next: stop formatting it.
            self.sink = Sink::Off;
            self.conns.clear();
        }
    }

    /// Under a budget, begins the next part when the scratch buffer would take this one past
    /// its size: the full part becomes removable, the new one starts with its own header.
    fn rotate_if_full(&mut self, f: FileId, io: &mut Io) {
        let Some(parts) = &mut self.parts else {
            return;
        };
        let size = io.files.size(f);
        // A part holds at least one event after its header, however big.
        if size <= parts.header.len() as u64
            || size.saturating_add(io.scratch.len() as u64) <= parts.size
        {
            return;
        }
        io.close_part(f);
        parts.number = parts.number.saturating_add(1);
        let path = naming::capture_part(&parts.first, parts.number);
        let (fid, err) = io.files.create(path);
        if let Some(e) = err {
            io.errors.push(e);
            self.sink = Sink::Off;
            self.conns.clear();
            return;
        }
        let r = io.files.write(fid, &parts.header);
        if io.check(r).is_none() {
            self.sink = Sink::Off;
            self.conns.clear();
            return;
        }
        self.sink = Sink::File(fid);
    }

    fn open_file(&mut self, path: PathBuf, io: &mut Io) {
        if let Some(parts) = &mut self.parts {
            parts.first = path.clone();
        }
        let (fid, err) = io.files.create(path);
        match err {
            Some(e) => io.errors.push(e),
            None => {
                if let Some(p) = io.files.path(fid) {
                    let parts = match &self.parts {
                        Some(parts) => format!(
                            " (in parts of {} under --log-budget: {}, ...)",
                            crate::config::parse::Size(parts.size),
                            naming::capture_part(&parts.first, 1).display()
                        ),
                        None => String::new(),
                    };
                    eprint_line(&format!("tcpspy: capture in {}{parts}", p.display()));
                }
                self.sink = Sink::File(fid);
            }
        }
    }
}

fn report_stdout(e: &io::Error, io: &mut Io) {
    io.reported += 1;
    let why = if e.kind() == io::ErrorKind::BrokenPipe {
        format!("the reader has gone ({e})")
    } else {
        e.to_string()
    };
    eprint_line(&format!(
        "tcpspy: capture on stdout: {why}; nothing more is written to it"
    ));
}

impl Output for PcapLog {
    fn name(&self) -> &'static str {
        match self.capture {
            Capture::Stdout => "the capture on stdout",
            Capture::LogDir | Capture::File(_) => "the capture",
        }
    }

    fn kind(&self) -> &'static str {
        "pcap"
    }

    fn start(&mut self, io: &mut Io) {
        match self.capture.clone() {
            Capture::Stdout => match Stdout::open() {
                Ok(out) => self.sink = Sink::Stdout(out),
                Err(e) => report_stdout(&e, io),
            },
            Capture::File(p) => self.open_file(p, io),
            Capture::LogDir => {
                let name = naming::capture_name(&stamp::file_stamp(SystemTime::now()));
                let path = io.dir.join(name);
                self.open_file(path, io);
            }
        }
        io.scratch.clear();
        header(&mut io.scratch);
        self.write(io, false);
    }

    fn data_cost(&self, _conn: &ConnInfo, _dir: Dir, len: usize) -> u64 {
        match self.sink {
            Sink::File(_) => packets_cost(len),
            Sink::Off | Sink::Stdout(_) => 0,
        }
    }

    fn open(&mut self, conn: &mut ConnInfo, io: &mut Io) {
        if !self.on() {
            return;
        }
        let mut c = Conversation::new(conn.id, conn.client, conn.target);
        let mut comment = format!(
            "tcpspy connection #{}: client {}, target {}",
            conn.label, conn.client, conn.target,
        );
        // Port 0: the upstream socket could not even be made, there is no "via".
        if conn.local.port() != 0 {
            comment.push_str(&format!(", via {}", conn.local));
        }
        io.scratch.clear();
        c.open(conn.started, &comment, &mut io.scratch);
        self.conns.insert(conn.id, c);
        self.write(io, false);
    }

    fn connected(&mut self, conn: &ConnInfo, at: SystemTime, io: &mut Io) {
        if let Some(c) = self.conns.get_mut(&conn.id) {
            io.scratch.clear();
            c.connected(at, &mut io.scratch);
            self.write(io, false);
        }
    }

    fn keys(&mut self, lines: &str, io: &mut Io) {
        if self.on() && !lines.is_empty() {
            io.scratch.clear();
            secrets(&mut io.scratch, lines);
            self.write(io, false);
        }
    }

    fn wire(&mut self, conn: &ConnInfo, dir: Dir, at: SystemTime, bytes: &[u8], io: &mut Io) {
        if self.gave_up {
            self.lost += 1;
            return;
        }
        if let Some(c) = self.conns.get_mut(&conn.id) {
            c.wire = true;
            io.scratch.clear();
            c.data(dir, at, bytes, &mut io.scratch);
            self.write(io, true);
        }
    }

    fn data(&mut self, conn: &ConnInfo, dir: Dir, at: SystemTime, bytes: &[u8], io: &mut Io) {
        if self.gave_up {
            self.lost += 1;
            return;
        }
        if let Some(c) = self.conns.get_mut(&conn.id) {
            if c.wire {
                // The records carry these bytes already.
                return;
            }
            io.scratch.clear();
            c.data(dir, at, bytes, &mut io.scratch);
            self.write(io, true);
        }
    }

    fn not_recorded(
        &mut self,
        conn: &ConnInfo,
        dir: Dir,
        at: SystemTime,
        bytes: &[u8],
        io: &mut Io,
    ) {
        if matches!(self.sink, Sink::Stdout(_)) || self.gave_up {
            // The budget is the files': the stream on stdout gets every chunk.
            return self.data(conn, dir, at, bytes, io);
        }
        if let Some(c) = self.conns.get_mut(&conn.id) {
            io.scratch.clear();
            c.skip(dir, bytes.len(), at, &mut io.scratch);
            self.write(io, false);
        }
    }

    fn end(&mut self, conn: &ConnInfo, side: Side, how: &End, at: SystemTime, io: &mut Io) {
        if let Some(c) = self.conns.get_mut(&conn.id) {
            io.scratch.clear();
            c.end(side, how, at, &mut io.scratch);
            self.write(io, false);
        }
    }

    fn note(
        &mut self,
        conn: &ConnInfo,
        dir: Dir,
        _stage: &'static str,
        text: &str,
        at: SystemTime,
        io: &mut Io,
    ) {
        if let Some(c) = self.conns.get_mut(&conn.id) {
            io.scratch.clear();
            c.note(dir, at, text, &mut io.scratch);
            self.write(io, false);
        }
    }

    fn close(&mut self, conn: &ConnInfo, closed: &Closed, io: &mut Io) {
        if let Some(mut c) = self.conns.remove(&conn.id) {
            io.scratch.clear();
            c.close(closed.undelivered, &mut io.scratch);
            self.write(io, false);
        }
    }

    fn finish(&mut self, io: &mut Io) {
        self.conns.clear();
        if let Sink::File(f) = std::mem::replace(&mut self.sink, Sink::Off) {
            io.files.close(f);
        }
        if self.gave_up {
            let what = format!(
                "the capture on stdout lost {} chunks and ends cut short: its reader stopped \
                 reading (it had {}s after the relay stopped)",
                self.lost,
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
    use std::time::Duration;

    /// RFC 1071 word by word, the obvious way.
    fn slow_sum(data: &[u8]) -> u32 {
        let mut s = 0u64;
        for pair in data.chunks(2) {
            let hi = u64::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |&b| u64::from(b));
            s += hi | lo;
        }
        u32::from(fold(s))
    }

    #[test]
    fn sum_matches_rfc1071() {
        let data: Vec<u8> = (0..5000u32).map(|i| ((i * 7919) >> 3) as u8).collect();
        for len in [0, 1, 2, 3, 4, 5, 7, 8, 9, 63, 64, 65, 4999, 5000] {
            assert_eq!(ones_sum(&data[..len]), slow_sum(&data[..len]), "len {len}");
        }
        assert_eq!(ones_sum(&[0xff; 4096]), 0xffff);
        // The example of RFC 1071, 3.
        let rfc = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(ones_sum(&rfc), 0xddf2);
    }

    fn t(micros: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(micros)
    }

    /// The enhanced packet blocks of a capture body: (nanoseconds, packet, comment).
    fn blocks(mut b: &[u8]) -> Vec<(u64, Vec<u8>, Option<String>)> {
        let mut v = Vec::new();
        while !b.is_empty() {
            let kind = u32::from_le_bytes(b[0..4].try_into().unwrap());
            let len = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
            assert_eq!(len % 4, 0);
            assert_eq!(b[len - 4..len], b[4..8], "trailing length");
            if kind == EPB {
                let le = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
                let ts = (u64::from(le(12)) << 32) | u64::from(le(16));
                let cap = le(20) as usize;
                assert_eq!(cap, le(24) as usize);
                let pkt = b[28..28 + cap].to_vec();
                let mut o = 28 + cap.div_ceil(4) * 4;
                let mut comment = None;
                while o < len - 4 {
                    let code = u16::from_le_bytes([b[o], b[o + 1]]);
                    let olen = u16::from_le_bytes([b[o + 2], b[o + 3]]) as usize;
                    if code == OPT_COMMENT {
                        comment = Some(String::from_utf8(b[o + 4..o + 4 + olen].to_vec()).unwrap());
                    }
                    o += 4 + olen.div_ceil(4) * 4;
                }
                v.push((ts, pkt, comment));
            }
            b = &b[len..];
        }
        v
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// A data segment checked byte for byte against a packet built by hand (checksums
    /// worked out apart, with Python's own RFC 1071 sum).
    #[test]
    fn data_segment_bytes() {
        let client: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let target: SocketAddr = "10.0.0.2:5432".parse().unwrap();
        let mut c = Conversation::new(7, client, target);
        // Known sequence numbers, so the expected bytes do not depend on isn().
        c.isn = [1000, 5000];
        c.next = c.isn;
        let mut out = Vec::new();
        c.open(t(1), "hello", &mut out);
        c.connected(t(2), &mut out);
        out.clear();
        c.data(
            Dir::ClientToServer,
            t(1_700_000_000_123_456),
            b"abc",
            &mut out,
        );
        let got = blocks(&out);
        assert_eq!(got.len(), 2, "the segment, then the target's ACK");
        let expected_block = hex(
            "06000000 4c000000 00000000 fe9c9717 00ca853d 2b000000 2b000000
             4500 002b 0002 4000 4006 26c9 0a000001 0a000002
             9c40 1538 000003e9 00001389 50 18 ffff 0e7a 0000
             616263 00
             4c000000",
        );
        assert_eq!(out[..expected_block.len()], expected_block[..]);
        let (ts, ack, _) = &got[1];
        assert_eq!(*ts, 1_700_000_000_123_456_000);
        // The ACK from the target: seq 5001, ack 1004, checksums valid.
        assert_eq!(&ack[12..20], &[10, 0, 0, 2, 10, 0, 0, 1]);
        assert_eq!(&ack[24..32], &[0, 0, 0x13, 0x89, 0, 0, 0x03, 0xec]);
        assert_eq!(ack[33], ACK);
        assert_valid(ack);
    }

    /// Checks both checksums the way a receiver does: the sums come out as 0xffff.
    fn assert_valid(p: &[u8]) {
        let (ip_len, pseudo) = match p[0] >> 4 {
            4 => {
                assert_eq!(ones_sum(&p[..20]), 0xffff, "IPv4 header checksum");
                (20, ones_sum(&p[12..20]) + 6)
            }
            6 => (40, ones_sum(&p[8..40]) + 6),
            v => panic!("IP version {v}"),
        };
        let tcp = &p[ip_len..];
        let total = checksum(&[pseudo, tcp.len() as u32, ones_sum(tcp)]);
        assert_eq!(total, 0, "TCP checksum");
    }

    fn tcp_of(p: &[u8]) -> (&[u8], &[u8]) {
        let ip_len = if p[0] >> 4 == 4 { 20 } else { 40 };
        let tcp = &p[ip_len..];
        let off = usize::from(tcp[12] >> 4) * 4;
        (&tcp[..off], &tcp[off..])
    }

    fn seq_ack(p: &[u8]) -> (u32, u32, u8) {
        let (h, _) = tcp_of(p);
        (
            u32::from_be_bytes(h[4..8].try_into().unwrap()),
            u32::from_be_bytes(h[8..12].try_into().unwrap()),
            h[13],
        )
    }

    #[test]
    fn big_chunk_is_split_and_numbered() {
        let client: SocketAddr = "[::1]:40000".parse().unwrap();
        let target: SocketAddr = "[::1]:6379".parse().unwrap();
        let mut c = Conversation::new(1, client, target);
        let mut out = Vec::new();
        c.open(t(1), "x", &mut out);
        c.connected(t(2), &mut out);
        let data: Vec<u8> = (0..200_001u32).map(|i| i as u8).collect();
        c.data(Dir::ServerToClient, t(3), &data, &mut out);
        c.data(Dir::ClientToServer, t(4), b"ok", &mut out);
        c.end(Side::Client, &End::Fin, t(5), &mut out);
        let p = blocks(&out);
        // SYN, SYN-ACK, ACK, 4 segments + ACK, 1 segment + ACK, FIN + ACK.
        assert_eq!(p.len(), 3 + 5 + 2 + 2);
        let isn_c = c.isn[0];
        let isn_s = c.isn[1];
        let mut got = Vec::new();
        for (i, (_, pkt, _)) in p[3..7].iter().enumerate() {
            assert_eq!(pkt[0] >> 4, 6);
            assert_valid(pkt);
            let (seq, ack, flags) = seq_ack(pkt);
            assert_eq!(seq, isn_s.wrapping_add(1 + (i * MSS) as u32));
            assert_eq!(ack, isn_c.wrapping_add(1));
            assert_eq!(flags, if i == 3 { ACK | PSH } else { ACK });
            got.extend_from_slice(tcp_of(pkt).1);
        }
        assert_eq!(got, data);
        let (_, ack, _) = seq_ack(&p[7].1);
        assert_eq!(ack, isn_s.wrapping_add(1 + 200_001));
        let (seq, _, flags) = seq_ack(&p[10].1);
        assert_eq!((seq, flags), (isn_c.wrapping_add(3), FIN | ACK));
        assert!(p.iter().all(|(_, pkt, _)| pkt.len() <= 40 + 20 + MSS + 8));
    }

    #[test]
    fn refused_connect_is_syn_then_rst() {
        let mut c = Conversation::new(
            3,
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let mut out = Vec::new();
        c.open(t(1), "x", &mut out);
        let refused = End::ConnectFailed("Connection refused".into());
        c.end(Side::Server, &refused, t(2), &mut out);
        c.end(Side::Client, &End::Aborted, t(2), &mut out);
        assert_eq!(blocks(&out).len(), 1, "held until the close");
        c.close([0, 0], &mut out);
        let p = blocks(&out);
        assert_eq!(p.len(), 2);
        let (seq, ack, flags) = seq_ack(&p[1].1);
        assert_eq!((seq, ack, flags), (0, c.isn[0].wrapping_add(1), RST | ACK));
        assert_eq!(&p[1].1[12..16], &[127, 0, 0, 1]);
        assert_eq!(&p[1].1[20..22], &2u16.to_be_bytes(), "from the target port");
        assert_eq!(
            p[1].2.as_deref(),
            Some("server connect failed (Connection refused)")
        );
    }

    #[test]
    fn reset_carries_the_undelivered_count() {
        let mut c = Conversation::new(
            4,
            "127.0.0.1:1".parse().unwrap(),
            "[2001:db8::1]:80".parse().unwrap(),
        );
        let mut out = Vec::new();
        c.open(t(1), "x", &mut out);
        c.connected(t(2), &mut out);
        c.data(Dir::ClientToServer, t(3), b"lost", &mut out);
        c.end(Side::Server, &End::Reset, t(4), &mut out);
        c.end(Side::Client, &End::Aborted, t(4), &mut out);
        c.close([4, 0], &mut out);
        let p = blocks(&out);
        let (ts, last, comment) = p.last().unwrap();
        assert_eq!(*ts, 4000);
        assert_eq!(seq_ack(last).2, RST | ACK);
        assert_eq!(&last[8..24], &as_v6("2001:db8::1".parse().unwrap()));
        assert_eq!(&last[24..40], &as_v6("::ffff:127.0.0.1".parse().unwrap()));
        assert_eq!(
            comment.as_deref(),
            Some("server reset; 4 bytes the client sent never reached the server")
        );
        assert_eq!(p.len(), 3 + 2 + 1, "one RST only");
        assert!(p.iter().all(|(_, pkt, _)| pkt[0] >> 4 == 6));
        p.iter().for_each(|(_, pkt, _)| assert_valid(pkt));
    }

    #[test]
    fn shutdown_finishes_both_ways() {
        let mut c = Conversation::new(
            5,
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let mut out = Vec::new();
        c.open(t(1), "x", &mut out);
        c.connected(t(2), &mut out);
        c.end(Side::Server, &End::Fin, t(3), &mut out);
        c.end(Side::Client, &End::Shutdown, t(4), &mut out);
        c.close([0, 0], &mut out);
        let flags: Vec<u8> = blocks(&out).iter().map(|(_, p, _)| seq_ack(p).2).collect();
        assert_eq!(
            flags,
            [SYN, SYN | ACK, ACK, FIN | ACK, ACK, FIN | ACK, ACK],
            "the server's FIN, then the client's as tcpspy closes it"
        );
    }

    #[test]
    fn header_blocks() {
        let mut out = Vec::new();
        header(&mut out);
        assert_eq!(&out[0..4], &SHB.to_le_bytes());
        assert_eq!(&out[8..12], &BYTE_ORDER_MAGIC.to_le_bytes());
        let shb_len = u32::from_le_bytes(out[4..8].try_into().unwrap()) as usize;
        let idb = &out[shb_len..];
        assert_eq!(&idb[0..4], &IDB.to_le_bytes());
        assert_eq!(&idb[8..10], &LINKTYPE_RAW.to_le_bytes());
        let idb_len = u32::from_le_bytes(idb[4..8].try_into().unwrap()) as usize;
        assert_eq!(shb_len + idb_len, out.len());
        assert!(blocks(&out).is_empty());
        assert_eq!(truncate("héllo", 2), "h");
        assert_ne!(isn(1, Side::Client), isn(2, Side::Client));
        assert_ne!(isn(1, Side::Client), isn(1, Side::Server));
    }
}

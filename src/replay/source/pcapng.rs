//! Reads a capture back into recordings: pcapng (what tcpspy writes: one interface of
//! LINKTYPE_RAW, nanosecond stamps, every connection a TCP conversation) and, for captures
//! made elsewhere, classic pcap and Ethernet frames. A conversation starts with a SYN from its
//! client; its segments' payloads, in sequence order, are the chunks (retransmitted bytes are
//! dropped), a FIN or a RST its sides' ends. tcpspy names each conversation in its SYN's
//! comment (`tcpspy connection #0001: ...`), which is how `--connection N` finds it; in other
//! captures N counts SYNs from 1. The ends tcpspy made itself (a stop) say `by tcpspy` in
//! their comment and are not the peer's act.
//!
//! A damaged capture gives an error naming the packet (frame numbers as Wireshark counts
//! them) or the byte where the block structure breaks; bytes missing from a stream (a gap in
//! its sequence numbers) are an error too. Pure: bytes in, recordings out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::replay::recording::{Act, Recording};
use crate::types::Side;

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 1;
const SPB: u32 = 3;
const EPB: u32 = 6;
const BYTE_ORDER: u32 = 0x1A2B_3C4D;
const LINKTYPE_ETHERNET: u16 = 1;
const LINKTYPE_RAW: u16 = 101;
const LINKTYPE_IPV4: u16 = 228;
const LINKTYPE_IPV6: u16 = 229;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// True if `bytes` start like a capture (pcapng or classic pcap, either byte order).
pub fn looks_like(bytes: &[u8]) -> bool {
    matches!(
        bytes.get(..4),
        Some([0x0A, 0x0D, 0x0D, 0x0A])
            | Some([0xD4, 0xC3, 0xB2, 0xA1])
            | Some([0xA1, 0xB2, 0xC3, 0xD4])
            | Some([0x4D, 0x3C, 0xB2, 0xA1])
            | Some([0xA1, 0xB2, 0x3C, 0x4D])
    )
}

/// One packet as the capture holds it.
struct Frame<'a> {
    number: u64,
    nanos: u64,
    link: u16,
    data: &'a [u8],
    comment: Option<String>,
}

/// A TCP segment out of a frame.
struct Segment<'a> {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    flags: u8,
    payload: &'a [u8],
}

/// A conversation being rebuilt.
struct Conv {
    client: SocketAddr,
    server: SocketAddr,
    label: Option<String>,
    start: u64,
    /// The next sequence number expected from each side, once known.
    next: [Option<u32>; 2],
    rec: Recording,
}

fn u16_at(b: &[u8], at: usize, le: bool) -> Option<u16> {
    let s: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(if le {
        u16::from_le_bytes(s)
    } else {
        u16::from_be_bytes(s)
    })
}

fn u32_at(b: &[u8], at: usize, le: bool) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if le {
        u32::from_le_bytes(s)
    } else {
        u32::from_be_bytes(s)
    })
}

/// An interface: its link type and how many nanoseconds one tick is (as a divisor or
/// multiplier of the stamp).
#[derive(Clone, Copy)]
struct Iface {
    link: u16,
    /// Ticks per second.
    per_second: u64,
}

fn frames(bytes: &[u8]) -> Result<Vec<Frame<'_>>, String> {
    match bytes.get(..4) {
        Some([0x0A, 0x0D, 0x0D, 0x0A]) => pcapng_frames(bytes),
        _ => pcap_frames(bytes),
    }
}

fn pcap_frames(bytes: &[u8]) -> Result<Vec<Frame<'_>>, String> {
    let magic = u32_at(bytes, 0, true).ok_or("not a capture: too short")?;
    let (le, nano) = match magic {
        0xA1B2_C3D4 => (true, false),
        0xA1B2_3C4D => (true, true),
        0xD4C3_B2A1 => (false, false),
        0x4D3C_B2A1 => (false, true),
        _ => return Err("not a capture (no pcap or pcapng magic)".into()),
    };
    let link = u32_at(bytes, 20, le).ok_or("the capture's header is cut short")? as u16;
    let mut out = Vec::new();
    let mut at = 24usize;
    let mut number = 0u64;
    while at < bytes.len() {
        number = number.saturating_add(1);
        let cut = || format!("packet {number}: cut short (byte {at} of the file)");
        let secs = u64::from(u32_at(bytes, at, le).ok_or_else(cut)?);
        let frac = u64::from(u32_at(bytes, at + 4, le).ok_or_else(cut)?);
        let caplen = u32_at(bytes, at + 8, le).ok_or_else(cut)? as usize;
        let start = at.checked_add(16).ok_or_else(cut)?;
        let end = start.checked_add(caplen).ok_or_else(cut)?;
        let data = bytes.get(start..end).ok_or_else(cut)?;
        let nanos = secs.saturating_mul(1_000_000_000).saturating_add(if nano {
            frac
        } else {
            frac.saturating_mul(1000)
        });
        out.push(Frame {
            number,
            nanos,
            link,
            data,
            comment: None,
        });
        at = end;
    }
    Ok(out)
}

fn pcapng_frames(bytes: &[u8]) -> Result<Vec<Frame<'_>>, String> {
    let mut out = Vec::new();
    let mut ifaces: Vec<Iface> = Vec::new();
    let mut le = true;
    let mut at = 0usize;
    let mut number = 0u64;
    while at < bytes.len() {
        let kind_raw = bytes
            .get(at..at + 4)
            .ok_or_else(|| format!("byte {at}: a block cut short"))?;
        if kind_raw == [0x0A, 0x0D, 0x0D, 0x0A] {
            let order = u32_at(bytes, at + 8, true)
                .ok_or_else(|| format!("byte {at}: a section header cut short"))?;
            le = match order {
                BYTE_ORDER => true,
                o if o.swap_bytes() == BYTE_ORDER => false,
                _ => {
                    return Err(format!(
                        "byte {at}: a section header with no byte-order magic"
                    ));
                }
            };
            ifaces.clear();
        }
        let kind = u32_at(bytes, at, le).ok_or_else(|| format!("byte {at}: a block cut short"))?;
        let len = u32_at(bytes, at + 4, le)
            .ok_or_else(|| format!("byte {at}: a block cut short"))? as usize;
        let this = number.saturating_add(1);
        let cut = || {
            if kind == EPB || kind == SPB {
                format!("packet {this}: cut short (block at byte {at})")
            } else {
                format!("byte {at}: a block of {len} bytes runs past the end of the file")
            }
        };
        if len < 12 || !len.is_multiple_of(4) {
            return Err(format!(
                "byte {at}: a block claims {len} bytes, not a pcapng block"
            ));
        }
        let end = at.checked_add(len).ok_or_else(cut)?;
        let block = bytes.get(at..end).ok_or_else(cut)?;
        let body = block.get(8..len - 4).unwrap_or(&[]);
        match kind {
            SHB => {}
            IDB => {
                let link = u16_at(body, 0, le).ok_or_else(cut)?;
                let mut per_second = 1_000_000;
                for (code, value) in options(body.get(8..).unwrap_or(&[]), le) {
                    if code == 9
                        && let Some(&v) = value.first()
                    {
                        per_second = match v & 0x80 {
                            0 => 10u64.checked_pow(u32::from(v)).unwrap_or(u64::MAX),
                            _ => 1u64.checked_shl(u32::from(v & 0x7f)).unwrap_or(u64::MAX),
                        };
                    }
                }
                ifaces.push(Iface { link, per_second });
            }
            EPB => {
                number = number.saturating_add(1);
                let bad = |what: &str| format!("packet {number}: {what}");
                let iface = u32_at(body, 0, le).ok_or_else(cut)? as usize;
                let hi = u64::from(u32_at(body, 4, le).ok_or_else(cut)?);
                let lo = u64::from(u32_at(body, 8, le).ok_or_else(cut)?);
                let caplen = u32_at(body, 12, le).ok_or_else(cut)? as usize;
                let data_end = 20usize
                    .checked_add(caplen)
                    .ok_or_else(|| bad("bad length"))?;
                let data = body
                    .get(20..data_end)
                    .ok_or_else(|| bad("its data runs past its block"))?;
                let padded = data_end
                    .checked_add((4 - caplen % 4) % 4)
                    .unwrap_or(data_end);
                let comment = options(body.get(padded..).unwrap_or(&[]), le)
                    .find(|(code, _)| *code == 1)
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
                let i = ifaces.get(iface).ok_or_else(|| {
                    bad(&format!("names interface {iface}, which is not described"))
                })?;
                let ticks = hi << 32 | lo;
                out.push(Frame {
                    number,
                    nanos: to_nanos(ticks, i.per_second),
                    link: i.link,
                    data,
                    comment,
                });
            }
            SPB => {
                number = number.saturating_add(1);
                let i = ifaces.first().copied().ok_or_else(|| {
                    format!("packet {number}: comes before any interface is described")
                })?;
                out.push(Frame {
                    number,
                    nanos: 0,
                    link: i.link,
                    data: body.get(4..).unwrap_or(&[]),
                    comment: None,
                });
            }
            _ => {}
        }
        at = end;
    }
    Ok(out)
}

fn to_nanos(ticks: u64, per_second: u64) -> u64 {
    if per_second == 0 {
        return 0;
    }
    let secs = ticks / per_second;
    let rest = ticks % per_second;
    let frac = (u128::from(rest) * 1_000_000_000 / u128::from(per_second)) as u64;
    secs.saturating_mul(1_000_000_000).saturating_add(frac)
}

/// A block's options: (code, value) until the end-of-options or the end of the bytes.
fn options(mut b: &[u8], le: bool) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let code = u16_at(b, 0, le)?;
        let len = usize::from(u16_at(b, 2, le)?);
        if code == 0 {
            return None;
        }
        let value = b.get(4..4 + len)?;
        let padded = 4 + len + (4 - len % 4) % 4;
        b = b.get(padded..).unwrap_or(&[]);
        Some((code, value))
    })
}

/// The TCP segment in a frame, if it holds one.
fn segment<'a>(f: &Frame<'a>) -> Option<Segment<'a>> {
    let ip = match f.link {
        LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 => f.data,
        LINKTYPE_ETHERNET => {
            let ethertype = u16_at(f.data, 12, false)?;
            if ethertype != 0x0800 && ethertype != 0x86DD {
                return None;
            }
            f.data.get(14..)?
        }
        _ => return None,
    };
    let version = ip.first()? >> 4;
    let (src_ip, dst_ip, tcp): (IpAddr, IpAddr, &[u8]) = match version {
        4 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            if *ip.get(9)? != 6 || ihl < 20 {
                return None;
            }
            let total = usize::from(u16_at(ip, 2, false)?);
            let s: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (
                Ipv4Addr::from(s).into(),
                Ipv4Addr::from(d).into(),
                ip.get(ihl..total.max(ihl))?,
            )
        }
        6 => {
            if *ip.get(6)? != 6 {
                return None;
            }
            let payload = usize::from(u16_at(ip, 4, false)?);
            let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (
                Ipv6Addr::from(s).into(),
                Ipv6Addr::from(d).into(),
                ip.get(40..40usize.checked_add(payload)?)?,
            )
        }
        _ => return None,
    };
    let sport = u16_at(tcp, 0, false)?;
    let dport = u16_at(tcp, 2, false)?;
    let seq = u32_at(tcp, 4, false)?;
    let off = usize::from(tcp.get(12)? >> 4) * 4;
    let flags = *tcp.get(13)?;
    if off < 20 {
        return None;
    }
    Some(Segment {
        src: SocketAddr::new(src_ip, sport),
        dst: SocketAddr::new(dst_ip, dport),
        seq,
        flags,
        payload: tcp.get(off..)?,
    })
}

/// The label in tcpspy's SYN comment: `tcpspy connection #0001: ...` → `0001`.
fn label(comment: &str) -> Option<String> {
    let rest = comment.strip_prefix("tcpspy connection #")?;
    Some(rest.split(':').next().unwrap_or(rest).to_string())
}

/// Every conversation of the capture, in the order their SYNs came.
pub fn read_all(bytes: &[u8], origin: &str) -> Result<Vec<(Option<String>, Recording)>, String> {
    let mut convs: Vec<Conv> = Vec::new();
    for f in frames(bytes)? {
        let Some(seg) = segment(&f) else { continue };
        if seg.flags & SYN != 0 && seg.flags & ACK == 0 {
            let label = f.comment.as_deref().and_then(label);
            let n = convs.len().saturating_add(1);
            let name = match &label {
                Some(l) => format!("{origin}, connection #{l}"),
                None => format!("{origin}, conversation {n}"),
            };
            convs.push(Conv {
                client: seg.src,
                server: seg.dst,
                label,
                start: f.nanos,
                next: [Some(seg.seq.wrapping_add(1)), None],
                rec: Recording::new(name),
            });
            continue;
        }
        // The latest conversation between these two addresses.
        let Some(c) = convs.iter_mut().rev().find(|c| {
            (c.client == seg.src && c.server == seg.dst)
                || (c.client == seg.dst && c.server == seg.src)
        }) else {
            continue;
        };
        let side = if seg.src == c.client {
            Side::Client
        } else {
            Side::Server
        };
        let at = Some(Duration::from_nanos(f.nanos.saturating_sub(c.start)));
        let next = &mut c.next[side.index()];
        if seg.flags & SYN != 0 {
            *next = Some(seg.seq.wrapping_add(1));
            continue;
        }
        if !seg.payload.is_empty() {
            let expected = next.unwrap_or(seg.seq);
            let ahead = seg.seq.wrapping_sub(expected);
            let behind = expected.wrapping_sub(seg.seq) as usize;
            if ahead != 0 && ahead < 1 << 31 {
                return Err(format!(
                    "packet {}: {ahead} bytes of the {} are missing before it (not captured)",
                    f.number,
                    side.name()
                ));
            }
            // A retransmission: keep only what is new.
            let fresh = match ahead {
                0 => seg.payload,
                _ => seg.payload.get(behind..).unwrap_or(&[]),
            };
            *next = Some(expected.wrapping_add(fresh.len() as u32));
            c.rec.data(side, fresh.to_vec(), at);
        }
        let by_tcpspy = f
            .comment
            .as_deref()
            .is_some_and(|t| t.contains("by tcpspy"));
        if seg.flags & RST != 0 && !by_tcpspy {
            c.rec.end(side, Act::Reset, at);
        } else if seg.flags & FIN != 0 && !by_tcpspy {
            c.rec.end(side, Act::Fin, at);
        }
    }
    Ok(convs.into_iter().map(|c| (c.label, c.rec)).collect())
}

/// The conversation `wanted` (tcpspy's connection number, else the Nth SYN), or the only one.
pub fn read(bytes: &[u8], origin: &str, wanted: Option<&str>) -> Result<Recording, String> {
    let mut all = read_all(bytes, origin)?;
    match wanted {
        None if all.len() == 1 => Ok(all.remove(0).1),
        None if all.is_empty() => Err("the capture holds no TCP conversation".into()),
        None => Err(format!(
            "the capture holds {} conversations; choose one with --connection N",
            all.len()
        )),
        Some(w) => {
            let n: Option<usize> = w.parse().ok();
            let by_label = all.iter().position(|(l, _)| {
                l.as_deref().is_some_and(|l| {
                    l == w
                        || (n.is_some() && l.rsplit('-').next().and_then(|t| t.parse().ok()) == n)
                })
            });
            let at =
                by_label.or_else(|| n.and_then(|n| n.checked_sub(1)).filter(|i| *i < all.len()));
            match at {
                Some(i) => Ok(all.swap_remove(i).1),
                None => Err(format!(
                    "the capture has no connection {w} ({} conversations)",
                    all.len()
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::pcap::{self, Conversation};
    use crate::types::{Dir, End};
    use std::time::{SystemTime, UNIX_EPOCH};

    fn t(us: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(us)
    }

    /// A capture as tcpspy writes it, made by its own writer.
    fn capture() -> Vec<u8> {
        let mut out = Vec::new();
        pcap::header(&mut out);
        let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let server: SocketAddr = "127.0.0.1:6379".parse().unwrap();
        let mut c = Conversation::new(7, client, server);
        c.open(
            t(1_000_000),
            "tcpspy connection #0007: client 127.0.0.1:40000",
            &mut out,
        );
        c.connected(t(1_000_100), &mut out);
        c.data(Dir::ClientToServer, t(1_000_200), b"PING\r\n", &mut out);
        c.data(Dir::ServerToClient, t(1_000_300), b"+PONG\r\n", &mut out);
        c.end(Side::Client, &End::Fin, t(1_000_400), &mut out);
        c.end(Side::Server, &End::Reset, t(1_000_500), &mut out);
        c.close([0, 0], &mut out);
        out
    }

    #[test]
    fn reads_tcpspys_captures() {
        let bytes = capture();
        assert!(looks_like(&bytes));
        let r = read(&bytes, "c", Some("7")).unwrap();
        assert_eq!(r.stream(Side::Client), b"PING\r\n");
        assert_eq!(r.stream(Side::Server), b"+PONG\r\n");
        assert_eq!(r.end_of(Side::Client), Some(&Act::Fin));
        assert_eq!(r.end_of(Side::Server), Some(&Act::Reset));
        assert_eq!(r.steps[0].at, Some(Duration::from_micros(200)));
        assert_eq!(read(&bytes, "c", None).unwrap(), r);
        assert!(read(&bytes, "c", Some("8")).is_err());
    }

    #[test]
    fn a_cut_capture_names_the_packet() {
        let bytes = capture();
        let mut last_err = String::new();
        for cut in 0..bytes.len() {
            if let Err(e) = read(&bytes[..cut], "c", None) {
                last_err = e;
            }
        }
        assert!(last_err.starts_with("packet "), "{last_err}");
    }
}

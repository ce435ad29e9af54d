//! Property tests (proptest) of every parser tcpspy has: the command-line values and whole
//! argument vectors (`tcpspy::cli`), and the hex dump reader (`tcpspy::log::hexdump`). None may
//! panic on any input; what tcpspy writes must parse back to what it wrote. The same parsers
//! have coverage-guided fuzz targets in `fuzz/` (see README.md, "Fuzzing").
//!
//! Each property runs a bounded number of cases (`PROPTEST_CASES` raises it).

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::ffi::OsStringExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use tcpspy::cli;
use tcpspy::config::parse as cli_parse;
use tcpspy::log::hexdump;
use tcpspy::log::stamp::Stamper;
use tcpspy::types::{Dir, Side};

fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Strings close to what the CLI parsers expect (digits, units, brackets, colons), so the
/// cases reach past the first check; `any::<String>()` covers the rest.
fn cli_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9a-fA-F:.\\[\\]%, kKmMgGiIbBsuµhn-]{0,24}",
        "\\[?[0-9a-f:.]{0,20}\\]?:[0-9]{0,7}",
        "[0-9 ]{0,22}[.]?[0-9]{0,4} ?(s|ms|us|µs|m|min|h|K|KB|KiB|M|G|GiB|T|B)?",
    ]
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<u32>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(ip.into(), port))),
        (any::<u128>(), any::<u16>(), any::<u32>(), any::<u32>()).prop_map(
            |(ip, port, flow, scope)| SocketAddr::V6(SocketAddrV6::new(
                ip.into(),
                port,
                flow,
                scope
            ))
        ),
    ]
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Client), Just(Side::Server)]
}

/// Times a clock can give: the epoch to a few centuries on.
fn time() -> impl Strategy<Value = SystemTime> {
    (0u64..10_000_000_000, 0u32..1_000_000_000).prop_map(|(s, n)| UNIX_EPOCH + Duration::new(s, n))
}

/// A hex dump as tcpspy writes it: each chunk's header and dump, offsets and numbers counted
/// per direction.
fn write_dump(chunks: &[(Side, Vec<u8>)], peer: &SocketAddr, at: SystemTime) -> Vec<u8> {
    let mut s = Stamper::default();
    let mut out = b"Connected to x at y\n".to_vec();
    let mut nums = [0u64; 2];
    let mut offs = [0u64; 2];
    for (side, data) in chunks {
        let i = side.index();
        hexdump::chunk_header(
            &mut out,
            &mut s,
            nums[i],
            offs[i],
            data.len(),
            peer,
            *side,
            at,
        );
        hexdump::dump(data, &mut out);
        nums[i] += 1;
        offs[i] += data.len() as u64;
    }
    out.extend_from_slice(b"Finished at z\n");
    out
}

fn chunks() -> impl Strategy<Value = Vec<(Side, Vec<u8>)>> {
    prop::collection::vec((side(), prop::collection::vec(any::<u8>(), 1..100)), 0..12)
}

/// Edits applied to a valid dump: (where, what, byte). The bytes are biased to the dump's own
/// alphabet so the mutants stay close to real dumps.
fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    let alphabet = b"0123456789abcdefABCDEFX |\n()#,:. -+ReceivdbytsfromclntrvaU\xc3\xa9";
    prop::collection::vec(
        (
            any::<usize>(),
            0u8..4,
            prop_oneof![prop::sample::select(alphabet.to_vec()), any::<u8>()],
        ),
        1..8,
    )
}

fn mutate(mut text: Vec<u8>, edits: &[(usize, u8, u8)]) -> String {
    for &(at, op, b) in edits {
        let at = if text.is_empty() { 0 } else { at % text.len() };
        match op {
            0 if !text.is_empty() => text[at] = b,
            1 => text.insert(at, b),
            2 if !text.is_empty() => {
                text.remove(at);
            }
            _ => {
                // Duplicate or drop a whole line.
                let start = text[..at]
                    .iter()
                    .rposition(|c| *c == b'\n')
                    .map_or(0, |p| p + 1);
                let end = text[at..]
                    .iter()
                    .position(|c| *c == b'\n')
                    .map_or(text.len(), |p| at + p + 1);
                if b % 2 == 0 {
                    let line = text[start..end].to_vec();
                    text.splice(start..start, line);
                } else {
                    text.drain(start..end);
                }
            }
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn cli_value_parsers_never_panic(s in cli_like()) {
        let _ = cli_parse::parse_port(&s);
        let _ = cli_parse::parse_listen(&s);
        let _ = cli_parse::parse_target(&s);
        let _ = cli_parse::parse_size(&s);
        let _ = cli_parse::parse_duration(&s);
        let _ = cli_parse::parse_formats(&s);
    }

    #[test]
    fn ports_round_trip(p in any::<u16>(), big in 65536u64..u64::MAX) {
        prop_assert_eq!(cli_parse::parse_port(&p.to_string()).unwrap(), p);
        let e = cli_parse::parse_port(&big.to_string()).unwrap_err().to_string();
        prop_assert!(e.contains("out of range"), "{}", e);
    }

    #[test]
    fn listen_addresses_round_trip(a in socket_addr(), p in any::<u16>()) {
        let a = match a {
            // A scope or flow label is not part of what --listen takes.
            SocketAddr::V6(v6) => SocketAddr::new(IpAddr::V6(*v6.ip()), v6.port()),
            v4 => v4,
        };
        prop_assert_eq!(cli_parse::parse_listen(&a.to_string()).unwrap(), a);
        prop_assert_eq!(
            cli_parse::parse_listen(&p.to_string()).unwrap(),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p)
        );
    }

    #[test]
    fn targets_round_trip(host in "[a-z0-9][a-z0-9.-]{0,30}", v6 in any::<u128>(), p in 1u16..) {
        prop_assert_eq!(cli_parse::parse_target(&format!("{host}:{p}")).unwrap(), (host.clone(), p));
        let ip = std::net::Ipv6Addr::from(v6);
        prop_assert_eq!(
            cli_parse::parse_target(&format!("[{ip}]:{p}")).unwrap(),
            (ip.to_string(), p)
        );
        let zero = format!("{host}:0");
        prop_assert!(cli_parse::parse_target(&zero).is_err());
    }

    #[test]
    fn sizes_and_durations_round_trip(n in 1usize..1 << 20, unit in 0usize..4, ms in any::<u32>()) {
        let (suffix, shift) = [("", 0), ("K", 10), ("m", 20), ("GiB", 30)][unit];
        prop_assert_eq!(cli_parse::parse_size(&format!("{n}{suffix}")).unwrap(), (n as u64) << shift);
        prop_assert_eq!(
            cli_parse::parse_duration(&format!("{ms}ms")).unwrap(),
            Duration::from_millis(u64::from(ms))
        );
        // A bare number is seconds, and at most a year of them is taken.
        let secs = u64::from(ms);
        match cli_parse::parse_duration(&ms.to_string()) {
            Ok(d) => prop_assert_eq!(d, Duration::from_secs(secs)),
            Err(e) => {
                prop_assert!(secs > cli_parse::MAX_DURATION.as_secs(), "{}: {}", secs, e);
                prop_assert!(e.to_string().contains("out of range"), "{}", e);
            }
        }
    }

    #[test]
    fn format_lists_parse(words in prop::collection::vec(prop::sample::select(vec!["hex", "binary", " hex ", "binary "]), 1..5)) {
        let f = cli_parse::parse_formats(&words.join(",")).unwrap();
        prop_assert_eq!(f.hex, words.iter().any(|w| w.trim() == "hex"));
        prop_assert_eq!(f.binary, words.iter().any(|w| w.trim() == "binary"));
    }

    #[test]
    fn hexdump_reader_never_panics_on_any_text(s in any::<String>()) {
        let _ = hexdump::parse(&s);
        let _ = hexdump::streams(&s);
    }

    #[test]
    fn hexdump_reader_never_panics_on_damaged_dumps(
        c in chunks(), peer in socket_addr(), at in time(), e in edits()
    ) {
        let text = mutate(write_dump(&c, &peer, at), &e);
        let _ = hexdump::parse(&text);
        let _ = hexdump::streams(&text);
    }

    #[test]
    fn any_bytes_dump_and_parse_back(data in prop::collection::vec(any::<u8>(), 0..5000)) {
        let mut text = format!("Received (#0, 00000000) {} bytes from 127.0.0.1:1 (client) at t\n", data.len()).into_bytes();
        hexdump::dump(&data, &mut text);
        let text = String::from_utf8(text).expect("a dump is ASCII");
        let chunks = hexdump::parse(&text).unwrap();
        prop_assert_eq!(chunks.len(), 1);
        prop_assert_eq!(&chunks[0].data, &data);
    }

    #[test]
    fn chunk_headers_parse_back(
        number in any::<u64>(), offset in any::<u64>(), len in 0usize..64,
        peer in socket_addr(), side in side(), at in time()
    ) {
        let data = vec![0x1b; len];
        let mut out = Vec::new();
        hexdump::chunk_header(&mut out, &mut Stamper::default(), number, offset, len, &peer, side, at);
        hexdump::dump(&data, &mut out);
        let text = String::from_utf8(out).expect("ASCII");
        let c = hexdump::parse(&text).unwrap();
        prop_assert_eq!(c.len(), 1);
        let dir = match side { Side::Client => Dir::ClientToServer, Side::Server => Dir::ServerToClient };
        prop_assert_eq!(
            (c[0].dir, c[0].number, c[0].offset, c[0].len, &c[0].data),
            (dir, number, offset, len, &data)
        );
    }

    #[test]
    fn dumps_of_many_chunks_give_both_streams_back(c in chunks(), peer in socket_addr(), at in time()) {
        let text = String::from_utf8(write_dump(&c, &peer, at)).expect("ASCII");
        let streams = hexdump::streams(&text).unwrap();
        for side in [Side::Client, Side::Server] {
            let want: Vec<u8> = c.iter().filter(|(s, _)| *s == side).flat_map(|(_, d)| d.clone()).collect();
            prop_assert_eq!(&streams[side.index()], &want);
        }
    }
}

/// Words an argument vector is made of: every flag tcpspy has, in its forms, and junk.
fn arg() -> impl Strategy<Value = OsString> {
    let flags = vec![
        "-l",
        "--listen",
        "-t",
        "--target",
        "-d",
        "--log-dir",
        "--log",
        "--log-queue",
        "--buffer-size",
        "--connect-timeout",
        "--host",
        "-host",
        "--port",
        "-port",
        "--listen_port",
        "-listen_port",
        "-local_port",
        "--local_port",
        "--help",
        "-h",
        "--version",
        "-V",
        "--",
        "-",
        "-host=",
        "-port=",
        "-listen_port=",
        "--listen=",
    ];
    prop_oneof![
        4 => prop::sample::select(flags).prop_map(OsString::from),
        3 => cli_like().prop_map(OsString::from),
        1 => (prop::sample::select(vec!["-host=", "--port=", "-listen_port=", "--log="]), cli_like())
            .prop_map(|(f, v)| OsString::from(format!("{f}{v}"))),
        1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(OsString::from_vec),
    ]
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn argv_parsing_never_panics(argv in prop::collection::vec(arg(), 0..10)) {
        let full = std::iter::once(OsString::from("tcpspy")).chain(argv);
        match cli::parse_args(full) {
            // Every value went through its typed parser inside clap.
            Ok(a) => { let _ = format!("{a:?}"); }
            Err(e) => {
                let line = cli::one_line(&e);
                prop_assert!(!line.contains('\n'), "{}", line);
            }
        }
    }
}

/// A `--fault` spec made of the parts users type, and noise.
fn fault_spec() -> impl Strategy<Value = String> {
    let types = prop::sample::select(tcpspy::faults::spec::TYPES.to_vec());
    let keys = prop::sample::select(vec![
        "latency",
        "jitter",
        "rate",
        "delay",
        "timeout",
        "average_size",
        "size_variation",
        "bytes",
        "probability",
        "stream",
        "toxicity",
        "name",
        "match",
        "after_bytes",
        "proxy",
        "x",
    ]);
    let values = prop_oneof![
        (0u64..100_000).prop_map(|n| n.to_string()),
        Just("downstream".to_string()),
        Just("both".to_string()),
        Just("0.5".to_string()),
        "[a-z(|)*.]{0,8}",
        any::<String>(),
    ];
    (types, prop::collection::vec((keys, values), 0..5)).prop_map(|(t, kv)| {
        let attrs: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{t}:{}", attrs.join(","))
    })
}

proptest! {
    #![proptest_config(config(1000))]

    /// A spec parses or is refused in one line; what parses shows itself as JSON that parses
    /// back to the same toxic (the API's view of what the command line gave).
    #[test]
    fn fault_specs_parse_or_refuse_and_round_trip(s in prop_oneof![fault_spec(), any::<String>()]) {
        match tcpspy::faults::spec::parse_flag(&s) {
            Ok(f) => {
                let json = f.toxic.to_json().to_string();
                let back = tcpspy::faults::spec::from_json(json.as_bytes());
                prop_assert_eq!(back.as_ref().ok(), Some(&f.toxic), "{}", json);
            }
            Err(e) => prop_assert!(!e.contains('\n'), "{}", e),
        }
    }

    /// The control API's request reader takes any bytes without a panic, and never reads a
    /// request past the bytes it was given.
    #[test]
    fn control_requests_never_panic(b in prop::collection::vec(any::<u8>(), 0..512), head in "(GET|POST|PATCH|DELETE) /[a-z/]{0,20} HTTP/1.1\r\n(Content-Length: [0-9]{1,3}\r\n)?\r\n") {
        for input in [b.clone(), [head.as_bytes(), &b].concat()] {
            if let tcpspy::control::server::Parse::Done(_, used) = tcpspy::control::server::parse(&input) {
                prop_assert!(used <= input.len());
            }
        }
    }
}

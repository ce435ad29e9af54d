//! The pure parsers of command-line values, and the typed values clap hands over: each value a
//! user types is checked once, here, into a type the rest of tcpspy uses as it is. Every bound
//! is enforced here (a duration of a billion years, a size past the address space), so nothing
//! downstream can overflow on a value from the command line. No I/O: unit tests, property tests
//! and the fuzzer reach every function without a socket or a file.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};

use super::{Capture, Formats};

/// The longest duration any flag takes: a year. Deadlines are instants plus durations, and a
/// year from now is an instant on every platform.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The largest size any flag takes: 1 PiB (a budget of a whole disk fits; arithmetic on it
/// cannot overflow 64 bits).
pub const MAX_SIZE: u64 = 1 << 50;

/// A byte size as typed: `65536`, `64K`, `64M`, `1G` (powers of 1024).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Size> {
        parse_size(s).map(Size)
    }
}

impl Size {
    /// The size as a `usize` (every size is at most [`MAX_SIZE`], which fits on 64 bits).
    pub fn bytes(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (shift, unit) in [(30, "G"), (20, "M"), (10, "K")] {
            if n >= 1 << shift && n.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", n >> shift);
            }
        }
        write!(f, "{n}")
    }
}

/// A duration as typed: `10s`, `500ms`, `2m`, `1h`, or seconds; at most [`MAX_DURATION`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Span> {
        parse_duration(s).map(Span)
    }
}

/// A timeout that can be off: `off`, `none` and any zero duration (`0`, `0s`, `0ms`) mean off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Optional(pub Option<Duration>);

impl FromStr for Optional {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Optional> {
        match s.trim() {
            "off" | "none" => Ok(Optional(None)),
            t => {
                let d = parse_duration(t)?;
                Ok(Optional((!d.is_zero()).then_some(d)))
            }
        }
    }
}

/// Where to listen: `IP:PORT`, `[IPv6]:PORT`, or a bare `PORT` (127.0.0.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen(pub SocketAddr);

impl FromStr for Listen {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Listen> {
        parse_listen(s).map(Listen)
    }
}

/// A target as typed, not yet resolved: `HOST:PORT`, `IP:PORT` or `[IPv6]:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// As the user wrote it (trimmed), for messages and the hex dump.
    pub text: String,
}

impl Target {
    pub fn new(host: &str, port: u16) -> Target {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Target {
            text: join_host_port(&host, port),
            host,
            port,
        }
    }
}

impl FromStr for Target {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Target> {
        let (host, port) = parse_target(s)?;
        Ok(Target {
            host,
            port,
            text: s.trim().to_string(),
        })
    }
}

/// A forwarding rule as typed: `[BIND:]PORT=HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    pub listen: SocketAddr,
    pub target: Target,
    /// As the user wrote it, for messages.
    pub text: String,
}

impl FromStr for Forward {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Forward> {
        let (listen, target) = s
            .split_once('=')
            .ok_or_else(|| anyhow!("expected [BIND:]PORT=HOST:PORT"))?;
        Ok(Forward {
            listen: parse_listen(listen)?,
            target: target.parse()?,
            text: s.to_string(),
        })
    }
}

/// A port as typed (gotcpspy's `-port`): 1-65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port(pub u16);

impl FromStr for Port {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Port> {
        match parse_port(s)? {
            0 => bail!("the target port cannot be 0"),
            p => Ok(Port(p)),
        }
    }
}

impl FromStr for Formats {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Formats> {
        parse_formats(s)
    }
}

/// A count in `lo..=hi` (connections, open files): clap's range parser is for fixed-width
/// integers, and the message says what the bounds are for.
pub fn count(s: &str, lo: usize, hi: usize) -> Result<usize> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| anyhow!("expected a whole number from {lo} to {hi}"))?;
    if !(lo..=hi).contains(&n) {
        bail!("{n} is out of range ({lo} to {hi})");
    }
    Ok(n)
}

/// Parses a port number, saying "out of range" rather than "invalid digit" for 70000.
pub fn parse_port(s: &str) -> Result<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        bail!("the port must be a number from 0 to 65535");
    }
    s.parse::<u16>()
        .map_err(|_| anyhow!("port {s} out of range (0-65535)"))
}

/// Parses `--listen`: `IP:PORT`, `[IPv6]:PORT` or a bare `PORT`, which binds 127.0.0.1.
pub fn parse_listen(s: &str) -> Result<SocketAddr> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            parse_port(s)?,
        ));
    }
    let (host, port) = split_host_port(s)?;
    let port = parse_port(port)?;
    let ip: IpAddr = match host {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h.parse().map_err(|_| {
            anyhow!("{h:?} is not an IP address (listen takes IP:PORT, [IPv6]:PORT or PORT)")
        })?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// Parses `--forward [BIND:]PORT=HOST:PORT` into the listening address, the target as
/// written, and its host and port.
pub fn parse_forward(s: &str) -> Result<(SocketAddr, String, (String, u16))> {
    let f: Forward = s.parse()?;
    Ok((f.listen, f.target.text, (f.target.host, f.target.port)))
}

/// Parses `--target` into host and port; the host is not resolved here.
pub fn parse_target(s: &str) -> Result<(String, u16)> {
    let (host, port) = split_host_port(s.trim())?;
    if host.is_empty() {
        bail!("the host is missing (HOST:PORT)");
    }
    let port = parse_port(port)?;
    if port == 0 {
        bail!("the target port cannot be 0");
    }
    Ok((host.to_string(), port))
}

/// Splits `host:port` or `[v6]:port`; a bare IPv6 address without brackets is refused because
/// its last group cannot be told from a port.
pub fn split_host_port(s: &str) -> Result<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| anyhow!("missing ']' after the IPv6 address"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| anyhow!("missing :PORT after [{host}]"))?;
        return Ok((host, port));
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("missing :PORT (expected HOST:PORT)"))?;
    if host.contains(':') {
        bail!("an IPv6 address needs brackets: [{host}]:PORT");
    }
    Ok((host, port))
}

/// `host:port`, with brackets around an IPv6 address.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Parses `--log`: `hex`, `binary`, `pcap` (comma separated) or `none`.
pub fn parse_formats(s: &str) -> Result<Formats> {
    let mut f = Formats::default();
    let mut none = false;
    for word in s.split(',').map(str::trim) {
        match word {
            "hex" => f.hex = true,
            "binary" => f.binary = true,
            "pcap" => f.pcap = true,
            "none" => none = true,
            "" => bail!("empty format name"),
            other => bail!("unknown format {other:?} (known: hex, binary, pcap, none)"),
        }
    }
    if none && f.records() {
        bail!("`none` cannot be combined with other formats");
    }
    Ok(f)
}

/// Parses `--pcap`: `-` is stdout, anything else a file path.
pub fn parse_capture(p: &Path) -> Result<Capture> {
    if p.as_os_str().is_empty() {
        bail!("expected a file path, or - for stdout");
    }
    Ok(if p.as_os_str() == "-" {
        Capture::Stdout
    } else {
        Capture::File(p.to_path_buf())
    })
}

impl FromStr for Capture {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Capture> {
        parse_capture(&PathBuf::from(s))
    }
}

/// Parses a byte size: `65536`, `64K`, `64M`, `1G` (powers of 1024; `KiB`/`KB`/`B` accepted),
/// from 1 byte to [`MAX_SIZE`].
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        bail!("expected a size such as 65536, 64K or 64M");
    }
    let (num, unit) = s.split_at(digits);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        other => bail!("unknown size unit {other:?} (use K, M, G or T)"),
    };
    let n: u64 = num.parse().map_err(|_| anyhow!("size {s} too large"))?;
    let size = n
        .checked_mul(1u64 << shift)
        .filter(|&v| v <= MAX_SIZE)
        .ok_or_else(|| anyhow!("size {s} too large (at most 1024T)"))?;
    if size == 0 {
        bail!("the size must be greater than 0");
    }
    Ok(size)
}

/// Parses a size in `lo..=hi` bytes; the message names the bounds as the user writes sizes.
pub fn parse_size_within(s: &str, lo: u64, hi: u64) -> Result<u64> {
    let n = parse_size(s)?;
    if !(lo..=hi).contains(&n) {
        bail!("must be between {} and {}", Size(lo), Size(hi));
    }
    Ok(n)
}

/// `--buffer-size`: a relay buffer, [`super::BUFFER_SIZE_RANGE`].
pub fn buffer_size(s: &str) -> Result<Size> {
    let (lo, hi) = super::BUFFER_SIZE_RANGE;
    parse_size_within(s, lo, hi).map(Size)
}

/// `--log-queue`: [`super::LOG_QUEUE_RANGE`].
pub fn log_queue(s: &str) -> Result<Size> {
    let (lo, hi) = super::LOG_QUEUE_RANGE;
    parse_size_within(s, lo, hi).map(Size)
}

/// `--log-budget`: [`super::LOG_BUDGET_RANGE`].
pub fn log_budget(s: &str) -> Result<Size> {
    let (lo, hi) = super::LOG_BUDGET_RANGE;
    parse_size_within(s, lo, hi).map(Size)
}

/// Parses a comma list of sizes (`64,16K`).
pub fn parse_size_list(s: &str) -> Result<Vec<u64>> {
    s.split(',').map(|w| parse_size(w.trim())).collect()
}

/// Parses a duration: `10s`, `500ms`, `250us`, `2m`, `1h`, or a bare number of seconds; at
/// most [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let digits = s
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (num, unit) = s.split_at(digits);
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow!("expected a duration such as 10s or 500ms"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        other => bail!("unknown duration unit {other:?} (use ms, s, m, h or d)"),
    };
    let d = Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| *d <= MAX_DURATION)
        .ok_or_else(|| anyhow!("duration {s} out of range (at most 365d)"))?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        let l = |s: &str| parse_listen(s).map(|a| a.to_string());
        assert_eq!(l("8080").unwrap(), "127.0.0.1:8080");
        assert_eq!(l("0.0.0.0:80").unwrap(), "0.0.0.0:80");
        assert_eq!(l("[::1]:9000").unwrap(), "[::1]:9000");
        assert_eq!(l("localhost:1").unwrap(), "127.0.0.1:1");
        assert_eq!(
            l("70000").unwrap_err().to_string(),
            "port 70000 out of range (0-65535)"
        );
        assert_eq!(
            l("::1:80").unwrap_err().to_string(),
            "an IPv6 address needs brackets: [::1]:PORT"
        );
        assert!(
            l("example.com:80")
                .unwrap_err()
                .to_string()
                .contains("not an IP address")
        );
        assert!(l("").is_err());
        assert_eq!(
            l("[::1]").unwrap_err().to_string(),
            "missing :PORT after [::1]"
        );
        assert!(l("1.2.3.4:").is_err());
    }

    #[test]
    fn forward_forms() {
        let f: Forward = "5432=db.example:5432".parse().unwrap();
        assert_eq!(f.listen.to_string(), "127.0.0.1:5432");
        assert_eq!(
            (f.target.host.as_str(), f.target.port),
            ("db.example", 5432)
        );
        assert_eq!(f.target.text, "db.example:5432");
        let f: Forward = "[::1]:8080=[::1]:80".parse().unwrap();
        assert_eq!(f.listen.to_string(), "[::1]:8080");
        assert_eq!(f.target.host, "::1");
        assert_eq!(
            "8080".parse::<Forward>().unwrap_err().to_string(),
            "expected [BIND:]PORT=HOST:PORT"
        );
        assert!("8080=".parse::<Forward>().is_err());
        assert!("=h:1".parse::<Forward>().is_err());
        assert!("99999=h:1".parse::<Forward>().is_err());
    }

    #[test]
    fn target_forms() {
        assert_eq!(
            parse_target("example.com:80").unwrap(),
            ("example.com".into(), 80)
        );
        assert_eq!(parse_target("[::1]:5432").unwrap(), ("::1".into(), 5432));
        assert_eq!(
            parse_target(":80").unwrap_err().to_string(),
            "the host is missing (HOST:PORT)"
        );
        assert_eq!(
            parse_target("host:0").unwrap_err().to_string(),
            "the target port cannot be 0"
        );
        assert!(
            parse_target("host:99999")
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
        assert!(parse_target("host").is_err());
        assert_eq!(Target::new("[::1]", 7).text, "[::1]:7");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("4k").unwrap(), 4096);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("3T").unwrap(), 3 << 40);
        assert!(parse_size("0").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("5P").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
        assert!(
            parse_size("1025T")
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
        assert_eq!(Size(64 << 20).to_string(), "64M");
        assert_eq!(Size(1000).to_string(), "1000");
        assert_eq!(
            parse_size_within("1K", 4096, 1 << 20)
                .unwrap_err()
                .to_string(),
            "must be between 4K and 1M"
        );
    }

    #[test]
    fn durations_are_bounded() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("365d").unwrap(), MAX_DURATION);
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("1e999").is_err());
        assert_eq!(
            parse_duration("10000000000000000000")
                .unwrap_err()
                .to_string(),
            "duration 10000000000000000000 out of range (at most 365d)"
        );
        assert!(parse_duration("366d").is_err());
        let off = |s: &str| s.parse::<Optional>().unwrap().0;
        assert_eq!(off("off"), None);
        assert_eq!(off("0"), None);
        assert_eq!(off("0s"), None);
        assert_eq!(off("0ms"), None);
        assert_eq!(off("90s"), Some(Duration::from_secs(90)));
        assert!("-1".parse::<Optional>().is_err());
    }

    #[test]
    fn counts() {
        assert_eq!(count("7", 1, 10).unwrap(), 7);
        assert_eq!(
            count("0", 1, 10).unwrap_err().to_string(),
            "0 is out of range (1 to 10)"
        );
        assert!(count("18446744073709551615", 1, 10).is_err());
        assert!(count("99999999999999999999999", 1, 10).is_err());
        assert!(count("x", 1, 10).is_err());
    }

    #[test]
    fn formats() {
        let f = parse_formats("hex,binary").unwrap();
        assert!(f.hex && f.binary && !f.pcap && f.live.is_none());
        let f = parse_formats("binary").unwrap();
        assert!(!f.hex && f.binary);
        assert!(parse_formats("none").unwrap().is_none());
        assert_eq!(
            parse_formats("none,hex").unwrap_err().to_string(),
            "`none` cannot be combined with other formats"
        );
        assert_eq!(
            parse_formats("pdf").unwrap_err().to_string(),
            "unknown format \"pdf\" (known: hex, binary, pcap, none)"
        );
        assert_eq!(
            parse_formats("hex, binary").unwrap().to_string(),
            "hex,binary"
        );
        let all = parse_formats("pcap,hex,binary").unwrap();
        assert_eq!(all.to_string(), "hex,binary,pcap");
        assert!(parse_formats("pcap").unwrap().wants_data());
        assert!(parse_formats("none,pcap").is_err());
        assert_eq!(parse_capture(Path::new("-")).unwrap(), Capture::Stdout);
        assert!(parse_capture(Path::new("")).is_err());
    }
}

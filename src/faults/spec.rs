//! What a fault is, as the user gives it: a toxic with Toxiproxy's type, attributes, stream and
//! toxicity, plus tcpspy's content triggers (`match`, `after_bytes`). Three ways in, one parser:
//!
//! - `--fault TYPE[:ATTR=VALUE,...]` ([`parse_flag`]): the attributes, `stream`, `toxicity`,
//!   `name`, `match`, `after_bytes` and `proxy` (which rule it is for) in one comma list;
//! - a toxic's JSON, as Toxiproxy's API takes it ([`from_json`]):
//!   `{"name", "type", "stream", "toxicity", "attributes": {...}}`, the triggers among the
//!   attributes, so that every Toxiproxy client can send them;
//! - a populate file (`--faults FILE`, `POST /populate`: [`populate`]): an array of proxies
//!   `{"name", "listen", "upstream", "enabled", "toxics": [...]}`.
//!
//! Errors carry Toxiproxy's status and message (`invalid toxic type`, `bad request body: ...`)
//! so that the API can answer with them as they are. Everything here is pure.

use std::fmt;
use std::sync::Arc;

use regex_automata::dfa::{Automaton, dense};
use regex_automata::util::syntax;
use regex_automata::{Anchored, util::primitives::StateID};
use serde_json::{Map, Value, json};

/// The toxic types, as Toxiproxy names them (and `corrupt`).
pub const TYPES: [&str; 8] = [
    "latency",
    "bandwidth",
    "slow_close",
    "timeout",
    "reset_peer",
    "slicer",
    "limit_data",
    "corrupt",
];

/// The largest value a time or size attribute takes (about 11.5 days in ms, 1 PB in bytes):
/// past it nothing a test means makes sense, and sums cannot overflow.
pub const MAX_ATTR: u64 = 1 << 50;

/// A refusal, with the status and message Toxiproxy's API gives for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    pub status: u16,
    pub message: String,
}

impl SpecError {
    pub fn bad_body(what: impl fmt::Display) -> SpecError {
        SpecError {
            status: 400,
            message: format!("bad request body: {what}"),
        }
    }
    pub fn missing(field: impl fmt::Display) -> SpecError {
        SpecError {
            status: 400,
            message: format!("missing required field: {field}"),
        }
    }
    pub fn invalid_type() -> SpecError {
        SpecError {
            status: 400,
            message: "invalid toxic type".into(),
        }
    }
    pub fn invalid_stream() -> SpecError {
        SpecError {
            status: 400,
            message: "stream was invalid, can be either upstream, downstream or both".into(),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpecError {}

/// Which direction a toxic acts on: Toxiproxy's `upstream` (client to server) and
/// `downstream` (server to client), or `both`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Upstream,
    Downstream,
    Both,
}

impl Stream {
    pub fn parse(s: &str) -> Result<Stream, SpecError> {
        match s.to_ascii_lowercase().as_str() {
            "upstream" => Ok(Stream::Upstream),
            "downstream" => Ok(Stream::Downstream),
            "both" => Ok(Stream::Both),
            _ => Err(SpecError::invalid_stream()),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
            Stream::Both => "both",
        }
    }

    /// True if the toxic acts on direction `dir` (0: client to server, 1: server to client).
    pub fn covers(self, dir: usize) -> bool {
        match self {
            Stream::Upstream => dir == 0,
            Stream::Downstream => dir == 1,
            Stream::Both => true,
        }
    }
}

/// A toxic's type and attributes, in Toxiproxy's units.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// Each byte waits `latency` ms, plus or minus up to `jitter` ms.
    Latency { latency: u64, jitter: u64 },
    /// At most `rate` KB/s (1000 bytes); 0 lets everything through.
    Bandwidth { rate: u64 },
    /// The FIN waits `delay` ms.
    SlowClose { delay: u64 },
    /// Nothing gets through; after `timeout` ms (never with 0) the connection is closed.
    Timeout { timeout: u64 },
    /// At the first bytes (or the FIN), wait `timeout` ms, then reset both sides.
    ResetPeer { timeout: u64 },
    /// Writes of about `average_size` bytes (plus or minus `size_variation`), `delay` µs apart.
    Slicer {
        average_size: u64,
        size_variation: u64,
        delay: u64,
    },
    /// The connection closes once `bytes` bytes went through.
    LimitData { bytes: u64 },
    /// Each byte has one bit flipped with this probability.
    Corrupt { probability: f64 },
}

impl Kind {
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Latency { .. } => "latency",
            Kind::Bandwidth { .. } => "bandwidth",
            Kind::SlowClose { .. } => "slow_close",
            Kind::Timeout { .. } => "timeout",
            Kind::ResetPeer { .. } => "reset_peer",
            Kind::Slicer { .. } => "slicer",
            Kind::LimitData { .. } => "limit_data",
            Kind::Corrupt { .. } => "corrupt",
        }
    }

    /// The attribute names of a type, as Toxiproxy spells them.
    pub fn attribute_names(type_name: &str) -> &'static [&'static str] {
        match type_name {
            "latency" => &["latency", "jitter"],
            "bandwidth" => &["rate"],
            "slow_close" => &["delay"],
            "timeout" | "reset_peer" => &["timeout"],
            "slicer" => &["average_size", "size_variation", "delay"],
            "limit_data" => &["bytes"],
            "corrupt" => &["probability"],
            _ => &[],
        }
    }

    /// A type with its defaults (Toxiproxy's: every attribute 0), or `None` if unknown.
    pub fn default_of(type_name: &str) -> Option<Kind> {
        Some(match type_name {
            "latency" => Kind::Latency {
                latency: 0,
                jitter: 0,
            },
            "bandwidth" => Kind::Bandwidth { rate: 0 },
            "slow_close" => Kind::SlowClose { delay: 0 },
            "timeout" => Kind::Timeout { timeout: 0 },
            "reset_peer" => Kind::ResetPeer { timeout: 0 },
            "slicer" => Kind::Slicer {
                average_size: 0,
                size_variation: 0,
                delay: 0,
            },
            "limit_data" => Kind::LimitData { bytes: 0 },
            "corrupt" => Kind::Corrupt { probability: 0.0 },
            _ => return None,
        })
    }

    /// Sets the attributes `attrs` names (others keep their value, as Toxiproxy's update
    /// does), then checks the whole.
    pub fn apply(&mut self, attrs: &Map<String, Value>) -> Result<(), SpecError> {
        let get = |name: &str, into: &mut u64| -> Result<(), SpecError> {
            if let Some(v) = attrs.get(name) {
                *into = whole(name, v)?;
            }
            Ok(())
        };
        match self {
            Kind::Latency { latency, jitter } => {
                get("latency", latency)?;
                get("jitter", jitter)?;
            }
            Kind::Bandwidth { rate } => get("rate", rate)?,
            Kind::SlowClose { delay } => get("delay", delay)?,
            Kind::Timeout { timeout } | Kind::ResetPeer { timeout } => get("timeout", timeout)?,
            Kind::Slicer {
                average_size,
                size_variation,
                delay,
            } => {
                get("average_size", average_size)?;
                get("size_variation", size_variation)?;
                get("delay", delay)?;
            }
            Kind::LimitData { bytes } => get("bytes", bytes)?,
            Kind::Corrupt { probability } => {
                if let Some(v) = attrs.get("probability") {
                    *probability = match v.as_f64() {
                        Some(p) if (0.0..=1.0).contains(&p) => p,
                        _ => {
                            return Err(SpecError::bad_body(
                                "probability must be a number from 0 to 1",
                            ));
                        }
                    };
                }
            }
        }
        self.check()
    }

    fn check(&self) -> Result<(), SpecError> {
        match *self {
            Kind::Slicer {
                average_size,
                size_variation,
                ..
            } => {
                if average_size == 0 {
                    return Err(SpecError::bad_body("average_size must be at least 1"));
                }
                if size_variation >= average_size {
                    return Err(SpecError::bad_body(
                        "size_variation must be smaller than average_size",
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The attributes as Toxiproxy's JSON shows them.
    pub fn attributes(&self) -> Map<String, Value> {
        let v = match *self {
            Kind::Latency { latency, jitter } => json!({"latency": latency, "jitter": jitter}),
            Kind::Bandwidth { rate } => json!({ "rate": rate }),
            Kind::SlowClose { delay } => json!({ "delay": delay }),
            Kind::Timeout { timeout } | Kind::ResetPeer { timeout } => {
                json!({ "timeout": timeout })
            }
            Kind::Slicer {
                average_size,
                size_variation,
                delay,
            } => json!({
                "average_size": average_size,
                "size_variation": size_variation,
                "delay": delay
            }),
            Kind::LimitData { bytes } => json!({ "bytes": bytes }),
            Kind::Corrupt { probability } => json!({ "probability": probability }),
        };
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }
}

/// A whole number attribute, as Go's int64 fields take it (a number without a fraction), from
/// 0 to [`MAX_ATTR`].
fn whole(name: &str, v: &Value) -> Result<u64, SpecError> {
    match v.as_u64() {
        Some(n) if n <= MAX_ATTR => Ok(n),
        Some(_) => Err(SpecError::bad_body(format!(
            "{name} out of range (at most {MAX_ATTR})"
        ))),
        None => Err(SpecError::bad_body(format!(
            "{name} must be a whole number from 0 (got {v})"
        ))),
    }
}

/// A compiled `match` pattern: a DFA that is fed the stream byte by byte, so a match is found
/// across chunk boundaries whatever their size, in constant memory per connection.
#[derive(Clone)]
pub struct Pattern {
    pub source: String,
    dfa: Arc<dense::DFA<Vec<u32>>>,
    start: StateID,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.source == other.source
    }
}

/// The most memory one pattern's DFA may take: a pattern that needs more is refused.
const DFA_LIMIT: usize = 1 << 20;

impl Pattern {
    /// Compiles `source` as a byte regex (no Unicode: `.` is any byte but `\n`, `\xFF` a byte).
    pub fn new(source: &str) -> Result<Pattern, SpecError> {
        let bad = |e: &dyn fmt::Display| SpecError::bad_body(format!("match: {e}"));
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .dfa_size_limit(Some(DFA_LIMIT))
                    .determinize_size_limit(Some(4 * DFA_LIMIT))
                    .start_kind(regex_automata::dfa::StartKind::Unanchored),
            )
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .thompson(regex_automata::nfa::thompson::Config::new().utf8(false))
            .build(source)
            .map_err(|e| bad(&e))?;
        let start = dfa
            .start_state(&regex_automata::util::start::Config::new().anchored(Anchored::No))
            .map_err(|e| bad(&e))?;
        if source.is_empty() {
            return Err(SpecError::bad_body("match: an empty pattern"));
        }
        Ok(Pattern {
            source: source.to_string(),
            dfa: Arc::new(dfa),
            start,
        })
    }

    /// The state before any byte.
    pub fn start(&self) -> StateID {
        self.start
    }

    /// Feeds `bytes`: `Some(i)` if a match ends before index `i` (the bytes from `i` on come
    /// after it; `i == bytes.len()` for a match at the end), else the state to go on from.
    pub fn feed(&self, state: &mut StateID, bytes: &[u8]) -> Option<usize> {
        let dfa = &*self.dfa;
        for (i, &b) in bytes.iter().enumerate() {
            *state = dfa.next_state(*state, b);
            // Match states come one byte late: this one says a match ended before byte i.
            if dfa.is_match_state(*state) {
                return Some(i);
            }
            if dfa.is_dead_state(*state) || dfa.is_quit_state(*state) {
                return None;
            }
        }
        // A match ending with the chunk: the end of what has come so far counts as an end.
        match dfa.is_match_state(dfa.next_eoi_state(*state)) {
            true => Some(bytes.len()),
            false => None,
        }
    }
}

/// What a toxic waits for before it acts on a connection: nothing, a pattern in its stream's
/// bytes, or a number of them. The bytes up to the end of the match (the first N bytes) pass
/// untouched; the toxic acts from the next byte on.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Trigger {
    #[default]
    Always,
    Match(Pattern),
    AfterBytes(u64),
}

impl Trigger {
    fn from_attrs(attrs: &Map<String, Value>) -> Result<Trigger, SpecError> {
        match (attrs.get("match"), attrs.get("after_bytes")) {
            (None, None) => Ok(Trigger::Always),
            (Some(_), Some(_)) => Err(SpecError::bad_body(
                "match and after_bytes exclude each other",
            )),
            (Some(Value::String(p)), None) => Ok(Trigger::Match(Pattern::new(p)?)),
            (Some(_), None) => Err(SpecError::bad_body("match must be a string")),
            (None, Some(n)) => Ok(Trigger::AfterBytes(whole("after_bytes", n)?)),
        }
    }

    fn describe(&self, into: &mut Map<String, Value>) {
        match self {
            Trigger::Always => {}
            Trigger::Match(p) => {
                into.insert("match".into(), Value::String(p.source.clone()));
            }
            Trigger::AfterBytes(n) => {
                into.insert("after_bytes".into(), json!(n));
            }
        }
    }
}

/// One toxic: what it does, where, how often, and what sets it off.
#[derive(Clone, Debug, PartialEq)]
pub struct Toxic {
    pub name: String,
    pub kind: Kind,
    pub stream: Stream,
    /// The chance that the toxic applies to a connection (Toxiproxy's `toxicity`).
    pub toxicity: f64,
    pub trigger: Trigger,
}

impl Toxic {
    /// Toxiproxy's JSON of the toxic; the triggers are among the attributes.
    pub fn to_json(&self) -> Value {
        let mut attrs = self.kind.attributes();
        self.trigger.describe(&mut attrs);
        json!({
            "attributes": attrs,
            "name": self.name,
            "type": self.kind.type_name(),
            "stream": self.stream.name(),
            "toxicity": self.toxicity,
        })
    }

    /// A one-line account for the record: `latency_downstream: latency latency=300 jitter=50
    /// on downstream`.
    pub fn summary(&self) -> String {
        let attrs = self.kind.attributes();
        let shown: Vec<String> = Kind::attribute_names(self.kind.type_name())
            .iter()
            .filter_map(|k| Some(format!("{k}={}", attrs.get(*k)?)))
            .collect();
        let mut s = format!(
            "{}: {} {} on {}",
            self.name,
            self.kind.type_name(),
            shown.join(" "),
            self.stream.name()
        );
        match &self.trigger {
            Trigger::Always => {}
            Trigger::Match(p) => s.push_str(&format!(", after a match of {:?}", p.source)),
            Trigger::AfterBytes(n) => s.push_str(&format!(", after {n} bytes")),
        }
        s
    }

    /// Applies an update's JSON (`{"attributes": {...}, "toxicity": x}`), as Toxiproxy's
    /// `PATCH /proxies/{proxy}/toxics/{toxic}` does: the rest stays.
    pub fn update(&self, body: &[u8]) -> Result<Toxic, SpecError> {
        let v: Value = serde_json::from_slice(body).map_err(SpecError::bad_body)?;
        let obj = v
            .as_object()
            .ok_or_else(|| SpecError::bad_body("expected a JSON object"))?;
        let mut out = self.clone();
        if let Some(a) = obj.get("attributes") {
            let attrs = a
                .as_object()
                .ok_or_else(|| SpecError::bad_body("attributes must be an object"))?;
            out.kind.apply(attrs)?;
            if attrs.contains_key("match") || attrs.contains_key("after_bytes") {
                out.trigger = Trigger::from_attrs(attrs)?;
            }
        }
        if let Some(t) = obj.get("toxicity") {
            out.toxicity = toxicity(t)?;
        }
        Ok(out)
    }
}

fn toxicity(v: &Value) -> Result<f64, SpecError> {
    match v.as_f64() {
        Some(t) if (0.0..=1.0).contains(&t) => Ok(t),
        _ => Err(SpecError::bad_body("toxicity must be a number from 0 to 1")),
    }
}

/// A toxic from its JSON object, as Toxiproxy's `POST /proxies/{proxy}/toxics` takes it:
/// `type` required; `stream` defaults to downstream, `toxicity` to 1, `name` to
/// `<type>_<stream>`, each attribute to 0. Unknown fields and attributes are ignored, as Go's
/// decoder ignores them.
pub fn from_value(v: &Value) -> Result<Toxic, SpecError> {
    let obj = v
        .as_object()
        .ok_or_else(|| SpecError::bad_body("expected a JSON object"))?;
    let text = |field: &str| -> Result<Option<&str>, SpecError> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(SpecError::bad_body(format!("{field} must be a string"))),
        }
    };
    let stream = match text("stream")? {
        None | Some("") => Stream::Downstream,
        Some(s) => Stream::parse(s)?,
    };
    let type_name = text("type")?.unwrap_or("");
    let mut kind = Kind::default_of(type_name).ok_or_else(SpecError::invalid_type)?;
    let empty = Map::new();
    let attrs = match obj.get("attributes") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(SpecError::bad_body("attributes must be an object")),
    };
    kind.apply(attrs)?;
    let trigger = Trigger::from_attrs(attrs)?;
    let toxicity = match obj.get("toxicity") {
        None | Some(Value::Null) => 1.0,
        Some(t) => toxicity(t)?,
    };
    let name = match text("name")? {
        None | Some("") => format!("{type_name}_{}", stream.name()),
        Some(n) => n.to_string(),
    };
    Ok(Toxic {
        name,
        kind,
        stream,
        toxicity,
        trigger,
    })
}

/// A toxic from a JSON body.
pub fn from_json(body: &[u8]) -> Result<Toxic, SpecError> {
    let v: Value = serde_json::from_slice(body).map_err(SpecError::bad_body)?;
    from_value(&v)
}

/// One `--fault` flag: the toxic, and the proxy it is for (`None`: every rule).
#[derive(Clone, Debug, PartialEq)]
pub struct Flag {
    pub toxic: Toxic,
    pub proxy: Option<String>,
}

/// Parses `TYPE[:ATTR=VALUE,...]`. Besides the type's attributes: `stream`, `toxicity`, `name`,
/// `match`, `after_bytes`, and `proxy`. Unlike the API, an unknown attribute is refused: here a
/// person typed it. A `match` pattern that needs a comma cannot be given here (use the API or
/// a file).
pub fn parse_flag(s: &str) -> Result<Flag, String> {
    let (type_name, rest) = s.split_once(':').unwrap_or((s, ""));
    if Kind::default_of(type_name).is_none() {
        return Err(format!(
            "unknown toxic type {type_name:?} (known: {})",
            TYPES.join(", ")
        ));
    }
    let mut obj = Map::new();
    obj.insert("type".into(), Value::String(type_name.into()));
    let mut attrs = Map::new();
    let mut proxy = None;
    let known = Kind::attribute_names(type_name);
    for pair in rest.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?}: expected ATTR=VALUE"))?;
        match k {
            "stream" | "name" => {
                obj.insert(k.into(), Value::String(v.into()));
            }
            "toxicity" => {
                let t: f64 = v
                    .parse()
                    .map_err(|_| format!("toxicity {v:?}: expected a number from 0 to 1"))?;
                obj.insert(k.into(), json!(t));
            }
            "proxy" => proxy = Some(v.to_string()),
            "match" => {
                attrs.insert(k.into(), Value::String(v.into()));
            }
            k if k == "after_bytes" || known.contains(&k) => {
                let n = match v.parse::<u64>() {
                    Ok(n) => json!(n),
                    Err(_) => match v.parse::<f64>() {
                        Ok(f) if k == "probability" => json!(f),
                        _ => return Err(format!("{k}={v}: expected a whole number")),
                    },
                };
                attrs.insert(k.into(), n);
            }
            other => {
                return Err(format!(
                    "unknown attribute {other:?} for {type_name} (known: {}, stream, toxicity, \
                     name, match, after_bytes, proxy)",
                    known.join(", ")
                ));
            }
        }
    }
    obj.insert("attributes".into(), Value::Object(attrs));
    let toxic = from_value(&Value::Object(obj)).map_err(|e| {
        e.message
            .strip_prefix("bad request body: ")
            .unwrap_or(&e.message)
            .to_string()
    })?;
    Ok(Flag { toxic, proxy })
}

/// One proxy of a populate array.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxySpec {
    pub name: String,
    /// As given; empty means Toxiproxy's default, a free port on loopback.
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    pub toxics: Vec<Toxic>,
}

/// A proxy's JSON object, as `POST /proxies` and each entry of `/populate` take it: `name` and
/// `upstream` required, `enabled` defaulting to true, `toxics` (tcpspy's addition) to none.
pub fn proxy_from_value(v: &Value, at: Option<usize>) -> Result<ProxySpec, SpecError> {
    let obj = v
        .as_object()
        .ok_or_else(|| SpecError::bad_body("expected a JSON object"))?;
    let place = |field: &str| match at {
        Some(i) => format!("{field} at proxy {}", i + 1),
        None => field.to_string(),
    };
    let text = |field: &str| -> Result<String, SpecError> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(SpecError::bad_body(format!("{field} must be a string"))),
        }
    };
    let name = text("name")?;
    if name.is_empty() {
        return Err(SpecError::missing(place("name")));
    }
    let upstream = text("upstream")?;
    if upstream.is_empty() {
        return Err(SpecError::missing(place("upstream")));
    }
    let enabled = match obj.get("enabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(SpecError::bad_body("enabled must be true or false")),
    };
    let mut toxics: Vec<Toxic> = Vec::new();
    match obj.get("toxics") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for t in list {
                let t = from_value(t)?;
                if toxics.iter().any(|x| x.name == t.name) {
                    return Err(SpecError {
                        status: 409,
                        message: "toxic already exists".into(),
                    });
                }
                toxics.push(t);
            }
        }
        Some(_) => return Err(SpecError::bad_body("toxics must be an array")),
    }
    Ok(ProxySpec {
        name,
        listen: text("listen")?,
        upstream,
        enabled,
        toxics,
    })
}

/// A populate array (the `--faults` file, `POST /populate`).
pub fn populate(body: &[u8]) -> Result<Vec<ProxySpec>, SpecError> {
    let v: Value = serde_json::from_slice(body).map_err(SpecError::bad_body)?;
    let list = v
        .as_array()
        .ok_or_else(|| SpecError::bad_body("expected an array of proxies"))?;
    let mut out: Vec<ProxySpec> = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        let p = proxy_from_value(p, Some(i))?;
        if out.iter().any(|q| q.name == p.name) {
            return Err(SpecError::bad_body(format!(
                "duplicate proxy name {:?}",
                p.name
            )));
        }
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_with_toxiproxys_names_and_defaults() {
        let f = parse_flag("latency:latency=300,jitter=50,stream=downstream").unwrap();
        assert_eq!(f.proxy, None);
        assert_eq!(f.toxic.name, "latency_downstream");
        assert_eq!(
            f.toxic.kind,
            Kind::Latency {
                latency: 300,
                jitter: 50
            }
        );
        assert_eq!(f.toxic.toxicity, 1.0);
        let f = parse_flag("reset_peer:match=COMMIT,stream=both,proxy=db,toxicity=0.5").unwrap();
        assert_eq!(f.proxy.as_deref(), Some("db"));
        assert_eq!(f.toxic.stream, Stream::Both);
        assert_eq!(f.toxic.toxicity, 0.5);
        assert!(matches!(f.toxic.trigger, Trigger::Match(ref p) if p.source == "COMMIT"));
        let f = parse_flag("corrupt:probability=0.01").unwrap();
        assert_eq!(f.toxic.kind, Kind::Corrupt { probability: 0.01 });
        assert_eq!(
            parse_flag("timeout").unwrap().toxic.name,
            "timeout_downstream"
        );
        for (bad, says) in [
            ("lag", "unknown toxic type"),
            ("latency:latncy=3", "unknown attribute \"latncy\""),
            ("latency:latency=-3", "expected a whole number"),
            ("latency:latency", "expected ATTR=VALUE"),
            ("latency:stream=sideways", "stream was invalid"),
            ("slicer:average_size=0", "average_size must be at least 1"),
            ("slicer:average_size=10,size_variation=10", "smaller than"),
            ("corrupt:probability=2", "from 0 to 1"),
            ("latency:toxicity=3", "from 0 to 1"),
            ("latency:match=(", "match:"),
            ("latency:match=a,after_bytes=3", "exclude each other"),
        ] {
            let e = parse_flag(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn json_as_toxiproxy_takes_and_shows_it() {
        let t = from_json(br#"{"type":"latency","attributes":{"latency":100,"x":1}}"#).unwrap();
        assert_eq!(t.name, "latency_downstream");
        assert_eq!(
            t.to_json(),
            json!({"attributes":{"latency":100,"jitter":0},"name":"latency_downstream",
                   "type":"latency","stream":"downstream","toxicity":1.0})
        );
        let e = from_json(br#"{"type":"nope"}"#).unwrap_err();
        assert_eq!((e.status, e.message.as_str()), (400, "invalid toxic type"));
        let e = from_json(br#"{"type":"latency","stream":"x"}"#).unwrap_err();
        assert_eq!(e.status, 400);
        let e = from_json(b"{").unwrap_err();
        assert!(e.message.starts_with("bad request body: "), "{e}");
        let e = from_json(br#"{"type":"latency","attributes":{"latency":"x"}}"#).unwrap_err();
        assert!(e.message.contains("latency must be a whole number"), "{e}");
        let u = t
            .update(br#"{"attributes":{"jitter":5},"toxicity":0.5}"#)
            .unwrap();
        assert_eq!(
            u.kind,
            Kind::Latency {
                latency: 100,
                jitter: 5
            }
        );
        assert_eq!(u.toxicity, 0.5);
        assert!(t.update(br#"{"attributes":{"jitter":-1}}"#).is_err());
    }

    #[test]
    fn populate_arrays() {
        let p = populate(
            br#"[{"name":"a","listen":"127.0.0.1:0","upstream":"127.0.0.1:1",
                  "toxics":[{"type":"timeout","attributes":{"timeout":5}}]},
                 {"name":"b","upstream":"x:1","enabled":false}]"#,
        )
        .unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].toxics[0].kind, Kind::Timeout { timeout: 5 });
        assert!(p[0].enabled && !p[1].enabled);
        let e = populate(br#"[{"name":"a"}]"#).unwrap_err();
        assert_eq!(e.message, "missing required field: upstream at proxy 1");
        let e = populate(br#"[{"upstream":"a:1"}]"#).unwrap_err();
        assert_eq!(e.message, "missing required field: name at proxy 1");
        assert!(populate(br#"{}"#).is_err());
        assert!(
            populate(br#"[{"name":"a","upstream":"b:1"},{"name":"a","upstream":"b:1"}]"#).is_err()
        );
    }

    #[test]
    fn patterns_match_across_chunks() {
        let p = Pattern::new("COMMIT").unwrap();
        let mut s = p.start();
        assert_eq!(p.feed(&mut s, b"xxCOM"), None);
        assert_eq!(p.feed(&mut s, b"MITyy"), Some(3));
        let mut s = p.start();
        assert_eq!(
            p.feed(&mut s, b"..COMMIT"),
            Some(8),
            "a match at the chunk's end"
        );
        let bin = Pattern::new(r"\xff\x00").unwrap();
        let mut s = bin.start();
        assert_eq!(bin.feed(&mut s, &[1, 0xff]), None);
        assert_eq!(bin.feed(&mut s, &[0, 2]), Some(1));
        assert!(Pattern::new("").is_err());
        assert!(
            Pattern::new("a{100000}").is_err(),
            "too big a DFA is refused"
        );
    }
}

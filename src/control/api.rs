//! Toxiproxy's API: the routes, the proxies and their toxics, and the JSON shapes and status
//! codes Toxiproxy answers with, so that its client libraries work unchanged. [`Api::handle`]
//! takes a parsed request and gives the response; what it changes in the relay goes through a
//! [`Backend`] (the real one binds listeners and hands them to the reactor, tests and the
//! fuzz target use a fake), so this module does no I/O of its own.
//!
//! A refused request changes nothing: it is checked whole before the backend is asked
//! anything, and a backend that refuses (a port in use) leaves the registry as it was.
//! Requests whose User-Agent starts with `Mozilla/` are refused (403), as Toxiproxy does, so
//! that a web page cannot drive the API from a browser on this machine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::addr;
use crate::faults::spec::{self, ProxySpec, SpecError};
use crate::faults::{Live, Toxic};

/// What the API asks of the relay.
pub trait Backend {
    /// Starts rule `index` (a new rule if `None`) listening on `listen` and relaying to
    /// `upstream`, with the toxics of `live`; returns the rule's index and the bound address.
    fn start(
        &mut self,
        index: Option<usize>,
        name: &str,
        listen: SocketAddr,
        upstream: &str,
        live: Arc<Live>,
    ) -> Result<(usize, SocketAddr), String>;
    /// Stops rule `index`: its listener and its connections close.
    fn stop(&mut self, index: usize) -> Result<(), String>;
    /// Rule `index`'s toxics changed: its open connections take them up.
    fn touch(&mut self, index: usize) -> Result<(), String>;
}

/// One proxy, as the API knows it.
#[derive(Debug)]
pub struct Proxy {
    pub name: String,
    /// As shown: the bound address once started, else as given.
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    /// The rule it is in the reactor, once started.
    pub index: Option<usize>,
    pub live: Arc<Live>,
}

impl Proxy {
    fn toxics(&self) -> Vec<Toxic> {
        self.live.get().to_vec()
    }

    /// Toxiproxy's JSON of a proxy with its toxics.
    pub fn to_json(&self) -> Value {
        let toxics: Vec<Value> = self.toxics().iter().map(Toxic::to_json).collect();
        json!({
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": toxics,
        })
    }
}

/// A response: status, content type, body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    fn json(status: u16, v: &Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: v.to_string().into_bytes(),
        }
    }

    fn empty(status: u16) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Vec::new(),
        }
    }

    fn text(status: u16, text: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{text}\n").into_bytes(),
        }
    }

    /// Toxiproxy's error JSON: `{"error": "...", "status": N}`.
    pub fn error(status: u16, message: &str) -> Response {
        Response::json(status, &json!({"error": message, "status": status}))
    }
}

impl From<SpecError> for Response {
    fn from(e: SpecError) -> Response {
        Response::error(e.status, &e.message)
    }
}

/// The proxies by name (Toxiproxy's collection).
#[derive(Debug, Default)]
pub struct Api {
    proxies: BTreeMap<String, Proxy>,
}

fn not_found_proxy() -> Response {
    Response::error(404, "proxy not found")
}

fn not_found_toxic() -> Response {
    Response::error(404, "toxic not found")
}

/// A backend's refusal: Toxiproxy answers errors without a status of their own with 500.
fn failed(e: String) -> Response {
    Response::error(500, &e)
}

impl Api {
    /// Registers a proxy that exists already (the command line's rules, the file's).
    pub fn register(&mut self, p: Proxy) {
        self.proxies.insert(p.name.clone(), p);
    }

    pub fn get(&self, name: &str) -> Option<&Proxy> {
        self.proxies.get(name)
    }

    /// Answers one request. `path` is the request target (a query string is ignored).
    pub fn handle(
        &mut self,
        b: &mut dyn Backend,
        method: &str,
        path: &str,
        user_agent: Option<&str>,
        body: &[u8],
    ) -> Response {
        if user_agent.is_some_and(|ua| ua.starts_with("Mozilla/")) {
            return Response::text(403, "User agent not allowed");
        }
        let path = path.split(['?', '#']).next().unwrap_or("");
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let parts: Vec<String> = parts.iter().map(|p| unescape(p)).collect();
        let p: Vec<&str> = parts.iter().map(String::as_str).collect();
        match (method, p.as_slice()) {
            ("POST", ["reset"]) => self.reset(b),
            ("GET", ["proxies"]) => self.index(),
            ("POST", ["proxies"]) => self.create(b, body),
            ("POST", ["populate"]) => self.populate(b, body),
            ("GET", ["proxies", name]) => match self.proxies.get(*name) {
                Some(p) => Response::json(200, &p.to_json()),
                None => not_found_proxy(),
            },
            ("POST" | "PATCH", ["proxies", name]) => self.update(b, name, body),
            ("DELETE", ["proxies", name]) => self.delete(b, name),
            ("GET", ["proxies", name, "toxics"]) => match self.proxies.get(*name) {
                Some(p) => {
                    let list: Vec<Value> = p.toxics().iter().map(Toxic::to_json).collect();
                    Response::json(200, &Value::Array(list))
                }
                None => not_found_proxy(),
            },
            ("POST", ["proxies", name, "toxics"]) => self.add_toxic(b, name, body),
            ("GET", ["proxies", name, "toxics", toxic]) => {
                let Some(p) = self.proxies.get(*name) else {
                    return not_found_proxy();
                };
                match p.toxics().iter().find(|t| t.name == *toxic) {
                    Some(t) => Response::json(200, &t.to_json()),
                    None => not_found_toxic(),
                }
            }
            ("POST" | "PATCH", ["proxies", name, "toxics", toxic]) => {
                self.update_toxic(b, name, toxic, body)
            }
            ("DELETE", ["proxies", name, "toxics", toxic]) => self.delete_toxic(b, name, toxic),
            ("GET", ["version"]) => Response {
                status: 200,
                content_type: "application/json;charset=utf-8",
                body: format!(
                    "{{\"version\": \"tcpspy-{}\"}}\n",
                    env!("CARGO_PKG_VERSION")
                )
                .into_bytes(),
            },
            (
                _,
                ["reset"]
                | ["proxies"]
                | ["populate"]
                | ["version"]
                | ["proxies", _]
                | ["proxies", _, "toxics"]
                | ["proxies", _, "toxics", _],
            ) => Response::text(405, "Method Not Allowed"),
            _ => Response::text(404, "404 page not found"),
        }
    }

    fn index(&self) -> Response {
        let m: Map<String, Value> = self
            .proxies
            .iter()
            .map(|(k, p)| (k.clone(), p.to_json()))
            .collect();
        Response::json(200, &Value::Object(m))
    }

    /// Starts `p` at its listen address; on success its listen shows the bound address.
    fn start(b: &mut dyn Backend, p: &mut Proxy) -> Result<(), Response> {
        let listen = addr::listen(&p.listen).map_err(|e| Response::error(400, &e))?;
        addr::upstream(&p.upstream).map_err(|e| Response::error(400, &e))?;
        let (index, bound) = b
            .start(p.index, &p.name, listen, &p.upstream, p.live.clone())
            .map_err(failed)?;
        p.index = Some(index);
        p.listen = bound.to_string();
        p.enabled = true;
        Ok(())
    }

    fn stop(b: &mut dyn Backend, p: &mut Proxy) -> Result<(), Response> {
        if let (true, Some(i)) = (p.enabled, p.index) {
            b.stop(i).map_err(failed)?;
        }
        p.enabled = false;
        Ok(())
    }

    fn create(&mut self, b: &mut dyn Backend, body: &[u8]) -> Response {
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return SpecError::bad_body(e).into(),
        };
        let spec = match spec::proxy_from_value(&v, None) {
            Ok(s) => s,
            Err(e) => return e.into(),
        };
        if self.proxies.contains_key(&spec.name) {
            return Response::error(409, "proxy already exists");
        }
        match self.make(b, spec) {
            Ok(p) => {
                let r = Response::json(201, &p.to_json());
                self.proxies.insert(p.name.clone(), p);
                r
            }
            Err(r) => r,
        }
    }

    /// A new proxy from its spec, started if enabled.
    fn make(&mut self, b: &mut dyn Backend, spec: ProxySpec) -> Result<Proxy, Response> {
        let listen = if spec.listen.is_empty() {
            "127.0.0.1:0".to_string()
        } else {
            spec.listen
        };
        addr::listen(&listen).map_err(|e| Response::error(400, &e))?;
        addr::upstream(&spec.upstream).map_err(|e| Response::error(400, &e))?;
        let mut p = Proxy {
            name: spec.name,
            listen,
            upstream: spec.upstream,
            enabled: false,
            index: None,
            live: Live::new(spec.toxics),
        };
        if spec.enabled {
            Self::start(b, &mut p)?;
        }
        Ok(p)
    }

    fn populate(&mut self, b: &mut dyn Backend, body: &[u8]) -> Response {
        let specs = match spec::populate(body) {
            Ok(s) => s,
            Err(e) => return e.into(),
        };
        for s in &specs {
            if let Err(e) = addr::listen(&s.listen).and(addr::upstream(&s.upstream).map(drop)) {
                return Response::error(400, &e);
            }
        }
        let mut done = Vec::new();
        for s in specs {
            let same = self
                .proxies
                .get(&s.name)
                .is_some_and(|p| p.upstream == s.upstream && same_listen(&p.listen, &s.listen));
            if same {
                if let Some(p) = self.proxies.get_mut(&s.name) {
                    if !s.toxics.is_empty() {
                        p.live.set(s.toxics);
                        if let (true, Some(i)) = (p.enabled, p.index) {
                            let _ = b.touch(i);
                        }
                    }
                    done.push(p.to_json());
                }
                continue;
            }
            if let Some(mut old) = self.proxies.remove(&s.name)
                && let Err(r) = Self::stop(b, &mut old)
            {
                self.proxies.insert(old.name.clone(), old);
                return with_proxies(r, done);
            }
            match self.make(b, s) {
                Ok(p) => {
                    done.push(p.to_json());
                    self.proxies.insert(p.name.clone(), p);
                }
                Err(r) => return with_proxies(r, done),
            }
        }
        Response::json(201, &json!({ "proxies": done }))
    }

    fn update(&mut self, b: &mut dyn Backend, name: &str, body: &[u8]) -> Response {
        let Some(p) = self.proxies.get_mut(name) else {
            return not_found_proxy();
        };
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return SpecError::bad_body(e).into(),
        };
        let Some(obj) = v.as_object() else {
            return SpecError::bad_body("expected a JSON object").into();
        };
        let text = |f: &str, now: &str| -> Result<String, Response> {
            match obj.get(f) {
                None | Some(Value::Null) => Ok(now.to_string()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(SpecError::bad_body(format!("{f} must be a string")).into()),
            }
        };
        let (listen, upstream) = match (text("listen", &p.listen), text("upstream", &p.upstream)) {
            (Ok(l), Ok(u)) => (l, u),
            (Err(r), _) | (_, Err(r)) => return r,
        };
        let enabled = match obj.get("enabled") {
            None | Some(Value::Null) => p.enabled,
            Some(Value::Bool(e)) => *e,
            Some(_) => return SpecError::bad_body("enabled must be true or false").into(),
        };
        if let Err(e) = addr::listen(&listen).and(addr::upstream(&upstream).map(drop)) {
            return Response::error(400, &e);
        }
        let moved = !same_listen(&p.listen, &listen) || upstream != p.upstream;
        if moved {
            if let Err(r) = Self::stop(b, p) {
                return r;
            }
            p.listen = listen;
            p.upstream = upstream;
        }
        let r = match (enabled, p.enabled) {
            (true, false) => Self::start(b, p),
            (false, true) => Self::stop(b, p),
            _ => Ok(()),
        };
        match r {
            Ok(()) => Response::json(200, &p.to_json()),
            Err(r) => r,
        }
    }

    fn delete(&mut self, b: &mut dyn Backend, name: &str) -> Response {
        let Some(mut p) = self.proxies.remove(name) else {
            return not_found_proxy();
        };
        if let Err(r) = Self::stop(b, &mut p) {
            self.proxies.insert(p.name.clone(), p);
            return r;
        }
        Response::empty(204)
    }

    /// Sets a proxy's toxics and has its open connections take them up.
    fn set_toxics(b: &mut dyn Backend, p: &Proxy, toxics: Vec<Toxic>) -> Result<(), Response> {
        p.live.set(toxics);
        if let (true, Some(i)) = (p.enabled, p.index) {
            b.touch(i).map_err(failed)?;
        }
        Ok(())
    }

    fn add_toxic(&mut self, b: &mut dyn Backend, name: &str, body: &[u8]) -> Response {
        let Some(p) = self.proxies.get(name) else {
            return not_found_proxy();
        };
        let t = match spec::from_json(body) {
            Ok(t) => t,
            Err(e) => return e.into(),
        };
        let mut toxics = p.toxics();
        if toxics.iter().any(|x| x.name == t.name) {
            return Response::error(409, "toxic already exists");
        }
        let shown = t.to_json();
        toxics.push(t);
        match Self::set_toxics(b, p, toxics) {
            Ok(()) => Response::json(200, &shown),
            Err(r) => r,
        }
    }

    fn update_toxic(
        &mut self,
        b: &mut dyn Backend,
        name: &str,
        toxic: &str,
        body: &[u8],
    ) -> Response {
        let Some(p) = self.proxies.get(name) else {
            return not_found_proxy();
        };
        let mut toxics = p.toxics();
        let Some(slot) = toxics.iter_mut().find(|t| t.name == toxic) else {
            return not_found_toxic();
        };
        let new = match slot.update(body) {
            Ok(t) => t,
            Err(e) => return e.into(),
        };
        let shown = new.to_json();
        *slot = new;
        match Self::set_toxics(b, p, toxics) {
            Ok(()) => Response::json(200, &shown),
            Err(r) => r,
        }
    }

    fn delete_toxic(&mut self, b: &mut dyn Backend, name: &str, toxic: &str) -> Response {
        let Some(p) = self.proxies.get(name) else {
            return not_found_proxy();
        };
        let mut toxics = p.toxics();
        let before = toxics.len();
        toxics.retain(|t| t.name != toxic);
        if toxics.len() == before {
            return not_found_toxic();
        }
        match Self::set_toxics(b, p, toxics) {
            Ok(()) => Response::empty(204),
            Err(r) => r,
        }
    }

    fn reset(&mut self, b: &mut dyn Backend) -> Response {
        for p in self.proxies.values_mut() {
            if !p.enabled
                && let Err(r) = Self::start(b, p)
            {
                return r;
            }
            if !p.live.get().is_empty()
                && let Err(r) = Self::set_toxics(b, p, Vec::new())
            {
                return r;
            }
        }
        Response::empty(204)
    }
}

/// Populate's answer to a failure: the error, and the proxies done before it.
fn with_proxies(r: Response, done: Vec<Value>) -> Response {
    let mut v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|_| json!({}));
    if let Some(o) = v.as_object_mut() {
        o.insert("proxies".into(), Value::Array(done));
    }
    Response::json(r.status, &v)
}

/// True if a proxy listening on `now` (its bound address) is where `asked` says: the same
/// address, or port 0 / no port asked on the same host.
fn same_listen(now: &str, asked: &str) -> bool {
    if now == asked {
        return true;
    }
    match (addr::listen(now), addr::listen(asked)) {
        (Ok(a), Ok(b)) => a == b || (b.port() == 0 && a.ip() == b.ip()),
        _ => false,
    }
}

/// Percent-decodes a path segment (`%2F` and the like); a bad escape stays as it is.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(h) = b.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(h).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A backend that only counts: for tests and the fuzz target.
#[derive(Debug, Default)]
pub struct Fake {
    pub rules: usize,
    pub started: Vec<usize>,
    pub stopped: Vec<usize>,
    pub touched: Vec<usize>,
    /// Listen addresses that refuse, as a port in use would.
    pub busy: Vec<SocketAddr>,
}

impl Backend for Fake {
    fn start(
        &mut self,
        index: Option<usize>,
        _name: &str,
        listen: SocketAddr,
        _upstream: &str,
        _live: Arc<Live>,
    ) -> Result<(usize, SocketAddr), String> {
        if self.busy.contains(&listen) {
            return Err(format!("listen tcp {listen}: bind: address already in use"));
        }
        let i = index.unwrap_or_else(|| {
            self.rules += 1;
            self.rules - 1
        });
        self.started.push(i);
        let mut bound = listen;
        if bound.port() == 0 {
            bound.set_port(40000 + i as u16);
        }
        Ok((i, bound))
    }
    fn stop(&mut self, index: usize) -> Result<(), String> {
        self.stopped.push(index);
        Ok(())
    }
    fn touch(&mut self, index: usize) -> Result<(), String> {
        self.touched.push(index);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(api: &mut Api, b: &mut Fake, m: &str, p: &str, body: &str) -> (u16, Value) {
        let r = api.handle(b, m, p, None, body.as_bytes());
        let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        (r.status, v)
    }

    #[test]
    fn toxiproxys_shapes_and_codes() {
        let (mut api, mut b) = (Api::default(), Fake::default());
        let (s, v) = call(
            &mut api,
            &mut b,
            "POST",
            "/proxies",
            r#"{"name":"redis","listen":"127.0.0.1:0","upstream":"127.0.0.1:6379"}"#,
        );
        assert_eq!(s, 201);
        assert_eq!(
            v,
            json!({"name":"redis","listen":"127.0.0.1:40000",
            "upstream":"127.0.0.1:6379","enabled":true,"toxics":[]})
        );
        let (s, v) = call(
            &mut api,
            &mut b,
            "POST",
            "/proxies",
            r#"{"name":"redis","upstream":"a:1"}"#,
        );
        assert_eq!(
            (s, v),
            (409, json!({"error":"proxy already exists","status":409}))
        );
        let (s, v) = call(&mut api, &mut b, "POST", "/proxies", r#"{"name":"x"}"#);
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("missing required field: upstream"))
        );
        let (s, _) = call(&mut api, &mut b, "POST", "/proxies", "{nope");
        assert_eq!(s, 400);
        let (s, v) = call(
            &mut api,
            &mut b,
            "POST",
            "/proxies/redis/toxics",
            r#"{"type":"latency","attributes":{"latency":1000}}"#,
        );
        assert_eq!(s, 200);
        assert_eq!(v["name"], "latency_downstream");
        assert_eq!(b.touched, [0]);
        let (s, v) = call(
            &mut api,
            &mut b,
            "POST",
            "/proxies/redis/toxics",
            r#"{"type":"latency"}"#,
        );
        assert_eq!(
            (s, v["error"].as_str()),
            (409, Some("toxic already exists"))
        );
        let (s, v) = call(
            &mut api,
            &mut b,
            "POST",
            "/proxies/redis/toxics",
            r#"{"type":"bogus"}"#,
        );
        assert_eq!(
            (s, v),
            (400, json!({"error":"invalid toxic type","status":400}))
        );
        let (s, _) = call(
            &mut api,
            &mut b,
            "POST",
            "/proxies/redis/toxics",
            r#"{"type":"latency","name":"l2","attributes":{"latency":-5}}"#,
        );
        assert_eq!(s, 400);
        assert_eq!(
            api.get("redis").unwrap().toxics().len(),
            1,
            "nothing changed"
        );
        let (s, v) = call(
            &mut api,
            &mut b,
            "PATCH",
            "/proxies/redis/toxics/latency_downstream",
            r#"{"attributes":{"jitter":10}}"#,
        );
        assert_eq!(s, 200);
        assert_eq!(v["attributes"], json!({"latency":1000,"jitter":10}));
        let (s, v) = call(&mut api, &mut b, "GET", "/proxies/redis/toxics", "");
        assert_eq!((s, v.as_array().map(Vec::len)), (200, Some(1)));
        let (s, v) = call(&mut api, &mut b, "GET", "/proxies/redis/toxics/nope", "");
        assert_eq!(
            (s, v),
            (404, json!({"error":"toxic not found","status":404}))
        );
        let (s, _) = call(
            &mut api,
            &mut b,
            "DELETE",
            "/proxies/redis/toxics/latency_downstream",
            "",
        );
        assert_eq!(s, 204);
        let (s, v) = call(
            &mut api,
            &mut b,
            "POST",
            "/proxies/redis",
            r#"{"enabled":false}"#,
        );
        assert_eq!((s, &v["enabled"]), (200, &json!(false)));
        assert_eq!(b.stopped, [0]);
        let (s, _) = call(&mut api, &mut b, "POST", "/reset", "");
        assert_eq!(s, 204);
        assert!(api.get("redis").unwrap().enabled);
        let (s, v) = call(&mut api, &mut b, "GET", "/proxies", "");
        assert_eq!((s, v["redis"]["enabled"].clone()), (200, json!(true)));
        let (s, _) = call(&mut api, &mut b, "DELETE", "/proxies/redis", "");
        assert_eq!(s, 204);
        let (s, v) = call(&mut api, &mut b, "GET", "/proxies/redis", "");
        assert_eq!(
            (s, v),
            (404, json!({"error":"proxy not found","status":404}))
        );
        let (s, v) = call(&mut api, &mut b, "GET", "/version", "");
        assert_eq!(s, 200);
        assert!(v["version"].as_str().unwrap().starts_with("tcpspy-"));
        assert_eq!(call(&mut api, &mut b, "GET", "/nope", "").0, 404);
        assert_eq!(call(&mut api, &mut b, "PUT", "/proxies", "").0, 405);
        let r = api.handle(&mut b, "GET", "/proxies", Some("Mozilla/5.0"), b"");
        assert_eq!(r.status, 403);
    }

    #[test]
    fn populate_and_a_busy_port_change_nothing_on_failure() {
        let (mut api, mut b) = (Api::default(), Fake::default());
        let (s, v) = call(
            &mut api,
            &mut b,
            "POST",
            "/populate",
            r#"[{"name":"a","listen":"127.0.0.1:7001","upstream":"h:1",
                 "toxics":[{"type":"timeout"}]},{"name":"b","upstream":"h:2","enabled":false}]"#,
        );
        assert_eq!(s, 201);
        assert_eq!(v["proxies"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["proxies"][0]["toxics"][0]["type"], "timeout");
        // The same again changes nothing.
        let (s, _) = call(
            &mut api,
            &mut b,
            "POST",
            "/populate",
            r#"[{"name":"a","listen":"127.0.0.1:7001","upstream":"h:1"}]"#,
        );
        assert_eq!(s, 201);
        assert_eq!(b.started, [0]);
        b.busy.push("127.0.0.1:7002".parse().unwrap());
        let (s, v) = call(
            &mut api,
            &mut b,
            "POST",
            "/proxies",
            r#"{"name":"c","listen":"127.0.0.1:7002","upstream":"h:1"}"#,
        );
        assert_eq!(s, 500);
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("address already in use")
        );
        assert!(api.get("c").is_none());
        let (s, _) = call(&mut api, &mut b, "POST", "/populate", r#"[{"name":"a"}]"#);
        assert_eq!(s, 400);
        let (s, _) = call(
            &mut api,
            &mut b,
            "POST",
            "/proxies",
            r#"{"name":"d","listen":"nowhere:1","upstream":"h:1"}"#,
        );
        assert_eq!(s, 400);
    }
}

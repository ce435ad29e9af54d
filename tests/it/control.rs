//! The control API (`--control`) driven by Toxiproxy's own client library, as a test suite
//! drives Toxiproxy, and by hand for what the client does not cover.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::thread;

use crate::util::*;

fn echo_server(l: TcpListener) {
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// tcpspy with a rule and the control API on a free port; returns the API's address.
fn with_control(target: SocketAddr, dir: &Path) -> (Spy, SocketAddr) {
    let port = held_port();
    let api = port.addr;
    drop(port);
    let mut spy = Spy::start(&[
        "-t",
        &target.to_string(),
        "-d",
        dir.to_str().unwrap(),
        "--control",
        &api.to_string(),
    ]);
    spy.wait_line(|l| l.contains("control API (Toxiproxy's) on"));
    (spy, api)
}

/// One request to the API: (status, body).
fn request(api: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = connect(api);
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let got = String::from_utf8(read_to_end(&mut s).unwrap()).unwrap();
    let status = got[9..12].parse().unwrap();
    let body = got.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[test]
fn toxiproxys_python_client_drives_the_api() {
    need("toxiproxy-python");
    let dir = tempfile::tempdir().unwrap();
    let target = listener();
    let taddr = target.local_addr().unwrap();
    echo_server(target);
    let (mut spy, api) = with_control(taddr, dir.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/toxiproxy_python.py");
    let out = tool("toxiproxy-python")
        .arg(&script)
        .arg(api.port().to_string())
        .arg(taddr.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "ok", "{stderr}");
    // The proxy made through the API is a rule like the others, logged like any other.
    spy.wait_line(|l| l.contains("relaying to") && l.contains("proxy \"echo\" (control API)"));
    assert_eq!(spy.stop(), 0);
    let index = std::fs::read_to_string(dir.path().join("connections.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = index
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.iter().any(|l| l["rule"] == 1
            && l["faults"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x["fault"] == "latency"))),
        "{index}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["ends"][0]["how"] == "reset by fault reset_peer_downstream"),
        "{index}"
    );
}

#[test]
fn the_api_refuses_with_toxiproxys_errors_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = listener();
    let taddr = target.local_addr().unwrap();
    echo_server(target);
    let (mut spy, api) = with_control(taddr, dir.path());
    assert_eq!(
        request(api, "POST", "/proxies/rule1/toxics", r#"{"type":"bogus"}"#),
        (400, r#"{"error":"invalid toxic type","status":400}"#.into())
    );
    assert_eq!(
        request(api, "GET", "/proxies/nope", ""),
        (404, r#"{"error":"proxy not found","status":404}"#.into())
    );
    let (status, body) = request(api, "POST", "/proxies", "{not json");
    assert_eq!(status, 400);
    assert!(body.contains("bad request body"), "{body}");
    // A port in use: Toxiproxy's 500, and no proxy.
    let busy = listener();
    let (status, body) = request(
        api,
        "POST",
        "/proxies",
        &format!(
            r#"{{"name":"b","listen":"{}","upstream":"{taddr}"}}"#,
            busy.local_addr().unwrap()
        ),
    );
    assert_eq!(status, 500, "{body}");
    assert_eq!(request(api, "GET", "/proxies/b", "").0, 404);
    let (status, body) = request(api, "GET", "/proxies/rule1/toxics", "");
    assert_eq!((status, body.as_str()), (200, "[]"));
    // A browser cannot drive it.
    let mut s = connect(api);
    s.write_all(b"GET /proxies HTTP/1.1\r\nUser-Agent: Mozilla/5.0\r\n\r\n")
        .unwrap();
    let got = String::from_utf8(read_to_end(&mut s).unwrap()).unwrap();
    assert!(got.starts_with("HTTP/1.1 403 "), "{got}");
    // A toxic with a timeout of 0 holds the bytes until it is removed; then they go on.
    assert_eq!(
        request(
            api,
            "POST",
            "/proxies/rule1/toxics",
            r#"{"type":"timeout","stream":"upstream"}"#
        )
        .0,
        200
    );
    let mut c: TcpStream = connect(spy.addr);
    c.write_all(b"held").unwrap();
    spy.wait_line(|l| l.starts_with("#0001 open"));
    assert_eq!(
        request(api, "DELETE", "/proxies/rule1/toxics/timeout_upstream", "").0,
        204
    );
    let mut got = [0u8; 4];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"held");
    drop(c);
    spy.wait_closed(1);
    assert_eq!(spy.stop(), 0);
}

//! The proxy listeners (`--socks5`, `--http-proxy`, `--transparent`) with real clients (curl,
//! a Python SOCKS client) against servers the tests start: every destination kind, every
//! reply code tcpspy can produce, the records naming the real destination, and name
//! resolution that never stalls the other connections.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

/// A tiny HTTP server: answers every request on a connection with `body` (keep-alive), and
/// says which request line it saw.
fn http_server(l: TcpListener, body: &'static str) {
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let line = head.lines().next().unwrap_or("").to_string();
                        let text = format!("{body} [{line}]");
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                            text.len()
                        );
                        if s.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
}

fn spy(kind: &str, dir: &Path, extra: &[&str]) -> Spy {
    let mut cmd = Command::new(bin());
    cmd.arg(kind)
        .arg("127.0.0.1:0")
        .arg("-d")
        .arg(dir)
        .args(extra);
    Spy::spawn(cmd)
}

fn curl(args: &[&str]) -> (i32, String, String) {
    let out = tool("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("all_proxy")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn index(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("connections.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn hex_dump(dir: &Path, number: &str) -> String {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with("log-")
            && !name.starts_with("log-binary-")
            && name.contains(&format!("-{number}-"))
        {
            return std::fs::read_to_string(p).unwrap();
        }
    }
    panic!("no hex dump for connection {number} in {}", dir.display());
}

/// One SOCKS5 exchange by hand: greeting (no auth), then `request`; returns every byte the
/// proxy answered until it closed or 10 bytes of reply came.
fn socks_raw(proxy: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = connect(proxy);
    s.write_all(&[5, 1, 0]).unwrap();
    let mut hello = [0u8; 2];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(hello, [5, 0]);
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.take(10).read_to_end(&mut out);
    out
}

fn connect_req(addr: SocketAddr) -> Vec<u8> {
    let mut r = vec![5, 1, 0];
    match addr {
        SocketAddr::V4(a) => {
            r.push(1);
            r.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            r.push(4);
            r.extend_from_slice(&a.ip().octets());
        }
    }
    r.extend_from_slice(&addr.port().to_be_bytes());
    r
}

fn name_req(host: &str, port: u16) -> Vec<u8> {
    let mut r = vec![5, 1, 0, 3, host.len() as u8];
    r.extend_from_slice(host.as_bytes());
    r.extend_from_slice(&port.to_be_bytes());
    r
}

#[test]
fn socks5_relays_curl_to_names_ipv4_and_ipv6_and_records_the_destination() {
    need("curl");
    let dir = tempfile::tempdir().unwrap();
    let web = listener();
    let waddr = web.local_addr().unwrap();
    http_server(web, "hello v4");
    let mut spy = spy("--socks5", dir.path(), &[]);
    let proxy = spy.addr.to_string();
    let url = format!("http://localhost:{}/a", waddr.port());
    let (code, body, err) = curl(&["--socks5-hostname", &proxy, &url]);
    assert_eq!(
        (code, body.as_str()),
        (0, "hello v4 [GET /a HTTP/1.1]"),
        "{err}"
    );
    let url = format!("http://{waddr}/b");
    let (code, body, err) = curl(&["--socks5", &proxy, &url]);
    assert_eq!(
        (code, body.as_str()),
        (0, "hello v4 [GET /b HTTP/1.1]"),
        "{err}"
    );
    let v6 = TcpListener::bind("[::1]:0").ok();
    if let Some(v6) = v6 {
        let a6 = v6.local_addr().unwrap();
        http_server(v6, "hello v6");
        let url = format!("http://[::1]:{}/c", a6.port());
        let (code, body, err) = curl(&["--socks5", &proxy, &url]);
        assert_eq!(
            (code, body.as_str()),
            (0, "hello v6 [GET /c HTTP/1.1]"),
            "{err}"
        );
    } else {
        eprintln!("no IPv6 loopback here: the IPv6 destination is not tried");
    }
    spy.wait_closed(2);
    assert_eq!(spy.stop(), 0);
    let rows = index(dir.path());
    assert_eq!(rows[0]["target"], waddr.to_string());
    assert_eq!(
        rows[0]["target_name"],
        format!("localhost:{}", waddr.port())
    );
    assert_eq!(rows[1]["target_name"], waddr.to_string());
    // The files are named by the real destination, and the handshake is story, not data.
    let (hex, up, down) = log_files(dir.path(), 1, waddr);
    let hex = std::fs::read_to_string(hex).unwrap();
    assert!(hex.contains("Proxy socks5 on "), "{hex}");
    assert!(hex.contains("request CONNECT localhost:"), "{hex}");
    assert!(
        hex.contains(&format!(
            "Connected to localhost:{} ({waddr})",
            waddr.port()
        )),
        "{hex}"
    );
    let up = std::fs::read(up).unwrap();
    assert!(
        up.starts_with(b"GET /a HTTP/1.1\r\n"),
        "binary log: no handshake bytes in it"
    );
    assert!(std::fs::read(down).unwrap().starts_with(b"HTTP/1.1 200 OK"));
    let streams = tcpspy::log::hexdump::streams(&hex).unwrap();
    assert!(streams[0].starts_with(b"GET /a HTTP/1.1\r\n"));
}

#[test]
fn socks5_answers_every_failure_with_its_code() {
    need("curl");
    let dir = tempfile::tempdir().unwrap();
    let web = listener();
    let waddr = web.local_addr().unwrap();
    http_server(web, "ok");
    // A listener whose accept queue is full: the kernel drops further SYNs, so a connect to it
    // hangs until the connect timeout.
    let full = {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        s.listen(0).unwrap();
        s
    };
    let faddr = full.local_addr().unwrap().as_socket().unwrap();
    let _fillers: Vec<TcpStream> = (0..3)
        .filter_map(|_| TcpStream::connect_timeout(&faddr, Duration::from_millis(200)).ok())
        .collect();
    let allow = format!("127.0.0.1:{}", waddr.port());
    let hold = held_port();
    let allow_refused = format!("127.0.0.1:{}", hold.addr.port());
    let allow_full = format!("127.0.0.1:{}", faddr.port());
    let mut spy = spy(
        "--socks5",
        dir.path(),
        &[
            "--allow",
            &allow,
            "--allow",
            &allow_refused,
            "--allow",
            &allow_full,
            "--allow",
            "*.invalid",
            "--connect-timeout",
            "500ms",
        ],
    );
    let p = spy.addr;
    // 0x02: not allowed by the ruleset.
    let other = SocketAddr::from(([127, 0, 0, 1], waddr.port().wrapping_add(1)));
    assert_eq!(socks_raw(p, &connect_req(other))[..2], [5, 2]);
    // 0x04: a name that does not resolve.
    assert_eq!(socks_raw(p, &name_req("nothing.invalid", 80))[..2], [5, 4]);
    // 0x05: refused.
    assert_eq!(socks_raw(p, &connect_req(hold.addr))[..2], [5, 5]);
    // 0x06: the connect timed out.
    let t0 = Instant::now();
    assert_eq!(socks_raw(p, &connect_req(faddr))[..2], [5, 6]);
    assert!(t0.elapsed() >= Duration::from_millis(500));
    // 0x07: BIND and UDP ASSOCIATE.
    let mut bind = connect_req(waddr);
    bind[1] = 2;
    assert_eq!(socks_raw(p, &bind)[..2], [5, 7]);
    bind[1] = 3;
    assert_eq!(socks_raw(p, &bind)[..2], [5, 7]);
    // 0x08: an address type that does not exist.
    assert_eq!(socks_raw(p, &[5, 1, 0, 9, 1, 2, 3, 4, 0, 80])[..2], [5, 8]);
    // 0x01: a request that is not SOCKS5.
    assert_eq!(
        socks_raw(p, &[4, 1, 0, 1, 127, 0, 0, 1, 0, 80])[..2],
        [5, 1]
    );
    // SOCKS4 and 4a: rejected at once, not left hanging.
    let url = format!("http://{waddr}/");
    let (code, _, err) = curl(&["--socks4", &p.to_string(), &url]);
    assert_ne!(code, 0);
    assert!(err.contains("request rejected"), "{err}");
    let (code, _, err) = curl(&["--socks4a", &p.to_string(), &url]);
    assert_ne!(code, 0);
    assert!(err.contains("request rejected"), "{err}");
    // curl reports the codes by number too.
    let (code, _, err) = curl(&["--socks5", &p.to_string(), &format!("http://{other}/")]);
    assert_eq!(code, 97, "{err}");
    assert!(err.contains("(2)"), "{err}");
    spy.wait_closed(11);
    assert_eq!(spy.stop(), 0);
    let rows = index(dir.path());
    let first = &rows[0];
    assert_eq!(
        first["target"],
        other.to_string(),
        "the refused destination is recorded"
    );
    let hex = hex_dump(dir.path(), "0001");
    assert!(
        hex.contains("is not allowed (--allow): answered connection not allowed by ruleset"),
        "{hex}"
    );
}

#[test]
fn socks5_username_and_password() {
    need("curl");
    let dir = tempfile::tempdir().unwrap();
    let web = listener();
    let waddr = web.local_addr().unwrap();
    http_server(web, "secret");
    let allow = format!("localhost:{}", waddr.port());
    let mut spy = spy(
        "--socks5",
        dir.path(),
        &["--proxy-auth", "alice:s3cret", "--allow", &allow],
    );
    let url = format!("http://localhost:{}/", waddr.port());
    let good = format!("socks5h://alice:s3cret@{}", spy.addr);
    let (code, body, err) = curl(&["-x", &good, &url]);
    assert_eq!(
        (code, body.as_str()),
        (0, "secret [GET / HTTP/1.1]"),
        "{err}"
    );
    // A name no glob allows is refused without being resolved.
    let (code, _, err) = curl(&["-x", &good, "http://example.com/"]);
    assert_eq!(code, 97, "{err}");
    assert!(err.contains("(2)"), "{err}");
    let bad = format!("socks5h://alice:wrong@{}", spy.addr);
    let (code, _, err) = curl(&["-x", &bad, &url]);
    assert_eq!(code, 97, "{err}");
    let (code, _, err) = curl(&["--socks5-hostname", &spy.addr.to_string(), &url]);
    assert_eq!(code, 97, "{err}");
    spy.wait_closed(4);
    assert_eq!(spy.stop(), 0);
}

#[test]
fn a_slow_name_delays_only_its_own_connection() {
    need("curl");
    let dir = tempfile::tempdir().unwrap();
    let web = listener();
    let waddr = web.local_addr().unwrap();
    http_server(web, "fast");
    let mut cmd = Command::new(bin());
    cmd.args(["--socks5", "127.0.0.1:0", "--connect-timeout", "3s", "-d"])
        .arg(dir.path())
        .env("TCPSPY_TEST_ONLY_RESOLVE_DELAY", "slow.example=3600");
    let mut spy = Spy::spawn(cmd);
    let proxy = spy.addr;
    let t0 = Instant::now();
    // The slow name is asked first; while it waits, other names flow.
    let mut s = connect(proxy);
    s.write_all(&[5, 1, 0]).unwrap();
    let mut hello = [0u8; 2];
    s.read_exact(&mut hello).unwrap();
    s.write_all(&name_req("slow.example", 80)).unwrap();
    let slow = thread::spawn(move || {
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        (answer, t0.elapsed())
    });
    for i in 0..5 {
        let url = format!("http://localhost:{}/{i}", waddr.port());
        let (code, body, err) = curl(&["--socks5-hostname", &proxy.to_string(), &url]);
        assert_eq!(code, 0, "{err}");
        assert!(body.starts_with("fast"));
    }
    let fast_done = t0.elapsed();
    let (answer, slow_done) = slow.join().unwrap();
    assert_eq!(
        answer[..2],
        [5, 4],
        "host unreachable once resolution timed out"
    );
    assert!(slow_done >= Duration::from_secs(3), "{slow_done:?}");
    assert!(fast_done < slow_done, "{fast_done:?} vs {slow_done:?}");
    spy.wait_closed(6);
    assert_eq!(spy.stop(), 0);
    let rows = index(dir.path());
    let slow_row = rows
        .iter()
        .find(|r| r["target_name"] == "slow.example:80")
        .unwrap();
    assert!(
        slow_row["ends"]
            .to_string()
            .contains("name resolution timed out"),
        "{slow_row}"
    );
}

#[test]
fn http_proxy_tunnels_connect_and_relays_absolute_form() {
    need("curl");
    let dir = tempfile::tempdir().unwrap();
    let web = listener();
    let waddr = web.local_addr().unwrap();
    http_server(web, "via http");
    let mut spy = spy("--http-proxy", dir.path(), &[]);
    let proxy = format!("http://{}", spy.addr);
    let url = format!("http://localhost:{}/abs", waddr.port());
    let (code, body, err) = curl(&["-x", &proxy, &url]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        body,
        format!("via http [GET {url} HTTP/1.1]"),
        "relayed in absolute form, unchanged"
    );
    let url = format!("http://{waddr}/tunnel");
    let (code, body, err) = curl(&["-p", "-x", &proxy, &url]);
    assert_eq!(
        (code, body.as_str()),
        (0, "via http [GET /tunnel HTTP/1.1]"),
        "{err}"
    );
    spy.wait_closed(2);
    assert_eq!(spy.stop(), 0);
    let rows = index(dir.path());
    assert_eq!(
        rows[0]["target_name"],
        format!("localhost:{}", waddr.port())
    );
    assert_eq!(rows[1]["target"], waddr.to_string());
    let sent = rows[0]["bytes_client_to_server"].as_u64().unwrap();
    assert!(
        sent >= 30,
        "the absolute-form request counts as relayed: {sent}"
    );
    let hex = hex_dump(dir.path(), "0002");
    assert!(hex.contains("Proxy http-proxy on "), "{hex}");
    assert!(hex.contains("answered 200 Connection established"), "{hex}");
    let streams = tcpspy::log::hexdump::streams(&hex).unwrap();
    assert!(
        streams[0].starts_with(b"GET /tunnel HTTP/1.1\r\n"),
        "the CONNECT is not data"
    );
    // The absolute-form request is the connection's data: it went to the host.
    let hex = hex_dump(dir.path(), "0001");
    let streams = tcpspy::log::hexdump::streams(&hex).unwrap();
    assert!(streams[0].starts_with(b"GET http://localhost:"), "{hex}");
}

fn http_raw(proxy: SocketAddr, request: &str) -> String {
    let mut s = connect(proxy);
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn http_proxy_errors_400_403_407_502_504() {
    need("curl");
    let dir = tempfile::tempdir().unwrap();
    let web = listener();
    let waddr = web.local_addr().unwrap();
    http_server(web, "ok");
    let hold = held_port();
    let allow = format!("127.0.0.1:{}", waddr.port());
    let allow_refused = format!("127.0.0.1:{}", hold.addr.port());
    let mut spy = spy(
        "--http-proxy",
        dir.path(),
        &[
            "--allow",
            &allow,
            "--allow",
            &allow_refused,
            "--allow",
            "slow.example",
            "--proxy-auth",
            "bob:pw",
            "--connect-timeout",
            "1s",
        ],
    );
    let p = spy.addr;
    let auth = "Proxy-Authorization: Basic Ym9iOnB3\r\n";
    let r = http_raw(p, "GET /origin-form HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 407 "), "{r}");
    assert!(r.contains("Proxy-Authenticate: Basic"), "{r}");
    let r = http_raw(p, &format!("GET /origin-form HTTP/1.1\r\n{auth}\r\n"));
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    assert!(r.contains("not a proxy request"), "{r}");
    let r = http_raw(p, "\x16\x03\x01garbage\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    let r = http_raw(p, &format!("CONNECT 127.0.0.1:1 HTTP/1.1\r\n{auth}\r\n"));
    assert!(r.starts_with("HTTP/1.1 403 "), "{r}");
    let r = http_raw(p, &format!("CONNECT {} HTTP/1.1\r\n{auth}\r\n", hold.addr));
    assert!(r.starts_with("HTTP/1.1 502 "), "{r}");
    assert!(r.contains("refused"), "{r}");
    // curl's own view of them.
    let url = format!("http://{waddr}/");
    let (code, _, err) = curl(&["-p", "-x", &format!("http://{p}"), &url]);
    assert_ne!(code, 0);
    assert!(err.contains("407"), "{err}");
    let (code, body, err) = curl(&["-x", &format!("http://bob:pw@{p}"), &url]);
    assert_eq!(code, 0, "{err}");
    assert!(body.starts_with("ok [GET http://127.0.0.1:"), "{body}");
    let n = 7;
    spy.wait_closed(n);
    assert_eq!(spy.stop(), 0);
}

#[test]
fn http_proxy_with_https_proxy_variable_tunnels_tls() {
    need("curl");
    need("openssl");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let cert = dir.path().join("c.pem");
    let ok = tool("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-days",
            "1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(ok.status.success());
    let port = held_port().addr.port();
    let mut server = tool("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &port.to_string(),
            "-cert",
        ])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until("openssl s_server listens", || {
        TcpStream::connect(target).is_ok()
    });
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let mut spy = spy("--http-proxy", &logs, &[]);
    let out = tool("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(&cert)
        .arg(format!("https://localhost:{port}/"))
        .env("https_proxy", format!("http://{}", spy.addr))
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("s_server"));
    spy.wait_closed(1);
    assert_eq!(spy.stop(), 0);
    let rows = index(&logs);
    assert_eq!(rows[0]["target_name"], format!("localhost:{port}"));
    let hex = hex_dump(&logs, "0001");
    assert!(
        hex.contains(&format!("request CONNECT localhost:{port}")),
        "{hex}"
    );
}

#[test]
fn a_proxy_listener_beyond_loopback_needs_auth_or_allow() {
    let (code, err) = run_to_exit(&["--socks5", "0.0.0.0:0"]);
    assert_eq!(code, 1);
    assert!(err.contains("open proxy"), "{err}");
    let (code, err) = run_to_exit(&["--http-proxy", "0.0.0.0:0", "--allow", "bogus pattern"]);
    assert_eq!(code, 2, "{err}");
}

/// The transparent listener in a network namespace the test makes: iptables redirects a
/// user's connections (nobody's, so that tcpspy's own upstream connects are left alone) to
/// tcpspy, which relays each to its original destination; a connection made straight to the
/// listener is refused, never looped.
#[test]
fn transparent_relays_redirected_connections_to_their_original_destination() {
    need("unshare");
    need("iptables");
    need("ip");
    need("setpriv");
    need("curl");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let logs = dir.path().join("logs");
    let script = format!(
        r#"set -e
ip link set lo up
iptables -t nat -A OUTPUT -p tcp -d 127.0.0.1 --dport 8000 -m owner --uid-owner 65534 -j REDIRECT --to-ports 9040 || {{ echo "SKIP: iptables cannot redirect here"; exit 0; }}
{bin} --transparent 127.0.0.1:9040 -d {logs} 2>{dir}/spy.err &
spy=$!
python3 -c '
import socket
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", 8000)); l.listen(8)
open("{dir}/server.ready", "w").close()
while True:
    c, _ = l.accept(); d = c.recv(65536)
    body = b"origin saw " + d.split(b"\r\n")[0]
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body); c.close()
' &
server=$!
for i in $(seq 1 300); do [ -e {dir}/server.ready ] && grep -q "listening on" {dir}/spy.err && break; sleep 0.05; done
setpriv --reuid=65534 --regid=65534 --clear-groups curl -sS --max-time 10 http://127.0.0.1:8000/through
echo
curl -sS --max-time 5 http://127.0.0.1:9040/direct || echo "direct: refused"
kill $spy; wait $spy || true
kill $server || true
"#,
        bin = bin(),
        logs = logs.display(),
        dir = dir.path().display()
    );
    let out = tool("unshare")
        .args(["-n", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stdout.contains("SKIP:")
        || stderr.contains("unshare failed")
        || stderr.contains("Operation not permitted")
    {
        eprintln!("transparent mode not tested: {stdout} {stderr}");
        return;
    }
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("origin saw GET /through HTTP/1.1"),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("direct: refused"), "{stdout}\n{stderr}");
    let rows = index(&logs);
    assert_eq!(rows[0]["target"], "127.0.0.1:8000", "{rows:?}");
    let hex = hex_dump(&logs, "0001");
    assert!(
        hex.contains("Proxy transparent on ")
            && hex.contains("original destination 127.0.0.1:8000"),
        "{hex}"
    );
    let hex = hex_dump(&logs, "0002");
    assert!(
        hex.contains("is this listener") || hex.contains("no original destination"),
        "{hex}"
    );
}

/// PySocks, a Python client, through the SOCKS5 listener (with and without
/// username/password) and through the HTTP listener's CONNECT.
#[test]
fn pysocks_python_client_through_socks5_and_http_connect() {
    need("pysocks");
    let dir = tempfile::tempdir().unwrap();
    let web = listener();
    let waddr = web.local_addr().unwrap();
    http_server(web, "python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/pysocks_client.py");
    let run = |kind: &str, proxy: SocketAddr, auth: &[&str]| {
        let out = tool("pysocks")
            .arg(&script)
            .arg(kind)
            .arg(proxy.port().to_string())
            .arg(waddr.port().to_string())
            .args(auth)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let mut socks = spy("--socks5", dir.path(), &[]);
    assert_eq!(
        run("socks5", socks.addr, &[]),
        "python [GET /python HTTP/1.1]"
    );
    socks.wait_closed(1);
    assert_eq!(socks.stop(), 0);
    let rows = index(dir.path());
    assert_eq!(
        rows[0]["target_name"],
        format!("localhost:{}", waddr.port())
    );
    let dir = tempfile::tempdir().unwrap();
    let mut socks = spy("--socks5", dir.path(), &["--proxy-auth", "py:thon"]);
    assert_eq!(
        run("socks5", socks.addr, &["py", "thon"]),
        "python [GET /python HTTP/1.1]"
    );
    assert!(run("socks5", socks.addr, &["py", "wrong"]).starts_with("refused:"));
    socks.wait_closed(2);
    assert_eq!(socks.stop(), 0);
    let dir = tempfile::tempdir().unwrap();
    let mut http = spy("--http-proxy", dir.path(), &[]);
    assert_eq!(run("http", http.addr, &[]), "python [GET /python HTTP/1.1]");
    http.wait_closed(1);
    assert_eq!(http.stop(), 0);
}

/// A connection that began with an absolute-form request belongs to that request's host: a
/// later request on it for another host closes it before a byte of it is relayed, and curl,
/// reusing its proxy connection, retries on a new one that tcpspy sends to the right host.
#[test]
fn http_proxy_closes_a_connection_that_asks_for_another_host() {
    need("curl");
    let dir = tempfile::tempdir().unwrap();
    let a = listener();
    let aaddr = a.local_addr().unwrap();
    http_server(a, "host a");
    let b = listener();
    let baddr = b.local_addr().unwrap();
    http_server(b, "host b");
    let mut spy = spy("--http-proxy", dir.path(), &[]);
    let mut s = connect(spy.addr);
    let first = format!("GET http://{aaddr}/1 HTTP/1.1\r\nHost: {aaddr}\r\n\r\n");
    s.write_all(first.as_bytes()).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("host a [GET http://"));
    let same = format!("GET http://{aaddr}/2 HTTP/1.1\r\nHost: {aaddr}\r\n\r\n");
    s.write_all(same.as_bytes()).unwrap();
    let n = s.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).contains("/2 HTTP/1.1]"),
        "the same host: relayed"
    );
    let other = format!("GET http://{baddr}/3 HTTP/1.1\r\nHost: {baddr}\r\n\r\n");
    s.write_all(other.as_bytes()).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "closed, nothing from host a: {}",
        String::from_utf8_lossy(&rest)
    );
    let (code, body, err) = curl(&[
        "-x",
        &format!("http://{}", spy.addr),
        &format!("http://{aaddr}/x"),
        &format!("http://{baddr}/y"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        body.contains("host a [GET http://") && body.contains("host b [GET http://"),
        "{body}"
    );
    assert!(body.contains("/y HTTP/1.1]"), "{body}");
    spy.wait_closed(2);
    assert_eq!(spy.stop(), 0);
    let hex = hex_dump(dir.path(), "0001");
    assert!(hex.contains("is for 127.0.0.1:"), "{hex}");
}

//! `--tls`: tcpspy ends the client's TLS and starts its own toward the target, and records
//! the plaintext. Real clients (curl, openssl s_client, Python's ssl, psql) against real
//! servers (openssl s_server, nginx with HTTP/2, PostgreSQL with ssl=on), the plaintext read
//! back from the hex dump, the binary logs, connections.jsonl and the capture (tshark decrypts
//! it with the secrets tcpspy put in it); and every way the interception can fail.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::*;

/// A server process, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    _port: Option<HeldPort>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA and a certificate it signed for localhost and 127.0.0.1: (CA, certificate,
/// key). Verifying the server means trusting the CA (`--target-ca`).
fn server_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (ca, ca_key) = (dir.join("test-ca.pem"), dir.join("test-ca.key"));
    let (cert, key, csr) = (
        dir.join("server.pem"),
        dir.join("server.key"),
        dir.join("server.csr"),
    );
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let ok = tool("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs")
            .success();
        assert!(ok, "openssl {args:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut a = vec!["req", "-x509", "-days", "2", "-subj", "/CN=tcpspy test CA"];
    a.extend_from_slice(&ec);
    a.extend_from_slice(&["-keyout", "test-ca.key", "-out", "test-ca.pem"]);
    run(&a);
    let mut a = vec!["req", "-subj", "/CN=localhost/O=tls test server"];
    a.extend_from_slice(&ec);
    a.extend_from_slice(&["-keyout", "server.key", "-out", "server.csr"]);
    run(&a);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "test-ca.pem",
        "-CAkey",
        "test-ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    let _ = (ca_key, csr);
    // The CA sits beside: the tests pass it with --target-ca.
    assert!(ca.exists());
    (cert, key)
}

/// The CA that signed [`server_cert`]'s certificate.
fn test_ca(dir: &Path) -> PathBuf {
    dir.join("test-ca.pem")
}

/// `openssl s_server -www` on a held port: answers each request with a status page.
fn s_server(cert: &Path, key: &Path) -> Server {
    let port = held_port();
    let mut child = tool("openssl")
        .arg("s_server")
        .arg("-accept")
        .arg(port.addr.to_string())
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .arg("-www")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server runs");
    let out = child.stdout.take().expect("stdout piped");
    let mut lines = BufReader::new(out).lines();
    // It says ACCEPT once it listens.
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("ACCEPT") => break,
            Some(Ok(_)) => {}
            _ => panic!("openssl s_server did not start"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        addr: port.addr,
        _port: Some(port),
    }
}

/// tcpspy with `--tls` relaying to `target`, its CA in `dir/ca`, its logs in `dir/logs`.
fn tls_spy(dir: &Path, target: SocketAddr, extra: &[&str]) -> Spy {
    let ca = dir.join("ca");
    let logs = dir.join("logs");
    let t = target.to_string();
    let mut args = vec![
        "-t",
        &t,
        "--tls",
        "--ca-dir",
        ca.to_str().unwrap(),
        "-d",
        logs.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let mut spy = Spy::start(&args);
    spy.wait_line(|l| l.contains("tcpspy: TLS: clients must trust"));
    spy
}

fn ca_of(dir: &Path) -> PathBuf {
    dir.join("ca/tcpspy-ca.pem")
}

/// The one hex dump in `dir/logs`.
fn hex_dump(dir: &Path) -> String {
    let logs = dir.join("logs");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&logs)
        .expect("the log directory")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with("log-") && !n.starts_with("log-binary-")
        })
        .collect();
    found.sort();
    let p = found.last().expect("a hex dump");
    String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned()
}

fn index_line(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("logs/connections.jsonl")).expect("the index");
    let line = text.lines().last().expect("a line");
    serde_json::from_str(line).expect("JSON")
}

/// curl trusting tcpspy's CA (in `dir`), to `path` on `spy`'s listener as localhost.
fn curl_via(dir: &Path, spy: &Spy, path: &str) -> (i32, String, String) {
    let ca = ca_of(dir);
    let url = format!("https://localhost:{}{path}", spy.addr.port());
    curl(&["--cacert", ca.to_str().unwrap(), &url])
}

fn curl(args: &[&str]) -> (i32, String, String) {
    let out = tool("curl")
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn curl_through_tls_is_recorded_in_plaintext_everywhere() {
    need("openssl");
    need("curl");
    need("tshark");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = server_cert(dir.path());
    let server = s_server(&cert, &key);
    let keys = dir.path().join("keys.txt");
    let mut spy = tls_spy(
        dir.path(),
        server.addr,
        &[
            "--target-ca",
            test_ca(dir.path()).to_str().unwrap(),
            "--log",
            "hex,binary,pcap",
            "--keylog",
            keys.to_str().unwrap(),
        ],
    );
    let url = format!("https://localhost:{}/v1/items", spy.addr.port());
    let ca = ca_of(dir.path());
    let (code, body, err) = curl(&["--cacert", ca.to_str().unwrap(), &url]);
    assert_eq!(code, 0, "curl: {err}");
    assert!(body.contains("s_server"), "{body}");
    spy.wait_closed(1);
    assert_eq!(spy.stop(), 0);

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("ca/tcpspy-ca-key.pem")), 0o600);
    assert_eq!(mode(&keys), 0o600);
    let key_log = std::fs::read_to_string(&keys).unwrap();
    // Both legs: tcpspy's session with curl and its session with the server.
    assert!(
        key_log.matches("CLIENT_TRAFFIC_SECRET_0 ").count() >= 2,
        "{key_log}"
    );

    let hex = hex_dump(dir.path());
    assert!(
        hex.contains("TLS with 127.0.0.1:") && hex.contains("(client) at "),
        "{hex}"
    );
    assert!(hex.contains("SNI localhost"), "{hex}");
    assert!(
        hex.contains("certificate CN=localhost issued by tcpspy CA"),
        "{hex}"
    );
    assert!(
        hex.contains("|GET /v1/items HT|"),
        "plaintext in the dump: {hex}"
    );

    let (_, up, down) = log_files(&dir.path().join("logs"), 1, server.addr);
    let sent = std::fs::read(&up).unwrap();
    assert!(sent.starts_with(b"GET /v1/items HTTP/1.1\r\nHost: localhost:"));
    let got = std::fs::read(&down).unwrap();
    assert!(got.starts_with(b"HTTP/1.0 200 ok\r\n"), "{got:?}");
    assert!(
        body.len() < got.len() && got.ends_with(body.as_bytes()),
        "the binary log holds exactly what curl got"
    );

    let line = index_line(dir.path());
    assert_eq!(line["tls"]["client"]["sni"], "localhost", "{line}");
    assert_eq!(line["tls"]["client"]["certificate_issuer"], "tcpspy CA");
    assert_eq!(line["tls"]["server"]["verified"], true);
    assert!(
        line["tls"]["server"]["certificate_subject"]
            .as_str()
            .unwrap()
            .contains("CN=localhost"),
        "{line}"
    );
    assert!(
        line["tls"]["server"]["version"]
            .as_str()
            .unwrap()
            .starts_with("TLSv1.")
    );

    let capture: Vec<PathBuf> = std::fs::read_dir(dir.path().join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcapng"))
        .collect();
    let out = tool("tshark")
        .arg("-r")
        .arg(&capture[0])
        .args(["-Y", "http.request"])
        .output()
        .expect("tshark runs");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("GET /v1/items"), "tshark: {listed}");
}

/// A client whose hello arrives in many pieces is intercepted all the same; Python's ssl
/// verifies tcpspy's certificate for the name it asked for.
#[test]
fn python_ssl_client_and_a_hello_in_pieces() {
    need("openssl");
    need("python3");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = server_cert(dir.path());
    let server = s_server(&cert, &key);
    let mut spy = tls_spy(dir.path(), server.addr, &["--insecure"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/tls_client.py");
    let ca = ca_of(dir.path());
    for (n, how) in [(1, "whole"), (2, "split")] {
        let out = tool("python3")
            .arg(&script)
            .args(["127.0.0.1", &spy.addr.port().to_string()])
            .arg(&ca)
            .args(["localhost", "GET /py HTTP/1.0\\r\\n\\r\\n", how])
            .output()
            .expect("python3 runs");
        let got = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && got.contains("HTTP/1.0 200 ok"),
            "{how}: {got} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        spy.wait_closed(n);
        let hex = hex_dump(dir.path());
        assert!(hex.contains("|GET /py HTTP/1.0|"), "{how}: {hex}");
        assert!(
            hex.contains("certificate not verified (--insecure)"),
            "{hex}"
        );
    }
    assert_eq!(spy.stop(), 0);
}

#[test]
fn openssl_s_client_verifies_tcpspys_certificate() {
    need("openssl");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = server_cert(dir.path());
    let server = s_server(&cert, &key);
    let mut spy = tls_spy(
        dir.path(),
        server.addr,
        &["--target-ca", test_ca(dir.path()).to_str().unwrap()],
    );
    let ca = ca_of(dir.path());
    let mut child = tool("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(spy.addr.to_string())
        .args([
            "-servername",
            "localhost",
            "-verify_return_error",
            "-ign_eof",
        ])
        .arg("-CAfile")
        .arg(&ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET /s_client HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success(), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    // Tickets after the handshake, as real servers send them (they carry the ACK a client
    // with Nagle's algorithm waits for before its first request).
    assert!(out.contains("New Session Ticket arrived"), "{out}");
    assert!(out.contains("HTTP/1.0 200 ok"), "{out}");
    spy.wait_closed(1);
    assert!(hex_dump(dir.path()).contains("|GET /s_client HT|"));
    assert_eq!(spy.stop(), 0);
}

/// nginx serving HTTP/2 over TLS: curl's ALPN offer goes upstream, nginx's choice comes
/// back, and the conversation is h2 end to end.
#[test]
fn curl_http2_through_nginx_negotiates_h2() {
    need("openssl");
    need("curl");
    need("nginx");
    let dir = tempfile::tempdir().unwrap();
    let nginx = nginx_serving(dir.path(), "hello.txt", "hello over h2\n");
    let mut spy = tls_spy(
        dir.path(),
        nginx.addr,
        &["--target-ca", test_ca(dir.path()).to_str().unwrap()],
    );
    let ca = ca_of(dir.path());
    let url = format!("https://localhost:{}/hello.txt", spy.addr.port());
    let (code, body, err) = curl(&[
        "--http2",
        "--cacert",
        ca.to_str().unwrap(),
        "-w",
        "\n%{http_version}",
        &url,
    ]);
    assert_eq!(code, 0, "curl: {err}");
    assert_eq!(body, "hello over h2\n\n2", "{err}");
    spy.wait_closed(1);
    assert_eq!(spy.stop(), 0);
    let line = index_line(dir.path());
    assert_eq!(line["tls"]["client"]["alpn"], "h2", "{line}");
    assert_eq!(line["tls"]["server"]["alpn"], "h2", "{line}");
    let hex = hex_dump(dir.path());
    assert!(
        hex.contains("|PRI * HTTP/2.0..|"),
        "the h2 preface in plaintext: {hex}"
    );
    assert!(hex.contains("ALPN h2"), "{hex}");
}

/// nginx with TLS (a certificate of [`server_cert`]'s) serving one file, `name`, of `body`.
fn nginx_serving(dir: &Path, name: &str, body: &str) -> Server {
    let (cert, key) = server_cert(dir);
    let www = dir.join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join(name), body).unwrap();
    nginx_tls(dir, &cert, &key, &www)
}

/// nginx with TLS on a held port, as root or not.
fn nginx_tls(dir: &Path, cert: &Path, key: &Path, www: &Path) -> Server {
    let port = held_port();
    let conf = dir.join("nginx.conf");
    let user = match unsafe_euid_is_root() {
        true => "user root;\n",
        false => "",
    };
    let d = dir.display();
    std::fs::write(
        &conf,
        format!(
            "{user}daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
              fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
              server {{\n  listen {} ssl http2;\n  ssl_certificate {};\n  ssl_certificate_key {};\n\
               root {};\n }}\n}}\n",
            port.addr,
            cert.display(),
            key.display(),
            www.display()
        ),
    )
    .unwrap();
    let child = tool("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx runs");
    let addr = port.addr;
    wait_until("nginx listens", || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    Server {
        child,
        addr,
        _port: Some(port),
    }
}

fn unsafe_euid_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        .unwrap_or(false)
}

/// PostgreSQL's SSLRequest: psql asks, the server says `S`, psql sends its ClientHello, and
/// tcpspy takes the TLS over at that point of the stream. The SQL is in the logs.
#[test]
fn psql_sslmode_require_through_an_upgrade() {
    need("openssl");
    need("psql");
    need("pg_ctlcluster");
    need("setpriv");
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path());
    let mut spy = tls_spy(dir.path(), pg.addr, &["--insecure"]);
    let conninfo = format!(
        "host=localhost port={} user=postgres dbname=postgres sslmode=require gssencmode=disable",
        spy.addr.port()
    );
    let out = tool("psql")
        .arg(&conninfo)
        .args([
            "-At",
            "-c",
            "select 40 + 2 as answer, ssl from pg_stat_ssl where pid = pg_backend_pid()",
        ])
        .env("PGCONNECT_TIMEOUT", "30")
        .output()
        .expect("psql runs");
    let got = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "psql: {got} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(got.trim(), "42|t", "the server saw TLS too");
    spy.wait_closed(1);
    assert_eq!(spy.stop(), 0);
    let hex = hex_dump(dir.path());
    assert!(hex.contains("TLS with"), "{hex}");
    // The SSLRequest went by as plain bytes, then the TLS was taken over: the SQL is there
    // in plaintext.
    let (_, up, down) = log_files(&dir.path().join("logs"), 1, pg.addr);
    let sent = std::fs::read(up).unwrap();
    assert!(
        sent.starts_with(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]),
        "{sent:?}"
    );
    let text = String::from_utf8_lossy(&sent);
    assert!(text.contains("select 40 + 2 as answer"), "{text}");
    assert!(std::fs::read(down).unwrap().starts_with(b"S"));
}

/// A PostgreSQL server with ssl=on in a directory of its own, killed on drop.
struct Postgres {
    server: Server,
    addr: SocketAddr,
}

impl Postgres {
    fn start(dir: &Path) -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's programs")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|b| b.join("initdb").exists())
            .expect("initdb");
        let data = dir.join("pgdata");
        let root = unsafe_euid_is_root();
        // PostgreSQL refuses to run as root: as root, its files belong to postgres.
        let as_pg = |program: PathBuf| {
            let mut c = match root {
                true => {
                    let mut c = tool("setpriv");
                    c.args([
                        "--reuid",
                        "postgres",
                        "--regid",
                        "postgres",
                        "--init-groups",
                    ]);
                    c.arg(program);
                    c
                }
                false => Command::new(program),
            };
            c.stdin(Stdio::null());
            c
        };
        std::fs::create_dir(&data).unwrap();
        let (uid, gid) = postgres_ids();
        if root {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
            std::os::unix::fs::chown(&data, Some(uid), Some(gid)).unwrap();
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let out = as_pg(bin.join("initdb"))
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
            ])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (cert, key) = server_cert(&data);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        if root {
            for f in [&cert, &key] {
                std::os::unix::fs::chown(f, Some(uid), Some(gid)).unwrap();
            }
        }
        let port = held_port();
        let child = as_pg(bin.join("postgres"))
            .args(["-D", data.to_str().unwrap()])
            .args(["-p", &port.addr.port().to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "ssl=on"])
            .arg("-c")
            .arg(format!("ssl_cert_file={}", cert.display()))
            .arg("-c")
            .arg(format!("ssl_key_file={}", key.display()))
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres runs");
        let addr = port.addr;
        wait_until("postgres listens", || {
            std::net::TcpStream::connect(addr).is_ok()
        });
        Postgres {
            server: Server {
                child,
                addr,
                _port: Some(port),
            },
            addr,
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown, its backends with it.
        if let Ok(pid) = i32::try_from(self.server.child.id()) {
            // SAFETY: kill(2) on a child of ours, which we then wait for.
            unsafe { libc::kill(pid, libc::SIGINT) };
            let _ = self.server.child.wait();
        }
    }
}

/// The postgres user's and group's ids (from /etc/passwd).
fn postgres_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.first() != Some(&"postgres") {
                return None;
            }
            Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
        })
        .unwrap_or((0, 0))
}

/// curl without tcpspy's CA refuses the certificate: the story tells the user which file
/// to trust, and tcpspy goes on.
#[test]
fn a_client_that_rejects_the_certificate_is_told_what_to_trust() {
    need("openssl");
    need("curl");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = server_cert(dir.path());
    let server = s_server(&cert, &key);
    let mut spy = tls_spy(dir.path(), server.addr, &["--insecure"]);
    let url = format!("https://localhost:{}/", spy.addr.port());
    let (code, _, err) = curl(&[&url]);
    assert_eq!(code, 60, "curl: certificate problem: {err}");
    spy.wait_closed(1);
    let hex = hex_dump(dir.path());
    let ca = ca_of(dir.path());
    assert!(
        hex.contains("the client rejected tcpspy's certificate (alert ")
            && hex.contains(&format!("make it trust {}", ca.display())),
        "{hex}"
    );
    // It lives on: the next client, trusting the CA, gets through.
    let (code, body, err) = curl(&["--cacert", ca.to_str().unwrap(), &url]);
    assert_eq!(code, 0, "{err}");
    assert!(body.contains("s_server"), "{body}");
    spy.wait_closed(2);
    assert_eq!(spy.stop(), 0);
}

/// The target's certificate is not one the system trusts: the client gets an alert at once
/// (not a hang) and the story says how to go on.
#[test]
fn a_target_that_fails_verification_gets_the_client_an_alert() {
    need("openssl");
    need("curl");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = server_cert(dir.path());
    let server = s_server(&cert, &key);
    let mut spy = tls_spy(dir.path(), server.addr, &[]);
    let (code, _, err) = curl_via(dir.path(), &spy, "/");
    assert_eq!(code, 35, "a TLS alert: {err}");
    assert!(err.contains("alert"), "{err}");
    spy.wait_closed(1);
    let hex = hex_dump(dir.path());
    assert!(
        hex.contains("the target's certificate failed verification")
            && hex.contains("--target-ca FILE"),
        "{hex}"
    );
    assert!(index_line(dir.path())["tls"]["failed"].as_str().is_some());
    assert_eq!(spy.stop(), 0);
}

/// A target that answers a ClientHello in plain text.
#[test]
fn a_target_that_does_not_speak_tls() {
    need("curl");
    let dir = tempfile::tempdir().unwrap();
    let target = listener();
    let taddr = target.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut s = accept(&target);
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    });
    let mut spy = tls_spy(dir.path(), taddr, &["--insecure"]);
    let (code, _, err) = curl_via(dir.path(), &spy, "/");
    assert_eq!(code, 35, "{err}");
    server.join().unwrap();
    spy.wait_closed(1);
    let hex = hex_dump(dir.path());
    assert!(hex.contains("does not speak TLS"), "{hex}");
    assert_eq!(spy.stop(), 0);
}

/// A target that takes the connection and never answers: the handshakes are bounded by the
/// connect timeout.
#[test]
fn a_handshake_that_never_completes_is_bounded() {
    need("curl");
    let dir = tempfile::tempdir().unwrap();
    let target = listener();
    let taddr = target.local_addr().unwrap();
    let mut spy = tls_spy(
        dir.path(),
        taddr,
        &["--insecure", "--connect-timeout", "1s"],
    );
    let started = std::time::Instant::now();
    let (code, _, err) = curl_via(dir.path(), &spy, "/");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(code, 35, "{err}");
    let _held = accept(&target);
    spy.wait_closed(1);
    let hex = hex_dump(dir.path());
    assert!(hex.contains("did not complete within 1s"), "{hex}");
    assert_eq!(spy.stop(), 0);
}

/// Bytes that only look like a TLS record header are relayed as they came, and so is a
/// hello cut short that never goes on (once the connect timeout has passed).
#[test]
fn bytes_that_only_look_like_tls_are_relayed_as_they_came() {
    let dir = tempfile::tempdir().unwrap();
    let target = listener();
    let taddr = target.local_addr().unwrap();
    let mut spy = tls_spy(
        dir.path(),
        taddr,
        &["--insecure", "--connect-timeout", "1s"],
    );
    // A handshake record whose message is a "ClientHello" of garbage.
    let fake: Vec<u8> = [22u8, 3, 1, 0, 8, 1, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef]
        .into_iter()
        .chain(*b" and then plain text")
        .collect();
    let mut c = connect(spy.addr);
    let mut s = accept(&target);
    c.write_all(&fake).unwrap();
    let mut got = vec![0u8; fake.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, fake);
    s.write_all(b"plain answer").unwrap();
    let mut answer = [0u8; 12];
    c.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"plain answer");
    drop((c, s));
    spy.wait_closed(1);
    assert!(hex_dump(dir.path()).contains("not intercepted: not a TLS ClientHello"));

    // A record header that promises 512 bytes, and nothing more.
    let mut c = connect(spy.addr);
    let mut s = accept(&target);
    c.write_all(&[22, 3, 1, 2, 0, 1]).unwrap();
    let mut got = [0u8; 6];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, [22, 3, 1, 2, 0, 1]);
    drop((c, s));
    spy.wait_closed(2);
    assert!(hex_dump(dir.path()).contains("no whole ClientHello within 1s"));
    assert_eq!(spy.stop(), 0);
}

/// Without `--tls` a ClientHello is bytes like any other: relayed, recorded as sent.
#[test]
fn without_tls_a_hello_is_relayed_untouched() {
    let (dir, target, taddr, mut spy) = logging_spy(&[]);
    let hello = [22u8, 3, 1, 0, 5, 1, 0, 0, 1, 0];
    let mut c = connect(spy.addr);
    let mut s = accept(&target);
    c.write_all(&hello).unwrap();
    let mut got = [0u8; 10];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, hello);
    drop((c, s));
    spy.wait_closed(1);
    let (_, up, _) = log_files(dir.path(), 1, taddr);
    assert_eq!(std::fs::read(up).unwrap(), hello);
    assert_eq!(spy.stop(), 0);
}

/// Start-up errors are one line: a CA key that is not a key.
#[test]
fn a_damaged_ca_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    std::fs::create_dir(&ca).unwrap();
    std::fs::write(ca.join("tcpspy-ca.pem"), "not a certificate").unwrap();
    std::fs::write(ca.join("tcpspy-ca-key.pem"), "not a key").unwrap();
    let (code, err) = run_to_exit(&[
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:9",
        "--tls",
        "--ca-dir",
        ca.to_str().unwrap(),
        "--log",
        "none",
    ]);
    assert_ne!(code, 0);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("tcpspy-ca-key.pem: not a private key"),
        "{err}"
    );
}

/// `--tls` composes with the proxy listeners: curl through the HTTP proxy (CONNECT) and
/// through SOCKS5 with the host name, each to an HTTPS server, recorded in plaintext with a
/// leaf certificate made for the host asked for.
#[test]
fn tls_through_the_proxy_listeners() {
    need("openssl");
    need("curl");
    need("nginx");
    let dir = tempfile::tempdir().unwrap();
    let nginx = nginx_serving(dir.path(), "via.txt", "through a proxy\n");
    let ca = dir.path().join("ca");
    let logs = dir.path().join("logs");
    let mut spy = Spy::spawn({
        let mut c = Command::new(bin());
        c.args([
            "--http-proxy",
            "127.0.0.1:0",
            "--socks5",
            "127.0.0.1:0",
            "--tls",
        ])
        .arg("--ca-dir")
        .arg(&ca)
        .arg("--target-ca")
        .arg(test_ca(dir.path()))
        .arg("-d")
        .arg(&logs);
        c
    });
    // One "listening on" line per listener, each naming its kind.
    let (mut http, mut socks) = (None, None);
    let mut lines = spy.seen.clone();
    while http.is_none() || socks.is_none() {
        let line = match lines.pop() {
            Some(l) => l,
            None => spy.wait_line(|l| l.starts_with("tcpspy: listening on ")),
        };
        let Some(rest) = line.strip_prefix("tcpspy: listening on ") else {
            continue;
        };
        let addr = rest.split(',').next().unwrap().to_string();
        match line.to_lowercase().contains("socks") {
            true => socks = Some(addr),
            false => http = Some(addr),
        }
    }
    spy.wait_line(|l| l.contains("tcpspy: TLS: clients must trust"));
    let trust = ca.join("tcpspy-ca.pem");
    let url = format!("https://localhost:{}/via.txt", nginx.addr.port());
    let (http, socks) = (format!("http://{}", http.unwrap()), socks.unwrap());
    for (n, how) in [
        (1, vec!["-x", &http]),
        (2, vec!["--socks5-hostname", &socks]),
    ] {
        let mut args = how.clone();
        args.extend(["--cacert", trust.to_str().unwrap(), &url]);
        let (code, body, err) = curl(&args);
        assert_eq!(code, 0, "{how:?}: {err}");
        assert_eq!(body, "through a proxy\n");
        spy.wait_closed(n);
    }
    assert_eq!(spy.stop(), 0);
    let text = std::fs::read_to_string(logs.join("connections.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    for line in &lines {
        assert_eq!(line["tls"]["client"]["sni"], "localhost", "{line}");
        assert_eq!(line["tls"]["client"]["certificate_subject"], "CN=localhost");
        assert_eq!(line["tls"]["server"]["verified"], true);
    }
    let dumps: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with("log-") && !n.starts_with("log-binary-")
        })
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(dumps.len(), 2);
    for d in &dumps {
        // curl speaks h2 to nginx here (ALPN carried across): the body is in a DATA frame.
        assert!(d.contains("|PRI * HTTP/2.0..|"), "{d}");
        let [_, down] = tcpspy::log::hexdump::streams(d).unwrap();
        assert!(down.windows(16).any(|w| w == b"through a proxy\n"), "{d}");
    }
}

/// `--tls=rule2` intercepts the second rule only: the first relays a ClientHello as bytes.
/// A name that is no rule's is one clear line at start-up.
#[test]
fn tls_for_one_rule_only() {
    need("openssl");
    need("curl");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = server_cert(dir.path());
    let server = s_server(&cert, &key);
    let plain = listener();
    let r1 = format!("127.0.0.1:0={}", plain.local_addr().unwrap());
    let r2 = format!("127.0.0.1:0={}", server.addr);
    let ca = dir.path().join("ca");
    let logs = dir.path().join("logs");
    let mut cmd = Command::new(bin());
    cmd.args(["-L", &r1, "-L", &r2, "--tls=rule2", "--insecure"])
        .arg("--ca-dir")
        .arg(&ca)
        .arg("-d")
        .arg(&logs);
    // The rules' "listening on" lines come in their order.
    let mut spy = Spy::spawn(cmd);
    let a1 = spy.addr;
    let second =
        spy.wait_line(|l| l.starts_with("tcpspy: listening on ") && !l.contains(&a1.to_string()));
    let a2: SocketAddr = second["tcpspy: listening on ".len()..]
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    spy.wait_line(|l| l.contains("tcpspy: TLS: clients must trust"));
    let hello = [22u8, 3, 1, 0, 5, 1, 0, 0, 1, 0];
    let mut c = connect(a1);
    let mut s = accept(&plain);
    c.write_all(&hello).unwrap();
    let mut got = [0u8; 10];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, hello, "rule1 does not intercept");
    drop((c, s));
    spy.wait_closed(1);
    let trust = ca.join("tcpspy-ca.pem");
    let url = format!("https://localhost:{}/", a2.port());
    let (code, body, err) = curl(&["--cacert", trust.to_str().unwrap(), &url]);
    assert_eq!(code, 0, "{err}");
    assert!(body.contains("s_server"));
    spy.wait_closed(2);
    assert_eq!(spy.stop(), 0);

    let (code, err) = run_to_exit(&[
        "-t",
        "127.0.0.1:9",
        "-l",
        "127.0.0.1:0",
        "--tls=rule7",
        "--log",
        "none",
    ]);
    assert_ne!(code, 0);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("--tls=rule7: no rule of that name (the rules are rule1)"),
        "{err}"
    );
}

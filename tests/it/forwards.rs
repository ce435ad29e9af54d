//! Several forwards in one process, IPv6 end to end, and processes sharing a port.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::process::Command;
use std::thread;

use crate::util::*;

/// A server that answers each connection with `tag` and what it read, then closes.
fn tagged_server(l: TcpListener, tag: &'static str, n: usize) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for _ in 0..n {
            let mut s = accept(&l);
            let got = read_to_end(&mut s).unwrap();
            s.write_all(tag.as_bytes()).unwrap();
            s.write_all(&got).unwrap();
        }
    })
}

fn exchange(addr: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let mut c = connect(addr);
    c.write_all(msg).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    read_to_end(&mut c).unwrap()
}

/// The address a rule listens on, from its "listening on" line.
fn listening(spy: &Spy, target: SocketAddr) -> SocketAddr {
    let tag = format!("relaying to {target}");
    let line = spy
        .seen
        .iter()
        .find(|l| l.contains(&tag))
        .unwrap_or_else(|| panic!("no rule to {target}"));
    line.split("listening on ")
        .nth(1)
        .and_then(|r| r.split(", ").next())
        .unwrap()
        .parse()
        .unwrap()
}

/// Two rules in one process: each relays to its own target, numbers are unique across rules,
/// and each connection's files and lines name its rule's target.
#[test]
fn two_forwards_in_one_reactor() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (listener(), listener());
    let (aaddr, baddr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let sa = tagged_server(a, "A:", 2);
    let sb = tagged_server(b, "B:", 1);
    let mut cmd = Command::new(bin());
    cmd.args([
        "-L",
        &format!("127.0.0.1:0={aaddr}"),
        "--forward",
        &format!("0={baddr}"),
    ]);
    cmd.args(["-d", dir.path().to_str().unwrap()]);
    let mut spy = Spy::spawn(cmd);
    spy.wait_line(|l| l.contains(&format!("relaying to {baddr}")));
    let (la, lb) = (listening(&spy, aaddr), listening(&spy, baddr));
    assert_ne!(la, lb);
    assert_eq!(exchange(la, b"one"), b"A:one");
    spy.wait_closed(1);
    assert_eq!(exchange(lb, b"two"), b"B:two");
    spy.wait_closed(2);
    assert_eq!(exchange(la, b"three"), b"A:three");
    let line = spy.wait_closed(3);
    assert!(line.contains(&format!("-> {aaddr}")), "{line}");
    let two = spy
        .seen
        .iter()
        .find(|l| l.starts_with("#0002 closed"))
        .unwrap();
    assert!(two.contains(&format!("-> {baddr}")), "{two}");
    sa.join().unwrap();
    sb.join().unwrap();
    assert_logs(dir.path(), 1, aaddr, b"one", b"A:one");
    assert_logs(dir.path(), 2, baddr, b"two", b"B:two");
    assert_logs(dir.path(), 3, aaddr, b"three", b"A:three");
}

/// A rule whose port cannot be bound fails start-up with a message naming the rule.
#[test]
fn unbindable_rule_is_named() {
    let busy = listener();
    let port = busy.local_addr().unwrap().port();
    let (code, err) = run_to_exit(&[
        "-L",
        "0=127.0.0.1:9",
        "-L",
        &format!("{port}=127.0.0.1:7"),
        "--log",
        "none",
    ]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("--forward {port}=127.0.0.1:7")) && err.contains("in use"),
        "{err}"
    );
}

/// IPv6 on both legs: listen on [::1], target an IPv6 literal; the file names are safe.
#[test]
fn ipv6_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let target = TcpListener::bind("[::1]:0").unwrap();
    let taddr = target.local_addr().unwrap();
    let server = tagged_server(target, "v6:", 1);
    let mut spy = Spy::start_listening(
        "[::1]:0",
        &["-t", &taddr.to_string(), "-d", dir.path().to_str().unwrap()],
    );
    assert!(spy.addr.is_ipv6());
    assert_eq!(exchange(spy.addr, b"hello"), b"v6:hello");
    let line = spy.wait_closed(1);
    assert!(line.contains(&format!("-> {taddr}")), "{line}");
    server.join().unwrap();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(!name.contains(['[', ']', ':', '/']), "{name}");
    }
    let hex = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.starts_with("log-2"))
        .unwrap();
    assert!(
        hex.ends_with(&format!("-1-{}.log", taddr.port())),
        "{hex}: ::1 becomes --1"
    );
    assert_logs(dir.path(), 1, taddr, b"hello", b"v6:hello");
}

/// A target given by a name that resolves to IPv6 only (a hosts file of the test's own, in a
/// mount namespace of the child alone; not root, in a user namespace of its own too).
#[test]
fn target_name_resolving_to_ipv6() {
    need("unshare");
    need("mount");
    let target = TcpListener::bind("[::1]:0").unwrap();
    let port = target.local_addr().unwrap().port();
    let server = tagged_server(target, "named:", 1);
    let hosts = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(hosts.path(), "::1 tcpspy-v6-only.test\n").unwrap();
    let script = format!(
        "mount --bind {} /etc/hosts && exec {} --listen 127.0.0.1:0 --target tcpspy-v6-only.test:{port} --log none",
        hosts.path().display(),
        bin()
    );
    let mut cmd = tool("unshare");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Not root: a user namespace of the child's own lets it mount in its mount namespace.
        cmd.arg("--map-root-user");
    }
    cmd.args(["--mount", "sh", "-c", &script]);
    let mut spy = Spy::spawn(cmd);
    let first = spy.seen[0].clone();
    assert!(
        first.contains(&format!(
            "relaying to tcpspy-v6-only.test:{port} ([::1]:{port})"
        )),
        "{first}"
    );
    assert_eq!(exchange(spy.addr, b"hi"), b"named:hi");
    spy.wait_closed(1);
    server.join().unwrap();
}

/// Two processes on one port with --reuse-port: the kernel spreads connections over both, and
/// their connection numbers and files never collide.
#[test]
fn two_processes_share_a_port() {
    const N: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let target = listener();
    let taddr = target.local_addr().unwrap();
    let server = thread::spawn(move || {
        for _ in 0..N {
            let mut s = accept(&target);
            let got = read_to_end(&mut s).unwrap();
            s.write_all(&got).unwrap();
        }
    });
    let args = [
        "-t",
        &taddr.to_string(),
        "-d",
        dir.path().to_str().unwrap(),
        "--reuse-port",
    ];
    let mut one = Spy::start(&args);
    let mut two = Spy::start_listening(&one.addr.to_string(), &args);
    assert_eq!(one.addr, two.addr);
    for i in 0..N {
        let msg = format!("message {i:02}");
        assert_eq!(exchange(one.addr, msg.as_bytes()), msg.as_bytes());
    }
    server.join().unwrap();
    let (p1, p2) = (one.pid(), two.pid());
    assert_eq!(one.stop(), 0);
    assert_eq!(two.stop(), 0);
    let served = |spy: &Spy, pid: i32| {
        let tag = format!("#{pid}-");
        spy.seen
            .iter()
            .filter(|l| l.starts_with(&tag) && l.contains(" closed "))
            .count()
    };
    let (n1, n2) = (served(&one, p1), served(&two, p2));
    assert_eq!(n1 + n2, N, "every connection served once");
    assert!(n1 > 0 && n2 > 0, "both processes served: {n1} and {n2}");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("log-"))
        .collect();
    assert_eq!(names.len(), 3 * N, "three distinct files per connection");
    assert!(
        names
            .iter()
            .all(|n| n.contains(&format!("-{p1}-")) || n.contains(&format!("-{p2}-")))
    );
    // Both processes appended to the one index.
    let index = std::fs::read_to_string(dir.path().join("connections.jsonl")).unwrap();
    assert_eq!(index.lines().count(), N);
}

#[test]
fn reuse_port_off_means_the_port_is_taken() {
    let spy = Spy::start(&["-t", "127.0.0.1:9", "--log", "none"]);
    let (code, err) = run_to_exit(&[
        "-l",
        &spy.addr.to_string(),
        "-t",
        "127.0.0.1:9",
        "--log",
        "none",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("in use"), "{err}");
    drop(spy);
}

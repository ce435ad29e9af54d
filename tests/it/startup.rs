//! Start-up: every error is one line on stderr and a non-zero exit; help and version work.

use crate::util::*;

fn fails_with(args: &[&str], needle: &str) {
    let (code, err) = run_to_exit(args);
    assert_ne!(code, 0, "{args:?} must fail");
    assert_eq!(err.lines().count(), 1, "one line for {args:?}, got {err:?}");
    assert!(err.starts_with("tcpspy: error: "), "{err:?}");
    assert!(
        err.contains(needle),
        "{args:?}: {err:?} should mention {needle:?}"
    );
}

#[test]
fn port_out_of_range() {
    fails_with(&["-l", "70000", "-t", "127.0.0.1:80"], "out of range");
    fails_with(&["-l", "1", "-t", "127.0.0.1:65536"], "out of range");
}

#[test]
fn address_in_use() {
    let busy = listener();
    let addr = busy.local_addr().unwrap().to_string();
    fails_with(
        &["-l", &addr, "-t", "127.0.0.1:80", "--log", "none"],
        "in use",
    );
}

#[test]
fn unresolvable_target() {
    fails_with(
        &["-l", "127.0.0.1:0", "-t", "no-such-host.invalid:80"],
        "cannot resolve",
    );
}

#[test]
fn log_dir_not_writable() {
    let f = tempfile::NamedTempFile::new().unwrap();
    let under_a_file = f.path().join("logs");
    fails_with(
        &[
            "-l",
            "127.0.0.1:0",
            "-t",
            "127.0.0.1:80",
            "-d",
            under_a_file.to_str().unwrap(),
        ],
        "log directory",
    );
}

#[test]
fn target_missing() {
    fails_with(&["-l", "127.0.0.1:0"], "--target is required");
}

#[test]
fn bad_values() {
    fails_with(&["-l", "0", "-t", "h:1", "--log", "pdf"], "unknown format");
    fails_with(
        &["-l", "0", "-t", "h:1", "--log-queue", "lots"],
        "--log-queue",
    );
    fails_with(&["-l", "::1:80", "-t", "h:1"], "brackets");
}

#[test]
fn help_has_an_example_and_version_prints() {
    let out = std::process::Command::new(bin())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Example:") && help.contains("--listen"),
        "{help}"
    );
    let out = std::process::Command::new(bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("tcpspy "));
}

#[test]
fn gotcpspy_flags_work() {
    let target = listener();
    let port = target.local_addr().unwrap().port().to_string();
    let mut cmd = std::process::Command::new(bin());
    cmd.args([
        "-host",
        "127.0.0.1",
        "-port",
        &port,
        "-listen_port",
        "0",
        "--log",
        "none",
    ]);
    let mut spy = Spy::spawn(cmd);
    assert_eq!(
        spy.addr.ip().to_string(),
        "127.0.0.1",
        "a bare port binds loopback"
    );
    let mut c = connect(spy.addr);
    let mut s = accept(&target);
    use std::io::{Read, Write};
    c.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    drop((c, s));
    spy.wait_closed(1);
    assert_eq!(spy.stop(), 0);
}

/// `--pcap -` with a terminal as stdout is refused: the capture holds the network's bytes,
/// escape sequences included.
#[test]
fn capture_to_a_terminal_is_refused() {
    need("script");
    use std::io::Read;
    use std::process::Stdio;
    // script(1) (bsdutils, always on Debian) runs the command with a terminal as stdout.
    let cmd = format!(
        "{} -l 127.0.0.1:0 -t 127.0.0.1:1 --log pcap --pcap -",
        bin()
    );
    let mut child = tool("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script runs");
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    let Ok(text) = rx.recv_timeout(WAIT) else {
        let _ = child.kill();
        panic!("tcpspy ran with a capture going to a terminal");
    };
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("--pcap -: stdout is a terminal"), "{text:?}");
}

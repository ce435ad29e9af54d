//! The programs the tests run besides tcpspy, and `./test`'s reading of them. A test that runs
//! one says so with `need("program")` at the top of its own body, where `./test` finds it, to
//! install the program or skip the test by name; it runs the program through `tool`, which
//! fails the test if the `need` is missing. These tests keep the two readings in step.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::util::*;

fn sources() -> Vec<(String, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .expect("tests/it")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    files.sort();
    files
}

/// Every `need("program")` in tests/it outside comments: (program, the test whose body holds
/// it), the test being `None` for a call outside the body of a test at the top of its module.
fn needs_in_sources() -> Vec<(String, Option<String>, String)> {
    let call = concat!("need", "(\"");
    let mut found = Vec::new();
    for (module, path) in sources() {
        let text = std::fs::read_to_string(&path).unwrap();
        let (mut attr, mut test) = (false, None::<String>);
        for (i, line) in text.lines().enumerate() {
            if line.starts_with("#[test]") {
                attr = true;
                continue;
            }
            if let (true, Some(rest)) = (attr, line.strip_prefix("fn ")) {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                test = Some(format!("{module}::{name}"));
                attr = false;
            }
            if !line.trim_start().starts_with("//") {
                let mut rest = line;
                while let Some(at) = rest.find(call) {
                    rest = &rest[at + call.len()..];
                    let program = rest.split('"').next().unwrap_or("").to_string();
                    let place = format!("{}:{}", path.display(), i + 1);
                    found.push((program, test.clone(), place));
                }
            }
            if test.is_some() && line.starts_with('}') {
                test = None;
            }
        }
    }
    found
}

/// `./test --needs`: what the script read, as (program, package, test).
fn script_needs() -> Vec<(String, String, String)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("test");
    let (code, out, err) = run_program(std::process::Command::new(&script).arg("--needs"));
    assert_eq!(code, 0, "./test --needs: {err}");
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 3, "./test --needs printed {l:?}");
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

/// Runs a command to its end (bounded by WAIT): exit code, stdout, stderr.
fn run_program(cmd: &mut std::process::Command) -> (i32, String, String) {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("it runs");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(WAIT)
        .expect("it ends within WAIT")
        .expect("its output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The script skips exactly the tests that declare a program, by names the harness knows, and
/// knows a package for every program; no `need` hides where the script cannot see it.
#[test]
fn the_scripts_list_is_the_sources() {
    let found = needs_in_sources();
    let stray: Vec<&String> = found
        .iter()
        .filter(|(_, test, _)| test.is_none())
        .map(|(_, _, place)| place)
        .collect();
    assert!(
        stray.is_empty(),
        "need() outside the body of a test at the top of its module, where ./test does not \
         look: {stray:#?}"
    );
    let ours: BTreeSet<(String, String)> = found
        .into_iter()
        .filter_map(|(program, test, _)| Some((program, test?)))
        .collect();
    let script = script_needs();
    let theirs: BTreeSet<(String, String)> = script
        .iter()
        .map(|(program, _, test)| (program.clone(), test.clone()))
        .collect();
    assert_eq!(theirs, ours, "./test --needs and the sources");
    for (program, package, _) in &script {
        assert!(!package.is_empty(), "no package for {program}");
    }
    // Every name the script would skip is a test of this binary, as --skip --exact needs it.
    let me = std::env::current_exe().expect("the test binary");
    let (code, list, err) =
        run_program(std::process::Command::new(me).args(["--list", "--format", "terse"]));
    assert_eq!(code, 0, "--list: {err}");
    let names: BTreeSet<&str> = list
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .collect();
    for (_, test) in &theirs {
        assert!(names.contains(test.as_str()), "{test} is no test's name");
    }
}

/// Every program a test runs goes through `tool`, which holds it to its `need`.
#[test]
fn programs_run_through_tool() {
    let direct = concat!("Command::new", "(\"");
    let mut found = Vec::new();
    for (_, path) in sources() {
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, line) in text.lines().enumerate() {
            if line.contains(direct) {
                found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "programs run without tool(), so without need(): {found:#?}"
    );
}

/// `tool` refuses a program the test did not declare, and `need` one that is not there, with
/// the message that sends the reader to ./test.
#[test]
fn tool_and_need_refuse() {
    let undeclared = std::panic::catch_unwind(|| tool("sh"));
    let msg = undeclared.expect_err("tool without need");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("without need(\"sh\")"), "{msg}");
    // Not a literal: ./test would read it as this test's need.
    let missing: &'static str = "tcpspy-no-such-program";
    let absent = std::panic::catch_unwind(|| need(missing));
    let msg = absent.expect_err("need of a missing program");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert_eq!(
        msg,
        "needs tcpspy-no-such-program; run ./test, which installs or skips it"
    );
}

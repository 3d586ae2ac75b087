//! `ringdb demo`, the README's first command: a throw-away node with the shell attached. Run here
//! with statements piped on stdin (the shell reads them as a script when stdin is not a terminal);
//! leaving the shell must stop the node and remove its data directory.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

use ringdb_tests::{ringdb_bin_or_skip, ringdb_command, wait_bounded};

const SCRIPT: &str = "\
CREATE KEYSPACE demo_ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};
CREATE TABLE demo_ks.t (k int PRIMARY KEY, v text);
INSERT INTO demo_ks.t (k, v) VALUES (1, 'hello from the demo');
SELECT k, v FROM demo_ks.t;
";

#[test]
fn demo_serves_the_shell_and_cleans_up_when_it_exits() {
    let Some(bin) = ringdb_bin_or_skip("demo_serves_the_shell_and_cleans_up_when_it_exits") else {
        return;
    };
    let mut cmd = ringdb_command(&bin);
    cmd.args(["demo", "--port", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn ringdb demo");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(SCRIPT.as_bytes())
        .expect("write the script");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = wait_bounded(&mut child, Duration::from_secs(60)).expect("wait");
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = out_thread.join().unwrap_or_default();
    let err = err_thread.join().unwrap_or_default();
    let account = format!("status {status:?}\n--- stdout ---\n{out}\n--- stderr ---\n{err}");
    assert!(
        status.map(|s| s.success()).unwrap_or(false),
        "demo failed:\n{account}"
    );
    assert!(
        out.contains("hello from the demo") && out.contains("(1 rows)"),
        "{account}"
    );

    // "data in <dir>" names the demo's directory; it must be gone after the demo exits.
    let dir = out
        .lines()
        .find_map(|l| l.split("data in ").nth(1))
        .map(|d| d.trim().to_string())
        .unwrap_or_else(|| panic!("the demo did not say where its data is:\n{account}"));
    assert!(
        !std::path::Path::new(&dir).exists(),
        "{dir} was left behind"
    );
}

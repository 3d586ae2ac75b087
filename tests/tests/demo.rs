//! `ringdb demo`, the README's first command: a throw-away three-node cluster with a sample
//! keyspace and the shell attached to node1. Run here with statements piped on stdin (the shell
//! reads them as a script when stdin is not a terminal); leaving the shell must stop the cluster
//! and remove its folder — or, with `--keep`, leave it serving, so that `ringdb shell -e`
//! answers a query against it.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use ringdb_tests::{
    ringdb_bin_or_skip, ringdb_command, run_command, run_shell, unique_cluster_base_ip,
    wait_bounded,
};

const DEMO_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs `ringdb demo ARGS` with `script` on stdin; returns (success, stdout, stderr).
fn demo(bin: &std::path::Path, args: &[&str], script: &str) -> (bool, String, String) {
    let mut cmd = ringdb_command(bin);
    cmd.arg("demo")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn ringdb demo");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
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
    let status = wait_bounded(&mut child, DEMO_TIMEOUT).expect("wait");
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = out_thread.join().unwrap_or_default();
    let err = err_thread.join().unwrap_or_default();
    (status.is_some_and(|s| s.success()), out, err)
}

/// The cluster folder the demo announced ("cluster folder <dir>").
fn folder(out: &str) -> Option<PathBuf> {
    out.lines()
        .find_map(|l| l.split("cluster folder ").nth(1))
        .map(|d| PathBuf::from(d.trim()))
}

#[test]
fn demo_runs_a_cluster_with_sample_data_and_removes_it_when_the_shell_exits() {
    let Some(bin) = ringdb_bin_or_skip("demo_runs_a_cluster_with_sample_data") else {
        return;
    };
    let base = unique_cluster_base_ip(3).to_string();
    let (ok, out, err) = demo(
        &bin,
        &["--base-ip", &base],
        "SELECT id, name FROM demo.users;\n",
    );
    let account = format!("--- stdout ---\n{out}\n--- stderr ---\n{err}");
    assert!(ok, "demo failed:\n{account}");
    assert!(out.contains("all 3 nodes are up"), "{account}");
    assert!(
        out.contains("Ada") && out.contains("Grace") && out.contains("(3 rows)"),
        "{account}"
    );
    assert!(out.contains("ringdb cluster kill demo node3"), "{account}");
    let dir = folder(&out).unwrap_or_else(|| panic!("no cluster folder named:\n{account}"));
    assert!(
        !dir.exists(),
        "{} was left behind:\n{account}",
        dir.display()
    );
}

#[test]
fn a_kept_demo_keeps_serving_and_answers_ringdb_shell() {
    let Some(bin) = ringdb_bin_or_skip("a_kept_demo_keeps_serving_and_answers_ringdb_shell") else {
        return;
    };
    let base = unique_cluster_base_ip(3);
    let (ok, out, err) = demo(&bin, &["--keep", "--base-ip", &base.to_string()], "");
    let account = format!("--- stdout ---\n{out}\n--- stderr ---\n{err}");
    let dir = folder(&out);
    // Whatever happens next, the kept cluster is removed.
    struct Remove(PathBuf, Option<PathBuf>);
    impl Drop for Remove {
        fn drop(&mut self) {
            if let Some(dir) = &self.1 {
                let mut cmd = ringdb_command(&self.0);
                cmd.args(["cluster", "remove", "demo", "--dir"]).arg(dir);
                let _ = run_command(cmd, Duration::from_secs(60));
            }
        }
    }
    let _remove = Remove(bin.clone(), dir.clone());
    assert!(ok, "demo failed:\n{account}");
    let dir = dir.unwrap_or_else(|| panic!("no cluster folder named:\n{account}"));
    assert!(dir.exists(), "--keep removed {}:\n{account}", dir.display());

    let answer = run_shell(
        &bin,
        &[
            &base.to_string(),
            "-e",
            "SELECT name, city FROM demo.users WHERE id = 2",
        ],
        Duration::from_secs(30),
    )
    .expect("ringdb shell -e");
    assert!(
        answer.success() && answer.stdout.contains("Grace") && answer.stdout.contains("Arlington"),
        "{}",
        answer.describe()
    );
}

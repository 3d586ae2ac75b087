//! `ringdb node` configuration as users give it: a YAML file, `RINGDB_<KEY>` environment
//! variables and `--set key=value`. Unknown keys and bad values must stop the node at start with a
//! message naming the key; valid overrides must take effect; `deploy/ringdb.yaml` must parse.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringdb_tests::raw::{first_column_texts, RawConn};
use ringdb_tests::{
    ringdb_bin_or_skip, ringdb_command, run_command, skip, unique_loopback_ip, workspace_root,
    yaml_str, CommandOutput, NodeOptions, TestNode, NATIVE_TRANSPORT_PORT, READY_TIMEOUT,
};

/// A node given a bad config must exit well within this.
const REJECT_TIMEOUT: Duration = Duration::from_secs(20);

/// A valid config on a fresh loopback address and temp data dir, plus `extra` YAML lines.
fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let ip = unique_loopback_ip();
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let yaml = format!(
        "cluster_name: \"config-test\"\n\
         listen_address: \"{ip}\"\n\
         native_transport_address: \"{ip}\"\n\
         native_transport_port: {NATIVE_TRANSPORT_PORT}\n\
         data_dir: {}\n\
         {extra}",
        yaml_str(&data.to_string_lossy())
    );
    let path = dir.join("ringdb.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Runs `ringdb node --config CONFIG ARGS...` with `env`, expecting a prompt non-zero exit whose
/// output names `key`.
fn expect_rejected(
    bin: &Path,
    case: &str,
    config: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    key: &str,
) {
    let mut cmd = ringdb_command(bin);
    cmd.arg("node").arg("--config").arg(config).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out: CommandOutput = run_command(cmd, REJECT_TIMEOUT).expect("run ringdb node");
    assert!(
        !out.timed_out(),
        "{case}: the node accepted it and kept running for {REJECT_TIMEOUT:?}:\n{}",
        out.describe()
    );
    assert!(
        !out.success(),
        "{case}: the node exited 0 instead of rejecting it:\n{}",
        out.describe()
    );
    let all = format!("{}\n{}", out.stdout, out.stderr).to_ascii_lowercase();
    assert!(
        all.contains(&key.to_ascii_lowercase()),
        "{case}: the error does not name the key `{key}`:\n{}",
        out.describe()
    );
    assert!(
        !all.contains("panicked at"),
        "{case}: the node panicked instead of reporting the error:\n{}",
        out.describe()
    );
    println!(
        "{case}: rejected with: {}",
        out.stderr.lines().last().unwrap_or("").trim()
    );
}

#[test]
fn unknown_key_and_bad_values_in_yaml_are_rejected_naming_the_key() {
    let Some(bin) =
        ringdb_bin_or_skip("unknown_key_and_bad_values_in_yaml_are_rejected_naming_the_key")
    else {
        return;
    };
    for (case, extra, key) in [
        ("unknown YAML key", "no_such_key: 1\n", "no_such_key"),
        (
            "YAML port that is not a number",
            "storage_port: \"not-a-port\"\n",
            "storage_port",
        ),
        (
            "YAML port out of range",
            "prometheus_port: 70000\n",
            "prometheus_port",
        ),
        (
            "YAML commitlog_sync not periodic|batch",
            "commitlog_sync: sometimes\n",
            "commitlog_sync",
        ),
        (
            "YAML num_tokens not a number",
            "num_tokens: many\n",
            "num_tokens",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), extra);
        expect_rejected(&bin, case, &config, &[], &[], key);
    }
}

#[test]
fn bad_values_in_environment_are_rejected_naming_the_key() {
    let Some(bin) = ringdb_bin_or_skip("bad_values_in_environment_are_rejected_naming_the_key")
    else {
        return;
    };
    for (case, var, value, key) in [
        (
            "env port that is not a number",
            "RINGDB_NATIVE_TRANSPORT_PORT",
            "not-a-port",
            "native_transport_port",
        ),
        (
            "env commitlog_sync not periodic|batch",
            "RINGDB_COMMITLOG_SYNC",
            "sometimes",
            "commitlog_sync",
        ),
        (
            "env commitlog_sync_period_ms not a number",
            "RINGDB_COMMITLOG_SYNC_PERIOD_MS",
            "soon",
            "commitlog_sync_period_ms",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), "");
        expect_rejected(&bin, case, &config, &[], &[(var, value)], key);
    }
}

/// The environment is shared with other tools (`RINGDB_BIN` in these very tests), so an unknown
/// `RINGDB_*` variable is not fatal: the node starts and warns, naming the variable.
#[test]
fn unknown_environment_variable_is_a_warning_naming_it() {
    let test = "unknown_environment_variable_is_a_warning_naming_it";
    let Some(bin) = ringdb_bin_or_skip(test) else {
        return;
    };
    let options = NodeOptions::new().env("RINGDB_NO_SUCH_KEY", "1");
    let mut node = TestNode::spawn(&bin, options).expect("spawn");
    if let Err(e) = node.wait_ready(READY_TIMEOUT) {
        panic!("node with RINGDB_NO_SUCH_KEY=1 in its environment did not start: {e:#}");
    }
    let log = node.log();
    assert!(
        log.contains("RINGDB_NO_SUCH_KEY"),
        "no warning naming RINGDB_NO_SUCH_KEY in the log:\n{}",
        node.log_tail(50)
    );
    drop(node);
}

#[test]
fn unknown_key_and_bad_values_in_set_are_rejected_naming_the_key() {
    let Some(bin) =
        ringdb_bin_or_skip("unknown_key_and_bad_values_in_set_are_rejected_naming_the_key")
    else {
        return;
    };
    for (case, set, key) in [
        ("--set unknown key", "no_such_key=1", "no_such_key"),
        (
            "--set port that is not a number",
            "native_transport_port=abc",
            "native_transport_port",
        ),
        (
            "--set commitlog_sync not periodic|batch",
            "commitlog_sync=sometimes",
            "commitlog_sync",
        ),
        ("--set num_tokens negative", "num_tokens=-3", "num_tokens"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), "");
        expect_rejected(&bin, case, &config, &["--set", set], &[], key);
    }
    // A --set without `=`.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let mut cmd = ringdb_command(&bin);
    cmd.arg("node")
        .arg("--config")
        .arg(&config)
        .args(["--set", "cluster_name"]);
    let out = run_command(cmd, REJECT_TIMEOUT).unwrap();
    assert!(
        !out.timed_out() && !out.success(),
        "--set without `=` was accepted:\n{}",
        out.describe()
    );
}

/// `RINGDB_CLUSTER_NAME` overrides the file's `cluster_name`, and `--set native_transport_port`
/// overrides the file's port: the running node shows both.
#[test]
fn environment_and_set_override_the_file() {
    let test = "environment_and_set_override_the_file";
    let Some(bin) = ringdb_bin_or_skip(test) else {
        return;
    };
    let port = NATIVE_TRANSPORT_PORT + 1;
    let options = NodeOptions::new()
        .env("RINGDB_CLUSTER_NAME", "from-env")
        .args(&["--set", &format!("native_transport_port={port}")]);
    let mut node = TestNode::spawn(&bin, options).expect("spawn");
    let addr = SocketAddr::new(IpAddr::V4(node.ip()), port);
    if let Err(e) = node.wait_ready_at(addr, READY_TIMEOUT) {
        panic!("node with --set native_transport_port={port} does not serve on {addr}: {e:#}");
    }
    let mut c = RawConn::connect_ready(addr, Duration::from_secs(10)).expect("connect");
    let f = c
        .query_ok("SELECT cluster_name FROM system.local WHERE key = 'local'")
        .expect("SELECT cluster_name");
    let names = first_column_texts(&f).expect("decode rows");
    assert_eq!(
        names,
        vec![Some("from-env".to_string())],
        "RINGDB_CLUSTER_NAME did not override the file's cluster_name"
    );
    drop(node);
}

#[test]
fn deploy_sample_config_parses() {
    let test = "deploy_sample_config_parses";
    let Some(bin) = ringdb_bin_or_skip(test) else {
        return;
    };
    let sample = workspace_root().join("deploy/ringdb.yaml");
    if !sample.is_file() {
        if ringdb_tests::in_ci() {
            panic!("{test}: {} is missing", sample.display());
        }
        skip(test, &format!("{} does not exist yet", sample.display()));
        return;
    }
    let mut help = ringdb_command(&bin);
    help.args(["node", "--help"]);
    let help = run_command(help, Duration::from_secs(20)).expect("ringdb node --help");
    if !format!("{}{}", help.stdout, help.stderr).contains("--check") {
        skip(
            test,
            "`ringdb node --help` lists no --check flag, so the sample config cannot be parsed \
             without starting a node",
        );
        return;
    }
    let mut cmd = ringdb_command(&bin);
    cmd.arg("node").arg("--config").arg(&sample).arg("--check");
    let out = run_command(cmd, Duration::from_secs(30)).expect("ringdb node --check");
    assert!(
        out.success(),
        "`ringdb node --config deploy/ringdb.yaml --check` failed:\n{}",
        out.describe()
    );
}

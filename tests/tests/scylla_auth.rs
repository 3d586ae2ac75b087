//! The Rust `scylla` 1.x driver against a node with `authenticator: password` (the superuser's
//! password from the environment, `RINGDB_AUTH_SUPERUSER_PASSWORD`): `SessionBuilder::user`
//! logs in; a wrong password and no credentials are refused; a role granted SELECT reads and
//! gets Unauthorized for a write; `ringdb status` and `ringdb bench` log in with `-u` and the
//! password from `-p` or `RINGDB_PASSWORD`, and are refused without.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ringdb_tests::{
    ringdb_bin_path, ringdb_command, run_async, run_command, NodeOptions, TestNode,
};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

const PASSWORD: &str = "scylla-root-pw";

async fn connect(node: &str, user: Option<(&str, &str)>) -> Result<Session> {
    let mut builder = SessionBuilder::new().known_node(node);
    if let Some((u, p)) = user {
        builder = builder.user(u, p);
    }
    Ok(builder.build().await?)
}

#[test]
fn scylla_driver_logs_in_and_permissions_apply() {
    let test = "scylla_driver_logs_in_and_permissions_apply";
    let options = NodeOptions::new()
        .set("authenticator", "password")
        .env("RINGDB_AUTH_SUPERUSER_PASSWORD", PASSWORD);
    let Some(node) = TestNode::start_with_or_skip(test, options) else {
        return;
    };
    let addr = node.cql_host_port();
    run_async(Duration::from_secs(120), async move {
        // The superuser is written in the background right after the node serves CQL.
        let deadline = Instant::now() + Duration::from_secs(30);
        let admin = loop {
            match connect(&addr, Some(("cassandra", PASSWORD))).await {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(e.context("superuser login with SessionBuilder::user"))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        };
        ensure!(
            connect(&addr, Some(("cassandra", "wrong"))).await.is_err(),
            "a wrong password was accepted"
        );
        ensure!(
            connect(&addr, None).await.is_err(),
            "a session without credentials was accepted"
        );
        for cql in [
            "CREATE KEYSPACE sc WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
            "CREATE TABLE sc.t (k int PRIMARY KEY, v text)",
            "INSERT INTO sc.t (k, v) VALUES (1, 'one')",
            "CREATE ROLE sreader WITH PASSWORD = 'r-pw' AND LOGIN = true",
            "GRANT SELECT ON TABLE sc.t TO sreader",
        ] {
            admin.query_unpaged(cql, &[]).await.with_context(|| cql.to_string())?;
        }
        let reader = connect(&addr, Some(("sreader", "r-pw")))
            .await
            .context("role login")?;
        let rows = reader
            .query_unpaged("SELECT v FROM sc.t WHERE k = 1", &[])
            .await
            .context("granted SELECT")?
            .into_rows_result()?;
        let (v,): (String,) = rows.single_row()?;
        ensure!(v == "one", "read {v:?}");
        match reader
            .query_unpaged("INSERT INTO sc.t (k, v) VALUES (2, 'two')", &[])
            .await
        {
            Ok(_) => bail!("an INSERT without MODIFY succeeded"),
            Err(e) => ensure!(
                format!("{e:?}").contains("Unauthorized"),
                "expected Unauthorized, got {e:?}"
            ),
        }
        Ok(())
    });

    // The operator tools log in too: `ringdb status` and `ringdb bench` with -u and the
    // password from RINGDB_PASSWORD (or -p); without credentials they are refused.
    let bin = ringdb_bin_path();
    let tool = |args: &[&str], password: Option<&str>| {
        let mut cmd = ringdb_command(&bin);
        cmd.args(args);
        if let Some(p) = password {
            cmd.env("RINGDB_PASSWORD", p);
        }
        run_command(cmd, Duration::from_secs(60)).expect("run ringdb")
    };
    let addr = node.cql_host_port();
    let refused = tool(&["status", "--host", &addr], None);
    assert!(
        !refused.success(),
        "status without credentials succeeded: {}",
        refused.describe()
    );
    let status = tool(
        &["status", "--host", &addr, "-u", "cassandra"],
        Some(PASSWORD),
    );
    assert!(
        status.success() && status.stdout.contains("UN"),
        "status with credentials: {}",
        status.describe()
    );
    let bench = tool(
        &[
            "bench",
            "--host",
            &addr,
            "--workload",
            "mixed",
            "--duration",
            "1s",
            "--rows",
            "200",
            "--concurrency",
            "4",
            "--quiet",
            "-u",
            "cassandra",
            "-p",
            PASSWORD,
        ],
        None,
    );
    assert!(
        bench.success() && bench.stdout.contains("errors      0"),
        "bench with credentials: {}",
        bench.describe()
    );
    drop(node);
}

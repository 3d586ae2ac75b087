//! The Rust `scylla` 1.x driver against a node with `authenticator: password` (the superuser's
//! password from the environment, `RINGDB_AUTH_SUPERUSER_PASSWORD`): `SessionBuilder::user`
//! logs in; a wrong password and no credentials are refused; a role granted SELECT reads and
//! gets Unauthorized for a write.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ringdb_tests::{run_async, NodeOptions, TestNode};
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
    drop(node);
}

//! The client multiplexes many requests over one connection and routes answers by stream id,
//! whatever order the server answers in.

mod client_support;

use std::time::Duration;

use client_support::{column, rows, Action, FakeServer};
use ringdb_cql::client::{Client, ClientOptions, QueryOptions, QueryResult, NO_VALUES};
use ringdb_cql::message::Request;
use ringdb_cql::types::{CqlType, CqlValue};

/// A server that answers `SELECT n` with one row holding `n`, after `n % 7` milliseconds times
/// ten, so later requests often overtake earlier ones.
async fn echo_server() -> FakeServer {
    FakeServer::start(|req| match req {
        Request::Query { query, .. } => {
            let n: i32 = query.strip_prefix("SELECT ")?.parse().ok()?;
            let delay = Duration::from_millis(((n % 7) * 10) as u64);
            Some(Action::ReplyAfter(
                delay,
                rows(
                    vec![column("n", CqlType::Int)],
                    vec![vec![Some(CqlValue::Int(n))]],
                    None,
                ),
            ))
        }
        _ => None,
    })
    .await
}

fn single_int(result: QueryResult) -> i32 {
    let rows = result.into_rows().expect("rows");
    match rows.rows[0][0] {
        Some(CqlValue::Int(n)) => n,
        ref other => panic!("unexpected cell {other:?}"),
    }
}

#[tokio::test]
async fn answers_out_of_order_reach_their_callers() {
    let server = echo_server().await;
    let client = Client::connect(server.addr, ClientOptions::default())
        .await
        .unwrap();
    // Issued in order 6, 5, ..., 0: delays decrease, so the server answers in reverse.
    let futures: Vec<_> = (0..7)
        .rev()
        .map(|n| {
            let client = client.clone();
            async move {
                let r = client
                    .query(&format!("SELECT {n}"), NO_VALUES, &QueryOptions::default())
                    .await
                    .unwrap();
                (n, single_int(r))
            }
        })
        .collect();
    let mut handles = Vec::new();
    for f in futures {
        handles.push(tokio::spawn(f));
    }
    for h in handles {
        let (asked, got) = h.await.unwrap();
        assert_eq!(asked, got);
    }
    assert_eq!(client.outstanding_requests(), 0);
}

#[tokio::test]
async fn hundreds_of_concurrent_queries_on_one_connection() {
    let server = echo_server().await;
    let options = ClientOptions {
        max_in_flight: 64,
        ..ClientOptions::default()
    };
    let client = Client::connect(server.addr, options).await.unwrap();
    let mut handles = Vec::new();
    for n in 0..1000 {
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            let r = client
                .query(&format!("SELECT {n}"), NO_VALUES, &QueryOptions::default())
                .await
                .unwrap();
            assert_eq!(single_int(r), n);
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(
        server.connections.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(client.outstanding_requests(), 0);
}

#[tokio::test]
async fn use_keyspace_on_connect_sets_the_keyspace() {
    let server = echo_server().await;
    let options = ClientOptions {
        keyspace: Some("MyKs".into()),
        ..ClientOptions::default()
    };
    let client = Client::connect(server.addr, options).await.unwrap();
    assert_eq!(client.keyspace().as_deref(), Some("MyKs"));
    let queries = server.queries.lock().unwrap().clone();
    assert_eq!(queries, vec!["USE \"MyKs\"".to_string()]);
}

#[tokio::test]
async fn events_reach_the_subscriber() {
    use ringdb_cql::message::{Event, StatusChangeType};
    let pushed = Event::StatusChange {
        change: StatusChangeType::Down,
        addr: "127.0.0.7:9042".parse().unwrap(),
    };
    let event = pushed.clone();
    let server = FakeServer::start(move |req| match req {
        // READY, then an event pushed on stream -1.
        Request::Register { .. } => Some(Action::Many(vec![
            Action::Reply(ringdb_cql::message::Response::Ready),
            Action::Raw(client_support::event_frame(event.clone())),
        ])),
        _ => None,
    })
    .await;
    let client = Client::connect(server.addr, ClientOptions::default())
        .await
        .unwrap();
    let mut events = client.events();
    client
        .register(&["SCHEMA_CHANGE", "STATUS_CHANGE"])
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("event in time")
        .expect("channel open");
    assert_eq!(got, pushed);
    // The event did not disturb request routing.
    client
        .query("SELECT 1", NO_VALUES, &QueryOptions::default())
        .await
        .unwrap();
}

//! Prepared statements (with re-prepare on UNPREPARED), bound values, batches and paging.

mod client_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use client_support::{column, error, rows, Action, FakeServer};
use ringdb_cql::client::{
    BatchEntry, BatchKind, Client, ClientError, ClientOptions, QueryOptions, QueryResult, Value,
    NO_VALUES,
};
use ringdb_cql::message::{
    BatchQuery, BoundValue, ErrorKind, PreparedMetadata, Request, Response, ResultBody,
    ResultMetadata,
};
use ringdb_cql::types::{CqlType, CqlValue};

fn prepared(id: &[u8]) -> Response {
    Response::Result(ResultBody::Prepared {
        id: Bytes::copy_from_slice(id),
        metadata: PreparedMetadata {
            columns: vec![column("k", CqlType::Int)],
            pk_indices: vec![0],
        },
        result_metadata: ResultMetadata::new(vec![column("v", CqlType::Text)]),
    })
}

fn text_row(s: &str) -> Response {
    rows(
        vec![column("v", CqlType::Text)],
        vec![vec![Some(CqlValue::Text(s.into()))]],
        None,
    )
}

#[tokio::test]
async fn prepare_then_execute_with_typed_and_raw_values() {
    let server = FakeServer::start(|req| match req {
        Request::Prepare { query } if query == "SELECT v FROM t WHERE k = ?" => {
            Some(Action::Reply(prepared(b"id-1")))
        }
        Request::Execute { id, params } if &id[..] == b"id-1" => {
            let v = match params.values.first() {
                Some(BoundValue::Value(b)) => format!("{:?}", &b[..]),
                other => format!("{other:?}"),
            };
            Some(Action::Reply(text_row(&v)))
        }
        _ => None,
    })
    .await;
    let client = Client::connect(server.addr, ClientOptions::default())
        .await
        .unwrap();
    let stmt = client.prepare("SELECT v FROM t WHERE k = ?").await.unwrap();
    assert_eq!(&stmt.id[..], b"id-1");
    assert_eq!(stmt.variables[0].name, "k");
    assert_eq!(stmt.result_columns[0].name, "v");

    let typed = client
        .execute(&stmt, [CqlValue::Int(7)], &QueryOptions::default())
        .await
        .unwrap();
    let cell = |r: QueryResult| r.into_rows().unwrap().rows[0][0].clone();
    assert_eq!(cell(typed), Some(CqlValue::Text("[0, 0, 0, 7]".into())));

    let raw = client
        .execute(&stmt, vec![Some(vec![1u8, 2])], &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(cell(raw), Some(CqlValue::Text("[1, 2]".into())));

    let null = client
        .execute(&stmt, [Value::Null], &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(cell(null), Some(CqlValue::Text("Some(Null)".into())));
}

/// A server that "restarted": it forgets every prepared id once, answers UNPREPARED, and
/// assigns a new id when asked to prepare again.
#[tokio::test]
async fn unprepared_is_answered_by_preparing_again_once() {
    let prepares = Arc::new(AtomicUsize::new(0));
    let known = Arc::new(Mutex::new(Vec::<Bytes>::new()));
    let (p, k) = (prepares.clone(), known.clone());
    let server = FakeServer::start(move |req| match req {
        Request::Prepare { .. } => {
            let n = p.fetch_add(1, Ordering::SeqCst);
            let id = format!("id-{n}");
            // The first id is "forgotten" at once (as if the server restarted).
            if n > 0 {
                k.lock().unwrap().push(Bytes::from(id.clone()));
            }
            Some(Action::Reply(prepared(id.as_bytes())))
        }
        Request::Execute { id, .. } => {
            if k.lock().unwrap().contains(id) {
                Some(Action::Reply(text_row("executed")))
            } else {
                Some(Action::Reply(error(
                    ErrorKind::Unprepared { id: id.clone() },
                    "Prepared query with ID 0x... not found",
                )))
            }
        }
        _ => None,
    })
    .await;
    let client = Client::connect(server.addr, ClientOptions::default())
        .await
        .unwrap();
    let stmt = client.prepare("SELECT v FROM t WHERE k = ?").await.unwrap();
    let r = client
        .execute(&stmt, [CqlValue::Int(1)], &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(
        r.into_rows().unwrap().rows[0][0],
        Some(CqlValue::Text("executed".into()))
    );
    assert_eq!(prepares.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unprepared_twice_is_reported_not_looped() {
    let prepares = Arc::new(AtomicUsize::new(0));
    let p = prepares.clone();
    let server = FakeServer::start(move |req| match req {
        Request::Prepare { .. } => {
            p.fetch_add(1, Ordering::SeqCst);
            Some(Action::Reply(prepared(b"x")))
        }
        Request::Execute { id, .. } => Some(Action::Reply(error(
            ErrorKind::Unprepared { id: id.clone() },
            "not found",
        ))),
        _ => None,
    })
    .await;
    let client = Client::connect(server.addr, ClientOptions::default())
        .await
        .unwrap();
    let stmt = client.prepare("SELECT 1").await.unwrap();
    let err = client
        .execute(&stmt, NO_VALUES, &QueryOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.server_code(), Some(0x2500));
    assert_eq!(prepares.load(Ordering::SeqCst), 2);
}

/// Serves `SELECT n FROM numbers` as 250 rows, `page_size` at a time; the paging state is the
/// offset of the next row.
async fn numbers_server() -> FakeServer {
    FakeServer::start(|req| {
        let params = match req {
            Request::Query { query, params } if query == "SELECT n FROM numbers" => params,
            Request::Execute { params, .. } => params,
            Request::Prepare { .. } => {
                return Some(Action::Reply(Response::Result(ResultBody::Prepared {
                    id: Bytes::from_static(b"numbers"),
                    metadata: PreparedMetadata::default(),
                    result_metadata: ResultMetadata::new(vec![column("n", CqlType::Int)]),
                })))
            }
            _ => return None,
        };
        let start = params
            .paging_state
            .as_ref()
            .map(|p| u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
            .unwrap_or(0);
        let size = params.page_size.unwrap_or(i32::MAX).max(1) as u32;
        let end = (start + size).min(250);
        let data = (start..end)
            .map(|n| vec![Some(CqlValue::Int(n as i32))])
            .collect();
        let next = (end < 250).then(|| Bytes::copy_from_slice(&end.to_be_bytes()));
        Some(Action::Reply(rows(
            vec![column("n", CqlType::Int)],
            data,
            next,
        )))
    })
    .await
}

fn ints(rows: &[Vec<Option<CqlValue>>]) -> Vec<i32> {
    rows.iter()
        .map(|r| match r[0] {
            Some(CqlValue::Int(n)) => n,
            _ => panic!("not an int"),
        })
        .collect()
}

#[tokio::test]
async fn query_all_follows_paging_to_the_end() {
    let server = numbers_server().await;
    let client = Client::connect(server.addr, ClientOptions::default())
        .await
        .unwrap();
    let options = QueryOptions {
        page_size: Some(100),
        ..QueryOptions::default()
    };
    let all = client
        .query_all("SELECT n FROM numbers", NO_VALUES, &options)
        .await
        .unwrap()
        .into_rows()
        .unwrap();
    assert_eq!(ints(&all.rows), (0..250).collect::<Vec<_>>());
    assert_eq!(all.paging_state, None);
    // Three round trips (plus the handshake's two).
    assert_eq!(server.requests.load(Ordering::SeqCst), 2 + 3);
}

#[tokio::test]
async fn a_pager_hands_out_one_page_at_a_time() {
    let server = numbers_server().await;
    let client = Client::connect(server.addr, ClientOptions::default())
        .await
        .unwrap();
    let options = QueryOptions {
        page_size: Some(100),
        ..QueryOptions::default()
    };
    let mut pager = client.pager("SELECT n FROM numbers", NO_VALUES, options.clone());
    let mut sizes = Vec::new();
    while let Some(page) = pager.next_page().await.unwrap() {
        sizes.push(page.into_rows().unwrap().rows.len());
    }
    assert_eq!(sizes, vec![100, 100, 50]);
    assert!(pager.is_done());

    // The same through a prepared statement.
    let stmt = client.prepare("SELECT n FROM numbers").await.unwrap();
    let mut pager = client.pager_prepared(&stmt, NO_VALUES, options);
    let mut seen = Vec::new();
    while let Some(page) = pager.next_page().await.unwrap() {
        seen.extend(ints(&page.into_rows().unwrap().rows));
    }
    assert_eq!(seen, (0..250).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_server_repeating_its_paging_state_is_caught() {
    let server = FakeServer::start(|req| match req {
        Request::Query { .. } => Some(Action::Reply(rows(
            vec![column("n", CqlType::Int)],
            vec![vec![Some(CqlValue::Int(1))]],
            Some(Bytes::from_static(b"same")),
        ))),
        _ => None,
    })
    .await;
    let client = Client::connect(server.addr, ClientOptions::default())
        .await
        .unwrap();
    let err = client
        .query_all("SELECT n FROM loop", NO_VALUES, &QueryOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
}

#[tokio::test]
async fn batches_carry_queries_prepared_ids_and_values() {
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let server = FakeServer::start(move |req| match req {
        Request::Prepare { .. } => Some(Action::Reply(prepared(b"ins"))),
        Request::Batch { .. } => {
            *s.lock().unwrap() = Some(req.clone());
            Some(Action::Reply(Response::Result(ResultBody::Void)))
        }
        _ => None,
    })
    .await;
    let client = Client::connect(server.addr, ClientOptions::default())
        .await
        .unwrap();
    let stmt = client
        .prepare("INSERT INTO t (k) VALUES (?)")
        .await
        .unwrap();
    let result = client
        .batch(
            BatchKind::Unlogged,
            vec![
                BatchEntry::Query {
                    query: "INSERT INTO t (k) VALUES (1)".into(),
                    values: vec![],
                },
                BatchEntry::Prepared {
                    statement: stmt,
                    values: vec![CqlValue::Int(2).into(), Value::Unset],
                },
            ],
            &QueryOptions {
                timestamp: Some(42),
                ..QueryOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(result, QueryResult::Void);
    let batch = seen.lock().unwrap().take();
    match batch {
        Some(Request::Batch {
            batch_type,
            statements,
            timestamp,
            ..
        }) => {
            assert_eq!(batch_type, BatchKind::Unlogged);
            assert_eq!(timestamp, Some(42));
            assert_eq!(
                statements[0].query,
                BatchQuery::Query("INSERT INTO t (k) VALUES (1)".into())
            );
            assert_eq!(
                statements[1].query,
                BatchQuery::Prepared(Bytes::from_static(b"ins"))
            );
            assert_eq!(
                statements[1].values,
                vec![
                    BoundValue::Value(Bytes::from_static(&[0, 0, 0, 2])),
                    BoundValue::Unset
                ]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn set_keyspace_and_schema_change_results() {
    use ringdb_cql::message::{SchemaChange, SchemaChangeTarget, SchemaChangeType};
    let change = SchemaChange {
        change_type: SchemaChangeType::Created,
        target: SchemaChangeTarget::Table,
        keyspace: "ks".into(),
        name: "t".into(),
        args: vec![],
    };
    let c = change.clone();
    let server = FakeServer::start(move |req| match req {
        Request::Query { query, .. } if query.starts_with("CREATE") => Some(Action::Reply(
            Response::Result(ResultBody::SchemaChange(c.clone())),
        )),
        _ => None,
    })
    .await;
    let client = Client::connect(server.addr, ClientOptions::default())
        .await
        .unwrap();
    assert_eq!(client.keyspace(), None);
    let r = client
        .query("USE ks", NO_VALUES, &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(r, QueryResult::SetKeyspace("ks".into()));
    assert_eq!(client.keyspace().as_deref(), Some("ks"));
    let r = client
        .query(
            "CREATE TABLE t (k int PRIMARY KEY)",
            NO_VALUES,
            &QueryOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r, QueryResult::SchemaChange(change));
}

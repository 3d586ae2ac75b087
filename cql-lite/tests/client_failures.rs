//! Timeouts, lost connections, bounded in-flight requests and broken servers: every failure
//! reaches the caller as a clear error, and the connection's bookkeeping stays right.

mod client_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use client_support::{column, error, rows, Action, FakeServer};
use ringdb_cql::client::{
    Client, ClientError, ClientOptions, Credentials, QueryOptions, NO_VALUES,
};
use ringdb_cql::message::{ErrorKind, Request, Response};
use ringdb_cql::types::{CqlType, CqlValue};

fn opts() -> QueryOptions {
    QueryOptions::default()
}

fn with_timeout(ms: u64) -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_millis(ms),
        ..ClientOptions::default()
    }
}

fn text_row(s: &str) -> Response {
    rows(
        vec![column("v", CqlType::Text)],
        vec![vec![Some(CqlValue::Text(s.into()))]],
        None,
    )
}

fn query_text(req: &Request) -> Option<&str> {
    match req {
        Request::Query { query, .. } => Some(query.as_str()),
        _ => None,
    }
}

#[tokio::test]
async fn a_request_without_answer_times_out_and_keeps_its_stream_id() {
    let server = FakeServer::start(|req| match query_text(req)? {
        "SELECT never" => Some(Action::Ignore),
        q => Some(Action::Reply(text_row(q))),
    })
    .await;
    let client = Client::connect(server.addr, with_timeout(100))
        .await
        .unwrap();
    let err = client
        .query("SELECT never", NO_VALUES, &opts())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout(_)), "{err:?}");
    // The id stays taken: an answer may still come for it.
    assert_eq!(client.outstanding_requests(), 1);
    // The connection still works.
    let r = client.query("SELECT ok", NO_VALUES, &opts()).await.unwrap();
    assert_eq!(
        r.into_rows().unwrap().rows[0][0],
        Some(CqlValue::Text("SELECT ok".into()))
    );
}

#[tokio::test]
async fn a_late_answer_frees_its_id_and_reaches_no_one_else() {
    let server = FakeServer::start(|req| match query_text(req)? {
        "SELECT late" => Some(Action::ReplyAfter(
            Duration::from_millis(300),
            text_row("late answer"),
        )),
        q => Some(Action::Reply(text_row(q))),
    })
    .await;
    let client = Client::connect(server.addr, with_timeout(100))
        .await
        .unwrap();
    let err = client
        .query("SELECT late", NO_VALUES, &opts())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout(_)));
    // While the late answer is pending, other requests get other ids and their own answers.
    for i in 0..20 {
        let q = format!("SELECT {i}");
        let r = client.query(&q, NO_VALUES, &opts()).await.unwrap();
        assert_eq!(r.into_rows().unwrap().rows[0][0], Some(CqlValue::Text(q)));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(client.outstanding_requests(), 0);
    let r = client
        .query("SELECT after", NO_VALUES, &opts())
        .await
        .unwrap();
    assert_eq!(
        r.into_rows().unwrap().rows[0][0],
        Some(CqlValue::Text("SELECT after".into()))
    );
}

#[tokio::test]
async fn losing_the_connection_fails_every_pending_request() {
    let server = FakeServer::start(|req| match query_text(req)? {
        "SELECT die" => Some(Action::Close),
        _ => Some(Action::Ignore),
    })
    .await;
    let client = Client::connect(server.addr, with_timeout(10_000))
        .await
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..50 {
        let client = client.clone();
        pending.push(tokio::spawn(async move {
            client
                .query(&format!("SELECT {i}"), NO_VALUES, &opts())
                .await
        }));
    }
    // Let the 50 requests reach the server before killing the connection.
    while server.requests.load(Ordering::SeqCst) < 52 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killer = client.query("SELECT die", NO_VALUES, &opts()).await;
    assert!(
        matches!(killer, Err(ClientError::ConnectionClosed(_))),
        "{killer:?}"
    );
    for p in pending {
        let r = tokio::time::timeout(Duration::from_secs(5), p)
            .await
            .expect("failed promptly")
            .unwrap();
        match r {
            Err(ClientError::ConnectionClosed(reason)) => {
                assert!(reason.contains("closed"), "{reason}")
            }
            other => panic!("expected ConnectionClosed, got {other:?}"),
        }
    }
    assert!(client.closed_reason().is_some());
    let later = client.query("SELECT 1", NO_VALUES, &opts()).await;
    assert!(matches!(later, Err(ClientError::ConnectionClosed(_))));
    assert_eq!(client.outstanding_requests(), 0);
}

#[tokio::test]
async fn in_flight_requests_are_bounded() {
    let server = FakeServer::start(|req| match query_text(req)? {
        q if q.starts_with("SELECT hang") => Some(Action::Ignore),
        q => Some(Action::Reply(text_row(q))),
    })
    .await;
    let options = ClientOptions {
        max_in_flight: 4,
        request_timeout: Duration::from_millis(500),
        ..ClientOptions::default()
    };
    let client = Client::connect(server.addr, options).await.unwrap();
    let before = server.requests.load(Ordering::SeqCst);
    let mut hung = Vec::new();
    for i in 0..4 {
        let client = client.clone();
        hung.push(tokio::spawn(async move {
            client
                .query(&format!("SELECT hang {i}"), NO_VALUES, &opts())
                .await
        }));
    }
    while server.requests.load(Ordering::SeqCst) - before < 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // All four slots are held by unanswered requests: the fifth waits, then times out without
    // ever being sent.
    let fifth = client.query("SELECT fifth", NO_VALUES, &opts()).await;
    assert!(matches!(fifth, Err(ClientError::Timeout(_))), "{fifth:?}");
    assert_eq!(server.requests.load(Ordering::SeqCst) - before, 4);
    for h in hung {
        assert!(matches!(h.await.unwrap(), Err(ClientError::Timeout(_))));
    }
}

#[tokio::test]
async fn server_errors_keep_code_and_details() {
    let server = FakeServer::start(|req| match query_text(req)? {
        "SELECT bad" => Some(Action::Reply(error(ErrorKind::Invalid, "unknown table t"))),
        "SELECT unavailable" => Some(Action::Reply(error(
            ErrorKind::Unavailable {
                consistency: ringdb_cql::message::Consistency::Quorum,
                required: 2,
                alive: 1,
            },
            "Cannot achieve consistency level QUORUM",
        ))),
        _ => None,
    })
    .await;
    let client = Client::connect(server.addr, ClientOptions::default())
        .await
        .unwrap();
    match client.query("SELECT bad", NO_VALUES, &opts()).await {
        Err(ClientError::Server { code, message, .. }) => {
            assert_eq!(code, 0x2200);
            assert_eq!(message, "unknown table t");
        }
        other => panic!("{other:?}"),
    }
    match client.query("SELECT unavailable", NO_VALUES, &opts()).await {
        Err(ClientError::Server { error, .. }) => assert!(matches!(
            error.kind,
            ErrorKind::Unavailable {
                required: 2,
                alive: 1,
                ..
            }
        )),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn connecting_to_nothing_is_a_connect_error() {
    // Bind then drop a listener to get a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = Client::connect(("127.0.0.1", port), ClientOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&port.to_string()));
}

#[tokio::test]
async fn a_server_of_another_protocol_version_is_refused_clearly() {
    // A v3-only server answers OPTIONS with a v3 ERROR frame.
    let server = FakeServer::start(|req| match req {
        Request::Options => {
            let mut frame = ringdb_cql::message::response_frame(
                0,
                &Response::Error(ringdb_cql::message::ErrorBody::protocol(
                    "Invalid or unsupported protocol version (4); supported versions are (3/v3)",
                )),
                &Default::default(),
            );
            frame[0] = 0x83;
            Some(Action::Raw(frame))
        }
        _ => None,
    })
    .await;
    let err = Client::connect(server.addr, ClientOptions::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("protocol version 3"), "{text}");
    assert!(text.contains("supported versions are (3/v3)"), "{text}");
}

#[tokio::test]
async fn an_error_to_startup_fails_connect() {
    let server = FakeServer::start(|req| match req {
        Request::Startup(_) => Some(Action::Reply(error(ErrorKind::Protocol, "no thanks"))),
        _ => None,
    })
    .await;
    let err = Client::connect(server.addr, ClientOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Server { code: 0x000A, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn garbage_from_the_server_closes_the_connection() {
    let server = FakeServer::start(|req| match query_text(req)? {
        // A response header with an opcode v4 does not define.
        "SELECT garbage" => Some(Action::Raw(vec![0x84, 0, 0, 5, 0x77, 0, 0, 0, 0])),
        _ => None,
    })
    .await;
    let client = Client::connect(server.addr, ClientOptions::default())
        .await
        .unwrap();
    let err = client
        .query("SELECT garbage", NO_VALUES, &opts())
        .await
        .unwrap_err();
    match err {
        ClientError::ConnectionClosed(reason) => assert!(reason.contains("malformed"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_oversized_frame_is_refused() {
    let server = FakeServer::start(|req| match query_text(req)? {
        "SELECT big" => Some(Action::Reply(text_row(&"x".repeat(10_000)))),
        _ => None,
    })
    .await;
    let options = ClientOptions {
        max_frame_len: 4096,
        ..ClientOptions::default()
    };
    let client = Client::connect(server.addr, options).await.unwrap();
    let err = client
        .query("SELECT big", NO_VALUES, &opts())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exceeds"), "{err}");
}

#[tokio::test]
async fn authentication_with_sasl_plain() {
    let server = FakeServer::start(|req| match req {
        Request::Startup(_) => Some(Action::Reply(Response::Authenticate(
            "org.apache.cassandra.auth.PasswordAuthenticator".into(),
        ))),
        Request::AuthResponse(Some(token)) if &token[..] == b"\0alice\0secret" => {
            Some(Action::Reply(Response::AuthSuccess(None)))
        }
        Request::AuthResponse(_) => Some(Action::Reply(error(
            ErrorKind::BadCredentials,
            "Provided username alice and/or password are incorrect",
        ))),
        _ => None,
    })
    .await;
    let creds = |password: &str| ClientOptions {
        credentials: Some(Credentials {
            username: "alice".into(),
            password: password.into(),
        }),
        ..ClientOptions::default()
    };
    Client::connect(server.addr, creds("secret")).await.unwrap();
    let wrong = Client::connect(server.addr, creds("guess"))
        .await
        .unwrap_err();
    assert!(
        matches!(wrong, ClientError::Auth(ref m) if m.contains("incorrect")),
        "{wrong:?}"
    );
    let none = Client::connect(server.addr, ClientOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(none, ClientError::Auth(ref m) if m.contains("requires authentication")));
}

#[tokio::test]
async fn dropping_every_handle_closes_the_connection() {
    let server = FakeServer::start(|_| None).await;
    let client = Client::connect(server.addr, ClientOptions::default())
        .await
        .unwrap();
    let clone = client.clone();
    drop(client);
    clone.query("SELECT 1", NO_VALUES, &opts()).await.unwrap();
    drop(clone);
    // The server sees the connection end (nothing to assert on the client side but no hang).
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn a_silent_server_fails_connect_within_the_timeout() {
    let server = FakeServer::start(|_| Some(Action::Ignore)).await;
    let options = ClientOptions {
        connect_timeout: Duration::from_millis(200),
        ..ClientOptions::default()
    };
    let started = std::time::Instant::now();
    let err = Client::connect(server.addr, options).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    match err {
        ClientError::Connect { addr, message } => {
            assert_eq!(addr, server.addr.to_string());
            assert!(message.contains("within"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_oversized_request_is_refused_before_sending() {
    let server = FakeServer::start(|_| None).await;
    let options = ClientOptions {
        max_frame_len: 1024,
        ..ClientOptions::default()
    };
    let client = Client::connect(server.addr, options).await.unwrap();
    let before = server.requests.load(Ordering::SeqCst);
    let big = "x".repeat(2000);
    let err = client.query(&big, NO_VALUES, &opts()).await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidRequest(_)), "{err:?}");
    assert_eq!(server.requests.load(Ordering::SeqCst), before);
    // The stream id was given back.
    assert_eq!(client.outstanding_requests(), 0);
    client.query("SELECT 1", NO_VALUES, &opts()).await.unwrap();
}

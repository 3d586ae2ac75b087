//! The internode transport and the certificate tooling, exercised in-process over loopback
//! (127.0.0.1, port 0). Every wait is bounded.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringdb_gossip::certs::{self, CertError, NodeFiles};
use ringdb_gossip::transport::{
    decode, encode, Channel, DropOldestQueue, Inbound, InboundQueues, TlsFiles, Transport,
    TransportConfig, TransportError,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Bound on any single wait in these tests.
const WAIT: Duration = Duration::from_secs(15);
/// Timeout given to requests that are expected to succeed.
const REQUEST: Duration = Duration::from_secs(5);
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

/// A cluster CA in a temporary directory, able to issue node identities.
struct Ca {
    dir: TempDir,
}

impl Ca {
    fn new() -> Ca {
        let dir = tempfile::tempdir().expect("temp dir");
        certs::create_ca(&dir.path().join("ca"), "test cluster").expect("create CA");
        Ca { dir }
    }

    fn ca_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("ca")
    }

    fn issue(&self, name: &str) -> NodeFiles {
        certs::issue(
            &self.ca_dir(),
            name,
            &[LOCALHOST],
            &["localhost".to_string()],
            &self.dir.path().join(name),
        )
        .expect("issue node certificate")
    }
}

fn config(files: &NodeFiles) -> TransportConfig {
    TransportConfig::new(SocketAddr::new(LOCALHOST, 0), TlsFiles::from(files.clone()))
}

async fn bind(files: &NodeFiles) -> (Transport, InboundQueues) {
    bind_with(files, |_| {}).await
}

async fn bind_with(
    files: &NodeFiles,
    tweak: impl FnOnce(&mut TransportConfig),
) -> (Transport, InboundQueues) {
    let mut config = config(files);
    tweak(&mut config);
    timeout(WAIT, Transport::bind(config))
        .await
        .expect("bind in time")
        .expect("bind")
}

/// Answers every request with `reply:` + body, forwards every one-way message to the returned
/// channel.
fn serve(mut queue: mpsc::Receiver<Inbound>) -> mpsc::UnboundedReceiver<Inbound> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = queue.recv().await {
            if message.expects_response() {
                let mut reply = b"reply:".to_vec();
                reply.extend_from_slice(&message.body);
                message.respond(Bytes::from(reply));
            } else if tx.send(message).is_err() {
                return;
            }
        }
    });
    rx
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Inbound>) -> Inbound {
    timeout(WAIT, rx.recv())
        .await
        .expect("message in time")
        .expect("queue open")
}

/// Retries `request` until it succeeds (the peer may be in back-off), within [`WAIT`].
async fn request_until_ok(from: &Transport, to: SocketAddr, body: &'static [u8]) -> Bytes {
    timeout(WAIT, async {
        loop {
            match from
                .request(to, Channel::Verb, Bytes::from_static(body), REQUEST)
                .await
            {
                Ok(reply) => return reply,
                Err(e) => {
                    tracing::debug!("retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
    .await
    .expect("request succeeds in time")
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    timeout(WAIT, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for: {what}"));
}

// ---------------------------------------------------------------------------------------------
// certificates

#[test]
fn certs_create_and_issue_round_trip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_dir = dir.path().join("ca");
    let ca = certs::create_ca(&ca_dir, "round trip").expect("create CA");
    assert_eq!(ca.cert, ca_dir.join("ca.crt"));
    assert_eq!(ca.key, ca_dir.join("ca.key"));

    let out = dir.path().join("node-1");
    let ips = [LOCALHOST, "::1".parse().expect("ip")];
    let node =
        certs::issue(&ca_dir, "node-1", &ips, &["db1.example.com".into()], &out).expect("issue");
    assert_eq!(node.ca, out.join("ca.crt"));
    assert_eq!(node.cert, out.join("node-1.crt"));
    assert_eq!(node.key, out.join("node-1.key"));
    assert_eq!(
        std::fs::read(&node.ca).expect("read copy"),
        std::fs::read(&ca.cert).expect("read CA"),
        "out/ca.crt is a copy of the CA certificate"
    );
    let certs: Vec<_> = CertificateDer::pem_file_iter(&node.cert)
        .expect("open cert")
        .collect::<Result<_, _>>()
        .expect("parse cert");
    assert_eq!(certs.len(), 1);
    PrivateKeyDer::from_pem_file(&node.key).expect("parse key");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in [&ca.key, &node.key] {
            let mode = std::fs::metadata(key).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} must be private", key.display());
        }
    }

    // Re-issuing replaces the node's files; issuing into the CA directory itself keeps ca.crt.
    let again = certs::issue(&ca_dir, "node-1", &ips, &[], &out).expect("re-issue");
    assert_ne!(std::fs::read(&again.key).expect("key"), Vec::<u8>::new());
    let beside = certs::issue(&ca_dir, "node-2", &ips, &[], &ca_dir).expect("issue into CA dir");
    assert_eq!(beside.ca, ca.cert);
    assert!(std::fs::read_to_string(&ca.cert)
        .expect("CA cert")
        .contains("BEGIN CERTIFICATE"));
}

#[test]
fn certs_refuse_to_overwrite_ca_key_and_bad_names() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_dir = dir.path().join("ca");
    certs::create_ca(&ca_dir, "first").expect("create CA");
    let key_before = std::fs::read(ca_dir.join("ca.key")).expect("key");
    match certs::create_ca(&ca_dir, "second") {
        Err(CertError::AlreadyExists { path }) => assert_eq!(path, ca_dir.join("ca.key")),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let message = certs::create_ca(&ca_dir, "second")
        .expect_err("refused")
        .to_string();
    assert!(
        message.contains("ca.key"),
        "error names the file: {message}"
    );
    assert_eq!(
        std::fs::read(ca_dir.join("ca.key")).expect("key"),
        key_before,
        "key untouched"
    );

    for bad in ["", "ca", "../escape", "a/b", ".hidden", "sp ace"] {
        assert!(
            matches!(
                certs::issue(&ca_dir, bad, &[], &[], dir.path()),
                Err(CertError::InvalidName { .. })
            ),
            "{bad:?} must be refused"
        );
    }
    assert!(matches!(
        certs::issue(&ca_dir, "n", &[], &["not a dns name".into()], dir.path()),
        Err(CertError::InvalidDnsName { .. })
    ));
    // A missing CA is reported with its file name.
    let missing =
        certs::issue(&dir.path().join("nowhere"), "n", &[], &[], dir.path()).expect_err("no CA");
    assert!(missing.to_string().contains("ca.crt"), "{missing}");
    // A CA key that does not belong to ca.crt is caught before anything is written.
    let other = dir.path().join("other");
    certs::create_ca(&other, "other").expect("other CA");
    std::fs::copy(other.join("ca.key"), ca_dir.join("mixed.key")).expect("copy");
    let mixed = dir.path().join("mixed");
    std::fs::create_dir_all(&mixed).expect("dir");
    std::fs::copy(ca_dir.join("ca.crt"), mixed.join("ca.crt")).expect("copy");
    std::fs::copy(other.join("ca.key"), mixed.join("ca.key")).expect("copy");
    let out = dir.path().join("mixed-out");
    assert!(matches!(
        certs::issue(&mixed, "n", &[], &[], &out),
        Err(CertError::Invalid { .. })
    ));
    assert!(!out.join("n.crt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_identity_is_reusable_and_isolated() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let first = certs::create_dev_identity(dir.path(), "solo", &[LOCALHOST]).expect("dev identity");
    let second = certs::create_dev_identity(dir.path(), "solo", &[LOCALHOST]).expect("again");
    assert_eq!(first, second);
    let (solo, _solo_queues) = bind(&second).await;

    // A node of a real cluster cannot talk to it, either way.
    let ca = Ca::new();
    let (member, _member_queues) = bind(&ca.issue("member")).await;
    let result = member
        .request(
            solo.local_addr(),
            Channel::Gossip,
            Bytes::from_static(b"hi"),
            REQUEST,
        )
        .await;
    assert!(
        result.is_err(),
        "dev identity must not be trusted: {result:?}"
    );
    let result = solo
        .request(
            member.local_addr(),
            Channel::Gossip,
            Bytes::from_static(b"hi"),
            REQUEST,
        )
        .await;
    assert!(
        result.is_err(),
        "dev identity must not trust others: {result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_errors_name_the_file() {
    let ca = Ca::new();
    let files = ca.issue("node");
    let other_ca = Ca::new();
    let other = other_ca.issue("stranger");

    let mut missing_key = config(&files);
    missing_key.tls.key = files.key.with_file_name("absent.key");
    match Transport::bind(missing_key).await {
        Err(TransportError::Tls { path, .. }) => assert!(path.ends_with("absent.key")),
        other => panic!("expected a TLS error naming the key, got {other:?}"),
    }

    // A certificate from another CA.
    let mut foreign = config(&files);
    foreign.tls.cert = other.cert.clone();
    foreign.tls.key = other.key.clone();
    match Transport::bind(foreign).await {
        Err(e @ TransportError::Tls { .. }) => {
            let message = e.to_string();
            assert!(message.contains("stranger.crt"), "{message}");
            assert!(
                message.contains("not a valid node certificate"),
                "{message}"
            );
        }
        other => panic!("expected a TLS error naming the cert, got {other:?}"),
    }

    // A key that is not the certificate's.
    let mut mismatched = config(&files);
    mismatched.tls.key = other.key.clone();
    match Transport::bind(mismatched).await {
        Err(e @ TransportError::Tls { .. }) => {
            let message = e.to_string();
            assert!(message.contains("stranger.key"), "{message}");
            assert!(
                message.contains("cannot be used with the certificate"),
                "{message}"
            );
        }
        other => panic!("expected a TLS error naming the key, got {other:?}"),
    }

    // Not PEM at all.
    let garbage = files.cert.with_file_name("garbage.crt");
    std::fs::write(&garbage, b"hello").expect("write");
    let mut not_pem = config(&files);
    not_pem.tls.ca = garbage;
    match Transport::bind(not_pem).await {
        Err(e @ TransportError::Tls { .. }) => {
            let message = e.to_string();
            assert!(message.contains("garbage.crt"), "{message}");
            assert!(message.contains("no CERTIFICATE"), "{message}");
        }
        other => panic!("expected a TLS error naming the CA file, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// the happy paths

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_one_way_messages_flow_both_ways() {
    init_tracing();
    let ca = Ca::new();
    let (a, a_queues) = bind(&ca.issue("a")).await;
    let (b, b_queues) = bind(&ca.issue("b")).await;
    assert_ne!(a.local_addr().port(), 0, "the real port is reported");
    let mut a_gossip = serve(a_queues.gossip);
    let mut a_verbs = serve(a_queues.verbs);
    let mut b_gossip = serve(b_queues.gossip);
    let mut b_verbs = serve(b_queues.verbs);

    let reply = a
        .request(
            b.local_addr(),
            Channel::Verb,
            Bytes::from_static(b"ping"),
            REQUEST,
        )
        .await;
    assert_eq!(reply.expect("a → b"), Bytes::from_static(b"reply:ping"));
    let reply = b
        .request(
            a.local_addr(),
            Channel::Gossip,
            Bytes::from_static(b"pong"),
            REQUEST,
        )
        .await;
    assert_eq!(reply.expect("b → a"), Bytes::from_static(b"reply:pong"));

    // One-way, with typed bodies; `from` is the sender's listen address; channels are kept apart.
    let syn = encode(&(7u64, "syn".to_string())).expect("encode");
    a.send(b.local_addr(), Channel::Gossip, syn.clone());
    let got = next(&mut b_gossip).await;
    assert_eq!(got.from, a.local_addr());
    assert_eq!(got.channel, Channel::Gossip);
    assert!(!got.expects_response());
    assert_eq!(
        decode::<(u64, String)>(&got.body).expect("decode"),
        (7, "syn".to_string())
    );

    b.send(a.local_addr(), Channel::Verb, Bytes::from_static(b"verb"));
    let got = next(&mut a_verbs).await;
    assert_eq!(got.from, b.local_addr());
    assert_eq!(got.channel, Channel::Verb);
    assert_eq!(got.body, Bytes::from_static(b"verb"));

    // Empty bodies are fine.
    a.try_send(b.local_addr(), Channel::Verb, Bytes::new())
        .expect("queued");
    assert!(next(&mut b_verbs).await.body.is_empty());
    assert!(
        a_gossip.try_recv().is_err(),
        "nothing stray on a's gossip queue"
    );

    let stats = a.stats();
    assert!(
        stats.messages_sent >= 3 && stats.messages_received >= 2,
        "{stats:?}"
    );
    assert_eq!(
        stats.connections_dialed, 1,
        "one connection carries everything: {stats:?}"
    );
    assert_eq!(stats.handshakes_refused, 0);

    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests() {
    init_tracing();
    let ca = Ca::new();
    let (a, _a_queues) = bind(&ca.issue("a")).await;
    let (b, b_queues) = bind(&ca.issue("b")).await;
    let _b = serve(b_queues.verbs);
    let to = b.local_addr();
    let requests = (0..500u32).map(|i| {
        let a = a.clone();
        async move {
            let body = encode(&i).expect("encode");
            let reply = a
                .request(to, Channel::Verb, body.clone(), WAIT)
                .await
                .expect("request");
            assert_eq!(&reply[..6], b"reply:");
            assert_eq!(decode::<u32>(&reply[6..]).expect("decode"), i);
        }
    });
    timeout(WAIT, futures::future::join_all(requests))
        .await
        .expect("all answered in time");
    assert!(b.stats().messages_received >= 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_and_overloaded_requests_fail_cleanly() {
    init_tracing();
    let ca = Ca::new();
    let (a, _a_queues) = bind(&ca.issue("a")).await;
    let (b, mut b_queues) = bind_with(&ca.issue("b"), |c| c.inbound_queue_len = 1).await;
    let to = b.local_addr();

    // The handler drops the request: the requester learns it at once.
    let dropper = tokio::spawn(async move {
        let message = b_queues.verbs.recv().await.expect("request");
        drop(message);
        b_queues
    });
    let result = a
        .request(to, Channel::Verb, Bytes::from_static(b"x"), REQUEST)
        .await;
    assert!(
        matches!(result, Err(TransportError::NoResponse { .. })),
        "{result:?}"
    );
    let b_queues = timeout(WAIT, dropper)
        .await
        .expect("in time")
        .expect("task");

    // Nobody reads: the first request fills the queue of one, the next is refused as overloaded.
    let first = a.request(
        to,
        Channel::Gossip,
        Bytes::from_static(b"1"),
        Duration::from_millis(300),
    );
    let second = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        a.request(to, Channel::Gossip, Bytes::from_static(b"2"), REQUEST)
            .await
    };
    let (first, second) = tokio::join!(first, second);
    assert!(
        matches!(first, Err(TransportError::Timeout { .. })),
        "{first:?}"
    );
    assert!(
        matches!(second, Err(TransportError::Overloaded { .. })),
        "{second:?}"
    );
    assert_eq!(b.stats().requests_overloaded, 1);

    // One-way messages beyond the queue are dropped and counted.
    for _ in 0..5 {
        a.send(to, Channel::Verb, Bytes::from_static(b"w"));
    }
    eventually("inbound drops counted", || {
        b.stats().dropped_inbound_full >= 4
    })
    .await;
    drop(b_queues);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_limit_fails_fast() {
    init_tracing();
    let ca = Ca::new();
    let (a, _a_queues) = bind_with(&ca.issue("a"), |c| c.max_requests_in_flight = 2).await;
    let (b, _b_queues) = bind(&ca.issue("b")).await; // never answers: nobody reads its queues
    let to = b.local_addr();
    let slow = |body: &'static [u8]| {
        a.request(
            to,
            Channel::Verb,
            Bytes::from_static(body),
            Duration::from_millis(800),
        )
    };
    let third = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        a.request(to, Channel::Verb, Bytes::from_static(b"3"), REQUEST)
            .await
    };
    let (r1, r2, r3) = tokio::join!(slow(b"1"), slow(b"2"), third);
    assert!(matches!(r1, Err(TransportError::Timeout { .. })), "{r1:?}");
    assert!(matches!(r2, Err(TransportError::Timeout { .. })), "{r2:?}");
    assert!(
        matches!(r3, Err(TransportError::InFlightLimit { limit: 2, .. })),
        "{r3:?}"
    );
    assert_eq!(a.stats().requests_refused_in_flight, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_bytes_limit_fails_fast_and_frees_with_the_requests() {
    init_tracing();
    let ca = Ca::new();
    let (a, _a_queues) = bind_with(&ca.issue("a"), |c| {
        c.max_message_bytes = 1000;
        c.max_request_bytes_in_flight = 1000;
    })
    .await;
    let (b, _b_queues) = bind(&ca.issue("b")).await; // never answers: nobody reads its queues
    let to = b.local_addr();
    let request = |len: usize, wait: Duration| {
        let body = Bytes::from(vec![7u8; len]);
        a.request(to, Channel::Verb, body, wait)
    };
    // 600 + 300 bytes are held while b is silent; 200 more do not fit, 100 do.
    let late = |len: usize| async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        request(len, Duration::from_millis(300)).await
    };
    let (r1, r2, r3, r4) = tokio::join!(
        request(600, Duration::from_millis(800)),
        request(300, Duration::from_millis(800)),
        late(200),
        late(100),
    );
    assert!(matches!(r1, Err(TransportError::Timeout { .. })), "{r1:?}");
    assert!(matches!(r2, Err(TransportError::Timeout { .. })), "{r2:?}");
    assert!(
        matches!(
            r3,
            Err(TransportError::InFlightBytesLimit { limit: 1000, .. })
        ),
        "{r3:?}"
    );
    assert!(matches!(r4, Err(TransportError::Timeout { .. })), "{r4:?}");
    assert_eq!(a.stats().requests_refused_in_flight, 1);
    // Once they timed out, their bytes are free again: a full-size request is sent (and times
    // out, b still being silent) rather than refused.
    let r5 = request(1000, Duration::from_millis(200)).await;
    assert!(matches!(r5, Err(TransportError::Timeout { .. })), "{r5:?}");
}

#[tokio::test]
async fn a_byte_budget_below_the_message_size_is_refused() {
    let ca = Ca::new();
    let mut config = config(&ca.issue("a"));
    config.max_request_bytes_in_flight = config.max_message_bytes - 1;
    let err = Transport::bind(config).await.unwrap_err();
    assert!(
        err.to_string().contains("max_request_bytes_in_flight"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// refusals

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_from_another_ca_is_refused_both_ways() {
    init_tracing();
    let ca = Ca::new();
    let (victim, victim_queues) = bind(&ca.issue("victim")).await;
    let mut victim_gossip = serve(victim_queues.gossip);
    let _victim_verbs = serve(victim_queues.verbs);
    let rogue_ca = Ca::new();
    let (rogue, rogue_queues) = bind(&rogue_ca.issue("rogue")).await;
    let _rogue_verbs = serve(rogue_queues.verbs);

    // The rogue dials the victim: refused by the victim's client-certificate check.
    let result = rogue
        .request(
            victim.local_addr(),
            Channel::Verb,
            Bytes::from_static(b"let me in"),
            REQUEST,
        )
        .await;
    assert!(
        matches!(
            result,
            Err(TransportError::Handshake { .. }
                | TransportError::ConnectionLost { .. }
                | TransportError::Unreachable { .. })
        ),
        "{result:?}"
    );
    rogue.send(
        victim.local_addr(),
        Channel::Gossip,
        Bytes::from_static(b"poison"),
    );
    eventually("victim counts the refused handshake", || {
        victim.stats().handshakes_refused >= 1
    })
    .await;

    // The victim dials the rogue: the victim refuses the rogue's server certificate.
    let result = victim
        .request(
            rogue.local_addr(),
            Channel::Verb,
            Bytes::from_static(b"hello?"),
            REQUEST,
        )
        .await;
    assert!(
        matches!(result, Err(TransportError::Handshake { .. })),
        "{result:?}"
    );
    assert!(victim.stats().connect_failures >= 1);
    // …and while the rogue is in back-off, requests fail fast.
    let result = victim
        .request(
            rogue.local_addr(),
            Channel::Verb,
            Bytes::from_static(b"again"),
            REQUEST,
        )
        .await;
    assert!(result.is_err());

    // A client that trusts the cluster CA but presents a certificate of another CA is refused
    // by the victim's own client-certificate check.
    let refused_before = victim.stats().handshakes_refused;
    let other_ca = Ca::new();
    let stranger = other_ca.issue("stranger");
    let client = quinn::Endpoint::client(SocketAddr::new(LOCALHOST, 0)).expect("client endpoint");
    let connecting = client
        .connect_with(
            raw_client_config(&ca.issue("unused").ca, Some(&stranger)),
            victim.local_addr(),
            "localhost",
        )
        .expect("connect");
    if let Ok(Ok(connection)) = timeout(WAIT, connecting).await {
        if let Ok(mut send) = connection.open_uni().await {
            let _ = send.write_all(&[0, 0, 0, 5, 0, 0, b'b', b'a', b'd']).await;
            let _ = send.finish();
        }
        let reason = timeout(WAIT, connection.closed())
            .await
            .expect("closed in time");
        tracing::info!("stranger's connection closed: {reason}");
    }
    eventually("victim refuses the stranger", || {
        victim.stats().handshakes_refused > refused_before
    })
    .await;

    // Nothing from the rogue was ever delivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(victim_gossip.try_recv().is_err(), "rogue message delivered");
    assert_eq!(victim.stats().messages_received, 0);
    assert_eq!(victim.stats().connections_accepted, 0);
}

/// rustls client configuration for raw quinn clients: trusts `ca`, presents `identity` if any.
fn raw_client_config(ca: &Path, identity: Option<&NodeFiles>) -> quinn::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(cert.expect("ca cert")).expect("root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(files) => {
            let chain = CertificateDer::pem_file_iter(&files.cert)
                .expect("cert")
                .collect::<Result<Vec<_>, _>>()
                .expect("cert");
            let key = PrivateKeyDer::from_pem_file(&files.key).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
    };
    config.alpn_protocols = vec![ringdb_gossip::transport::ALPN.to_vec()];
    quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(config).expect("quic client config"),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_without_client_certificate_is_refused() {
    init_tracing();
    let ca = Ca::new();
    let files = ca.issue("victim");
    let (victim, victim_queues) = bind(&files).await;
    let mut victim_gossip = serve(victim_queues.gossip);

    let client = quinn::Endpoint::client(SocketAddr::new(LOCALHOST, 0)).expect("client endpoint");
    let connecting = client
        .connect_with(
            raw_client_config(&files.ca, None),
            victim.local_addr(),
            "localhost",
        )
        .expect("connect");
    // The client may believe the handshake done before the server checks its (absent)
    // certificate; either way the connection must die without delivering anything.
    if let Ok(Ok(connection)) = timeout(WAIT, connecting).await {
        if let Ok(mut send) = connection.open_uni().await {
            let frame = [0, 0, 0, 5, 0, 0, b'e', b'v', b'e'];
            let _ = send.write_all(&frame).await;
            let _ = send.finish();
        }
        let reason = timeout(WAIT, connection.closed())
            .await
            .expect("closed in time");
        tracing::info!("raw client connection closed: {reason}");
    }
    eventually("refusal counted", || victim.stats().handshakes_refused >= 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        victim_gossip.try_recv().is_err(),
        "message from an unauthenticated client delivered"
    );
    assert_eq!(victim.stats().connections_accepted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused() {
    init_tracing();
    let ca = Ca::new();
    let (a, a_queues) = bind(&ca.issue("a")).await;
    let _a_verbs = serve(a_queues.verbs);
    let (b, b_queues) = bind_with(&ca.issue("b"), |c| c.max_message_bytes = 64 * 1024).await;
    let mut b_gossip = serve(b_queues.gossip);
    let _b_verbs = serve(b_queues.verbs);
    let to = b.local_addr();

    // Over the sender's own limit: refused locally, nothing sent.
    let huge = Bytes::from(vec![0u8; 16 * 1024 * 1024 + 1]);
    let result = a.request(to, Channel::Verb, huge.clone(), REQUEST).await;
    assert!(
        matches!(result, Err(TransportError::TooLarge { .. })),
        "{result:?}"
    );
    assert!(matches!(
        a.try_send(to, Channel::Gossip, huge),
        Err(TransportError::TooLarge { .. })
    ));

    // Within the sender's limit but over the receiver's: refused by the receiver.
    let big = Bytes::from(vec![1u8; 100 * 1024]);
    let result = a.request(to, Channel::Verb, big.clone(), REQUEST).await;
    assert!(
        matches!(result, Err(TransportError::RefusedTooLarge { .. })),
        "{result:?}"
    );
    a.send(to, Channel::Gossip, big);
    a.send(to, Channel::Gossip, Bytes::from_static(b"small"));
    let got = next(&mut b_gossip).await;
    assert_eq!(
        got.body,
        Bytes::from_static(b"small"),
        "only the small message arrives"
    );
    eventually("receiver counts both refusals", || {
        b.stats().refused_too_large >= 2
    })
    .await;

    // A response over the receiver's limit is an error, not a hang.
    // (b's request fits its 64 KiB limit; a's reply, six bytes longer, does not.)
    let reply = b
        .request(
            a.local_addr(),
            Channel::Verb,
            Bytes::from(vec![2u8; 64 * 1024 - 1]),
            REQUEST,
        )
        .await;
    assert!(
        matches!(reply, Err(TransportError::Protocol { .. })),
        "{reply:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// queues, reconnection, partitions

#[test]
fn peer_queue_drops_the_oldest() {
    let mut queue = DropOldestQueue::new(3);
    assert_eq!(queue.capacity(), 3);
    assert!(queue.is_empty());
    assert_eq!(queue.push(1), None);
    assert_eq!(queue.push(2), None);
    assert_eq!(queue.push(3), None);
    assert_eq!(queue.push(4), Some(1), "full: the oldest goes");
    assert_eq!(queue.push(5), Some(2));
    assert_eq!(queue.len(), 3);
    // A message put back after a failed write is the oldest of all: kept if there is room,
    // itself dropped if not.
    assert_eq!(queue.push_front(0), Some(0));
    assert_eq!(queue.pop(), Some(3));
    assert_eq!(queue.push_front(3), None);
    assert_eq!(
        std::iter::from_fn(|| queue.pop()).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(DropOldestQueue::<u8>::new(0).capacity(), 1, "never zero");
    let mut queue = DropOldestQueue::new(2);
    queue.push('a');
    queue.push('b');
    assert_eq!(queue.clear(), 2);
    assert!(queue.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_messages_to_an_unreachable_peer_are_bounded() {
    init_tracing();
    let ca = Ca::new();
    let (a, _a_queues) = bind_with(&ca.issue("a"), |c| {
        c.peer_queue_len = 4;
        c.connect_timeout = Duration::from_millis(300);
        c.backoff_initial = Duration::from_secs(5);
        c.backoff_max = Duration::from_secs(5);
    })
    .await;
    // A port where nobody listens.
    let nobody = std::net::UdpSocket::bind((LOCALHOST, 0)).expect("socket");
    let to = nobody.local_addr().expect("addr");
    drop(nobody);

    for i in 0..10u8 {
        a.send(to, Channel::Gossip, Bytes::from(vec![i]));
    }
    // The writer holds one message while dialing; the queue holds four; the rest were dropped.
    assert!(a.stats().dropped_queue_full >= 5, "{:?}", a.stats());
    eventually("the dial fails", || a.stats().connect_failures >= 1).await;

    // While in back-off, requests fail fast.
    let mut unreachable = false;
    for _ in 0..4 {
        let started = tokio::time::Instant::now();
        match a
            .request(to, Channel::Verb, Bytes::from_static(b"?"), REQUEST)
            .await
        {
            Err(TransportError::Unreachable { .. }) => {
                assert!(started.elapsed() < Duration::from_millis(100));
                unreachable = true;
                break;
            }
            Err(TransportError::Connect { .. }) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(unreachable, "back-off makes requests fail fast");
    timeout(WAIT, a.shutdown())
        .await
        .expect("shutdown is bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_queued_messages() {
    init_tracing();
    let ca = Ca::new();
    let (a, _a_queues) = bind(&ca.issue("a")).await;
    let (b, b_queues) = bind(&ca.issue("b")).await;
    let mut b_gossip = serve(b_queues.gossip);
    for i in 0..200u32 {
        a.send(b.local_addr(), Channel::Gossip, encode(&i).expect("encode"));
    }
    let started = tokio::time::Instant::now();
    a.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown is bounded"
    );
    let mut received = std::collections::HashSet::new();
    while received.len() < 200 {
        let message = next(&mut b_gossip).await;
        received.insert(decode::<u32>(&message.body).expect("decode"));
    }
    assert!(matches!(
        a.try_send(b.local_addr(), Channel::Gossip, Bytes::new()),
        Err(TransportError::ShutDown)
    ));
    assert!(matches!(
        a.request(b.local_addr(), Channel::Gossip, Bytes::new(), REQUEST)
            .await,
        Err(TransportError::ShutDown)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_peer_restarts_on_the_same_port() {
    init_tracing();
    let ca = Ca::new();
    let (a, a_queues) = bind(&ca.issue("a")).await;
    let _a_verbs = serve(a_queues.verbs);
    let b_files = ca.issue("b");
    let (b, b_queues) = bind(&b_files).await;
    let _b_verbs = serve(b_queues.verbs);
    let b_addr = b.local_addr();
    assert_eq!(
        request_until_ok(&a, b_addr, b"before").await,
        Bytes::from_static(b"reply:before")
    );
    assert_eq!(
        request_until_ok(&b, a.local_addr(), b"b-before").await,
        Bytes::from_static(b"reply:b-before")
    );

    b.shutdown().await;
    drop(b);
    let down = a
        .request(
            b_addr,
            Channel::Verb,
            Bytes::from_static(b"down"),
            Duration::from_millis(500),
        )
        .await;
    assert!(down.is_err(), "{down:?}");

    // Re-bind on the same port (the old socket may take a moment to be released).
    let (b, b_queues) = timeout(WAIT, async {
        loop {
            let mut config = config(&b_files);
            config.listen = b_addr;
            match Transport::bind(config).await {
                Ok(bound) => return bound,
                Err(e) => {
                    tracing::debug!("re-bind: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
    .await
    .expect("re-bind in time");
    let mut b_verbs = serve(b_queues.verbs);
    assert_eq!(
        request_until_ok(&a, b_addr, b"after").await,
        Bytes::from_static(b"reply:after")
    );
    assert_eq!(
        request_until_ok(&b, a.local_addr(), b"b-after").await,
        Bytes::from_static(b"reply:b-after")
    );
    a.send(b_addr, Channel::Verb, Bytes::from_static(b"one-way after"));
    assert_eq!(
        next(&mut b_verbs).await.body,
        Bytes::from_static(b"one-way after")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_peer_stops_traffic_and_unblock_restores_it() {
    init_tracing();
    let ca = Ca::new();
    let fast = |c: &mut TransportConfig| {
        c.connect_timeout = Duration::from_millis(500);
        c.backoff_max = Duration::from_millis(500);
    };
    let (a, a_queues) = bind_with(&ca.issue("a"), fast).await;
    let (b, b_queues) = bind_with(&ca.issue("b"), fast).await;
    let mut a_gossip = serve(a_queues.gossip);
    let _a_verbs = serve(a_queues.verbs);
    let mut b_gossip = serve(b_queues.gossip);
    let _b_verbs = serve(b_queues.verbs);
    request_until_ok(&a, b.local_addr(), b"warm").await;
    request_until_ok(&b, a.local_addr(), b"warm").await;

    // Every node here is 127.0.0.1: a blocks b's address (and so everything local).
    a.block_peer(b.local_addr().ip());
    assert_eq!(a.blocked_peers(), vec![b.local_addr().ip()]);
    let result = a
        .request(
            b.local_addr(),
            Channel::Verb,
            Bytes::from_static(b"x"),
            REQUEST,
        )
        .await;
    assert!(
        matches!(result, Err(TransportError::Blocked { .. })),
        "{result:?}"
    );
    assert!(matches!(
        a.try_send(b.local_addr(), Channel::Gossip, Bytes::from_static(b"x")),
        Err(TransportError::Blocked { .. })
    ));
    // b → a: a ignores b's handshakes, so b's requests fail and its messages never arrive.
    let result = b
        .request(
            a.local_addr(),
            Channel::Verb,
            Bytes::from_static(b"y"),
            Duration::from_secs(1),
        )
        .await;
    assert!(result.is_err(), "{result:?}");
    b.send(
        a.local_addr(),
        Channel::Gossip,
        Bytes::from_static(b"during partition"),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        a_gossip.try_recv().is_err(),
        "message crossed the partition"
    );

    a.unblock_peer(b.local_addr().ip());
    assert!(a.blocked_peers().is_empty());
    assert_eq!(
        request_until_ok(&a, b.local_addr(), b"healed").await,
        Bytes::from_static(b"reply:healed")
    );
    assert_eq!(
        request_until_ok(&b, a.local_addr(), b"healed").await,
        Bytes::from_static(b"reply:healed")
    );
    a.send(
        b.local_addr(),
        Channel::Gossip,
        Bytes::from_static(b"after"),
    );
    assert_eq!(next(&mut b_gossip).await.body, Bytes::from_static(b"after"));
    b.send(
        a.local_addr(),
        Channel::Gossip,
        Bytes::from_static(b"after too"),
    );
    // The message sent during the partition may still arrive (it waited in b's queue): gossip is
    // idempotent; what matters is that "after too" arrives.
    timeout(WAIT, async {
        loop {
            if next(&mut a_gossip).await.body == Bytes::from_static(b"after too") {
                return;
            }
        }
    })
    .await
    .expect("b → a restored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_delay_holds_what_arrives_from_the_peer() {
    init_tracing();
    let ca = Ca::new();
    let (a, a_queues) = bind(&ca.issue("a")).await;
    let (b, b_queues) = bind(&ca.issue("b")).await;
    let _a_gossip = serve(a_queues.gossip);
    let _a_verbs = serve(a_queues.verbs);
    let mut b_gossip = serve(b_queues.gossip);
    let _b_verbs = serve(b_queues.verbs);
    request_until_ok(&a, b.local_addr(), b"warm").await;
    let delay = Duration::from_millis(300);

    // a delays what comes from b (every node here is 127.0.0.1): the answer to a's request
    // waits on arrival.
    a.set_peer_delay(b.local_addr().ip(), Some(delay));
    assert_eq!(a.peer_delays(), vec![(b.local_addr().ip(), delay)]);
    let started = tokio::time::Instant::now();
    let answer = a
        .request(
            b.local_addr(),
            Channel::Verb,
            Bytes::from_static(b"slow"),
            REQUEST,
        )
        .await
        .expect("answer");
    assert_eq!(answer, Bytes::from_static(b"reply:slow"));
    assert!(
        started.elapsed() >= delay,
        "answer not held: {:?}",
        started.elapsed()
    );

    // b delays what comes from a: a one-way message is delivered only after the delay.
    b.set_peer_delay(a.local_addr().ip(), Some(delay));
    let started = tokio::time::Instant::now();
    a.send(b.local_addr(), Channel::Gossip, Bytes::from_static(b"late"));
    assert_eq!(next(&mut b_gossip).await.body, Bytes::from_static(b"late"));
    assert!(
        started.elapsed() >= delay,
        "message not held: {:?}",
        started.elapsed()
    );

    a.set_peer_delay(b.local_addr().ip(), None);
    b.set_peer_delay(a.local_addr().ip(), Some(Duration::ZERO));
    assert!(a.peer_delays().is_empty() && b.peer_delays().is_empty());
    assert_eq!(
        request_until_ok(&a, b.local_addr(), b"fast").await,
        Bytes::from_static(b"reply:fast")
    );
}

// ---------------------------------------------------------------------------------------------
// hostile input

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_streams_never_panics() {
    init_tracing();
    let ca = Ca::new();
    let files = ca.issue("victim");
    let (victim, victim_queues) = bind(&files).await;
    let mut victim_gossip = serve(victim_queues.gossip);
    let _victim_verbs = serve(victim_queues.verbs);
    let intruder = ca.issue("intruder");

    let client = quinn::Endpoint::client(SocketAddr::new(LOCALHOST, 0)).expect("client endpoint");
    let connection = timeout(
        WAIT,
        client
            .connect_with(
                raw_client_config(&files.ca, Some(&intruder)),
                victim.local_addr(),
                "localhost",
            )
            .expect("connect"),
    )
    .await
    .expect("handshake in time")
    .expect("authenticated connection");

    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut junk = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    let mut payloads: Vec<Vec<u8>> = (0..20).map(|i| junk(i * 37)).collect();
    payloads.push(vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3]); // absurd length
    payloads.push(vec![0, 0, 0, 3, 9, 9, 9]); // bad header
    payloads.push(vec![0, 0, 0, 100, 0, 0, 1, 2]); // ends early
    payloads.push(vec![0, 0, 0, 0]); // empty frame
    payloads.push(vec![0, 0]); // not even a length
    payloads.push(vec![0, 0, 0, 3, 2, b'o', b'k']); // a response where a message belongs
    payloads.push(vec![0, 0, 0, 2, 0, 7]); // unknown channel

    for payload in &payloads {
        let mut send = connection.open_uni().await.expect("uni stream");
        let _ = send.write_all(payload).await;
        let _ = send.finish();
    }
    for payload in &payloads {
        let (mut send, mut recv) = connection.open_bi().await.expect("bi stream");
        let _ = send.write_all(payload).await;
        let _ = send.finish();
        // Whatever comes back (an error frame, a reset), it comes back in time.
        let answer = timeout(WAIT, recv.read_to_end(1024))
            .await
            .expect("answered in time");
        tracing::debug!("answer to garbage: {answer:?}");
    }

    // A well-formed frame on the same raw connection is delivered, from the raw client's address.
    let mut send = connection.open_uni().await.expect("uni stream");
    send.write_all(&[0, 0, 0, 5, 0, 0, b'r', b'a', b'w'])
        .await
        .expect("write");
    send.finish().expect("finish");
    let got = next(&mut victim_gossip).await;
    assert_eq!(got.body, Bytes::from_static(b"raw"));
    assert_eq!(got.from, client.local_addr().expect("client addr"));

    // …and a well-formed request is answered.
    let (mut send, mut recv) = connection.open_bi().await.expect("bi stream");
    send.write_all(&[0, 0, 0, 4, 1, 1, b'h', b'i'])
        .await
        .expect("write");
    send.finish().expect("finish");
    let answer = timeout(WAIT, recv.read_to_end(1024))
        .await
        .expect("in time")
        .expect("answer");
    assert_eq!(answer, [&[0, 0, 0, 9, 2][..], b"reply:hi"].concat());

    let stats = victim.stats();
    assert!(stats.malformed_frames >= 10, "{stats:?}");
    assert!(stats.refused_too_large >= 2, "{stats:?}");

    // The victim still serves proper nodes.
    let (peer, _peer_queues) = bind(&ca.issue("peer")).await;
    assert_eq!(
        request_until_ok(&peer, victim.local_addr(), b"ok?").await,
        Bytes::from_static(b"reply:ok?")
    );
}

// ---------------------------------------------------------------------------------------------
// replacing the certificates of a running transport

/// The certificate chain a fresh handshake with `server` shows, as a raw client trusting `ca`
/// and presenting `identity` sees it.
async fn presented_certificate(
    server: SocketAddr,
    ca: &Path,
    identity: &NodeFiles,
) -> Vec<CertificateDer<'static>> {
    let client = quinn::Endpoint::client(SocketAddr::new(LOCALHOST, 0)).expect("client endpoint");
    let connection = timeout(
        WAIT,
        client
            .connect_with(raw_client_config(ca, Some(identity)), server, "localhost")
            .expect("connect"),
    )
    .await
    .expect("handshake in time")
    .expect("handshake");
    let chain = connection
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .expect("the server's certificate chain");
    connection.close(0u32.into(), b"seen");
    *chain
}

fn fingerprint(der: &CertificateDer<'_>) -> String {
    certs::CertInfo::from_der(der).expect("parse").sha256
}

/// Overwrites `target`'s certificate and key with `source`'s (as an operator copying new files
/// in place would).
fn copy_identity(source: &NodeFiles, target: &NodeFiles) {
    std::fs::copy(&source.cert, &target.cert).expect("copy cert");
    std::fs::copy(&source.key, &target.key).expect("copy key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_makes_new_handshakes_present_the_new_certificate() {
    init_tracing();
    let ca = Ca::new();
    let a_files = ca.issue("a");
    let (a, a_queues) = bind(&a_files).await;
    let _a_verbs = serve(a_queues.verbs);
    let (b, b_queues) = bind(&ca.issue("b")).await;
    let _b_verbs = serve(b_queues.verbs);
    let client = ca.issue("client");

    let old = a.tls_certificate();
    assert_eq!(
        old,
        certs::CertInfo::from_pem_file(&a_files.cert).expect("old file")
    );
    request_until_ok(&b, a.local_addr(), b"before").await;
    let seen = presented_certificate(a.local_addr(), &a_files.ca, &client).await;
    assert_eq!(fingerprint(&seen[0]), old.sha256);

    // Re-issued in place by the same CA (what `ringdb certs issue` does), then reloaded.
    ca.issue("a");
    let new = a.reload_tls().expect("reload");
    assert_ne!(new.sha256, old.sha256);
    assert_eq!(
        new,
        certs::CertInfo::from_pem_file(&a_files.cert).expect("new file")
    );
    assert_eq!(a.tls_certificate(), new);
    let seen = presented_certificate(a.local_addr(), &a_files.ca, &client).await;
    assert_eq!(
        fingerprint(&seen[0]),
        new.sha256,
        "a new handshake shows the new certificate"
    );

    // The connection b dialed before the reload goes on; a newcomer gets in both ways.
    request_until_ok(&b, a.local_addr(), b"after").await;
    let (c, c_queues) = bind(&ca.issue("c")).await;
    let _c_verbs = serve(c_queues.verbs);
    request_until_ok(&c, a.local_addr(), b"c to a").await;
    request_until_ok(&a, c.local_addr(), b"a to c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reload_keeps_the_identity_in_use() {
    init_tracing();
    let ca = Ca::new();
    let a_files = ca.issue("a");
    let (a, a_queues) = bind(&a_files).await;
    let _a_verbs = serve(a_queues.verbs);
    let client = ca.issue("client");
    let in_use = a.tls_certificate();
    let original_cert = std::fs::read(&a_files.cert).expect("read cert");
    let original_key = std::fs::read(&a_files.key).expect("read key");
    let restore = || {
        std::fs::write(&a_files.cert, &original_cert).expect("restore cert");
        std::fs::write(&a_files.key, &original_key).expect("restore key");
    };
    let other_node = ca.issue("other");
    let stranger_ca = Ca::new();
    let stranger = stranger_ca.issue("a");

    // What goes wrong, how, which file the error must name, and what it must say.
    type Breakage<'a> = (&'a str, Box<dyn Fn() + 'a>, &'a Path, &'a str);
    let mut cases: Vec<Breakage> = Vec::new();
    cases.push((
        "the key of another certificate",
        Box::new(|| {
            std::fs::copy(&other_node.key, &a_files.key).expect("copy");
        }),
        a_files.key.as_path(),
        "cannot be used with the certificate",
    ));
    cases.push((
        "a certificate and key from another CA",
        Box::new(|| copy_identity(&stranger, &a_files)),
        a_files.cert.as_path(),
        "not a valid node certificate",
    ));
    cases.push((
        "a missing key file",
        Box::new(|| std::fs::remove_file(&a_files.key).expect("remove")),
        a_files.key.as_path(),
        "cannot read the file",
    ));
    cases.push((
        "a certificate file cut short",
        Box::new(|| {
            std::fs::write(&a_files.cert, &original_cert[..original_cert.len() / 2])
                .expect("truncate")
        }),
        a_files.cert.as_path(),
        "",
    ));
    for (what, break_it, at, says) in cases {
        break_it();
        match a.reload_tls() {
            Err(TransportError::Tls { path, reason }) => {
                assert_eq!(path.as_path(), at, "{what}: {reason}");
                assert!(reason.contains(says), "{what}: {reason}");
            }
            other => panic!("{what}: expected a TLS error, got {other:?}"),
        }
        assert_eq!(a.tls_certificate(), in_use, "{what}: the identity changed");
        let seen = presented_certificate(a.local_addr(), &a_files.ca, &client).await;
        assert_eq!(fingerprint(&seen[0]), in_use.sha256, "{what}");
        let (peer, peer_queues) = bind(&ca.issue("peer")).await;
        let _peer_verbs = serve(peer_queues.verbs);
        request_until_ok(&peer, a.local_addr(), b"still in?").await;
        request_until_ok(&a, peer.local_addr(), b"still out?").await;
        restore();
    }
    assert_eq!(a.reload_tls().expect("restored files reload"), in_use);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_rotation_through_a_bundle_works_across_reloaded_and_unreloaded_nodes() {
    init_tracing();
    let old_ca = Ca::new();
    let new_ca = Ca::new();
    let bundle = [
        std::fs::read(old_ca.ca_dir().join("ca.crt")).expect("old CA"),
        std::fs::read(new_ca.ca_dir().join("ca.crt")).expect("new CA"),
    ]
    .concat();

    // a: old certificate, old CA only, until it reloads.
    let a_files = old_ca.issue("a");
    let (a, a_queues) = bind(&a_files).await;
    let _a_verbs = serve(a_queues.verbs);
    // b: old certificate and the bundle from the start; never reloads.
    let b_files = old_ca.issue("b");
    std::fs::write(&b_files.ca, &bundle).expect("b's bundle");
    let (b, b_queues) = bind(&b_files).await;
    let _b_verbs = serve(b_queues.verbs);
    // c: old certificate and old CA only; never reloads.
    let (c, c_queues) = bind(&old_ca.issue("c")).await;
    let _c_verbs = serve(c_queues.verbs);

    // Step 1: a trusts both CAs, still with its old certificate; an old-CA-only node reaches it.
    let before = a.tls_certificate();
    std::fs::write(&a_files.ca, &bundle).expect("a's bundle");
    assert_eq!(a.reload_tls().expect("reload the bundle"), before);
    {
        let (d, d_queues) = bind(&old_ca.issue("d")).await;
        let _d_verbs = serve(d_queues.verbs);
        request_until_ok(&d, a.local_addr(), b"d to a").await;
        request_until_ok(&a, d.local_addr(), b"a to d").await;
        d.shutdown().await;
    }

    // Step 2: a switches to a certificate of the new CA.
    let a_new = new_ca.issue("a");
    copy_identity(&a_new, &a_files);
    let step2 = a.reload_tls().expect("reload the new certificate");
    assert_eq!(
        step2.sha256,
        certs::CertInfo::from_pem_file(&a_new.cert)
            .expect("new")
            .sha256
    );
    // With b, which trusts both: every new handshake succeeds, both ways.
    request_until_ok(&a, b.local_addr(), b"a to b").await;
    request_until_ok(&b, a.local_addr(), b"b to a").await;
    // With c, which never got the bundle, both directions are refused: a really presents the
    // new certificate as server and as client. (Hence: the bundle goes everywhere first.)
    let to_a = c
        .request(
            a.local_addr(),
            Channel::Verb,
            Bytes::from_static(b"c to a"),
            REQUEST,
        )
        .await;
    assert!(
        matches!(to_a, Err(TransportError::Handshake { .. })),
        "{to_a:?}"
    );
    let refused = c.stats().handshakes_refused;
    let to_c = a
        .request(
            c.local_addr(),
            Channel::Verb,
            Bytes::from_static(b"a to c"),
            REQUEST,
        )
        .await;
    assert!(to_c.is_err(), "{to_c:?}");
    eventually("c refuses a's new client certificate", || {
        c.stats().handshakes_refused > refused
    })
    .await;
}

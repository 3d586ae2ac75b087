//! Fuzz target body for the node's internode verbs (`ringdb_node::verbs`): the bodies that arrive
//! on `Channel::Verb` streams, decoded as a replica decodes a request and a coordinator a
//! response.
//!
//! Shared by the `node_verb` fuzz target and by the stable regression test
//! `node/tests/fuzz_regressions.rs`, which includes this file with `#[path]` and replays
//! `fuzz/regressions/node_verb/*`; so it uses only `ringdb-node`.

use ringdb_node::verbs::{decode, encode, encoded_len, VerbRequest, VerbResponse};

/// A verb body as a request and as a response. What decodes re-encodes (within the size limit,
/// to the size `encoded_len` predicts) to bytes that decode and re-encode to the same bytes. A
/// pushed schema is also built into a live schema, as the replica does when it merges it.
pub fn verb(data: &[u8]) {
    if let Ok(req) = decode::<VerbRequest>(data) {
        let _ = req.name();
        round_trip(&req);
        if let VerbRequest::SchemaPush(snapshot) = &req {
            let _ = snapshot.version();
        }
    }
    if let Ok(resp) = decode::<VerbResponse>(data) {
        round_trip(&resp);
    }
}

fn round_trip<T>(value: &T)
where
    T: serde::Serialize + for<'de> serde::Deserialize<'de> + std::fmt::Debug,
{
    let bytes = encode(value).expect("a decoded verb re-encodes");
    assert_eq!(encoded_len(value), Ok(bytes.len()), "encoded_len is exact");
    let back: T = decode(&bytes).expect("a re-encoded verb decodes");
    let again = encode(&back).expect("a decoded verb re-encodes");
    assert_eq!(again, bytes, "verb round trip: {value:?}");
}

//! The native-protocol codec and the CQL parser on the hot path of every request:
//! `cargo bench -p ringdb-cql --bench codec`.
//!
//! A server reads a frame, decodes its request (an EXECUTE with bound values, usually), and
//! encodes a result; an unprepared QUERY is parsed first. Each is measured on its own.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringdb_cql::frame::{Frame, Opcode};
use ringdb_cql::message::{
    BoundValue, ColumnSpec, Consistency, QueryParameters, Request, Response, ResultBody,
    ResultMetadata, Rows,
};
use ringdb_cql::parser::parse_statement;
use ringdb_cql::types::{CqlType, CqlValue};

/// An EXECUTE of a prepared INSERT: an int key and a 100-byte blob, at QUORUM.
fn execute_request() -> Request {
    let mut params = QueryParameters::new(Consistency::Quorum);
    params.values = vec![
        BoundValue::Value(Bytes::copy_from_slice(&42i32.to_be_bytes())),
        BoundValue::Value(Bytes::from(vec![0xab; 100])),
    ];
    Request::Execute {
        id: Bytes::from_static(&[7; 16]),
        params,
    }
}

/// A ROWS result of `n` rows (int key, 100-byte blob), with metadata.
fn rows_response(n: usize) -> Response {
    let spec = |name: &str, ty| ColumnSpec {
        keyspace: "ks".into(),
        table: "t".into(),
        name: name.into(),
        ty,
    };
    let metadata = ResultMetadata::new(vec![spec("k", CqlType::Int), spec("v", CqlType::Blob)]);
    let rows = (0..n as i32)
        .map(|k| {
            vec![
                Some(Bytes::copy_from_slice(&k.to_be_bytes())),
                Some(Bytes::from(vec![0xcd; 100])),
            ]
        })
        .collect();
    Response::Result(ResultBody::Rows(Rows { metadata, rows }))
}

fn frames(c: &mut Criterion) {
    let (opcode, body) = execute_request().encode();
    let wire = Frame::request(3, opcode, body).encode();
    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("split_and_decode_execute", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(black_box(&wire[..]));
            let frame = Frame::split_from(&mut buf, 256 << 20)
                .expect("valid frame")
                .expect("whole frame");
            Request::decode(Opcode::Execute, frame.body).expect("valid body")
        })
    });
    let request = execute_request();
    group.bench_function("encode_execute", |b| {
        b.iter(|| {
            let (opcode, body) = black_box(&request).encode();
            Frame::request(3, opcode, body).encode()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("result");
    for n in [1usize, 100] {
        let response = rows_response(n);
        group.bench_function(format!("encode_rows_{n}"), |b| {
            b.iter(|| black_box(&response).encode())
        });
        let (opcode, body) = response.encode();
        let body = Bytes::from(body);
        group.bench_function(format!("decode_rows_{n}"), |b| {
            b.iter(|| Response::decode(opcode, black_box(body.clone())).expect("valid rows"))
        });
    }
    group.finish();
}

fn values(c: &mut Criterion) {
    let ty = CqlType::Map(
        Box::new(CqlType::Text),
        Box::new(CqlType::List(Box::new(CqlType::Int))),
    );
    let value = CqlValue::Map(
        (0..16)
            .map(|i| {
                (
                    CqlValue::Text(format!("key-{i}")),
                    CqlValue::List((0..8).map(CqlValue::Int).collect()),
                )
            })
            .collect(),
    );
    let bytes = value.serialize();
    c.bench_function("deserialize_map_text_list_int_16x8", |b| {
        b.iter(|| CqlValue::deserialize(black_box(&ty), black_box(&bytes)).expect("valid"))
    });
}

fn parser(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    let statements = [
        (
            "insert",
            "INSERT INTO ks.t (k, c, v) VALUES (42, 'abc', 0xcafebabe) USING TTL 3600",
        ),
        (
            "select",
            "SELECT k, c, v FROM ks.t WHERE k = ? AND c >= 'a' AND c < 'z' LIMIT 100",
        ),
        (
            "create_table",
            "CREATE TABLE IF NOT EXISTS ks.t (k int, c text, v blob, m map<text, int>, \
             PRIMARY KEY ((k), c)) WITH CLUSTERING ORDER BY (c DESC) AND gc_grace_seconds = 3600",
        ),
    ];
    for (name, text) in statements {
        group.bench_function(name, |b| {
            b.iter(|| parse_statement(black_box(text)).expect("valid statement"))
        });
    }
    group.finish();
}

criterion_group!(benches, frames, values, parser);
criterion_main!(benches);

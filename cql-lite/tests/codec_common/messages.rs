//! Proptest strategies for protocol messages: random requests, responses and frame extras.
#![allow(dead_code)]

use std::net::SocketAddr;

use bytes::Bytes;
use proptest::prelude::*;
use ringdb_cql::message::*;
use ringdb_cql::types::CqlType;

use super::arb_type_with;

fn s(text: &str) -> String {
    text.to_string()
}

pub fn arb_string() -> BoxedStrategy<String> {
    "[a-zA-Z0-9_ é']{0,8}".boxed()
}

pub fn arb_bytes() -> BoxedStrategy<Bytes> {
    proptest::collection::vec(any::<u8>(), 0..8)
        .prop_map(Bytes::from)
        .boxed()
}

pub fn arb_consistency() -> BoxedStrategy<Consistency> {
    proptest::sample::select(Consistency::ALL_LEVELS.to_vec()).boxed()
}

pub fn arb_bound_value() -> BoxedStrategy<BoundValue> {
    prop_oneof![
        Just(BoundValue::Null),
        Just(BoundValue::Unset),
        arb_bytes().prop_map(BoundValue::Value),
    ]
    .boxed()
}

pub fn arb_params() -> BoxedStrategy<QueryParameters> {
    (
        arb_consistency(),
        proptest::collection::vec(arb_bound_value(), 0..4),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(any::<i32>()),
        proptest::option::of(arb_bytes()),
        proptest::option::of(arb_consistency()),
        proptest::option::of(any::<i64>()),
    )
        .prop_flat_map(
            |(consistency, values, with_names, skip_metadata, page_size, paging, serial, ts)| {
                let n = values.len();
                let names = if with_names {
                    proptest::collection::vec(arb_string(), n..=n)
                        .prop_map(Some)
                        .boxed()
                } else {
                    Just(None).boxed()
                };
                names.prop_map(move |names| QueryParameters {
                    consistency,
                    values: values.clone(),
                    names,
                    skip_metadata,
                    page_size,
                    paging_state: paging.clone(),
                    serial_consistency: serial,
                    default_timestamp: ts,
                })
            },
        )
        .boxed()
}

pub fn arb_request() -> BoxedStrategy<Request> {
    let batch_statement = (
        prop_oneof![
            arb_string().prop_map(BatchQuery::Query),
            arb_bytes().prop_map(BatchQuery::Prepared),
        ],
        proptest::collection::vec(arb_bound_value(), 0..3),
    )
        .prop_map(|(query, values)| BatchStatement { query, values });
    prop_oneof![
        proptest::collection::vec((arb_string(), arb_string()), 0..4).prop_map(Request::Startup),
        proptest::option::of(arb_bytes()).prop_map(Request::AuthResponse),
        Just(Request::Options),
        (arb_string(), arb_params()).prop_map(|(query, params)| Request::Query { query, params }),
        arb_string().prop_map(|query| Request::Prepare { query }),
        (arb_bytes(), arb_params()).prop_map(|(id, params)| Request::Execute { id, params }),
        (
            proptest::sample::select(vec![
                BatchType::Logged,
                BatchType::Unlogged,
                BatchType::Counter
            ]),
            proptest::collection::vec(batch_statement, 0..3),
            arb_consistency(),
            proptest::option::of(arb_consistency()),
            proptest::option::of(any::<i64>()),
        )
            .prop_map(
                |(batch_type, statements, consistency, serial_consistency, timestamp)| {
                    Request::Batch {
                        batch_type,
                        statements,
                        consistency,
                        serial_consistency,
                        timestamp,
                    }
                }
            ),
        proptest::collection::vec(arb_string(), 0..3)
            .prop_map(|events| Request::Register { events }),
    ]
    .boxed()
}

/// Types as they survive the wire: no `frozen<>`, no custom class that names a native type.
pub fn arb_wire_type() -> BoxedStrategy<CqlType> {
    prop_oneof![
        9 => arb_type_with(3, false),
        1 => "[a-z.]{1,12}".prop_map(|c| CqlType::Custom(format!("org.example.{c}"))),
    ]
    .boxed()
}

pub fn arb_column() -> BoxedStrategy<ColumnSpec> {
    (
        proptest::sample::select(vec!["ks", "system"]),
        proptest::sample::select(vec!["t", "u"]),
        arb_string(),
        arb_wire_type(),
    )
        .prop_map(|(k, t, name, ty)| ColumnSpec {
            keyspace: s(k),
            table: s(t),
            name,
            ty,
        })
        .boxed()
}

pub fn arb_result_metadata() -> BoxedStrategy<ResultMetadata> {
    (
        proptest::collection::vec(arb_column(), 0..4),
        any::<bool>(),
        0usize..4,
        proptest::option::of(arb_bytes()),
    )
        .prop_map(|(columns, no_metadata, count, paging_state)| {
            let mut m = if no_metadata {
                ResultMetadata::no_metadata(count)
            } else {
                ResultMetadata::new(columns)
            };
            m.paging_state = paging_state;
            m
        })
        .boxed()
}

pub fn arb_rows() -> BoxedStrategy<Rows> {
    arb_result_metadata()
        .prop_flat_map(|metadata| {
            let n = metadata.column_count;
            let rows = if n == 0 {
                Just(Vec::new()).boxed()
            } else {
                proptest::collection::vec(
                    proptest::collection::vec(proptest::option::of(arb_bytes()), n..=n),
                    0..4,
                )
                .boxed()
            };
            (Just(metadata), rows)
        })
        .prop_map(|(metadata, rows)| Rows { metadata, rows })
        .boxed()
}

pub fn arb_schema_change() -> BoxedStrategy<SchemaChange> {
    (
        proptest::sample::select(vec![
            SchemaChangeType::Created,
            SchemaChangeType::Updated,
            SchemaChangeType::Dropped,
        ]),
        proptest::sample::select(vec![
            SchemaChangeTarget::Keyspace,
            SchemaChangeTarget::Table,
            SchemaChangeTarget::Type,
            SchemaChangeTarget::Function,
            SchemaChangeTarget::Aggregate,
        ]),
        arb_string(),
        arb_string(),
        proptest::collection::vec(arb_string(), 0..3),
    )
        .prop_map(|(change_type, target, keyspace, name, args)| {
            let (name, args) = match target {
                SchemaChangeTarget::Keyspace => (String::new(), vec![]),
                SchemaChangeTarget::Table | SchemaChangeTarget::Type => (name, vec![]),
                _ => (name, args),
            };
            SchemaChange {
                change_type,
                target,
                keyspace,
                name,
                args,
            }
        })
        .boxed()
}

pub fn arb_addr() -> BoxedStrategy<SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
    ]
    .boxed()
}

pub fn arb_write_type() -> BoxedStrategy<WriteType> {
    prop_oneof![
        proptest::sample::select(vec![
            WriteType::Simple,
            WriteType::Batch,
            WriteType::UnloggedBatch,
            WriteType::Counter,
            WriteType::BatchLog,
            WriteType::Cas,
            WriteType::View,
            WriteType::Cdc,
        ]),
        "[a-z]{1,6}".prop_map(WriteType::Other),
    ]
    .boxed()
}

pub fn arb_error() -> BoxedStrategy<ErrorBody> {
    let c = arb_consistency;
    let kind = prop_oneof![
        proptest::sample::select(vec![
            ErrorKind::Server,
            ErrorKind::Protocol,
            ErrorKind::BadCredentials,
            ErrorKind::Overloaded,
            ErrorKind::IsBootstrapping,
            ErrorKind::Truncate,
            ErrorKind::Syntax,
            ErrorKind::Unauthorized,
            ErrorKind::Invalid,
            ErrorKind::Config,
            ErrorKind::Unknown { code: 0x7777 },
        ]),
        (c(), any::<i32>(), any::<i32>()).prop_map(|(consistency, required, alive)| {
            ErrorKind::Unavailable {
                consistency,
                required,
                alive,
            }
        }),
        (c(), any::<i32>(), any::<i32>(), arb_write_type()).prop_map(
            |(consistency, received, block_for, write_type)| ErrorKind::WriteTimeout {
                consistency,
                received,
                block_for,
                write_type,
            }
        ),
        (c(), any::<i32>(), any::<i32>(), any::<bool>()).prop_map(
            |(consistency, received, block_for, data_present)| ErrorKind::ReadTimeout {
                consistency,
                received,
                block_for,
                data_present,
            }
        ),
        (c(), any::<i32>(), any::<i32>(), any::<i32>(), any::<bool>()).prop_map(
            |(consistency, received, block_for, num_failures, data_present)| {
                ErrorKind::ReadFailure {
                    consistency,
                    received,
                    block_for,
                    num_failures,
                    data_present,
                }
            }
        ),
        (
            c(),
            any::<i32>(),
            any::<i32>(),
            any::<i32>(),
            arb_write_type()
        )
            .prop_map(
                |(consistency, received, block_for, num_failures, write_type)| {
                    ErrorKind::WriteFailure {
                        consistency,
                        received,
                        block_for,
                        num_failures,
                        write_type,
                    }
                }
            ),
        (
            arb_string(),
            arb_string(),
            proptest::collection::vec(arb_string(), 0..3)
        )
            .prop_map(
                |(keyspace, function, arg_types)| ErrorKind::FunctionFailure {
                    keyspace,
                    function,
                    arg_types,
                }
            ),
        (arb_string(), arb_string())
            .prop_map(|(keyspace, table)| ErrorKind::AlreadyExists { keyspace, table }),
        arb_bytes().prop_map(|id| ErrorKind::Unprepared { id }),
    ];
    (kind, arb_string())
        .prop_map(|(kind, message)| ErrorBody { kind, message })
        .boxed()
}

pub fn arb_response() -> BoxedStrategy<Response> {
    let result = prop_oneof![
        Just(ResultBody::Void),
        arb_rows().prop_map(ResultBody::Rows),
        arb_string().prop_map(ResultBody::SetKeyspace),
        (
            arb_bytes(),
            proptest::collection::vec(arb_column(), 0..4),
            proptest::collection::vec(any::<u16>(), 0..3),
            arb_result_metadata(),
        )
            .prop_map(
                |(id, columns, pk_indices, result_metadata)| ResultBody::Prepared {
                    id,
                    metadata: PreparedMetadata {
                        columns,
                        pk_indices,
                    },
                    result_metadata,
                }
            ),
        arb_schema_change().prop_map(ResultBody::SchemaChange),
    ];
    let event = prop_oneof![
        (
            proptest::sample::select(vec![
                TopologyChangeType::NewNode,
                TopologyChangeType::RemovedNode,
                TopologyChangeType::MovedNode,
            ]),
            arb_addr(),
        )
            .prop_map(|(change, addr)| Event::TopologyChange { change, addr }),
        (
            proptest::sample::select(vec![StatusChangeType::Up, StatusChangeType::Down]),
            arb_addr(),
        )
            .prop_map(|(change, addr)| Event::StatusChange { change, addr }),
        arb_schema_change().prop_map(Event::SchemaChange),
    ];
    prop_oneof![
        arb_error().prop_map(Response::Error),
        Just(Response::Ready),
        arb_string().prop_map(Response::Authenticate),
        proptest::collection::hash_map(
            arb_string(),
            proptest::collection::vec(arb_string(), 0..3),
            0..3
        )
        .prop_map(Response::Supported),
        result.prop_map(Response::Result),
        event.prop_map(Response::Event),
        proptest::option::of(arb_bytes()).prop_map(Response::AuthChallenge),
        proptest::option::of(arb_bytes()).prop_map(Response::AuthSuccess),
    ]
    .boxed()
}

pub fn arb_response_extras() -> BoxedStrategy<ResponseExtras> {
    (
        proptest::option::of(any::<[u8; 16]>()),
        proptest::collection::vec(arb_string(), 0..3),
        proptest::option::of(proptest::collection::vec(
            (arb_string(), proptest::option::of(arb_bytes())),
            0..3,
        )),
    )
        .prop_map(|(tracing_id, warnings, custom_payload)| ResponseExtras {
            tracing_id,
            warnings,
            custom_payload,
        })
        .boxed()
}

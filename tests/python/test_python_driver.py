"""The Python `cassandra-driver` with DEFAULT settings (schema metadata on, token-aware policy,
protocol negotiation) against a real `ringdb node`: DDL and metadata, TTL, prepared statements
(positional and named), batches, paging, every collection and scalar type of the milestone, and
the error classes drivers map server errors to.
"""

from __future__ import annotations

import logging
import time
import uuid
import zlib
from datetime import date, datetime, time as dtime
from decimal import Decimal

import pytest
from cassandra import AlreadyExists, InvalidRequest
from cassandra.cluster import Cluster
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.policies import TokenAwarePolicy
from cassandra.protocol import SyntaxException
from cassandra.query import BatchStatement, BatchType, SimpleStatement

KS = "ks_py"


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


DRIVER_WARNINGS = _Collect()


@pytest.fixture(scope="module")
def cluster(node):
    logging.getLogger("cassandra").addHandler(DRIVER_WARNINGS)
    c = Cluster([node.ip], port=node.port)  # default settings on purpose
    yield c
    c.shutdown()
    logging.getLogger("cassandra").removeHandler(DRIVER_WARNINGS)


def ddl(session, statement):
    """Runs a DDL statement and insists the driver saw schema agreement afterwards."""
    rs = session.execute(statement)
    assert rs.response_future.is_schema_agreed, f"no schema agreement after: {statement}"
    return rs


@pytest.fixture(scope="module")
def session(cluster):
    s = cluster.connect()
    ddl(
        s,
        f"CREATE KEYSPACE IF NOT EXISTS {KS} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}",
    )
    s.set_keyspace(KS)
    yield s
    s.shutdown()


# ------------------------------------------------------------------------------------------------
# connection and metadata


def test_connects_with_default_settings(cluster, session):
    assert cluster.protocol_version == 4, f"negotiated protocol v{cluster.protocol_version}"
    hosts = cluster.metadata.all_hosts()
    assert len(hosts) == 1, f"driver sees hosts {hosts}"
    host = hosts[0]
    assert host.is_up
    assert host.release_version and host.release_version.startswith("4"), host.release_version
    assert cluster.metadata.cluster_name == "ringdb-pytest"
    assert cluster.metadata.partitioner == "org.apache.cassandra.dht.Murmur3Partitioner"
    policy = cluster.profile_manager.default.load_balancing_policy
    assert isinstance(policy, TokenAwarePolicy), f"default policy is {policy!r}"
    token_map = cluster.metadata.token_map
    assert token_map is not None and len(token_map.ring) > 0, "driver built no token map"
    for ks in ("system", "system_schema"):
        assert ks in cluster.metadata.keyspaces, f"{ks} missing from driver metadata"
    assert "local" in cluster.metadata.keyspaces["system"].tables


def test_ddl_composite_key_desc_clustering_static_and_metadata(cluster, session):
    ddl(
        session,
        "CREATE TABLE events (tenant text, day date, ts timestamp, seq int, payload text, "
        "owner text STATIC, PRIMARY KEY ((tenant, day), ts, seq)) "
        "WITH CLUSTERING ORDER BY (ts DESC, seq ASC)",
    )
    table = cluster.metadata.keyspaces[KS].tables["events"]
    assert [c.name for c in table.partition_key] == ["tenant", "day"]
    assert [c.name for c in table.clustering_key] == ["ts", "seq"]
    assert table.clustering_key[0].is_reversed, "ts should be DESC"
    assert not table.clustering_key[1].is_reversed, "seq should be ASC"
    assert table.columns["owner"].is_static
    assert table.columns["day"].cql_type == "date"
    assert table.columns["payload"].cql_type == "text"
    assert set(table.columns) == {"tenant", "day", "ts", "seq", "payload", "owner"}
    strategy = cluster.metadata.keyspaces[KS].replication_strategy
    assert type(strategy).__name__ == "SimpleStrategy" and strategy.replication_factor == 1

    insert = session.prepare(
        "INSERT INTO events (tenant, day, ts, seq, payload) VALUES (?, ?, ?, ?, ?)"
    )
    d = date(2024, 3, 1)
    for i in range(5):
        session.execute(insert, ("acme", d, datetime(2024, 3, 1, 10, i), i, f"p{i}"))
    session.execute("UPDATE events SET owner = 'alice' WHERE tenant = 'acme' AND day = '2024-03-01'")
    rows = list(session.execute("SELECT ts, seq, payload, owner FROM events WHERE tenant = 'acme' AND day = '2024-03-01'"))
    assert [r.seq for r in rows] == [4, 3, 2, 1, 0], "clustering order DESC not honoured"
    assert all(r.owner == "alice" for r in rows), "static column not shared by the partition"

    # Token-aware routing: the driver's Murmur3 token of the composite key equals the server's,
    # and the driver maps it to our host.
    bound = insert.bind(("acme", d, datetime(2024, 3, 1), 0, "x"))
    assert bound.routing_key is not None, "driver computed no routing key"
    replicas = cluster.metadata.get_replicas(KS, bound.routing_key)
    assert [h.address for h in replicas] == [cluster.metadata.all_hosts()[0].address]
    driver_token = cluster.metadata.token_map.token_class.from_key(bound.routing_key).value
    server_token = session.execute(
        "SELECT token(tenant, day) FROM events WHERE tenant = 'acme' AND day = '2024-03-01' LIMIT 1"
    ).one()[0]
    assert server_token == driver_token, f"server token {server_token} != driver token {driver_token}"


def test_alter_table_add_and_drop_column_shows_in_metadata(cluster, session):
    ddl(session, "CREATE TABLE alter_me (k int PRIMARY KEY, a text)")
    ddl(session, "ALTER TABLE alter_me ADD b int")
    assert "b" in cluster.metadata.keyspaces[KS].tables["alter_me"].columns
    session.execute("INSERT INTO alter_me (k, a, b) VALUES (1, 'x', 2)")
    assert session.execute("SELECT b FROM alter_me WHERE k = 1").one().b == 2
    ddl(session, "ALTER TABLE alter_me DROP a")
    assert "a" not in cluster.metadata.keyspaces[KS].tables["alter_me"].columns


def test_truncate_drop_table_and_keyspace(cluster, session):
    ddl(session, "CREATE KEYSPACE IF NOT EXISTS ks_py_tmp WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
    ddl(session, "CREATE TABLE ks_py_tmp.t (k int PRIMARY KEY, v int)")
    session.execute("INSERT INTO ks_py_tmp.t (k, v) VALUES (1, 1)")
    session.execute("TRUNCATE ks_py_tmp.t")
    assert session.execute("SELECT * FROM ks_py_tmp.t").one() is None, "TRUNCATE left rows"
    ddl(session, "DROP TABLE ks_py_tmp.t")
    assert "t" not in cluster.metadata.keyspaces["ks_py_tmp"].tables
    ddl(session, "DROP KEYSPACE ks_py_tmp")
    assert "ks_py_tmp" not in cluster.metadata.keyspaces
    session.execute("DROP KEYSPACE IF EXISTS ks_py_tmp")


# ------------------------------------------------------------------------------------------------
# writes and reads


@pytest.fixture(scope="module")
def kv(session):
    ddl(session, "CREATE TABLE IF NOT EXISTS kv (k int PRIMARY KEY, v text, n int)")
    return "kv"


def test_ttl_is_written_read_back_and_expires(session, kv):
    session.execute("INSERT INTO kv (k, v) VALUES (1, 'lives') USING TTL 3600")
    remaining = session.execute("SELECT ttl(v) FROM kv WHERE k = 1").one()[0]
    assert remaining is not None and 3590 <= remaining <= 3600, f"ttl(v) = {remaining}"
    prepared = session.prepare("INSERT INTO kv (k, v) VALUES (?, ?) USING TTL ?")
    session.execute(prepared, (2, "short", 2))
    assert session.execute("SELECT v FROM kv WHERE k = 2").one().v == "short"
    time.sleep(3.5)
    assert session.execute("SELECT v FROM kv WHERE k = 2").one() is None, "TTL 2 s row still there"
    session.execute("INSERT INTO kv (k, v) VALUES (3, 'stamped') USING TIMESTAMP 1234567890")
    assert session.execute("SELECT writetime(v) FROM kv WHERE k = 3").one()[0] == 1234567890


def test_prepared_statements_positional_and_named(session, kv):
    positional = session.prepare("INSERT INTO kv (k, v, n) VALUES (?, ?, ?)")
    named = session.prepare("INSERT INTO kv (k, v, n) VALUES (:k, :v, :n)")
    session.execute(positional, (10, "ten", 10))
    session.execute(named, {"k": 11, "v": "eleven", "n": 11})
    select = session.prepare("SELECT v, n FROM kv WHERE k = ?")
    select_named = session.prepare("SELECT v, n FROM kv WHERE k = :key")
    assert tuple(session.execute(select, (10,)).one()) == ("ten", 10)
    assert tuple(session.execute(select_named, {"key": 11}).one()) == ("eleven", 11)
    update = session.prepare("UPDATE kv SET n = :n WHERE k = :k")
    session.execute(update, {"n": 99, "k": 10})
    assert session.execute(select, (10,)).one().n == 99
    delete = session.prepare("DELETE n FROM kv WHERE k = ?")
    session.execute(delete, (10,))
    assert tuple(session.execute(select, (10,)).one()) == ("ten", None)
    # Driver-side formatting of %s parameters into CQL literals.
    session.execute("INSERT INTO kv (k, v, n) VALUES (%s, %s, %s)", (12, "it's", 12))
    assert session.execute(select, (12,)).one().v == "it's"


@pytest.mark.parametrize("batch_type", [BatchType.LOGGED, BatchType.UNLOGGED])
def test_batch_statement(session, kv, batch_type):
    base = 100 if batch_type == BatchType.LOGGED else 200
    insert = session.prepare("INSERT INTO kv (k, v) VALUES (?, ?)")
    batch = BatchStatement(batch_type=batch_type)
    for i in range(5):
        batch.add(insert, (base + i, f"b{base + i}"))
    batch.add(SimpleStatement("INSERT INTO kv (k, v) VALUES (%s, %s)"), (base + 5, "simple"))
    batch.add(SimpleStatement(f"UPDATE kv SET n = 7 WHERE k = {base}"))
    session.execute(batch)
    rows = {r.k: r for r in session.execute(f"SELECT k, v, n FROM kv WHERE k IN ({', '.join(str(base + i) for i in range(6))})")}
    assert sorted(rows) == [base + i for i in range(6)]
    assert rows[base].n == 7 and rows[base + 5].v == "simple"


def test_cql_text_batch(session, kv):
    session.execute(
        "BEGIN BATCH "
        "INSERT INTO kv (k, v) VALUES (300, 'a'); "
        "INSERT INTO kv (k, v) VALUES (301, 'b'); "
        "APPLY BATCH"
    )
    session.execute("BEGIN UNLOGGED BATCH INSERT INTO kv (k, v) VALUES (302, 'c'); APPLY BATCH")
    got = {r.k: r.v for r in session.execute("SELECT k, v FROM kv WHERE k IN (300, 301, 302)")}
    assert got == {300: "a", 301: "b", 302: "c"}


@pytest.fixture(scope="module")
def paging_rows(session):
    ddl(session, "CREATE TABLE IF NOT EXISTS paging (p int, c int, v text, PRIMARY KEY (p, c))")
    insert = session.prepare("INSERT INTO paging (p, c, v) VALUES (?, ?, ?)")
    args = [(i // 1000, i % 1000, f"v{i}") for i in range(5000)]
    results = execute_concurrent_with_args(session, insert, args, concurrency=50, raise_on_first_error=False)
    failures = [r.result_or_exc for r in results if not r.success]
    assert not failures, f"{len(failures)} of 5000 inserts failed; first: {failures[0]!r}"
    return args


def test_paging_through_5000_rows_with_fetch_size_100(session, paging_rows):
    rs = session.execute(SimpleStatement("SELECT p, c, v FROM paging", fetch_size=100))
    pages = 1
    rows = list(rs.current_rows)
    assert len(rows) <= 100, f"first page has {len(rows)} rows with fetch_size=100"
    while rs.has_more_pages:
        assert pages < 200, "paging does not terminate"
        rs.fetch_next_page()
        assert len(rs.current_rows) <= 100
        rows.extend(rs.current_rows)
        pages += 1
    keys = {(r.p, r.c) for r in rows}
    assert len(rows) == 5000 and len(keys) == 5000, f"{len(rows)} rows, {len(keys)} distinct"
    assert all(r.v == f"v{r.p * 1000 + r.c}" for r in rows)
    assert pages >= 50, f"5000 rows in {pages} pages at fetch_size=100"


def test_paging_state_resumes_and_prepared_partition_paging(session, paging_rows):
    select = session.prepare("SELECT c FROM paging WHERE p = ?")
    select.fetch_size = 100
    cs = [r.c for r in session.execute(select, (3,))]
    assert cs == list(range(1000)), "single-partition paging lost or reordered rows"
    # Stateless paging: resume from a saved paging_state.
    statement = SimpleStatement("SELECT c FROM paging WHERE p = 2", fetch_size=250)
    first = session.execute(statement)
    page1 = [r.c for r in first.current_rows]
    assert first.paging_state is not None
    second = session.execute(statement, paging_state=first.paging_state)
    page2 = [r.c for r in second.current_rows]
    assert page1 == list(range(250)) and page2 == list(range(250, 500))


def test_select_features_count_in_range_order_limit(session, paging_rows):
    assert session.execute("SELECT COUNT(*) FROM paging WHERE p = 1").one()[0] == 1000
    rows = session.execute("SELECT c FROM paging WHERE p = 1 AND c >= 10 AND c < 15")
    assert [r.c for r in rows] == [10, 11, 12, 13, 14]
    rows = session.execute("SELECT c FROM paging WHERE p = 1 AND c > 995 ORDER BY c DESC")
    assert [r.c for r in rows] == [999, 998, 997, 996]
    rows = session.execute("SELECT p, c FROM paging WHERE p IN (0, 4) AND c = 7")
    assert sorted((r.p, r.c) for r in rows) == [(0, 7), (4, 7)]
    rows = session.execute("SELECT c FROM paging WHERE p = 0 LIMIT 3")
    assert [r.c for r in rows] == [0, 1, 2]


# ------------------------------------------------------------------------------------------------
# types


SCALARS = [
    # (name, column type, python value, hand-written CQL literal)
    ("ascii", "ascii", "hello ascii", "'hello ascii'"),
    ("text", "text", "héllo wörld ✓ it's", "'héllo wörld ✓ it''s'"),
    ("varchar", "varchar", "", "''"),
    ("boolean", "boolean", True, "true"),
    ("tinyint", "tinyint", -128, "-128"),
    ("smallint", "smallint", 32767, "32767"),
    ("int", "int", -2147483648, "-2147483648"),
    ("bigint", "bigint", 9223372036854775807, "9223372036854775807"),
    ("varint", "varint", -(2**100) + 7, str(-(2**100) + 7)),
    ("float", "float", 1.5, "1.5"),
    ("double", "double", 3.141592653589793, "3.141592653589793"),
    ("decimal", "decimal", Decimal("-12345.6789"), "-12345.6789"),
    ("uuid", "uuid", uuid.UUID("123e4567-e89b-12d3-a456-426614174000"), "123e4567-e89b-12d3-a456-426614174000"),
    ("timeuuid", "timeuuid", uuid.UUID("d2177dd0-eaa2-11de-a572-001b779c76e3"), "d2177dd0-eaa2-11de-a572-001b779c76e3"),
    ("timestamp", "timestamp", datetime(2024, 1, 2, 3, 4, 5, 678000), "'2024-01-02 03:04:05.678+0000'"),
    ("timestamp_pre_epoch", "timestamp", datetime(1969, 7, 20, 20, 17, 40), "'1969-07-20 20:17:40+0000'"),
    ("date", "date", date(2024, 2, 29), "'2024-02-29'"),
    ("date_pre_epoch", "date", date(1900, 1, 1), "'1900-01-01'"),
    ("time", "time", dtime(12, 34, 56, 789000), "'12:34:56.789'"),
    ("blob", "blob", b"\xca\xfe\xba\xbe\x00", "0xcafebabe00"),
    ("inet4", "inet", "192.168.1.10", "'192.168.1.10'"),
    ("inet6", "inet", "2001:db8::1", "'2001:db8::1'"),
]


@pytest.fixture(scope="module")
def scalars_table(session):
    cols = ", ".join(f"c_{name} {typ}" for name, typ, _, _ in SCALARS)
    ddl(session, f"CREATE TABLE IF NOT EXISTS scalars (k int PRIMARY KEY, {cols})")
    return "scalars"


@pytest.mark.parametrize("mode", ["prepared", "driver_literal", "cql_literal"])
@pytest.mark.parametrize("name,typ,value,literal", SCALARS, ids=[s[0] for s in SCALARS])
def test_scalar_type_round_trip(session, scalars_table, name, typ, value, literal, mode):
    k = zlib.crc32(f"{name}/{mode}".encode()) % 1_000_000
    col = f"c_{name}"
    if mode == "prepared":
        session.execute(session.prepare(f"INSERT INTO scalars (k, {col}) VALUES (?, ?)"), (k, value))
    elif mode == "driver_literal":
        session.execute(f"INSERT INTO scalars (k, {col}) VALUES (%s, %s)", (k, value))
    else:
        session.execute(f"INSERT INTO scalars (k, {col}) VALUES ({k}, {literal})")
    got = session.execute(f"SELECT {col} FROM scalars WHERE k = %s", (k,)).one()[0]
    assert got == value, f"{typ} ({mode}): wrote {value!r}, read {got!r}"
    got_prepared = session.execute(session.prepare(f"SELECT {col} FROM scalars WHERE k = ?"), (k,)).one()[0]
    assert got_prepared == value


def test_unset_columns_read_as_null(session, scalars_table):
    session.execute("INSERT INTO scalars (k) VALUES (-1)")
    row = session.execute("SELECT * FROM scalars WHERE k = -1").one()
    assert row.k == -1
    assert all(v is None for f, v in row._asdict().items() if f != "k")


def _norm(v):
    """Driver collection types → plain comparable Python values."""
    if isinstance(v, dict) or (hasattr(v, "items") and not isinstance(v, (str, bytes))):
        return {_norm(k): _norm(x) for k, x in v.items()}
    if isinstance(v, (set, frozenset)) or type(v).__name__ == "SortedSet":
        return frozenset(_norm(x) for x in v)
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    return v


COLLECTIONS = [
    ("l", "list<int>", [3, 1, 2], "[3, 1, 2]"),
    ("s", "set<text>", {"b", "a"}, "{'a', 'b'}"),
    ("m", "map<text, int>", {"x": 1, "y": 2}, "{'x': 1, 'y': 2}"),
    ("fl", "frozen<list<text>>", ["a", "b", "a"], "['a', 'b', 'a']"),
    ("fs", "frozen<set<int>>", {5, 1}, "{1, 5}"),
    ("fm", "frozen<map<int, text>>", {1: "one", 2: "two"}, "{1: 'one', 2: 'two'}"),
    ("su", "set<uuid>", {uuid.UUID("123e4567-e89b-12d3-a456-426614174000")}, "{123e4567-e89b-12d3-a456-426614174000}"),
    ("lts", "list<timestamp>", [datetime(2024, 1, 1), datetime(2020, 5, 6, 7, 8, 9)], "['2024-01-01 00:00:00+0000', '2020-05-06 07:08:09+0000']"),
    ("mb", "map<int, blob>", {1: b"\x01\x02"}, "{1: 0x0102}"),
]

NESTED = [
    ("nl", "list<frozen<map<text, int>>>", [{"a": 1}, {"b": 2}], "[{'a': 1}, {'b': 2}]"),
    ("nm", "map<text, frozen<list<int>>>", {"k": [1, 2]}, "{'k': [1, 2]}"),
    ("ns", "set<frozen<set<int>>>", {frozenset({1, 2})}, "{{1, 2}}"),
    ("nf", "frozen<list<frozen<set<text>>>>", [{"a"}, {"b", "c"}], "[{'a'}, {'b', 'c'}]"),
]


@pytest.fixture(scope="module")
def collections_table(session):
    cols = ", ".join(f"{name} {typ}" for name, typ, _, _ in COLLECTIONS + NESTED)
    ddl(session, f"CREATE TABLE IF NOT EXISTS colls (k int PRIMARY KEY, {cols})")
    return "colls"


def _round_trip(session, name, typ, value, literal, mode):
    k = zlib.crc32(f"{name}/{mode}".encode()) % 1_000_000
    if mode == "prepared":
        session.execute(session.prepare(f"INSERT INTO colls (k, {name}) VALUES (?, ?)"), (k, value))
    elif mode == "driver_literal":
        session.execute(f"INSERT INTO colls (k, {name}) VALUES (%s, %s)", (k, value))
    else:
        session.execute(f"INSERT INTO colls (k, {name}) VALUES ({k}, {literal})")
    got = session.execute(session.prepare(f"SELECT {name} FROM colls WHERE k = ?"), (k,)).one()[0]
    assert _norm(got) == _norm(value), f"{typ} ({mode}): wrote {value!r}, read {got!r}"


@pytest.mark.parametrize("mode", ["prepared", "driver_literal", "cql_literal"])
@pytest.mark.parametrize("name,typ,value,literal", COLLECTIONS, ids=[c[1] for c in COLLECTIONS])
def test_collection_round_trip(session, collections_table, name, typ, value, literal, mode):
    _round_trip(session, name, typ, value, literal, mode)


@pytest.mark.parametrize("mode", ["prepared", "driver_literal", "cql_literal"])
@pytest.mark.parametrize("name,typ,value,literal", NESTED, ids=[c[1] for c in NESTED])
def test_nested_frozen_collection_round_trip(session, collections_table, name, typ, value, literal, mode):
    _round_trip(session, name, typ, value, literal, mode)


# ------------------------------------------------------------------------------------------------
# errors and schema agreement


def test_missing_table_raises_invalid_request(session):
    with pytest.raises(InvalidRequest):
        session.execute("SELECT * FROM no_such_table")
    with pytest.raises(InvalidRequest):
        session.execute("SELECT * FROM no_such_ks.t")


def test_syntax_error_raises_syntax_exception(session):
    with pytest.raises(SyntaxException):
        session.execute("SELEC * FROM kv")
    with pytest.raises(SyntaxException):
        session.execute("SELECT * FROM kv WHERE")


def test_create_existing_table_raises_already_exists(session, kv):
    with pytest.raises(AlreadyExists):
        session.execute("CREATE TABLE kv (k int PRIMARY KEY)")
    session.execute("CREATE TABLE IF NOT EXISTS kv (k int PRIMARY KEY)")


def test_filtering_on_a_regular_column_needs_allow_filtering(session, kv):
    with pytest.raises(InvalidRequest):
        session.execute("SELECT * FROM kv WHERE v = 'ten'")


def test_schema_agreement_without_warnings(cluster, session):
    assert cluster.control_connection.wait_for_schema_agreement(wait_time=10)
    disagreements = [
        r.getMessage()
        for r in DRIVER_WARNINGS.records
        if "schema" in r.getMessage().lower()
    ]
    assert not disagreements, f"driver warned about schema: {disagreements}"

"""Replication and consistency levels end to end (issue 4, "Done when"): real clusters made with
`ringdb cluster`, nodes killed with SIGKILL, the Python `cassandra-driver` as the client.

- QUORUM keeps working with one of three replicas down, fails with Unavailable (required 2,
  alive 1) with two down while ONE still works, and after the nodes come back a read at ALL
  returns every acknowledged write.
- A replica that missed a write is healed by the blocking read repair of a read at ALL: it
  answers a read at ONE on its own afterwards.
- Two datacenters: with dc2 down, LOCAL_QUORUM in dc1 works and EACH_QUORUM is Unavailable; once
  dc2 is back its coordinators read at LOCAL_QUORUM what dc1 wrote.

Each test makes its own cluster (`replicated_cluster`, removed after the test; kept with its logs
when the test fails) and ends with a checker that prints, in numbers, what was acknowledged and
what was read back. Every wait is bounded. Statements expected to fail run in the cluster's
NO_RETRY execution profile, so the driver hands back the server's Unavailable error itself (see
`ReplicatedCluster.driver` in conftest.py).
"""

from __future__ import annotations

import threading
import time

import pytest
from cassandra import ConsistencyLevel, Unavailable
from cassandra.concurrent import execute_concurrent_with_args

KS = "ks_cl"
TABLE = "kv"
ROWS = 100  # rows per batch
DDL_TIMEOUT = 60.0  # seconds a DDL request may take, schema agreement wait included
AGREEMENT_TIMEOUT = 30.0  # seconds the nodes may take to agree on the schema after a DDL

CL = ConsistencyLevel


# -- schema and data helpers ------------------------------------------------------------------------


def create_schema(cluster, session, replication: str) -> None:
    """Creates KS with REPLICATION and the table through SESSION, then waits (bounded) until every
    node reports the same schema_version: until schema propagates between nodes, nothing else in
    these tests can work, so this is where they fail first without it."""
    # The driver waits up to max_schema_agreement_wait (10 s) for agreement after each DDL,
    # inside the request: a request timeout above that lets a disagreement surface below, with
    # every node's version, instead of as a bare OperationTimedOut.
    session.execute(f"CREATE KEYSPACE {KS} WITH replication = {replication}", timeout=DDL_TIMEOUT)
    cluster.wait_schema_agreement(timeout=AGREEMENT_TIMEOUT)
    session.execute(f"CREATE TABLE {KS}.{TABLE} (k int PRIMARY KEY, v text)", timeout=DDL_TIMEOUT)
    cluster.wait_schema_agreement(timeout=AGREEMENT_TIMEOUT)


def simple(rf: int) -> str:
    return f"{{'class': 'SimpleStrategy', 'replication_factor': {rf}}}"


def prepared(session, cql: str, cl: int):
    stmt = session.prepare(cql)
    stmt.consistency_level = cl
    return stmt


def write(session, rows: dict[int, str], cl: int, acked: dict[int, str]) -> None:
    """Writes ROWS at CL; every acknowledged one goes into ACKED. Fails on the first error."""
    insert = prepared(session, f"INSERT INTO {KS}.{TABLE} (k, v) VALUES (?, ?)", cl)
    items = sorted(rows.items())
    results = execute_concurrent_with_args(session, insert, items, concurrency=32,
                                           raise_on_first_error=False)
    errors = []
    for (k, v), (ok, outcome) in zip(items, results):
        if ok:
            acked[k] = v
        else:
            errors.append(f"k={k}: {type(outcome).__name__}: {outcome}")
    assert not errors, (
        f"{len(errors)} of {len(items)} writes at {CL.value_to_name[cl]} failed; first: {errors[0]}"
    )


def read(session, keys, cl: int, table: str = f"{KS}.{TABLE}") -> dict[int, str | None]:
    """Reads column v of every key k of KEYS in TABLE at CL: {key: v, or None for no row}. Fails
    on the first error."""
    select = prepared(session, f"SELECT v FROM {table} WHERE k = ?", cl)
    keys = sorted(keys)
    results = execute_concurrent_with_args(session, select, [(k,) for k in keys], concurrency=32,
                                           raise_on_first_error=False)
    found, errors = {}, []
    for k, (ok, outcome) in zip(keys, results):
        if ok:
            row = outcome.one()
            found[k] = row.v if row else None
        else:
            errors.append(f"k={k}: {type(outcome).__name__}: {outcome}")
    assert not errors, (
        f"{len(errors)} of {len(keys)} reads at {CL.value_to_name[cl]} failed; first: {errors[0]}"
    )
    return found


def check(what: str, expected: dict[int, str], found: dict[int, str | None]) -> None:
    """The checker: prints acknowledged / read back / missing / wrong, then asserts none lost."""
    missing = sorted(k for k, v in expected.items() if found.get(k) is None)
    wrong = sorted(k for k, v in expected.items() if found.get(k) not in (None, v))
    back = sum(1 for k, v in expected.items() if found.get(k) == v)
    print(f"{what}: acknowledged {len(expected)}, read back {back}, missing {len(missing)}, "
          f"wrong value {len(wrong)}")
    assert not missing and not wrong, (
        f"{what}: {len(missing)} acknowledged rows missing (first {missing[:10]}), "
        f"{len(wrong)} with a value other than the last acknowledged one "
        f"(first {[(k, expected[k], found.get(k)) for k in wrong[:5]]})"
    )


def expect_unavailable(cluster, session, cql: str, params, cl: int, required: int, alive: int):
    """Runs CQL at CL (no retries) and asserts it fails with Unavailable(CL, REQUIRED, ALIVE)."""
    stmt = prepared(session, cql, cl)
    with pytest.raises(Unavailable) as info:
        session.execute(stmt, params, execution_profile=cluster.NO_RETRY)
    e = info.value
    print(f"{CL.value_to_name[cl]} {cql.split()[0]}: Unavailable(consistency="
          f"{CL.value_to_name.get(e.consistency, e.consistency)}, required={e.required_replicas}, "
          f"alive={e.alive_replicas})")
    assert (e.consistency, e.required_replicas, e.alive_replicas) == (cl, required, alive), (
        f"expected Unavailable(consistency={CL.value_to_name[cl]}, required={required}, "
        f"alive={alive}), got consistency={e.consistency}, required={e.required_replicas}, "
        f"alive={e.alive_replicas}: {e}"
    )


def batch(first: int, n: int, tag: str) -> dict[int, str]:
    return {k: f"v{k}-{tag}" for k in range(first, first + n)}


class BackgroundWrites:
    """A client writing rows k = FIRST, FIRST+1, ... at CL (default QUORUM) through NODES
    (default 1-3; its own pinned session, about 100 writes a second) until the `with` block ends:
    `acked` holds the acknowledged rows, `failures` the errors. For showing nothing is lost while
    the ring changes."""

    def __init__(self, cluster, first: int, tag: str, limit: int = 10 * ROWS,
                 nodes=(1, 2, 3), cl: int = CL.QUORUM):
        self.cluster, self.first, self.tag, self.limit = cluster, first, tag, limit
        self.nodes, self.cl = tuple(nodes), cl
        self.acked: dict[int, str] = {}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        s = self.cluster.session(*self.nodes, pinned=True)
        insert = prepared(s, f"INSERT INTO {KS}.{TABLE} (k, v) VALUES (?, ?)", self.cl)
        for k in range(self.first, self.first + self.limit):
            if self._stop.is_set():
                return
            value = f"v{k}-{self.tag}"
            try:
                s.execute(insert, (k, value))
                self.acked[k] = value
            except Exception as e:  # noqa: BLE001 - counted and reported by the caller
                self.failures.append(f"k={k}: {type(e).__name__}: {e}")
            time.sleep(0.01)

    def __enter__(self) -> "BackgroundWrites":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        print(f"writes while {self.tag}: {len(self.acked)} acknowledged, "
              f"{len(self.failures)} failed")

    def check(self) -> None:
        """Asserts some writes were acknowledged and none failed."""
        assert self.acked, f"no write was acknowledged while {self.tag}"
        assert not self.failures, f"writes failed while {self.tag}; first: {self.failures[0]}"


# -- tests ----------------------------------------------------------------------------------------


def test_quorum_survives_one_node_down(replicated_cluster):
    c = replicated_cluster("cl-quorum", [3])
    session = c.session()  # default settings: token-aware, all nodes as contact points
    create_schema(c, session, simple(3))
    acked: dict[int, str] = {}

    # All up: batch a at QUORUM.
    write(session, batch(0, ROWS, "a"), CL.QUORUM, acked)

    # One of three replicas down: QUORUM (2 of 3) still works, for reads and writes, new rows
    # and overwrites (node3 keeps the old values of the overwritten rows).
    c.kill(3)
    c.wait_seen([1, 2], [3], "down")
    check("QUORUM read, node3 down", acked, read(session, acked, CL.QUORUM))
    written_with_two_up: dict[int, str] = {}
    write(session, {**batch(ROWS, ROWS, "b"), **batch(0, ROWS // 2, "b")}, CL.QUORUM,
          written_with_two_up)
    acked.update(written_with_two_up)
    check("QUORUM read after QUORUM writes, node3 down", acked, read(session, acked, CL.QUORUM))

    # Two down: QUORUM is refused before anything is sent; ONE works on node1 alone.
    c.kill(2)
    c.wait_seen([1], [2, 3], "down")
    unavailable_key = 10 * ROWS
    expect_unavailable(c, session, f"INSERT INTO {KS}.{TABLE} (k, v) VALUES (?, ?)",
                       (unavailable_key, "never"), CL.QUORUM, required=2, alive=1)
    expect_unavailable(c, session, f"SELECT v FROM {KS}.{TABLE} WHERE k = ?", (0,), CL.QUORUM,
                       required=2, alive=1)
    written_at_one: dict[int, str] = {}
    write(session, batch(2 * ROWS, ROWS // 2, "c"), CL.ONE, written_at_one)
    acked.update(written_at_one)
    # node1 acknowledged every write made while it had one or no other live replica, so a read
    # at ONE (node1 is the only live replica) must return those; rows of batch a are shown only.
    on_node1 = {**written_with_two_up, **written_at_one}
    check("ONE read, node2 and node3 down", on_node1, read(session, on_node1, CL.ONE))
    batch_a_only = {k: v for k, v in acked.items() if k not in on_node1}
    found = read(session, batch_a_only, CL.ONE)
    print(f"(information) ONE read of batch a with node1 alone: "
          f"{sum(1 for k, v in batch_a_only.items() if found[k] == v)} of {len(batch_a_only)}")

    # Everyone back: a read at ALL returns every acknowledged write with its last value.
    took = c.start_stopped()
    print(f"node2 and node3 restarted, all UN after {took:.1f}s")
    found = read(session, [*acked, unavailable_key], CL.ALL)
    check("ALL read after restart", acked, found)
    assert found[unavailable_key] is None, (
        f"the INSERT refused with Unavailable was applied anyway: k={unavailable_key} reads "
        f"{found[unavailable_key]!r} (Unavailable means nothing was sent to any replica)"
    )


def test_read_repair_heals_stale_replica(replicated_cluster):
    # Hinted handoff would deliver the missed writes to node3 on its own: off, so that only read
    # repair can.
    c = replicated_cluster("cl-repair", [3], sets=["hinted_handoff_enabled=false"])
    create_schema(c, c.session(), simple(3))
    select = f"SELECT v FROM {KS}.{TABLE} WHERE k = ?"

    # node3 misses the writes.
    c.kill(3)
    c.wait_seen([1, 2], [3], "down")
    s1 = c.pinned(1)
    repaired, control = 1, 2
    acked: dict[int, str] = {}
    write(s1, {repaired: "written-while-node3-was-down"}, CL.QUORUM, acked)
    # A second row nobody reads at ALL: the control for what reaches node3 without read repair.
    write(s1, {control: "control"}, CL.QUORUM, {})

    took = c.start_stopped()
    print(f"node3 restarted, all UN after {took:.1f}s")

    # A read at ALL through node1 sees node3's digest differ, reads the data from every replica,
    # and (blocking read repair) writes the newest version to node3 before answering.
    row = s1.execute(prepared(s1, select, CL.ALL), (repaired,)).one()
    assert row is not None and row.v == acked[repaired], f"ALL read via node1 returned {row}"

    # Only node3 left: it answers a read at ONE from its own data.
    c.kill(1, 2)
    c.wait_seen([3], [1, 2], "down")
    s3 = c.pinned(3)
    row = s3.execute(prepared(s3, select, CL.ONE), (repaired,)).one()
    found = {repaired: row.v if row else None}
    check("ONE read on node3 alone after the read repair", acked, found)
    # The control row, never read at ALL, did not reach node3: the repaired one got there by the
    # read repair and nothing else.
    row = s3.execute(prepared(s3, select, CL.ONE), (control,)).one()
    assert row is None, f"control row on node3 although hints are off and nothing repaired it: {row}"


def test_two_dcs_local_quorum(replicated_cluster):
    """dc1 = node1..3, dc2 = node4..6, replication {'dc1': 3, 'dc2': 3}.

    Hinted handoff is off here, so rows written while dc2 is down reach dc2 only through read
    repair, and a LOCAL_QUORUM read in dc2 asks dc2 replicas only, so it need not see them.
    Hence two batches: batch a, written at EACH_QUORUM before dc2 goes down, must be readable at
    LOCAL_QUORUM through a dc2 coordinator once dc2 is back; batch b, written at LOCAL_QUORUM while
    dc2 is down, is asserted in dc2 after a read at ALL through dc1, whose read repair writes it to
    the dc2 replicas.
    """
    c = replicated_cluster("cl-twodc", [3, 3], sets=["hinted_handoff_enabled=false"])
    dc1, dc2 = c.nodes_in("dc1"), c.nodes_in("dc2")
    s_dc1 = c.session(*dc1, local_dc="dc1")
    create_schema(c, s_dc1, "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 3}")

    batch_a: dict[int, str] = {}
    write(s_dc1, batch(0, ROWS, "a"), CL.EACH_QUORUM, batch_a)

    c.kill(*dc2)
    c.wait_seen(dc1, dc2, "down")
    batch_b: dict[int, str] = {}
    write(s_dc1, batch(ROWS, ROWS, "b"), CL.LOCAL_QUORUM, batch_b)
    both = {**batch_a, **batch_b}
    check("LOCAL_QUORUM read in dc1, dc2 down", both, read(s_dc1, both, CL.LOCAL_QUORUM))
    # EACH_QUORUM needs 2 of 3 in every datacenter; dc2 has none alive. As in Cassandra, the error
    # names the datacenter that fell short: required = quorum of dc2 (2), alive = 0.
    expect_unavailable(c, s_dc1, f"INSERT INTO {KS}.{TABLE} (k, v) VALUES (?, ?)",
                       (10 * ROWS, "never"), CL.EACH_QUORUM, required=2, alive=0)

    took = c.start_stopped()
    print(f"dc2 restarted, all UN after {took:.1f}s")
    s_dc2 = c.session(*dc2, local_dc="dc2")
    check("LOCAL_QUORUM read in dc2 of batch a (written at EACH_QUORUM)", batch_a,
          read(s_dc2, batch_a, CL.LOCAL_QUORUM))

    before = read(s_dc2, batch_b, CL.LOCAL_QUORUM)
    print(f"(information) batch b (written while dc2 was down) seen in dc2 at LOCAL_QUORUM before "
          f"any read at ALL: {sum(1 for k, v in batch_b.items() if before[k] == v)} of "
          f"{len(batch_b)}")
    begin = time.monotonic()
    check("ALL read via dc1 of batch b", batch_b, read(s_dc1, batch_b, CL.ALL))
    print(f"ALL read (with read repair) of {len(batch_b)} rows took {time.monotonic() - begin:.2f}s")
    check("LOCAL_QUORUM read in dc2 of batch b after the read at ALL", batch_b,
          read(s_dc2, batch_b, CL.LOCAL_QUORUM))

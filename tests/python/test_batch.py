"""Batches end to end (issue 4): real clusters made with `ringdb cluster`, nodes killed with
SIGKILL, the Python `cassandra-driver` as the client.

- A logged batch over many partitions at QUORUM is acknowledged, and every row reads back at
  ALL; so does an unlogged batch.
- A logged batch over several partitions needs a batchlog on another live node of the
  coordinator's datacenter: with both other nodes down, a logged batch at ONE is refused with
  Unavailable (ONE required, 0 alive) before anything is written, while an unlogged batch at ONE
  still works — as in Cassandra. After the nodes come back, a read at ALL shows the unlogged
  rows and none of the logged ones.

Replay after a coordinator dies is not tested from here: the moment to kill a coordinator
(its batchlog stored, its mutations not yet sent) cannot be hit from outside the process. The
in-process Rust tests in `node/src/coordinator/batchlog.rs` do it white-box: a batchlog stored on
a replica over the internode transport, as a dying coordinator leaves it, is replayed to every
live replica (`replay_applies_a_batch_whose_coordinator_died`), and a batch acknowledged at a
level but missed by a live replica is completed by replay
(`batch_that_misses_a_live_replica_is_completed_by_replay`).

Each test makes its own cluster (`replicated_cluster`) and ends with a checker that prints, in
numbers, what was acknowledged and what was read back. Every wait is bounded.
"""

from __future__ import annotations

import pytest
from cassandra import ConsistencyLevel, Unavailable
from cassandra.query import BatchStatement, BatchType

from test_consistency import check, create_schema, read, simple

KS = "ks_cl"  # the keyspace test_consistency's helpers create and read
TABLE = "kv"
PARTITIONS = 50  # partitions per batch

CL = ConsistencyLevel


def write_batch(session, batch_type, rows: dict[int, str], cl: int, profile=None) -> None:
    """Writes ROWS as one batch of BATCH_TYPE at CL (raises what the driver raises)."""
    insert = session.prepare(f"INSERT INTO {KS}.{TABLE} (k, v) VALUES (?, ?)")
    batch = BatchStatement(batch_type=batch_type, consistency_level=cl)
    for k, v in sorted(rows.items()):
        batch.add(insert, (k, v))
    if profile is None:
        session.execute(batch)
    else:
        session.execute(batch, execution_profile=profile)


def rows(first: int, tag: str) -> dict[int, str]:
    return {k: f"v{k}-{tag}" for k in range(first, first + PARTITIONS)}


def test_logged_and_unlogged_batches_reach_every_replica(replicated_cluster):
    c = replicated_cluster("batch-all", [3])
    session = c.session()
    create_schema(c, session, simple(3))

    logged = rows(0, "logged")
    write_batch(session, BatchType.LOGGED, logged, CL.QUORUM)
    unlogged = rows(1000, "unlogged")
    write_batch(session, BatchType.UNLOGGED, unlogged, CL.QUORUM)

    acked = {**logged, **unlogged}
    check("ALL read of a logged and an unlogged batch", acked, read(session, acked, CL.ALL))
    # Every node coordinates a logged batch the same way.
    for k in (1, 2, 3):
        more = rows(2000 + 100 * k, f"node{k}")
        write_batch(c.pinned(k), BatchType.LOGGED, more, CL.QUORUM)
        acked.update(more)
    check("ALL read of logged batches from every node", acked, read(session, acked, CL.ALL))


def test_logged_batch_needs_a_live_batchlog_node(replicated_cluster):
    c = replicated_cluster("batch-log", [3])
    session = c.session()
    create_schema(c, session, simple(3))

    c.kill(2, 3)
    c.wait_seen([1], [2, 3], "down")
    s1 = c.pinned(1)
    refused = rows(0, "logged")
    with pytest.raises(Unavailable) as info:
        write_batch(s1, BatchType.LOGGED, refused, CL.ONE, profile=c.NO_RETRY)
    e = info.value
    print(f"logged batch at ONE with node1 alone: Unavailable(consistency="
          f"{CL.value_to_name.get(e.consistency, e.consistency)}, required={e.required_replicas}, "
          f"alive={e.alive_replicas})")
    assert (e.consistency, e.required_replicas, e.alive_replicas) == (CL.ONE, 1, 0), (
        f"expected Unavailable(ONE, required 1, alive 0) for want of a batchlog node, got {e}"
    )
    # Single-partition batches need no batchlog, nor do unlogged ones.
    unlogged = rows(1000, "unlogged")
    write_batch(s1, BatchType.UNLOGGED, unlogged, CL.ONE, profile=c.NO_RETRY)
    single = {5000: "single-partition"}
    write_batch(s1, BatchType.LOGGED, single, CL.ONE, profile=c.NO_RETRY)

    took = c.start_stopped()
    print(f"node2 and node3 restarted, all UN after {took:.1f}s")
    acked = {**unlogged, **single}
    found = read(session, [*acked, *refused], CL.ALL)
    check("ALL read after restart", acked, {k: found[k] for k in acked})
    applied = sorted(k for k in refused if found[k] is not None)
    print(f"refused logged batch: {len(refused)} rows, {len(applied)} applied")
    assert not applied, (
        f"the logged batch refused with Unavailable was applied anyway: rows {applied[:10]}"
    )

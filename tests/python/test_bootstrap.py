"""Bootstrap end to end (issue 5, "Done when" 4): a node added to a cluster that holds data streams
the ranges it takes over before it serves them, and misses none of the writes made while it joins.

Three nodes with RF 2 get 50 000 rows; node4 is added with `ringdb cluster add` while a client
keeps writing at QUORUM. Once node4 is NORMAL:

- each of the four nodes owns roughly a quarter of the ring (effective ownership under RF 2: about
  half each), as `ringdb status` computes it;
- node4 alone (nodes 1-3 killed) answers, at ONE, every acknowledged row it replicates — with RF 2
  on 4 nodes about half of them, the others are Unavailable — whether written before the join
  (streamed) or during it (sent to node4 as a pending replica). This is checked first, on node4
  alone, because a read at ALL repairs what it finds missing and would hide a gap;
- with nodes 1-3 back, every acknowledged row is read at ALL.
"""

from __future__ import annotations

import time

from cassandra import ConsistencyLevel, Unavailable
from cassandra.concurrent import execute_concurrent_with_args

from test_consistency import (
    KS,
    TABLE,
    BackgroundWrites,
    batch,
    check,
    create_schema,
    prepared,
    read,
    simple,
    write,
)

CL = ConsistencyLevel
ROWS = 50_000
JOIN_TIMEOUT = 180  # seconds `ringdb cluster add` may take, streaming included


def read_where_replica(cluster, session, keys):
    """Reads KEYS at ONE through SESSION, whose node is the only one up: {key: value or None} for
    the keys it replicates, and how many were Unavailable (it is not their replica). Fails on any
    other error."""
    select = prepared(session, f"SELECT v FROM {KS}.{TABLE} WHERE k = ?", CL.ONE)
    keys = sorted(keys)
    results = execute_concurrent_with_args(
        session, select, [(k,) for k in keys], concurrency=32, raise_on_first_error=False,
        execution_profile=cluster.NO_RETRY)
    found, unavailable, errors = {}, 0, []
    for k, (ok, outcome) in zip(keys, results):
        if ok:
            row = outcome.one()
            found[k] = row.v if row else None
        elif isinstance(outcome, Unavailable):
            unavailable += 1
        else:
            errors.append(f"k={k}: {type(outcome).__name__}: {outcome}")
    assert not errors, f"{len(errors)} reads failed otherwise than Unavailable; first: {errors[0]}"
    return found, unavailable


def test_a_joining_node_streams_its_ranges_and_misses_no_write(replicated_cluster):
    c = replicated_cluster("boot", [3])
    session = c.session(1, 2, 3)
    create_schema(c, session, simple(2))
    acked: dict[int, str] = {}
    begin = time.monotonic()
    write(session, batch(0, ROWS, "before"), CL.QUORUM, acked)
    print(f"loaded {ROWS} rows at QUORUM in {time.monotonic() - begin:.1f}s")

    # A client keeps writing while node4 joins.
    with BackgroundWrites(c, ROWS, "node4 joins", limit=ROWS) as during:
        begin = time.monotonic()
        c.cli("add", c.name, "node4", "--timeout", str(JOIN_TIMEOUT), timeout=JOIN_TIMEOUT + 30)
        c.nodes, c.dcs = 4, [4]
        c.wait_all_up()
        print(f"node4 joined (UN everywhere) after {time.monotonic() - begin:.1f}s")
    during.check()
    acked.update(during.acked)

    # Each node owns about a quarter of the ring: effective ownership under RF 2 about a half.
    status = c.status_json(1)
    assert status["ownership"] == "effective", status
    owns = {n["address"]: n["owns"] for n in status["datacenters"]["dc1"]}
    print("effective ownership under RF 2: "
          + ", ".join(f"{a} {o:.1%}" for a, o in sorted(owns.items())))
    assert sorted(owns) == sorted(c.ip(k) for k in range(1, 5)), owns
    assert abs(sum(owns.values()) - 2.0) < 0.01, f"ownership does not add up to RF 2: {owns}"
    for address, share in owns.items():
        assert 0.15 <= share / 2 <= 0.35, (
            f"{address} owns {share / 2:.1%} of the ring, not roughly a quarter: {owns}")

    # node4 alone holds every acknowledged row it replicates.
    c.kill(1, 2, 3)
    c.wait_seen([4], [1, 2, 3], "down")
    found, unavailable = read_where_replica(c, c.pinned(4), acked)
    print(f"node4 alone: replica of {len(found)} of {len(acked)} acknowledged rows "
          f"({unavailable} elsewhere)")
    assert len(found) >= len(acked) // 4, f"node4 replicates only {len(found)} of {len(acked)}"
    check("ONE read on node4 alone, rows it replicates",
          {k: acked[k] for k in found}, found)

    # Everyone back: every row at ALL.
    c.start_stopped()
    check("ALL read after node4 joined", acked, read(c.session(1, 2, 3, 4), acked, CL.ALL))

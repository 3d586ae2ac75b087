"""Bootstrap end to end (issue 5): a node added to a cluster that holds data streams the ranges it
takes over before it serves them, and misses none of the writes made while it joins.

A 3-node cluster (RF 3) gets rows; node4 is added with `ringdb cluster add` while a client keeps
writing at QUORUM; then nodes 1-3 are killed and node4 alone answers reads at ONE: every key it
replicates (with RF 3 on 4 nodes, about three in four; the others are Unavailable) must come back
with its acknowledged value — whether written before the join (streamed) or during it (sent to
node4 as a pending replica).
"""

from __future__ import annotations

import time

from cassandra import ConsistencyLevel, Unavailable

from test_consistency import (
    KS,
    ROWS,
    TABLE,
    BackgroundWrites,
    batch,
    create_schema,
    prepared,
    simple,
    write,
)

CL = ConsistencyLevel
JOIN_TIMEOUT = 120  # seconds `ringdb cluster add` may take, streaming included


def test_a_joining_node_streams_its_ranges_and_misses_no_write(replicated_cluster):
    c = replicated_cluster("boot", [3])
    session = c.session(1, 2, 3)
    create_schema(c, session, simple(3))
    acked: dict[int, str] = {}
    write(session, batch(0, 3 * ROWS, "before"), CL.QUORUM, acked)

    # A client keeps writing while node4 joins.
    with BackgroundWrites(c, 10 * ROWS, "node4 joins") as during:
        begin = time.monotonic()
        c.cli("add", c.name, "node4", "--timeout", str(JOIN_TIMEOUT), timeout=JOIN_TIMEOUT + 30)
        c.nodes, c.dcs = 4, [4]
        c.wait_all_up()
        print(f"node4 joined (UN everywhere) after {time.monotonic() - begin:.1f}s")
    during.check()
    acked.update(during.acked)

    c.kill(1, 2, 3)
    c.wait_seen([4], [1, 2, 3], "down")
    s4 = c.pinned(4)
    select = prepared(s4, f"SELECT v FROM {KS}.{TABLE} WHERE k = ?", CL.ONE)
    owned, unavailable, missing, wrong = 0, 0, [], []
    for k, v in sorted(acked.items()):
        try:
            row = s4.execute(select, (k,), execution_profile=c.NO_RETRY).one()
        except Unavailable:
            unavailable += 1  # node4 is not a replica of k
            continue
        owned += 1
        if row is None:
            missing.append(k)
        elif row.v != v:
            wrong.append((k, v, row.v))
    print(f"node4 alone: replica of {owned} of {len(acked)} acknowledged rows "
          f"({unavailable} elsewhere); missing {len(missing)}, wrong {len(wrong)}")
    assert owned >= len(acked) // 2, f"node4 replicates only {owned} of {len(acked)} keys"
    assert not missing and not wrong, (
        f"{len(missing)} rows node4 replicates are missing on it (first {missing[:10]}, "
        f"written during the join: {[k for k in missing if k in during.acked][:10]}); "
        f"{len(wrong)} have another value (first {wrong[:5]})"
    )

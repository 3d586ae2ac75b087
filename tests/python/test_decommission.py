"""Decommission end to end (issue 5): `ringdb decommission --host NODE` makes a node stream its
ranges to the nodes taking them over, hand over its hints, leave the ring (LEFT) and stop — and
nothing written before or during it is lost.

A 4-node cluster (RF 3) gets rows; node4 is decommissioned while a client keeps writing at QUORUM
through nodes 1-3. Afterwards node4 is gone from `ringdb status`, its process has exited, and
starting it again is refused. With RF 3 on the 3 nodes left each holds every row: node1 alone (2
and 3 killed) must answer every acknowledged row at ONE, including those whose replicas were
node2, node3 and node4 before (node1 got them only by streaming, or as a pending replica).
"""

from __future__ import annotations

import subprocess
import time

from cassandra import ConsistencyLevel

from test_consistency import (
    ROWS,
    BackgroundWrites,
    batch,
    check,
    create_schema,
    read,
    simple,
    write,
)

CL = ConsistencyLevel
DECOMMISSION_TIMEOUT = 120


def test_decommission_streams_every_row_to_the_nodes_that_stay(replicated_cluster):
    c = replicated_cluster("decom", [4])
    session = c.session(1, 2, 3)
    create_schema(c, session, simple(3))
    acked: dict[int, str] = {}
    write(session, batch(0, 3 * ROWS, "before"), CL.QUORUM, acked)

    with BackgroundWrites(c, 10 * ROWS, "node4 leaves") as during:
        begin = time.monotonic()
        result = subprocess.run(
            [str(c.binary), "decommission", "--host", c.ip(4)],
            capture_output=True, text=True, timeout=DECOMMISSION_TIMEOUT,
        )
        print(f"decommission took {time.monotonic() - begin:.1f}s: {result.stdout.strip()}")
        assert result.returncode == 0, f"decommission failed:\n{result.stdout}{result.stderr}"
        assert "left the ring" in result.stdout, result.stdout
    during.check()
    acked.update(during.acked)

    # node4 is gone: not in anyone's status, its process exited, and it refuses to come back.
    deadline = time.monotonic() + 30
    while True:
        shown = {n["address"] for nodes in c.status_json(1)["datacenters"].values() for n in nodes}
        if c.ip(4) not in shown:
            break
        assert time.monotonic() < deadline, f"node4 still in node1's status: {sorted(shown)}"
        time.sleep(0.5)
    restart = c.cli("start", c.name, "node4", "--timeout", "15", timeout=60, check=False)
    assert restart.returncode != 0, "a decommissioned node started again"
    log = c.cli("logs", c.name, "node4", "--tail", "50", check=False).stdout
    assert "decommissioned" in log, log

    # With RF 3 on three nodes, node1 alone holds every row.
    c.kill(2, 3)
    c.wait_seen([1], [2, 3], "down")
    check("ONE read on node1 alone after node4 left", acked, read(c.pinned(1), acked, CL.ONE))

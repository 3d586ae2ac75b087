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

import json
import subprocess
import time

from cassandra import ConsistencyLevel

from test_consistency import (
    KS,
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


def test_decommission_then_removenode_keeps_every_replica(replicated_cluster):
    """Issue 5, "Done when" 5: four nodes with RF 2; node2 is decommissioned (`ringdb cluster
    decommission`), then node4 is killed and removed (`ringdb cluster removenode`, run by node1)
    while a client keeps writing at ONE. The two nodes left each replicate every row (RF 2 on two
    nodes: `ringdb status` shows 100% effective ownership each), which each must answer alone at
    ONE with the others down; then every row reads at QUORUM (both replicas)."""
    c = replicated_cluster("shrink", [4])
    session = c.session(1, 3)
    create_schema(c, session, simple(2))
    acked: dict[int, str] = {}
    write(session, batch(0, 20 * ROWS, "before"), CL.QUORUM, acked)

    with BackgroundWrites(c, 20 * ROWS, "node2 leaves", nodes=(1, 3, 4)) as during:
        c.cli("decommission", c.name, "node2", timeout=DECOMMISSION_TIMEOUT)
    during.check()
    acked.update(during.acked)

    # Removenode refuses a live node and says why, before anything happens.
    refused = subprocess.run(
        [str(c.binary), "removenode", "--host", c.ip(1), host_id_of(c, 1, 3)],
        capture_output=True, text=True, timeout=60,
    )
    assert refused.returncode != 0 and "is up" in refused.stderr, refused.stderr

    c.kill(4)
    c.wait_seen([1, 3], [4], "down")
    with BackgroundWrites(c, 30 * ROWS, "node4 is removed", nodes=(1, 3), cl=CL.ONE) as during:
        result = c.cli("removenode", c.name, "node4", "--via", "node1",
                       timeout=DECOMMISSION_TIMEOUT)
        print(result.stdout.strip())
    during.check()
    acked.update(during.acked)

    # Two nodes left, each a replica of everything.
    c.nodes, c.dcs = 3, [3]  # node numbers still go up to 3; node2 is gone
    status = json.loads(subprocess.run(
        [str(c.binary), "status", KS, "--host", c.ip(1), "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout)
    owns = {n["address"]: n["owns"] for nodes in status["datacenters"].values() for n in nodes}
    print(f"after decommission and removenode: {owns}")
    assert sorted(owns) == sorted([c.ip(1), c.ip(3)]), f"the ring is not node1 + node3: {owns}"
    assert all(abs(o - 1.0) < 1e-6 for o in owns.values()), f"not RF 2 on two nodes: {owns}"

    for alone, other in ((1, 3), (3, 1)):
        c.kill(other)
        c.wait_seen([alone], [other], "down")
        check(f"ONE read on node{alone} alone", acked, read(c.pinned(alone), acked, CL.ONE))
        c.cli("start", c.name, f"node{other}", "--timeout", "60", timeout=120)
        c.wait_seen([alone], [other], "up")
    check("QUORUM read on node1 + node3", acked, read(c.session(1, 3), acked, CL.QUORUM))


def host_id_of(c, observer: int, k: int) -> str:
    """Node K's host id as node OBSERVER's `ringdb status` shows it."""
    for nodes in c.status_json(observer)["datacenters"].values():
        for n in nodes:
            if n["address"] == c.ip(k):
                return n["host_id"]
    raise AssertionError(f"node{observer} does not list node{k}")

"""Partitions and slow links made with `ringdb cluster partition / delay / heal` (issue 6):
real clusters, the Python `cassandra-driver` as the client.

- 5 nodes, RF 3: `partition node1,node2 / node3,node4,node5` cuts the internode traffic both
  ways: each side sees the other down while clients still reach every node; writes at ONE on
  both sides are kept as hints; after `heal` everyone is up again, hints drain, and every
  acknowledged row is on all of its replicas. Run with the packet filter (nftables, where the
  machine allows it) and with the nodes' transport hook.
- 3 + 3 nodes, `delay dc1 / dc2 --ms 200`: LOCAL_QUORUM in dc1 does not wait for dc2, and
  EACH_QUORUM pays the delay.
- 3 + 3 nodes, `partition dc1 / dc2`: both datacenters keep serving LOCAL_QUORUM; after `heal`,
  hints and repair make them equal: every node alone serves every row.
- `ringdb drain` stops a node gracefully; it comes back on its data.
"""

from __future__ import annotations

import statistics
import subprocess
import time

import pytest
from cassandra import ConsistencyLevel

from ringdb_node import _scrubbed_env, run
from test_consistency import KS, TABLE, batch, check, create_schema, prepared, read, simple, write
from test_hints import pending_hints
from test_repair import repair

CL = ConsistencyLevel
HEAL_TIMEOUT = 120.0  # seconds hints may take to drain after a heal
NTS = "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 3}"


def nft_usable() -> str | None:
    """None when nftables can be used here, else why not."""
    try:
        r = subprocess.run(["nft", "list", "tables"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"nft cannot run: {e}"
    return None if r.returncode == 0 else f"nft list tables failed: {r.stderr.decode().strip()}"


def cluster_cli(c, *args: str, mechanism: str | None = None):
    """`ringdb cluster ARGS --dir DIR`, optionally forcing the partition mechanism."""
    extra = {"RINGDB_PARTITION_MECHANISM": mechanism} if mechanism else None
    cmd = [str(c.binary), "cluster", *args, "--dir", str(c.dir)]
    result = run(cmd, timeout=60, env=_scrubbed_env(extra))
    print(f"$ ringdb cluster {' '.join(args)}\n{result.stdout}{result.stderr}")
    assert result.returncode == 0, f"`{' '.join(cmd)}` exited with {result.returncode}"
    return result


def wait_hints_drained(c, holders, timeout: float = HEAL_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        held = {t: pending_hints(c, holders, t) for t in range(1, c.nodes + 1)}
        if not any(held.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"hints still held after {timeout}s: {held}")
        time.sleep(0.5)


def write_some(session, rows: dict[int, str], cl: int) -> dict[int, str]:
    """Writes ROWS at CL one by one; returns those acknowledged (errors are expected for some)."""
    insert = prepared(session, f"INSERT INTO {KS}.{TABLE} (k, v) VALUES (?, ?)", cl)
    acked = {}
    for k, v in rows.items():
        try:
            session.execute(insert, (k, v), timeout=10)
            acked[k] = v
        except Exception as e:  # noqa: BLE001 - an unacknowledged write is allowed here
            print(f"  (not acknowledged: k={k}: {type(e).__name__})")
    return acked


@pytest.mark.parametrize("mechanism", ["nftables", "hook"])
def test_partition_and_heal_five_nodes(replicated_cluster, mechanism):
    if mechanism == "nftables" and (why := nft_usable()):
        pytest.skip(f"SKIPPED: packet filter unavailable here ({why}); the hook variant runs")
    c = replicated_cluster(f"part5-{mechanism}", [5])
    create_schema(c, c.session(), simple(3))

    out = cluster_cli(c, "partition", c.name, "node1,node2", "/", "node3,node4,node5",
                      mechanism=mechanism).stdout
    want = "packet filter" if mechanism == "nftables" else "transport hook"
    assert want in out, f"the CLI must say which mechanism it used: {out}"
    c.wait_seen([1, 2], [3, 4, 5], "down")
    c.wait_seen([3, 4, 5], [1, 2], "down")
    c.wait_seen([1], [2], "up")
    c.wait_seen([3], [4, 5], "up")
    status = c.cli("status", c.name, check=False).stdout
    assert "FAULT: cut links:" in status, status

    # Clients still reach both sides; writes at ONE are acknowledged where a replica is on the
    # coordinator's side, and kept as hints for the other side.
    minority = write_some(c.pinned(1), batch(0, 200, "minority"), CL.ONE)
    majority = write_some(c.pinned(4), batch(1000, 200, "majority"), CL.ONE)
    print(f"acknowledged during the partition: {len(minority)} on node1,node2's side, "
          f"{len(majority)} on node3..5's side")
    assert minority and majority, "each side acknowledges writes for the keys it replicates"

    cluster_cli(c, "heal", c.name)
    assert "FAULT" not in c.cli("status", c.name, check=False).stdout
    c.wait_all_up()
    wait_hints_drained(c, range(1, 6))
    acked = {**minority, **majority}
    # The hints are delivered: every coordinator reads every acknowledged row at ALL.
    for k in range(1, 6):
        check(f"ALL read through node{k} after heal", acked, read(c.pinned(k), acked, CL.ALL))


def test_delay_between_datacenters_costs_each_quorum_only(replicated_cluster):
    c = replicated_cluster("delay2dc", [3, 3])
    dc1 = c.nodes_in("dc1")
    s = c.session(*dc1, local_dc="dc1")
    create_schema(c, s, NTS)

    def latencies(cl: int, first: int, n: int) -> list[float]:
        insert = prepared(s, f"INSERT INTO {KS}.{TABLE} (k, v) VALUES (?, ?)", cl)
        out = []
        for k in range(first, first + n):
            begin = time.monotonic()
            s.execute(insert, (k, "d"), timeout=10)
            out.append((time.monotonic() - begin) * 1000)
        return out

    before = statistics.median(latencies(CL.LOCAL_QUORUM, 0, 30))
    cluster_cli(c, "delay", c.name, "dc1", "/", "dc2", "--ms", "200")
    local = statistics.median(latencies(CL.LOCAL_QUORUM, 100, 30))
    each = statistics.median(latencies(CL.EACH_QUORUM, 200, 10))
    print(f"median write latency: LOCAL_QUORUM {before:.1f} ms before the delay, "
          f"{local:.1f} ms with +200 ms each way to dc2; EACH_QUORUM {each:.1f} ms")
    # A round trip to dc2 now takes 400 ms more: EACH_QUORUM must wait for it, LOCAL_QUORUM
    # must not (it would cost at least 400 ms if it did).
    assert each >= 400, f"EACH_QUORUM did not pay the delay: {each:.1f} ms"
    assert local < 200, f"LOCAL_QUORUM waited for the remote datacenter: {local:.1f} ms"
    cluster_cli(c, "delay", c.name, "dc1", "/", "dc2", "--ms", "0")


def test_datacenter_partition_keeps_local_quorum_and_heals(replicated_cluster):
    c = replicated_cluster("part2dc", [3, 3])
    dc1, dc2 = c.nodes_in("dc1"), c.nodes_in("dc2")
    s1 = c.session(*dc1, local_dc="dc1")
    s2 = c.session(*dc2, local_dc="dc2")
    create_schema(c, s1, NTS)

    cluster_cli(c, "partition", c.name, "dc1", "/", "dc2")
    c.wait_seen(dc1, dc2, "down")
    c.wait_seen(dc2, dc1, "down")
    in_dc1: dict[int, str] = {}
    in_dc2: dict[int, str] = {}
    write(s1, batch(0, 300, "dc1"), CL.LOCAL_QUORUM, in_dc1)
    write(s2, batch(1000, 300, "dc2"), CL.LOCAL_QUORUM, in_dc2)
    check("LOCAL_QUORUM in dc1 during the partition", in_dc1, read(s1, in_dc1, CL.LOCAL_QUORUM))
    check("LOCAL_QUORUM in dc2 during the partition", in_dc2, read(s2, in_dc2, CL.LOCAL_QUORUM))

    cluster_cli(c, "heal", c.name)
    c.wait_all_up()
    wait_hints_drained(c, range(1, 7))
    code, report, _ = repair(c, 1)
    assert code == 0, report
    acked = {**in_dc1, **in_dc2}
    # Every node holds every row (RF 3 in each 3-node datacenter): LOCAL_ONE pinned to one node
    # reads its own copy.
    for k in range(1, 7):
        check(f"LOCAL_ONE on node{k} alone after heal and repair", acked,
              read(c.pinned(k), acked, CL.LOCAL_ONE))


def test_drain_stops_a_node_gracefully_and_it_comes_back(replicated_cluster):
    """`ringdb drain` (the Kubernetes preStop hook): the node announces SHUTDOWN, stops and
    exits; the others see it down at once (no failure-detector delay needed) and keep serving
    QUORUM; it starts again on its data and the cluster reads everything at ALL."""
    c = replicated_cluster("drain", [3])
    session = c.session()
    create_schema(c, session, simple(3))
    acked: dict[int, str] = {}
    write(session, batch(0, 200, "before"), CL.ALL, acked)

    cmd = [str(c.binary), "drain", "--host", c.ip(3)]
    result = run(cmd, timeout=150, env=_scrubbed_env())
    print(f"$ ringdb drain --host {c.ip(3)}\n{result.stdout}{result.stderr}")
    assert result.returncode == 0 and "drained" in result.stdout, result.stderr
    c.wait_seen([1, 2], [3], "down")
    deadline = time.monotonic() + 60
    while "running" in [line.split()[4] for line in c.cli("status", c.name, check=False)
                        .stdout.splitlines() if line.startswith("node3 ")]:
        assert time.monotonic() < deadline, "node3 still runs after drain"
        time.sleep(0.5)
    write(c.pinned(1), batch(1000, 100, "during"), CL.QUORUM, acked)

    c.start_stopped()
    c.wait_seen([1, 2, 3], [1, 2, 3], "up")
    check("ALL read after node3 is back", acked, read(session, acked, CL.ALL))

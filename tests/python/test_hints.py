"""Hinted handoff end to end (issue 5): real clusters made with `ringdb cluster`, nodes killed with
SIGKILL, the Python `cassandra-driver` as the client.

- Writes a replica misses while it is down (10 000 rows at ONE, the issue's scenario) are kept as
  hints by their coordinators (counted in `system_views.cluster_status.pending_hints`), replayed
  when it is back, and then served by that replica alone.
- A write at ANY whose every replica is down is acknowledged on a stored hint, and reaches the
  replica when it returns.
- With `hinted_handoff_enabled: false` nothing is kept, and ANY with no replica alive is
  Unavailable.

Every wait is bounded; each test ends with the checker of test_consistency.py.
"""

from __future__ import annotations

import time

from cassandra import ConsistencyLevel, Unavailable

from test_consistency import KS, ROWS, TABLE, batch, check, create_schema, prepared, read, simple, write

CL = ConsistencyLevel
REPLAY_TIMEOUT = 120.0  # seconds hints may take to reach a restarted node
MISSED = 10_000  # rows node3 misses


def pending_hints(c, holders, target: int) -> int:
    """Hints nodes HOLDERS hold for node TARGET, from their system_views.cluster_status."""
    total = 0
    for k in holders:
        for row in c.pinned(k).execute("SELECT peer, pending_hints FROM system_views.cluster_status"):
            if str(row.peer) == c.ip(target):
                total += row.pending_hints or 0
    return total


def wait_pending(c, holders, target: int, want, timeout: float) -> int:
    """Polls pending_hints until WANT(count) holds; returns the count."""
    deadline = time.monotonic() + timeout
    while True:
        n = pending_hints(c, holders, target)
        if want(n):
            return n
        if time.monotonic() > deadline:
            raise AssertionError(f"hints held for node{target} by {list(holders)} stuck at {n}")
        time.sleep(0.5)


def test_missed_writes_reach_the_replica_through_hints(replicated_cluster):
    c = replicated_cluster("hints-replay", [3])
    session = c.session()
    create_schema(c, session, simple(3))

    c.kill(3)
    c.wait_seen([1, 2], [3], "down")
    acked: dict[int, str] = {}
    write(session, batch(0, MISSED, "h"), CL.ONE, acked)
    # Every write is coordinated by node1 or node2, which keeps one hint for node3.
    held = wait_pending(c, [1, 2], 3, lambda n: n >= len(acked), timeout=60.0)
    print(f"hints held for node3 while it is down: {held} for {len(acked)} writes")
    assert held == len(acked), f"{held} hints for {len(acked)} writes node3 missed"

    took = c.start_stopped()
    print(f"node3 restarted, all UN after {took:.1f}s")
    wait_pending(c, [1, 2], 3, lambda n: n == 0, timeout=REPLAY_TIMEOUT)

    # Only node3 left: it serves every write it missed from its own data.
    c.kill(1, 2)
    c.wait_seen([3], [1, 2], "down")
    check("ONE read on node3 alone after hint replay", acked, read(c.pinned(3), acked, CL.ONE))


def test_any_is_acknowledged_on_a_hint_when_every_replica_is_down(replicated_cluster):
    c = replicated_cluster("hints-any", [3])
    session = c.pinned(1)
    create_schema(c, session, simple(1))

    c.kill(3)
    c.wait_seen([1], [3], "down")
    acked: dict[int, str] = {}
    # RF 1: about a third of these keys live on node3 alone, which is down.
    write(session, batch(0, ROWS, "any"), CL.ANY, acked)
    held = wait_pending(c, [1], 3, lambda n: n > 0, timeout=10.0)
    print(f"ANY: {len(acked)} acknowledged, {held} of them as hints for node3")

    c.start_stopped()
    wait_pending(c, [1], 3, lambda n: n == 0, timeout=REPLAY_TIMEOUT)
    check("ONE read after the hints for node3 were replayed", acked, read(session, acked, CL.ONE))


def test_disabled_hinted_handoff_keeps_nothing(replicated_cluster):
    c = replicated_cluster("hints-off", [3], sets=["hinted_handoff_enabled=false"])
    session = c.pinned(1)
    create_schema(c, session, simple(1))

    c.kill(3)
    c.wait_seen([1], [3], "down")
    insert = prepared(session, f"INSERT INTO {KS}.{TABLE} (k, v) VALUES (?, ?)", CL.ANY)
    outcomes = {"acknowledged": 0, "unavailable": 0}
    for k in range(ROWS):
        try:
            session.execute(insert, (k, "off"), execution_profile=c.NO_RETRY)
            outcomes["acknowledged"] += 1
        except Unavailable:
            outcomes["unavailable"] += 1
    print(f"ANY with hints off and node3 down: {outcomes}")
    assert outcomes["unavailable"] > 0, "no key of 100 lives on node3 alone?"
    assert outcomes["acknowledged"] > 0, "keys on node1 and node2 must be written"
    assert pending_hints(c, [1, 2], 3) == 0

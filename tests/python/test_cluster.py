"""The Python `cassandra-driver` against a five-node local cluster made with `ringdb cluster`:
connected to node1 only, it discovers all five nodes through system.peers, with their
datacenter, rack, host id and tokens, builds the token ring from them, and reaches every node.
"""

from __future__ import annotations

import time

import pytest
from cassandra.cluster import Cluster
from cassandra.query import SimpleStatement

NODES = 5
NUM_TOKENS = 16  # `ringdb cluster create` default
DISCOVERY_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def five(cluster_factory):
    return cluster_factory("pyfive", NODES)


@pytest.fixture(scope="module")
def driver(five):
    c = Cluster([five.ip(1)], port=9042)  # one contact point on purpose
    session = c.connect()
    yield c, session
    c.shutdown()


def test_cli_status_shows_every_node_up(five):
    status = five.cli("status", five.name)
    assert status.returncode == 0, status.stdout + status.stderr
    rows = [line for line in status.stdout.splitlines() if line.startswith("node")]
    assert len(rows) == NODES, status.stdout
    for k, row in enumerate(rows, start=1):
        assert row.startswith(f"node{k} ") and five.ip(k) in row and "running" in row, row
        assert row.endswith(" ".join(["UN"] * NODES)), row


def test_driver_connected_to_node1_discovers_all_five(five, driver):
    cluster, _ = driver
    deadline = time.monotonic() + DISCOVERY_TIMEOUT
    while True:
        hosts = cluster.metadata.all_hosts()
        if len(hosts) == NODES and all(h.is_up for h in hosts):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"after {DISCOVERY_TIMEOUT}s the driver sees {[(h, h.is_up) for h in hosts]}")
        time.sleep(0.2)
    by_address = {h.address: h for h in hosts}
    assert set(by_address) == set(five.ips()), by_address
    for k in range(1, NODES + 1):
        h = by_address[five.ip(k)]
        assert h.datacenter == "dc1", (h, h.datacenter)
        assert h.rack == f"rack{(k - 1) % 3 + 1}", (h, h.rack)
        assert h.host_id is not None, h
    assert len({h.host_id for h in hosts}) == NODES, "host ids must differ"
    assert cluster.metadata.cluster_name == five.name


def test_driver_builds_the_token_ring_from_every_node(five, driver):
    cluster, _ = driver
    token_map = cluster.metadata.token_map
    assert token_map is not None, "driver built no token map"
    owners: dict[str, int] = {}
    for token, host in token_map.token_to_host_owner.items():
        owners[host.address] = owners.get(host.address, 0) + 1
    assert owners == {ip: NUM_TOKENS for ip in five.ips()}, owners
    assert len(token_map.ring) == NODES * NUM_TOKENS


def test_driver_reaches_each_node_and_each_names_itself(five, driver):
    cluster, session = driver
    for host in cluster.metadata.all_hosts():
        stmt = SimpleStatement("SELECT rpc_address, data_center, rack FROM system.local")
        row = session.execute(stmt, host=host).one()
        assert str(row.rpc_address) == host.address, (host, row)
        assert (row.data_center, row.rack) == (host.datacenter, host.rack), (host, row)

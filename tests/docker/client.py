"""The Python driver side of the Docker tier (tests/docker/run): writes and reads from the host
through the CQL ports the compose file publishes, keeping a ledger of acknowledged writes.

    client.py write --dc dc1 --cl LOCAL_QUORUM --prefix p3 --count 200
    client.py read  --dc dc2 --cl LOCAL_QUORUM [--prefix p3] [--settle 10]
    client.py check --node node4            every acknowledged write, at ONE through that node only

Environment: RINGDB_DOCKER_NODES, a JSON file mapping each node name to {"ip": its container
address, "dc": ..., "host": published address, "port": published port}; RINGDB_DOCKER_LEDGER,
the ledger file (one JSON object per acknowledged write); RINGDB_DOCKER_KEYSPACE.

Nodes announce their container addresses (system.local, system.peers); an endpoint factory maps
each one to its published host:port, so the driver reaches every node through the mapped ports,
as a client outside the Docker network would. `read` and `write` keep to one datacenter
(DCAwareRoundRobinPolicy, token-aware); `check` talks to a single node, whose replica answers a
read at ONE itself (a coordinator reads its own replica first), so it proves that replica holds
every acknowledged write. Every command prints its figures and exits 1 when a write was not
acknowledged or an acknowledged write was not read back.
"""

import argparse
import json
import logging
import os
import sys
import time
import uuid

from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.connection import DefaultEndPoint, EndPointFactory
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    FallthroughRetryPolicy,
    HostDistance,
    RoundRobinPolicy,
    TokenAwarePolicy,
)

TABLE = "kv"
CONCURRENCY = 16


def load_nodes():
    with open(os.environ["RINGDB_DOCKER_NODES"]) as f:
        return json.load(f)


class PublishedEndPointFactory(EndPointFactory):
    """Maps a node's announced (container) address to its published host:port."""

    def __init__(self, nodes):
        self.by_ip = {n["ip"]: (n["host"], n["port"]) for n in nodes.values()}

    def create(self, row):
        from cassandra.metadata import _NodeInfo

        addr = _NodeInfo.get_broadcast_rpc_address(row)
        host, port = self.by_ip.get(addr, (addr, 9042))
        return DefaultEndPoint(host, port)


class OneNodePolicy(RoundRobinPolicy):
    """Sends every request to one node (told apart by endpoint: every node is published on the
    same host address, so the driver's WhiteListRoundRobinPolicy, which filters by address,
    cannot single one out)."""

    def __init__(self, endpoint):
        super().__init__()
        self.endpoint = endpoint

    def populate(self, cluster, hosts):
        super().populate(cluster, [h for h in hosts if h.endpoint == self.endpoint])

    def distance(self, host):
        return HostDistance.LOCAL if host.endpoint == self.endpoint else HostDistance.IGNORED

    def on_up(self, host):
        if host.endpoint == self.endpoint:
            super().on_up(host)

    def on_add(self, host):
        if host.endpoint == self.endpoint:
            super().on_add(host)


def connect(nodes, names, policy, cl):
    points = [DefaultEndPoint(nodes[n]["host"], nodes[n]["port"]) for n in names]
    profile = ExecutionProfile(
        load_balancing_policy=policy,
        retry_policy=FallthroughRetryPolicy(),  # a failure is counted, not hidden by a retry
        consistency_level=cl,
        request_timeout=10,
    )
    cluster = Cluster(
        contact_points=points,
        endpoint_factory=PublishedEndPointFactory(nodes),
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=4,
        connect_timeout=5,
        control_connection_timeout=5,
    )
    return cluster, cluster.connect()


def dc_session(nodes, dc, cl):
    names = [n for n, v in sorted(nodes.items()) if v["dc"] == dc]
    policy = TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=dc))
    return connect(nodes, names, policy, cl)


def ledger_path():
    return os.environ["RINGDB_DOCKER_LEDGER"]


def read_ledger(prefix=None):
    acked = {}
    if os.path.exists(ledger_path()):
        with open(ledger_path()) as f:
            for line in f:
                w = json.loads(line)
                if prefix is None or w["k"].startswith(prefix + "-"):
                    acked[w["k"]] = w["v"]
    return acked


def cmd_write(args, nodes, ks):
    cl = ConsistencyLevel.name_to_value[args.cl]
    cluster, session = dc_session(nodes, args.dc, cl)
    try:
        insert = session.prepare(f"INSERT INTO {ks}.{TABLE} (k, v, dc) VALUES (?, ?, ?)")
        insert.consistency_level = cl
        run = uuid.uuid4().hex[:8]
        rows = [
            (f"{args.prefix}-{i:05d}", f"{args.prefix}-{i}-{run}", args.dc)
            for i in range(args.count)
        ]
        start = time.monotonic()
        results = execute_concurrent_with_args(
            session, insert, rows, concurrency=CONCURRENCY, raise_on_first_error=False
        )
        elapsed = time.monotonic() - start
        acked, errors = 0, {}
        with open(ledger_path(), "a") as ledger:
            for (k, v, _), (ok, result) in zip(rows, results):
                if ok:
                    acked += 1
                    ledger.write(json.dumps({"k": k, "v": v, "dc": args.dc, "cl": args.cl}) + "\n")
                else:
                    name = type(result).__name__
                    errors[name] = errors.get(name, 0) + 1
        print(
            f"  write {args.prefix}: {args.count} at {args.cl} through {args.dc}: "
            f"{acked} acknowledged, {args.count - acked} failed {errors or ''} in {elapsed:.1f}s"
        )
        return 0 if acked == args.count else 1
    finally:
        cluster.shutdown()


def read_back(session, ks, cl, acked, settle):
    """Reads every acknowledged key; keys not found yet are read again until `settle` seconds
    have passed (a write acknowledged in another datacenter reaches this one asynchronously).
    Returns (found, missing, wrong, errors, late)."""
    select = session.prepare(f"SELECT v FROM {ks}.{TABLE} WHERE k = ?")
    select.consistency_level = cl
    pending = sorted(acked)
    found, wrong, errors, late = 0, [], {}, 0
    deadline = time.monotonic() + settle
    first = True
    while True:
        results = execute_concurrent_with_args(
            session, select, [(k,) for k in pending], concurrency=CONCURRENCY,
            raise_on_first_error=False,
        )
        retry = []
        for k, (ok, result) in zip(pending, results):
            if not ok:
                name = type(result).__name__
                errors[name] = errors.get(name, 0) + 1
                continue
            rows = list(result)
            if not rows:
                retry.append(k)
            elif rows[0].v == acked[k]:
                found += 1
                late += 0 if first else 1
            else:
                wrong.append((k, acked[k], rows[0].v))
        pending = retry
        first = False
        if not pending or time.monotonic() >= deadline:
            return found, pending, wrong, errors, late
        time.sleep(0.5)


def report(what, acked, found, missing, wrong, errors, late):
    print(
        f"  {what}: acknowledged {len(acked)}, read back {found}, missing {len(missing)}, "
        f"wrong value {len(wrong)}, errors {sum(errors.values())} {errors or ''}"
        + (f" ({late} visible only after a retry)" if late else "")
    )
    for k in missing[:5]:
        print(f"    missing {k}")
    for k, want, got in wrong[:5]:
        print(f"    {k}: expected {want!r}, read {got!r}")
    return 0 if found == len(acked) and len(acked) > 0 else 1


def cmd_read(args, nodes, ks):
    cl = ConsistencyLevel.name_to_value[args.cl]
    acked = read_ledger(args.prefix)
    cluster, session = dc_session(nodes, args.dc, cl)
    try:
        res = read_back(session, ks, cl, acked, args.settle)
        what = f"read {args.prefix or 'everything'} at {args.cl} through {args.dc}"
        return report(what, acked, *res)
    finally:
        cluster.shutdown()


def cmd_check(args, nodes, ks):
    acked = read_ledger()
    node = nodes[args.node]
    policy = OneNodePolicy(DefaultEndPoint(node["host"], node["port"]))
    cluster, session = connect(nodes, [args.node], policy, ConsistencyLevel.ONE)
    try:
        res = read_back(session, ks, ConsistencyLevel.ONE, acked, 0)
        return report(f"{args.node} ({node['dc']}) at ONE", acked, *res)
    finally:
        cluster.shutdown()


def main():
    logging.basicConfig(level=logging.CRITICAL)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("--dc", required=True)
    w.add_argument("--cl", default="LOCAL_QUORUM")
    w.add_argument("--prefix", required=True)
    w.add_argument("--count", type=int, default=200)
    r = sub.add_parser("read")
    r.add_argument("--dc", required=True)
    r.add_argument("--cl", default="LOCAL_QUORUM")
    r.add_argument("--prefix")
    r.add_argument("--settle", type=float, default=0)
    c = sub.add_parser("check")
    c.add_argument("--node", required=True)
    args = p.parse_args()
    nodes = load_nodes()
    ks = os.environ.get("RINGDB_DOCKER_KEYSPACE", "dockertest")
    return {"write": cmd_write, "read": cmd_read, "check": cmd_check}[args.cmd](args, nodes, ks)


if __name__ == "__main__":
    sys.exit(main())

"""pytest fixtures for the ringdb end-to-end tests: a real `ringdb node` per test module, and
local multi-node clusters made with the `ringdb cluster` CLI (`cluster_factory`).

When a test fails, the log tail of every node alive at that moment is attached to the failure
report and the node's temp dir is kept (its path is printed). A missing binary skips the tests
with a SKIPPED reason, except in CI (CI=true), where it is an error.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ringdb_node import (  # noqa: E402
    LOG_TAIL_LINES,
    RingdbNode,
    _port_free,
    _scrubbed_env,
    in_ci,
    ringdb_bin,
    run,
)

# Nodes alive right now, so a failing test can show their logs.
ACTIVE_NODES: list[RingdbNode] = []


@pytest.fixture(scope="session")
def ringdb_binary() -> Path:
    binary = ringdb_bin()
    if not binary.is_file():
        reason = (
            f"ringdb binary not found at {binary} "
            "(set RINGDB_BIN or run `cargo build --release -p ringdb-node`)"
        )
        if in_ci():
            pytest.fail(f"{reason}; CI=true, so this is a failure, not a skip", pytrace=False)
        pytest.skip(f"SKIPPED: {reason}")
    return binary


def start_node(
    binary: Path, config: dict[str, str] | None = None, ssl_context=None
) -> RingdbNode:
    node = RingdbNode(binary, config, ssl_context=ssl_context)
    ACTIVE_NODES.append(node)
    try:
        node.start().wait_ready()
    except Exception:
        node.keep = True
        ACTIVE_NODES.remove(node)
        node.close()
        raise
    return node


def stop_node(node: RingdbNode) -> None:
    if node in ACTIVE_NODES:
        ACTIVE_NODES.remove(node)
    if node.keep:
        print(f"\nkept {node.dir} (log {node.log_path})")
    node.close()


@pytest.fixture(scope="module")
def node(ringdb_binary):
    """One node shared by the tests of a module."""
    n = start_node(ringdb_binary)
    yield n
    stop_node(n)


# -- clusters made by `ringdb cluster` -------------------------------------------------------------

CLUSTER_BLOCK = 16  # loopback addresses reserved per cluster
CLUSTER_TIMEOUT = 180.0  # seconds a cluster may take to come up
_cluster_counter = itertools.count()


def unique_cluster_base_ip(nodes: int) -> str:
    """The first of CLUSTER_BLOCK consecutive free loopback addresses (127.2.x.y; the Rust harness
    uses 127.1.x.y and single nodes 127.0.x.y). Node K of a cluster gets base + K - 1."""
    if not 1 <= nodes <= CLUSTER_BLOCK:
        raise ValueError(f"a test cluster has 1..{CLUSTER_BLOCK} nodes")
    blocks_per_net, slots = 15, 15 * 256
    base = (os.getpid() * 7919 + 3) % slots
    for _ in range(slots):
        slot = (base + next(_cluster_counter)) % slots
        x, first = slot // blocks_per_net, (slot % blocks_per_net) * CLUSTER_BLOCK + 1
        ips = [f"127.2.{x}.{first + i}" for i in range(CLUSTER_BLOCK)]
        if all(_port_free(ip, p) for ip in ips for p in (9042, 7000, 9500)):
            return ips[0]
    raise RuntimeError(f"no free block of {CLUSTER_BLOCK} addresses in 127.2.0.0/16")


class RingdbCluster:
    """A local cluster driven through the `ringdb cluster` CLI, in a folder of its own."""

    def __init__(self, binary: Path, name: str, dir: Path, nodes: int):
        self.binary = binary
        self.name = name
        self.dir = dir
        self.nodes = nodes
        self.base_ip = unique_cluster_base_ip(nodes)
        self.keep = False

    def ip(self, k: int) -> str:
        """The address of node K (1-based)."""
        a, b, c, d = (int(x) for x in self.base_ip.split("."))
        n = (a << 24 | b << 16 | c << 8 | d) + k - 1
        return ".".join(str((n >> s) & 255) for s in (24, 16, 8, 0))

    def ips(self) -> list[str]:
        return [self.ip(k) for k in range(1, self.nodes + 1)]

    def cli(self, *args: str, timeout: float = 60.0, check: bool = True):
        """Runs `ringdb cluster ARGS --dir DIR` (bounded); raises with its output when it fails."""
        cmd = [str(self.binary), "cluster", *args, "--dir", str(self.dir)]
        result = run(cmd, timeout=timeout, env=_scrubbed_env())
        if check and result.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(cmd)}` exited with {result.returncode}\n"
                f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
            )
        return result

    def create_and_start(self) -> "RingdbCluster":
        self.cli(
            "create", self.name, "-n", str(self.nodes), "--base-ip", self.base_ip,
            "--start", "--timeout", str(int(CLUSTER_TIMEOUT)),
            timeout=CLUSTER_TIMEOUT + 60,
        )
        return self

    def remove(self) -> None:
        """Kills every node; deletes the folder unless asked to keep it (kills only, then)."""
        if not (self.dir / "cluster.yaml").is_file():
            return
        if self.keep or os.environ.get("RINGDB_KEEP_TEST_DIRS"):
            for k in range(1, self.nodes + 1):
                self.cli("kill", self.name, f"node{k}", check=False)
            print(f"\nkept cluster {self.name} in {self.dir}")
            return
        self.cli("remove", self.name, check=False)

    def describe_for_failure(self) -> str:
        parts = [f"cluster {self.name} in {self.dir} (kept)"]
        status = self.cli("status", self.name, check=False)
        parts.append(f"$ ringdb cluster status\n{status.stdout}{status.stderr}")
        for k in range(1, self.nodes + 1):
            log = self.dir / f"node{k}" / "node.log"
            try:
                lines = log.read_bytes().decode("utf-8", "replace").splitlines()
            except OSError as e:
                lines = [f"(no log: {e})"]
            parts.append(f"--- node{k} log {log}: last {LOG_TAIL_LINES} lines ---")
            parts.extend(lines[-LOG_TAIL_LINES:])
        return "\n".join(parts)


# Clusters alive right now, so a failing test can show their logs.
ACTIVE_CLUSTERS: list[RingdbCluster] = []


@pytest.fixture(scope="module")
def cluster_factory(ringdb_binary, tmp_path_factory):
    """make(name, nodes) creates and starts a cluster with the CLI; all are removed at the end of
    the module (kept, with their logs in the report, when a test failed)."""
    made: list[RingdbCluster] = []

    def make(name: str, nodes: int) -> RingdbCluster:
        c = RingdbCluster(ringdb_binary, name, tmp_path_factory.mktemp(name) / name, nodes)
        made.append(c)
        ACTIVE_CLUSTERS.append(c)
        try:
            c.create_and_start()
        except Exception:
            c.keep = True
            raise
        return c

    yield make
    for c in made:
        if c in ACTIVE_CLUSTERS:
            ACTIVE_CLUSTERS.remove(c)
        c.remove()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for n in ACTIVE_NODES:
            n.keep = True
            report.sections.append((f"ringdb node {n.ip} log", n.describe_for_failure()))
        for c in ACTIVE_CLUSTERS:
            c.keep = True
            report.sections.append((f"ringdb cluster {c.name}", c.describe_for_failure()))


# -- replicated clusters: node control, bounded waits, driver sessions ------------------------------
#
# Used by the replication / consistency / schema-agreement tests (test_consistency.py,
# test_schema_agreement.py). A ReplicatedCluster is a RingdbCluster with one or several
# datacenters, made and removed per test (`replicated_cluster` is function-scoped, so a test that
# kills nodes never leaves a damaged cluster to the next one).

import json  # noqa: E402 - this section is appended to the file
import time  # noqa: E402

WAIT_TIMEOUT = 60.0  # seconds a node may take to be seen down or up by the others
STATUS_TIMEOUT = 30.0  # seconds one `ringdb status` may take
NO_RETRY = "no_retry"  # execution profile of ReplicatedCluster drivers that never retries


class ReplicatedCluster(RingdbCluster):
    """A cluster of `dcs` nodes per datacenter ([3] or [3, 3]: dc1 = node1..3, dc2 = node4..6)
    with the operations failure tests need: kill and start nodes through the CLI, bounded waits on
    how the nodes see each other (`ringdb status --json`), and cassandra-driver clusters that are
    shut down with it."""

    NO_RETRY = NO_RETRY

    def __init__(self, binary: Path, name: str, dir: Path, dcs: list[int], sets=()):
        super().__init__(binary, name, dir, sum(dcs))
        self.dcs = list(dcs)
        self.sets = list(sets)
        self._drivers: list = []
        self._pinned: dict = {}

    def create_and_start(self) -> "ReplicatedCluster":
        # These tests kill -9 nodes and then count acknowledged writes: with the default
        # `commitlog_sync: periodic` a killed process may lose up to a sync period of
        # acknowledged writes, by design. `batch` acknowledges only what is on disk.
        self.cli(
            "create", self.name, "-n", ":".join(str(n) for n in self.dcs),
            "--set", "commitlog_sync=batch",
            *[arg for kv in self.sets for arg in ("--set", kv)],
            "--base-ip", self.base_ip, "--start", "--timeout", str(int(CLUSTER_TIMEOUT)),
            timeout=CLUSTER_TIMEOUT + 60,
        )
        return self

    def dc_of(self, k: int) -> str:
        """The datacenter of node K (`ringdb cluster create -n A:B` numbers dc1's nodes first)."""
        first = 1
        for i, n in enumerate(self.dcs, start=1):
            if first <= k < first + n:
                return f"dc{i}"
            first += n
        raise ValueError(f"no node{k} in a cluster of {self.nodes}")

    def nodes_in(self, dc: str) -> list[int]:
        return [k for k in range(1, self.nodes + 1) if self.dc_of(k) == dc]

    # -- node control ----------------------------------------------------------------------------

    def kill(self, *ks: int) -> None:
        """SIGKILL node K (`ringdb cluster kill`; returns once the process is gone)."""
        for k in ks:
            session = self._pinned.pop(k, None)
            if session is not None:
                session.cluster.shutdown()
            self.cli("kill", self.name, f"node{k}")

    def start_stopped(self) -> float:
        """Starts every killed or stopped node (`ringdb cluster start NAME`, which waits until the
        running nodes see each other up) and then waits for `cluster status` to report all UN;
        returns the seconds it took."""
        begin = time.monotonic()
        self.cli("start", self.name, "--timeout", str(int(CLUSTER_TIMEOUT)),
                 timeout=CLUSTER_TIMEOUT + 60)
        self.wait_all_up()
        return time.monotonic() - begin

    def wait_all_up(self, timeout: float = CLUSTER_TIMEOUT) -> float:
        """Polls `ringdb cluster status` until it exits 0 (every node runs and sees every node
        UN); returns the seconds it took."""
        begin = time.monotonic()
        deadline = begin + timeout
        while True:
            result = self.cli("status", self.name, check=False)
            if result.returncode == 0:
                return time.monotonic() - begin
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"cluster {self.name} not all UN within {timeout}s; last `cluster status` "
                    f"(exit {result.returncode}):\n{result.stdout}{result.stderr}"
                )
            time.sleep(0.5)

    # -- how the nodes see each other ------------------------------------------------------------

    def status_json(self, k: int) -> dict:
        """`ringdb status --host IP --json` run against node K."""
        cmd = [str(self.binary), "status", "--host", self.ip(k), "--json"]
        result = run(cmd, timeout=STATUS_TIMEOUT, env=_scrubbed_env())
        if result.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(cmd)}` exited with {result.returncode}\n{result.stdout}{result.stderr}"
            )
        return json.loads(result.stdout)

    def state_seen(self, observer: int, target: int) -> str | None:
        """The two-letter state (UN, DN, …) node OBSERVER shows for node TARGET, None if absent."""
        for nodes in self.status_json(observer).get("datacenters", {}).values():
            for n in nodes:
                if n.get("address") == self.ip(target):
                    return n.get("state")
        return None

    def wait_seen(self, observers, targets, want: str, timeout: float = WAIT_TIMEOUT) -> float:
        """Waits until every node of OBSERVERS shows every node of TARGETS as down (want="down":
        state D?) or up and normal (want="up": UN); returns the seconds it took."""
        assert want in ("up", "down"), want
        begin = time.monotonic()
        deadline = begin + timeout
        while True:
            lacking = []
            for o in observers:
                for t in targets:
                    try:
                        state = self.state_seen(o, t)
                    except Exception as e:  # noqa: BLE001 - reported below if it persists
                        state = f"error: {e}"
                    ok = state == "UN" if want == "up" else bool(state) and state.startswith("D")
                    if not ok:
                        lacking.append(f"node{o} sees node{t} as {state}")
            if not lacking:
                elapsed = time.monotonic() - begin
                print(f"{self.name}: nodes {list(observers)} see {list(targets)} {want} "
                      f"after {elapsed:.2f}s")
                return elapsed
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"within {timeout}s not every node saw {want}: " + "; ".join(lacking)
                )
            time.sleep(0.2)

    # -- cassandra-driver ------------------------------------------------------------------------

    def driver(self, *ks: int, pinned: bool = False, local_dc: str | None = None, **kwargs):
        """A cassandra-driver Cluster with nodes KS (default: all) as contact points, shut down
        with this cluster. pinned=True sends every request to those nodes only
        (WhiteListRoundRobinPolicy); local_dc routes token-aware within that datacenter
        (DCAwareRoundRobinPolicy, no remote hosts); otherwise the driver's default policy.

        Besides the default execution profile it has NO_RETRY: the same routing with
        FallthroughRetryPolicy, for statements expected to fail. (The default RetryPolicy answers
        Unavailable by trying the next host once, and when no other host is up the caller gets
        NoHostAvailable instead of the Unavailable error the test wants to inspect.)"""
        from cassandra.cluster import (
            EXEC_PROFILE_DEFAULT,
            Cluster,
            ExecutionProfile,
            default_lbp_factory,
        )
        from cassandra.policies import (
            DCAwareRoundRobinPolicy,
            FallthroughRetryPolicy,
            TokenAwarePolicy,
            WhiteListRoundRobinPolicy,
        )

        ips = [self.ip(k) for k in (ks or range(1, self.nodes + 1))]

        def policy():
            if pinned:
                return WhiteListRoundRobinPolicy(ips)
            if local_dc:
                return TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=local_dc))
            return default_lbp_factory()  # the driver's default (a new instance per profile)

        profiles = dict(kwargs.pop("execution_profiles", {}))
        if pinned or local_dc:
            profiles.setdefault(EXEC_PROFILE_DEFAULT, ExecutionProfile(load_balancing_policy=policy()))
        profiles.setdefault(NO_RETRY, ExecutionProfile(
            load_balancing_policy=policy(), retry_policy=FallthroughRetryPolicy()))
        c = Cluster(ips, port=9042, execution_profiles=profiles, **kwargs)
        self._drivers.append(c)
        return c

    def session(self, *ks: int, pinned: bool = False, local_dc: str | None = None, **kwargs):
        """driver(...).connect()."""
        return self.driver(*ks, pinned=pinned, local_dc=local_dc, **kwargs).connect()

    def pinned(self, k: int):
        """A session whose requests all go to node K (made once per run of node K: kill() drops
        it, so a restarted node gets a fresh driver instead of one in reconnection back-off)."""
        if k not in self._pinned:
            self._pinned[k] = self.session(k, pinned=True)
        return self._pinned[k]

    def schema_versions(self, ks) -> dict[int, tuple]:
        """For each node K of KS, asked directly: (schema_version in its system.local,
        {peer address: schema_version} from its system.peers)."""
        out = {}
        for k in ks:
            s = self.pinned(k)
            local = s.execute("SELECT schema_version FROM system.local").one().schema_version
            peers = {str(r.peer): r.schema_version
                     for r in s.execute("SELECT peer, schema_version FROM system.peers")}
            out[k] = (local, peers)
        return out

    def wait_schema_agreement(self, ks=None, timeout: float = WAIT_TIMEOUT) -> float:
        """Waits until nodes KS (default: all) report one schema_version in system.local and show
        it for each other in system.peers; returns the seconds it took."""
        ks = list(ks or range(1, self.nodes + 1))
        begin = time.monotonic()
        deadline = begin + timeout
        while True:
            versions = self.schema_versions(ks)
            locals_ = {v[0] for v in versions.values()}
            seen = {peers.get(self.ip(j)) for _, peers in versions.values() for j in ks}
            seen.discard(None)  # a node does not list itself in system.peers
            if len(locals_) == 1 and seen <= locals_:
                elapsed = time.monotonic() - begin
                print(f"{self.name}: nodes {ks} agree on schema {locals_.pop()} after {elapsed:.2f}s")
                return elapsed
            if time.monotonic() > deadline:
                table = "\n".join(
                    f"  node{k} ({self.ip(k)}): local {local}; peers "
                    + ", ".join(f"{ip}={v}" for ip, v in sorted(peers.items()))
                    for k, (local, peers) in versions.items()
                )
                raise AssertionError(
                    f"nodes {ks} did not agree on a schema_version within {timeout}s:\n{table}"
                )
            time.sleep(0.2)

    def shutdown_drivers(self) -> None:
        for c in self._drivers:
            try:
                c.shutdown()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
        self._drivers.clear()
        self._pinned.clear()

    def remove(self) -> None:
        self.shutdown_drivers()
        super().remove()


@pytest.fixture
def replicated_cluster(ringdb_binary, tmp_path_factory):
    """make(name, dcs, sets=()) creates and starts a ReplicatedCluster (dcs: nodes per
    datacenter, e.g. [3] or [3, 3]; sets: extra `--set KEY=VALUE` for every node); removed at the
    end of the test (kept, with its logs in the report, when the test failed)."""
    made: list[ReplicatedCluster] = []

    def make(name: str, dcs: list[int], sets=()) -> ReplicatedCluster:
        c = ReplicatedCluster(ringdb_binary, name, tmp_path_factory.mktemp(name) / name, dcs,
                              sets)
        made.append(c)
        ACTIVE_CLUSTERS.append(c)
        begin = time.monotonic()
        try:
            c.create_and_start()
        except Exception:
            c.keep = True
            raise
        print(f"cluster {name} ({':'.join(map(str, dcs))} nodes from {c.base_ip}) up in "
              f"{time.monotonic() - begin:.1f}s")
        return c

    yield make
    for c in made:
        if c in ACTIVE_CLUSTERS:
            ACTIVE_CLUSTERS.remove(c)
        c.remove()

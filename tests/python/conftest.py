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


def start_node(binary: Path, config: dict[str, str] | None = None) -> RingdbNode:
    node = RingdbNode(binary, config)
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

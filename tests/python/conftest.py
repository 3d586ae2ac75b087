"""pytest fixtures for the ringdb end-to-end tests: a real `ringdb node` per test module.

When a test fails, the log tail of every node alive at that moment is attached to the failure
report and the node's temp dir is kept (its path is printed). A missing binary skips the tests
with a SKIPPED reason, except in CI (CI=true), where it is an error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ringdb_node import RingdbNode, in_ci, ringdb_bin  # noqa: E402

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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for n in ACTIVE_NODES:
            n.keep = True
            report.sections.append((f"ringdb node {n.ip} log", n.describe_for_failure()))

"""Anti-entropy repair end to end (issue 5, "Done when" 3): a real 3-node cluster made with
`ringdb cluster`, a replica killed with SIGKILL while writes go on at QUORUM, then `ringdb repair`
(the admin API of the node it names) compares Merkle trees and streams what differs.

- A consistent cluster: every range is compared, nothing is out of sync, nothing streamed; a
  keyspace with replication factor 1 is reported as skipped.
- With a replica down, repair fails its ranges and exits non-zero: it never claims success.
- node3 misses writes, overwrites and deletions while it is down (hinted handoff is off, so only
  repair can bring them); `ringdb repair --host node3` reports ranges out of sync and partitions
  streamed; then with node1 and node2 killed, node3 alone answers every acknowledged row at ONE
  (and none of the deleted ones); a second repair streams nothing.
- The admin API answers bad requests with 4xx JSON errors.

The checker prints, in numbers, what was acknowledged and what node3 read back on its own.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from cassandra import ConsistencyLevel
from cassandra.concurrent import execute_concurrent_with_args

from ringdb_node import _scrubbed_env, run
from test_consistency import prepared, read

KS = "ks_repair"
SINGLE = "ks_single"  # replication factor 1: skipped by repair
TABLE = "kv"
ROWS = 300
DDL_TIMEOUT = 60.0
AGREEMENT_TIMEOUT = 30.0
REPAIR_TIMEOUT = 120.0
ADMIN_PORT = 7199

CL = ConsistencyLevel


def create_schema(cluster, session) -> None:
    for ks, rf in ((KS, 3), (SINGLE, 1)):
        session.execute(
            f"CREATE KEYSPACE {ks} WITH replication = "
            f"{{'class': 'SimpleStrategy', 'replication_factor': {rf}}}",
            timeout=DDL_TIMEOUT,
        )
        cluster.wait_schema_agreement(timeout=AGREEMENT_TIMEOUT)
        session.execute(f"CREATE TABLE {ks}.{TABLE} (k int PRIMARY KEY, v text)",
                        timeout=DDL_TIMEOUT)
        cluster.wait_schema_agreement(timeout=AGREEMENT_TIMEOUT)


def execute_all(session, cql: str, params: list[tuple], cl: int) -> None:
    stmt = prepared(session, cql, cl)
    results = execute_concurrent_with_args(session, stmt, params, concurrency=32,
                                           raise_on_first_error=False)
    errors = [f"{p}: {outcome}" for p, (ok, outcome) in zip(params, results) if not ok]
    assert not errors, f"{len(errors)} of {len(params)} statements failed; first: {errors[0]}"


def write(session, rows: dict[int, str], cl: int, acked: dict[int, str | None]) -> None:
    execute_all(session, f"INSERT INTO {KS}.{TABLE} (k, v) VALUES (?, ?)",
                sorted(rows.items()), cl)
    acked.update(rows)


def delete(session, keys: list[int], cl: int, acked: dict[int, str | None]) -> None:
    execute_all(session, f"DELETE FROM {KS}.{TABLE} WHERE k = ?", [(k,) for k in keys], cl)
    acked.update({k: None for k in keys})


def check(what: str, expected: dict[int, str | None], found: dict[int, str | None]) -> None:
    """The checker: acknowledged rows (None: deleted) against what was read back."""
    live = {k: v for k, v in expected.items() if v is not None}
    deleted = [k for k, v in expected.items() if v is None]
    missing = sorted(k for k in live if found.get(k) is None)
    wrong = sorted(k for k, v in live.items() if found.get(k) not in (None, v))
    resurrected = sorted(k for k in deleted if found.get(k) is not None)
    back = sum(1 for k, v in live.items() if found.get(k) == v)
    print(f"{what}: acknowledged {len(live)} rows and {len(deleted)} deletions; read back "
          f"{back}, missing {len(missing)}, wrong value {len(wrong)}, deleted but present "
          f"{len(resurrected)}")
    assert not missing and not wrong and not resurrected, (
        f"{what}: missing {missing[:10]}, wrong {[(k, expected[k], found.get(k)) for k in wrong[:5]]}"
        f", deleted but present {resurrected[:10]}"
    )


def repair(cluster, k: int, *args: str, json_output: bool = True):
    """`ringdb repair --host NODE_K:7199 ARGS`: (exit code, the JSON summary or the text, stderr)."""
    cmd = [str(cluster.binary), "repair", "--host", f"{cluster.ip(k)}:{ADMIN_PORT}", *args]
    if json_output:
        cmd.append("--json")
    result = run(cmd, timeout=REPAIR_TIMEOUT, env=_scrubbed_env())
    assert result.returncode is not None, f"`{' '.join(cmd)}` timed out"
    print(f"$ {' '.join(cmd[1:])}  -> exit {result.returncode}\n{result.stderr.strip()}")
    if json_output and result.stdout.strip():
        report = json.loads(result.stdout)
        print("  compared {ranges_compared}, out of sync {ranges_out_of_sync}, failed "
              "{ranges_failed}, streamed {partitions_streamed} partitions / {bytes_streamed} "
              "bytes, fetched {partitions_fetched}, {elapsed_ms} ms".format(**report))
        return result.returncode, report, result.stderr
    return result.returncode, result.stdout, result.stderr


def admin(cluster, k: int, method: str, path: str) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://{cluster.ip(k)}:{ADMIN_PORT}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read().splitlines()[-1])
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def metric(cluster, k: int, name: str) -> float:
    with urllib.request.urlopen(f"http://{cluster.ip(k)}:9500/metrics", timeout=30) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_repair_heals_a_replica_that_missed_writes(replicated_cluster):
    # Hinted handoff would deliver the missed writes to node3 on its own: off, so that only
    # repair can.
    c = replicated_cluster("repair", [3], sets=["hinted_handoff_enabled=false"])
    session = c.session()
    create_schema(c, session)
    acked: dict[int, str | None] = {}
    write(session, {k: f"a{k}" for k in range(ROWS)}, CL.ALL, acked)
    execute_all(session, f"INSERT INTO {SINGLE}.{TABLE} (k, v) VALUES (?, ?)",
                [(k, "x") for k in range(20)], CL.ONE)

    # A consistent cluster: everything compared, nothing streamed; RF 1 skipped.
    code, report, _ = repair(c, 1)
    assert code == 0 and report["finished"]
    assert report["ranges_compared"] == report["ranges_total"] > 0
    assert (report["ranges_out_of_sync"], report["partitions_streamed"],
            report["bytes_streamed"], report["ranges_failed"]) == (0, 0, 0, 0)
    assert [s["keyspace"] for s in report["skipped"]] == [SINGLE], report["skipped"]

    # node3 down: its ranges cannot be compared; repair says so and fails.
    c.kill(3)
    c.wait_seen([1, 2], [3], "down")
    code, report, stderr = repair(c, 1, KS)
    assert code != 0, "a repair with a replica down must not succeed"
    assert report["ranges_failed"] == report["ranges_total"] > 0
    assert "down" in report["failures"][0]["error"]
    assert "failed" in stderr

    # node3 misses new rows, overwrites and deletions.
    s1 = c.pinned(1)
    write(s1, {k: f"b{k}" for k in range(ROWS, 3 * ROWS)}, CL.QUORUM, acked)
    write(s1, {k: f"b{k}" for k in range(0, ROWS // 2)}, CL.QUORUM, acked)
    delete(s1, list(range(ROWS // 2, ROWS // 2 + 20)), CL.QUORUM, acked)
    took = c.start_stopped()
    print(f"node3 restarted, all UN after {took:.1f}s")

    # Before repair node3 alone lacks them (nothing reads node3 at a level that repairs it).
    s3 = c.pinned(3)
    before = read(s3, acked, CL.ONE, table=f"{KS}.{TABLE}")
    stale = sum(1 for k, v in acked.items() if before.get(k) != v)
    print(f"(information) before repair node3 alone is stale on {stale} of {len(acked)} keys")
    assert stale > 0, "node3 did not miss the writes: hints were delivered? nothing to repair"

    code, report, _ = repair(c, 3, KS)
    assert code == 0, report
    assert report["ranges_out_of_sync"] > 0
    assert report["partitions_streamed"] >= stale
    assert report["bytes_streamed"] > 0 and report["ranges_failed"] == 0
    assert metric(c, 3, "ringdb_repair_partitions_streamed_total") >= stale

    # node3 on its own has every acknowledged row and none of the deleted ones.
    c.kill(1, 2)
    c.wait_seen([3], [1, 2], "down")
    check("ONE read from node3 alone after repair", acked,
          read(s3, acked, CL.ONE, table=f"{KS}.{TABLE}"))

    # A second repair streams nothing.
    c.start_stopped()
    code, text, _ = repair(c, 1, json_output=False)
    assert code == 0, text
    assert "ranges out of sync   0" in text and "partitions streamed  0 (0 B)" in text, text


def test_admin_api_refuses_bad_requests(replicated_cluster):
    c = replicated_cluster("admin", [2])
    status, health = admin(c, 1, "GET", "/health")
    assert (status, health["status"], health["listen_address"]) == (200, "ok", c.ip(1))
    status, health = admin(c, 2, "GET", "/health")
    assert health["listen_address"] == c.ip(2), "each node's API on its own address"
    for method, path, want in [
        ("GET", "/nope", 404),
        ("DELETE", "/repair", 405),
        ("POST", "/repair?bogus=1", 400),
        ("POST", "/repair?keyspace=nope", 404),
        ("POST", "/repair?keyspace=system", 400),
    ]:
        status, body = admin(c, 1, method, path)
        print(f"{method} {path}: {status} {body}")
        assert status == want and body["status"] == want and body["error"], body
    code, _, stderr = repair(c, 1, "nope")
    assert code != 0 and "does not exist" in stderr
    # With nothing to repair a session still finishes, and says so.
    status, report = admin(c, 1, "POST", "/repair")
    assert status == 200 and report["finished"] and report["ranges_total"] == 0

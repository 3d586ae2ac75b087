"""`cqlsh` 6.x from PyPI against a real `ringdb node`, run the way users run it: `-e` and `-f`,
CREATE/INSERT/SELECT with the rows and `(N rows)` printed, DESCRIBE answered by the server, and
errors reported on stderr with a non-zero exit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from ringdb_node import WORKSPACE, in_ci, run, venv_bin

CQLSH_TIMEOUT = 90.0
KS = "ks_cqlsh"


def _find_cqlsh() -> Path | None:
    for candidate in (venv_bin("cqlsh"), WORKSPACE / ".venv" / "bin" / "cqlsh"):
        if candidate.is_file():
            return candidate
    found = shutil.which("cqlsh")
    return Path(found) if found else None


@pytest.fixture(scope="module")
def cqlsh_bin() -> Path:
    path = _find_cqlsh()
    if path is None:
        reason = "cqlsh not installed (scripts/test installs it into .venv)"
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(f"SKIPPED: {reason}")
    return path


@pytest.fixture(scope="module")
def home():
    d = tempfile.mkdtemp(prefix="ringdb-cqlsh-home-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def cqlsh(cqlsh_bin, node, home):
    """cqlsh(*args) → CompletedProcess, against the module's node, with a private HOME."""

    def call(*args: str, timeout: float = CQLSH_TIMEOUT):
        env = dict(os.environ, HOME=home)
        env.pop("CQLSH_HOST", None)
        env.pop("CQLSH_PORT", None)
        cmd = [str(cqlsh_bin), node.ip, str(node.port), "--request-timeout", "30", *args]
        result = run(cmd, timeout=timeout, env=env)
        assert result.returncode is not None, (
            f"cqlsh {' '.join(args)} hung for {timeout}s\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
        return result

    return call


def describe(result) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"


SCRIPT = f"""
CREATE KEYSPACE {KS} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}};
CREATE TABLE {KS}.users (id int PRIMARY KEY, name text, email text);
INSERT INTO {KS}.users (id, name, email) VALUES (1, 'alice', 'alice@example.com');
INSERT INTO {KS}.users (id, name, email) VALUES (2, 'bob', 'bob@example.com');
INSERT INTO {KS}.users (id, name, email)
    VALUES (3, 'carol', 'carol@example.com');
SELECT * FROM {KS}.users;
"""


@pytest.fixture(scope="module")
def loaded(cqlsh, node):
    script = node.dir / "cqlsh_script.cql"
    script.write_text(SCRIPT)
    result = cqlsh("-f", str(script))
    return result


def test_f_script_creates_inserts_and_prints_rows(loaded):
    assert loaded.returncode == 0, describe(loaded)
    assert "Error" not in loaded.stderr and "Exception" not in loaded.stderr, describe(loaded)
    for value in ("alice", "bob", "carol", "alice@example.com", "carol@example.com", "(3 rows)"):
        assert value in loaded.stdout, f"missing {value!r}\n{describe(loaded)}"
    header = next((line for line in loaded.stdout.splitlines() if "name" in line and "|" in line), None)
    assert header is not None, f"no table header\n{describe(loaded)}"


def test_e_select_prints_the_rows(cqlsh, loaded):
    result = cqlsh("-e", f"SELECT id, name FROM {KS}.users WHERE id = 2")
    assert result.returncode == 0, describe(result)
    assert "bob" in result.stdout and "alice" not in result.stdout, describe(result)
    assert "(1 rows)" in result.stdout, describe(result)


def test_e_with_keyspace_and_count(cqlsh, loaded):
    result = cqlsh("-k", KS, "-e", "SELECT COUNT(*) FROM users")
    assert result.returncode == 0, describe(result)
    assert "(1 rows)" in result.stdout, describe(result)
    assert any(line.strip() == "3" for line in result.stdout.splitlines()), describe(result)


def test_select_of_hundreds_of_rows_pages_through_all(cqlsh, node, loaded):
    lines = [f"CREATE TABLE {KS}.many (p int, c int, v text, PRIMARY KEY (p, c));"]
    lines += [f"INSERT INTO {KS}.many (p, c, v) VALUES ({i % 3}, {i}, 'v{i}');" for i in range(250)]
    script = node.dir / "many.cql"
    script.write_text("\n".join(lines) + "\n")
    result = cqlsh("-f", str(script))
    assert result.returncode == 0, describe(result)
    result = cqlsh("-e", f"SELECT * FROM {KS}.many")
    assert result.returncode == 0, describe(result)
    assert "(250 rows)" in result.stdout, describe(result)
    assert "v249" in result.stdout and "v0" in result.stdout


def test_values_are_formatted_from_result_types(cqlsh, node, loaded):
    script = node.dir / "typed.cql"
    script.write_text(
        f"CREATE TABLE {KS}.typed (k int PRIMARY KEY, b boolean, d double, u uuid, ts timestamp, "
        "bl blob, l list<int>, s set<text>, m map<text, int>, dt date, tm time, dec decimal, "
        "vi varint, ip inet);\n"
        f"INSERT INTO {KS}.typed (k, b, d, u, ts, bl, l, s, m, dt, tm, dec, vi, ip) VALUES "
        "(1, true, 2.5, 123e4567-e89b-12d3-a456-426614174000, '2024-01-02 03:04:05.678+0000', "
        "0xcafe, [1, 2, 3], {'a', 'b'}, {'x': 1}, '2024-02-29', '12:34:56.789', 1.25, "
        "12345678901234567890, '10.0.0.1');\n"
    )
    result = cqlsh("-f", str(script))
    assert result.returncode == 0, describe(result)
    result = cqlsh("-e", f"SELECT * FROM {KS}.typed")
    assert result.returncode == 0, describe(result)
    for shown in (
        "True",
        "2.5",
        "123e4567-e89b-12d3-a456-426614174000",
        "2024-01-02 03:04:05.678",
        "0xcafe",
        "[1, 2, 3]",
        "{'a', 'b'}",
        "{'x': 1}",
        "2024-02-29",
        "12:34:56.789",
        "1.25",
        "12345678901234567890",
        "10.0.0.1",
        "(1 rows)",
    ):
        assert shown in result.stdout, f"missing {shown!r}\n{describe(result)}"


def test_describe_keyspaces(cqlsh, loaded):
    result = cqlsh("-e", "DESCRIBE KEYSPACES")
    assert result.returncode == 0, describe(result)
    for ks in (KS, "system", "system_schema"):
        assert ks in result.stdout.split(), f"{ks} not listed\n{describe(result)}"


def test_describe_table(cqlsh, loaded):
    result = cqlsh("-e", f"DESCRIBE TABLE {KS}.users")
    assert result.returncode == 0, describe(result)
    out = result.stdout
    assert f"CREATE TABLE {KS}.users" in out, describe(result)
    for fragment in ("id int PRIMARY KEY", "name text", "email text"):
        assert fragment in out, f"missing {fragment!r}\n{describe(result)}"


def test_describe_keyspace(cqlsh, loaded):
    result = cqlsh("-e", f"DESCRIBE KEYSPACE {KS}")
    assert result.returncode == 0, describe(result)
    out = result.stdout
    assert f"CREATE KEYSPACE {KS}" in out, describe(result)
    assert "SimpleStrategy" in out, describe(result)
    assert f"CREATE TABLE {KS}.users" in out, describe(result)


def test_bad_statement_reports_an_error(cqlsh, loaded):
    result = cqlsh("-e", "SELEC * FROM nowhere")
    assert result.returncode != 0 or result.stderr.strip(), describe(result)
    assert "SyntaxException" in result.stderr, f"expected a SyntaxException\n{describe(result)}"
    result = cqlsh("-e", f"SELECT * FROM {KS}.no_such_table")
    assert result.returncode != 0 or result.stderr.strip(), describe(result)
    assert "no_such_table" in result.stderr or "InvalidRequest" in result.stderr, describe(result)

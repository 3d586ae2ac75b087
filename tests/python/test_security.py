"""Security end to end, with real clients: password authentication (cassandra-driver's
PlainTextAuthProvider, cqlsh -u/-p), roles and permissions (CREATE ROLE, GRANT, REVOKE, LIST),
roles replicated across a cluster, failed-login lock-out, the STARTUP timeout, and client TLS
(the driver's ssl_context, cqlsh --ssl).

Every node here runs with its own configuration; the superuser's password is given in the YAML
file the harness writes (RINGDB_AUTH_SUPERUSER_PASSWORD works too; a unit test covers it).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from cassandra import AuthenticationFailed, Unauthorized
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, NoHostAvailable

from conftest import start_node, stop_node
from ringdb_node import RingdbNode, run
from test_cqlsh import _find_cqlsh

SUPERUSER = "cassandra"
SUPERPASS = "root-Pw-1"
STARTUP_TIMEOUT_MS = 1500
AUTH_CONFIG = {
    "authenticator": "password",
    "auth_superuser_password": f'"{SUPERPASS}"',
    "native_transport_idle_startup_timeout_ms": str(STARTUP_TIMEOUT_MS),
}
LOGIN_WAIT = 30.0  # seconds the superuser may take to be written after the node serves CQL


def connect(ip: str, user: str | None = None, password: str | None = None, **kw):
    """A driver session, logged in when a user is given; returns (cluster, session)."""
    provider = PlainTextAuthProvider(username=user, password=password) if user else None
    cluster = Cluster(
        [ip], port=9042, auth_provider=provider, protocol_version=4,
        connect_timeout=10, control_connection_timeout=10, **kw,
    )
    try:
        return cluster, cluster.connect()
    except Exception:
        cluster.shutdown()
        raise


def wait_login(ip: str, user: str = SUPERUSER, password: str = SUPERPASS, timeout: float = LOGIN_WAIT):
    """Logs in as soon as the role is readable (the superuser is written in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return connect(ip, user, password)
        except NoHostAvailable:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def auth_errors(excinfo) -> list[Exception]:
    return list(excinfo.value.errors.values())


@pytest.fixture(scope="module")
def auth_node(ringdb_binary):
    n = start_node(ringdb_binary, AUTH_CONFIG)
    yield n
    stop_node(n)


@pytest.fixture(scope="module")
def admin(auth_node):
    cluster, session = wait_login(auth_node.ip)
    yield session
    cluster.shutdown()


# -- start-up refusal ----------------------------------------------------------------------------


def test_password_authenticator_without_superuser_password_refuses_to_start(ringdb_binary):
    node = RingdbNode(ringdb_binary, {"authenticator": "password"})
    try:
        node.start()
        code = node.proc.wait(timeout=30)
        assert code != 0
        log = node.log()
        assert "auth_superuser_password" in log, log
        assert "RINGDB_AUTH_SUPERUSER_PASSWORD" in log, log
        assert "no default password" in log, log
    finally:
        node.close()


# -- logins --------------------------------------------------------------------------------------


def test_driver_logs_in_with_plain_text_auth_provider(admin):
    row = admin.execute("SELECT release_version FROM system.local").one()
    assert row.release_version


def test_wrong_password_is_authentication_failed(auth_node, admin):
    with pytest.raises(NoHostAvailable) as e:
        connect(auth_node.ip, SUPERUSER, "wrong")
    errors = auth_errors(e)
    assert errors and all(isinstance(x, AuthenticationFailed) for x in errors), errors
    assert "incorrect" in str(errors[0]), errors


def test_no_credentials_are_refused(auth_node, admin):
    with pytest.raises(NoHostAvailable) as e:
        connect(auth_node.ip)
    errors = auth_errors(e)
    assert errors and all(isinstance(x, AuthenticationFailed) for x in errors), errors


def test_requests_before_authentication_are_refused(auth_node, admin):
    """A raw client: STARTUP gets AUTHENTICATE naming PasswordAuthenticator; a QUERY sent
    instead of AUTH_RESPONSE gets a protocol error, not rows."""
    with socket.create_connection((auth_node.ip, auth_node.port), timeout=5) as s:
        body = _string_map({"CQL_VERSION": "3.0.0"})
        s.sendall(bytes([4, 0, 0, 1, 0x01]) + len(body).to_bytes(4, "big") + body)
        opcode, payload = _read_frame(s)
        assert opcode == 0x03, opcode  # AUTHENTICATE
        assert b"org.apache.cassandra.auth.PasswordAuthenticator" in payload
        query = b"SELECT * FROM system.local"
        body = len(query).to_bytes(4, "big") + query + (1).to_bytes(2, "big") + b"\x00"
        s.sendall(bytes([4, 0, 0, 2, 0x07]) + len(body).to_bytes(4, "big") + body)
        opcode, payload = _read_frame(s)
        assert opcode == 0x00, opcode  # ERROR
        assert int.from_bytes(payload[:4], "big") == 0x000A, payload  # protocol error
        assert b"authentication is required" in payload, payload


def _string_map(m: dict[str, str]) -> bytes:
    out = len(m).to_bytes(2, "big")
    for k, v in m.items():
        for x in (k, v):
            b = x.encode()
            out += len(b).to_bytes(2, "big") + b
    return out


def _read_frame(s: socket.socket) -> tuple[int, bytes]:
    header = _recv(s, 9)
    length = int.from_bytes(header[5:9], "big")
    return header[4], _recv(s, length)


def _recv(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise AssertionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def test_idle_connection_without_startup_is_closed_after_the_timeout(auth_node):
    with socket.create_connection((auth_node.ip, auth_node.port), timeout=30) as s:
        started = time.monotonic()
        assert s.recv(16) == b"", "the server closes the connection without answering"
        elapsed = time.monotonic() - started
    assert STARTUP_TIMEOUT_MS / 1000 * 0.8 <= elapsed < 15, elapsed


# -- roles and permissions -----------------------------------------------------------------------


def test_grant_select_allows_reads_not_writes_and_revoke_takes_it_away(auth_node, admin):
    admin.execute(
        "CREATE KEYSPACE sec WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    admin.execute("CREATE TABLE sec.t (k int PRIMARY KEY, v text)")
    admin.execute("INSERT INTO sec.t (k, v) VALUES (1, 'one')")
    admin.execute("CREATE ROLE reader WITH PASSWORD = 'reader-pw' AND LOGIN = true")
    admin.execute("GRANT SELECT ON KEYSPACE sec TO reader")

    cluster, reader = connect(auth_node.ip, "reader", "reader-pw")
    try:
        assert reader.execute("SELECT v FROM sec.t WHERE k = 1").one().v == "one"
        with pytest.raises(Unauthorized):
            reader.execute("INSERT INTO sec.t (k, v) VALUES (2, 'two')")
        with pytest.raises(Unauthorized):
            reader.execute("CREATE ROLE mallory WITH PASSWORD = 'x' AND LOGIN = true")
        with pytest.raises(Unauthorized):
            reader.execute("SELECT * FROM system_auth.roles")

        admin.execute("REVOKE SELECT ON KEYSPACE sec FROM reader")
        with pytest.raises(Unauthorized):
            reader.execute("SELECT v FROM sec.t WHERE k = 1")
    finally:
        cluster.shutdown()


def test_list_roles_and_permissions_return_rows(admin):
    admin.execute("CREATE ROLE IF NOT EXISTS lister WITH PASSWORD = 'l' AND LOGIN = true")
    admin.execute(
        "CREATE KEYSPACE IF NOT EXISTS sec2 WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    admin.execute("GRANT MODIFY ON KEYSPACE sec2 TO lister")
    roles = {r.role: r for r in admin.execute("LIST ROLES")}
    assert SUPERUSER in roles and roles[SUPERUSER].super is True
    assert "lister" in roles and roles["lister"].login is True and roles["lister"].super is False
    perms = [(r.role, r.resource, r.permission) for r in admin.execute("LIST ALL PERMISSIONS OF lister")]
    assert perms == [("lister", "<keyspace sec2>", "MODIFY")], perms
    assert ("lister", "<keyspace sec2>", "MODIFY") in [
        (r.role, r.resource, r.permission) for r in admin.execute("LIST ALL PERMISSIONS")
    ]


# -- cqlsh ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cqlsh_bin():
    path = _find_cqlsh()
    if path is None:
        pytest.skip("SKIPPED: cqlsh not installed (scripts/test installs it into .venv)")
    return path


def cqlsh(cqlsh_bin, ip: str, *args: str, env_extra: dict[str, str] | None = None):
    home = tempfile.mkdtemp(prefix="ringdb-cqlsh-sec-")
    env = dict(os.environ, HOME=home)
    env.update(env_extra or {})
    result = run([str(cqlsh_bin), ip, "9042", "--request-timeout", "30", *args], timeout=90, env=env)
    assert result.returncode is not None, f"cqlsh hung\n{result.stdout}\n{result.stderr}"
    return result


def test_cqlsh_logs_in_with_u_and_p(cqlsh_bin, auth_node, admin):
    ok = cqlsh(cqlsh_bin, auth_node.ip, "-u", SUPERUSER, "-p", SUPERPASS, "-e", "LIST ROLES")
    assert ok.returncode == 0, ok.stderr
    assert SUPERUSER in ok.stdout, ok.stdout
    bad = cqlsh(cqlsh_bin, auth_node.ip, "-u", SUPERUSER, "-p", "nope", "-e", "LIST ROLES")
    assert bad.returncode != 0
    assert "AuthenticationFailed" in bad.stderr or "incorrect" in bad.stderr, bad.stderr


# -- lock-out ------------------------------------------------------------------------------------


def test_repeated_failed_logins_lock_the_address_out(ringdb_binary):
    node = start_node(ringdb_binary, dict(AUTH_CONFIG, auth_max_failed_logins="3"))
    try:
        cluster, _ = wait_login(node.ip)
        cluster.shutdown()
        for _ in range(3):
            with pytest.raises(NoHostAvailable):
                connect(node.ip, SUPERUSER, "guess")
        with pytest.raises(NoHostAvailable) as e:
            connect(node.ip, SUPERUSER, SUPERPASS)
        assert "Too many failed login attempts" in str(auth_errors(e)[0]), auth_errors(e)
        log = node.log()
        assert "failed login" in log and "guess" not in log
    finally:
        stop_node(node)


# -- a cluster -----------------------------------------------------------------------------------


def test_a_role_created_on_one_node_logs_in_on_another(cluster_factory_with_sets):
    c = cluster_factory_with_sets(
        "secauth", 2,
        ["authenticator=password", f"auth_superuser_password={SUPERPASS}"],
    )
    cluster, admin1 = wait_login(c.ip(1))
    try:
        admin1.execute("CREATE ROLE traveller WITH PASSWORD = 'tr-pw' AND LOGIN = true")
    finally:
        cluster.shutdown()
    cluster2, s2 = wait_login(c.ip(2), "traveller", "tr-pw", timeout=20)
    try:
        with pytest.raises(Unauthorized):
            s2.execute("CREATE KEYSPACE nope WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
    finally:
        cluster2.shutdown()


@pytest.fixture(scope="module")
def cluster_factory_with_sets(ringdb_binary, tmp_path_factory):
    """Like conftest's cluster_factory, with `--set key=value` options for every node."""
    import conftest

    made = []

    def make(name: str, nodes: int, sets: list[str]):
        c = conftest.RingdbCluster(ringdb_binary, name, tmp_path_factory.mktemp(name) / name, nodes)
        made.append(c)
        conftest.ACTIVE_CLUSTERS.append(c)
        try:
            c.cli(
                "create", name, "-n", str(nodes), "--base-ip", c.base_ip,
                *[a for kv in sets for a in ("--set", kv)],
                "--start", "--timeout", str(int(conftest.CLUSTER_TIMEOUT)),
                timeout=conftest.CLUSTER_TIMEOUT + 60,
            )
        except Exception:
            c.keep = True
            raise
        return c

    yield make
    for c in made:
        if c in conftest.ACTIVE_CLUSTERS:
            conftest.ACTIVE_CLUSTERS.remove(c)
        c.remove()


# -- client TLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(ringdb_binary):
    """A CA and a server certificate made with `ringdb certs`."""
    d = Path(tempfile.mkdtemp(prefix="ringdb-client-tls-"))
    for args in (
        ["create-ca", "--dir", str(d / "ca")],
        ["issue", "--ca", str(d / "ca"), "--name", "cqlnode", "--ip", "127.0.0.1", "--out", str(d / "node")],
    ):
        r = run([str(ringdb_binary), "certs", *args], timeout=60)
        assert r.returncode == 0, r.stderr
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)


def client_context(ca: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ca))
    # The certificate names 127.0.0.1, not the test's 127.0.x.y address; the chain is checked.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


@pytest.fixture(scope="module")
def tls_node(ringdb_binary, certs):
    ctx = client_context(certs / "node" / "ca.crt")
    cfg = {
        "client_encryption": (
            f'{{enabled: true, cert: "{certs / "node" / "cqlnode.crt"}", '
            f'key: "{certs / "node" / "cqlnode.key"}"}}'
        ),
    }
    n = start_node(ringdb_binary, cfg, ssl_context=ctx)
    yield n
    stop_node(n)


def test_driver_with_ssl_context_connects_over_tls(tls_node, certs):
    cluster, session = connect(tls_node.ip, ssl_context=client_context(certs / "node" / "ca.crt"))
    try:
        assert session.execute("SELECT release_version FROM system.local").one().release_version
    finally:
        cluster.shutdown()


def test_plain_connections_are_refused_when_tls_is_required(tls_node):
    with pytest.raises(NoHostAvailable):
        connect(tls_node.ip)


def test_cqlsh_ssl_connects(cqlsh_bin, tls_node, certs):
    r = cqlsh(
        cqlsh_bin, tls_node.ip, "--ssl", "-e", "SELECT release_version FROM system.local",
        env_extra={"SSL_CERTFILE": str(certs / "node" / "ca.crt"), "SSL_VALIDATE": "true"},
    )
    assert r.returncode == 0, r.stderr
    assert "4.1.0" in r.stdout, r.stdout
    plain = cqlsh(cqlsh_bin, tls_node.ip, "-e", "SELECT release_version FROM system.local")
    assert plain.returncode != 0

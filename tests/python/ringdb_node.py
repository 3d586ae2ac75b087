"""Spawns a real `ringdb node` for the Python end-to-end tests (the Python twin of `TestNode` in
tests/src/lib.rs).

Each node gets a loopback address of its own (127.0.x.y, from a per-process counter mixed with the
pid, checked free by binding its ports) with the default ports there, a temp dir holding its data
dir, YAML config and log file, and is killed on close. Every wait is bounded in time.

The binary is $RINGDB_BIN if set, else <workspace>/target/release/ringdb.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

WORKSPACE = Path(__file__).resolve().parents[2]
NATIVE_TRANSPORT_PORT = 9042
STORAGE_PORT = 7000
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
LOG_TAIL_LINES = 50

_counter = itertools.count()


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def ringdb_bin() -> Path:
    env = os.environ.get("RINGDB_BIN")
    return Path(env) if env else WORKSPACE / "target" / "release" / "ringdb"


def venv_bin(name: str) -> Path:
    """A tool next to the running interpreter (the venv's cqlsh, …)."""
    import sys

    return Path(sys.executable).parent / name


def _port_free(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((ip, port))
            return True
        except OSError:
            return False


def unique_ip() -> str:
    hosts_per_net, nets = 253, 250
    # A different multiplier than the Rust harness, so the two rarely start on the same address;
    # the bind check settles the rest.
    base = (os.getpid() * 104729 + 17) % (hosts_per_net * nets)
    for _ in range(1024):
        slot = (base + next(_counter)) % (hosts_per_net * nets)
        ip = f"127.0.{1 + slot // hosts_per_net}.{1 + slot % hosts_per_net}"
        if _port_free(ip, NATIVE_TRANSPORT_PORT) and _port_free(ip, STORAGE_PORT):
            return ip
    raise RuntimeError("no free 127.0.x.y address after 1024 tries")


def options_ping(ip: str, port: int, timeout: float = 2.0, ssl_context=None) -> None:
    """One protocol v4 OPTIONS → SUPPORTED round trip on a fresh connection (over TLS when an
    `ssl.SSLContext` is given)."""
    with socket.create_connection((ip, port), timeout=timeout) as raw:
        s = ssl_context.wrap_socket(raw) if ssl_context is not None else raw
        s.settimeout(timeout)
        s.sendall(bytes([0x04, 0, 0, 0, 0x05, 0, 0, 0, 0]))
        header = _recv_exact(s, 9)
        version, _flags, _stream, opcode, length = struct.unpack(">BBhBi", header)
        if version != 0x84 or opcode != 0x06:
            raise RuntimeError(f"OPTIONS answered with version {version:#x} opcode {opcode:#x}")
        _recv_exact(s, length)


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise RuntimeError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def _scrubbed_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGDB_")}
    env.setdefault("RUST_LOG", "info")
    if extra:
        env.update(extra)
    return env


class RingdbNode:
    """One `ringdb node` process with its own temp dir and loopback address."""

    def __init__(
        self, binary: Path, config: dict[str, str] | None = None, ssl_context=None
    ):
        self.binary = binary
        # Used by wait_ready for nodes that serve CQL over TLS only.
        self.ssl_context = ssl_context
        self.ip = unique_ip()
        self.port = NATIVE_TRANSPORT_PORT
        self.dir = Path(tempfile.mkdtemp(prefix=f"ringdb-pytest-{self.ip}-"))
        self.data_dir = self.dir / "data"
        self.data_dir.mkdir()
        self.config_path = self.dir / "ringdb.yaml"
        self.log_path = self.dir / "node.log"
        self.keep = False
        self.proc: subprocess.Popen | None = None
        self._starts = 0
        values = {
            "cluster_name": '"ringdb-pytest"',
            "listen_address": f'"{self.ip}"',
            "storage_port": str(STORAGE_PORT),
            "native_transport_address": f'"{self.ip}"',
            "admin_address": f'"{self.ip}"',  # nodes never share the admin API's port
            "native_transport_port": str(self.port),
            "data_dir": '"' + str(self.data_dir).replace("\\", "\\\\").replace('"', '\\"') + '"',
        }
        values.update(config or {})
        lines = ["# written by the ringdb Python end-to-end test harness"]
        lines += [f"{k}: {v}" for k, v in sorted(values.items())]
        self.config_path.write_text("\n".join(lines) + "\n")

    # -- process control -------------------------------------------------------------------------

    def start(self) -> "RingdbNode":
        if self.running():
            raise RuntimeError("node already running")
        self._starts += 1
        log = open(self.log_path, "ab")
        log.write(
            f"===== test harness: start #{self._starts} of "
            f"`{self.binary} node --config {self.config_path}` =====\n".encode()
        )
        log.flush()
        try:
            self.proc = subprocess.Popen(
                [str(self.binary), "node", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_scrubbed_env(),
            )
        finally:
            log.close()
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> "RingdbNode":
        deadline = time.monotonic() + timeout
        last = "no attempt"
        while True:
            if self.proc is None:
                raise RuntimeError("node not started")
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"node exited with {code} before serving CQL on {self.ip}:{self.port}; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                options_ping(self.ip, self.port, ssl_context=self.ssl_context)
                return self
            except (OSError, RuntimeError) as e:
                last = str(e)
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"node on {self.ip}:{self.port} not ready after {timeout}s (last error: {last}); "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then wait (bounded); SIGKILL and raise if it does not exit in time."""
        if self.proc is None:
            raise RuntimeError("node not running")
        proc, self.proc = self.proc, None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise RuntimeError(f"node did not exit within {timeout}s of SIGTERM; killed")

    def restart(self) -> "RingdbNode":
        if self.running():
            self.stop()
        self.proc = None
        return self.start().wait_ready()

    def close(self) -> None:
        """Kills the process; removes the temp dir unless asked to keep it."""
        self.kill9()
        if self.keep or os.environ.get("RINGDB_KEEP_TEST_DIRS"):
            return
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- logs ------------------------------------------------------------------------------------

    def log(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def describe_for_failure(self) -> str:
        return (
            f"ringdb node {self.ip}:{self.port}, temp dir kept at {self.dir}, log {self.log_path}; "
            f"last {LOG_TAIL_LINES} lines:\n{self.log_tail()}"
        )


def run(cmd: list[str], timeout: float, cwd: Path | None = None, env: dict[str, str] | None = None):
    """Runs a command with stdin closed; returns CompletedProcess (returncode None on time-out)."""
    try:
        return subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=env,
        )
    except subprocess.TimeoutExpired as e:
        def text(b):
            if b is None:
                return ""
            return b.decode("utf-8", "replace") if isinstance(b, bytes) else b

        return subprocess.CompletedProcess(cmd, None, text(e.stdout), text(e.stderr))

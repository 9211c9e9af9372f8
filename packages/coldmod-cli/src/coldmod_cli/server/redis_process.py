"""A throwaway ``redis-server`` on a free loopback port, for the tests and the benchmark.

One place starts, restarts and stops the real Debian ``redis-server`` the
Redis store's tests and ``bench/server.py`` run against: its own directory
(AOF files survive a restart there), nothing saved unless AOF is asked for.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["RedisProcess", "redis_server_binary"]


def redis_server_binary() -> str | None:
    """The ``redis-server`` on PATH (or Debian's), or None."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )


def _unverified_tls() -> ssl.SSLContext:
    """For the readiness probe only: it asks PING, it trusts nothing it is told."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisProcess:
    """One redis-server process: ``start()``, ``kill()``, ``stop()``, ``restart()`` on the same port."""

    def __init__(
        self,
        directory: Path | None = None,
        *,
        appendonly: bool = False,
        appendfsync: str = "everysec",
        password: str | None = None,
        maxmemory: str | None = None,
        databases: int = 16,
        tls: tuple[Path, Path] | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        """Describe the server (nothing starts until ``start``); ``tls`` = (certificate, key): TLS only."""
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.binary = binary
        self._own_dir = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="coldmod-redis-")) if directory is None else directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.args = [
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if appendonly else "no",
            "--appendfsync", appendfsync,
            "--databases", str(databases),
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
            *(("--requirepass", password) if password else ()),
            *(("--maxmemory", maxmemory, "--maxmemory-policy", "noeviction") if maxmemory else ()),
            *(("--tls-cert-file", str(tls[0]), "--tls-key-file", str(tls[1]), "--tls-auth-clients", "no")
              if tls else ()),
            *extra,
        ]  # fmt: skip
        self.tls = tls is not None
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` (``rediss://`` with TLS)."""
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20) -> RedisProcess:
        """Start on a free port (or the port it had, after ``kill``/``stop``) and wait until it answers PING."""
        for _ in range(5):
            port = self.port or _free_port()
            ports = ("--port", "0", "--tls-port", str(port)) if self.tls else ("--port", str(port))
            self.proc = subprocess.Popen(
                [self.binary, *ports, *self.args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready(port, timeout):
                self.port = port
                return self
            self._end(kill=True)
            if self.port:  # a restart on its old port: the port must be ours again
                time.sleep(0.2)
        raise RuntimeError(f"redis-server did not start; see {self.directory / 'redis.log'}")

    def _wait_ready(self, port: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
                conn = _unverified_tls().wrap_socket(raw) if self.tls else raw
                conn.sendall(b"PING\r\n")
                answer = conn.recv(64)
                if answer.startswith((b"+PONG", b"-NOAUTH")):
                    return True
                # -LOADING: still reading its AOF
            time.sleep(0.02)
        return False

    def _end(self, *, kill: bool) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL: no shutdown save; what AOF holds is what survives."""
        self._end(kill=True)

    def stop(self) -> None:
        """SIGTERM and wait."""
        self._end(kill=False)

    def restart(self) -> None:
        """kill -9, then start again on the same port with the same files."""
        self.kill()
        self.start()

    def close(self) -> None:
        """Stop it and remove its directory if it made one."""
        self.kill()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisProcess:
        """Start it."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Close it."""
        self.close()

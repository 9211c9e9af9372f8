"""Fixtures for the collector's tests: a real server process on a loopback port.

Imported by the ``test_server_*`` modules (``conftest.py`` belongs to the CLI's
tests). The server runs as ``python -m coldmod_cli.server`` on port 0 with a
real SQLite file; its stderr tells us the port it bound.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import grpc
import pytest

from coldmod_cli.server.process import collector_command
from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc
from coldmod_trace.config import client_channel, client_config

_LISTENING = re.compile(r"gRPC listening on (\S+):(\d+) ")
INSECURE = {"COLDMOD_INSECURE": "on"}
API_KEY = "s3cret-key-for-tests"


@pytest.fixture(name="tls_env")
def tls_env_fixture(tmp_path: Path) -> dict[str, str]:
    """Server and client environment of the production configuration: TLS (trustme, 127.0.0.1) and an API key."""
    return make_tls_env(tmp_path)


def make_tls_env(directory: Path) -> dict[str, str]:
    """Certificates minted by trustme for 127.0.0.1 written into ``directory``, and the environment naming them."""
    import trustme

    tmp_path = directory

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_path, cert_path, key_path = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(str(cert_path), append=True)
    return {
        "COLDMOD_TLS_CERT": str(cert_path),
        "COLDMOD_TLS_KEY": str(key_path),
        "COLDMOD_TLS_CA": str(ca_path),
        "COLDMOD_API_KEY": API_KEY,
    }


class ServerProcess:
    """One ``python -m coldmod_cli.server`` process and clients for it."""

    def __init__(
        self,
        store: Path | str,
        env: Mapping[str, str],
        args: tuple[str, ...] = (),
        max_file_bytes: int | None = None,
    ) -> None:
        """Start the server and wait until it listens (or fails).

        ``max_file_bytes`` sets the child's RLIMIT_FSIZE soft limit: writes
        beyond it fail as on a full disk, and ``set_max_file_bytes`` frees space.
        """
        self.store = store
        self.env = dict(env)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")}
        full_env.update(self.env)

        def limit_files() -> None:  # in the child, before exec (Python ignores SIGXFSZ: writes just fail)
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, resource.RLIM_INFINITY))

        self.proc = subprocess.Popen(
            collector_command(store if isinstance(store, str) else f"sqlite://{store}", *args),
            env=full_env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            preexec_fn=limit_files if max_file_bytes is not None else None,
        )
        self.lines: list[str] = []
        self.port = 0
        listening = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(listening,), daemon=True)
        self._reader.start()
        listening.wait(30)
        self._channels: list[grpc.Channel] = []

    def _read(self, listening: threading.Event) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            match = _LISTENING.search(line)
            if match:
                self.port = int(match.group(2))
                listening.set()
        listening.set()

    def set_max_file_bytes(self, limit: int) -> None:
        """Change the running server's RLIMIT_FSIZE soft limit (free or take away "disk space")."""
        import resource

        resource.prlimit(self.proc.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    @property
    def stderr(self) -> str:
        """Everything the server printed so far."""
        return "".join(self.lines)

    @property
    def target(self) -> str:
        """The address clients dial."""
        assert self.port, f"the server did not start: {self.stderr}"
        return f"127.0.0.1:{self.port}"

    def channel(self, **env: str) -> grpc.Channel:
        """A client channel built the way every Coldmod client builds it."""
        channel = client_channel(client_config(self.target, env={**self.env, **env}))
        self._channels.append(channel)
        return channel

    def tracing(self, **env: str) -> pb_grpc.TracingStub:
        """A Tracing client."""
        return pb_grpc.TracingStub(self.channel(**env))

    def heatmap(self, **env: str) -> pb_grpc.HeatmapStub:
        """A Heatmap client."""
        return pb_grpc.HeatmapStub(self.channel(**env))

    def terminate(self, timeout: float = 10) -> tuple[int, float]:
        """SIGTERM; returns the exit code and the seconds it took."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code, time.monotonic() - start

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        """Close the clients and make sure the process is gone."""
        for channel in self._channels:
            channel.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def run_server_once(store: Path, env: Mapping[str, str], *args: str, timeout: float = 30) -> tuple[int, str]:
    """Run the server expecting it to exit by itself (a refused start); returns (code, stderr)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")}
    full_env.update(env)
    done = subprocess.run(
        collector_command(f"sqlite://{store}", *args),
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stderr


@pytest.fixture(name="store_kind")
def store_kind_fixture(request: pytest.FixtureRequest) -> str:
    """Which store ``start_server`` uses: "sqlite" unless a module parametrises it.

    ``pytestmark = pytest.mark.parametrize("store_kind", STORES, indirect=True)``
    runs every test of a module on both stores (one suite, two stores).
    """
    return str(getattr(request, "param", "sqlite"))


#: Both stores, for ``indirect`` parametrisation of ``store_kind``.
STORES = ["sqlite", "redis"]


@pytest.fixture(name="redis_server", scope="session")
def redis_server_fixture() -> Iterator:
    """One real redis-server (Debian's) on a free loopback port for the whole run, AOF on."""
    from coldmod_cli.server.redis_process import RedisProcess

    with RedisProcess(appendonly=True) as server:
        yield server


@pytest.fixture(name="store_url")
def store_url_fixture(request: pytest.FixtureRequest, store_kind: str, tmp_path: Path) -> str:
    """A fresh, empty store of ``store_kind``: an SQLite file, or the Redis server flushed."""
    if store_kind == "redis":
        import redis

        server = request.getfixturevalue("redis_server")
        with redis.Redis(port=server.port) as client:
            client.flushall()
        return str(server.url)
    return f"sqlite://{tmp_path / 'coldmod.db'}"


@pytest.fixture(name="start_server")
def start_server_fixture(store_url: str) -> Iterator:
    """A factory: ``start_server(env=..., store=...)`` starts a server; all are stopped at the end."""
    started: list[ServerProcess] = []

    def start(env: Mapping[str, str] = INSECURE, store: Path | None = None, args: tuple[str, ...] = ()):
        server = ServerProcess(store or store_url, env, args)
        started.append(server)
        assert server.port, f"the server did not start: {server.stderr}"
        return server

    yield start
    for server in started:
        server.close()


def now_ms() -> int:
    """The wall clock in epoch milliseconds, as the protocol counts time."""
    return time.time_ns() // 1_000_000


def sources(*keys: str) -> list[pb.TraceSource]:
    """Trace sources for these keys, each in a file named after its module."""
    return [pb.TraceSource(key=k, path=k.rsplit(".", 1)[0].replace(".", "/") + ".py", lines=[1]) for k in keys]


def report(
    app: str,
    instance: str,
    sequence: int,
    calls: Mapping[str, int],
    *,
    estimated: bool = False,
    start: int | None = None,
    end: int | None = None,
) -> pb.ReportRequest:
    """A Report of these deltas."""
    end = end if end is not None else now_ms()
    start = start if start is not None else end - 1000
    return pb.ReportRequest(
        app=app,
        instance_id=instance,
        sequence=sequence,
        window_start_ms=start,
        window_end_ms=end,
        deltas=[pb.KeyDelta(key=k, calls=c, estimated=estimated) for k, c in calls.items()],
    )


def heat(heatmap: pb_grpc.HeatmapStub, app: str) -> dict[str, pb.HeatmapEntry]:
    """The app's heatmap as ``{key: entry}``."""
    return {e.key: e for e in fetch(heatmap, app).entries}


def fetch(heatmap: pb_grpc.HeatmapStub, app: str, timeout: float = 30) -> pb.FetchResponse:
    """The app's whole heatmap (the streamed parts merged)."""
    from coldmod_cli.client import merge_fetch

    return merge_fetch(heatmap.Fetch(pb.FetchRequest(app=app), timeout=timeout))


def complete(call, *args, **kwargs):
    """Make a gRPC call and read its whole answer (a streamed answer fails only while it is read)."""
    answer = call(*args, **kwargs)
    return list(answer) if hasattr(answer, "__next__") else answer

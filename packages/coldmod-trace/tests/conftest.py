"""Fixtures for the tracer tests: a real gRPC collector on loopback, app trees, traced subprocesses."""

from __future__ import annotations

import collections
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from coldmod_proto.v1 import coldmod_pb2, coldmod_pb2_grpc
from coldmod_trace.keys import sources_fingerprint


class Recorder(coldmod_pb2_grpc.TracingServicer):
    """Records Register and Report; applies each (instance_id, sequence) once, like the collector."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.registers: list[coldmod_pb2.RegisterRequest] = []
        self.register_calls: list[coldmod_pb2.RegisterRequest] = []  # every Register, fingerprint-only too
        self.fingerprints: dict[str, str] = {}  # app -> fingerprint of its current set
        self.reports: dict[tuple[str, int], coldmod_pb2.ReportRequest] = {}
        self.duplicates = 0

    def Register(self, request, context):  # gRPC method name
        """Fingerprint-first like the collector: a known set is answered at once, else need_sources."""
        with self.lock:
            self.register_calls.append(request)
            if request.fingerprint_only:
                if not request.fingerprint or self.fingerprints.get(request.app) != request.fingerprint:
                    return coldmod_pb2.RegisterResponse(need_sources=True)
            else:
                sources = [(s.key, s.path, list(s.lines)) for s in request.sources]
                self.fingerprints[request.app] = sources_fingerprint(sources)
            self.registers.append(request)  # the Registers that took effect
        return coldmod_pb2.RegisterResponse(added=len(request.sources))

    def Report(self, request, context):
        with self.lock:
            batch = (request.instance_id, request.sequence)
            duplicate = batch in self.reports
            if duplicate:
                self.duplicates += 1
            else:
                self.reports[batch] = request
        return coldmod_pb2.ReportResponse(sequence=request.sequence, duplicate=duplicate)

    def totals(self, instance_id: str | None = None) -> collections.Counter[str]:
        """Applied calls per key (of one instance, or all)."""
        with self.lock:
            out: collections.Counter[str] = collections.Counter()
            for (iid, _), report in self.reports.items():
                if instance_id is None or iid == instance_id:
                    for delta in report.deltas:
                        out[delta.key] += delta.calls
            return out

    def estimated(self) -> set[str]:
        with self.lock:
            return {d.key for r in self.reports.values() for d in r.deltas if d.estimated}

    def dropped(self) -> int:
        with self.lock:
            return sum(r.dropped_updates for r in self.reports.values())

    def instances(self) -> dict[str, int]:
        """instance_id -> pid, from the Registers."""
        with self.lock:
            return {r.process.instance_id: r.process.pid for r in self.registers}

    def sequences(self, instance_id: str) -> list[int]:
        with self.lock:
            return sorted(seq for iid, seq in self.reports if iid == instance_id)


class Collector:
    """A Tracing server on 127.0.0.1 that can be stopped and restarted on the same port."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.port = 0
        self._server: grpc.Server | None = None

    def start(self) -> Collector:
        # so_reuseport off, as in the collector: binding a port something else holds must fail.
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=[("grpc.so_reuseport", 0)])
        coldmod_pb2_grpc.add_TracingServicer_to_server(self.recorder, server)
        port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        assert port, f"could not bind 127.0.0.1:{self.port}"
        self.port = port
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    @property
    def env(self) -> dict[str, str]:
        return {"COLDMOD_GRPC_HOST": f"127.0.0.1:{self.port}", "COLDMOD_INSECURE": "on"}

    def wait_for(self, predicate: Callable[[Recorder], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.recorder):
            if time.monotonic() > deadline:
                raise AssertionError(f"collector did not see the expected data; has {dict(self.recorder.totals())}")
            time.sleep(0.05)


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector().start()
    yield server
    server.stop()


@pytest.fixture
def unused_port() -> int:
    """A loopback port nobody listens on (bound once by a plain socket, then released).

    Not a gRPC server: its listener closes asynchronously, and with SO_REUSEPORT a collector later
    started on the port shares it with that dying listener, whose connections hang for 20 s each.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_app(root: Path, files: dict[str, str], marker: str = "") -> Path:
    """Write an application tree with a coldmod.rootmarker at ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "coldmod.rootmarker").write_text(marker)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any COLDMOD_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_") and k != "PYTHONPATH"}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_py(root: Path, args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` in ``root`` with this interpreter (which has coldmod-trace installed)."""
    return subprocess.run(
        [sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=timeout
    )

"""Helpers of the Redis whole-system tests: TLS material, collector processes, tracer senders.

Collectors run as real ``python -m coldmod_cli.server`` processes in the
production configuration (TLS, API key), sharing one real redis-server that
asks for a password (given through COLDMOD_REDIS_PASSWORD, never in argv).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import grpc
import trustme

from coldmod_cli.server.process import collector_command
from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc
from coldmod_trace.config import client_channel, client_config

API_KEY = "k" * 40
REDIS_PASSWORD = "redis-secret-" + "x" * 20
_GRPC = re.compile(r"gRPC listening on (\S+):(\d+) ")
_WEB = re.compile(r"web UI on (\S+):(\d+)")


def tls_env(directory: Path) -> dict[str, str]:
    """COLDMOD_* variables for TLS + API key, with certificates made by trustme."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {name: directory / f"{name}.pem" for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    return {
        "COLDMOD_TLS_CERT": str(paths["cert"]),
        "COLDMOD_TLS_KEY": str(paths["key"]),
        "COLDMOD_TLS_CA": str(paths["ca"]),
        "COLDMOD_API_KEY": API_KEY,
        "COLDMOD_REDIS_PASSWORD": REDIS_PASSWORD,
    }


class Collector:
    """One collector process on a Redis store URL; ``start``, ``kill``, ``terminate``."""

    def __init__(self, store_url: str, env: Mapping[str, str], *extra: str) -> None:
        """Describe it (``start`` runs it; a restart keeps the gRPC port it had)."""
        self.store_url = store_url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")} | dict(env)
        self.extra = extra
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.web_port = 0
        self.lines: list[str] = []

    def start(self, timeout: float = 30) -> Collector:
        """Run it and wait until it listens; raises with its stderr if it does not."""
        self.lines = []
        port, self.port, self.web_port = self.port, 0, 0
        self.proc = subprocess.Popen(
            collector_command(self.store_url, *self.extra, grpc_host=f"127.0.0.1:{port}"),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        listening = threading.Event()
        threading.Thread(target=self._read, args=(self.proc, listening), daemon=True).start()
        listening.wait(timeout)
        if not self.port:
            self.kill()
            raise RuntimeError(f"the collector did not start: {self.stderr}")
        return self

    def _read(self, proc: subprocess.Popen[str], listening: threading.Event) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.lines.append(line)
            if match := _WEB.search(line):
                self.web_port = int(match.group(2))
            if "coldmod: store" in line:
                listening.set()
            if match := _GRPC.search(line):
                self.port = int(match.group(2))
        listening.set()

    @property
    def stderr(self) -> str:
        """What it printed."""
        return "".join(self.lines)

    @property
    def target(self) -> str:
        """host:port of its gRPC endpoint."""
        return f"127.0.0.1:{self.port}"

    def channel(self) -> grpc.Channel:
        """A client channel the way every Coldmod client builds it (TLS, API key)."""
        return client_channel(client_config(self.target, env=self.env))

    def kill(self) -> None:
        """kill -9."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self) -> int:
        """SIGTERM; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15)


def run_collector_once(store_url: str, env: Mapping[str, str], timeout: float = 30) -> tuple[int, str]:
    """Run a collector expected to refuse to start; returns (exit code, stderr)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")} | dict(env)
    done = subprocess.run(
        collector_command(store_url), env=full, capture_output=True, text=True, timeout=timeout
    )
    return done.returncode, done.stderr


def sources(keys: list[str]) -> list[pb.TraceSource]:
    """Trace sources for these keys."""
    return [pb.TraceSource(key=k, path="shop/views.py", lines=[1]) for k in keys]


def report(app: str, instance: str, sequence: int, deltas: Mapping[str, int]) -> pb.ReportRequest:
    """One Report."""
    now = time.time_ns() // 1_000_000
    return pb.ReportRequest(
        app=app,
        instance_id=instance,
        sequence=sequence,
        window_start_ms=now - 1000,
        window_end_ms=now,
        deltas=[pb.KeyDelta(key=k, calls=n) for k, n in deltas.items()],
    )


class Fleet:
    """Simulated tracers: each resends its unacknowledged batch until acknowledged, as coldmod-trace does.

    Tracer ``i`` starts on collector ``i % n``; after a failed send it moves to
    the next collector (a load balancer's retry), so resends reach a
    *different* collector than the first attempt.
    """

    def __init__(self, collectors: list[Collector], plan: dict[str, list[dict[str, int]]], app: str) -> None:
        """``plan``: per instance, its batches in order."""
        self.collectors = collectors
        self.plan = plan
        self.app = app
        self.acked = 0
        self.failures: Counter[grpc.StatusCode] = Counter()
        self.moved_after_failure = 0
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, args=(i, name), daemon=True) for i, name in enumerate(plan)
        ]

    def start(self) -> Fleet:
        """Start every tracer."""
        for t in self.threads:
            t.start()
        return self

    def wait_acked(self, n: int, timeout: float = 60) -> None:
        """Until ``n`` batches are acknowledged in all."""
        deadline = time.monotonic() + timeout
        while self.acked < n:
            assert time.monotonic() < deadline, f"only {self.acked} of {n} batches acknowledged"
            time.sleep(0.005)

    def join(self, timeout: float = 120) -> None:
        """Until every tracer has every batch acknowledged."""
        for t in self.threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self.threads), "a tracer never got all its batches acknowledged"

    def _run(self, index: int, instance: str) -> None:
        which = index % len(self.collectors)
        channel, port = None, 0
        for seq, deltas in enumerate(self.plan[instance], start=1):
            while True:
                collector = self.collectors[which]
                if channel is None or port != collector.port:
                    if channel is not None:
                        channel.close()
                    port = collector.port
                    channel = collector.channel()
                try:
                    pb_grpc.TracingStub(channel).Report(report(self.app, instance, seq, deltas), timeout=5)
                except grpc.RpcError as exc:
                    with self.lock:
                        self.failures[exc.code()] += 1
                        self.moved_after_failure += 1
                    which = (which + 1) % len(self.collectors)
                    time.sleep(0.05)
                    continue
                with self.lock:
                    self.acked += 1
                break
        if channel is not None:
            channel.close()

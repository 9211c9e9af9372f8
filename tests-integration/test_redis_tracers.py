"""Real traced processes on three collectors sharing one Redis: exact counts through Redis and collector crashes.

Each of three processes runs under coldmod-trace (exact mode, TLS and the
API key) against its own collector. Redis is killed with -9 and restarted on
its AOF, then a collector is killed with -9 and restarted on its port: the
tracers keep their batches and resend them, and the heatmap ends exact.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis_helpers import REDIS_PASSWORD, Collector, tls_env

from coldmod_cli.client import merge_fetch
from coldmod_cli.server.redis_process import RedisProcess
from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(180)

APP = """
import sys

import coldmod_trace

coldmod_trace.start(mode="exact", flush_interval=0.1)


def hit():
    pass


for line in sys.stdin:
    for _ in range(int(line)):
        hit()
    print("ok", flush=True)
"""


def _hits(collector: Collector) -> int:
    try:
        with collector.channel() as channel:
            fetched = merge_fetch(pb_grpc.HeatmapStub(channel).Fetch(pb.FetchRequest(app="app"), timeout=10))
    except Exception:
        return -1
    return sum(e.calls for e in fetched.entries if e.key == "app.hit")


def _wait(collector: Collector, total: int, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while (seen := _hits(collector)) != total:
        assert time.monotonic() < deadline, f"{seen} hits stored, {total} expected"
        time.sleep(0.1)


def test_real_tracers_lose_and_double_nothing_across_redis_and_collector_kills(tmp_path: Path):
    root = tmp_path / "app"
    root.mkdir()
    (root / "coldmod.rootmarker").write_text('[app]\nname = "app"\n')
    (root / "app.py").write_text(APP)
    env = tls_env(tmp_path)
    with RedisProcess(tmp_path / "redis", appendonly=True, password=REDIS_PASSWORD) as redis:
        collectors = [Collector(redis.url, env).start() for _ in range(3)]
        tracer_env = {k: v for k, v in collectors[0].env.items() if k != "COLDMOD_REDIS_PASSWORD"}
        procs = [
            subprocess.Popen(
                [sys.executable, "app.py"],
                cwd=root,
                env=tracer_env | {"COLDMOD_GRPC_HOST": c.target},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for c in collectors
        ]

        def send(n: int) -> None:
            for proc in procs:
                assert proc.stdin is not None
                assert proc.stdout is not None
                proc.stdin.write(f"{n}\n")
                proc.stdin.flush()
                assert proc.stdout.readline().strip() == "ok"

        try:
            send(100)
            _wait(collectors[0], 300)
            redis.kill()  # batches in flight fail; the tracers keep them
            send(50)
            time.sleep(1.0)
            redis.start()
            send(25)
            _wait(collectors[1], 3 * 175)
            collectors[2].kill()  # its tracer cannot reach it for a while
            send(10)
            time.sleep(0.5)
            collectors[2].start()  # the same port: its tracer resends to it
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.close()
            for proc in procs:
                assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
            for collector in collectors:
                _wait(collector, 3 * 185)
        finally:
            for proc in procs:
                proc.kill()
            for collector in collectors:
                collector.kill()

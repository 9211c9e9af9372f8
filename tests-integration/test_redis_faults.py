"""Several collectors on one real redis-server, under faults: nothing lost, nothing doubled.

Three collector processes (TLS, API key) share one redis-server with AOF
(appendfsync everysec) and a password. Simulated tracers spread over them
resend each unacknowledged batch, moving to the next collector after a
failure. Mid-stream we kill -9 a collector and restart it, then kill -9
Redis itself and restart it on its AOF: every batch ends up applied exactly
once. While Redis is down the collectors answer UNAVAILABLE quickly.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
from redis_helpers import REDIS_PASSWORD, Collector, Fleet, report, sources, tls_env

from coldmod_cli.client import merge_fetch
from coldmod_cli.server.redis_process import RedisProcess
from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(240)

KEYS = [f"shop.views.v{i}" for i in range(400)]


def _plan(instances: int, batches: int, seed: int) -> tuple[dict[str, list[dict[str, int]]], Counter[str]]:
    rng = random.Random(seed)
    plan = {
        f"inst{n}": [{k: rng.randint(1, 1000) for k in rng.sample(KEYS, 200)} for _ in range(batches)]
        for n in range(instances)
    }
    expected: Counter[str] = Counter()
    for batches_ in plan.values():
        for deltas in batches_:
            expected.update(deltas)
    return plan, expected


def _counts(collector: Collector) -> dict[str, int]:
    with collector.channel() as channel:
        fetched = merge_fetch(pb_grpc.HeatmapStub(channel).Fetch(pb.FetchRequest(app="shop"), timeout=30))
    return {e.key: e.calls for e in fetched.entries if e.calls}


@pytest.fixture
def redis(tmp_path: Path):
    """A redis-server with AOF (everysec) and a password, in tmp_path."""
    with RedisProcess(tmp_path / "redis", appendonly=True, password=REDIS_PASSWORD) as server:
        yield server


@pytest.fixture
def collectors(tmp_path: Path, redis: RedisProcess):
    """Three collectors on that Redis, in the production configuration."""
    env = tls_env(tmp_path)
    started = [Collector(redis.url, env).start() for _ in range(3)]
    yield started
    for collector in started:
        collector.kill()


def test_kill_9_of_a_collector_and_of_redis_lose_nothing_and_double_nothing(redis, collectors):
    plan, expected = _plan(instances=6, batches=40, seed=13)
    with collectors[0].channel() as channel:
        pb_grpc.TracingStub(channel).Register(pb.RegisterRequest(app="shop", sources=sources(KEYS)), timeout=30)
    for collector in collectors:  # the password came from the environment, never the command line
        assert collector.proc is not None
        assert REDIS_PASSWORD.encode() not in Path(f"/proc/{collector.proc.pid}/cmdline").read_bytes()

    fleet = Fleet(collectors, plan, "shop").start()
    fleet.wait_acked(40)
    collectors[1].kill()  # mid-stream: its in-flight Reports get no answer
    collectors[1].start()
    fleet.wait_acked(100)
    redis.kill()  # Redis itself dies: the AOF (written before each answer) is what survives
    time.sleep(0.5)  # tracers keep failing over and keep their batches meanwhile
    redis.start()
    fleet.join()

    assert fleet.acked == sum(len(b) for b in plan.values())
    assert fleet.moved_after_failure > 0, "the faults happened while batches were in flight"
    assert set(fleet.failures) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
    for collector in collectors:  # every collector serves the same, exact heatmap
        assert _counts(collector) == dict(expected)


def test_while_redis_is_down_collectors_answer_unavailable_quickly(redis, collectors):
    with collectors[0].channel() as channel:
        tracing = pb_grpc.TracingStub(channel)
        tracing.Register(pb.RegisterRequest(app="shop", sources=sources(KEYS[:3])), timeout=30)
        tracing.Report(report("shop", "i1", 1, {KEYS[0]: 2}), timeout=10)
        redis.kill()
        took = []
        for seq in (2, 3, 4):
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as err:
                tracing.Report(report("shop", "i1", seq, {KEYS[0]: 5}), timeout=10)
            took.append(time.monotonic() - started)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
            assert "unreachable" in (err.value.details() or "")
        # The best of three, so one scheduling hiccup of a loaded machine does not decide it.
        assert min(took) < 1.5, f"Reports took {took} s to fail with Redis down"
        with pytest.raises(grpc.RpcError) as err:
            merge_fetch(pb_grpc.HeatmapStub(channel).Fetch(pb.FetchRequest(app="shop"), timeout=10))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        redis.start()
        # The tracer's kept batch goes through once Redis is back, and only once.
        deadline = time.monotonic() + 20
        while True:
            try:  # (an attempt that timed out may have been applied: the counts below decide)
                tracing.Report(report("shop", "i1", 2, {KEYS[0]: 5}), timeout=10)
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, "the collector did not reconnect to Redis"
                time.sleep(0.1)
        assert tracing.Report(report("shop", "i1", 2, {KEYS[0]: 5}), timeout=10).duplicate
    assert _counts(collectors[2]) == {KEYS[0]: 7}


# -- Redis restarted under a pre-fork server (issue 20's fault matrix; the tracer's own matrix,
# packages/coldmod-trace/tests/test_tracer_faults.py, cannot start a real collector) --

#: The tracer's fault matrix's pre-fork server (traced in its master, forking short-lived workers,
#: driven line by line on stdin), with the coldmod_trace logger at DEBUG: each failed exit-flush
#: attempt says the collector's answer.
PREFORK = (Path(__file__).parents[1] / "packages/coldmod-trace/tests/apps/prefork_server.py").read_text()
#: The workers' exit budget: delivery is possible once Redis is back, so it is the time a retry
#: needs on a loaded machine (the backoff's 0.5 + 1 + 2 s, then a TLS call), not the 2 s default.
WORKER_EXIT = 10.0
#: A whole exit, teardown included, on two busy cores: proves "did not hang", not a speed.
EXIT_BOUND = WORKER_EXIT + 10.0


class _Prefork:
    """The pre-fork server as a subprocess: ``ask`` a line, read its stderr as it comes."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-W", "ignore::DeprecationWarning", "server.py"], cwd=root,
            env={**env, "TEST_EXIT": str(WORKER_EXIT), "TEST_LOG_LEVEL": "DEBUG"},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        #: Set when a worker's exit flush met the outage: the collector answered, and with what.
        self.worker_refused = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if "exit flush attempt failed" in line:
                self.worker_refused.set()

    def ask(self, line: str) -> dict:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer, "".join(self.lines)
        return json.loads(answer)


def test_redis_restarted_under_a_prefork_server_loses_nothing_doubles_nothing_delays_no_exit(tmp_path: Path):
    root = tmp_path / "app"
    root.mkdir()
    (root / "coldmod.rootmarker").write_text('[app]\nname = "app"\n')
    (root / "server.py").write_text(PREFORK)
    env = tls_env(tmp_path)
    # AOF with appendfsync always: what the collector acknowledged is on disk before its answer, so a
    # restart keeps it, and keeps the batch ids that make a resend a duplicate.
    with RedisProcess(tmp_path / "redis", appendonly=True, appendfsync="always", password=REDIS_PASSWORD) as redis:
        collector = Collector(redis.url, env).start()
        tracer_env = {k: v for k, v in collector.env.items() if k != "COLDMOD_REDIS_PASSWORD"}
        server = _Prefork(root, tracer_env | {"COLDMOD_GRPC_HOST": collector.target})
        restarter = threading.Thread(target=lambda: server.worker_refused.wait(120) and redis.start())
        try:
            assert server.ask("work 10 wait")["delivered"]
            redis.stop()  # SIGTERM, on the same port and data directory as it comes back
            assert server.ask("work 5 nowait") == {"delivered": None}
            # Redis comes back once a worker's exit flush met the outage (not after a sleep):
            # workers forked meanwhile send while it is down, and retry within their budget.
            restarter.start()
            exits = server.ask("fork 16 3 16")["exits"]
            restarter.join(120)
            assert server.worker_refused.is_set(), "no worker sent while Redis was down"
            assert len(exits) == 16, "a worker did not get to the end of its exit flush"
            assert max(flush for flush, _ in exits) <= WORKER_EXIT + 1.5, sorted(exits)[-3:]
            assert max(whole for _, whole in exits) <= EXIT_BOUND, sorted(exits, key=lambda e: e[1])[-3:]
            assert server.ask("work 1 wait")["delivered"]  # the master's counts from the outage went too
            assert server.proc.stdin is not None
            server.proc.stdin.close()
            assert server.proc.wait(30) == 0
            with collector.channel() as channel:
                fetched = merge_fetch(pb_grpc.HeatmapStub(channel).Fetch(pb.FetchRequest(app="app"), timeout=30))
        finally:
            server.proc.kill()
            collector.kill()
    stderr = "".join(server.lines)
    # What the workers and the master counted, no more and no less: 0 lost, 0 doubled.
    totals = {e.key: e.calls for e in fetched.entries if e.key in ("server.in_master", "server.in_worker")}
    assert totals == {"server.in_master": 16, "server.in_worker": 16 * 3}, stderr[-3000:]
    # The collector's answers during the outage were retryable (UNAVAILABLE), never a refusal for good.
    failed = re.findall(r"(?:exit flush attempt failed|cannot reach the collector at \S+) \((\w+)", stderr)
    assert failed, stderr[-3000:]
    assert set(failed) <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}, stderr[-3000:]
    assert "UNAVAILABLE" in failed
    assert not re.search(r"for good|not delivered before exit|Traceback", stderr), stderr[-3000:]
    assert fetched.dropped_updates == 0

"""kill -9 of the collector mid-stream: with resends, the final counts are exact."""

from __future__ import annotations

import random
import threading
from collections import Counter

import grpc
import pytest
from server_fixtures import (
    INSECURE,
    STORES,
    heat,
    report,
    sources,
    start_server_fixture,  # noqa: F401 - the start_server fixture
)

from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc
from coldmod_trace.config import client_channel, client_config

# One suite, both stores: every test runs on SQLite and on a real redis-server.
pytestmark = [pytest.mark.timeout(180), pytest.mark.parametrize("store_kind", STORES, indirect=True)]

KEYS = [f"shop.views.v{i}" for i in range(500)]
INSTANCES = 6
BATCHES = 40


def test_kill_9_and_restart_lose_nothing_and_double_nothing(start_server):
    rng = random.Random(4)
    plan = {
        f"inst{n}": [{k: rng.randint(1, 1000) for k in rng.sample(KEYS, 300)} for _ in range(BATCHES)]
        for n in range(INSTANCES)
    }
    expected: Counter[str] = Counter()
    for batches in plan.values():
        for deltas in batches:
            expected.update(deltas)

    server = start_server()
    server.tracing().Register(pb.RegisterRequest(app="shop", sources=sources(*KEYS)))
    where = {"target": server.target}
    acked: Counter[str] = Counter()
    retries: Counter[str] = Counter()
    codes: list[grpc.StatusCode] = []
    lock = threading.Lock()

    def tracer(instance: str) -> None:
        """A tracer's sender: resend the unacknowledged batch until acknowledged."""
        target, channel = None, None
        for seq, deltas in enumerate(plan[instance], start=1):
            while True:
                if target != where["target"]:
                    if channel is not None:
                        channel.close()
                    target = where["target"]
                    channel = client_channel(client_config(target, env=INSECURE))
                try:
                    pb_grpc.TracingStub(channel).Report(report("shop", instance, seq, deltas), timeout=5)
                except grpc.RpcError as exc:
                    codes.append(exc.code())
                    with lock:
                        retries[instance] += 1
                    threading.Event().wait(0.05)
                    continue
                with lock:
                    acked[instance] += 1
                break
        assert channel is not None
        channel.close()

    threads = [threading.Thread(target=tracer, args=(name,)) for name in plan]
    for t in threads:
        t.start()
    for kill_after in (40, 120):
        while sum(acked.values()) < kill_after:
            threading.Event().wait(0.005)
        server.kill()  # SIGKILL in the middle of the stream: no flush, no goodbye
        server = start_server()
        where["target"] = server.target
    for t in threads:
        t.join(120)

    assert sum(acked.values()) == INSTANCES * BATCHES
    assert sum(retries.values()) > 0, "the kills happened while batches were in flight"
    assert set(codes) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
    stored = heat(server.heatmap(), "shop")
    assert {k: e.calls for k, e in stored.items() if e.calls} == dict(expected)

"""An app the collector will never take as it is: said once, then untraced and healthy, never resent in a loop.

Two routes: the key set is larger than a message may hold (the tracer sees it
before sending), or the collector refuses the set (its key limit:
RESOURCE_EXHAUSTED). Fingerprint-first Register means the full set goes at
most once either way.
"""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from conftest import Collector, Recorder, clean_env, make_app, run_py

from coldmod_proto.v1 import coldmod_pb2_grpc

pytestmark = pytest.mark.timeout(120)

FUNCTIONS = 3_000

RUNS_A_WHILE = """
import time

import coldmod_trace
from coldmod_trace._internal import sender

sender.MAX_MESSAGE_BYTES = LIMIT  # a stand-in for 32 MiB: the same rule with a smaller number
coldmod_trace.start(mode="exact", flush_interval=0.05)

import many

deadline = time.monotonic() + 1  # twenty windows, each with counts the tracer would like to send
while time.monotonic() < deadline:
    many.f0()
    time.sleep(0.01)
print("healthy", flush=True)
"""


def _app(tmp_path, limit: int):
    many = "".join(f"def f{i}():\n    pass\n" for i in range(FUNCTIONS))
    return make_app(tmp_path / "app", {"app.py": RUNS_A_WHILE.replace("LIMIT", str(limit)), "many.py": many})


def test_a_key_set_too_large_for_one_message_is_said_once_and_never_sent(tmp_path, collector: Collector):
    root = _app(tmp_path, 100_000)  # 3,000 sources are ~120 kB
    result = run_py(root, ["app.py"], clean_env(**collector.env))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "healthy\n"
    assert result.stderr.count("coldmod: tracing stopped: the app has 3000 functions") == 1, result.stderr
    assert "coldmod.rootmarker" in result.stderr  # and what to do about it
    assert result.stderr.count("\n") == 1, result.stderr  # that one line and nothing else
    calls = collector.recorder.register_calls
    assert len(calls) == 1, [c.fingerprint_only for c in calls]  # the fingerprint went; the set never did
    assert calls[0].fingerprint_only
    assert collector.recorder.reports == {}


class _KeyLimit(Recorder):
    """A collector with a key limit below the app's size."""

    def Register(self, request, context):  # gRPC method name
        if not request.fingerprint_only and len(request.sources) > 1_000:
            with self.lock:
                self.register_calls.append(request)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "the app has too many keys; a collector keeps 1000")
        return super().Register(request, context)


def test_a_set_over_the_collectors_key_limit_is_said_once_and_not_resent(tmp_path):
    recorder = _KeyLimit()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    coldmod_pb2_grpc.add_TracingServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        root = _app(tmp_path, 32 * 1024 * 1024)
        result = run_py(root, ["app.py"], clean_env(COLDMOD_GRPC_HOST=f"127.0.0.1:{port}", COLDMOD_INSECURE="on"))
    finally:
        server.stop(None)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "healthy\n"
    assert result.stderr.count("coldmod: tracing stopped: the collector") == 1, result.stderr
    assert "RESOURCE_EXHAUSTED" in result.stderr
    full = [c for c in recorder.register_calls if not c.fingerprint_only]
    assert len(full) == 1  # sent once, refused, never again
    assert recorder.reports == {}

"""Sampled mode (the default): first calls exact, hot functions capped and marked as estimates."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import Collector, clean_env, make_app, run_py

pytestmark = pytest.mark.timeout(120)

APP = """
import json
import sys
import time

import coldmod_trace
from coldmod_trace import tracer

coldmod_trace.start(flush_interval=60)  # the default mode: sampled; one window, flushed at exit


def cold():
    pass


def warm():
    pass


def burst():
    pass


def hot():
    # ~2 us of work of its own: its calls are not all callback. (Around 0.5 us, beside the trivial
    # function in the same slices, the callback's calibration is too noisy to bound every window.)
    return sum(range(200))


def trivial():
    pass


cold()
for _ in range(10):
    warm()
for _ in range(5000):  # a burst at start-up, then never again
    burst()
calls = 0
until = time.monotonic() + 8.0
while time.monotonic() < until:  # a steady pace: ~16 slices (10 were too few to bound it on a busy CI machine)
    for _ in range(100):
        hot()
        trivial()
    calls += 100
print(json.dumps({"hot": calls, "engine": tracer.status()["engine"]}))
"""


def _lower_bounds(recorder) -> set[str]:
    with recorder.lock:
        return {d.key for r in recorder.reports.values() for d in r.deltas if d.lower_bound}


def test_first_calls_are_exact_hot_calls_estimated_and_a_burst_a_lower_bound(tmp_path, collector: Collector):
    from coldmod_trace._internal.sampling import DEFAULT_CAP

    root = make_app(tmp_path / "app", {"app.py": APP})
    result = run_py(root, ["app.py"], clean_env(**collector.env))
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    collector.wait_for(lambda r: {"app.cold", "app.warm", "app.hot", "app.burst", "app.trivial"} <= set(r.totals()))
    recorder = collector.recorder
    totals = recorder.totals()
    assert totals["app.cold"] == 1  # a function called once is seen, exactly
    assert totals["app.warm"] == 10  # below the cap: exact
    assert recorder.registers[0].process.mode == "sampled"
    if facts["engine"] == "sys.monitoring":
        assert "app.hot" in recorder.estimated()
        assert "app.burst" in _lower_bounds(recorder)
        assert not {"app.cold", "app.warm"} & (recorder.estimated() | _lower_bounds(recorder))
        # A trivial function's slices are mostly callbacks: an estimate, or a lower bound, within bounds.
        trivial = totals["app.trivial"]
        if "app.trivial" in _lower_bounds(recorder):
            assert DEFAULT_CAP < trivial <= facts["hot"]
        else:
            assert facts["hot"] / 2 <= trivial <= facts["hot"] * 2
        # The burst ended before any slice: what was seen for sure, never more than the truth.
        assert DEFAULT_CAP < totals["app.burst"] <= 5000
        assert facts["hot"] / 2 <= totals["app.hot"] <= facts["hot"] * 2, (totals, facts)
    else:  # sys.settrace cannot switch a function off: sampled mode counts exactly
        assert recorder.estimated() == set() == _lower_bounds(recorder)
        assert totals["app.hot"] == facts["hot"] == totals["app.trivial"]
        assert totals["app.burst"] == 5000


FORK_APP = """
import json
import sys
import os

import coldmod_trace

coldmod_trace.start(flush_interval=60)


def hot():
    pass


for _ in range(5000):  # past the cap: switched off in the parent
    hot()
pid = os.fork()
if pid == 0:
    for _ in range(300):  # the child's own window: below the cap, so exact
        hot()
    coldmod_trace.stop(5.0)
    os._exit(0)
os.waitpid(pid, 0)
print(json.dumps({"child": pid}))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_a_forked_child_counts_its_own_calls_from_zero_with_its_own_slices(tmp_path, collector: Collector):
    root = make_app(tmp_path / "app", {"app.py": FORK_APP})
    result = run_py(root, ["app.py"], clean_env(**collector.env))
    assert result.returncode == 0, result.stderr
    child = json.loads(result.stdout)["child"]
    collector.wait_for(lambda r: child in r.instances().values() and len(r.instances()) == 2)
    by_pid = {pid: iid for iid, pid in collector.recorder.instances().items()}
    collector.wait_for(lambda r: r.totals(by_pid[child]).get("app.hot") == 300)
    parent = next(iid for pid, iid in by_pid.items() if pid != child)
    collector.wait_for(lambda r: r.totals(parent).get("app.hot", 0) > 1024)
    assert collector.recorder.totals(parent)["app.hot"] <= 5000  # a lower bound: what it saw

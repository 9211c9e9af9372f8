"""Sampled mode (the default): exact within a CPU budget, hot functions past it estimated within 2×."""

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
    # ~2 us of work of its own: its calls are not all callback.
    return sum(range(200))


def trivial():
    pass


cold()
for _ in range(10):
    warm()
for _ in range(5000):  # a burst at start-up, then never again: within the budget
    burst()
calls = 0
while calls < 600_000:  # a steady pace, far past the budget (counts, not seconds: a busy machine): sampled
    for _ in range(100):
        hot()
        trivial()
    calls += 100
print(json.dumps({"hot": calls, "engine": tracer.status()["engine"]}))
"""


def _lower_bounds(recorder) -> set[str]:
    with recorder.lock:
        return {d.key for r in recorder.reports.values() for d in r.deltas if d.lower_bound}


def test_calls_within_the_budget_are_exact_and_hot_calls_past_it_estimated_within_2x(tmp_path, collector: Collector):
    root = make_app(tmp_path / "app", {"app.py": APP})
    result = run_py(root, ["app.py"], clean_env(**collector.env))
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    collector.wait_for(lambda r: {"app.cold", "app.warm", "app.hot", "app.burst", "app.trivial"} <= set(r.totals()))
    recorder = collector.recorder
    totals = recorder.totals()
    assert totals["app.cold"] == 1  # a function called once is seen, exactly
    assert totals["app.warm"] == 10
    assert totals["app.burst"] == 5000  # a start-up burst: within the budget, exact
    assert recorder.registers[0].process.mode == "sampled"
    if facts["engine"] == "sys.monitoring":
        assert {"app.hot", "app.trivial"} <= recorder.estimated()
        assert not {"app.cold", "app.warm", "app.burst"} & (recorder.estimated() | _lower_bounds(recorder))
        # A trivial function's slices are mostly callbacks: estimated all the same, within 2×.
        for key in ("app.hot", "app.trivial"):
            assert facts["hot"] / 2 <= totals[key] <= facts["hot"] * 2, (key, totals, facts)
    else:  # sys.settrace cannot switch a function off: sampled mode counts exactly
        assert recorder.estimated() == set() == _lower_bounds(recorder)
        assert totals["app.hot"] == facts["hot"] == totals["app.trivial"]


SHAPES_APP = """
import json
import sys
import time

import coldmod_trace

coldmod_trace.start(flush_interval=60)


def sleepy():  # ~1 us of work of its own (the bench measures trivial ones)
    return sum(range(100))


def short():
    return sum(range(100))


shape, total = sys.argv[1], int(sys.argv[2])
calls = 0
while calls < total:  # counts, not seconds: the same shape on a busy machine
    if shape == "bursts":  # bursts between sleeps: the process is idle most of the time
        for _ in range(2000):
            sleepy()
        calls += 2000
        time.sleep(0.02)
    else:  # a short process, busy all along
        for _ in range(100):
            short()
        calls += 100
print(json.dumps({"calls": calls}))
"""


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.settrace counts exactly")
@pytest.mark.parametrize(
    ("shape", "key", "calls"), [("bursts", "app.sleepy", 400_000), ("short", "app.short", 1_000_000)]
)
def test_bursts_between_sleeps_and_a_short_process_are_reported_within_2x(
    tmp_path, collector: Collector, shape, key, calls
):
    # What the old sampler reported as lower bounds at 0.01× to 0.25× of the truth.
    root = make_app(tmp_path / "app", {"app.py": SHAPES_APP})
    result = run_py(root, ["app.py", shape, str(calls)], clean_env(**collector.env))
    assert result.returncode == 0, result.stderr
    truth = json.loads(result.stdout)["calls"]
    collector.wait_for(lambda r: key in r.totals())
    reported = collector.recorder.totals()[key]
    assert truth / 2 <= reported <= truth * 2, (reported, truth, _lower_bounds(collector.recorder))


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

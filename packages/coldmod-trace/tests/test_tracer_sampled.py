"""Sampled mode (the default): first calls exact, hot functions capped and marked as estimates."""

from __future__ import annotations

import json

import pytest
from conftest import Collector, clean_env, make_app, run_py

pytestmark = pytest.mark.timeout(120)

APP = """
import json
import time

import coldmod_trace
from coldmod_trace import tracer

coldmod_trace.start(flush_interval=0.25)  # the default mode: sampled


def cold():
    pass


def warm():
    pass


def hot():
    pass


cold()
for _ in range(10):
    warm()
calls = 0
until = time.monotonic() + 1.5
while time.monotonic() < until:  # a steady pace across several windows
    for _ in range(1000):
        hot()
    calls += 1000
print(json.dumps({"hot": calls, "engine": tracer.status()["engine"]}))
"""


def test_first_calls_are_exact_and_hot_calls_are_estimates(tmp_path, collector: Collector):
    root = make_app(tmp_path / "app", {"app.py": APP})
    result = run_py(root, ["app.py"], clean_env(**collector.env))
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    collector.wait_for(lambda r: {"app.cold", "app.warm", "app.hot"} <= set(r.totals()))
    recorder = collector.recorder
    totals = recorder.totals()
    assert totals["app.cold"] == 1  # a function called once is seen, exactly
    assert totals["app.warm"] == 10  # below the cap: exact
    assert recorder.registers[0].process.mode == "sampled"
    if facts["engine"] == "sys.monitoring":
        assert recorder.estimated() == {"app.hot"}
        # A rate extrapolated from ~0.1 ms of capped calls: the right order of magnitude, not more.
        assert facts["hot"] / 8 <= totals["app.hot"] <= facts["hot"] * 8, (totals, facts)
    else:  # sys.settrace cannot switch a function off: sampled mode counts exactly
        assert recorder.estimated() == set()
        assert totals["app.hot"] == facts["hot"]

"""Engine choice: sys.monitoring on 3.12+ (any free tool id), sys.settrace when none is free or on 3.11."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import Collector, clean_env, make_app, run_py

pytestmark = pytest.mark.timeout(120)

APP = """
import json
import sys

TAKE = {take}
for tool in TAKE:
    sys.monitoring.use_tool_id(tool, "someone else")

import coldmod_trace
from coldmod_trace import tracer

coldmod_trace.start(mode="exact", flush_interval=0.1)


def f():
    pass


for _ in range(5):
    f()
engine = tracer.active().engine
print(json.dumps({{"engine": engine.name, "tool": getattr(engine, "tool", None)}}))
"""


def _run(tmp_path, collector: Collector, take: list[int]) -> tuple[dict[str, object], str]:
    root = make_app(tmp_path / "app", {"app.py": APP.format(take=take)})
    result = run_py(root, ["app.py"], clean_env(**collector.env))
    assert result.returncode == 0, result.stderr
    collector.wait_for(lambda r: r.totals() == {"app.f": 5})
    return json.loads(result.stdout), result.stderr


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring is 3.12+")
def test_a_taken_tool_id_means_another_one(tmp_path, collector: Collector):
    facts, stderr = _run(tmp_path, collector, [3])
    assert facts == {"engine": "sys.monitoring", "tool": 4}
    assert stderr == ""


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring is 3.12+")
def test_every_tool_id_taken_falls_back_to_settrace_and_says_so(tmp_path, collector: Collector):
    facts, stderr = _run(tmp_path, collector, [3, 4, 5, 2])
    assert facts["engine"] == "sys.settrace"
    [line] = stderr.splitlines()
    assert "tracing with sys.settrace: every sys.monitoring tool id coldmod may use is taken" in line
    assert collector.recorder.registers[0].process.engine == "sys.settrace"


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.11 only")
def test_python_311_traces_with_settrace(tmp_path, collector: Collector):
    facts, stderr = _run(tmp_path, collector, [])
    assert facts["engine"] == "sys.settrace"
    assert stderr == ""  # expected on 3.11: said at INFO level, not as a warning
    assert collector.recorder.registers[0].process.engine == "sys.settrace"


def test_run_with_a_command_that_does_not_exist_is_one_line(tmp_path):
    result = run_py(tmp_path, ["-m", "coldmod_trace", "run", "--", "no-such-command-xyz"], clean_env())
    assert result.returncode == 127
    assert result.stderr.strip() == "coldmod-trace: cannot run 'no-such-command-xyz': No such file or directory"


PREVIEW = """
import json
import sys

for tool in {take}:
    sys.monitoring.use_tool_id(tool, "someone else")

from coldmod_trace.tracer import engine_preview

before = [sys.monitoring.get_tool(t) for t in range(6)] if hasattr(sys, "monitoring") else []
preview = engine_preview()
after = [sys.monitoring.get_tool(t) for t in range(6)] if hasattr(sys, "monitoring") else []
print(json.dumps({{"preview": preview, "claimed_nothing": before == after}}))
"""


@pytest.mark.parametrize("take", [[], [3, 4, 5, 2]])
def test_engine_preview_matches_the_choice_and_claims_nothing(tmp_path, take: list[int]):
    if take and sys.version_info < (3, 12):
        take = []  # no tool ids to take on 3.11; the preview is settrace either way
    result = run_py(tmp_path, ["-c", PREVIEW.format(take=take)], clean_env())
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["claimed_nothing"] is True
    name, reason = facts["preview"]
    if sys.version_info < (3, 12):
        assert (name, reason) == ("sys.settrace", "Python 3.11 has no sys.monitoring")
    elif take:
        assert name == "sys.settrace"
        assert reason.startswith("every sys.monitoring tool id coldmod may use is taken (3=someone else")
    else:
        assert (name, reason) == ("sys.monitoring", "")


SAMPLED_ONE_ID = """
import json
import sys

for tool in (3, 4, 5):
    sys.monitoring.use_tool_id(tool, "someone else")

import coldmod_trace
from coldmod_trace import tracer

coldmod_trace.start(flush_interval=0.1)


def hot():
    pass


for _ in range(3000):
    hot()
engine = tracer.active().engine
print(json.dumps({"engine": engine.name, "tool": engine.tool, "local": engine.local}))
"""


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring is 3.12+")
def test_sampled_mode_with_one_free_tool_id_counts_exactly_and_says_so(tmp_path, collector: Collector):
    root = make_app(tmp_path / "app", {"app.py": SAMPLED_ONE_ID})
    result = run_py(root, ["app.py"], clean_env(**collector.env))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"engine": "sys.monitoring", "tool": 2, "local": None}
    [line] = result.stderr.splitlines()
    assert "only one sys.monitoring tool id is free: sampled mode counts exactly" in line
    collector.wait_for(lambda r: r.totals() == {"app.hot": 3000})  # past the cap, still exact
    assert collector.recorder.estimated() == set()

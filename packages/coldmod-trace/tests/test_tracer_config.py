"""start() never raises into the app: configuration problems are one warning, and the app runs on."""

from __future__ import annotations

import time

import pytest
from conftest import Collector, clean_env, make_app, run_py

pytestmark = pytest.mark.timeout(120)

APP = """
import coldmod_trace

assert coldmod_trace.start() is TRACING
assert coldmod_trace.start() is TRACING  # a second start() is harmless


def work():
    return 41


print(work() + 1)
"""


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("marker", "env", "expected"),
    [
        (None, {"COLDMOD_INSECURE": "on"}, "no coldmod.rootmarker"),
        ("[app]\nname = 3\n", {"COLDMOD_INSECURE": "on"}, "coldmod.rootmarker:2: [app] name must be"),
        ("", {"COLDMOD_INSECURE": "on", "COLDMOD_MODE": "fast"}, "COLDMOD_MODE='fast' is not a mode"),
        ("", {"COLDMOD_INSECURE": "on", "COLDMOD_FLUSH_INTERVAL": "soon"}, "COLDMOD_FLUSH_INTERVAL"),
        ("", {"COLDMOD_GRPC_HOST": "http://x:1", "COLDMOD_INSECURE": "on"}, "COLDMOD_GRPC_HOST"),
        ("", {}, "COLDMOD_API_KEY is not set"),
    ],
    ids=["missing-rootmarker", "broken-rootmarker", "bad-mode", "bad-interval", "bad-host", "no-api-key"],
)
def test_a_configuration_problem_is_one_warning_and_the_app_runs(tmp_path, marker, env, expected):
    root = tmp_path / "app"
    make_app(root, {"app.py": APP.replace("TRACING", "False")})
    if marker is None:
        (root / "coldmod.rootmarker").unlink()
    else:
        (root / "coldmod.rootmarker").write_text(marker)
    result = run_py(root, ["app.py"], clean_env(**env))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "42\n"
    [warning] = _warnings(result.stderr)
    assert expected in warning
    assert "Traceback" not in result.stderr


def test_root_is_found_from_the_main_script_when_the_cwd_has_none(tmp_path, collector: Collector):
    root = make_app(tmp_path / "app", {"app.py": APP.replace("TRACING", "True")})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_py(elsewhere, [str(root / "app.py")], clean_env(**collector.env, COLDMOD_MODE="exact"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    collector.wait_for(lambda r: r.totals() == {"app.work": 1})


BIG_START = """
import time

import coldmod_trace

from coldmod_trace import tracer

coldmod_trace.start(mode="exact", flush_interval=0.1)
discovered = tracer.active().sender.sources_if_known() is not None  # not waited for: seconds on this tree


def first():
    pass


first()  # right after start(): counted although discovery has not finished
print(discovered, flush=True)

deadline = time.monotonic() + 60  # stay until delivered: discovering this tree outlasts the exit budget
while time.monotonic() < deadline and not (tracer.status()["sequence"] and not tracer.status()["inflight"]):
    time.sleep(0.05)
"""


def test_start_returns_before_discovery_of_a_large_tree_ends(tmp_path, collector: Collector):
    module = "".join(f"def f{i}():\n    return {i}\n\n\n" for i in range(50))
    files = {f"pkg{d}/mod{m}.py": module for d in range(40) for m in range(50)}  # 100,000 functions
    root = make_app(tmp_path / "big", {"app.py": BIG_START, **files})
    result = run_py(root, ["app.py"], clean_env(**collector.env))
    assert result.returncode == 0, result.stderr
    # Discovery of 2,000 files (seconds) happens off the caller's thread: start() returned before it ended.
    # (What start() costs is measured in `nox -s bench`, not asserted here.)
    assert result.stdout.strip() == "False"
    collector.wait_for(lambda r: r.totals() == {"app.first": 1}, timeout=60)
    assert len(collector.recorder.registers[0].sources) == 100_001


def test_stop_flushes_and_uninstalls_and_start_works_again(tmp_path, collector: Collector):
    app = """
import coldmod_trace
from coldmod_trace import tracer

coldmod_trace.start(mode="exact", flush_interval=3600)


def during():
    pass


def after():
    pass


def again():
    pass


during()
assert coldmod_trace.stop() is True
assert tracer.status() is None
after()  # not traced
coldmod_trace.start(mode="exact", flush_interval=3600)  # a new tracer; the exit hook flushes it
again()
again()
"""
    root = make_app(tmp_path / "app", {"app.py": app})
    started = time.monotonic()
    result = run_py(root, ["app.py"], clean_env(**collector.env))
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10
    assert collector.recorder.totals() == {"app.during": 1, "app.again": 2}
    assert len(collector.recorder.instances()) == 2

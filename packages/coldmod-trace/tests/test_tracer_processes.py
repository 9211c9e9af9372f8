"""Processes: a forked child is its own instance; `coldmod-trace run` traces subprocesses and forked workers."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import grpc
import pytest
from conftest import Collector, Recorder, clean_env, make_app, run_py
from tls_fixtures import TlsCollector

pytestmark = pytest.mark.timeout(120)

FORKING_APP = """
import os
import sys

import coldmod_trace

coldmod_trace.start(mode="exact", flush_interval=30)  # only the exit flushes deliver


def f():
    pass


def g():
    pass


for _ in range(3):
    f()
pid = os.fork()
if pid == 0:
    for _ in range(5):
        g()
    for _ in range(2):
        f()
    sys.exit(0)
_, status = os.waitpid(pid, 0)
assert status == 0
f()
"""


def _by_pid(collector: Collector) -> dict[int, dict[str, int]]:
    recorder = collector.recorder
    return {pid: dict(recorder.totals(iid)) for iid, pid in recorder.instances().items()}


def test_forked_child_has_its_own_identity_and_starts_from_zero(tmp_path, collector: Collector):
    root = make_app(tmp_path / "app", {"app.py": FORKING_APP})
    result = run_py(root, ["app.py"], clean_env(**collector.env))
    assert result.returncode == 0, result.stderr
    collector.wait_for(lambda r: sum(r.totals().values()) == 11)
    counts = sorted(_by_pid(collector).values(), key=lambda c: c.get("app.g", 0))
    assert counts == [{"app.f": 4}, {"app.f": 2, "app.g": 5}]


PARENT = """
import subprocess
import sys


def parent_work():
    pass


parent_work()
subprocess.run([sys.executable, "worker.py"], check=True)
"""

WORKER = """
def worker_work():
    pass


for _ in range(7):
    worker_work()
"""


def _coldmod_trace_script() -> str:
    script = Path(sys.executable).parent / "coldmod-trace"
    return str(script) if script.exists() else ""


@pytest.mark.parametrize("launcher", ["script", "module"])
def test_run_traces_the_command_and_its_python_subprocesses(tmp_path, collector: Collector, launcher):
    root = make_app(tmp_path / "app", {"app.py": PARENT, "worker.py": WORKER})
    env = clean_env(**collector.env, COLDMOD_MODE="exact", COLDMOD_FLUSH_INTERVAL="0.1")
    command = ["run", "--", sys.executable, "app.py"]
    if launcher == "script":
        assert _coldmod_trace_script(), "the coldmod-trace console script is installed next to python"
        import subprocess

        result = subprocess.run(
            [_coldmod_trace_script(), *command], cwd=root, env=env, capture_output=True, text=True, timeout=60
        )
    else:
        result = run_py(root, ["-m", "coldmod_trace", *command], env)
    assert result.returncode == 0, result.stderr
    collector.wait_for(lambda r: sum(r.totals().values()) == 8)
    assert sorted(_by_pid(collector).values(), key=str) == [{"app.parent_work": 1}, {"worker.worker_work": 7}]


PREFORK_SERVER = """
import os
import signal
import sys
import time


def handle():
    pass


def serve(requests, ready):
    for _ in range(requests):
        handle()
    os.write(ready, b"x")
    while True:  # like a worker between requests; ended by SIGTERM from the master
        time.sleep(0.05)


read, write = os.pipe()
workers = []
for n in (10, 20):
    pid = os.fork()
    if pid == 0:
        serve(n, write)
    workers.append(pid)
assert len(os.read(read, 1) + os.read(read, 1)) == 2
for pid in workers:
    os.kill(pid, signal.SIGTERM)
for pid in workers:
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM, status
handle()
"""


def test_run_traces_a_prefork_server_whose_workers_end_by_sigterm(tmp_path, collector: Collector):
    root = make_app(tmp_path / "app", {"server.py": PREFORK_SERVER})
    env = clean_env(**collector.env, COLDMOD_MODE="exact", COLDMOD_FLUSH_INTERVAL="30")
    result = run_py(root, ["-m", "coldmod_trace", "run", "--", sys.executable, "server.py"], env)
    assert result.returncode == 0, result.stderr
    collector.wait_for(lambda r: r.totals()["server.handle"] == 31)
    counts = sorted(c["server.handle"] for c in _by_pid(collector).values() if c)
    assert counts == [1, 10, 20]  # master and two workers, each its own instance, SIGTERM flushed


SIGTERMED = """
import sys
import time

import coldmod_trace

coldmod_trace.start(mode="exact", flush_interval=30)


def before_the_end():
    pass


for _ in range(3):
    before_the_end()
print("ready", flush=True)
time.sleep(60)
"""


def test_sigterm_flushes_then_dies_of_sigterm(tmp_path, collector: Collector):
    import subprocess

    root = make_app(tmp_path / "app", {"app.py": SIGTERMED})
    proc = subprocess.Popen(
        [sys.executable, "app.py"], cwd=root, env=clean_env(**collector.env), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == -signal.SIGTERM
    collector.wait_for(lambda r: r.totals() == {"app.before_the_end": 3}, timeout=5)


EXITING = """
import sys

import coldmod_trace

coldmod_trace.start(mode="exact", flush_interval=30, exit_timeout=4)  # only the exit flush delivers


def last():
    pass


for _ in range(3):
    last()
print("ready", flush=True)
sys.stdin.readline()
"""


class _TermOnFirstReport(Recorder):
    """Answers the first Report by sending SIGTERM to the reporting process and then UNAVAILABLE."""

    def __init__(self) -> None:
        super().__init__()
        self.pid = 0
        self.signalled = False

    def Report(self, request, context):  # gRPC method name
        with self.lock:
            first, self.signalled = not self.signalled, True
        if first:
            os.kill(self.pid, signal.SIGTERM)
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        return super().Report(request, context)


def test_a_sigterm_during_the_exit_flush_waits_for_it_then_ends_the_process(tmp_path):
    """A pool terminating workers already exiting: the flush is not cut short; SIGTERM ends the process after."""
    import subprocess

    recorder = _TermOnFirstReport()
    collector = TlsCollector(tmp_path)
    collector.recorder = recorder
    collector.start()
    root = make_app(tmp_path / "app", {"app.py": EXITING})
    proc = subprocess.Popen(
        [sys.executable, "app.py"], cwd=root, env=clean_env(**collector.env),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    recorder.pid = proc.pid
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.stdin.close()  # the app exits: its exit flush sends the only Report
        assert proc.wait(timeout=30) == -signal.SIGTERM  # the flush retried, then SIGTERM ended the process
        collector.wait_for(lambda r: r.totals() == {"app.last": 3}, timeout=10)
        assert proc.stderr is not None
        assert proc.stderr.read() == ""
    finally:
        proc.kill()
        collector.stop()


def test_run_keeps_the_sitecustomize_it_shadows(tmp_path, collector: Collector):
    root = make_app(tmp_path / "app", {"app.py": WORKER})
    theirs = tmp_path / "site"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text(
        "import sys\nprint('their sitecustomize ran for', sys.argv[0], file=sys.stderr)\n"
    )
    env = clean_env(**collector.env, COLDMOD_MODE="exact", PYTHONPATH=str(theirs))
    result = run_py(root, ["-m", "coldmod_trace", "run", "--", sys.executable, "app.py"], env)
    assert result.returncode == 0, result.stderr
    # The launcher (a Python process too, before it execs the command) may run
    # it as well; the traced program must run it exactly once.
    assert result.stderr.count("their sitecustomize ran for app.py\n") == 1, result.stderr
    collector.wait_for(lambda r: r.totals() == {"app.worker_work": 7})

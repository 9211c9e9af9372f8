"""A real pre-fork server: ``coldmod-trace run -- gunicorn -w 4`` on TLS with a key, started again and again.

Issue 11 saw workers killed by SIGSEGV at boot in 2 of 8 starts and grpc's
"skipping fork() handlers" line in the app's log. Each start here: 4 workers
boot, serve, and end by SIGTERM from the master; no worker crashed, no grpc
line in the output, and every worker's counts (its boot hook and the requests
it answered) reached the collector under its own identity.
"""

from __future__ import annotations

import collections
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import clean_env, make_app
from test_tracer_fork import GRPC_LOG
from tls_fixtures import TlsCollector, tls_collector  # noqa: F401 - a fixture

pytestmark = pytest.mark.timeout(240)

STARTS = 10  # per variant; two variants (with and without --preload): 20 starts
WORKERS = 4
REQUESTS = 24

APP = """
import os


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [handle().encode()]


def handle():
    return str(os.getpid())
"""

HOOKS = """
def post_fork(server, worker):
    booted()


def booted():
    pass
"""


def _gunicorn() -> str:
    script = Path(sys.executable).parent / "gunicorn"
    assert script.exists(), "gunicorn is installed next to python (noxfile TEST_DEPS)"
    return str(script)


class _Gunicorn:
    """``coldmod-trace run -- gunicorn …`` in the background, its output collected line by line."""

    def __init__(self, root: Path, env: dict[str, str], preload: bool) -> None:
        command = [
            sys.executable, "-m", "coldmod_trace", "run", "--", _gunicorn(), "-c", "hooks.py",
            "-w", str(WORKERS), "-b", "127.0.0.1:0", "--graceful-timeout", "5",
            *(["--preload"] if preload else []), "app:application",
        ]
        self.proc = subprocess.Popen(
            command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_until_serving(self) -> int:
        """The port, once every worker has booted."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", self.output)
            if found and len(re.findall(r"Booting worker with pid", self.output)) >= WORKERS:
                return int(found.group(1))
            time.sleep(0.02)
        self.proc.kill()
        raise AssertionError(f"gunicorn did not start: {self.output[-3000:]}")

    def stop(self) -> str:
        """SIGTERM to the master (it stops the workers); the whole output."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
        return self.output


@pytest.mark.parametrize("preload", [False, True], ids=["import-in-workers", "preload"])
def test_gunicorn_workers_boot_serve_and_deliver_every_time(tmp_path, tls_collector: TlsCollector, preload: bool):
    root = make_app(tmp_path / "site", {"app.py": APP, "hooks.py": HOOKS})
    env = clean_env(**tls_collector.env, COLDMOD_MODE="exact", COLDMOD_FLUSH_INTERVAL="30")
    for start in range(STARTS):
        recorder = tls_collector.recorder
        recorder.reports.clear()
        recorder.registers.clear()
        server = _Gunicorn(root, env, preload)
        served: collections.Counter[int] = collections.Counter()
        try:
            port = server.wait_until_serving()
            for _ in range(REQUESTS):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
                    served[int(answer.read())] += 1
        finally:
            output = server.stop()
        proc = server.proc
        context = f"start {start}: {output[-3000:]}"
        assert proc.returncode == 0, context
        assert not re.search(r"SIGSEGV|SIGABRT|exited with code|was sent SIG", output), context
        assert not GRPC_LOG.search(output), context
        assert "coldmod:" not in output, context  # nothing of ours either: every flush went through
        booted = set(map(int, re.findall(r"Booting worker with pid: (\d+)", output)))
        assert len(booted) == WORKERS, context
        by_pid = {pid: recorder.totals(iid) for iid, pid in recorder.instances().items()}
        for pid in booted:
            assert by_pid.get(pid, {}).get("hooks.booted") == 1, context  # every worker delivered
            assert by_pid[pid].get("app.handle", 0) == served[pid], context  # and all it answered

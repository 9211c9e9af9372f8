"""The relay process: grpc never runs in the app, the relay is nobody's child, outlives no one, and is replaced.

All on the production configuration: a TLS collector (trustme) with an API key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import clean_env, make_app, run_py
from tls_fixtures import TlsCollector, tls_collector  # noqa: F401 - a fixture

pytestmark = pytest.mark.timeout(120)

#: The relay this process is connected to: its pid and its socket's directory.
RELAY_OF = """
import os

from coldmod_trace import tracer


def relay_of():
    path = tracer.active().sender._relay._sock.getpeername()
    with open(path[: -len(".sock")] + ".pid") as pid_file:
        return int(pid_file.read()), os.path.dirname(path)


def delivered(after=0):
    # a batch numbered above after was acknowledged, and nothing is left
    import time
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = tracer.status()
        if not status["pending"] and not status["inflight"] and status["sequence"] > after:
            return
        time.sleep(0.02)
    raise SystemExit("nothing delivered in 30 s")
"""

NO_GRPC_HERE = """
import json
import os
import sys

import coldmod_trace

coldmod_trace.start(mode="exact", flush_interval=0.05)
from relay_of import delivered, relay_of


def hit():
    pass


hit()
delivered()
try:
    os.waitpid(-1, os.WNOHANG)
    children = "some"
except ChildProcessError:
    children = "none"
pid, directory = relay_of()
print(json.dumps({"grpc": "grpc" in sys.modules, "children": children, "relay": pid, "dir": directory}), flush=True)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def _gone(pid: int, directory: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid) and not os.path.exists(directory):
            return True
        time.sleep(0.05)
    return False


def test_the_app_never_imports_grpc_and_the_relay_is_not_its_child(tmp_path, tls_collector: TlsCollector):
    root = make_app(tmp_path / "app", {"app.py": NO_GRPC_HERE, "relay_of.py": RELAY_OF})
    done = run_py(root, ["app.py"], env=clean_env(**tls_collector.env))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # neither grpc nor the tracer wrote into the app's output
    seen = json.loads(done.stdout)
    assert seen["grpc"] is False  # the channels live in the relay, never in the application
    assert seen["children"] == "none"  # the app's os.wait() never meets the relay
    assert tls_collector.recorder.totals()["app.hit"] == 1
    assert seen["relay"] != os.getpid()
    # The app ended, and with it the relay's lifeline: the relay leaves, its socket's directory too.
    assert _gone(seen["relay"], seen["dir"]), "the relay outlived the app"


def test_a_tmpdir_too_long_for_a_unix_socket_still_delivers(tmp_path, tls_collector: TlsCollector):
    # pytest's and macOS's TMPDIRs are long; a Unix socket's path holds ~104 bytes.
    long_tmp = tmp_path / ("t" * 90)
    long_tmp.mkdir()
    root = make_app(tmp_path / "app", {"app.py": NO_GRPC_HERE, "relay_of.py": RELAY_OF})
    done = run_py(root, ["app.py"], env=clean_env(**tls_collector.env, TMPDIR=str(long_tmp)))
    assert done.returncode == 0, done.stderr
    assert tls_collector.recorder.totals()["app.hit"] == 1
    assert not json.loads(done.stdout)["dir"].startswith(str(long_tmp))


STDIN_DRIVEN = """
import json
import signal
import sys

import coldmod_trace

signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # a relay that died must not kill us through SIGPIPE
coldmod_trace.start(mode="exact", flush_interval=0.05)
from coldmod_trace import tracer
from relay_of import delivered, relay_of


def hit():
    pass


for line in sys.stdin:
    before = tracer.status()["sequence"]
    for _ in range(int(line)):
        hit()
    delivered(before)
    print(json.dumps(relay_of()), flush=True)
"""


def test_a_killed_relay_is_replaced_and_nothing_is_lost_or_doubled(tmp_path, tls_collector: TlsCollector):
    root = make_app(tmp_path / "app", {"app.py": STDIN_DRIVEN, "relay_of.py": RELAY_OF})
    proc = subprocess.Popen(
        [sys.executable, "app.py"], cwd=root, env=clean_env(**tls_collector.env),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None

    def send(calls: int) -> tuple[int, str]:
        proc.stdin.write(f"{calls}\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line, proc.stderr.read()  # type: ignore[union-attr]
        pid, directory = json.loads(line)
        return pid, directory

    try:
        first, _ = send(100)
        os.kill(first, signal.SIGKILL)
        second, directory = send(50)
        assert second != first  # a new relay took over
        third, _ = send(25)
        assert third == second
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
        stderr = proc.stderr.read()  # type: ignore[union-attr]
    finally:
        proc.kill()
    assert stderr == ""  # replacing the relay is not an outage: nothing said
    recorder = tls_collector.recorder
    assert recorder.totals()["app.hit"] == 175  # applied once each, whatever was resent
    [instance] = recorder.instances()
    sequences = recorder.sequences(instance)
    assert sequences == list(range(1, len(sequences) + 1))  # every batch applied once
    assert _gone(second, directory)


ORPHAN = """
import os
import sys
import time

import coldmod_trace

coldmod_trace.start(mode="exact", flush_interval=3600)  # only the exit flushes deliver


def in_parent():
    pass


def in_child():
    pass


in_parent()
if os.fork() == 0:
    time.sleep(1.5)  # the parent has ended by now, and exited through its own flush
    in_child()
    sys.exit(0)
"""


def test_a_forked_child_that_outlives_its_parent_still_delivers(tmp_path, tls_collector: TlsCollector):
    root = make_app(tmp_path / "app", {"app.py": ORPHAN})
    done = run_py(root, ["app.py"], env=clean_env(**tls_collector.env))
    assert done.returncode == 0, done.stderr
    tls_collector.wait_for(lambda r: r.totals().get("app.in_child") == 1, timeout=30)
    totals = tls_collector.recorder.totals()
    assert totals == {"app.in_parent": 1, "app.in_child": 1}
    assert len(tls_collector.recorder.instances()) == 2  # each process its own identity


FORK_WHILE_STARTING = """
import os
import signal
import sys
import tempfile
import time

import coldmod_trace

coldmod_trace.start(mode="exact", flush_interval=0.05)


def in_child():
    pass


children = []
for n in range(12):  # forks while the sender thread discovers, starts the relay, registers
    pid = os.fork()
    if pid == 0:
        tempfile.gettempdir()  # the app's own use of the stdlib: no lock of it inherited taken
        in_child()
        sys.exit(0)
    children.append(pid)
    time.sleep(0.004)
deadline = time.monotonic() + 30
frozen = []
for pid in children:
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            frozen.append(pid)
            break
        time.sleep(0.01)
print(len(frozen), flush=True)
"""


def test_forks_while_the_relay_starts_leave_no_child_frozen(tmp_path, tls_collector: TlsCollector):
    root = make_app(tmp_path / "app", {"app.py": FORK_WHILE_STARTING})
    runs = 6  # fresh processes: each has its relay to start while it forks
    for _ in range(runs):
        done = run_py(root, ["-W", "ignore::DeprecationWarning", "app.py"], env=clean_env(**tls_collector.env))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "0", "a forked child froze (a lock inherited taken?)\n" + done.stderr
    tls_collector.wait_for(lambda r: r.totals().get("app.in_child") == 12 * runs, timeout=30)

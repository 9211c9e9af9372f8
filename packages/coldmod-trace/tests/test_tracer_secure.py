"""Every delivery path in the production configuration: TLS (trustme) and an API key.

A process shorter than the flush interval, SIGTERM, a forked child, a
long-running process and multiprocessing children (fork, spawn, forkserver)
each deliver everything they counted; a refused key and a TLS/plaintext
mismatch are each said once, in words that name the cause.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Collector, clean_env, make_app, run_py
from tls_fixtures import TlsCollector, tls_collector  # noqa: F401 - a fixture

pytestmark = pytest.mark.timeout(120)

SHORT = """
import coldmod_trace

coldmod_trace.start(mode="exact", flush_interval=3600)  # only the exit flush delivers


def once():
    pass


for _ in range(5):
    once()
"""


def test_a_process_shorter_than_the_flush_interval_delivers_at_exit(tmp_path, tls_collector: TlsCollector):
    root = make_app(tmp_path / "app", {"app.py": SHORT})
    result = run_py(root, ["app.py"], clean_env(**tls_collector.env))
    assert result.returncode == 0, result.stderr
    assert tls_collector.recorder.totals() == {"app.once": 5}, result.stderr  # there when the process is gone
    assert tls_collector.recorder.registers, "Register went through TLS with the key"
    assert result.stderr == ""  # nothing printed into the app's output


SIGTERMED = """
import faulthandler
import time

import coldmod_trace

coldmod_trace.start(mode="exact", flush_interval=3600)


def before_the_end():
    pass


for _ in range(3):
    before_the_end()
faulthandler.dump_traceback_later(8)  # a hang at exit says where it waits
print("ready", flush=True)
time.sleep(60)
"""


#: The main thread blocks SIGTERM, so the kernel hands it to another thread (which, without us,
#: would end the process at once): Python's C handler notes it there, and the main thread, asleep
#: in a system call, is not woken. The same happens when a SIGTERM lands between Python's last
#: look at its signals and a blocking call.
SIGTERMED_ASLEEP = SIGTERMED.replace(
    'print("ready"',
    """import signal
import threading

threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # an app thread, SIGTERM unblocked
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
print("ready\"""",
)


def _terminated(root: Path, env: dict[str, str], target: Callable[[str], int] | None = None) -> tuple[int, str, str]:
    """Run app.py, read its first line, SIGTERM the process it names (``target(line)``; default: the app),
    wait up to 15 s; (exit code, the rest of stdout, stderr). A hang fails with the app's stderr, where
    its faulthandler says where every thread waits."""
    proc = subprocess.Popen(
        [sys.executable, "app.py"], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    victim = proc.pid if target is None else target(first)
    os.kill(victim, signal.SIGTERM)
    try:
        out, stderr = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        for pid in {victim, proc.pid}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        out, stderr = proc.communicate()
        raise AssertionError(f"not ended within 15 s of SIGTERM (first line {first!r}):\n{stderr}") from None
    assert first.strip() == "ready" or target is not None, (first, stderr)
    return proc.returncode, out, stderr


@pytest.mark.parametrize("app", [SIGTERMED, SIGTERMED_ASLEEP], ids=["main-thread", "main-thread-asleep"])
def test_sigterm_delivers_then_dies_of_sigterm(tmp_path, tls_collector: TlsCollector, app: str):
    root = make_app(tmp_path / "app", {"app.py": app})
    code, _, stderr = _terminated(root, clean_env(**tls_collector.env))
    assert code == -signal.SIGTERM, stderr
    assert tls_collector.recorder.totals() == {"app.before_the_end": 3}


FORKED = """
import os
import sys

import coldmod_trace

coldmod_trace.start(mode="exact", flush_interval=3600)


def parent():
    pass


def child():
    pass


parent()
pid = os.fork()
if pid == 0:
    for _ in range(4):
        child()
    sys.exit(0)  # the child's exit flush, at interpreter shutdown
_, status = os.waitpid(pid, 0)
assert status == 0, status
"""


def test_a_forked_child_delivers_as_its_own_instance(tmp_path, tls_collector: TlsCollector):
    root = make_app(tmp_path / "app", {"app.py": FORKED})
    result = run_py(root, ["app.py"], clean_env(**tls_collector.env))
    assert result.returncode == 0, result.stderr
    recorder = tls_collector.recorder
    by_pid = {pid: dict(recorder.totals(iid)) for iid, pid in recorder.instances().items()}
    assert sorted(by_pid.values(), key=str) == [{"app.child": 4}, {"app.parent": 1}]


ASYNCIO_FIRST = """
import asyncio
import signal

import coldmod_trace


def served():
    pass


async def main():
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)  # the loop's wakeup fd, set before start()
    coldmod_trace.start(mode="exact", flush_interval=3600)
    served()
    print("ready", flush=True)
    await stopping.wait()
    print("graceful", flush=True)


asyncio.run(main())
"""


def test_an_event_loops_own_wakeup_fd_and_sigterm_handler_keep_working(tmp_path, tls_collector: TlsCollector):
    root = make_app(tmp_path / "app", {"app.py": ASYNCIO_FIRST})
    code, out, stderr = _terminated(root, clean_env(**tls_collector.env))
    assert out.strip() == "graceful", stderr  # the loop's handler ran: our watch left its fd alone
    assert code == 0, stderr
    assert stderr == ""
    assert tls_collector.recorder.totals() == {"app.served": 1}


DAEMONISED = """
import os
import resource
import signal
import time

import coldmod_trace

coldmod_trace.start(mode="exact", flush_interval=3600)


def after_the_close():
    pass


soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
os.closerange(3, soft)  # a daemon closes every descriptor it did not open itself
time.sleep(0.2)
handled = []
signal.signal(signal.SIGUSR1, lambda signum, frame: handled.append(signum))
for _ in range(3):
    os.kill(os.getpid(), signal.SIGUSR1)
    time.sleep(0.05)
after_the_close()
print(len(handled), flush=True)
"""


def test_a_process_that_closes_every_descriptor_hears_nothing_from_the_wakeup_fd(tmp_path, tls_collector):
    # Python writes each handled signal's number to the wakeup fd by number: once the app closed
    # ours, every signal would put "Exception ignored when trying to write to the signal wakeup fd"
    # on its stderr. The watcher takes the number back on a new pipe.
    root = make_app(tmp_path / "app", {"app.py": DAEMONISED})
    result = run_py(root, ["app.py"], clean_env(**tls_collector.env))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"
    assert "wakeup fd" not in result.stderr, result.stderr


LOOP_THEN_FORK = """
import os
import signal

import coldmod_trace

coldmod_trace.start(mode="exact", flush_interval=3600)

# The application's own event loop (as Twisted's or a hand-written one) takes the wakeup fd over.
read_end, write_end = os.pipe()
os.set_blocking(write_end, False)
signal.set_wakeup_fd(write_end)
pid = os.fork()
if pid == 0:
    inherited = signal.set_wakeup_fd(-1)
    os._exit(0 if inherited == write_end else 1)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), flush=True)
"""


def test_a_forked_child_keeps_the_wakeup_fd_of_an_event_loop(tmp_path, tls_collector: TlsCollector):
    root = make_app(tmp_path / "app", {"app.py": LOOP_THEN_FORK})
    result = run_py(root, ["app.py"], clean_env(**tls_collector.env))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0", "the child lost the loop's wakeup fd"


FORKED_ASLEEP = """
import os
import os
import signal
import sys
import threading
import time

import coldmod_trace

coldmod_trace.start(mode="exact", flush_interval=3600)


def in_the_child():
    pass


pid = os.fork()
if pid == 0:
    in_the_child()
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # SIGTERM lands on this thread
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    print(os.getpid(), flush=True)
    time.sleep(60)
    os._exit(3)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status), flush=True)
time.sleep(0.5)  # a wake-up meant for the child would reach the parent here
print("parent done", flush=True)
"""


def test_a_forked_child_asleep_is_woken_for_its_sigterm_and_its_parent_is_not(tmp_path, tls_collector: TlsCollector):
    # The child inherits Python's wakeup fd, still the parent's pipe: it gets its own, or the
    # parent's thread would read the child's signals (and wake the parent for them).
    root = make_app(tmp_path / "app", {"app.py": FORKED_ASLEEP})
    code, out, stderr = _terminated(root, clean_env(**tls_collector.env), target=int)  # its first line: the child
    assert out.split("\n")[:2] == [f"child {-signal.SIGTERM}", "parent done"], stderr
    assert code == 0, stderr
    assert tls_collector.recorder.totals() == {"app.in_the_child": 1}


LONG_RUNNING = """
import sys

import coldmod_trace

coldmod_trace.start(mode="exact", flush_interval=0.1)


def hit():
    pass


for line in sys.stdin:
    for _ in range(int(line)):
        hit()
    print("ok", flush=True)
"""


def test_a_long_running_process_delivers_every_window_and_its_last(tmp_path, tls_collector: TlsCollector):
    root = make_app(tmp_path / "app", {"app.py": LONG_RUNNING})
    proc = subprocess.Popen(
        [sys.executable, "app.py"], cwd=root, env=clean_env(**tls_collector.env),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        for n, total in ((10, 10), (20, 30)):
            proc.stdin.write(f"{n}\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "ok"
            tls_collector.wait_for(lambda r, total=total: r.totals()["app.hit"] == total)
        proc.stdin.write("7\n")  # then exit at once: this window only goes with the exit flush
        proc.stdin.close()
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
    assert tls_collector.recorder.totals() == {"app.hit": 37}
    [instance] = tls_collector.recorder.instances()
    assert len(tls_collector.recorder.sequences(instance)) >= 3  # periodic windows, then the last


MULTIPROCESSING = """
import multiprocessing
import sys

import coldmod_trace

coldmod_trace.start(mode="exact", flush_interval=3600)  # children end with os._exit: no atexit


def work(n):
    for _ in range(n):
        step()
    return n


def step():
    pass


if __name__ == "__main__":
    context = multiprocessing.get_context(sys.argv[1])
    child = context.Process(target=work, args=(3,))
    child.start()
    child.join()
    assert child.exitcode == 0, child.exitcode
    with context.Pool(2) as pool:
        assert pool.map(work, [5, 6]) == [5, 6]
        pool.close()
        pool.join()
"""


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_children_flush_through_their_exit_finalizers(
    tmp_path, tls_collector: TlsCollector, method: str
):
    root = make_app(tmp_path / "app", {"app.py": MULTIPROCESSING})
    result = run_py(root, ["app.py", method], clean_env(**tls_collector.env))
    assert result.returncode == 0, result.stderr
    recorder = tls_collector.recorder
    assert recorder.totals()["app.step"] == 3 + 5 + 6, result.stderr
    assert result.stderr == ""


def test_a_refused_key_is_said_once_and_retried_slowly(tmp_path, tls_collector: TlsCollector):
    root = make_app(tmp_path / "app", {"app.py": LONG_RUNNING})
    env = clean_env(**{**tls_collector.env, "COLDMOD_API_KEY": "not-the-key"})
    proc = subprocess.Popen(
        [sys.executable, "app.py"], cwd=root, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        for _ in range(30):  # 3 s of 0.1 s windows, each with counts to send
            proc.stdin.write("1\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "ok"
            time.sleep(0.1)
        proc.stdin.close()
        assert proc.wait(timeout=20) == 0  # the app is not hurt, and its exit is not held up
        stderr = proc.stderr.read()  # type: ignore[union-attr]
    finally:
        proc.kill()
    assert stderr.count("refused the API key") == 1, stderr
    assert "cannot reach" not in stderr
    assert "not-the-key" not in stderr  # no secret in the output
    assert tls_collector.auth.refused <= 3  # one try, perhaps one at exit: not one per window
    assert tls_collector.recorder.totals() == {}


def test_a_plaintext_tracer_against_a_tls_collector_is_told_so(tmp_path, tls_collector: TlsCollector):
    root = make_app(tmp_path / "app", {"app.py": SHORT.replace("3600", "0.1") + "import time\ntime.sleep(1.5)\n"})
    env = clean_env(COLDMOD_GRPC_HOST=f"127.0.0.1:{tls_collector.port}", COLDMOD_INSECURE="on")
    result = run_py(root, ["app.py"], env)
    assert result.returncode == 0, result.stderr
    assert "TLS/plaintext mismatch: the collector speaks TLS and this tracer plaintext" in result.stderr, result.stderr


def test_a_tls_tracer_against_a_plaintext_collector_is_told_so(tmp_path, collector: Collector, tls_collector):
    root = make_app(tmp_path / "app", {"app.py": SHORT.replace("3600", "0.1") + "import time\ntime.sleep(1.5)\n"})
    env = clean_env(**{**tls_collector.env, "COLDMOD_GRPC_HOST": f"127.0.0.1:{collector.port}"})
    result = run_py(root, ["app.py"], env)
    assert result.returncode == 0, result.stderr
    assert "TLS/plaintext mismatch: the collector speaks plaintext" in result.stderr, result.stderr

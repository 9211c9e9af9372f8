"""The tracer against the real collector (`coldmod serve`) in production configuration: TLS and an API key.

Short processes (exit flush only) registering fingerprint-first, a pre-fork
server (gunicorn, 4 workers) and multiprocessing children, each checked in the
heatmap the collector keeps in its SQLite file.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from coldmod_cli.client import fetch
from coldmod_cli.server.process import collector_command

pytestmark = pytest.mark.timeout(180)

API_KEY = "integration-key-" + "z" * 20
_LISTENING = re.compile(r"gRPC listening on \S+:(\d+) ")


class Serve:
    """``coldmod serve`` on TLS (trustme) with a key and a SQLite store, on a free loopback port."""

    def __init__(self, directory: Path) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        paths = {name: directory / f"{name}.pem" for name in ("ca", "cert", "key")}
        ca.cert_pem.write_to_path(str(paths["ca"]))
        cert.private_key_pem.write_to_path(str(paths["key"]))
        paths["cert"].write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
        self.server_env = {
            "COLDMOD_TLS_CERT": str(paths["cert"]),
            "COLDMOD_TLS_KEY": str(paths["key"]),
            "COLDMOD_API_KEY": API_KEY,
        }
        self.proc = subprocess.Popen(
            collector_command(f"sqlite://{directory / 'store.db'}"),
            env={**_clean_env(), **self.server_env}, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )
        self.port = 0
        self.lines: list[str] = []
        listening = threading.Event()
        threading.Thread(target=self._read, args=(listening,), daemon=True).start()
        listening.wait(30)
        assert self.port, "".join(self.lines)
        self.client_env = {
            "COLDMOD_GRPC_HOST": f"127.0.0.1:{self.port}",
            "COLDMOD_TLS_CA": str(paths["ca"]),
            "COLDMOD_API_KEY": API_KEY,
        }

    def _read(self, listening: threading.Event) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            found = _LISTENING.search(line)
            if found:
                self.port = int(found.group(1))
                listening.set()
        listening.set()

    def calls(self, app: str) -> dict[str, int]:
        """The app's heatmap: calls per key."""
        return {entry.key: entry.calls for entry in fetch(app, env=self.client_env).entries}

    def stop(self) -> None:
        """SIGTERM, as a service manager would."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _clean_env(**extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_") and k != "PYTHONPATH"}
    env.update(extra)
    return env


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """A production-configured collector."""
    server = Serve(tmp_path)
    yield server
    server.stop()


def _app(root: Path, files: dict[str, str], name: str) -> Path:
    root.mkdir(parents=True)
    (root / "coldmod.rootmarker").write_text(f'[app]\nname = "{name}"\n')
    for file, text in files.items():
        (root / file).write_text(textwrap.dedent(text))
    return root


SHORT = """
import coldmod_trace

coldmod_trace.start(mode="exact", flush_interval=3600)  # a job shorter than the flush interval


def used():
    pass


def never():
    pass


for _ in range(3):
    used()
"""


def test_short_jobs_register_fingerprint_first_and_deliver_at_exit(tmp_path, serve: Serve):
    root = _app(tmp_path / "job", {"job.py": SHORT}, "job")
    for _ in range(3):  # the first sends its sources; the others only the fingerprint, which the collector knows
        done = subprocess.run(
            [sys.executable, "job.py"], cwd=root, env=_clean_env(**serve.client_env),
            capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == "", done.stderr
    # A collector that took the fingerprint-only Register as the set would have emptied it: both keys stay.
    assert serve.calls("job") == {"job.used": 9, "job.never": 0}


WSGI = """
import os


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [handle().encode()]


def handle():
    return str(os.getpid())
"""


def test_gunicorn_workers_deliver_to_the_collector(tmp_path, serve: Serve):
    root = _app(tmp_path / "site", {"app.py": WSGI}, "site")
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    env = _clean_env(**serve.client_env, COLDMOD_MODE="exact", COLDMOD_FLUSH_INTERVAL="30")
    proc = subprocess.Popen(
        [sys.executable, "-m", "coldmod_trace", "run", "--", gunicorn, "-w", "4", "-b", "127.0.0.1:0",
         "app:application"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    port = 0
    while time.monotonic() < deadline and not port:
        text = "".join(lines)
        found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
        if found and text.count("Booting worker with pid") >= 4:
            port = int(found.group(1))
        time.sleep(0.05)
    try:
        assert port, "".join(lines)
        pids = set()
        for _ in range(40):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
                pids.add(answer.read())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(timeout=10)
    output = "".join(lines)
    assert proc.returncode == 0, output
    assert not re.search(r"^[EWIF]\d{4} |fork_posix|ev_epoll1|skipping fork|coldmod:", output, re.M), output
    assert serve.calls("site")["app.handle"] == 40  # every request, whichever worker answered it


POOL = """
import multiprocessing
import sys

import coldmod_trace

coldmod_trace.start(mode="exact", flush_interval=3600)


def work(n):
    for _ in range(n):
        step()
    return n


def step():
    pass


if __name__ == "__main__":
    with multiprocessing.get_context(sys.argv[1]).Pool(2) as pool:
        assert pool.map(work, [4, 5, 6]) == [4, 5, 6]
        pool.close()
        pool.join()
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_children_deliver_to_the_collector(tmp_path, serve: Serve, method: str):
    root = _app(tmp_path / "pool", {"pool.py": POOL}, f"pool-{method}")
    done = subprocess.run(
        [sys.executable, "pool.py", method], cwd=root, env=_clean_env(**serve.client_env),
        capture_output=True, text=True, timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert serve.calls(f"pool-{method}")["pool.step"] == 15, done.stderr

"""Fixtures for the CLI tests: a real collector subprocess, a real checkout, the real entry point."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

# The store behind ``start_server`` (server_fixtures), visible to every test module,
# so that a module parametrises ``store_kind`` to run on SQLite and on Redis.
from server_fixtures import redis_server_fixture, store_kind_fixture, store_url_fixture  # noqa: F401

from coldmod_cli.__main__ import main
from coldmod_cli.server.process import collector_command
from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc
from coldmod_trace.discovery import discover

DEMO_APP = Path(__file__).parents[1] / "src" / "coldmod_cli" / "demo_app"


@dataclass
class Result:
    """What one run of ``coldmod`` did."""

    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run ``coldmod ARGS`` through its entry point in-process; returns a Result."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@dataclass
class Collector:
    """A collector subprocess."""

    address: str
    process: subprocess.Popen[str]
    env: dict[str, str]

    def stop(self) -> None:
        """SIGTERM, and wait."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_collector(directory: Path, env: dict[str, str]) -> Collector:
    """Start ``python -m coldmod_cli.server`` on port 0; returns once it listens."""
    process = subprocess.Popen(
        collector_command(f"sqlite:///{directory / 'coldmod.db'}"),
        cwd=directory,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        found = re.search(r"gRPC listening on (\S+)", line)
        if found:
            # Keep draining stderr so the collector never blocks on a full pipe.
            import threading

            threading.Thread(target=process.stderr.read, daemon=True).start()
            return Collector(found.group(1), process, env)
    process.kill()
    raise RuntimeError(f"collector did not start: {''.join(seen)}")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")}


@pytest.fixture
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """An insecure collector on a free loopback port with a fresh SQLite store."""
    directory = tmp_path_factory.mktemp("collector")
    server = start_collector(directory, _clean_env() | {"COLDMOD_INSECURE": "on"})
    yield server
    server.stop()


@pytest.fixture
def insecure_env(monkeypatch: pytest.MonkeyPatch, collector: Collector) -> Collector:
    """The test process's environment pointed at the insecure collector."""
    for name in list(os.environ):
        if name.startswith("COLDMOD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("COLDMOD_INSECURE", "on")
    monkeypatch.setenv("COLDMOD_GRPC_HOST", collector.address)
    return collector


def git(root: Path, *args: str) -> str:
    """Run git in ``root`` (identity set, so commits work on any machine)."""
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    return subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git checkout of the demo shop in tmp_path, committed, and the cwd."""
    root = tmp_path / "shop-checkout"
    shutil.copytree(DEMO_APP, root, ignore=shutil.ignore_patterns("__pycache__", ".coldmod-cache"))
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "shop")
    monkeypatch.chdir(root)
    return root


def traced(address: str, root: Path, calls: dict[str, int], *, app: str | None = None) -> None:
    """Do what a tracer does for one process: Register the root's sources, Report ``calls``."""
    found = discover(root, cache=False)
    instance = uuid.uuid4().hex
    with grpc.insecure_channel(address) as channel:
        tracing = pb_grpc.TracingStub(channel)
        tracing.Register(
            pb.RegisterRequest(
                app=app or found.marker.app,
                process=pb.ProcessIdentity(instance_id=instance, pid=os.getpid(), mode="exact"),
                sources=[pb.TraceSource(key=s.key, path=s.path, lines=s.lines) for s in found.sources.values()],
            ),
            timeout=10,
        )
        now = int(time.time() * 1000)
        tracing.Report(
            pb.ReportRequest(
                app=app or found.marker.app,
                instance_id=instance,
                sequence=1,
                window_start_ms=now - 1000,
                window_end_ms=now,
                deltas=[pb.KeyDelta(key=k, calls=n) for k, n in calls.items()],
            ),
            timeout=10,
        )


#: What the demo traffic calls in the shop: everything else is cold.
HOT = {
    "shop.__main__.main": 1,
    "shop.__main__.Handler.do_GET": 60,
    "shop.__main__.Handler.log_message": 60,
    "shop.__main__.stop": 1,
    "shop.views.index": 10,
    "shop.views.product": 30,
    "shop.views.add_to_cart": 20,
    "shop.catalog.Product.label": 60,
    "shop.catalog.list_products": 10,
    "shop.catalog.find_product": 50,
    "shop.catalog.format_price": 60,
    "shop.cart.Cart.__init__": 1,
    "shop.cart.Cart.add": 20,
    "shop.cart.Cart.total": 20,
    "shop.cart.Cart.summary": 20,
}
COLD = [
    "shop.cart.Cart.apply_coupon",
    "shop.cart.Cart.merge",
    "shop.catalog.import_legacy_csv",
    "shop.catalog.format_price_in_dollars",
    "shop.views.coupon",
]

"""Helpers for the web UI tests: an in-process collector with its web UI, a checkout, a browser.

The collector here is the real thing assembled in-process (SQLite file,
gRPC servicers with the API-key interceptor, the Connect broker, the web
server), each bound to port 0 on loopback.
"""

from __future__ import annotations

import base64
import os
import ssl
import textwrap
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from playwright.sync_api import Browser, sync_playwright

from coldmod_cli.connect import connect
from coldmod_cli.server.auth import ApiKeyInterceptor
from coldmod_cli.server.service import HeatmapService, TracingService
from coldmod_cli.server.store import DEFAULT_MAX_APPS, Store, open_store
from coldmod_cli.web import Broker, WebServer, register, tls_context
from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).parents[3] / "artifacts"


@dataclass
class Stack:
    """A running collector: store, gRPC (Tracing, Heatmap, Connect) and the web UI."""

    store: Store
    grpc_server: grpc.Server
    grpc_port: int
    web: WebServer
    broker: Broker
    api_key: str | None
    ca_pem: bytes | None = None
    _instances: dict[str, tuple[str, int]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The web UI's base URL."""
        return f"{self.web.scheme}://127.0.0.1:{self.web.port}"

    @property
    def grpc_target(self) -> str:
        """``host:port`` of the gRPC endpoint."""
        return f"127.0.0.1:{self.grpc_port}"

    def env(self) -> dict[str, str]:
        """COLDMOD_* variables a client uses to reach this collector."""
        base = {"COLDMOD_GRPC_HOST": self.grpc_target, "COLDMOD_WEB_HOST": f"127.0.0.1:{self.web.port}"}
        if self.api_key is None:
            return base | {"COLDMOD_INSECURE": "on"}
        return base | {"COLDMOD_API_KEY": self.api_key}

    def channel(self) -> grpc.Channel:
        """A client channel (insecure stacks only: the tests that need TLS use HTTP)."""
        assert self.api_key is None
        return grpc.insecure_channel(self.grpc_target)

    def pairing(self) -> tuple[str, str]:
        """A pairing as a page makes it: (connect key for the CLI, the page's token)."""
        return self.broker.issue_for_ui()

    def register(self, app: str, sources: list[tuple[str, str, int]]) -> None:
        """Register ``(key, path, line)`` sources for ``app`` as a new process would."""
        instance = uuid.uuid4().hex
        self._instances[app] = (instance, 0)
        with self.channel() as channel:
            pb_grpc.TracingStub(channel).Register(
                pb.RegisterRequest(
                    app=app,
                    process=pb.ProcessIdentity(instance_id=instance, pid=os.getpid(), mode="sampled"),
                    sources=[pb.TraceSource(key=k, path=p, lines=[n]) for k, p, n in sources],
                ),
                timeout=60,
            )

    def report(
        self,
        app: str,
        calls: dict[str, int],
        estimated: frozenset[str] = frozenset(),
        lower_bound: frozenset[str] = frozenset(),
    ) -> None:
        """Send one Report batch (a tracer's flush) for ``app``."""
        instance, sequence = self._instances[app]
        sequence += 1
        self._instances[app] = (instance, sequence)
        now = int(time.time() * 1000)
        with self.channel() as channel:
            pb_grpc.TracingStub(channel).Report(
                pb.ReportRequest(
                    app=app,
                    instance_id=instance,
                    sequence=sequence,
                    window_start_ms=now - 1000,
                    window_end_ms=now,
                    deltas=[
                        pb.KeyDelta(key=k, calls=n, estimated=k in estimated, lower_bound=k in lower_bound)
                        for k, n in calls.items()
                    ],
                ),
                timeout=10,
            )

    def get(self, path: str, auth: tuple[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """An HTTP(S) GET: status, headers, body (errors are answers too)."""
        request = urllib.request.Request(self.url + path)
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        context = ssl.create_default_context(cadata=self.ca_pem.decode()) if self.ca_pem else None
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def stop(self) -> None:
        """Stop the web UI, then gRPC, then the store (the order ``serve`` uses)."""
        self.web.stop()
        self.grpc_server.stop(1).wait()
        self.store.close()


@contextmanager
def running_stack(
    directory: Path, *, api_key: str | None = None, tls: Any = None, now_ms: Callable[[], int] | None = None
) -> Iterator[Stack]:
    """A collector on free loopback ports with a store in ``directory``; ``tls`` is a trustme CA.

    ``now_ms``: the collector's clock (its services' and its web UI's), for tests that state dates.
    """
    store = open_store(f"sqlite:///{directory / 'coldmod.db'}")
    server = grpc.server(
        ThreadPoolExecutor(max_workers=32),
        interceptors=[ApiKeyInterceptor(api_key)] if api_key is not None else [],
    )
    clock = {"now_ms": now_ms} if now_ms is not None else {}
    pb_grpc.add_TracingServicer_to_server(TracingService(store, **clock), server)
    heatmap = HeatmapService(store, insecure=api_key is None, max_apps=DEFAULT_MAX_APPS, **clock)
    pb_grpc.add_HeatmapServicer_to_server(heatmap, server)
    broker = register(server)
    context = ca_pem = None
    if tls is not None:
        cert = tls.issue_cert("127.0.0.1", "localhost")
        chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        context = tls_context(chain, cert.private_key_pem.bytes())
        ca_pem = tls.cert_pem.bytes()
        credentials = grpc.ssl_server_credentials([(cert.private_key_pem.bytes(), chain)])
        port = server.add_secure_port("127.0.0.1:0", credentials)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    web = WebServer("127.0.0.1", 0, store, api_key=api_key, tls=context, broker=broker, now_ms=now_ms).start()
    stack = Stack(store, server, port, web, broker, api_key, ca_pem)
    try:
        yield stack
    finally:
        stack.stop()


class Cli:
    """``connect()`` running in a thread with the key in its environment, stopped through ``stop``."""

    def __init__(self, stack: Stack, root: Path, key: str, env: dict[str, str] | None = None) -> None:
        self.stop = threading.Event()
        self.failure: BaseException | None = None
        environ = stack.env() | {"COLDMOD_CONNECT_KEY": key} | (env or {})
        self.thread = threading.Thread(target=self._run, args=(root, environ), daemon=True)
        self.thread.start()

    def _run(self, root: Path, environ: dict[str, str]) -> None:
        try:
            connect(None, root, stop=self.stop, env=environ)
        except BaseException as exc:  # the test reads it
            self.failure = exc

    def close(self) -> None:
        """Stop it and wait until it has."""
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


class Session:
    """What a UI of the session sees, through the broker's own listener API."""

    def __init__(self, stack: Stack, key: str, token: str) -> None:
        self.events: list[tuple[str, Any]] = []
        self._unlisten = stack.broker.listen(key, token, lambda name, data: self.events.append((name, data)))

    def cli(self) -> dict[str, Any]:
        """The last CLI state."""
        return [data for name, data in self.events if name == "cli"][-1]

    def close(self) -> None:
        """Stop listening."""
        self._unlisten()


#: A small checkout: hot, cold-and-safe, and cold-but-referenced functions.
CHECKOUT = {
    "coldmod.rootmarker": """\
        # The web tests' checkout: this comment must survive an Ignore.
        [app]
        name = "webshop"

        [ignore]
        keys = []
        """,
    "shop/__init__.py": "",
    "shop/cart.py": """\
        def add(items, item):
            return [*items, item]


        def clear():
            return []


        def total(items):
            return sum(items)


        def summary(items):
            return f"{len(items)} items, {total(items)} in all"
        """,
    "shop/views.py": """\
        from shop.cart import add, summary


        def index():
            return add([], 1)


        def legacy():
            return "the old page"


        def receipt(items):
            return summary(items)
        """,
}

#: Calls for the checkout above; the rest are cold.
CALLS = {"shop.cart.add": 1500, "shop.views.index": 1500, "shop.cart.summary": 3, "shop.views.receipt": 3}


def write_checkout(root: Path) -> Path:
    """Write :data:`CHECKOUT` under ``root``; returns ``root``."""
    for name, text in CHECKOUT.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def checkout_sources(root: Path) -> list[tuple[str, str, int]]:
    """``(key, path, line)`` of every function under ``root``, as a tracer registers them."""
    from coldmod_trace.discovery import discover

    found = discover(root, cache=False)
    return [(s.key, s.path, s.lines[0]) for s in found.sources.values()]


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it is truthy; returns its value, fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, shared by the module's tests."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()

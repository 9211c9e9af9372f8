"""``serve``: start the collector, print where it listens, stop cleanly on SIGTERM/SIGINT.

Shutdown order (SIGTERM or SIGINT): health turns NOT_SERVING, the gRPC server
stops accepting calls and gives the running ones up to ``GRACE_S`` seconds —
a Report in flight is applied, committed and acknowledged — then the store
drains its queue and closes, and ``serve`` returns 0.

The web UI hook: when a module ``coldmod_cli.web`` exists, ``serve`` calls
its optional ``register(grpc_server) -> extension`` before the gRPC server
starts (to add services such as Connect; they sit behind the same API-key
check), then ``start(info: ServerInfo[, extension]) -> WebHandle`` once it
runs. ``info`` carries the store (read it; ``info.store.subscribe`` for live
updates, see :mod:`coldmod_cli.server.store`), ``info.settings`` (web
address, port 0 allowed; TLS material and the API key for basic auth) and
``info.refusals`` (where the web UI counts wrong passwords and failed TLS
handshakes, beside the gRPC key check's; see :mod:`coldmod_cli.server.refusals`).
The handle has ``port: int`` (the bound port) and ``stop() -> None``, called
before the store closes. ``start`` may raise ``ConfigError`` (port in use):
one sentence and exit code 1, like every startup problem.

Retention: ``serve`` retires versions silent for ``retire_after_ms``
(``--retire-after``, default 30 days) once before it listens and then every
RETIRE_EVERY_S seconds, from a thread of its own, with the collector's clock
(``now_ms``, injectable for tests); see :meth:`Store.retire`.

Handler threads: ingestion (Report, Fetch, ListApps, health…) has its own
pool of MAX_WORKERS threads that nothing long-lived may hold. A Connect
stream lasts as long as a developer stays connected, so Attach runs in its
own pool and at most MAX_ATTACH streams are open at once (the next is
refused at once with RESOURCE_EXHAUSTED, before it takes a thread). Register
runs in REGISTER_WORKERS threads: each holds a received message of up to
32 MiB, so their number bounds the collector's memory (see
:mod:`coldmod_cli.server.registrar`).
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from coldmod_cli.server.auth import ApiKeyInterceptor, refuses_credentials
from coldmod_cli.server.refusals import Refusals
from coldmod_cli.server.service import HeatmapService, TracingService, wall_clock_ms
from coldmod_cli.server.settings import ServerSettings, server_settings
from coldmod_cli.server.store import DEFAULT_MAX_APPS, DEFAULT_RETIRE_AFTER_MS, Store, StoreError, open_store
from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc
from coldmod_trace.config import ConfigError, channel_options

__all__ = ["GRACE_S", "MAX_ATTACH", "ServerInfo", "WebHandle", "serve", "web_url"]

log = logging.getLogger(__name__)

#: Seconds between two retirements of silent versions (and prunings of old history).
RETIRE_EVERY_S = 600.0
#: Seconds running calls get to finish after SIGTERM.
GRACE_S = 3.0
#: Handler threads. A Report handler mostly waits for its group commit, and a
#: group can only be as large as the number of handlers waiting together.
MAX_WORKERS = 128
#: Connect streams open at once (each holds a thread of its own pool while open).
MAX_ATTACH = 64
#: Register handlers at once: each may hold a 32 MiB message.
REGISTER_WORKERS = 6
ATTACH_REFUSED = (
    f"the collector has {MAX_ATTACH} connected checkouts already; close one (stop its coldmod connect) and retry"
)
_ATTACH_METHOD = "/coldmod.v1.Connect/Attach"
_REGISTER_METHOD = "/coldmod.v1.Tracing/Register"
_SERVICES = [d.full_name for d in pb.DESCRIPTOR.services_by_name.values() if d.name in ("Tracing", "Heatmap")]


class WebHandle(Protocol):
    """What ``coldmod_cli.web.start`` returns."""

    port: int

    def stop(self) -> None:
        """Stop serving the web UI."""
        ...


@dataclass(frozen=True)
class ServerInfo:
    """A running collector, passed to ``ready`` (and to the web UI's ``start``)."""

    grpc_host: str
    grpc_port: int
    web_host: str
    web_port: int | None  # None until (or unless) a web UI is up
    store_url: str
    insecure: bool
    store: Store = field(repr=False)
    settings: ServerSettings = field(repr=False)
    stop: Callable[[], None] = field(repr=False)
    #: Where refused credentials and TLS handshakes are counted (the web UI counts its own here too).
    refusals: Refusals = field(default_factory=Refusals, repr=False)
    #: The collector's clock (tests inject one): the web UI's "the last N days" end at its now.
    now_ms: Callable[[], int] = field(default=wall_clock_ms, repr=False)


if TYPE_CHECKING:  # generic in grpc-stubs only, not at run time
    _Interceptor = grpc.ServerInterceptor[Any, Any]
    _Handler = grpc.RpcMethodHandler[Any, Any]
else:
    _Interceptor = grpc.ServerInterceptor


class _Pools(_Interceptor):
    """Routes Attach and Register to their own thread pools (grpc's ``experimental_thread_pool``).

    Runs first, on gRPC's polling thread, before any handler thread is
    taken: that is where an Attach beyond MAX_ATTACH is refused.
    """

    def __init__(self) -> None:
        """Make the two pools; ``shutdown`` ends them."""
        self.attach = ThreadPoolExecutor(max_workers=MAX_ATTACH + 4, thread_name_prefix="coldmod-attach")
        self.register = ThreadPoolExecutor(max_workers=REGISTER_WORKERS, thread_name_prefix="coldmod-register")
        self._open = 0
        self._lock = threading.Lock()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], _Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        """The handler, moved to its pool (or an immediate refusal of one Attach too many)."""
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return None
        if method == _ATTACH_METHOD and handler.stream_stream is not None:
            if refuses_credentials(handler.stream_stream):
                return handler  # no key: refused at once, and a stranger learns nothing of the cap
            if self._open >= MAX_ATTACH:
                return grpc.stream_stream_rpc_method_handler(_refuse_attach)
            return grpc.stream_stream_rpc_method_handler(
                _pooled(self._counted(handler.stream_stream), self.attach),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if method == _REGISTER_METHOD and handler.unary_unary is not None:
            # Undecoded: a waiting Register holds its bytes, not 200,000 decoded sources (see the registrar).
            return grpc.unary_unary_rpc_method_handler(
                _pooled(handler.unary_unary, self.register), None, handler.response_serializer
            )
        return handler

    def _counted(self, behavior: Callable[[Any, Any], Iterator[Any]]) -> Callable[[Any, Any], Iterator[Any]]:
        """The stream handler, counted in ``_open`` while it runs."""

        def run(requests: Any, context: Any) -> Iterator[Any]:
            """The stream, counted while it runs."""
            with self._lock:
                self._open += 1
            try:
                yield from behavior(requests, context)
            finally:
                with self._lock:
                    self._open -= 1

        return run

    def shutdown(self) -> None:
        """Stop the pools' threads (after the server stopped)."""
        self.attach.shutdown(wait=False, cancel_futures=True)
        self.register.shutdown(wait=False, cancel_futures=True)


def _pooled(behavior: Callable[..., Any], pool: ThreadPoolExecutor) -> Callable[..., Any]:
    """The behavior, marked to run in ``pool`` (a function attribute grpc's server looks for)."""

    def run(request: Any, context: Any) -> Any:
        """Call the behavior (only the attribute differs)."""
        return behavior(request, context)

    run.experimental_thread_pool = pool  # type: ignore[attr-defined]
    return run


def _refuse_attach(requests: Any, context: grpc.ServicerContext) -> Iterator[Any]:
    """Refuse one Attach too many, at once, with the sentence that says why."""
    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, ATTACH_REFUSED)
    yield  # pragma: no cover - makes this a generator, as streaming handlers are


def _address(host: str, port: int) -> str:
    """``host:port`` with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_free(host: str, port: int) -> None:
    """Fail with one sentence when the port is taken (gRPC's own error is a log line and a traceback)."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        raise ConfigError(f"cannot listen on {_address(host, port)}: the host name does not resolve") from None
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(sockaddr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ConfigError(f"cannot listen on {_address(host, port)}: the port is in use") from None
                if exc.errno == errno.EADDRNOTAVAIL and len(infos) > 1:
                    continue  # e.g. ::1 on a host without IPv6; gRPC binds what it can
                raise ConfigError(f"cannot listen on {_address(host, port)}: {exc.strerror}") from None


#: glibc's M_ARENA_MAX (malloc.h).
_M_ARENA_MAX = -8


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """Let handler threads share a few malloc arenas (glibc only; elsewhere nothing happens).

    A large Register decoded in one handler thread leaves its memory in that
    thread's arena, where another thread cannot reuse it: with an arena per
    thread, a fleet's Registers added up to several peaks. ``MALLOC_ARENA_MAX``
    in the environment wins.
    """
    import ctypes
    import ctypes.util
    import os

    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_ARENA_MAX, arenas)
    except (OSError, AttributeError):
        pass  # not glibc: its allocator has its own policy


def _web_module() -> Any:
    """``coldmod_cli.web`` when this build has a web UI, else None."""
    if importlib.util.find_spec("coldmod_cli.web") is None:
        return None
    return importlib.import_module("coldmod_cli.web")


def serve(
    grpc_host: str | None = None,
    web_host: str | None = None,
    store: str | None = None,
    *,
    ready: Callable[[ServerInfo], None] | None = None,
    group_commit: bool = True,
    max_apps: int | None = None,
    allow_remote_insecure: bool = False,
    retire_after_ms: int = DEFAULT_RETIRE_AFTER_MS,
    now_ms: Callable[[], int] = wall_clock_ms,
) -> int:
    """Run the collector until SIGTERM/SIGINT (or ``info.stop()``); returns the exit code.

    Arguments win over ``COLDMOD_GRPC_HOST``/``COLDMOD_WEB_HOST``; ``store`` is a
    URL like ``sqlite:///var/lib/coldmod.db`` (default ``coldmod.db`` here).
    ``max_apps`` bounds the apps Register may create (default DEFAULT_MAX_APPS);
    ``allow_remote_insecure`` lets an insecure collector listen beyond loopback.
    ``retire_after_ms`` is the retention of silent versions; ``now_ms`` the collector's clock.
    A problem the user can fix is one sentence on stderr and exit code 1.
    """
    limit = DEFAULT_MAX_APPS if max_apps is None else max_apps
    _limit_malloc_arenas()
    try:
        if not 1 <= limit <= 2**31:
            raise ConfigError(f"--max-apps {limit} is out of range; give a number from 1 to {2**31}")
        if retire_after_ms <= 0:
            raise ConfigError("--retire-after must be a positive duration like 30d")
        settings = server_settings(grpc_host, web_host, allow_remote_insecure=allow_remote_insecure)
        _check_free(settings.grpc_host, settings.grpc_port)
        opened = open_store(store, group_commit=group_commit, max_apps=limit)
    except (ConfigError, StoreError) as exc:
        print(f"coldmod serve: {exc}", file=sys.stderr)
        return 1
    for warning in settings.warnings:
        print(f"coldmod serve: {warning}", file=sys.stderr)
    clock = _Clock(now_ms, retire_after_ms)
    try:
        return _run(settings, opened, ready, limit, clock)
    except ConfigError as exc:
        print(f"coldmod serve: {exc}", file=sys.stderr)
        return 1
    finally:
        opened.close()
        print("coldmod: stopped", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class _Clock:
    """The collector's clock and its retention of silent versions."""

    now_ms: Callable[[], int]
    retire_after_ms: int


def _retire(store: Store, clock: _Clock) -> None:
    """Retire silent versions now; a failure is logged and retried at the next turn."""
    try:
        retired = store.retire(clock.now_ms(), clock.retire_after_ms)
    except StoreError as exc:
        log.warning("coldmod serve: retiring silent versions failed (retried in %.0f s): %s", RETIRE_EVERY_S, exc)
        return
    for app, versions in retired.items():
        labels = ", ".join(v.label or v.fingerprint[:12] for v in versions)
        print(f"coldmod: retired {len(versions)} silent version(s) of {app}: {labels}", file=sys.stderr, flush=True)


def _retire_every(stopping: threading.Event, store: Store, clock: _Clock) -> None:
    """Retire every RETIRE_EVERY_S seconds until ``stopping``."""
    while not stopping.wait(RETIRE_EVERY_S):
        _retire(store, clock)


def _run(
    settings: ServerSettings,
    store: Store,
    ready: Callable[[ServerInfo], None] | None,
    max_apps: int,
    clock: _Clock,
) -> int:
    """Serve with SIGTERM/SIGINT handlers installed, then restore the previous ones."""
    stopping = threading.Event()
    # Handlers first: once "listening" is printed, a SIGTERM must already mean a clean stop.
    previous = _install_signals(stopping)
    _retire(store, clock)
    retirer = threading.Thread(target=_retire_every, args=(stopping, store, clock), name="coldmod-retire", daemon=True)
    retirer.start()
    try:
        return _run_until(stopping, settings, store, ready, max_apps, clock)
    finally:
        stopping.set()
        retirer.join()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run_until(
    stopping: threading.Event,
    settings: ServerSettings,
    store: Store,
    ready: Callable[[ServerInfo], None] | None,
    max_apps: int,
    clock: _Clock,
) -> int:
    """Serve until ``stopping``, with the Attach and Register pools ended afterwards."""
    pools = _Pools()
    try:
        return _serve_grpc(stopping, settings, store, ready, max_apps, pools, clock)
    finally:
        pools.shutdown()


def _serve_grpc(
    stopping: threading.Event,
    settings: ServerSettings,
    store: Store,
    ready: Callable[[ServerInfo], None] | None,
    max_apps: int,
    pools: _Pools,
    clock: _Clock,
) -> int:
    """Build the gRPC server, start it and the web UI, and serve until ``stopping``."""
    # The collector's clock, so that a test moves the once-a-minute lines with it.
    refusals = Refusals(lambda: clock.now_ms() / 1000)
    auth = [] if settings.insecure else [ApiKeyInterceptor(settings.api_key or "", refusals)]
    server = grpc.server(
        ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="coldmod-rpc"),
        interceptors=[pools, *auth],
        # so_reuseport off: a second collector on a taken port must fail, not share it.
        options=[*channel_options(), ("grpc.so_reuseport", 0), ("grpc.http2.bdp_probe", 0)],
    )
    # The generated registration functions are untyped; named here with their types.
    add_tracing: Callable[[TracingService, grpc.Server], None] = pb_grpc.add_TracingServicer_to_server
    add_heatmap: Callable[[HeatmapService, grpc.Server], None] = pb_grpc.add_HeatmapServicer_to_server
    heatmap = HeatmapService(
        store,
        insecure=settings.insecure,
        max_apps=max_apps,
        now_ms=clock.now_ms,
        retire_after_ms=clock.retire_after_ms,
        refusals=refusals,
    )
    add_tracing(TracingService(store, clock.now_ms), server)
    add_heatmap(heatmap, server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    web_module = _web_module()
    register = getattr(web_module, "register", None)
    extension = register(server) if register is not None else None
    address = _address(settings.grpc_host, settings.grpc_port)
    try:
        if settings.insecure:
            port = server.add_insecure_port(address)
        else:
            credentials = grpc.ssl_server_credentials(
                [(settings.private_key or b"", settings.certificate_chain or b"")]
            )
            port = server.add_secure_port(address, credentials)
    except RuntimeError:
        port = 0
    if not port:
        raise ConfigError(f"cannot listen on {address}; the address is in use or not on this host")
    server.start()
    for name in ["", *_SERVICES]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    info = ServerInfo(
        grpc_host=settings.grpc_host,
        grpc_port=port,
        web_host=settings.web_host,
        web_port=None,
        store_url=store.url,
        insecure=settings.insecure,
        store=store,
        settings=settings,
        stop=stopping.set,
        refusals=refusals,
        now_ms=clock.now_ms,
    )
    mode = "plaintext, no authentication" if settings.insecure else "TLS, API key required"
    web: WebHandle | None = None
    try:
        if web_module is not None:
            start = web_module.start
            web = start(info) if extension is None else start(info, extension)
        if web is not None:
            info = replace(info, web_port=web.port)
            heatmap.web_url = web_url(settings, web.port)
        print(f"coldmod: gRPC listening on {_address(settings.grpc_host, port)} ({mode})", file=sys.stderr)
        if web is not None:
            print(f"coldmod: web UI on {_address(settings.web_host, web.port)}", file=sys.stderr)
        print(f"coldmod: store {store.url}", file=sys.stderr, flush=True)
        if ready is not None:
            ready(info)
        while not stopping.wait(0.5):
            refusals.tick()
        print("coldmod: stopping", file=sys.stderr, flush=True)
    finally:
        refusals.flush()
        health_servicer.enter_graceful_shutdown()
        if web is not None:
            web.stop()
        # Stop accepting; running calls (a Report waiting for its commit) finish and are answered.
        server.stop(GRACE_S).wait()
    return 0


def web_url(settings: ServerSettings, port: int) -> str:
    """The web UI's address for Info: this machine's name when it listens on every interface."""
    host = settings.web_host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - recognising a bind-all address, not binding one
        host = socket.getfqdn()
    scheme = "http" if settings.insecure else "https"
    return f"{scheme}://{_address(host, port)}/"


def _install_signals(stopping: threading.Event) -> dict[int, Any]:
    """SIGTERM and SIGINT set ``stopping`` (only possible from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, lambda *_: stopping.set())
    return previous

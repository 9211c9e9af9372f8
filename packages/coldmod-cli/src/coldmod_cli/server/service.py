"""The gRPC servicers: Tracing (Register, Report) and Heatmap (Fetch, ListApps, Reset, DeleteApp, Info).

They translate between protobuf and the store and map every refusal to a
precise status: INVALID_ARGUMENT for a malformed message, RESOURCE_EXHAUSTED
for a limit (too many keys, too many apps), OUT_OF_RANGE for a batch that
would overflow a count, FAILED_PRECONDITION for a Report to an app never
registered (register first), NOT_FOUND for reading an unknown app,
PERMISSION_DENIED for an operation an unauthenticated caller may not make,
UNAVAILABLE while the store is closing or cannot write (retry later).
Register's handling under load is :mod:`coldmod_cli.server.registrar`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import grpc

from coldmod_cli import __version__
from coldmod_cli.server.limits import MAX_KEYS_PER_APP, Rejected, batch_from, check_app, page_from, page_token
from coldmod_cli.server.refusals import Refusal, Refusals
from coldmod_cli.server.registrar import Registrar
from coldmod_cli.server.store import (
    DEFAULT_RETIRE_AFTER_MS,
    CountOverflow,
    Store,
    StoreUnavailable,
    TooManyApps,
    UnknownApp,
)
from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc

__all__ = ["FETCH_PART_ENTRIES", "HeatmapService", "TracingService", "is_loopback", "wall_clock_ms"]

#: Entries per streamed Fetch part: at the limits on key and path length a
#: part stays well under the 32 MiB message cap.
FETCH_PART_ENTRIES = 5_000
#: Fetches holding a snapshot at once: an app at the limits is ~150 MB in memory
#: while it streams, so their number bounds the collector's memory; others wait.
FETCHES_AT_ONCE = 4
#: Fetches waiting for a turn at once; more are refused, so readers never hold the
#: handler threads tracers' Reports need.
FETCH_WAITERS = 8
FETCH_BUSY = "the collector is sending other heatmaps right now; retry in a moment"


def wall_clock_ms() -> int:
    """The collector's clock in epoch milliseconds (tests give the services their own)."""
    return time.time_ns() // 1_000_000


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    """End the call with this status (abort raises; the NoReturn tells the type checker)."""
    context.abort(code, message)
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


@contextmanager
def _statuses(
    context: grpc.ServicerContext, unknown_app: grpc.StatusCode = grpc.StatusCode.NOT_FOUND
) -> Iterator[None]:
    """The one mapping of the store's refusals to gRPC statuses (see the module docstring)."""
    try:
        yield
    except Rejected as exc:
        _abort(context, exc.code, exc.message)
    except UnknownApp as exc:
        _abort(context, unknown_app, str(exc))
    except StoreUnavailable as exc:
        _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
    except TooManyApps as exc:
        _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
    except CountOverflow as exc:
        _abort(context, grpc.StatusCode.OUT_OF_RANGE, str(exc))


def is_loopback(peer: str) -> bool:
    """True when a gRPC peer string names this machine (loopback or a Unix socket)."""
    return peer.startswith(("ipv4:127.", "ipv6:[::1]", "unix:", "ipv6:[::ffff:127."))


class TracingService(pb_grpc.TracingServicer):
    """What traced processes call."""

    def __init__(self, store: Store, now_ms: Callable[[], int] = wall_clock_ms) -> None:
        """Serve from this store, with ``now_ms`` as the collector's clock."""
        self.store = store
        self._now_ms = now_ms
        self.registrar = Registrar(store, now_ms)

    def Register(self, request: pb.RegisterRequest | bytes, context: grpc.ServicerContext) -> pb.RegisterResponse:
        """Replace the app's set of keys (fingerprint first: see the registrar; the runner passes bytes)."""
        with _statuses(context):
            return self.registrar.register(request, context)

    def Report(self, request: pb.ReportRequest, context: grpc.ServicerContext) -> pb.ReportResponse:
        """Apply one batch at most once; answer once it is durable."""
        with _statuses(context, grpc.StatusCode.FAILED_PRECONDITION):
            result = self.store.report(batch_from(request, self._now_ms()))
        return pb.ReportResponse(sequence=result.sequence, duplicate=result.duplicate, unknown_keys=result.unknown_keys)


class HeatmapService(pb_grpc.HeatmapServicer):
    """What developers, the CLI and the web UI call.

    Reset and DeleteApp are for authenticated callers only. With TLS and an
    API key every call here is authenticated (the interceptor saw the key). In
    insecure mode nobody is authenticated, so they are then allowed only from
    this machine (a loopback peer) and refused with PERMISSION_DENIED from
    anywhere else. ``web_url`` is set by the runner once the web UI listens.
    """

    def __init__(
        self,
        store: Store,
        *,
        insecure: bool,
        max_apps: int,
        now_ms: Callable[[], int] = wall_clock_ms,
        retire_after_ms: int = DEFAULT_RETIRE_AFTER_MS,
        refusals: Refusals | None = None,
    ) -> None:
        """Serve from this store; ``insecure`` restricts Reset and DeleteApp to loopback peers.

        ``refusals`` holds the counts Info reports (the collector's; a fresh one when none is given).
        """
        self.store = store
        self.insecure = insecure
        self.max_apps = max_apps
        self._now_ms = now_ms
        self.retire_after_ms = retire_after_ms
        self.web_url = ""
        self.refusals = refusals or Refusals()
        self._fetches = threading.BoundedSemaphore(FETCHES_AT_ONCE)
        self._fetch_waiters = 0
        self._fetch_waiters_lock = threading.Lock()

    def _operator_only(self, context: grpc.ServicerContext, what: str) -> None:
        """Refuse an operation to an unauthenticated caller from another machine."""
        if self.insecure and not is_loopback(context.peer()):
            _abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"{what} needs an authenticated caller; an insecure collector accepts it only from its own machine",
            )

    def Fetch(self, request: pb.FetchRequest, context: grpc.ServicerContext) -> Iterator[pb.FetchResponse]:
        """The heatmap of one app: one snapshot, streamed in parts of at most FETCH_PART_ENTRIES entries."""
        with _statuses(context):
            app = check_app(request.app)
        if not self._fetches.acquire(blocking=False) and not self._wait_for_turn(context):
            return  # the client left while waiting for its turn
        try:
            yield from self._stream(app, request.quiet_days, context)
        finally:
            self._fetches.release()

    def _wait_for_turn(self, context: grpc.ServicerContext) -> bool:
        """Wait for a Fetch slot while the client is there (False if it left); refuse when many wait."""
        with self._fetch_waiters_lock:
            if self._fetch_waiters >= FETCH_WAITERS:
                _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, FETCH_BUSY)
            self._fetch_waiters += 1
        try:
            while not self._fetches.acquire(timeout=0.25):
                if not context.is_active():
                    return False
            return True
        finally:
            with self._fetch_waiters_lock:
                self._fetch_waiters -= 1

    def _stream(self, app: str, quiet_days: int, context: grpc.ServicerContext) -> Iterator[pb.FetchResponse]:
        """One snapshot of the app, as FetchResponse parts (versions and the clock repeated in each)."""
        with _statuses(context):
            heatmap = self.store.fetch(app, now_ms=self._now_ms(), quiet_days=quiet_days)
        entries = heatmap.entries
        versions = [
            pb.Version(
                fingerprint=v.fingerprint,
                label=v.label,
                first_seen_ms=v.first_seen_ms,
                last_seen_ms=v.last_seen_ms,
                keys=v.keys,
            )
            for v in heatmap.versions
        ]
        for start in range(0, max(len(entries), 1), FETCH_PART_ENTRIES):
            part: list[Any] = [
                pb.HeatmapEntry(
                    key=e.key,
                    calls=e.calls,
                    estimated=e.estimated,
                    first_seen_ms=e.first_seen_ms,
                    last_seen_ms=e.last_seen_ms,
                    tracked_since_ms=e.tracked_since_ms,
                    path=e.path,
                    lines=e.lines,
                    lower_bound=e.lower_bound,
                    versions=e.versions,
                    calls_7d=e.calls_7d,
                    calls_30d=e.calls_30d,
                    calls_90d=e.calls_90d,
                    days=e.days,
                    day_calls=e.day_calls,
                )
                for e in entries[start : start + FETCH_PART_ENTRIES]
            ]
            yield pb.FetchResponse(
                app=heatmap.app,
                entries=part,
                registered_ms=heatmap.registered_ms,
                dropped_unknown=heatmap.dropped_unknown,
                dropped_updates=heatmap.dropped_updates,
                versions=versions,
                now_ms=heatmap.now_ms,
                retire_after_ms=self.retire_after_ms,
            )

    def ListApps(self, request: pb.ListAppsRequest, context: grpc.ServicerContext) -> pb.ListAppsResponse:
        """One page of the apps the collector knows, by name."""
        with _statuses(context):
            after, size = page_from(request)
            apps = self.store.list_apps(after, size + 1)  # one more: is there a next page?
            total = self.store.count_apps()
        more = len(apps) > size
        apps = apps[:size]
        return pb.ListAppsResponse(
            next_page_token=page_token(apps[-1].app) if more else "",
            total_apps=total,
            apps=[
                pb.AppSummary(
                    app=a.app,
                    keys=a.keys,
                    cold_keys=a.cold_keys,
                    calls=a.calls,
                    updated_ms=a.updated_ms,
                )
                for a in apps
            ],
        )

    def Reset(self, request: pb.ResetRequest, context: grpc.ServicerContext) -> pb.ResetResponse:
        """Zero one app's counts (its keys stay, tracked from now)."""
        self._operator_only(context, "Reset")
        with _statuses(context):
            keys = self.store.reset(check_app(request.app), self._now_ms())
        return pb.ResetResponse(keys=keys)

    def DeleteApp(self, request: pb.DeleteAppRequest, context: grpc.ServicerContext) -> pb.DeleteAppResponse:
        """Delete one app and its heatmap (a tracer registering it again starts it afresh)."""
        self._operator_only(context, "DeleteApp")
        with _statuses(context):
            keys = self.store.delete_app(check_app(request.app))
        return pb.DeleteAppResponse(keys=keys)

    def Info(self, request: pb.InfoRequest, context: grpc.ServicerContext) -> pb.InfoResponse:
        """The collector's version, web UI address, store, limits and refusals since it started."""
        with _statuses(context):
            store = self.store.info()
        refused = self.refusals.counts()
        return pb.InfoResponse(
            version=__version__,
            web_url=self.web_url,
            store=store.store,
            durability=store.durability,
            max_apps=self.max_apps,
            max_keys_per_app=MAX_KEYS_PER_APP,
            refused_credentials=refused[Refusal.CREDENTIALS],
            refused_tls=refused[Refusal.TLS],
        )

"""Register under load: a fleet restarting together must register within seconds, in bounded memory.

A large app's full Register (200,000 keys, ~19 MB) costs the collector about
a second of CPU and a hundred MB while it is turned into sources; 48 workers
restarting at once used to send 48 of them, and every timed-out one was
resent while the cancelled handler kept running. Here:

- **fingerprint first**: a tracer sends only its set's fingerprint; when the
  store knows that version of the app (``Store.knows_version``), the answer is
  immediate and the version is refreshed (``Store.touch_version``: last seen,
  label, the instance's version); otherwise ``need_sources`` asks for the
  whole set, which becomes a version of its own beside the others.
- **one app at a time**: Registers of one app wait for each other (a gate per
  app). A full Register whose fingerprint is already stored is answered
  without being converted (identical concurrent Registers coalesce).
- **one sender per set**: the call answered ``need_sources`` holds a lease on
  that (app, fingerprint) for LEASE_S, kept in the store (``Store.lease``), so
  it holds across every collector sharing the store; the fleet's other
  fingerprint-only calls for it wait (at most MAX_WAITERS at once per
  collector, each holding a Register thread, looking every _POLL_S and woken
  at once when this collector stores the set) until the full set is stored,
  then are answered at once. Beyond MAX_WAITERS a call is told UNAVAILABLE
  ("retry in a moment"), which tracers retry with backoff, so the set is sent
  once, not once per process.
- **bounded memory**: the runner gives Register its own few handler threads
  and hands it the message undecoded, so a waiting call holds only its
  bytes. Decoding and converting a large set (about 6 bytes of Python
  objects per byte received) runs under a budget of bytes (``HEAVY_BYTES``):
  one set at the size limit at a time; beyond it, calls wait.
- **cancelled calls stop**: a waiting call gives up as soon as its client is
  gone, and a converted set is not written for a client that left.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError

from coldmod_cli.server.limits import Rejected, check_app, check_fingerprint, ignore_from, label_from, sources_from
from coldmod_cli.server.store import Store
from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_trace.keys import REGISTER_BUSY

__all__ = ["HEAVY_BYTES", "Registrar"]

#: Bytes of Register messages being decoded and converted at once: one at the 32 MiB cap.
HEAVY_BYTES = 40 * 1024 * 1024
#: A message this small (a fingerprint-only call, a small app) is decoded without the budget.
SMALL_BYTES = 64 * 1024
#: Seconds the call answered need_sources has to send the set before another is asked.
LEASE_S = 10.0
#: Fingerprint-only calls waiting for a leased set at once (each holds a Register thread;
#: keep it below the runner's REGISTER_WORKERS so the full set always finds a thread).
MAX_WAITERS = 3
WAIT_REFUSED = REGISTER_BUSY  # the tracer knows this answer: it waits and retries without a word
#: Seconds between two looks at whether a waiting call's client is still there.
_POLL_S = 0.25


class _Cancelled(Exception):
    """The client went away while its Register waited or worked."""


@dataclass(slots=True)
class _Gate:
    """One app's Register lock and how many calls hold or wait for it."""

    lock: threading.Lock
    users: int = 0


class _ByteBudget:
    """A semaphore counted in bytes: a call larger than the whole budget takes all of it."""

    def __init__(self, capacity: int) -> None:
        """Allow ``capacity`` bytes at once."""
        self.capacity = capacity
        self._free = capacity
        self._cond = threading.Condition()

    def acquire(self, size: int, alive: Callable[[], bool]) -> int:
        """Wait for ``size`` bytes (capped at the capacity) while ``alive()``; returns what was taken."""
        size = min(size, self.capacity)
        with self._cond:
            while self._free < size:
                if not alive():
                    raise _Cancelled
                self._cond.wait(_POLL_S)
            self._free -= size
        return size

    def release(self, size: int) -> None:
        """Give back what ``acquire`` took."""
        with self._cond:
            self._free += size
            self._cond.notify_all()


class Registrar:
    """Runs every Register of one collector (see the module docstring)."""

    def __init__(self, store: Store, now_ms: Callable[[], int], heavy_bytes: int = HEAVY_BYTES) -> None:
        """Register into this store, with ``now_ms`` as the collector's clock."""
        self.store = store
        self._now_ms = now_ms
        self._budget = _ByteBudget(heavy_bytes)
        self._gates: dict[str, _Gate] = {}
        self._gates_lock = threading.Lock()
        # Leases live in the store, one per (app, fingerprint): two versions registering side by side
        # (a rolling deploy) never take each other's. The condition wakes this collector's waiters early.
        self._waiters = 0
        self._leases_changed = threading.Condition()

    def register(self, raw: pb.RegisterRequest | bytes, context: grpc.ServicerContext) -> pb.RegisterResponse:
        """Answer one Register (decoded, or its bytes as the runner passes it): unchanged, need_sources, or replaced."""
        alive = context.is_active
        size = len(raw) if isinstance(raw, bytes) else raw.ByteSize()
        taken = self._budget.acquire(size, alive) if size > SMALL_BYTES else 0
        try:
            return self._register(raw, context)
        except _Cancelled:
            context.abort(grpc.StatusCode.CANCELLED, "the client went away before its Register was done")
            raise AssertionError("unreachable: abort raises") from None  # pragma: no cover
        finally:
            self._budget.release(taken)

    def _register(self, raw: pb.RegisterRequest | bytes, context: grpc.ServicerContext) -> pb.RegisterResponse:
        """Decode, then probe or replace; an unchanged set answers with no counts (nothing was done)."""
        request = _decode(raw)
        app = check_app(request.app)
        claimed = check_fingerprint(request.fingerprint)
        label = label_from(request)
        instance = request.process.instance_id
        alive = context.is_active
        if request.fingerprint_only:
            if not claimed:
                raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, "fingerprint_only needs the fingerprint of the set")
            if request.sources:
                raise Rejected(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "a fingerprint_only Register carries no sources; send the fingerprint alone, or the whole set",
                )
            return self._probe(app, claimed, label, instance, alive)
        try:
            with self._gate(app, alive):
                if claimed and self.store.knows_version(app, claimed):
                    self.store.touch_version(app, claimed, self._now_ms(), version=label, instance_id=instance)
                    return pb.RegisterResponse()  # the version is known: nothing to change
                sources, fingerprint = sources_from(request)
                ignore = ignore_from(request)
                del request  # the decoded message (~50 MB at the limit) is not needed while the store works
                if claimed and claimed != fingerprint:
                    raise Rejected(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "the fingerprint does not match the sources sent; compute it with"
                        " coldmod_trace.keys.sources_fingerprint over the same (key, path, lines)",
                    )
                if not alive():  # nothing is written for a client that left
                    raise _Cancelled
                result = self.store.register(
                    app, sources, self._now_ms(), fingerprint, version=label, instance_id=instance, ignore=ignore
                )
        finally:
            self._end_lease(app, claimed)
        return pb.RegisterResponse(kept=result.kept, added=result.added, removed=result.removed)

    def _probe(
        self, app: str, claimed: str, label: str, instance: str, alive: Callable[[], bool]
    ) -> pb.RegisterResponse:
        """A fingerprint-only call: a known version (refreshed), or need_sources for one caller while others wait."""
        holder = uuid.uuid4().hex  # this call: a lease is one caller's, whichever collector it reached
        waiting = False
        try:
            while True:
                with self._gate(app, alive):
                    if self.store.knows_version(app, claimed):
                        self.store.touch_version(app, claimed, self._now_ms(), version=label, instance_id=instance)
                        return pb.RegisterResponse()
                    if self.store.lease(app, claimed, holder, self._now_ms(), int(LEASE_S * 1000)):
                        return pb.RegisterResponse(need_sources=True)
                with self._leases_changed:
                    if not waiting:  # another caller sends this set: wait for it, if there is room to
                        if self._waiters >= MAX_WAITERS:
                            raise Rejected(grpc.StatusCode.UNAVAILABLE, WAIT_REFUSED)
                        self._waiters += 1
                        waiting = True
                    self._leases_changed.wait(_POLL_S)
                if not alive():
                    raise _Cancelled
        finally:
            if waiting:
                with self._leases_changed:
                    self._waiters -= 1

    def _end_lease(self, app: str, fingerprint: str) -> None:
        """A full Register of the set is done (stored or refused): release its lease, wake the calls waiting for it."""
        if fingerprint:
            self.store.release(app, fingerprint)
        with self._leases_changed:
            self._leases_changed.notify_all()

    def _gate(self, app: str, alive: Callable[[], bool]) -> _Held:
        """The app's gate, entered once the Registers before this one are done."""
        with self._gates_lock:
            gate = self._gates.get(app)
            if gate is None:
                gate = self._gates[app] = _Gate(threading.Lock())
            gate.users += 1
        return _Held(self, app, gate, alive)

    def _leave(self, app: str, gate: _Gate) -> None:
        """Forget a gate nobody holds or waits for (apps come and go)."""
        with self._gates_lock:
            gate.users -= 1
            if gate.users == 0:
                del self._gates[app]


def _decode(raw: pb.RegisterRequest | bytes) -> pb.RegisterRequest:
    """The RegisterRequest in ``raw``; bytes that are not one are INVALID_ARGUMENT."""
    if not isinstance(raw, bytes):
        return raw
    try:
        return pb.RegisterRequest.FromString(raw)
    except DecodeError:
        raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, "the message is not a RegisterRequest") from None


class _Held:
    """``with registrar._gate(app, alive):`` holds the app's gate; a client gone while waiting raises _Cancelled."""

    __slots__ = ("_alive", "_app", "_gate", "_locked", "_registrar")

    def __init__(self, registrar: Registrar, app: str, gate: _Gate, alive: Callable[[], bool]) -> None:
        """Remember what to enter and how to know the client is still there."""
        self._registrar = registrar
        self._app = app
        self._gate = gate
        self._alive = alive
        self._locked = False

    def __enter__(self) -> None:
        """Wait for the gate while the client is there."""
        try:
            while not self._gate.lock.acquire(timeout=_POLL_S):
                if not self._alive():
                    raise _Cancelled
        except BaseException:
            self._registrar._leave(self._app, self._gate)
            raise
        self._locked = True

    def __exit__(self, *exc: object) -> None:
        """Open the gate for the next Register of the app."""
        if self._locked:
            self._gate.lock.release()
        self._registrar._leave(self._app, self._gate)

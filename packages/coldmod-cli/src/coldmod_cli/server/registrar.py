"""Register under load: a fleet restarting together must register within seconds, in bounded memory.

A large app's full Register (200,000 keys, ~19 MB) costs the collector about
a second of CPU and a hundred MB while it is turned into sources; 48 workers
restarting at once used to send 48 of them, and every timed-out one was
resent while the cancelled handler kept running. Here:

- **fingerprint first**: a tracer sends only its set's fingerprint; when that
  is the app's current set, the answer is immediate (nothing to change);
  otherwise ``need_sources`` asks for the whole set.
- **one app at a time**: Registers of one app wait for each other (a gate per
  app), so a fleet's fingerprint-only calls wait for the one full Register in
  progress and then find its fingerprint stored: the set is processed once.
  A full Register whose fingerprint is already stored is answered the same
  way without being converted (identical concurrent Registers coalesce).
- **bounded memory**: the conversion of a full set runs under a budget of
  bytes (``HEAVY_BYTES``); beyond it, calls wait. The runner also gives
  Register its own few handler threads, so at most that many received
  messages exist at once.
- **cancelled calls stop**: a waiting call gives up as soon as its client is
  gone, and a converted set is not written for a client that left.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from coldmod_cli.server.limits import Rejected, check_app, sources_from
from coldmod_cli.server.store import RegisterResult, Store
from coldmod_proto.v1 import coldmod_pb2 as pb

__all__ = ["HEAVY_BYTES", "Registrar"]

#: Bytes of Register messages being converted at once (~5 MB of Python objects per MB received).
HEAVY_BYTES = 48 * 1024 * 1024
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

    def register(self, request: pb.RegisterRequest, context: grpc.ServicerContext) -> pb.RegisterResponse:
        """Answer one Register: unchanged, need_sources, or the set replaced."""
        app = check_app(request.app)
        claimed = request.fingerprint
        if request.fingerprint_only:
            if not claimed:
                raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, "fingerprint_only needs the fingerprint of the set")
            if request.sources:
                raise Rejected(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "a fingerprint_only Register carries no sources; send the fingerprint alone, or the whole set",
                )
        alive = context.is_active
        try:
            with self._gate(app, alive):
                if claimed and self.store.fingerprint(app) == claimed:
                    return pb.RegisterResponse()  # the set is already the app's: nothing to change
                if request.fingerprint_only:
                    return pb.RegisterResponse(need_sources=True)
                result = self._replace(app, request, alive)
        except _Cancelled:
            context.abort(grpc.StatusCode.CANCELLED, "the client went away before its Register was done")
            raise AssertionError("unreachable: abort raises") from None  # pragma: no cover
        return pb.RegisterResponse(kept=result.kept, added=result.added, removed=result.removed)

    def _replace(self, app: str, request: pb.RegisterRequest, alive: Callable[[], bool]) -> RegisterResult:
        """Convert and store a full set, within the byte budget; nothing is written for a client that left."""
        taken = self._budget.acquire(request.ByteSize(), alive)
        try:
            sources, fingerprint = sources_from(request)
            if request.fingerprint and request.fingerprint != fingerprint:
                raise Rejected(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "the fingerprint does not match the sources sent; compute it with"
                    " coldmod_trace.keys.sources_fingerprint over the same (key, path, lines)",
                )
            if not alive():
                raise _Cancelled
            return self.store.register(app, sources, self._now_ms(), fingerprint)
        finally:
            self._budget.release(taken)

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

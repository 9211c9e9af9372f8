"""The daemon sender thread: discovery, Register, then batches of deltas until the process ends.

Delivery is at-least-once from here and exactly-once at the server: every batch
carries ``(instance_id, sequence)``, stays in flight until the server
acknowledges it, and is resent unchanged after any fault. Pending deltas are
aggregated per key and bounded; what does not fit is dropped, counted, and the
count travels in the next batch.

The calls go through the relay process (:mod:`coldmod_trace._internal.relay`):
grpc never runs inside the application, so a fork can never inherit its state.
"""

from __future__ import annotations

import logging
import platform
import random
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from coldmod_trace._internal import lifecycle
from coldmod_trace._internal.appfilter import AppFilter
from coldmod_trace._internal.counting import Engine
from coldmod_trace._internal.relay import REGISTER, REPORT, Relay, RelayError
from coldmod_trace._version import __version__
from coldmod_trace.config import MAX_MESSAGE_BYTES, ClientConfig
from coldmod_trace.discovery import Source, discover
from coldmod_trace.keys import REGISTER_BUSY, sources_fingerprint
from coldmod_trace.rootmarker import Rootmarker

if TYPE_CHECKING:  # the generated code is imported on the sender thread only
    from coldmod_proto.v1 import coldmod_pb2

__all__ = ["MAX_PENDING", "Sender", "SenderConfig"]

log = logging.getLogger("coldmod_trace")

#: Most deltas held (pending plus the batch in flight); beyond, updates are dropped and counted.
MAX_PENDING = 65_536
BACKOFF_BASE = 0.5  # seconds before the first retry; doubles per consecutive failure
BACKOFF_CAP = 30.0
#: After the collector refused the key: a wrong key stays wrong until someone fixes it.
REFUSED_BACKOFF_BASE = 60.0
REFUSED_BACKOFF_CAP = 600.0
REGISTER_TIMEOUT = 30.0  # a collector may spend seconds on a large set
REPORT_TIMEOUT = 10.0
#: Room left in a message for everything but the sources (app, identity, framing).
MESSAGE_MARGIN = 64 * 1024


class _GiveUp(Exception):
    """The collector will never take this app as it is (too large); tracing stops."""


@dataclass(frozen=True)
class SenderConfig:
    """Everything a sender needs that outlives a fork."""

    app: str
    marker: Rootmarker
    client: ClientConfig
    flush_interval: float
    mode: str
    engine_name: str


class Sender:
    """Owns one process identity: its instance id, sequence numbers, pending deltas and channel."""

    def __init__(
        self,
        config: SenderConfig,
        engine: Engine,
        apps: AppFilter,
        sources: dict[str, Source] | None = None,
    ) -> None:
        """A sender for this process; ``sources`` is a finished discovery (reused after fork)."""
        self.config = config
        self.instance_id = secrets.token_hex(16)  # 128 random bits
        self._engine = engine
        self._apps = apps
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._discovered = threading.Event()
        self._closing = False
        self._sources = sources
        self._keys: dict[int, str | None] = {}  # id(code) -> key; the engine keeps the code alive
        self._pending: dict[str, list[Any]] = {}  # key -> [calls, estimated, lower_bound]
        self._pending_since = 0
        self._dropped = 0
        self._inflight: coldmod_pb2.ReportRequest | None = None
        self._sequence = 0
        self._registered = False
        self._failures = 0
        self._retry_at = 0.0
        self._outage_logged = False
        self._refused_logged = False
        self._gave_up = False
        self._fingerprint = ""
        self._relay: Relay | None = None
        self._wire = threading.Lock()  # one call at a time: the thread's, or close()'s
        self._thread = threading.Thread(target=self._run, name="coldmod-sender", daemon=True)
        if sources is not None:
            self._discovered.set()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Become the process's sender and start the daemon thread (discovery and Register happen there)."""
        lifecycle.set_sender(self)  # starts the thread now, or in a fork's child once its hooks are done

    def start_thread(self) -> None:
        """Start the daemon thread."""
        self._thread.start()

    def close(self, timeout: float) -> bool:
        """Flush what is pending within ``timeout`` seconds, from the calling thread; True if all went."""
        deadline = time.monotonic() + timeout
        self._closing = True
        self._wake.set()
        if lifecycle.current_sender() is self:
            lifecycle.set_sender(None)
        if self._gave_up:
            return True  # said so once already; nothing will be delivered
        if not self._discovered.wait(max(0.0, deadline - time.monotonic())):
            log.warning("coldmod: exiting before discovery finished; this process's counts are lost")
            return False
        self._collect()
        delay = 0.05
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                if self._deliver(min(remaining, REPORT_TIMEOUT), min(remaining, REGISTER_TIMEOUT)):
                    return True
            except _GiveUp as exc:
                self._give_up(str(exc))
                return True
            except Exception as exc:  # any fault: retry until the deadline
                if _code_name(exc) == "UNAUTHENTICATED":
                    self._log_refused()
                    break  # a wrong key stays wrong: no point in spending the exit budget
                log.debug("coldmod: exit flush attempt failed (%s)", _describe(exc))
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay *= 2
        with self._lock:
            left = len(self._pending) + (
                len(self._inflight.deltas) if self._inflight is not None else 0
            )
        if left:
            log.warning(
                "coldmod: %d call counts not delivered before exit (collector %s)",
                left,
                self.config.client.target,
            )
        return not left

    def sources_if_known(self) -> dict[str, Source] | None:
        """The discovered sources, or None while discovery runs (a forked child reuses them)."""
        return self._sources if self._discovered.is_set() else None

    def status(self) -> dict[str, Any]:
        """Internal state for tests and debugging."""
        with self._lock:
            return {
                "instance_id": self.instance_id,
                "registered": self._registered,
                "pending": len(self._pending),
                "inflight": len(self._inflight.deltas) if self._inflight is not None else 0,
                "dropped": self._dropped,
                "sequence": self._sequence,
                "failures": self._failures,
            }

    # -- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        # threading.settrace (3.11) handed this thread the trace function: nothing to trace here.
        sys.settrace(None)
        try:
            self._discover()
        except Exception as exc:
            log.warning("coldmod: tracing stopped: discovery failed (%s)", exc)
            return
        interval = self.config.flush_interval
        next_flush = time.monotonic() + interval
        while not self._closing and not self._gave_up:
            now = time.monotonic()
            wake_at = next_flush
            if self._has_work():
                wake_at = min(wake_at, max(self._retry_at, now))
            self._wake.wait(max(0.0, wake_at - now))
            self._wake.clear()
            if self._closing:
                return
            now = time.monotonic()
            if now >= next_flush:
                next_flush = now + interval
                self._collect()
            if now >= self._retry_at and self._has_work():
                self._attempt()

    def _discover(self) -> None:
        if self._sources is None:
            result = discover(self.config.marker)
            self._sources = result.sources
        self._discovered.set()
        calibrate = getattr(self._engine, "calibrate", None)
        if calibrate is not None and self.config.mode == "sampled":
            calibrate()

    def _attempt(self) -> None:
        """One delivery attempt; on a fault, schedule the next with backoff and jitter."""
        try:
            while self._deliver(REPORT_TIMEOUT, REGISTER_TIMEOUT) is False and not self._closing:
                pass  # more than one batch pending: keep going while the server answers
        except _GiveUp as exc:
            self._give_up(str(exc))
            return
        except Exception as exc:  # RelayError and friends
            self._drop_connection()
            self._failures += 1
            refused = _code_name(exc) == "UNAUTHENTICATED"
            base, cap = (REFUSED_BACKOFF_BASE, REFUSED_BACKOFF_CAP) if refused else (BACKOFF_BASE, BACKOFF_CAP)
            jitter = random.uniform(0.8, 1.2)  # noqa: S311 - spreads retries, not a secret
            delay = min(base * 2 ** (self._failures - 1), cap) * jitter
            self._retry_at = time.monotonic() + delay
            if refused:
                self._log_refused()
            elif isinstance(exc, RelayError) and (exc.code, exc.details) == ("UNAVAILABLE", REGISTER_BUSY):
                log.debug("coldmod: %s", REGISTER_BUSY)  # a fleet restarting: another process sends the set
            elif not self._outage_logged:
                self._outage_logged = True
                cause = _mismatch(exc, self.config.client.insecure)
                if cause:
                    log.warning(
                        "coldmod: %s (collector %s); retrying with backoff", cause, self.config.client.target
                    )
                else:
                    log.warning(
                        "coldmod: cannot reach the collector at %s (%s); retrying with backoff",
                        self.config.client.target,
                        _describe(exc),
                    )
            return
        if self._outage_logged or self._refused_logged:
            log.info("coldmod: collector at %s reachable again", self.config.client.target)
        self._failures = 0
        self._outage_logged = False
        self._refused_logged = False

    def _log_refused(self) -> None:
        """Once per outage: the key is wrong, which retrying will not fix."""
        if not self._refused_logged:
            self._refused_logged = True
            log.warning(
                "coldmod: the collector at %s refused the API key; set COLDMOD_API_KEY to the collector's "
                "key (counts are kept and retried every few minutes)",
                self.config.client.target,
            )

    def _give_up(self, reason: str) -> None:
        """Stop tracing for good, the application untouched: one warning, nothing pending, no engine."""
        if self._gave_up:
            return
        self._gave_up = True
        log.warning("coldmod: tracing stopped: %s", reason)
        try:
            self._engine.uninstall()
        except Exception as exc:
            log.debug("coldmod: uninstalling the engine failed (%s)", exc)
        with self._lock:
            self._pending.clear()
            self._inflight = None
            self._dropped = 0
        self._drop_connection()

    # -- counting to keys ------------------------------------------------------------

    def _collect(self) -> None:
        """Drain the engine into pending deltas, mapped to keys and bounded."""
        sources = self._sources
        if sources is None:
            return  # discovery not finished: the engine's counters keep accumulating
        deltas = self._engine.drain()
        with self._lock:
            if not self._pending:
                self._pending_since = _now_ms()
            room = MAX_PENDING - (len(self._inflight.deltas) if self._inflight is not None else 0)
            for code, calls, estimated, lower_bound in deltas:
                cid = id(code)
                try:
                    key = self._keys[cid]
                except KeyError:
                    key = self._keys[cid] = self._apps.key(code)
                    if key is not None and key not in sources:
                        key = self._keys[cid] = None
                if key is None:
                    self._engine.forget(code)
                    continue
                entry = self._pending.get(key)
                if entry is not None:
                    entry[0] += calls
                    entry[1] = entry[1] or estimated
                    entry[2] = entry[2] or lower_bound
                elif len(self._pending) < room:
                    self._pending[key] = [calls, estimated, lower_bound]
                else:
                    self._dropped += 1
        if self._pending or self._dropped:
            self._wake.set()

    def _has_work(self) -> bool:
        return (
            not self._registered
            or self._inflight is not None
            or bool(self._pending)
            or self._dropped > 0
        )

    # -- the wire --------------------------------------------------------------------

    def _deliver(self, timeout: float, register_timeout: float) -> bool:
        """Register if needed, then send one batch. True when nothing is left to send."""
        if not self._wire.acquire(timeout=timeout):
            raise TimeoutError("the sender thread is still waiting on the collector")
        try:
            relay = self._ensure_relay()
            if not self._registered:
                self._register(relay, register_timeout)
            batch = self._batch()
            if batch is None:
                return True
            relay.call(REPORT, batch.SerializeToString(), timeout)
        finally:
            self._wire.release()
        with self._lock:
            if self._inflight is batch:
                self._inflight = None
            return not self._pending and not self._dropped

    def _batch(self) -> coldmod_pb2.ReportRequest | None:
        """The batch in flight, or a new one from the pending deltas."""
        from coldmod_proto.v1 import coldmod_pb2

        with self._lock:
            if self._inflight is not None:
                return self._inflight
            if not self._pending and not self._dropped:
                return None
            self._sequence += 1
            batch = coldmod_pb2.ReportRequest(
                app=self.config.app,
                instance_id=self.instance_id,
                sequence=self._sequence,
                window_start_ms=self._pending_since or _now_ms(),
                window_end_ms=_now_ms(),
                deltas=[
                    coldmod_pb2.KeyDelta(key=key, calls=calls, estimated=estimated, lower_bound=lower_bound)
                    for key, (calls, estimated, lower_bound) in self._pending.items()
                ],
                dropped_updates=self._dropped,
            )
            self._pending = {}
            self._pending_since = 0
            self._dropped = 0
            self._inflight = batch
            return batch

    def _register(self, relay: Relay, timeout: float) -> None:
        """Fingerprint first; the whole set only when the collector lacks it (a fleet restart costs it once)."""
        from coldmod_proto.v1 import coldmod_pb2

        sources = self._sources or {}
        if not self._fingerprint:
            self._fingerprint = sources_fingerprint(sources.values())
        identity = coldmod_pb2.ProcessIdentity(
            instance_id=self.instance_id,
            pid=_getpid(),
            hostname=socket.gethostname(),
            runtime=f"{platform.python_implementation()} {platform.python_version()}",
            engine=self.config.engine_name,
            tracer_version=__version__,
            mode=self.config.mode,
        )
        probe = coldmod_pb2.RegisterRequest(
            app=self.config.app, process=identity, fingerprint=self._fingerprint, fingerprint_only=True
        )
        try:
            answer = coldmod_pb2.RegisterResponse.FromString(
                relay.call(REGISTER, probe.SerializeToString(), timeout)
            )
            if answer.need_sources:
                request = coldmod_pb2.RegisterRequest(
                    app=self.config.app,
                    process=identity,
                    fingerprint=self._fingerprint,
                    sources=[coldmod_pb2.TraceSource(key=s.key, path=s.path, lines=s.lines) for s in sources.values()],
                )
                size = request.ByteSize()
                if size > MAX_MESSAGE_BYTES - MESSAGE_MARGIN:
                    raise _GiveUp(
                        f"the app has {len(sources)} functions, a Register of {size / 2**20:.1f} MiB, over the "
                        f"{MAX_MESSAGE_BYTES // 2**20} MiB a message may hold; ignore files or keys in "
                        "coldmod.rootmarker to trace it"
                    )
                relay.call(REGISTER, request.SerializeToString(), timeout)
        except RelayError as exc:
            if _code_name(exc) in ("RESOURCE_EXHAUSTED", "INVALID_ARGUMENT"):
                raise _GiveUp(f"the collector at {self.config.client.target} refused this app's "
                              f"{len(sources)} functions ({_describe(exc)})") from None
            raise
        self._registered = True

    def _drop_connection(self) -> None:
        """Forget the connection after a fault: the relay drops its channel with it, and the next
        call gets a fresh one, where grpc's own reconnect backoff (up to two minutes) would fail
        our retries fast until it expires."""
        relay = self._relay
        if relay is not None:
            relay.close()

    def _ensure_relay(self) -> Relay:
        """The relay connection, built on first use (the generated code is imported here, never
        on the app's thread; a fork waits for the import, which a child must not inherit half-done)."""
        with lifecycle.fork_guard:
            if self._relay is None:
                from coldmod_proto.v1 import coldmod_pb2  # noqa: F401 - imported once, here

                self._relay = Relay(self.config.client)
            return self._relay


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _getpid() -> int:
    import os

    return os.getpid()


def _code_name(exc: BaseException) -> str:
    """The gRPC status code's name of a failed call, "" for anything else."""
    return exc.code if isinstance(exc, RelayError) else ""


#: A failed connection's cause, read as a table: (this client is plaintext, words in grpc's details) -> cause.
_MISMATCH = (
    (True, ("Socket closed", "Connection reset", "connection reset"),
     "TLS/plaintext mismatch: the collector speaks TLS and this tracer plaintext; "
     "unset COLDMOD_INSECURE and set COLDMOD_TLS_CA"),
    (False, ("WRONG_VERSION_NUMBER", "wrong version number"),
     "TLS/plaintext mismatch: the collector speaks plaintext (COLDMOD_INSECURE=on there) and this tracer TLS"),
    (False, ("Handshake failed", "handshake failed", "CERTIFICATE_VERIFY_FAILED"),
     "TLS handshake failed: is the collector's certificate signed by COLDMOD_TLS_CA?"),
)


def _mismatch(exc: BaseException, insecure: bool) -> str:
    """The likely cause when what failed is a TLS/plaintext mismatch or the handshake, else ""."""
    if _code_name(exc) != "UNAVAILABLE":
        return ""
    described = _describe(exc)
    for plaintext, hints, cause in _MISMATCH:
        if plaintext == insecure and any(hint in described for hint in hints):
            return cause
    return ""


def _describe(exc: BaseException) -> str:
    """A one-line reason for a failed call, without secrets."""
    if isinstance(exc, RelayError):
        return f"{exc.code}: {exc.details}"
    return type(exc).__name__

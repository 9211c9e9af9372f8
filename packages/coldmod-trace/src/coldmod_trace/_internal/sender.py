"""The daemon sender thread: discovery, Register, then batches of deltas until the process ends.

Delivery is at-least-once from here and exactly-once at the server: every batch
carries ``(instance_id, sequence)``, stays in flight until the server
acknowledges it, and is resent unchanged after any fault. Pending deltas are
aggregated per key and bounded; what does not fit is dropped, counted, and the
count travels in the next batch.
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
from coldmod_trace._internal.engines import Engine
from coldmod_trace._version import __version__
from coldmod_trace.config import MAX_MESSAGE_BYTES, ClientConfig
from coldmod_trace.discovery import Source, discover
from coldmod_trace.keys import sources_fingerprint
from coldmod_trace.rootmarker import Rootmarker

if TYPE_CHECKING:  # grpc and the generated code are imported on the sender thread only
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


class _Quiesced(Exception):
    """The sender is held for a fork: no call may start now."""


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
        self._quiescing = False
        self._fork_epoch = 0  # bumped by each fork: a call it cancelled is not a collector fault
        self._wire_held_for_fork = False
        self._stub_held_for_fork = False
        self._stub: Any = None
        self._channel: Any = None
        self._stub_lock = threading.Lock()
        self._wire = threading.Lock()  # one RPC at a time: the thread's, or close()'s
        self._thread = threading.Thread(target=self._run, name="coldmod-sender", daemon=True)
        if sources is not None:
            self._discovered.set()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Become the process's sender and start the daemon thread (discovery and Register happen there)."""
        lifecycle.set_sender(self)  # starts the thread now, or in a fork's child once grpc has reset

    def start_thread(self) -> None:
        """Start the daemon thread."""
        self._thread.start()

    def quiesce(self, timeout: float) -> None:
        """Before fork: let the call in flight end (bounded), then hold the wire and the channel.

        Held, no call starts and no channel is made or closed while the
        process forks: grpc's C-core fork handlers run only when no thread is
        inside grpc. The channel stays open (closing it just before a fork
        crashed parents in testing); the child never uses it, as its channel
        has connections of its own (``grpc.use_local_subchannel_pool``).
        """
        deadline = time.monotonic() + timeout
        self._quiescing = True
        self._fork_epoch += 1
        self._wire_held_for_fork = self._wire.acquire(timeout=timeout)
        self._stub_held_for_fork = self._stub_lock.acquire(timeout=max(0.0, deadline - time.monotonic()))

    def resume(self) -> None:
        """After fork, in the parent: let the sender go on where it was."""
        self._quiescing = False
        if self._stub_held_for_fork:
            self._stub_held_for_fork = False
            self._stub_lock.release()
        if self._wire_held_for_fork:
            self._wire_held_for_fork = False
            self._wire.release()
        self._wake.set()

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
        epoch = self._fork_epoch
        try:
            while self._deliver(REPORT_TIMEOUT, REGISTER_TIMEOUT) is False and not self._closing:
                pass  # more than one batch pending: keep going while the server answers
        except _GiveUp as exc:
            self._give_up(str(exc))
            return
        except Exception as exc:  # grpc.RpcError and friends
            self._drop_channel()
            if epoch != self._fork_epoch or isinstance(exc, _Quiesced):
                self._retry_at = 0.0  # a fork cancelled the call: resend as soon as it is over
                return
            self._failures += 1
            refused = _code_name(exc) == "UNAUTHENTICATED"
            base, cap = (REFUSED_BACKOFF_BASE, REFUSED_BACKOFF_CAP) if refused else (BACKOFF_BASE, BACKOFF_CAP)
            jitter = random.uniform(0.8, 1.2)  # noqa: S311 - spreads retries, not a secret
            delay = min(base * 2 ** (self._failures - 1), cap) * jitter
            self._retry_at = time.monotonic() + delay
            if refused:
                self._log_refused()
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
        self._drop_channel()

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
            stub = self._ensure_stub()
            if not self._registered:
                self._register(stub, register_timeout)
            batch = self._batch()
            if batch is None:
                return True
            stub.Report(batch, timeout=timeout)
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

    def _register(self, stub: Any, timeout: float) -> None:
        """Fingerprint first; the whole set only when the collector lacks it (a fleet restart costs it once)."""
        import grpc

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
            answer = stub.Register(probe, timeout=timeout)
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
                stub.Register(request, timeout=timeout)
        except grpc.RpcError as exc:
            if _code_name(exc) in ("RESOURCE_EXHAUSTED", "INVALID_ARGUMENT"):
                raise _GiveUp(f"the collector at {self.config.client.target} refused this app's "
                              f"{len(sources)} functions ({_describe(exc)})") from None
            raise
        self._registered = True

    def _drop_channel(self) -> None:
        """Forget the channel after a fault: a fresh one connects at once, where grpc's own
        reconnect backoff (up to two minutes) would fail our retries fast until it expires."""
        with self._stub_lock:
            channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            channel.close()

    def _ensure_stub(self) -> Any:
        """The Tracing stub, built on first use (grpc is imported here, never on the app's thread)."""
        with self._stub_lock, lifecycle.fork_guard:
            if self._quiescing:
                raise _Quiesced
            if self._stub is None:
                with lifecycle.grpc_environment():
                    from coldmod_proto.v1 import coldmod_pb2_grpc
                    from coldmod_trace.config import client_channel

                    self._channel = client_channel(self.config.client)
                self._stub = coldmod_pb2_grpc.TracingStub(self._channel)  # type: ignore[no-untyped-call]
            return self._stub


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _getpid() -> int:
    import os

    return os.getpid()


def _code_name(exc: BaseException) -> str:
    """The gRPC status code's name of a failed call, "" for anything else."""
    code = getattr(exc, "code", None)
    try:
        return str(code().name) if callable(code) else ""
    except Exception:
        return ""


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
    """A one-line reason for a failed RPC, without secrets."""
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    if callable(code) and callable(details):
        try:
            return f"{code().name}: {details()}"
        except Exception:  # a fake or half-built RpcError: fall back to the type
            return type(exc).__name__
    return type(exc).__name__

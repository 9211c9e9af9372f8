"""The sender: a bounded pending buffer and one delivery loop, from discovery to the process's end.

Delivery is at-least-once from here and exactly-once at the server: every batch
carries ``(instance_id, sequence)``, stays pending until the server
acknowledges it, and is resent unchanged after any fault. The buffer
(:mod:`coldmod_trace._internal.pending`) aggregates deltas per key, bounded;
what does not fit is dropped, counted, and the count travels in the next batch.
One round of the delivery loop (:meth:`Sender._attempt`) registers if needed
and sends the sealed batches in order; one backoff policy (:func:`backoff_delay`)
spaces the rounds, run by the daemon thread between flushes and by the exit
flush until its deadline; one table (:data:`RETRYABLE` and its neighbours)
says what a failed call's status means.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from coldmod_trace._internal import lifecycle
from coldmod_trace._internal.appfilter import AppFilter
from coldmod_trace._internal.counting import Engine
from coldmod_trace._internal.pending import DAY_MS, MAX_PENDING, Batch, Pending, next_midnight_ms
from coldmod_trace._internal.relay import REGISTER, REPORT, Relay, RelayError
from coldmod_trace._version import __version__
from coldmod_trace.config import MAX_MESSAGE_BYTES, ClientConfig, Mode
from coldmod_trace.discovery import Source, discover
from coldmod_trace.keys import REGISTER_BUSY, sources_fingerprint
from coldmod_trace.rootmarker import Rootmarker

__all__ = ["MAX_PENDING", "Sender", "SenderConfig", "backoff_delay"]

log = logging.getLogger("coldmod_trace")

BACKOFF_BASE = 0.5  # seconds before the first retry; doubles per consecutive failure
BACKOFF_CAP = 30.0
#: After the collector refused the key: a wrong key stays wrong until someone fixes it.
REFUSED_BACKOFF_BASE = 60.0
REFUSED_BACKOFF_CAP = 600.0
REGISTER_TIMEOUT = 30.0  # a collector may spend seconds on a large set
REPORT_TIMEOUT = 10.0
#: Most the thread waits to reach (or start) the relay before discovery: a relay starting listens in
#: well under this; one that does not answer must not hold discovery up.
RELAY_OPEN_TIMEOUT = 1.0
#: Room left in a message for everything but the sources (app, identity, framing).
MESSAGE_MARGIN = 64 * 1024

#: What a failed call's status code means for what was sent, read as a table (OpenTelemetry's
#: exporter keeps its retryable codes the same way). Codes in none of these refuse the batch for
#: good (OUT_OF_RANGE: a count would pass 2**63-1; INVALID_ARGUMENT…): it is dropped once,
#: counted in the next batch's dropped_updates, and said once.
RETRYABLE = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "CANCELLED", "INTERNAL", "UNKNOWN",
     "DATA_LOSS"}
)  # fmt: skip
#: Retried too, slowly and said once: the key is fixed on one side or the other, never by resending.
REFUSED_KEY = frozenset({"UNAUTHENTICATED"})
#: A Report for an app the collector does not know (reset or deleted meanwhile): Register again, resend.
UNREGISTERED = frozenset({"FAILED_PRECONDITION"})


def backoff_delay(failures: int, code: str) -> float:
    """The one backoff policy: seconds to wait after ``failures`` consecutive failures, the last one ``code``."""
    base, cap = (REFUSED_BACKOFF_BASE, REFUSED_BACKOFF_CAP) if code in REFUSED_KEY else (BACKOFF_BASE, BACKOFF_CAP)
    jitter = random.uniform(0.8, 1.2)  # noqa: S311 - spreads retries, not a secret
    return float(min(base * 2 ** (max(failures, 1) - 1), cap) * jitter)


class _GiveUp(Exception):
    """The collector will never take this app as it is (too large); tracing stops."""


class _DeadlinePassed(Exception):
    """The round's deadline (the exit's) passed before a call could start: no fault of anyone's."""


@dataclass(frozen=True)
class SenderConfig:
    """Everything a sender needs that outlives a fork."""

    app: str
    marker: Rootmarker
    client: ClientConfig
    flush_interval: float
    mode: Mode
    engine_name: str
    version: str = ""  # the deployment's label (COLDMOD_VERSION), "" when none


class Sender:
    """One process identity: its instance id, its bounded pending buffer, and the one delivery loop.

    The buffer (:class:`~coldmod_trace._internal.pending.Pending`) holds the
    deltas; :meth:`_attempt` is the delivery loop's one round (Register if
    needed, then the sealed batches in order) and :func:`backoff_delay` its one
    policy. The daemon thread runs rounds between flushes; :meth:`close` runs
    them from the exiting thread until its deadline, waiting the same backoff.
    """

    def __init__(
        self,
        config: SenderConfig,
        engine: Engine,
        apps: AppFilter,
        sources: dict[str, Source] | None = None,
        wall_ms: Callable[[], int] | None = None,
    ) -> None:
        """A sender for this process; ``sources`` is a finished discovery (reused after fork)."""
        self.config = config
        self.instance_id = secrets.token_hex(16)  # 128 random bits
        self._engine = engine
        self._apps = apps
        self._wall_ms = wall_ms or _now_ms  # windows and UTC midnights; injected by tests
        self._pending = Pending()
        self._wake = threading.Event()
        self._discovered = threading.Event()
        self._closing = False
        self._sources = sources
        self._keys: dict[int, str | None] = {}  # id(code) -> key; the engine keeps the code alive
        self._registered = False
        self._failures = 0
        self._outage_logged = False
        self._refused_logged = False
        #: The key's refusal was news to another process of the tree, which said it (see relay.RelayError.told).
        self._refused_told = False
        self._refusals_said: set[str] = set()  # codes of batches refused for good, said once each
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
        while True:  # the delivery loop, bounded by the exit's deadline
            delay = self._attempt(deadline, exiting=True)
            if delay is None or time.monotonic() + delay >= deadline:
                break
            time.sleep(delay)
        if self._gave_up:
            return True
        left = self._pending.status()
        count = left["pending"] + left["inflight"]
        if count and self._refused_told:
            # The tree was told the key is refused, and that a process ending meanwhile loses its counts.
            log.debug("coldmod: %d call counts not delivered before exit (the key is refused)", count)
        elif count:
            log.warning(
                "coldmod: %d call counts not delivered before exit (collector %s)", count, self.config.client.target
            )
        return not count

    def sources_if_known(self) -> dict[str, Source] | None:
        """The discovered sources, or None while discovery runs (a forked child reuses them)."""
        return self._sources if self._discovered.is_set() else None

    def status(self) -> dict[str, Any]:
        """Internal state for tests and debugging."""
        return {
            "instance_id": self.instance_id,
            "registered": self._registered,
            **self._pending.status(),
            "failures": self._failures,
        }

    # -- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        # threading.settrace (3.11) handed this thread the trace function: nothing to trace here.
        sys.settrace(None)
        self._open_relay()
        try:
            self._discover()
        except Exception as exc:
            log.warning("coldmod: tracing stopped: discovery failed (%s)", exc)
            return
        interval = self.config.flush_interval
        next_flush = time.monotonic() + interval
        retry_at = 0.0
        day = self._wall_ms() // DAY_MS
        while not self._closing and not self._gave_up:
            now = time.monotonic()
            wall = self._wall_ms()
            wake_at = min(next_flush, now + (next_midnight_ms(wall) - wall) / 1000)
            if self._has_work():
                wake_at = min(wake_at, max(retry_at, now))
            self._wake.wait(max(0.0, wake_at - now))
            self._wake.clear()
            if self._closing:
                return
            now = time.monotonic()
            today = self._wall_ms() // DAY_MS
            if now >= next_flush or today != day:  # a flush, or a UTC midnight that closes the window
                next_flush = now + interval
                day = today
                self._collect()
            if now >= retry_at and self._has_work():
                delay = self._attempt(float("inf"))
                retry_at = time.monotonic() + (delay or 0.0)

    def _open_relay(self) -> None:
        """Connect to the tree's relay now, starting it if none listens: it imports grpc and opens
        its channel while discovery runs, so that a short process's Register is not its start-up."""
        if not self._wire.acquire(blocking=False):
            return  # the exit flush is on it
        try:
            self._ensure_relay().open(time.monotonic() + RELAY_OPEN_TIMEOUT)
        except Exception as exc:  # the first call tries again and says why
            log.debug("coldmod: the relay is not there yet (%s)", _describe(exc))
        finally:
            self._wire.release()

    def _discover(self) -> None:
        if self._sources is None:
            result = discover(self.config.marker)
            self._sources = result.sources
        self._discovered.set()
        calibrate = getattr(self._engine, "calibrate", None)
        if calibrate is not None and self.config.mode is Mode.SAMPLED:
            calibrate()

    def _has_work(self) -> bool:
        return not self._registered or not self._pending.empty()

    # -- the delivery loop -----------------------------------------------------------

    def _attempt(self, deadline: float, exiting: bool = False) -> float | None:
        """One round: Register if needed, then every batch in order. None when nothing is left (or
        tracing stopped); else the seconds the backoff policy waits before the next round. The exit's
        rounds say no outage (the exit says what it left undelivered)."""
        if not self._wire.acquire(timeout=max(0.0, min(deadline - time.monotonic(), REGISTER_TIMEOUT))):
            return BACKOFF_BASE  # the other thread is still waiting on the collector
        try:
            if self._gave_up:
                return None  # the other thread gave up while this one waited: nothing is sent again
            self._send_all(deadline)
        except _GiveUp as exc:
            self._give_up(str(exc))
            return None
        except _DeadlinePassed:
            return BACKOFF_BASE
        except Exception as exc:  # RelayError and friends: the round failed; the batch stays pending
            self._drop_connection()
            self._failures += 1
            code = _code_name(exc)
            self._say_failure(exc, code, exiting)
            if code in UNREGISTERED:
                self._registered = False
            return backoff_delay(self._failures, code)
        finally:
            self._wire.release()
        if self._outage_logged or self._refused_logged:
            log.info("coldmod: collector at %s reachable again", self.config.client.target)
        self._failures = 0
        self._outage_logged = False
        self._refused_logged = self._refused_told = False
        return None

    def _send_all(self, deadline: float) -> None:
        """Register if needed, then send the batches until none is left; a fault raises."""
        relay = self._ensure_relay()
        if not self._registered:
            self._register(relay, deadline)
        while True:
            batch = self._pending.oldest()
            if batch is None:
                self._pending.seal(self._wall_ms())  # what was counted since: the next batch
                batch = self._pending.oldest()
                if batch is None:
                    return
            try:
                relay.call(REPORT, self._wire_form(batch), _timeout(REPORT_TIMEOUT, deadline))
            except RelayError as exc:
                if exc.code in RETRYABLE or exc.code in REFUSED_KEY or exc.code in UNREGISTERED:
                    raise
                self._refused_for_good(batch, exc)
                continue
            self._pending.delivered(batch)

    def _refused_for_good(self, batch: Batch, exc: RelayError) -> None:
        """The collector will never take this batch: dropped once, counted, said once per cause."""
        lost = self._pending.refused(batch)
        if exc.told:  # another process of the tree said it
            log.debug("coldmod: a batch of %d call counts refused for good (%s)", lost, _describe(exc))
        elif exc.code not in self._refusals_said:
            self._refusals_said.add(exc.code)
            log.warning(
                "coldmod: the collector at %s refused a batch of %d call counts for good (%s); "
                "they are dropped and counted as dropped updates",
                self.config.client.target,
                lost,
                _describe(exc),
            )

    def _say_failure(self, exc: BaseException, code: str, exiting: bool) -> None:
        """Once per outage, in words that name the cause (a fleet's busy answer is no outage)."""
        if code in REFUSED_KEY:
            if isinstance(exc, RelayError) and exc.told and not self._refused_logged:
                self._refused_told = True  # said once for the tree, by the process it was news to
            elif not self._refused_logged:
                self._refused_logged = True
                log.warning(
                    "coldmod: the collector at %s refused the API key; set COLDMOD_API_KEY to the collector's "
                    "key (counts are kept and retried every few minutes; a process that ends meanwhile loses "
                    "its own)",
                    self.config.client.target,
                )
        elif isinstance(exc, RelayError) and (exc.code, exc.details) == ("UNAVAILABLE", REGISTER_BUSY):
            log.debug("coldmod: %s", REGISTER_BUSY)  # a fleet restarting: another process sends the set
        elif code in UNREGISTERED:
            log.debug("coldmod: the collector does not know the app (%s); registering again", _describe(exc))
        elif exiting:
            log.debug("coldmod: exit flush attempt failed (%s)", _describe(exc))  # the exit says what is left
        elif not self._outage_logged:
            self._outage_logged = True
            cause = _mismatch(exc, self.config.client.insecure)
            if cause:
                log.warning("coldmod: %s (collector %s); retrying with backoff", cause, self.config.client.target)
            else:
                log.warning(
                    "coldmod: cannot reach the collector at %s (%s); retrying with backoff",
                    self.config.client.target,
                    _describe(exc),
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
        self._pending.clear()
        self._drop_connection()

    # -- counting to keys ------------------------------------------------------------

    def _collect(self) -> None:
        """Drain the engine into the pending buffer, as keys."""
        sources = self._sources
        if sources is None:
            return  # discovery not finished: the engine's counters keep accumulating
        keyed = []
        for code, calls, estimated, lower_bound in self._engine.drain():
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
            keyed.append((key, calls, estimated, lower_bound))
        self._pending.add(keyed, self._wall_ms())
        if not self._pending.empty():
            self._wake.set()

    # -- the wire --------------------------------------------------------------------

    def _wire_form(self, batch: Batch) -> bytes:
        """The batch as the collector reads it (built once: a resend is the same bytes)."""
        if batch.wire is None:
            from coldmod_proto.v1 import coldmod_pb2

            batch.wire = coldmod_pb2.ReportRequest(
                app=self.config.app,
                instance_id=self.instance_id,
                sequence=batch.sequence,
                window_start_ms=batch.window_start_ms,
                window_end_ms=batch.window_end_ms,
                deltas=[
                    coldmod_pb2.KeyDelta(key=key, calls=calls, estimated=bool(estimated), lower_bound=bool(lower_bound))
                    for key, (calls, estimated, lower_bound) in batch.deltas.items()
                ],
                dropped_updates=batch.dropped,
                fingerprint=self._version_fingerprint(),
            ).SerializeToString()
        assert isinstance(batch.wire, bytes)
        return batch.wire

    def _register(self, relay: Relay, deadline: float) -> None:
        """Fingerprint first; the whole set only when the collector lacks it (a fleet restart costs it once)."""
        from coldmod_proto.v1 import coldmod_pb2

        sources = self._sources or {}
        marker = self.config.marker
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
            app=self.config.app,
            process=identity,
            fingerprint=self._version_fingerprint(),
            fingerprint_only=True,
            version=self.config.version,
            ignore_keys=sorted(marker.ignore_keys),
            ignore_files=list(marker.ignore_files),
        )
        try:
            answer = coldmod_pb2.RegisterResponse.FromString(
                relay.call(REGISTER, probe.SerializeToString(), _timeout(REGISTER_TIMEOUT, deadline))
            )
            if answer.need_sources:
                request = coldmod_pb2.RegisterRequest()
                request.CopyFrom(probe)
                request.fingerprint_only = False
                request.sources.extend(
                    coldmod_pb2.TraceSource(key=s.key, path=s.path, lines=s.lines) for s in sources.values()
                )
                size = request.ByteSize()
                if size > MAX_MESSAGE_BYTES - MESSAGE_MARGIN:
                    raise _GiveUp(
                        f"the app has {len(sources)} functions, a Register of {size / 2**20:.1f} MiB, over the "
                        f"{MAX_MESSAGE_BYTES // 2**20} MiB a message may hold; ignore files or keys in "
                        "coldmod.rootmarker to trace it"
                    )
                relay.call(REGISTER, request.SerializeToString(), _timeout(REGISTER_TIMEOUT, deadline))
        except RelayError as exc:
            if _code_name(exc) in ("RESOURCE_EXHAUSTED", "INVALID_ARGUMENT"):
                raise _GiveUp(f"the collector at {self.config.client.target} refused this app's "
                              f"{len(sources)} functions ({_describe(exc)})") from None
            raise
        self._registered = True

    def _version_fingerprint(self) -> str:
        """The fingerprint of this process's set: its version, in Register and in every batch."""
        if not self._fingerprint:
            self._fingerprint = sources_fingerprint((self._sources or {}).values())
        return self._fingerprint

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
        if self._relay is not None:
            return self._relay  # no lock: the exit flush must not wait on a fork's hooks
        with lifecycle.fork_guard:
            if self._relay is None:
                from coldmod_proto.v1 import coldmod_pb2  # noqa: F401 - imported once, here

                self._relay = Relay(self.config.client)
            return self._relay


def _timeout(most: float, deadline: float) -> float:
    """A call's timeout: at most ``most``, and over by the deadline (raises once it passed)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _DeadlinePassed
    return min(most, remaining)


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

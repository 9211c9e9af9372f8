"""Start and stop the production tracer: :func:`start` and :func:`stop`.

``start()`` never raises into the application and returns in milliseconds: it
installs the engine at once (calls made right after it are counted) and leaves
discovery, Register and every network call to a daemon thread. Configuration:
argument, else the ``COLDMOD_*`` variable (see :mod:`coldmod_trace.config`),
else the default.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

from coldmod_trace import config
from coldmod_trace.rootmarker import RootmarkerError

__all__ = ["DEFAULT_EXIT_TIMEOUT", "active", "start", "status", "stop"]

log = logging.getLogger("coldmod_trace")

#: Seconds the process exit (or SIGTERM) waits at most for the last batch.
DEFAULT_EXIT_TIMEOUT = 2.0

_lock = threading.RLock()  # re-entrant: a SIGTERM's flush may interrupt start()/stop() on the main thread
_tracer: Any = None  # the running _internal.runtime.Tracer, if any
_last_warning = ""  # a repeated start() with the same problem does not warn again


def start(
    root: str | os.PathLike[str] | None = None,
    *,
    app: str | None = None,
    mode: str | None = None,
    flush_interval: float | None = None,
    exit_timeout: float = DEFAULT_EXIT_TIMEOUT,
    version: str | None = None,
) -> bool:
    """Trace this process; True when tracing, False (after one warning) when it could not start.

    ``version`` labels this deployment (else ``COLDMOD_VERSION``); an invalid label is one warning and
    no label, never a reason to stop tracing.
    """
    global _tracer
    try:
        with _lock:
            if _tracer is not None:
                return True  # a second start() is harmless
            _tracer = _create(root, app, mode, flush_interval, exit_timeout, version)
            if _tracer is None:
                return False
            _tracer.start()
            return True
    except Exception as exc:  # never raise into the application
        _warn(f"coldmod: tracing disabled: {exc}")
        _tracer = None
        return False


def _warn(message: str) -> None:
    global _last_warning
    if message != _last_warning:
        _last_warning = message
        log.warning("%s", message)


def _create(
    root: str | os.PathLike[str] | None,
    app: str | None,
    mode: str | None,
    flush: float | None,
    exit_timeout: float,
    version: str | None = None,
) -> Any:
    from coldmod_trace._internal.runtime import Tracer, resolve_marker

    try:
        marker = resolve_marker(root)
        trace_mode = config.trace_mode(mode)
        interval = config.flush_interval(flush)
        client = config.client_config()
    except (RootmarkerError, config.ConfigError) as exc:
        _warn(f"coldmod: tracing disabled: {exc}")
        return None
    if sys.gettrace() is not None and not hasattr(sys, "monitoring"):
        _warn("coldmod: tracing disabled: another trace function (debugger, coverage) is active")
        return None
    try:
        label = config.deployment_version(version)
    except config.ConfigError as exc:
        _warn(f"coldmod: {exc}; tracing goes on without a version label")
        label = ""
    name = (
        app if app is not None else (os.environ.get(config.COLDMOD_APP) or "").strip() or marker.app
    )
    return Tracer(marker, name, trace_mode, interval, client, exit_timeout, label)


def stop(timeout: float = DEFAULT_EXIT_TIMEOUT) -> bool:
    """Flush what is pending (waiting at most ``timeout`` seconds) and stop tracing."""
    global _tracer
    with _lock:
        tracer, _tracer = _tracer, None
    if tracer is None:
        return True
    try:
        return bool(tracer.stop(timeout))
    except Exception as exc:
        log.warning("coldmod: stopping the tracer failed: %s", exc)
        return False


def _reinit_after_fork() -> None:
    """In a forked child: the parent's lock may have been held by a thread the child does not have."""
    global _lock
    _lock = threading.RLock()


def active() -> Any:
    """The running tracer (internal object), or None."""
    return _tracer


def status() -> dict[str, Any] | None:
    """Internal state of the running tracer (engine, pending, dropped…), for debugging and tests."""
    tracer = _tracer
    return None if tracer is None else dict(tracer.status())


def engine_preview() -> tuple[str, str]:
    """The engine ``start()`` would use in this process now, and why not a faster one ("" when none)."""
    from coldmod_trace._internal.core import preview_engine

    return preview_engine()

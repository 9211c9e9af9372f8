"""Process lifecycle, each handled in one place: exit, SIGTERM, fork.

- exit: an ``atexit`` hook flushes, bounded by the tracer's exit timeout.
- SIGTERM (how containers end): if the app has no handler of its own, ours
  flushes and then dies of SIGTERM as before; an existing Python handler is
  chained (called after the flush). An app that installs its own handler later
  replaces ours and usually exits through ``sys.exit``, which runs the exit hook.
- fork: ``os.register_at_fork`` gives the child a fresh identity and sender.
  A fork waits while the sender thread imports grpc and builds its channel
  (:data:`fork_guard`): a child forked in the middle of an import would inherit
  a half-initialised module and an import lock owned by a thread it lacks.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["install", "uninstall_sigterm"]

log = logging.getLogger("coldmod_trace")

_installed = False
#: Held by the sender while it imports grpc and creates its channel; a fork waits for it.
fork_guard = threading.Lock()
_guard_held_for_fork = False
_previous_sigterm: Any = None
_our_handler: Callable[[int, FrameType | None], Any] | None = None


def install(on_exit: Callable[[], None], on_fork_child: Callable[[], None]) -> None:
    """Install the exit, SIGTERM and fork hooks (fork and exit: once per process)."""
    global _installed
    if not _installed:
        _installed = True
        atexit.register(on_exit)

        def after_in_child() -> None:
            global fork_guard, _guard_held_for_fork
            fork_guard, _guard_held_for_fork = threading.Lock(), False
            on_fork_child()

        os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_parent, after_in_child=after_in_child)
    _install_sigterm(on_exit)


def _before_fork() -> None:
    global _guard_held_for_fork
    # Bounded: a wedged import must not wedge the application's fork.
    _guard_held_for_fork = fork_guard.acquire(timeout=5.0)


def _after_fork_parent() -> None:
    global _guard_held_for_fork
    if _guard_held_for_fork:
        _guard_held_for_fork = False
        fork_guard.release()


def _install_sigterm(on_exit: Callable[[], None]) -> None:
    global _previous_sigterm, _our_handler
    if threading.current_thread() is not threading.main_thread():
        log.debug("coldmod: start() not on the main thread; SIGTERM will not flush")
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is _our_handler and previous is not None:
        return
    if previous in (signal.SIG_IGN, None):
        return  # ignored on purpose, or set from C: not ours to touch

    def on_sigterm(signum: int, frame: FrameType | None) -> Any:
        on_exit()
        if callable(previous):
            return previous(signum, frame)
        # Default action: die of SIGTERM, as the process would have without us.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return None

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except (ValueError, OSError):
        return
    _previous_sigterm, _our_handler = previous, on_sigterm


def uninstall_sigterm() -> None:
    """Put back the SIGTERM handler we replaced, if ours is still the one installed."""
    global _previous_sigterm, _our_handler
    if _our_handler is None or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is _our_handler:
            signal.signal(signal.SIGTERM, _previous_sigterm)
    except (ValueError, OSError):
        pass
    _previous_sigterm, _our_handler = None, None

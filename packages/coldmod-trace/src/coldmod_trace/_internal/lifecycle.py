"""Process lifecycle, each handled in one place: exit, SIGTERM, fork, multiprocessing children.

- exit: an ``atexit`` hook flushes, bounded by the tracer's exit timeout.
- SIGTERM (how containers end): if the app has no handler of its own, ours
  flushes and then dies of SIGTERM as before; an existing Python handler is
  chained (called after the flush). An app that installs its own handler later
  replaces ours and usually exits through ``sys.exit``, which runs the exit hook.
  A SIGTERM that arrives while the last flush runs (a ``multiprocessing`` pool
  terminates workers that are already exiting) does not cut it short: it is
  delivered again once the flush is done (:func:`final_flush`).
- multiprocessing children end with ``os._exit`` (no atexit): they flush from
  multiprocessing's own exit finalizers (``util.Finalize`` with an exit
  priority, run by ``_exit_function`` before ``os._exit``). A child's
  ``_bootstrap`` clears the finalizers it inherited and then runs the
  after-fork callbacks, so ours registers the finalizer from one of those —
  for the fork, spawn and forkserver start methods alike.
- fork: ``os.register_at_fork`` gives the child a fresh identity and sender,
  started once our child hook is done. A fork waits while the sender thread
  imports the generated protobuf code (:data:`fork_guard`): a child forked in
  the middle of an import would inherit a half-initialised module.
- grpc never runs in the application's processes (the relay process holds the
  channels, :mod:`coldmod_trace._internal.relay`), so a fork needs nothing from
  grpc: no call to quiesce, no channel to protect, no grpc lock to inherit.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, Protocol

__all__ = [
    "Startable",
    "current_sender",
    "final_flush",
    "install",
    "set_sender",
    "uninstall_sigterm",
]

log = logging.getLogger("coldmod_trace")

#: Our multiprocessing exit finalizer runs before those of lower priority (queues' use 10 and -5).
MP_EXIT_PRIORITY = 100


class Startable(Protocol):
    """What the fork hooks need from the running sender."""

    def start_thread(self) -> None:
        """Start the sender's thread."""


_installed = False
#: Held by the sender while it imports the generated code; a fork waits for it.
fork_guard = threading.Lock()
_guard_held_for_fork = False
_previous_sigterm: Any = None
_our_handler: Callable[[int, FrameType | None], Any] | None = None
_on_exit: Callable[[], None] | None = None
_sender: Startable | None = None  # the running sender
_in_child_hooks = False  # inside the early after_in_child: a new sender waits to start
_child_pending: Startable | None = None
_inherited: list[Startable] = []  # the senders of the processes we were forked from, kept as they were
_flushing_thread: int | None = None  # the thread running the last flush, while it runs
_flush_deadline = 0.0  # monotonic time by which that flush ends
_flush_done = threading.Event()
_sigterm_deferred = False  # a SIGTERM interrupted the main thread's last flush: delivered again after it


def install(on_exit: Callable[[], None], on_fork_child: Callable[[], None]) -> None:
    """Install the exit, SIGTERM, fork and multiprocessing hooks (fork and exit: once per process)."""
    global _installed, _on_exit
    _on_exit = on_exit
    if not _installed:
        _installed = True
        atexit.register(on_exit)

        def after_in_child() -> None:
            global fork_guard, _guard_held_for_fork, _in_child_hooks, _child_pending
            fork_guard, _guard_held_for_fork = threading.Lock(), False
            if _sender is not None:
                # The parent's sender and its connection are never closed or collected here: the
                # parent still uses them, and a daemonising child may have reused the fd's number.
                _inherited.append(_sender)
            _in_child_hooks = True
            try:
                on_fork_child()
            finally:
                _in_child_hooks = False
            _start_pending_child()

        os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_parent, after_in_child=after_in_child)
        _watch_multiprocessing()
    _install_sigterm(on_exit)


def set_sender(sender: Startable | None) -> None:
    """The sender the fork hooks act on; a sender created inside a fork's child hooks starts later."""
    global _sender, _child_pending
    _sender = sender
    if sender is not None:
        if _in_child_hooks:
            _child_pending = sender
        else:
            sender.start_thread()


def current_sender() -> Startable | None:
    """The sender the fork hooks act on."""
    return _sender


def _start_pending_child() -> None:
    global _child_pending
    pending, _child_pending = _child_pending, None
    if pending is not None:
        pending.start_thread()


def _before_fork() -> None:
    global _guard_held_for_fork
    # Bounded: a wedged import must not wedge the application's fork.
    _guard_held_for_fork = fork_guard.acquire(timeout=5.0)
    _watch_multiprocessing()


def _after_fork_parent() -> None:
    global _guard_held_for_fork
    if _guard_held_for_fork:
        _guard_held_for_fork = False
        fork_guard.release()


# -- multiprocessing -----------------------------------------------------------------


class _Token:
    """A weak-referenceable key for multiprocessing's after-fork registry, alive as long as we are."""


_mp_token = _Token()
_mp_registered = False


def _watch_multiprocessing() -> None:
    """Once multiprocessing is in play here, have its children register our exit finalizer."""
    global _mp_registered
    if _mp_registered:
        return
    # Spawn and forkserver children start as ``python -c 'from multiprocessing… '``
    # and run us (sitecustomize) before multiprocessing is imported.
    child = any("multiprocessing" in arg for arg in getattr(sys, "orig_argv", ()))
    if "multiprocessing" not in sys.modules and not child:
        return
    try:
        from multiprocessing import util

        util.register_after_fork(_mp_token, _register_mp_finalizer)
    except Exception as exc:
        log.debug("coldmod: multiprocessing children will not flush at exit (%s)", exc)
        return
    _mp_registered = True


def _register_mp_finalizer(_token: _Token) -> None:
    """In a multiprocessing child, after it cleared the parent's finalizers: flush in _exit_function."""
    from multiprocessing import util

    util.Finalize(None, _mp_exit, exitpriority=MP_EXIT_PRIORITY)


def _mp_exit() -> None:
    if _on_exit is not None:
        _on_exit()


# -- SIGTERM -------------------------------------------------------------------------


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
        global _sigterm_deferred
        flushing = _flushing_thread
        if flushing == threading.get_ident():
            _sigterm_deferred = True  # we interrupted the last flush itself: it finishes, then this signal
            return None
        if flushing is not None:
            _flush_done.wait(max(0.0, _flush_deadline - time.monotonic()))  # another thread's last flush
        else:
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


@contextlib.contextmanager
def final_flush(timeout: float) -> Iterator[None]:
    """The tracer's last flush runs inside: a SIGTERM meanwhile waits for it instead of ending it.

    Then our SIGTERM handler is put back as it was, and a SIGTERM that arrived
    during the flush is delivered again, to the application's handler or to the
    default action (the process dies of it, as it would have without us).
    """
    global _flushing_thread, _flush_deadline, _sigterm_deferred
    _flush_done.clear()
    _flush_deadline = time.monotonic() + timeout
    _flushing_thread = threading.get_ident()
    try:
        yield
    finally:
        _flushing_thread = None
        _flush_done.set()
        uninstall_sigterm()
        if _sigterm_deferred and threading.current_thread() is threading.main_thread():
            _sigterm_deferred = False
            with contextlib.suppress(OSError):
                os.kill(os.getpid(), signal.SIGTERM)


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

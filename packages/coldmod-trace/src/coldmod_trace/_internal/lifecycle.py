"""Process lifecycle, each handled in one place: exit, SIGTERM, fork, multiprocessing children, grpc.

- exit: an ``atexit`` hook flushes, bounded by the tracer's exit timeout.
- SIGTERM (how containers end): if the app has no handler of its own, ours
  flushes and then dies of SIGTERM as before; an existing Python handler is
  chained (called after the flush). An app that installs its own handler later
  replaces ours and usually exits through ``sys.exit``, which runs the exit hook.
- multiprocessing children end with ``os._exit`` (no atexit): they flush from
  multiprocessing's own exit finalizers (``util.Finalize`` with an exit
  priority, run by ``_exit_function`` before ``os._exit``). A child's
  ``_bootstrap`` clears the finalizers it inherited and then runs the
  after-fork callbacks, so ours registers the finalizer from one of those —
  for the fork, spawn and forkserver start methods alike.
- fork: ``os.register_at_fork`` gives the child a fresh identity and sender.
  A fork waits while the sender thread imports grpc and builds its channel
  (:data:`fork_guard`): a child forked in the middle of an import would inherit
  a half-initialised module and an import lock owned by a thread it lacks.
- grpc across fork: grpc's C core supports a fork only with no call in flight;
  with one, it skips its fork handlers, logs "Other threads are currently
  calling into gRPC, skipping fork() handlers" into the app's output, and the
  child can abort in ``ev_epoll1_linux.cc``. So the
  sender is quiesced before every fork (the call in flight ends, bounded;
  the wire and the channel are held) and resumed after it in the parent; the
  child's new sender starts once our child hook is done. The hooks are
  registered before grpc is imported, so they cover its start-up too (a fork
  while the first channel is made waits for it); grpc registers Python-level
  fork hooks only with ``GRPC_ENABLE_FORK_SUPPORT`` on, which we leave alone.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, Protocol

__all__ = [
    "Quiescible",
    "current_sender",
    "grpc_environment",
    "install",
    "set_sender",
    "uninstall_sigterm",
]

log = logging.getLogger("coldmod_trace")

#: grpc settings the tracer needs while it initialises grpc; an app's own value wins.
#: GRPC_ENABLE_FORK_SUPPORT is left alone on purpose: unset, grpcio's C core runs its
#: fork handlers (threads stopped before fork, the poller reset in the child) as
#: long as no call is in flight, which quiescing ensures; set to true it also turns
#: on grpc's Python-level handling, whose child waits up to 1.5 s for grpc to shut
#: down after every fork and exits with EX_USAGE when it does not.
#: The poll strategy is what grpc's fork support documents (doc/fork_support.md): with the
#: default epoll1, 300 forks with the sender busy hung or crashed children (grpcio 1.85).
GRPC_SETTINGS = {
    "GRPC_VERBOSITY": "NONE",  # grpc's C core logs to stderr, that is into the app's output
    "GRPC_POLL_STRATEGY": "poll",
}
#: Seconds a fork waits at most for the sender to let go of the network.
QUIESCE_TIMEOUT = 2.0
#: Our multiprocessing exit finalizer runs before those of lower priority (queues' use 10 and -5).
MP_EXIT_PRIORITY = 100


class Quiescible(Protocol):
    """What the fork hooks need from the running sender."""

    def quiesce(self, timeout: float) -> None:
        """Before fork: no call in flight, no channel, the wire held."""

    def resume(self) -> None:
        """After fork, in the parent: let go of the wire."""

    def start_thread(self) -> None:
        """Start the sender's thread."""


_installed = False
#: Held by the sender while it imports grpc and creates its channel; a fork waits for it.
fork_guard = threading.Lock()
_guard_held_for_fork = False
_previous_sigterm: Any = None
_our_handler: Callable[[int, FrameType | None], Any] | None = None
_on_exit: Callable[[], None] | None = None
_sender: Quiescible | None = None  # the running sender, quiesced around fork()
_quiesced: Quiescible | None = None
_in_child_hooks = False  # inside the early after_in_child: a new sender waits to start
_child_pending: Quiescible | None = None
_inherited: list[Quiescible] = []  # the senders of the processes we were forked from, kept as they were


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
                # The parent's sender and its channel must never be closed or collected here:
                # closing would write a TLS close (GOAWAY) into the connection the parent still uses.
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


def set_sender(sender: Quiescible | None) -> None:
    """The sender the fork hooks act on; a sender created inside a fork's child hooks starts later."""
    global _sender, _child_pending
    _sender = sender
    if sender is not None:
        if _in_child_hooks:
            _child_pending = sender
        else:
            sender.start_thread()


def current_sender() -> Quiescible | None:
    """The sender the fork hooks act on."""
    return _sender


def _start_pending_child() -> None:
    global _child_pending
    pending, _child_pending = _child_pending, None
    if pending is not None:
        pending.start_thread()


def _before_fork() -> None:
    global _guard_held_for_fork
    _quiesce()  # from the first channel on: grpc is in use from then
    # Bounded: a wedged import must not wedge the application's fork.
    _guard_held_for_fork = fork_guard.acquire(timeout=5.0)
    _watch_multiprocessing()


def _after_fork_parent() -> None:
    global _guard_held_for_fork
    if _guard_held_for_fork:
        _guard_held_for_fork = False
        fork_guard.release()
    _resume()


# -- grpc ----------------------------------------------------------------------------


@contextlib.contextmanager
def grpc_environment() -> Iterator[None]:
    """While grpc is imported and initialised (first channel): our settings, unless the app chose.

    grpc reads these once, at import and at its first channel; afterwards the
    variables go back to what they were, so the app's own child processes do
    not inherit them.
    """
    added = [name for name in GRPC_SETTINGS if name not in os.environ]
    for name in added:
        os.environ[name] = GRPC_SETTINGS[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _quiesce() -> None:
    global _quiesced
    sender = _sender
    _quiesced = None
    if sender is None:
        return
    try:
        sender.quiesce(QUIESCE_TIMEOUT)
        _quiesced = sender
    except Exception as exc:  # never fail the application's fork
        log.debug("coldmod: could not quiesce the sender before fork (%s)", exc)


def _resume() -> None:
    global _quiesced
    sender, _quiesced = _quiesced, None
    if sender is not None:
        sender.resume()


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

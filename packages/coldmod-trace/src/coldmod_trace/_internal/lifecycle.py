"""Process lifecycle, each handled in one place: exit, SIGTERM, fork, multiprocessing children.

- exit: an ``atexit`` hook flushes, bounded by the tracer's exit timeout.
- SIGTERM (how containers end): if the app has no handler of its own, ours
  flushes and then dies of SIGTERM as before; an existing Python handler is
  chained (called after the flush). An app that installs its own handler later
  replaces ours and usually exits through ``sys.exit``, which runs the exit hook.
  A SIGTERM that arrives while the last flush runs (a ``multiprocessing`` pool
  terminates workers that are already exiting) does not cut it short: it is
  delivered again once the flush is done (:func:`final_flush`).
  A Python handler runs only on the main thread, between bytecodes: a SIGTERM
  the kernel hands to another thread (the main thread blocks it, or already has
  a signal pending), or one that lands just before the main thread enters a
  blocking call (``time.sleep``, a queue's ``get``), is noted but not handled
  until that call returns — maybe never, where without us the process would
  simply have died. So while our handler is installed, Python's wakeup fd
  tells a small thread of ours about each signal, and when a SIGTERM's handler
  has not run a moment later, that thread wakes the main thread with a signal
  whose handler does nothing (:data:`NUDGE`): the interrupted call lets Python
  run the SIGTERM handler. An application with a wakeup fd of its own (asyncio)
  or a handler of its own on :data:`NUDGE` keeps them; it is then not watched.
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
#: Sent to the main thread to interrupt a blocking call while a SIGTERM waits to be handled.
#: Ignored by default (so nobody else expects it), and our handler for it does nothing.
NUDGE = signal.SIGURG
#: How long a noted SIGTERM may wait for its handler before the main thread is woken, and how often
#: it is woken again (a wake-up that lands in the same gap as the SIGTERM did is lost too).
NUDGE_AFTER = 0.05
NUDGE_TRIES = 100


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
_sigterm_seen = threading.Event()  # our SIGTERM handler has started
_watch_fds: tuple[int, int] | None = None  # (read, write) of the wakeup pipe while we watch
_watch_pipe: tuple[int, int] = (0, 0)  # (st_dev, st_ino) of that pipe: a number reused by the app is not it
_nudges_sent = False  # then our handler of NUDGE stays: a late one must find it


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
            _rewatch_after_fork()
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
        _sigterm_seen.set()
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
    _watch()


# -- waking the main thread for a SIGTERM it has not handled -------------------------


def _nudged(signum: int, frame: FrameType | None) -> None:
    """The handler of :data:`NUDGE`: nothing; being interrupted is the point."""


def _watch() -> None:
    """On the main thread, with our SIGTERM handler installed: have Python tell our thread of each signal."""
    global _watch_fds, _watch_pipe
    if _watch_fds is not None:
        return
    try:
        if signal.getsignal(NUDGE) not in (signal.SIG_DFL, _nudged):
            return  # the application's own: not ours to take
        if "trio" in sys.modules:
            return  # trio warns when it finds a wakeup fd set (asyncio and others take it over silently)
        read_end, write_end = (_out_of_the_way(fd) for fd in os.pipe())
        os.set_blocking(write_end, False)  # Python's C handler must never block on it
        previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        if previous != -1:  # the application's own (an event loop): put it back, and do without
            signal.set_wakeup_fd(previous)
            os.close(read_end)
            os.close(write_end)
            return
        signal.signal(NUDGE, _nudged)
    except (ValueError, OSError) as exc:
        log.debug("coldmod: a SIGTERM that finds the main thread in a blocking call waits for it (%s)", exc)
        return
    _watch_fds, _watch_pipe = (read_end, write_end), _identity(read_end)
    _sigterm_seen.clear()
    thread = threading.Thread(target=_watcher, args=(read_end, _watch_pipe), name="coldmod-sigterm", daemon=True)
    thread.start()


def _out_of_the_way(fd: int) -> int:
    """The descriptor moved to a number near the process's limit, or as it was.

    Python writes to the wakeup fd by number, and our thread reads the other end by
    number. An application that closes every descriptor (daemonising) and opens
    files again gets the lowest free numbers, so a high one is not reused for its
    files before we notice (the thread also checks, before each read, that the
    number is still our pipe).
    """
    import fcntl
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    floor = min(soft, 1 << 16) - 64
    if floor <= fd:
        return fd
    try:
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor)
    except OSError:
        return fd
    os.close(fd)
    return moved


def _identity(fd: int) -> tuple[int, int]:
    """Which open file a descriptor number refers to now ((0, 0) when it is closed)."""
    try:
        info = os.fstat(fd)
    except OSError:
        return (0, 0)
    return (info.st_dev, info.st_ino)


def _close_if_ours(fd: int, pipe: tuple[int, int]) -> None:
    """Close ``fd`` if it still is our pipe (an application that closed it may have reused the number)."""
    if _identity(fd) == pipe:
        with contextlib.suppress(OSError):
            os.close(fd)


def _reclaim(write_end: int) -> int | None:
    """A new pipe whose write end has the number ``write_end`` had, if nothing took it; its read end."""
    import fcntl

    try:
        read_end, fresh = os.pipe()
    except OSError:
        return None
    try:
        moved = fcntl.fcntl(fresh, fcntl.F_DUPFD_CLOEXEC, write_end)  # the lowest free number from there
    except OSError:
        moved = -1
    os.close(fresh)
    if moved != write_end:  # taken: the application's now, never ours to write to or close
        for fd in (moved, read_end):
            if fd >= 0:
                os.close(fd)
        return None
    os.set_blocking(moved, False)
    return _out_of_the_way(read_end)


def _watcher(read_end: int, pipe: tuple[int, int]) -> None:
    """Read the signal numbers Python writes; wake the main thread while a SIGTERM's handler has not run."""
    global _nudges_sent, _watch_fds, _watch_pipe
    sys.settrace(None)  # threading.settrace (3.11) handed this thread the trace function
    main = threading.main_thread().ident
    term = signal.SIGTERM.value
    write_end = _watch_fds[1] if _watch_fds is not None else -1
    try:
        while True:
            noted = os.read(read_end, 512) if _identity(read_end) == pipe else b""
            if not noted:  # the write end was closed: by us (unwatched), or by the application
                if _watch_fds is None:
                    return
                # An application that closed every descriptor: Python would report each later signal's
                # failed write on stderr. The write end's number is taken back on a new pipe if free.
                _close_if_ours(read_end, pipe)
                reclaimed = _reclaim(write_end)
                if reclaimed is None:
                    return
                read_end, pipe = reclaimed, _identity(reclaimed)
                _watch_fds, _watch_pipe = (read_end, write_end), pipe  # what stop() then closes
                continue
            if term not in noted or _our_handler is None or signal.getsignal(signal.SIGTERM) is not _our_handler:
                continue  # another signal, or the application's own SIGTERM handler: not ours to hurry
            for _ in range(NUDGE_TRIES):
                if _sigterm_seen.wait(NUDGE_AFTER) or _watch_fds is None or main is None:
                    break
                _nudges_sent = True
                signal.pthread_kill(main, NUDGE)
    except OSError:
        return
    finally:
        _close_if_ours(read_end, pipe)


def _clear_wakeup_fd(ours: int) -> None:
    """Python's wakeup fd off if it is ``ours``; one the application set since (an event loop's,
    or one a forked child inherited) stays."""
    current = signal.set_wakeup_fd(-1)
    if current not in (-1, ours):
        signal.set_wakeup_fd(current)


def _unwatch() -> None:
    """On the main thread: Python's wakeup fd and :data:`NUDGE` back as they were; our thread ends."""
    global _watch_fds
    fds, _watch_fds = _watch_fds, None
    if fds is None:
        return
    try:
        _clear_wakeup_fd(fds[1])
        # A wake-up may still be on its way: Python would raise for one it finds with no handler.
        if signal.getsignal(NUDGE) is _nudged and not _nudges_sent:
            signal.signal(NUDGE, signal.SIG_DFL)
    except (ValueError, OSError):
        pass
    _close_if_ours(fds[1], _watch_pipe)  # the thread then reads the end of the pipe and closes its own end


def _rewatch_after_fork() -> None:
    """In a forked child: Python still writes to the parent's pipe, which the parent's thread reads."""
    global _watch_fds
    fds, _watch_fds = _watch_fds, None
    if fds is None:
        return
    try:
        _clear_wakeup_fd(fds[1])  # before the close: Python must never write to a closed descriptor
    except (ValueError, OSError):
        return
    for fd in fds:
        _close_if_ours(fd, _watch_pipe)  # the child's copies; the parent's stay open
    if _our_handler is not None and signal.getsignal(signal.SIGTERM) is _our_handler:
        _watch()


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
    _unwatch()
    _previous_sigterm, _our_handler = None, None

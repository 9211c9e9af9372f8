"""The ``sys.settrace`` engine: 3.11, or when no ``sys.monitoring`` tool id is free. Always exact.

A global trace function sees only 'call' events (it returns no local trace
function, so no line or return events follow). Library files are rejected by
filename once; a generator or coroutine resume is told from a first start by
the frame's instruction offset, so it counts once per call, not per resume.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

from coldmod_trace._internal.appfilter import AppFilter
from coldmod_trace._internal.counting import Counted, Counter, Counting, Delta
from coldmod_trace.config import Mode

__all__ = ["SettraceEngine"]

_RESUMABLE = 0x0020 | 0x0080 | 0x0200  # CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR


def _call_trace_function(
    ticks: dict[int, tuple[Callable[[], object], int]],
    foreign: set[str],
    first_sight: Callable[[FrameType], None],
) -> Callable[[FrameType, str, Any], None]:
    """The hot path on 3.11: the global trace function, called for every 'call' of every thread."""

    def trace(frame: FrameType, event: str, arg: Any, _id: Callable[[object], int] = id) -> None:
        # Only 'call' events reach a global trace function: no need to look at `event`.
        code = frame.f_code  # read once: it is a property of the frame
        entry = ticks.get(_id(code))  # app code seen before (by id: hashing code is slow)
        if entry is not None:  # an application function (or one we stopped counting)
            if frame.f_lasti <= entry[1]:  # a generator/coroutine resume is not a call
                entry[0]()  # a counter's step: one C call, atomic under the GIL
        elif code.co_filename not in foreign:  # library files are rejected by name, cheaply
            first_sight(frame)  # once per code object of an app file: decide and count
        # Returning None: no local trace function, so no line/return events in this frame.

    return trace


class SettraceEngine:
    """``sys.settrace`` for every thread; the global trace function sees only 'call' events."""

    name = "sys.settrace"

    def __init__(self, apps: AppFilter, mode: Mode) -> None:
        """``mode`` is what was asked for; this engine counts exactly either way."""
        self.mode = mode
        self._apps = apps
        self._counting = Counting()
        # id(code) -> (count step, highest f_lasti that is a first start rather than a resume)
        self._ticks: dict[int, tuple[Callable[[], object], int]] = {}
        self._foreign: set[str] = set()  # filenames that hold no application code
        self._trace = _call_trace_function(self._ticks, self._foreign, self._first_sight)

    def _first_sight(self, frame: FrameType) -> None:
        code = frame.f_code
        if self._apps.relpath(code.co_filename) is None:
            self._foreign.add(code.co_filename)
            return
        with self._counting.lock:
            if not self._apps.is_app(code):  # a lambda, comprehension or body in an app file
                self._counting.codes.setdefault(id(code), code)  # keep alive: its id is cached
                self._ticks.setdefault(id(code), (int, -1))
                return
            entry = self._ticks.setdefault(id(code), (self._counting.new_tick(code), _first_start(code)))
        if frame.f_lasti <= entry[1]:
            entry[0]()

    def install(self) -> None:
        """This thread, threads started later, and (3.12+) threads already running."""
        sys.settrace(self._trace)
        if sys.version_info >= (3, 12):
            threading.settrace_all_threads(self._trace)
        else:
            threading.settrace(self._trace)

    def uninstall(self) -> None:
        """Remove the trace function where it was installed."""
        if sys.version_info >= (3, 12):
            threading.settrace_all_threads(None)  # type: ignore[arg-type,unused-ignore]
        else:
            threading.settrace(None)  # type: ignore[arg-type,unused-ignore]
        if sys.gettrace() is self._trace:
            sys.settrace(None)

    def drain(self) -> list[Delta]:
        """Counts since the last drain (always exact)."""
        with self._counting.lock:
            return self._counting.drain(_exact_only, _exact_only)

    def forget(self, code: Counted) -> None:
        """Not a trace source after all: keep seeing it, never count it."""
        with self._counting.lock:
            if isinstance(code, CodeType):
                self._ticks[id(code)] = (int, -1)
            self._counting.forget(code)

    def key_counter(self, key: str) -> Counter[None]:
        """The counter of a rewritten function's key."""
        with self._counting.lock:
            return self._counting.key_counter(key)

    def exclude(self, code: CodeType) -> None:
        """Counted by its own compiled-in counter: the trace function passes it by."""
        with self._counting.lock:
            self._counting.codes.setdefault(id(code), code)
            self._ticks[id(code)] = (int, -1)

    def reset_after_fork(self) -> None:
        """Fresh counts in a forked child (the counters stay: only their baselines move)."""
        self._counting.reset()  # (replaces the lock: the parent's may be held by a thread we lack)


def _exact_only(*args: object) -> None:
    raise AssertionError("sys.settrace counts exactly: it has no sampling windows")


def _first_start(code: CodeType) -> int:
    """Highest ``f_lasti`` of a call event that starts the code rather than resuming it."""
    if not code.co_flags & _RESUMABLE:
        return sys.maxsize  # plain functions: every call event is a call
    import dis

    for instruction in dis.get_instructions(code):
        if instruction.opname == "RESUME":
            return instruction.offset  # a generator's first run stops at its first RESUME
    return sys.maxsize

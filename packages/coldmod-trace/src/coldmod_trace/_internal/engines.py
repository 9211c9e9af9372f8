"""The engines that see calls: ``sys.monitoring`` (3.12+) and ``sys.settrace`` (3.11, fallback).

An engine counts calls per code object and nothing else: deciding what is the
application's happens once per code object (``first_sight``), mapping code to
keys happens on the sender thread. Counters are C objects so that one call is
one C-level increment, atomic under the GIL (exact across threads):

- exact mode: an ``itertools.count`` per function, cumulative; ``drain`` reports
  the difference from the value it read last time (never swapped, so no race).
- sampled mode (``sys.monitoring`` only): a per-window *sampler*,
  ``chain(repeat(None, cap), iter(cap_hit, ...)).__next__``. The first ``cap``
  calls of a window are plain C steps; the next one runs ``cap_hit``, which notes
  the time and returns ``DISABLE`` so the function costs nothing for the rest of
  the window. ``drain`` swaps in fresh samplers and, if any function was capped,
  calls ``sys.monitoring.restart_events()`` to re-arm: the first call of every
  function in every window is therefore always seen.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import CodeType, FrameType
from typing import Any, Protocol

from coldmod_trace._internal.appfilter import AppFilter

__all__ = [
    "DEFAULT_CAP",
    "Delta",
    "Engine",
    "SettraceEngine",
    "SysMonitoringEngine",
    "select_engine",
]

#: Calls counted individually per function per window in sampled mode (see the README's trade-off).
DEFAULT_CAP = 256
#: Tool ids tried in order: the two ids CPython leaves unassigned, then the optimizer's
#: and the profiler's. The debugger's (0) and coverage's (1) are left to their owners.
_TOOL_IDS = (3, 4, 5, 2)
_TOOL_NAME = "coldmod"
_RESUMABLE = 0x0020 | 0x0080 | 0x0200  # CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR
_NEVER = object()  # a sentinel no callable of ours returns

#: The clock of sampled mode's extrapolation: CPU time of the process, not wall time.
#: A pace measured while the process runs must be projected over the time it
#: ran: on a busy machine (or a process that waits on I/O) wall time would
#: inflate the estimate by the share of time the process was not running.
_clock = time.process_time

Delta = tuple[CodeType, int, bool]
"""``(code, calls, estimated)``: what an engine counted for one function since the last drain."""


class Engine(Protocol):
    """What the tracer needs from an engine."""

    name: str
    mode: str

    def install(self) -> None:
        """Start counting (every thread)."""

    def uninstall(self) -> None:
        """Stop counting; counts so far stay drainable."""

    def drain(self) -> list[Delta]:
        """Calls counted since the last drain (and, in sampled mode, start a new window)."""

    def forget(self, code: CodeType) -> None:
        """Stop counting a code object that turned out not to be a trace source."""

    def reset_after_fork(self) -> None:
        """In a forked child: zero every count, keep what was learned about code objects."""


def _value(counter: itertools.count[int]) -> int:
    """Current value of an ``itertools.count`` (its repr is ``count(N)``; no other public accessor)."""
    return int(repr(counter)[6:-1])


class _Cap:
    """What runs past a function's cap: made once per function, shared by all its windows."""

    __slots__ = ("at", "calls", "disable")

    def __init__(self, disable: object) -> None:
        self.at = 0.0  # when the cap was reached in the current window (0.0: not reached)
        self.disable = disable
        # Never exhausted (hit() never returns _NEVER), so every window's chain can reuse it.
        self.calls: Iterator[object] = iter(self.hit, _NEVER)

    def hit(self) -> object:
        """The call past the cap: note when (once per window) and switch the function off."""
        if not self.at:
            self.at = _clock()
        return self.disable


class _FirstCall:
    """When a function was first called in a window: the start of the pace sampled mode measures."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = 0.0

    def hit(self) -> None:
        """Runs once per function per window (a Python call and a clock read, then C steps again)."""
        self.at = _clock()


class _Sampler:
    """One function's counter for one window in sampled mode."""

    __slots__ = ("armed_at", "cap", "first", "remaining", "size", "tick")

    def __init__(self, size: int, cap: _Cap, now: float, timed: bool = False) -> None:
        self.size = size
        self.armed_at = now
        self.cap = cap
        # Nothing here points back at the sampler: a replaced one is freed at once.
        if not timed:
            # size plain C steps, then cap.hit for every call until the function is switched off.
            self.first: _FirstCall | None = None
            self.remaining: Iterator[None] = itertools.repeat(None, size)  # knows its length left
            self.tick: Callable[[], object] = itertools.chain(self.remaining, cap.calls).__next__
        else:
            # A function that was hot last window: its first call notes the time, so the pace
            # is measured from it rather than from when the window was armed (between the two
            # the sender thread, or the rest of the program, may have run for a long time).
            # Only hot functions pay for these few extra objects (memory stays bounded).
            self.first = _FirstCall()
            self.remaining = itertools.repeat(None, size - 1)
            self.tick = itertools.chain(
                itertools.islice(iter(self.first.hit, _NEVER), 1), self.remaining, cap.calls
            ).__next__

    def seen(self) -> int:
        """Calls counted individually in this window (the cap included)."""
        left: int = self.remaining.__length_hint__()  # type: ignore[attr-defined]
        if self.first is None:
            return self.size - left
        return self.size - left if self.first.at else 0

    def calls(self, size: int, now: float, overhead: float, capped_at: float) -> tuple[int, bool]:
        """Calls in the window: exact below the cap, else extrapolated from how fast it was reached.

        The calls before the cap ran slower than the rest (each paid for the callback,
        ``overhead`` seconds): that time is taken out before extrapolating the pace.
        """
        seen = self.seen()
        if not capped_at:
            return seen, False
        seen += 1  # the call that ran _Cap.hit
        start = self.first.at if self.first is not None and self.first.at else self.armed_at
        took = capped_at - start
        # At most halved: the overhead is measured, not known, and an over-correction
        # would inflate the estimate; uncorrected, trivial functions come out ~3x low.
        took = max(took - seen * overhead, took * 0.5, 1e-7)
        return max(seen, round(seen * (now - start) / took)), True


class _Counting:
    """Per-code counters shared by both engines; all mutation happens under one lock, off the hot path."""

    def __init__(self, mode: str, cap: int, disable: object) -> None:
        self.mode = mode
        self.cap = cap
        self.disable = disable
        self.lock = threading.Lock()
        self.codes: dict[int, CodeType] = {}  # keeps counted code alive, so id() stays unique
        self.counters: dict[int, itertools.count[int]] = {}
        self.reported: dict[int, int] = {}
        self.samplers: dict[int, _Sampler] = {}
        self.overhead = 0.0  # seconds the callback adds to one call (see SysMonitoringEngine.calibrate)

    def new_tick(self, code: CodeType) -> Callable[[], object]:
        """Register an application function; returns the C callable that counts one call."""
        cid = id(code)
        self.codes.setdefault(cid, code)
        if self.mode == "sampled":
            sampler = self.samplers.setdefault(
                cid, _Sampler(self.cap, _Cap(self.disable), _clock())
            )
            return sampler.tick
        return self.counters.setdefault(cid, itertools.count()).__next__

    def drain(self, install: Callable[[int, Callable[[], object]], None]) -> tuple[list[Delta], bool]:
        """Deltas, and whether any function was capped; ``install`` puts a new window's tick in place."""
        out: list[Delta] = []
        capped = False
        now = _clock()
        for cid, counter in list(self.counters.items()):
            total = _value(counter)
            delta = total - self.reported.get(cid, 0)
            if delta:
                self.reported[cid] = total
                out.append((self.codes[cid], delta, False))
        for cid, sampler in list(self.samplers.items()):
            if not sampler.seen() and not sampler.cap.at:
                continue  # not called this window: keep its sampler
            new = self.samplers[cid] = _Sampler(self.cap, sampler.cap, now, timed=bool(sampler.cap.at))
            install(cid, new.tick)  # first, so that no call lands on the old one once it is read
            capped_at, sampler.cap.at = sampler.cap.at, 0.0  # the new window starts uncapped
            calls, estimated = sampler.calls(self.cap, now, self.overhead, capped_at)
            capped = capped or estimated
            out.append((self.codes[cid], calls, estimated))
        return out, capped

    def reset(self) -> dict[int, Callable[[], object]]:
        """Zero every counter (forked child); returns the ticks to install."""
        # The parent's lock may have been held by a thread the child does not have.
        self.lock = threading.Lock()
        now = _clock()
        self.reported.clear()
        ticks: dict[int, Callable[[], object]] = {}
        for cid in self.counters:
            counter = self.counters[cid] = itertools.count()
            ticks[cid] = counter.__next__
        for cid in self.samplers:
            old = self.samplers[cid]
            old.cap.at = 0.0
            sampler = self.samplers[cid] = _Sampler(self.cap, old.cap, now)
            ticks[cid] = sampler.tick
        return ticks

    def forget(self, code: CodeType) -> None:
        """Drop a code object's counters (it is not a trace source)."""
        cid = id(code)
        self.counters.pop(cid, None)
        self.samplers.pop(cid, None)
        self.reported.pop(cid, None)


class SysMonitoringEngine:
    """``sys.monitoring`` PY_START: code that is not the application's is disabled at first sight."""

    name = "sys.monitoring"

    def __init__(self, tool: int, apps: AppFilter, mode: str, cap: int = DEFAULT_CAP) -> None:
        """Use the already claimed ``tool`` id."""
        self.mode = mode
        self.tool = tool
        self._apps = apps
        self._mon: Any = sys.monitoring  # type: ignore[attr-defined,unused-ignore]
        self._counting = _Counting(mode, cap, self._mon.DISABLE)
        self._ticks: dict[int, Callable[[], object]] = {}
        self._callback = _py_start_callback(self._ticks, self._first_sight)

    def _first_sight(self, code: CodeType) -> object:
        """Once per code object (callbacks do not nest, so this runs unobserved)."""
        if not self._apps.is_app(code):
            return self._mon.DISABLE  # never called again for this code
        with self._counting.lock:
            tick = self._ticks.setdefault(id(code), self._counting.new_tick(code))
        return tick()

    def calibrate(self) -> None:
        """Measure what the callback adds to a call, for the estimates (off the app's thread)."""

        def probe() -> None:
            pass

        code = probe.__code__
        self._ticks[id(code)] = itertools.count().__next__  # a counted function, as the app's
        callback = self._callback
        best = float("inf")
        for _ in range(20):  # the minimum of short runs: a thread switch spoils only one
            started = time.perf_counter()
            for _ in range(200):
                callback(code, 0)
            best = min(best, (time.perf_counter() - started) / 200)
        del self._ticks[id(code)]
        # A C-to-Python call of the callback costs about what this Python-to-Python one does.
        self._counting.overhead = best

    def install(self) -> None:
        """Register the callback and enable PY_START for every thread."""
        self._mon.register_callback(self.tool, self._mon.events.PY_START, self._callback)
        self._mon.set_events(self.tool, self._mon.events.PY_START)

    def uninstall(self) -> None:
        """Disable events and give the tool id back."""
        try:
            self._mon.set_events(self.tool, 0)
            self._mon.register_callback(self.tool, self._mon.events.PY_START, None)
            self._mon.free_tool_id(self.tool)
        except ValueError:
            pass  # already freed (stop after a failed start, or twice)

    def drain(self) -> list[Delta]:
        """Counts since the last drain; re-arms capped functions for the next window."""
        with self._counting.lock:
            deltas, capped = self._counting.drain(self._ticks.__setitem__)
        if capped:
            self._mon.restart_events()
        return deltas

    def forget(self, code: CodeType) -> None:
        """Not a trace source after all: disable it like foreign code."""
        with self._counting.lock:
            self._ticks[id(code)] = itertools.repeat(self._mon.DISABLE).__next__
            self._counting.forget(code)

    def reset_after_fork(self) -> None:
        """Fresh counters; re-arm whatever the parent's sampler had disabled."""
        self._ticks.update(self._counting.reset())
        if self.mode == "sampled":
            self._mon.restart_events()


def _py_start_callback(
    ticks: dict[int, Callable[[], object]], first_sight: Callable[[CodeType], object]
) -> Callable[[CodeType, int], object]:
    """The hot path on 3.12+: one dict lookup and one C call per application call."""

    def py_start(code: CodeType, offset: int, _id: Callable[[object], int] = id) -> object:
        # (`_id` is a default argument: a local load, cheaper than a builtin lookup.)
        try:  # zero-cost on 3.11+ when nothing is raised
            # One C call, the one that counts: an itertools.count step (exact), a
            # sampler step that returns DISABLE past its cap (sampled), or a
            # repeat(DISABLE) step for code we stopped counting. The return value is
            # sys.monitoring's: DISABLE switches PY_START off for this function.
            return ticks[_id(code)]()  # by id: hashing a code object is slow
        except KeyError:  # first call of this code object since start(), once per code
            return first_sight(code)  # decide (app or not), register, count this call

    return py_start


class SettraceEngine:
    """``sys.settrace`` for every thread; the global trace function sees only 'call' events."""

    name = "sys.settrace"

    def __init__(self, apps: AppFilter, mode: str) -> None:
        """On 3.11 (or when no monitoring tool id is free); sampled mode counts exactly here."""
        self.mode = mode
        self._apps = apps
        self._counting = _Counting("exact", 0, None)
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
            entry = self._ticks.setdefault(
                id(code), (self._counting.new_tick(code), _first_start(code))
            )
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
            return self._counting.drain(_exact_only)[0]

    def forget(self, code: CodeType) -> None:
        """Not a trace source after all: keep seeing it, never count it."""
        with self._counting.lock:
            self._ticks[id(code)] = (int, -1)
            self._counting.forget(code)

    def reset_after_fork(self) -> None:
        """Fresh counters in a forked child."""
        for cid, tick in self._counting.reset().items():
            self._ticks[cid] = (tick, self._ticks[cid][1])


def _exact_only(cid: int, tick: Callable[[], object]) -> None:
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
                entry[0]()  # itertools.count step: one C call, atomic under the GIL
        elif code.co_filename not in foreign:  # library files are rejected by name, cheaply
            first_sight(frame)  # once per code object of an app file: decide and count
        # Returning None: no local trace function, so no line/return events in this frame.

    return trace


def _no_monitoring_reason(monitoring: Any) -> str:
    """Why sys.monitoring cannot be used here (it is absent, or every id we may use is taken)."""
    if monitoring is None:
        return f"Python {sys.version_info[0]}.{sys.version_info[1]} has no sys.monitoring"
    taken = ", ".join(f"{t}={monitoring.get_tool(t)}" for t in _TOOL_IDS)
    return f"every sys.monitoring tool id coldmod may use is taken ({taken})"


def preview_engine() -> tuple[str, str]:
    """The engine :func:`select_engine` would pick in this process now, and why not a faster one; claims nothing."""
    monitoring: Any = getattr(sys, "monitoring", None)
    if monitoring is not None and any(monitoring.get_tool(tool) is None for tool in _TOOL_IDS):
        return SysMonitoringEngine.name, ""
    return SettraceEngine.name, _no_monitoring_reason(monitoring)


def select_engine(apps: AppFilter, mode: str) -> tuple[Engine, str]:
    """The fastest engine available, and why a faster one could not be used ("" when none)."""
    monitoring: Any = getattr(sys, "monitoring", None)
    if monitoring is not None:
        for tool in _TOOL_IDS:
            if monitoring.get_tool(tool) is None:
                try:
                    monitoring.use_tool_id(tool, _TOOL_NAME)
                except ValueError:
                    continue  # taken between the check and the claim
                return SysMonitoringEngine(tool, apps, mode), ""
    return SettraceEngine(apps, mode), _no_monitoring_reason(monitoring)

"""The engines that see calls: ``sys.monitoring`` (3.12+) and ``sys.settrace`` (3.11, fallback).

An engine counts calls per code object (or, for code the exact-mode import hook
rewrote, per key) and nothing else: deciding what is the application's happens
once per code object (``first_sight``), mapping code to keys happens on the
sender thread. Counters are C objects so that one call is one C-level
increment, atomic under the GIL (exact across threads):

- exact mode: an ``itertools.count`` per function, cumulative; ``drain`` reports
  the difference from the value it read last time (never swapped, so no race).
- sampled mode (``sys.monitoring`` with two tool ids): a function's first
  ``cap`` calls of a window are counted exactly (C steps of a per-window chain).
  The call past the cap switches the function's *local* ``PY_START`` off; from
  then on the function is seen only during short time slices that the sampler
  thread opens on a random schedule that does not depend on any call
  (:mod:`coldmod_trace._internal.estimate` turns the slices into an estimate or a
  lower bound). ``set_local_events`` re-arms one function at a time, so library
  code that was switched off stays off.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import CodeType, FrameType
from typing import Any, Protocol

from coldmod_trace._internal import estimate
from coldmod_trace._internal.appfilter import AppFilter
from coldmod_trace._internal.estimate import cpu

__all__ = [
    "DEFAULT_CAP",
    "Delta",
    "Engine",
    "SettraceEngine",
    "SysMonitoringEngine",
    "select_engine",
]

#: Calls counted individually per function per window in sampled mode (see the README's trade-off).
DEFAULT_CAP = 1024
#: Tool ids tried in order: the two ids CPython leaves unassigned, then the optimizer's
#: and the profiler's. The debugger's (0) and coverage's (1) are left to their owners.
_TOOL_IDS = (3, 4, 5, 2)
_TOOL_NAME = "coldmod"
_RESUMABLE = 0x0020 | 0x0080 | 0x0200  # CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR
_NEVER = object()  # a sentinel no callable of ours returns

Counted = CodeType | str
"""What a count belongs to: a code object, or the key of a function the import hook rewrote."""
Delta = tuple[Counted, int, bool, bool]
"""``(code or key, calls, estimated, lower_bound)``: what an engine counted for one function since the last drain."""


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

    def forget(self, code: Counted) -> None:
        """Stop counting a code object (or key) that turned out not to be a trace source."""

    def reset_after_fork(self) -> None:
        """In a forked child: zero every count, keep what was learned about code objects."""

    def key_counter(self, key: str) -> itertools.count[int]:
        """The counter of ``key``'s calls (for code the import hook rewrote: it calls ``next`` on it)."""

    def exclude(self, code: CodeType) -> None:
        """Never count ``code`` here: the import hook compiled its counter into it."""


def _value(counter: itertools.count[int]) -> int:
    """Current value of an ``itertools.count`` (its repr is ``count(N)``; no other public accessor)."""
    return int(repr(counter)[6:-1])


class _Cap:
    """What runs past a function's cap: made once per function, shared by all its windows."""

    __slots__ = ("at", "calls", "cid", "disable", "extra", "queue")

    def __init__(self, cid: int, disable: object, queue: list[int]) -> None:
        self.cid = cid
        self.at = 0.0  # when the cap was reached in the current window (0.0: not reached)
        self.extra = 0  # calls that ran hit() in this window (one, or a few racing threads)
        self.disable = disable
        self.queue = queue  # capped functions the sampler thread has not picked up yet
        # Never exhausted (hit() never returns _NEVER), so every window's chain can reuse it.
        self.calls: Iterator[object] = iter(self.hit, _NEVER)

    def hit(self) -> object:
        """The call past the cap: note when (once per window), hand over to the slices, switch off."""
        self.extra += 1
        if not self.at:
            self.at = cpu()
            self.queue.append(self.cid)  # list.append: atomic, no lock on the app's thread
        return self.disable


class _Window:
    """One function's exact counter for one window in sampled mode: ``size`` C steps, then the cap."""

    __slots__ = ("cap", "remaining", "size", "tick")

    def __init__(self, size: int, cap: _Cap) -> None:
        self.size = size
        self.cap = cap
        # Nothing here points back at the window: a replaced one is freed at once.
        self.remaining: Iterator[None] = itertools.repeat(None, size)  # knows its length left
        self.tick: Callable[[], object] = itertools.chain(self.remaining, cap.calls).__next__

    def seen(self) -> int:
        """Calls counted individually in this window (past the cap included)."""
        left: int = self.remaining.__length_hint__()  # type: ignore[attr-defined]
        return self.size - left + self.cap.extra


class _Slice:
    """One time slice of the sampler, shared by every hot function it re-armed."""

    __slots__ = ("cpu_start", "hot")

    def __init__(self, hot: list[_Hot]) -> None:
        self.hot = hot
        self.cpu_start = cpu()


class _Hot:
    """A capped function during the rest of its window: what its time slices saw."""

    __slots__ = ("capped_at", "code", "slices", "steps")

    def __init__(self, code: CodeType, capped_at: float) -> None:
        self.code = code
        self.capped_at = capped_at  # process CPU time of the call past the cap
        self.slices = estimate.Slices()
        self.steps = itertools.count()

    def open(self) -> Callable[[], object]:
        """A fresh count for a new slice; returns its C step (the function's tick during the slice)."""
        self.steps = itertools.count()
        return self.steps.__next__


class _Counting:
    """Per-code counters shared by both engines; all mutation happens under one lock, off the hot path."""

    def __init__(self, mode: str, cap: int, disable: object) -> None:
        self.mode = mode
        self.cap = cap
        self.disable = disable
        self.lock = threading.RLock()  # re-entrant: a first sight may happen while it is held
        self.codes: dict[int, Counted] = {}  # keeps counted code alive, so id() stays unique
        self.counters: dict[int, itertools.count[int]] = {}
        self.reported: dict[int, int] = {}
        self.windows: dict[int, _Window] = {}
        self.caps: dict[int, _Cap] = {}
        self.capped: list[int] = []  # filled by _Cap.hit on the app's threads
        self.hot: dict[int, _Hot] = {}
        self.slice: _Slice | None = None  # the sampler's open slice
        self.overhead = 0.0  # CPU seconds a call in a slice costs more (SysMonitoringEngine.calibrate)
        self.keys: dict[str, itertools.count[int]] = {}

    def new_tick(self, code: CodeType) -> Callable[[], object]:
        """Register an application function; returns the C callable that counts one call."""
        cid = id(code)
        self.codes.setdefault(cid, code)
        if self.mode == "sampled":
            cap = self.caps.setdefault(cid, _Cap(cid, self.disable, self.capped))
            return self.windows.setdefault(cid, _Window(self.cap, cap)).tick
        return self.counters.setdefault(cid, itertools.count()).__next__

    def key_counter(self, key: str) -> itertools.count[int]:
        """The counter of a rewritten function's key: one per key, shared by every load of its module."""
        counter = self.keys.get(key)
        if counter is None:
            counter = self.keys[key] = itertools.count()
            self.codes[id(key)] = key
            self.counters[id(key)] = counter
        return counter

    def open_slice(self, arm: Callable[[int, Callable[[], object]], None]) -> _Slice:
        """Open a slice for every hot function: ``arm`` installs its slice count and enables its events."""
        self._pick_up()
        hot = list(self.hot.values())
        shared = self.slice = _Slice(hot)
        for each in hot:
            arm(id(each.code), each.open())
        return shared

    def close_slice(self, disarm: Callable[[CodeType], None], which: _Slice | None = None) -> None:
        """Switch the open slice's functions off, then fold their counts into their statistics."""
        shared = self.slice
        if shared is None or (which is not None and shared is not which):
            return  # already closed (by a drain)
        self.slice = None
        for each in shared.hot:
            disarm(each.code)  # first: no call is counted after the CPU time is read
        watched = max(cpu() - shared.cpu_start, 0.0)
        counts = [(each, _value(each.steps)) for each in shared.hot]
        # The calls in the slice ran slower (each paid a callback): the application did
        # that much less of its own work there. At most by 90 %: the cost is measured, not known.
        work = max(watched - sum(n for _, n in counts) * self.overhead, watched * 0.1)
        if watched < estimate.SLICE / 10 and not any(n for _, n in counts):
            return  # the process hardly ran during the slice (a busy machine): it saw nothing either way
        for each, n in counts:
            if self.hot.get(id(each.code)) is each:
                each.slices.add(n, work, watched)

    def _pick_up(self) -> None:
        """Functions capped since the last slice become hot."""
        while self.capped:
            cid = self.capped.pop()
            cap = self.caps.get(cid)
            code = self.codes.get(cid)
            if cap is None or not cap.at or cid in self.hot or not isinstance(code, CodeType):
                continue  # a stale entry of a window already drained, or a duplicate
            self.hot[cid] = _Hot(code, cap.at)

    def drain(
        self, rearm: Callable[[int, Callable[[], object]], None], disarm: Callable[[CodeType], None]
    ) -> list[Delta]:
        """Deltas of the window; ``rearm`` puts a new window's tick in place and re-enables the function."""
        out: list[Delta] = []
        self.close_slice(disarm)
        now = cpu()
        for cid, counter in list(self.counters.items()):
            total = _value(counter)
            delta = total - self.reported.get(cid, 0)
            if delta:
                self.reported[cid] = total
                out.append((self.codes[cid], delta, False, False))
        for cid, window in list(self.windows.items()):
            cap = window.cap
            seen = window.seen()
            if not seen:
                continue  # not called this window: keep its counter
            hot = self.hot.pop(cid, None)
            capped_at = cap.at
            new = self.windows[cid] = _Window(self.cap, cap)
            cap.at, cap.extra = 0.0, 0  # the new window starts uncapped
            rearm(cid, new.tick)  # first, so that no call lands on the old one once it is read
            if not capped_at:
                out.append((self.codes[cid], seen, False, False))
                continue
            slices = hot.slices if hot is not None else estimate.Slices()
            calls, lower = estimate.calls(seen, now - capped_at, slices)
            out.append((self.codes[cid], calls, not lower, lower))
        return out

    def reset(self) -> dict[int, Callable[[], object]]:
        """Zero every count (forked child); returns the ticks to install."""
        # The parent's lock may have been held by a thread the child does not have.
        self.lock = threading.RLock()  # re-entrant: a first sight may happen while it is held
        # The parent reports what it counted; the child starts from the values at the fork
        # (counters are not replaced: rewritten code holds on to its key's counter).
        self.reported = {cid: _value(counter) for cid, counter in self.counters.items()}
        self.capped.clear()
        self.hot.clear()
        self.slice = None
        ticks: dict[int, Callable[[], object]] = {}
        for cid, cap in self.caps.items():
            cap.at, cap.extra = 0.0, 0
            window = self.windows[cid] = _Window(self.cap, cap)
            ticks[cid] = window.tick
        return ticks

    def forget(self, code: Counted) -> None:
        """Drop a code object's (or key's) counters (it is not a trace source)."""
        cid = id(code)
        self.counters.pop(cid, None)
        self.windows.pop(cid, None)
        self.caps.pop(cid, None)
        self.hot.pop(cid, None)
        self.reported.pop(cid, None)


class _Sampler:
    """The thread that opens and closes time slices: a schedule drawn at random, blind to every call."""

    def __init__(
        self, begin: Callable[[], _Slice], end: Callable[[_Slice], None], calibrate: Callable[[], None]
    ) -> None:
        self._begin = begin
        self._end = end
        self._calibrate = calibrate
        self._stop = threading.Event()
        self._random = random.Random()  # noqa: S311 - a sampling schedule, not a secret

    def start(self) -> None:
        """Start (or, in a forked child, restart) the thread."""
        self._stop = threading.Event()
        self._random = random.Random()  # noqa: S311 - a child must not repeat its parent's schedule
        threading.Thread(target=self._run, name="coldmod-sampler", daemon=True).start()

    def stop(self) -> None:
        """Ask the thread to end (it is a daemon: nothing waits for it)."""
        self._stop.set()

    def _run(self) -> None:
        # A random phase first, then gaps drawn uniformly around the mean period: a
        # periodic burst in the application cannot stay in (or out of) step with it.
        stop = self._stop
        with contextlib.suppress(Exception):  # uncalibrated, estimates of trivial functions run low
            self._calibrate()  # before the first slice, whose count it corrects
        gap = self._random.uniform(0.0, estimate.PERIOD)
        while not stop.wait(gap):
            try:
                shared = self._begin()
                stop.wait(estimate.SLICE)
                self._end(shared)
            except Exception:  # noqa: S110 - never let a sampling fault reach the application
                pass
            gap = self._random.uniform(0.5, 1.5) * (estimate.PERIOD - estimate.SLICE)


class SysMonitoringEngine:
    """``sys.monitoring`` PY_START: code that is not the application's is disabled at first sight.

    Exact mode uses one tool id: every application call runs the callback. Sampled
    mode uses two: the first (global ``PY_START``) only sees each code object once;
    the second has *local* ``PY_START`` on application functions only, so that each
    can be switched off past its cap and back on for a slice on its own.
    """

    name = "sys.monitoring"

    def __init__(
        self, tool: int, apps: AppFilter, mode: str, cap: int = DEFAULT_CAP, local: int | None = None
    ) -> None:
        """Use the already claimed ``tool`` id (and ``local`` for sampled mode; None: count exactly)."""
        self.mode = mode
        self.tool = tool
        self.local = local
        self._apps = apps
        self._mon: Any = sys.monitoring  # type: ignore[attr-defined,unused-ignore]
        sampled = mode == "sampled" and local is not None
        self._counting = _Counting("sampled" if sampled else "exact", cap, self._mon.DISABLE)
        self._ticks: dict[int, Callable[[], object]] = {}
        self._sampler = _Sampler(self._begin_slice, self._end_slice, self.calibrate) if sampled else None
        self._calibrated = False
        self._probe: tuple[CodeType, Callable[[int], None]] | None = None  # what calibrations time
        self._calibrating = threading.Lock()  # a second caller waits for the first's measurement
        self._installed = False
        if sampled:
            self._callback = _py_start_callback(self._ticks, self._not_armed)
            self._first = self._first_sight_sampled
        else:
            self._callback = _py_start_callback(self._ticks, self._first_sight)

    def _first_sight(self, code: CodeType) -> object:
        """Once per code object (callbacks do not nest, so this runs unobserved)."""
        if not self._apps.is_app(code):
            return self._mon.DISABLE  # never called again for this code
        with self._counting.lock:
            tick = self._ticks.setdefault(id(code), self._counting.new_tick(code))
        return tick()

    def _first_sight_sampled(self, code: CodeType, offset: int) -> object:
        """The global tool's callback in sampled mode: arm application functions' local events, once."""
        if id(code) in self._ticks:
            return self._mon.DISABLE  # seen again after someone's restart_events(): the local tool counts
        if not self._apps.is_app(code):
            return self._mon.DISABLE
        with self._counting.lock:
            tick = self._ticks.setdefault(id(code), self._counting.new_tick(code))
        self._mon.set_local_events(self.local, code, self._mon.events.PY_START)
        tick()  # this call: the local event fires from the next one on
        return self._mon.DISABLE

    def _not_armed(self, code: CodeType) -> object:
        """The local tool saw code it does not count (forgotten): switch it off."""
        return self._mon.DISABLE

    def _rearm(self, cid: int, tick: Callable[[], object]) -> None:
        """Install a function's tick and switch its local PY_START back on (clears a DISABLE)."""
        self._ticks[cid] = tick
        code = self._counting.codes.get(cid)
        if isinstance(code, CodeType) and self.local is not None and self._installed:
            self._mon.set_local_events(self.local, code, 0)
            self._mon.set_local_events(self.local, code, self._mon.events.PY_START)

    def _disarm(self, code: CodeType) -> None:
        """Switch a function's local PY_START off (the end of its slice)."""
        if self._installed:  # (after uninstall the tool id is no longer ours: the last drain)
            self._mon.set_local_events(self.local, code, 0)

    def _begin_slice(self) -> _Slice:
        """On the sampler thread: one slice for every hot function, each re-armed on its own."""
        with self._counting.lock:
            if not self._installed:
                raise RuntimeError("uninstalled")  # the sampler thread ends its round quietly
            return self._counting.open_slice(self._rearm)

    def _end_slice(self, which: _Slice) -> None:
        """On the sampler thread, ``SLICE`` seconds later (or when it next holds the GIL).

        The callback's cost is measured again first, while the slice is still open (the
        sampler's CPU time is not the application's): what a call costs moves with the
        machine (on a 2-vCPU host it doubled from one 10 ms to the next, within one thread),
        and the slice's calls paid what it cost just now.
        """
        fresh = self._measure(SLICE_RUNS, SLICE_CALLS) if which.hot else None
        with self._counting.lock:
            if fresh is not None:
                self._counting.overhead = fresh
            self._counting.close_slice(self._disarm, which)

    def calibrate(self) -> None:
        """Measure what a call in a slice costs more than a call outside one (once, off the app's threads).

        The sampler thread calls this first; the sender thread's call waits for it to end
        (bounded) instead of racing it. Each slice measures again (:meth:`_end_slice`).
        """
        if self._sampler is None or self._calibrated:
            return
        if not self._calibrating.acquire(timeout=2.0):
            return
        try:
            if not self._calibrated:
                self._measure_callback()
        finally:
            self._calibrated = True
            self._calibrating.release()

    def _measure_callback(self) -> None:
        """The first measurement: a probe function, then alternating runs of it armed and not."""
        # A function called from a loop through a global name, as application code calls.
        namespace: dict[str, Any] = {}
        exec(compile(_PROBE, "<coldmod-calibration>", "exec"), namespace)  # noqa: S102 - our own text
        probe, loop = namespace["probe"], namespace["loop"]
        code = probe.__code__
        with self._counting.lock:
            self._counting.codes[id(code)] = code
            self._ticks[id(code)] = itertools.count().__next__  # what a slice installs
        self._probe = (code, loop)
        measured = self._measure(CALIBRATION_RUNS, CALIBRATION_CALLS)
        if measured is not None:
            self._counting.overhead = measured

    def _measure(self, runs: int, calls: int) -> float | None:
        """CPU seconds a call costs more with its local PY_START on: ``runs`` alternating runs each way."""
        if self._probe is None or not self._installed:
            return None
        code, loop = self._probe
        taken: dict[bool, list[float]] = {True: [], False: []}
        try:
            for armed in (True, False) * runs:
                self._mon.set_local_events(self.local, code, self._mon.events.PY_START if armed else 0)
                started = time.thread_time()  # this thread's: the application's threads run meanwhile
                loop(calls)
                taken[armed].append((time.thread_time() - started) / calls)
        finally:
            self._mon.set_local_events(self.local, code, 0)
        # Medians: the application's calls run among its other work (caches, a busy machine),
        # not in the best case a minimum would pick.
        return max(statistics.median(taken[True]) - statistics.median(taken[False]), 0.0)

    def install(self) -> None:
        """Register the callback(s) and enable PY_START for every thread."""
        events = self._mon.events
        self._installed = True
        if self._sampler is not None:
            self._mon.register_callback(self.tool, events.PY_START, self._first_sight_sampled)
            self._mon.register_callback(self.local, events.PY_START, self._callback)
            self._sampler.start()
        else:
            self._mon.register_callback(self.tool, events.PY_START, self._callback)
        self._mon.set_events(self.tool, events.PY_START)

    def uninstall(self) -> None:
        """Disable events and give the tool id(s) back."""
        if self._sampler is not None:
            self._sampler.stop()
        with self._counting.lock:  # not while the sampler thread is between two calls of ours
            self._uninstall()

    def _uninstall(self) -> None:
        """Switch every event of ours off and free the ids (under the lock)."""
        self._installed = False
        for tool in (self.tool, self.local):
            if tool is None:
                continue
            try:
                self._mon.set_events(tool, 0)
                for cid, code in list(self._counting.codes.items()):
                    if tool == self.local and isinstance(code, CodeType) and cid in self._ticks:
                        self._mon.set_local_events(tool, code, 0)
                self._mon.register_callback(tool, self._mon.events.PY_START, None)
                self._mon.free_tool_id(tool)
            except ValueError:
                pass  # already freed (stop after a failed start, or twice)

    def drain(self) -> list[Delta]:
        """Counts since the last drain; in sampled mode, a new window for every function called."""
        with self._counting.lock:
            return self._counting.drain(self._rearm, self._disarm)

    def forget(self, code: Counted) -> None:
        """Not a trace source after all: disable it like foreign code."""
        with self._counting.lock:
            if isinstance(code, CodeType):
                self._ticks[id(code)] = itertools.repeat(self._mon.DISABLE).__next__
            self._counting.forget(code)

    def key_counter(self, key: str) -> itertools.count[int]:
        """The counter of a rewritten function's key."""
        with self._counting.lock:
            return self._counting.key_counter(key)

    def exclude(self, code: CodeType) -> None:
        """Counted by its own compiled-in counter: disabled at its first call, never counted here."""
        with self._counting.lock:
            self._counting.codes.setdefault(id(code), code)  # keep alive: its id is cached
            self._ticks[id(code)] = itertools.repeat(self._mon.DISABLE).__next__

    def reset_after_fork(self) -> None:
        """Fresh counters; re-arm whatever the parent had switched off; a sampler thread of our own."""
        ticks = self._counting.reset()  # first: it replaces the lock a vanished thread may hold
        self._calibrating = threading.Lock()  # likewise
        with self._counting.lock:
            for cid, tick in ticks.items():
                self._rearm(cid, tick)
        if self._sampler is not None:
            self._sampler.start()


#: The first calibration: alternating runs, each way, of this many calls (~10 ms on the sampler thread).
CALIBRATION_RUNS = 15
CALIBRATION_CALLS = 1000
#: Before each slice closes: a quick measurement (~0.3 ms every 0.5 s, under 0.1 % of one core).
SLICE_RUNS = 3
SLICE_CALLS = 200

_PROBE = """
def probe():
    pass


def loop(n):
    for _ in range(n):
        probe()
"""


def _py_start_callback(
    ticks: dict[int, Callable[[], object]], first_sight: Callable[[CodeType], object]
) -> Callable[[CodeType, int], object]:
    """The hot path on 3.12+: one dict lookup and one C call per application call."""

    def py_start(code: CodeType, offset: int, _id: Callable[[object], int] = id) -> object:
        # (`_id` is a default argument: a local load, cheaper than a builtin lookup.)
        try:  # zero-cost on 3.11+ when nothing is raised
            # One C call, the one that counts: an itertools.count step (exact), a
            # window step that returns DISABLE past its cap (sampled), a slice's
            # tick, or a repeat(DISABLE) step for code we do not count. The return
            # value is sys.monitoring's: DISABLE switches PY_START off for this function.
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
            return self._counting.drain(_exact_only, _exact_only)

    def forget(self, code: Counted) -> None:
        """Not a trace source after all: keep seeing it, never count it."""
        with self._counting.lock:
            if isinstance(code, CodeType):
                self._ticks[id(code)] = (int, -1)
            self._counting.forget(code)

    def key_counter(self, key: str) -> itertools.count[int]:
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


def _claim(monitoring: Any) -> int | None:
    """Claim the first free tool id of ours, or None."""
    for tool in _TOOL_IDS:
        if monitoring.get_tool(tool) is None:
            try:
                monitoring.use_tool_id(tool, _TOOL_NAME)
            except ValueError:
                continue  # taken between the check and the claim
            return int(tool)
    return None


def select_engine(apps: AppFilter, mode: str) -> tuple[Engine, str]:
    """The fastest engine available, and why a faster one could not be used ("" when none)."""
    monitoring: Any = getattr(sys, "monitoring", None)
    if monitoring is not None:
        tool = _claim(monitoring)
        if tool is not None:
            if mode != "sampled":
                return SysMonitoringEngine(tool, apps, mode), ""
            local = _claim(monitoring)
            reason = "" if local is not None else "only one sys.monitoring tool id is free: sampled mode counts exactly"
            return SysMonitoringEngine(tool, apps, mode, local=local), reason
    return SettraceEngine(apps, mode), _no_monitoring_reason(monitoring)

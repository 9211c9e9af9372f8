"""Sampled mode: exact first calls per window, time slices past the cap, and the callback's measured cost.

A function's first ``cap`` calls of a window are counted exactly (C steps of a
per-window chain). The call past the cap switches the function's *local*
``PY_START`` off; from then on the function is seen only during short time
slices that the sampler thread opens on a random schedule that does not depend
on any call (:mod:`coldmod_trace._internal.estimate` turns the slices into an
estimate or a lower bound). The engine re-arms one function at a time, so
library code that was switched off stays off.

Inside a slice every call pays the monitoring callback, so the application did
that much less of its own work there: :class:`CallbackCost` measures what a
call costs more when armed (a probe function, alternating runs), once at start
and again before each slice closes, and the slice's work is corrected by it.

Engine-neutral: what arms and disarms a function is passed in by the engine
(:mod:`coldmod_trace._internal.sysmon`).
"""

from __future__ import annotations

import contextlib
import itertools
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from types import CodeType
from typing import Any

from coldmod_trace._internal import estimate
from coldmod_trace._internal.counting import Counted, Counting, Delta, Disarm, Rearm, value
from coldmod_trace._internal.estimate import cpu
from coldmod_trace.config import Mode

__all__ = ["DEFAULT_CAP", "CallbackCost", "SampledCounting", "Sampler", "Slice"]

#: Calls counted individually per function per window in sampled mode (see the README's trade-off).
DEFAULT_CAP = 1024
#: The first calibration: alternating runs, each way, of this many calls (~10 ms on the sampler thread).
CALIBRATION_RUNS = 15
CALIBRATION_CALLS = 1000
#: Before each slice closes: a quick measurement (~0.3 ms every 0.5 s, under 0.1 % of one core).
SLICE_RUNS = 3
SLICE_CALLS = 200
_NEVER = object()  # a sentinel no callable of ours returns


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


class Slice:
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


class SampledCounting(Counting):
    """Exact counting up to a cap per window, then time slices: windows, caps and the open slice."""

    mode = Mode.SAMPLED

    def __init__(self, cap: int, disable: object) -> None:
        super().__init__()
        self.cap = cap
        self.disable = disable  # what a tick returns to switch the function off (sys.monitoring.DISABLE)
        self.windows: dict[int, _Window] = {}
        self.caps: dict[int, _Cap] = {}
        self.capped: list[int] = []  # filled by _Cap.hit on the app's threads
        self.hot: dict[int, _Hot] = {}
        self.slice: Slice | None = None  # the sampler's open slice
        self.overhead = 0.0  # CPU seconds a call in a slice costs more (CallbackCost)

    def new_tick(self, code: CodeType) -> Callable[[], object]:
        """Register an application function; its tick counts the window's first ``cap`` calls, then caps."""
        cid = id(code)
        self.codes.setdefault(cid, code)
        cap = self.caps.setdefault(cid, _Cap(cid, self.disable, self.capped))
        return self.windows.setdefault(cid, _Window(self.cap, cap)).tick

    def open_slice(self, arm: Rearm) -> Slice:
        """Open a slice for every hot function: ``arm`` installs its slice count and enables its events."""
        self._pick_up()
        hot = list(self.hot.values())
        shared = self.slice = Slice(hot)
        for each in hot:
            arm(id(each.code), each.open())
        return shared

    def close_slice(self, disarm: Disarm, which: Slice | None = None) -> None:
        """Switch the open slice's functions off, then fold their counts into their statistics."""
        shared = self.slice
        if shared is None or (which is not None and shared is not which):
            return  # already closed (by a drain)
        self.slice = None
        for each in shared.hot:
            disarm(each.code)  # first: no call is counted after the CPU time is read
        watched = max(cpu() - shared.cpu_start, 0.0)
        counts = [(each, value(each.steps)) for each in shared.hot]
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

    def drain(self, rearm: Rearm, disarm: Disarm) -> list[Delta]:
        """Deltas of the window; ``rearm`` puts a new window's tick in place and re-enables the function."""
        self.close_slice(disarm)
        now = cpu()
        out = super().drain(rearm, disarm)  # rewritten code's key counters (none in sampled mode today)
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
        """Zero every count (forked child); returns every function's fresh window tick to install."""
        super().reset()
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
        """Drop a code object's counters, window and slices (it is not a trace source)."""
        super().forget(code)
        cid = id(code)
        self.windows.pop(cid, None)
        self.caps.pop(cid, None)
        self.hot.pop(cid, None)


class Sampler:
    """The thread that opens and closes time slices: a schedule drawn at random, blind to every call."""

    def __init__(
        self, begin: Callable[[], Slice], end: Callable[[Slice], None], calibrate: Callable[[], None]
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


_PROBE = """
def probe():
    pass


def loop(n):
    for _ in range(n):
        probe()
"""


class CallbackCost:
    """What a call costs more while its function is armed: measured on a probe, off the app's threads.

    ``arm(code, on)`` switches the probe's events on or off (the engine's). The
    sampler thread measures first (:meth:`calibrate`); the sender thread's call
    waits for it (bounded) instead of racing it; each slice measures again
    (:meth:`measure` with ``SLICE_RUNS``), since what a call costs moves with the
    machine (on a 2-vCPU host it doubled from one 10 ms to the next, within one thread).
    """

    def __init__(self, counting: SampledCounting, ticks: dict[int, Callable[[], object]],
                 arm: Callable[[CodeType, bool], None]) -> None:
        self._counting = counting
        self._ticks = ticks
        self._arm = arm
        self.calibrated = False
        self._probe: tuple[CodeType, Callable[[int], None]] | None = None  # what measurements time
        self._calibrating = threading.Lock()  # a second caller waits for the first's measurement

    def calibrate(self, ready: Callable[[], bool]) -> None:
        """The first measurement, once: a probe function, then alternating runs of it armed and not."""
        if self.calibrated:
            return
        if not self._calibrating.acquire(timeout=2.0):
            return
        try:
            if not self.calibrated:
                self._make_probe()
                measured = self.measure(CALIBRATION_RUNS, CALIBRATION_CALLS, ready)
                if measured is not None:
                    self._counting.overhead = measured
        finally:
            self.calibrated = True
            self._calibrating.release()

    def after_fork(self) -> None:
        """In a forked child: the parent's lock may be held by a thread the child does not have."""
        self._calibrating = threading.Lock()

    def _make_probe(self) -> None:
        # A function called from a loop through a global name, as application code calls.
        namespace: dict[str, Any] = {}
        exec(compile(_PROBE, "<coldmod-calibration>", "exec"), namespace)  # noqa: S102 - our own text
        probe, loop = namespace["probe"], namespace["loop"]
        code = probe.__code__
        with self._counting.lock:
            self._counting.codes[id(code)] = code
            self._ticks[id(code)] = itertools.count().__next__  # what a slice installs
        self._probe = (code, loop)

    def measure(self, runs: int, calls: int, ready: Callable[[], bool]) -> float | None:
        """CPU seconds a call costs more when armed: ``runs`` alternating runs each way (None: cannot)."""
        if self._probe is None or not ready():
            return None
        code, loop = self._probe
        taken: dict[bool, list[float]] = {True: [], False: []}
        try:
            for armed in (True, False) * runs:
                self._arm(code, armed)
                started = time.thread_time()  # this thread's: the application's threads run meanwhile
                loop(calls)
                taken[armed].append((time.thread_time() - started) / calls)
        finally:
            self._arm(code, False)
        # Medians: the application's calls run among its other work (caches, a busy machine),
        # not in the best case a minimum would pick.
        return max(statistics.median(taken[True]) - statistics.median(taken[False]), 0.0)

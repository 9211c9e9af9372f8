"""Sampled mode: exact counts within a CPU budget, time slices past it, and the callback's measured cost.

A function's calls are counted exactly (C steps of a per-window chain) in chunks:
the first ``CHUNK`` of a window are free, each further chunk is drawn from a
budget of CPU time (:class:`~coldmod_trace._internal.estimate.Budget`; the call
at a chunk's end draws it, without waiting for any lock). When the budget says
no, that call is the *cap*: it switches the function's local ``PY_START`` off;
from then on the function is seen only during short time slices that the
sampler thread opens on a random schedule in CPU time that does not depend on
any call; each slice arms the hot functions drawn into it, each with a chance that
follows its need (:func:`~coldmod_trace._internal.estimate.inclusion`), and
:mod:`coldmod_trace._internal.estimate` turns the slices into an estimate or a
lower bound. The engine re-arms one function at a time, so library code that was
switched off stays off.

Inside a slice every call pays the monitoring callback, so the application did
that much less of its own work there: :class:`CallbackCost` measures what a
call costs more when armed (a probe function, alternating runs), once at start
and again now and then as slices close, and the slice's work is corrected by it.

Engine-neutral: what arms and disarms a function is passed in by the engine
(:mod:`coldmod_trace._internal.sysmon`).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import queue
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import CodeType
from typing import Any

from coldmod_trace._internal import estimate
from coldmod_trace._internal.counting import Counted, Counting, Delta, Disarm, Rearm, counter, value
from coldmod_trace._internal.estimate import cpu
from coldmod_trace.config import Mode

__all__ = ["CallbackCost", "SampledCounting", "Sampler", "Slice"]

#: The first calibration: alternating runs, each way, of this many calls (~10 ms on the sampler thread).
CALIBRATION_RUNS = 15
CALIBRATION_CALLS = 1000
#: Before each slice closes: a quick measurement (~0.3 ms every 0.5 s, under 0.1 % of one core).
SLICE_RUNS = 3
SLICE_CALLS = 200
#: What a slice is corrected by: the median of this many last measurements.
RECENT = 9
_NEVER = object()  # a sentinel no callable of ours returns
_NUDGE = -1  # put on the capped queue to wake the sampler: no function's id
#: How long the sampler sleeps at most while no function is past its budget (s): it is woken by
#: the first cap, so this only bounds how long a missed wake-up could last.
IDLE = 1.0


class _Cap:
    """What runs at the end of a function's chunk: made once per function, shared by all its windows."""

    __slots__ = ("calls", "cid", "counting", "window")

    def __init__(self, cid: int, counting: SampledCounting) -> None:
        self.cid = cid
        self.counting = counting
        self.window: _Window | None = None  # the current window (set by the counting)
        # Never exhausted (hit() never returns _NEVER), so every chunk's chain can reuse it.
        self.calls: Iterator[object] = iter(self.hit, _NEVER)

    def hit(self) -> object:
        """The call past a chunk (on the app's thread): a next chunk from the budget, else the cap.

        Never waits: the counting lock is only tried. Held elsewhere (a drain, a slice
        opening), or a stale chain another thread already replaced: this call is counted
        and the function stays armed, so a next call tries again.
        """
        window, counting = self.window, self.counting
        if window is None:
            return None  # forgotten meanwhile
        window.extra += 1  # this call, counted exactly whatever happens next
        if window.at or window.remaining.__length_hint__():  # type: ignore[attr-defined]
            return counting.disable if window.at else None  # capped already / a stale chain
        if counting.lock.acquire(blocking=False):
            try:
                if self.window is window and counting.budget.take(window.exact(), window.size, counting.cost(), cpu):
                    counting.ticks[self.cid] = window.next_chunk(self.calls)
                    return None
            finally:
                counting.lock.release()
        else:
            return None  # try again at the next call
        window.at = cpu()  # the cap: from here on, slices
        counting.capped.put(self.cid)  # wakes the sampler if it waits for one; never blocks
        return counting.disable


class _Window:
    """One function's exact counter for one window in sampled mode: chunks of ``size`` C steps, then the cap."""

    __slots__ = ("at", "base", "extra", "remaining", "size", "tick")

    def __init__(self, size: int, cap: _Cap) -> None:
        self.size = size
        self.at = 0.0  # when the cap was reached in this window (0.0: not reached)
        self.base = 0  # calls counted by earlier chunks
        self.extra = 0  # calls that ran hit() (one per chunk, or a few racing threads)
        # Nothing here points back at the window: a replaced one is freed at once.
        self.remaining: Iterator[None] = itertools.repeat(None, size)  # knows its length left
        self.tick: Callable[[], object] = itertools.chain(self.remaining, cap.calls).__next__
        cap.window = self

    def next_chunk(self, calls: Iterator[object]) -> Callable[[], object]:
        """Another ``size`` C steps (the current chunk is used up); returns the tick that takes them."""
        self.base += self.size
        self.remaining = itertools.repeat(None, self.size)
        self.tick = itertools.chain(self.remaining, calls).__next__
        return self.tick

    def exact(self) -> int:
        """Calls counted in chunks so far (the current one included, whole)."""
        return self.base + self.size

    def seen(self) -> int:
        """Calls counted individually in this window (past the cap included)."""
        left: int = self.remaining.__length_hint__()  # type: ignore[attr-defined]
        return self.base + self.size - left + self.extra


class Slice:
    """One time slice of the sampler, shared by the hot functions it re-armed."""

    __slots__ = ("cpu_start", "hot", "weights")

    def __init__(self, hot: list[_Hot], weights: list[float]) -> None:
        self.hot = hot
        # Per function: what the slice stands for (its period and the sampler's lag: Pace.weight),
        # over the function's chance of being armed in it (estimate.inclusion): the mean time
        # between its slices.
        self.weights = weights
        self.cpu_start = cpu()


class _Hot:
    """A capped function during the rest of its window: what its time slices saw."""

    __slots__ = ("capped_at", "code", "slices", "steps")

    def __init__(self, code: CodeType, capped_at: float) -> None:
        self.code = code
        self.capped_at = capped_at  # process CPU time of the call past the cap
        self.slices = estimate.Slices()
        self.steps = counter()

    def open(self) -> Callable[[], object]:
        """A fresh count for a new slice; returns its C step (the function's tick during the slice)."""
        self.steps = counter()
        return self.steps.__next__

    def need(self, price: float) -> tuple[float | None, float]:
        """``(spread, cost)`` for :func:`estimate.inclusion`: how its slices' counts vary, and what
        arming it for one costs (switching it, and its mean calls in a slice at ``price`` each)."""
        slices = self.slices
        return slices.spread(), estimate.ARM + (slices.calls / slices.n if slices.n else 0.0) * price


class SampledCounting(Counting):
    """Exact counting within a CPU budget per window, then time slices: windows, caps and the open slice."""

    mode = Mode.SAMPLED

    def __init__(self, chunk: int, disable: object, ticks: dict[int, Callable[[], object]]) -> None:
        super().__init__()
        self.chunk = chunk
        self.disable = disable  # what a tick returns to switch the function off (sys.monitoring.DISABLE)
        self.ticks = ticks  # the engine's: a next chunk's tick is put in place there
        self.windows: dict[int, _Window] = {}
        self.caps: dict[int, _Cap] = {}
        self.capped: queue.SimpleQueue[int] = queue.SimpleQueue()  # filled by _Cap.hit on the app's threads
        self.hot: dict[int, _Hot] = {}
        self.slice: Slice | None = None  # the sampler's open slice
        self.overhead = 0.0  # CPU seconds a call in a slice costs more (CallbackCost)
        self.floor = 0.0  # CPU seconds no call takes less than (CallbackCost; 0: not known)
        self.window_start = cpu()
        self.budget = estimate.Budget(self.window_start)
        self.random = random.Random()  # noqa: S311 - which functions a slice arms, not a secret

    def wait_for_cap(self, timeout: float) -> None:
        """Until a function is capped (or ``timeout`` s, or :meth:`nudge`): before, slices have nothing to watch."""
        with contextlib.suppress(queue.Empty):
            self.capped.put(self.capped.get(timeout=timeout))  # put back: the next slice picks it up

    def nudge(self) -> None:
        """Wake :meth:`wait_for_cap` now (the sampler is asked to stop)."""
        self.capped.put(_NUDGE)

    def cost(self) -> float:
        """What counting one call costs the application: the probe's measured cost (a default
        until then) at ``IN_APP`` times, as it is among the application's own work."""
        return (self.overhead or estimate.DEFAULT_COST) * estimate.IN_APP

    def new_tick(self, code: CodeType) -> Callable[[], object]:
        """Register an application function; its tick counts its calls in chunks of the budget, then caps."""
        cid = id(code)
        self.codes.setdefault(cid, code)
        cap = self.caps.setdefault(cid, _Cap(cid, self))
        window = self.windows.get(cid)
        if window is None:
            window = self.windows[cid] = _Window(self.chunk, cap)
        return window.tick

    def open_slice(self, arm: Rearm, weight: float = 1.0) -> Slice | None:
        """Open a slice for the hot functions drawn into it (:func:`estimate.inclusion`): ``arm``
        installs each one's slice count and enables its events.

        None when no function is past its budget: nothing to watch.
        """
        self._pick_up()
        if not self.hot:
            return None
        hot = list(self.hot.values())
        price = self.cost()
        chances = estimate.inclusion([each.need(price) for each in hot])
        drawn = [(each, chance) for each, chance in zip(hot, chances, strict=True) if self.random.random() < chance]
        shared = self.slice = Slice([each for each, _ in drawn], [weight / chance for _, chance in drawn])
        for each, _ in drawn:
            arm(id(each.code), each.open())
        return shared

    def close_slice(self, disarm: Disarm, which: Slice | None = None) -> int:
        """Switch the open slice's functions off, then fold their counts into their statistics; its calls."""
        shared = self.slice
        if shared is None or (which is not None and shared is not which):
            return 0  # already closed (by a drain)
        self.slice = None
        for each in shared.hot:
            disarm(each.code)  # first: no call is counted after the CPU time is read
        watched = max(cpu() - shared.cpu_start, 0.0)
        counts = [(each, value(each.steps)) for each in shared.hot]
        calls = sum(n for _, n in counts)
        # The calls in the slice ran slower (each paid a callback): the application did that much
        # less of its own work there. The cost is measured, not known: the work left is at least
        # what the calls take at the least (``floor``), and at least 10 % of the slice.
        work = max(watched - calls * self.overhead, calls * self.floor, watched * 0.1)
        if watched < estimate.SLICE / 10 and not calls:
            return 0  # the process hardly ran during the slice (a busy machine): it saw nothing either way
        for (each, n), weight in zip(counts, shared.weights, strict=True):
            if self.hot.get(id(each.code)) is each:
                each.slices.add(n, work, watched, weight)
        return calls

    def _pick_up(self) -> None:
        """Functions capped since the last slice become hot."""
        while True:
            try:
                cid = self.capped.get_nowait()
            except queue.Empty:
                return
            window = self.windows.get(cid)
            code = self.codes.get(cid)
            if window is None or not window.at or cid in self.hot or not isinstance(code, CodeType):
                continue  # a stale entry of a window already drained, or a duplicate
            self.hot[cid] = _Hot(code, window.at)

    def drain(self, rearm: Rearm, disarm: Disarm) -> list[Delta]:
        """Deltas of the window; ``rearm`` puts a new window's tick in place and re-enables the function."""
        self.close_slice(disarm)
        now = cpu()
        self.budget.refill(now)
        out = super().drain(rearm, disarm)  # rewritten code's key counters (none in sampled mode today)
        needs = []
        for cid, window in list(self.windows.items()):
            seen = window.seen()
            if not seen:
                continue  # not called this window: keep its counter
            hot = self.hot.pop(cid, None)
            new = self.windows[cid] = _Window(self.chunk, self.caps[cid])
            rearm(cid, new.tick)  # first, so that no call lands on the old one once it is read
            if not window.at:
                out.append((self.codes[cid], seen, False, False))
                needs.append(seen)
                continue
            slices = hot.slices if hot is not None else estimate.Slices()
            calls, lower = estimate.calls(seen, now - window.at, slices)
            out.append((self.codes[cid], calls, not lower, lower))
            needs.append(calls)
        # The next window shares the budget in order of this one's need.
        self.budget.plan(needs, now - self.window_start, self.cost())
        self.window_start = now
        return out

    def reset(self) -> dict[int, Callable[[], object]]:
        """Zero every count (forked child); returns every function's fresh window tick to install."""
        super().reset()
        self.capped = queue.SimpleQueue()  # a parent's thread may have been waiting on the old one
        self.hot.clear()
        self.slice = None
        self.window_start = cpu()
        self.budget = estimate.Budget(self.window_start)
        self.random = random.Random()  # noqa: S311 - a child must not repeat its parent's draws
        ticks: dict[int, Callable[[], object]] = {}
        for cid, cap in self.caps.items():
            window = self.windows[cid] = _Window(self.chunk, cap)
            ticks[cid] = window.tick
        return ticks

    def forget(self, code: Counted) -> None:
        """Drop a code object's counters, window and slices (it is not a trace source)."""
        super().forget(code)
        cid = id(code)
        self.windows.pop(cid, None)
        cap = self.caps.pop(cid, None)
        if cap is not None:
            cap.window = None  # a call still on its way counts nothing
        self.hot.pop(cid, None)


class Sampler:
    """The thread that opens and closes time slices: a schedule drawn at random in CPU time, blind to every call.

    Gaps are drawn in the application's CPU time (:func:`~estimate.cpu`): a slice
    starts only once the application has worked that long since the last one, so an
    idle process is not watched and a burst between sleeps is. The mean gap follows
    what slices cost (their callbacks, the sampler's own work) so that they spend
    ``SLICE_SHARE`` of the application's time: between ``MIN_PERIOD`` (slices that
    meet few calls are cheap: many, for bursts and short processes) and ``PERIOD``.
    A slice, too, lasts ``SLICE`` of the application's CPU time. The share of a spell with
    nothing to watch is spent first, at a quicker pace (:class:`~estimate.Pace`).

    While no function is past its budget there is nothing to watch: the thread sleeps
    until the first cap wakes it (``idle``), then starts at a random phase. It does
    not look at the clock meanwhile: each wake-up of a thread while the application
    holds the GIL costs both ~0.1 ms of CPU on a 2-vCPU machine (measured), which is
    also why a slice's cost is the sampler's whole cycle, its waits included.
    """

    #: Shortest wait between two looks at the CPU time; an idle process is looked at less
    #: and less often (doubling, up to ``PERIOD``).
    POLL = 0.002

    def __init__(
        self,
        begin: Callable[[float], Slice | None],
        end: Callable[[Slice], float],
        calibrate: Callable[[], None],
        idle: Callable[[float], None] = time.sleep,
        nudge: Callable[[], None] = lambda: None,
    ) -> None:
        """``begin(weight)`` opens a slice that stands for ``weight`` CPU s (None: no function to watch);
        ``end`` closes it and returns what its callbacks cost (CPU s); ``idle(timeout)`` returns
        when there may be something to watch; ``nudge()`` makes it return now."""
        self._begin = begin
        self._end = end
        self._calibrate = calibrate
        self._idle = idle
        self._nudge = nudge
        self._stop = threading.Event()
        self._random = random.Random()  # noqa: S311 - a sampling schedule, not a secret
        self.pace = estimate.Pace(2 * sys.getswitchinterval())

    def start(self) -> None:
        """Start (or, in a forked child, restart) the thread."""
        self._stop = threading.Event()
        self._random = random.Random()  # noqa: S311 - a child must not repeat its parent's schedule
        self.pace = estimate.Pace(2 * sys.getswitchinterval())  # nor spend what its parent kept
        threading.Thread(target=self._run, name="coldmod-sampler", daemon=True).start()

    def stop(self) -> None:
        """Ask the thread to end (it is a daemon: nothing waits for it)."""
        self._stop.set()
        self._nudge()

    def _run(self) -> None:
        # A random phase first, then gaps drawn uniformly around the mean period: a
        # periodic burst in the application cannot stay in (or out of) step with it.
        with contextlib.suppress(Exception):  # uncalibrated, estimates of trivial functions run low
            self._calibrate()  # before the first slice, whose count it corrects
        pace = self.pace
        period = pace.period()
        gap = self._random.uniform(0.0, period)
        cycle, worked = time.thread_time(), cpu()
        last = None  # when the previous slice started (None: a random phase since)
        while self._wait(gap):
            try:
                # What the slice stands for: the period it was drawn with and the sampler's lag,
                # both known before it starts (not this start's own lag: a slice the GIL kept
                # waiting is one that met a burst).
                start = cpu()
                shared = self._begin(pace.weight(period))
                if shared is None:  # nothing past its budget: sleep until a function is capped
                    self._idle(IDLE)
                    now = cpu()
                    pace.worked(now - worked)  # the share a quiet spell leaves is kept
                    period = pace.period()
                    gap = self._random.uniform(0.0, period)  # a random phase again
                    cycle, worked, last = time.thread_time(), now, None
                    continue
                if last is not None:
                    pace.started(start - last, period)
                last = start
                # SLICE seconds of the application's CPU time, not of the clock: a slice opened just
                # before a sleep watches the next burst rather than the sleep.
                self._wait(estimate.SLICE)
                callbacks = self._end(shared)
                now, at = time.thread_time(), cpu()
                # The cycle's wake-ups and work, from the last slice's end, and its callbacks.
                pace.spent(now - cycle + callbacks, at - worked)
                cycle, worked = now, at
            except Exception:  # noqa: S110 - never let a sampling fault reach the application
                pass
            period = pace.period()
            gap = self._random.uniform(0.5, 1.5) * (period - estimate.SLICE)

    def _wait(self, gap: float) -> bool:
        """Until the application has used ``gap`` more CPU seconds; False when asked to stop.

        Each look costs a wake-up: the rest of the gap is waited for at the pace the
        application got since the last look (a share of a core on a busy machine,
        several cores with several threads), not in short polls.
        """
        stop = self._stop
        last, since = cpu(), time.monotonic()
        target = last + gap
        wait = gap
        while not stop.wait(wait):
            now, at = cpu(), time.monotonic()
            if now >= target:
                return True
            pace = (now - last) / max(at - since, 1e-6)  # CPU seconds per second of the clock
            # It did not work meanwhile (asleep, idle): look less and less often. It did: the rest.
            wait = min(wait * 2, estimate.PERIOD) if pace < 0.01 else max((target - now) / pace, self.POLL)
            last, since = now, at
        return False


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
        self.unarmed = 0.0  # CPU seconds a call of the probe takes, unarmed (the last measurement)
        self._recent: collections.deque[float] = collections.deque(maxlen=RECENT)
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
                    self._counting.overhead = self.recent(measured)
                    # Half the probe's unarmed call (a loop step and a call of `pass`): no call
                    # of the application's takes less CPU time, whatever calls it (from C too).
                    self._counting.floor = self.unarmed / 2
        finally:
            self.calibrated = True
            self._calibrating.release()

    def recent(self, measured: float) -> float:
        """The median of the last ``RECENT`` measurements, ``measured`` the newest: one quick
        measurement on a busy machine is off by half; the median follows drift, not noise."""
        self._recent.append(measured)
        return statistics.median(self._recent)

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
            self._ticks[id(code)] = counter().__next__  # what a slice installs
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
        self.unarmed = statistics.median(taken[False])
        return max(statistics.median(taken[True]) - statistics.median(taken[False]), 0.0)

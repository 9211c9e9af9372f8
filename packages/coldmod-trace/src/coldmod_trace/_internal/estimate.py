"""Sampled mode's arithmetic: the exact budget, and from time slices to an estimate or a lower bound.

**What is counted exactly.** Counting a call exactly costs one callback
(~150-450 ns on 3.12-3.13 in the calibration probe's loop, measured at start and as
slices close; ``IN_APP`` times that among the application's own work). Exact
counting may spend ``SHARE`` of the process's CPU time: a token bucket of CPU
seconds (:class:`Budget`) gains ``SHARE`` of every CPU-second, and a function
draws ``CHUNK`` calls at a time from it, each priced at that cost. Each window
the budget is shared in order of need (:func:`water_level`, from the last
window's counts): functions that need less than the level get all they need
(exact), only the hottest are cut at the level and sampled, and they are the
ones whose slices have many calls to go on.

**What is sampled.** A function past its share is switched off and seen again only during slices of
``SLICE`` seconds that start on a random schedule in the process's CPU time
(a random phase, then gaps drawn uniformly around a period between
``MIN_PERIOD`` and ``PERIOD``) that never looks at the function's calls: an
idle or sleeping process is not sampled, a burst between sleeps is.
Every moment after the cap is therefore inside a slice with the same
probability, and the calls inside slices are a fair sample of the calls after
the cap: the rate they show, times the time no slice watched, estimates the
calls nobody saw (a ratio estimator over cluster samples). Its standard error
comes from the spread of the slices' own counts, so the estimate states how far
it may be off. Slices come often enough (every ``MIN_PERIOD`` where they are
cheap) that bursts and short processes are met by several; the share of a spell
with nothing to watch is spent first (:class:`Pace`), so a burst that outlasts
the exact budget is met by several slices before it ends. Only when slices give nothing to go on (too few,
or too few that met a call) is what was seen for sure reported, as a lower bound.

**Which functions a slice watches.** Not every hot function in every slice: a function whose
slices all show the same rate, and cost thousands of callbacks each, gains little from more of
them, while a bursty one beside it needs many (most of its slices see nothing).
:func:`inclusion` arms each function at random with a chance that follows its need
(Neyman's allocation over the slices' spread and cost), and the slices a function was armed in
are weighted by that chance, so its estimate stays a fair one. The slices' cost falls, so they
come more often, for the same share of CPU time.

Everything but :func:`cpu` is pure and deterministic: the tests feed it call shapes.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
from collections.abc import Callable

__all__ = [
    "ARM",
    "CALIBRATION",
    "CHUNK",
    "CREDIT",
    "MIN_HITS",
    "MIN_PERIOD",
    "MIN_SHARE",
    "MIN_SLICES",
    "PERIOD",
    "QUICK_PERIOD",
    "SHARE",
    "SLICE",
    "SLICE_SHARE",
    "Budget",
    "Pace",
    "Slices",
    "calls",
    "cpu",
    "inclusion",
    "relative_error",
    "water_level",
]

#: Length of one slice (CPU s of the application, at least). The sampler thread opens and
#: closes it; when the application holds the GIL, both happen up to one switch interval
#: (5 ms) late, alike, so the slice moves and grows rather than shrinks (a slice the
#: application's own thread closed would start late and end on time, and miss the bursts
#: that kept the sampler waiting). Its length is measured, not assumed. Short, because a
#: slice costs its calls' callbacks: the shorter, the more slices the same cost buys.
SLICE = 0.001
#: Longest mean time between slice starts (CPU s of the application): where every call in
#: a slice costs a callback (a call-heavy program), slices are expensive and come this
#: rarely, so that they cost it ``SLICE_SHARE`` of its time at most.
PERIOD = 0.5
#: Shortest: where slices are cheap (they meet few calls, or calls with work of their own),
#: they come this often (4 % of the time watched), so that bursts and short processes get enough.
MIN_PERIOD = 0.025
#: What slices may cost (their callbacks and the sampler's work), as a share of the
#: application's CPU time: it sets the period between the two above, slice by slice (each
#: slice is weighted by the period it was drawn with and the sampler's lag: :meth:`Pace.weight`).
SLICE_SHARE = 0.015
#: What slices may spend ahead of ``SLICE_SHARE`` (CPU s): the share of a spell with nothing to
#: watch (no function past its budget), spent at ``QUICK_PERIOD`` as soon as a function is capped
#: (:class:`Pace`). A function capped in the middle of a burst is met by several slices before the
#: burst ends, not by one in a lucky run. Slices still spend no more than ``SLICE_SHARE`` of the
#: application's CPU time since start.
CREDIT = 0.04
#: The mean time between slices while the credit lasts (CPU s of the application): a slice's
#: length and the sampler's few wake-ups apart (each waits up to a switch interval for the GIL).
QUICK_PERIOD = 0.01
#: What arming a function for one slice and disarming it after costs the application's threads,
#: beyond the sampler's own CPU time (s). On 3.12, measured on the web workload: slices whose
#: functions were switched on and off cost it 1.2 % more than the same slices switching nothing,
#: ~60 us a function a slice. It is paid by the application's thread in the function whose code
#: was re-instrumented (a function doing more work a call costs more), not in any function of
#: ours. 3.13 pays about a quarter of that for the same switching (a two-thread program toggling
#: the functions it runs: 0.3-0.7 % where 3.12 lost 1.2-3.3 %).
ARM = 60e-6 if sys.version_info < (3, 13) else 15e-6

#: Share of the application's CPU time that exact counting may spend on callbacks. Half a
#: per cent: on the web workload under load, a budget of 1 % cost 1.5 points (pairs on one core:
#: default mode 1.028x with it, 1.012x with this), more than it is priced at.
SHARE = 0.005
#: Calls a function draws from the budget at a time (the first chunk of a window is free:
#: a function called once is counted exactly, whatever the budget).
CHUNK = 1024
#: CPU seconds of exact counting the bucket starts with, and holds at most (whatever ``SHARE``):
#: a start-up burst is counted exactly (~150,000 calls at ~1 us); a short process, or one
#: that comes back from idle, does not spend a window's budget at once.
START = 0.135
CAPACITY = 0.3
#: What a callback costs until it is measured (s): the first milliseconds, while the sampler
#: thread calibrates (a typical 3.12 figure; a slow machine's is twice that).
DEFAULT_COST = 200e-9
#: What a callback costs among the application's own work, as a multiple of what the
#: calibration probe measures in its tight loop (where the callback's code and data stay in
#: the CPU's caches). Measured on the web workload with every call counted by a callback:
#: ~1 us a call where the probe said ~300 ns. The budget and the slices are priced at it.
IN_APP = 3.0

#: The least share of slices a hot function is armed in (:func:`inclusion`): a steady function
#: needs few slices, but not none (its rate may change).
MIN_SHARE = 0.1

# When the slices support an estimate (else: a lower bound). Each row is one requirement.
#: slices opened after the cap in the window
MIN_SLICES = 3
#: of which saw at least one call (fewer: the calls came in bursts the slices barely met)
MIN_HITS = 2
#: How far the callback's cost, measured once at start, is trusted (relative). Inside a slice
#: every call pays it; for a trivial function it is most of the slice's time, and the
#: application's own work there is the small difference of two large numbers.
CALIBRATION = 0.15


def cpu() -> float:
    """What slices are measured in: CPU time of the application's threads (the tracer's taken out).

    The calls a program makes follow the work it does, not the time passing: an idle
    process makes no calls, and a busy machine that runs it less often does not make it
    call less per unit of its own work. CPU time also makes the callbacks' own cost
    measurable, and removable. The tracer's threads (discovery, Register, batches) are
    subtracted: their work is not the application's and comes in bursts of its own.
    """
    global _ours
    if threading.active_count() != _ours[0]:  # a thread started or ended: find ours again
        _ours = (threading.active_count(), _clocks())
    ours = 0.0
    for clock in _ours[1]:
        with contextlib.suppress(OSError):  # gone meanwhile
            ours += time.clock_gettime(clock)
    return time.process_time() - ours


def _clocks() -> list[int]:
    """The CPU-time clocks of the tracer's threads (none where there are no such clocks)."""
    out = []
    for thread in threading.enumerate():
        if thread.name.startswith("coldmod-") and thread.ident is not None:
            with contextlib.suppress(OSError, AttributeError):  # gone meanwhile, or not Linux
                out.append(time.pthread_getcpuclockid(thread.ident))
    return out


#: (threads alive when looked for, the clocks of the tracer's among them): cpu() runs at every
#: look of the sampler thread, and listing every thread each time would cost more than it reads.
_ours: tuple[int, list[int]] = (-1, [])


class Slices:
    """Running sums over one function's slices in one window (constant memory).

    Each slice is weighted by the mean time between the function's slices when it was
    drawn: the period the sampler drew its start with and its lag (:meth:`Pace.weight`),
    over the function's chance of being armed in it (:func:`inclusion`). Where slices came less often (they cost more),
    each stands for more time, so the rate they show together is not tilted toward the
    cheap, quiet moments.
    """

    __slots__ = (
        "calls",
        "hits",
        "n",
        "removed",
        "w_calls",
        "w_time",
        "watched",
        "ww_calls2",
        "ww_calls_time",
        "ww_time2",
    )

    def __init__(self) -> None:
        self.n = 0
        self.hits = 0
        self.calls = 0
        self.watched = 0.0
        self.removed = 0.0  # the callbacks' cost taken out of the slices (watched - length)
        self.w_calls = 0.0  # sum(w * calls)
        self.w_time = 0.0  # sum(w * length)
        self.ww_calls2 = 0.0  # sum((w * calls) ** 2), and so on: the residuals' sums
        self.ww_calls_time = 0.0
        self.ww_time2 = 0.0

    def add(self, calls: int, length: float, watched: float | None = None, weight: float = 1.0) -> None:
        """One slice: ``calls`` counted exactly during ``length`` seconds of the application's work.

        ``watched`` is the CPU time the slice lasted (``length`` plus the callbacks' cost);
        ``weight`` what it stands for (:meth:`Pace.weight`: its period and the sampler's lag).
        """
        self.watched += length if watched is None else watched
        self.removed += 0.0 if watched is None else max(watched - length, 0.0)
        self.n += 1
        self.hits += calls > 0
        self.calls += calls
        self.w_calls += weight * calls
        self.w_time += weight * length
        self.ww_calls2 += (weight * calls) ** 2
        self.ww_calls_time += weight * calls * weight * length
        self.ww_time2 += (weight * length) ** 2

    def spread(self) -> float | None:
        """How much one slice's count varies around the rate they show together (relative variance:
        the residuals' mean square over the mean count squared); None with fewer than ``MIN_SLICES``.

        Slices that saw no call at all: as if one had seen one call (``n``), so that a function
        that is no longer called does not claim every slice for ever.
        """
        n = self.n
        if n < MIN_SLICES:
            return None
        if self.w_calls <= 0:
            return float(n)
        rate = self.w_calls / self.w_time if self.w_time > 0 else 0.0
        return self.residual(rate) * n / (self.w_calls * self.w_calls)

    def residual(self, rate: float) -> float:
        """``sum((w * (calls - rate * length)) ** 2)`` over the slices, from the running sums."""
        return max(self.ww_calls2 - 2 * rate * self.ww_calls_time + rate * rate * self.ww_time2, 0.0)


class Budget:
    """CPU time that exact counting may still spend: a token bucket filled with ``SHARE`` of the CPU time.

    Kept in CPU seconds, not calls: what a call costs is measured after the bucket
    exists (and again as the machine changes), and every draw is priced at the
    cost known then. Drawn from by a function's call at the end of its chunk
    (:meth:`take`, under the counting lock, taken without waiting), which first
    refills it with the CPU time since the last refill when it runs short, so that
    no thread has to wake up to fill it. ``level`` is each function's share of a
    window in calls (:func:`water_level`; infinite until a window shows the need).
    """

    __slots__ = ("at", "level", "seconds")

    def __init__(self, now: float) -> None:
        self.at = now
        self.seconds = START
        self.level = math.inf

    def refill(self, now: float) -> None:
        """Add ``SHARE`` of the CPU time since the last refill (the bucket holds ``CAPACITY`` at most)."""
        self.seconds = min(self.seconds + max(now - self.at, 0.0) * SHARE, CAPACITY)
        self.at = max(now, self.at)

    def take(self, exact: int, calls: int, cost: float, now: Callable[[], float] = lambda: 0.0) -> bool:
        """Whether a function that counted ``exact`` calls this window may count ``calls`` more at
        ``cost`` each; ``now()`` is the CPU time, read only when the bucket must be refilled first."""
        if exact + calls > max(self.level, CHUNK):
            return False
        price = calls * cost
        if self.seconds < price:
            self.refill(now())
            if self.seconds < price:
                return False
        self.seconds -= price
        return True

    def plan(self, needs: list[int], window: float, cost: float) -> None:
        """Next window's level: last window's calls per function shared the budget its CPU time gave."""
        self.level = water_level(needs, SHARE * window / max(cost, DEFAULT_COST / 10))


class Pace:
    """How often slices come: what they cost, spent at ``SLICE_SHARE`` of the application's CPU time.

    The mean time between slice starts (:meth:`period`) is what a slice costs (a running mean of
    the last ~8: it follows the program's phases) over ``SLICE_SHARE``, between ``MIN_PERIOD`` and
    ``PERIOD``. The share of a spell with nothing to watch is kept (``credit``, up to ``CREDIT``)
    and spent first: while it covers a slice, slices come every ``QUICK_PERIOD``. Each slice
    stands for the period it was drawn with and the sampler's lag (:meth:`weight`), so the
    estimate stays fair whatever the pace.
    """

    __slots__ = ("cost", "credit", "lag")

    def __init__(self, lag: float = 0.0) -> None:
        """``lag``: how much later than drawn slices start until measured (CPU s)."""
        self.cost = 0.0  # running mean of what one slice costs (CPU s)
        self.credit = 0.0  # CPU s of a quiet spell's share not spent yet
        self.lag = lag  # running mean of how much later than drawn slices start (CPU s)

    def period(self) -> float:
        """Mean CPU time until the next slice starts."""
        if self.credit > 0 and self.credit >= self.cost:
            return QUICK_PERIOD
        return min(max(self.cost / SLICE_SHARE, MIN_PERIOD), PERIOD)

    def weight(self, period: float) -> float:
        """What a slice drawn with ``period`` stands for: the mean time between slice starts, the
        sampler's lag included (its wake-ups wait for the GIL; a slice lasts longer than
        ``SLICE`` while the application holds it). The same lag matters little at ``PERIOD``
        and doubles ``QUICK_PERIOD``: slices of both are weighed alike only with it."""
        return max(period + self.lag, SLICE)

    def started(self, spacing: float, period: float) -> None:
        """A slice started ``spacing`` CPU s after the last one, drawn with ``period``."""
        self.lag += (spacing - period - self.lag) / 8

    def spent(self, cost: float, worked: float) -> None:
        """A slice cost ``cost`` CPU s (its callbacks, the sampler's cycle); the application
        worked ``worked`` CPU s since the last slice. What it cost beyond its own share is paid
        from the credit (never added to it: only a quiet spell's share is kept)."""
        self.cost += (cost - self.cost) / 8
        self.credit = max(min(self.credit, self.credit + worked * SLICE_SHARE - cost), 0.0)

    def worked(self, worked: float) -> None:
        """The application worked ``worked`` CPU s with nothing to watch: its share is kept."""
        self.credit = min(self.credit + worked * SLICE_SHARE, CREDIT)


def inclusion(needs: list[tuple[float | None, float]]) -> list[float]:
    """Each hot function's chance of being armed in a slice, from ``(spread, cost)`` per function.

    ``spread`` is how much one slice's count varies around the function's rate (relative
    variance, :meth:`Slices.spread`; None: not known yet), ``cost`` what arming it for a
    slice costs (CPU s). Slices go where the uncertainty is: a function is armed in
    proportion to ``sqrt(spread / cost)`` (Neyman's allocation: the variance of all
    estimates together is least for what they cost), the neediest in every slice, none
    in fewer than ``MIN_SHARE``. A steady function that is expensive to watch (thousands
    of calls in each slice, all alike) no longer makes every slice expensive, so slices
    come more often for the bursty function beside it, whose slices mostly see nothing.
    A function whose spread is not known yet needs most: it is armed in every slice.
    """
    scores = [math.sqrt(spread / max(cost, 1e-9)) if spread is not None else math.inf for spread, cost in needs]
    top = max(scores, default=0.0)
    if top <= 0:
        return [1.0] * len(scores)  # every function's slices agree exactly: nothing to prefer
    return [1.0 if score == top else max(MIN_SHARE, score / top) for score in scores]


def water_level(needs: list[int], budget: float) -> float:
    """The level L at which ``sum(min(need, L)) == budget`` (infinite when every need fits).

    Functions that need less than L are counted whole; the rest are cut at L.
    """
    left, count = budget, len(needs)
    for need in sorted(needs):
        if need * count > left:
            return left / count
        left -= need
        count -= 1
    return math.inf


def calls(exact: int, span: float, slices: Slices) -> tuple[int, bool]:
    """``(calls, lower_bound)`` of a window: ``exact`` counted before the cap, ``span`` seconds after it.

    Estimate: ``exact`` + the calls slices saw + their rate × the time they did not
    watch, from at least ``MIN_SLICES`` slices of which ``MIN_HITS`` saw calls.
    With fewer there is nothing to go on (one slice that met a burst would be
    extrapolated to every moment no slice watched): what was seen for sure is
    reported, as a lower bound. Its :func:`relative_error` is not a reason to refuse
    an estimate: slices are dense enough that the estimate is the better report.
    """
    seen = exact + slices.calls
    if slices.n < MIN_SLICES or slices.hits < MIN_HITS:
        return seen, True
    estimate, _ = _estimate(exact, span, slices)
    return max(seen, round(estimate)), False


def relative_error(exact: int, span: float, slices: Slices) -> float:
    """The estimate's stated error: two standard errors plus the calibration's share, relative to it."""
    return _estimate(exact, span, slices)[1]


def _estimate(exact: int, span: float, slices: Slices) -> tuple[float, float]:
    n = slices.n
    if n < 2 or slices.w_time <= 0 or slices.calls <= 0:
        return float(exact + slices.calls), math.inf
    rate = slices.w_calls / slices.w_time
    unwatched = max(span - slices.watched, 0.0)
    estimate = exact + slices.calls + rate * unwatched
    # The ratio estimator's variance (linearised): sum((w * (c - rate * t))^2) / sum(w * t)^2,
    # the residuals from the running sums, n / (n - 1) for the rate fitted to them.
    variance = slices.residual(rate) / (slices.w_time * slices.w_time) * n / (n - 1)  # of the rate
    # If the callbacks' cost is off by CALIBRATION, the work in slices is off by that much
    # of what was taken out, and the rate (so the extrapolated part) by the same share.
    time = slices.watched - slices.removed
    systematic = rate * unwatched * CALIBRATION * slices.removed / time if time > 0 else math.inf
    error = 2 * unwatched * math.sqrt(variance) + systematic
    return estimate, error / estimate

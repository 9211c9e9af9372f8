"""Sampled mode's arithmetic: from time slices to an estimate with a stated error, or a lower bound.

A function past its cap is switched off and seen again only during slices of
``SLICE`` seconds that start on a random schedule (a random phase, then gaps
drawn uniformly around ``PERIOD``) that never looks at the function's calls.
Every moment after the cap is therefore inside a slice with the same
probability, and the calls inside slices are a fair sample of the calls after
the cap: the rate they show, times the time no slice watched, estimates the
calls nobody saw (a ratio estimator over cluster samples). Its standard error
comes from the spread of the slices' own counts, so the estimator knows when it
does not know: a burst that one slice caught (or none did) spreads the counts
so much that the estimate is refused and what was seen for sure is reported as
a lower bound instead.

Everything but :func:`cpu` is pure and deterministic: the tests feed it call shapes.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time

__all__ = [
    "CALIBRATION",
    "MAX_ERROR",
    "MIN_HITS",
    "MIN_SLICES",
    "PERIOD",
    "SLICE",
    "Slices",
    "calls",
    "cpu",
    "relative_error",
]

#: Length of one slice (s). The sampler thread opens and closes it; when the application
#: holds the GIL, both happen up to one switch interval (5 ms) late, alike, so the slice
#: moves rather than shrinks (a slice the application's own thread closed would start late
#: and end on time, and miss the bursts that kept the sampler waiting).
SLICE = 0.005
#: Mean time between slice starts (s): 1 % of the time is watched (up to 2 % while the
#: application holds the GIL), which bounds what sampled mode costs a call-heavy program
#: at 1-2 % of what exact counting costs it; 20 slices per default 10 s window.
PERIOD = 0.5

# When the slices support an estimate (else: a lower bound). Each row is one requirement.
#: slices opened after the cap in the window
MIN_SLICES = 5
#: of which saw at least one call (fewer: the calls came in bursts the slices barely met)
MIN_HITS = 4
#: two standard errors of the estimate (≈95 %), plus what the callback's measured cost may
#: be off (below), relative to the estimate, at most
MAX_ERROR = 0.5
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
    ours = 0.0
    for thread in threading.enumerate():
        if thread.name.startswith("coldmod-") and thread.ident is not None:
            with contextlib.suppress(OSError, AttributeError):  # gone meanwhile, or not Linux
                ours += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return time.process_time() - ours


class Slices:
    """Running sums over one function's slices in one window (constant memory)."""

    __slots__ = ("calls", "calls2", "calls_time", "hits", "n", "removed", "time", "time2", "watched")

    def __init__(self) -> None:
        self.n = 0
        self.hits = 0
        self.calls = 0
        self.time = 0.0
        self.calls2 = 0.0
        self.calls_time = 0.0
        self.time2 = 0.0
        self.watched = 0.0
        self.removed = 0.0  # the callbacks' cost taken out of the slices (watched - time)

    def add(self, calls: int, length: float, watched: float | None = None) -> None:
        """One slice: ``calls`` counted exactly during ``length`` seconds of the application's work.

        ``watched`` is the CPU time the slice lasted (``length`` plus the callbacks' cost).
        """
        self.watched += length if watched is None else watched
        self.removed += 0.0 if watched is None else max(watched - length, 0.0)
        self.n += 1
        self.hits += calls > 0
        self.calls += calls
        self.time += length
        self.calls2 += calls * calls
        self.calls_time += calls * length
        self.time2 += length * length


def calls(exact: int, span: float, slices: Slices) -> tuple[int, bool]:
    """``(calls, lower_bound)`` of a window: ``exact`` counted before the cap, ``span`` seconds after it.

    Estimate: ``exact`` + the calls slices saw + their rate × the time they did not
    watch. Reported only when :func:`relative_error` (two standard errors, plus the
    callbacks' cost's uncertainty) is at most
    ``MAX_ERROR`` from at least ``MIN_SLICES`` slices of which ``MIN_HITS`` saw calls;
    otherwise ``exact`` + the calls slices saw, a lower bound.
    """
    seen = exact + slices.calls
    estimate, error = _estimate(exact, span, slices)
    if slices.n < MIN_SLICES or slices.hits < MIN_HITS or error > MAX_ERROR:
        return seen, True
    return max(seen, round(estimate)), False


def relative_error(exact: int, span: float, slices: Slices) -> float:
    """Two standard errors plus the calibration's share, relative to the estimate (inf: nothing to go on)."""
    return _estimate(exact, span, slices)[1]


def _estimate(exact: int, span: float, slices: Slices) -> tuple[float, float]:
    n = slices.n
    if n < 2 or slices.time <= 0 or slices.calls <= 0:
        return float(exact + slices.calls), math.inf
    rate = slices.calls / slices.time
    unwatched = max(span - slices.watched, 0.0)
    estimate = exact + slices.calls + rate * unwatched
    # Residuals of the ratio estimator: sum((c - rate * t)^2) from the running sums.
    residual = slices.calls2 - 2 * rate * slices.calls_time + rate * rate * slices.time2
    mean_time = slices.time / n
    variance = max(residual, 0.0) / (n - 1) / n / (mean_time * mean_time)  # of the rate
    # If the callbacks' cost is off by CALIBRATION, the work in slices is off by that much
    # of what was taken out, and the rate (so the extrapolated part) by the same share.
    systematic = rate * unwatched * CALIBRATION * slices.removed / slices.time
    error = 2 * unwatched * math.sqrt(variance) + systematic
    return estimate, error / estimate

"""Sampled mode's estimator on call shapes with known truth: deterministic simulations, no timings.

Each shape is a list of call times (in seconds of the process's work). The
simulation does what the engine does: the first ``CAP`` calls are counted
exactly, then slices of ``SLICE`` seconds start on the sampler's random
schedule (a seeded generator, so every run is the same) and count the calls
inside them; :func:`estimate.calls` turns that into a reported count.
"""

from __future__ import annotations

import bisect
import random
import statistics

import pytest

from coldmod_trace._internal import estimate

pytestmark = pytest.mark.timeout(60)

CAP = 1024
WINDOW = 10.0  # the default flush interval: one window


def _schedule(rng: random.Random, until: float) -> list[float]:
    """Slice starts as the sampler draws them: a random phase, then gaps around PERIOD."""
    starts = []
    at = rng.uniform(0.0, estimate.PERIOD)
    while at < until:
        starts.append(at)
        at += estimate.SLICE + rng.uniform(0.5, 1.5) * (estimate.PERIOD - estimate.SLICE)
    return starts


def simulate(times: list[float], seed: int, window: float = WINDOW) -> tuple[int, bool]:
    """``(reported calls, lower_bound)`` for one window whose calls happen at ``times`` (sorted)."""
    if len(times) <= CAP:
        return len(times), False
    capped_at = times[CAP]  # the call past the cap: switched off from here on
    slices = estimate.Slices()
    for start in _schedule(random.Random(seed), window):
        if start < capped_at:
            continue  # the function was still counted exactly then
        end = min(start + estimate.SLICE, window)
        seen = bisect.bisect_left(times, end) - bisect.bisect_left(times, start)
        slices.add(seen, end - start)
    return estimate.calls(CAP + 1, window - capped_at, slices)


def steady(rate: float, start: float = 0.0, end: float = WINDOW) -> list[float]:
    """Calls at a constant pace."""
    n = int((end - start) * rate)
    return [start + i / rate for i in range(n)]


def ramp(peak: float) -> list[float]:
    """A pace rising linearly from 0 to ``peak`` calls/s over the window."""
    # Calls at t with cumulative count peak * t^2 / (2 * WINDOW): t_i = sqrt(2 * WINDOW * i / peak).
    total = int(peak * WINDOW / 2)
    return [(2 * WINDOW * i / peak) ** 0.5 for i in range(total)]


def bursts(every: float, length: float, rate: float) -> list[float]:
    """Bursts of ``length`` seconds at ``rate`` calls/s, one every ``every`` seconds."""
    out: list[float] = []
    at = 0.0
    while at < WINDOW:
        out.extend(steady(rate, at, min(at + length, WINDOW)))
        at += every
    return out


SEEDS = range(40)


def _ratios(times: list[float]) -> tuple[list[float], int]:
    """Estimate / truth over every seed that gave an estimate, and how many gave a lower bound."""
    ratios, lower = [], 0
    for seed in SEEDS:
        calls, is_lower = simulate(times, seed)
        if is_lower:
            assert calls <= len(times)  # a lower bound is what was seen for sure: never above the truth
            lower += 1
        else:
            ratios.append(calls / len(times))
    return ratios, lower


def test_counts_below_the_cap_are_exact():
    for n in (0, 1, CAP - 1, CAP):
        assert simulate(steady(n / WINDOW), seed=1) == (n, False)


def test_a_steady_pace_is_estimated_within_ten_percent():
    ratios, lower = _ratios(steady(50_000))
    assert lower == 0
    assert all(0.9 <= r <= 1.1 for r in ratios), ratios


def test_a_ramp_is_estimated_without_the_bias_of_extrapolating_its_start():
    ratios, lower = _ratios(ramp(100_000))
    assert lower == 0
    assert all(0.8 <= r <= 1.25 for r in ratios), ratios
    assert abs(statistics.median(ratios) - 1) <= 0.1


def test_a_burst_at_start_up_then_nothing_is_a_lower_bound_not_an_extrapolation():
    times = steady(1_000_000, 0.0, 0.0081)  # 8,100 calls in 8 ms, then other work
    for seed in SEEDS:
        calls, lower = simulate(times, seed)
        assert lower
        assert CAP < calls <= len(times)


SHAPES = {
    "steady": steady(50_000),
    "ramp": ramp(100_000),
    "burst at start-up, then other work": steady(1_000_000, 0.0, 0.0081),
    "a burst in step with the mean period": bursts(every=estimate.PERIOD, length=0.02, rate=200_000),
    "frequent short bursts": bursts(every=0.05, length=0.005, rate=400_000),
    "rare long bursts": bursts(every=2.0, length=0.3, rate=100_000),
    "bursts every 200 ms": bursts(every=0.2, length=0.01, rate=400_000),
    "a pace that stops half-way": steady(20_000, 0.0, 5.0),
    "a pace that starts half-way": steady(20_000, 5.0, 10.0),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_is_estimated_within_bounds_or_reported_as_a_lower_bound(shape):
    times = SHAPES[shape]
    ratios, _ = _ratios(times)  # (asserts that each lower bound is at most the truth)
    assert all(0.5 <= r <= 2 for r in ratios), ratios
    if ratios:
        assert abs(statistics.median(ratios) - 1) <= 0.2, ratios


def test_bursts_in_step_with_the_sampling_period_do_not_alias():
    # Bursts once per mean period: a fixed-period sampler would put every slice in a burst or
    # none, and trust its consistent counts. The jittered schedule meets bursts at the rate of
    # their share of time, (burst + slice) / period, whatever its phase.
    every, length = estimate.PERIOD, 0.02
    share = (length + estimate.SLICE) / every
    rates = []
    for seed in SEEDS:
        starts = _schedule(random.Random(seed), 100 * every)
        hits = sum((start % every) < length or (start % every) > every - estimate.SLICE for start in starts)
        rates.append(hits / len(starts))
    assert abs(statistics.fmean(rates) - share) <= share * 0.2
    assert max(rates) < 3 * share  # no schedule locks onto the bursts


def test_an_estimate_is_unbiased_over_schedules():
    # Calls at random moments: the estimate's mean over many schedules is the truth.
    rng = random.Random(7)
    times = sorted(rng.uniform(0, WINDOW) for _ in range(200_000))
    ratios, lower = _ratios(times)
    assert lower == 0
    assert abs(statistics.fmean(ratios) - 1) <= 0.03


def test_the_stated_error_shrinks_with_more_slices_and_refuses_too_few():
    few, many = estimate.Slices(), estimate.Slices()
    for counts, slices in (([100, 90, 110], few), ([100, 90, 110] * 10, many)):
        for n in counts:
            slices.add(n, estimate.SLICE)
    assert estimate.calls(CAP, 10.0, few)[1] is True  # fewer than MIN_SLICES: a lower bound
    assert estimate.calls(CAP, 10.0, many)[1] is False
    assert estimate.relative_error(CAP, 10.0, many) < estimate.relative_error(CAP, 10.0, few)


def test_one_slice_that_caught_everything_is_not_trusted():
    slices = estimate.Slices()
    for n in [5000] + [0] * 9:
        slices.add(n, estimate.SLICE)
    calls, lower = estimate.calls(CAP, 10.0, slices)
    assert lower
    assert calls == CAP + 5000


def test_a_function_whose_slices_were_mostly_callbacks_is_a_lower_bound():
    # The same counts; in one case the callbacks' cost was 4x the application's own work in
    # the slices (a trivial function), in the other half of it. Only the second is estimated.
    trivial, working = estimate.Slices(), estimate.Slices()
    for n in [1000, 1100, 900, 1000, 1050, 950] * 2:
        trivial.add(n, 0.001, watched=0.005)
        working.add(n, 0.001, watched=0.0015)
    assert estimate.calls(CAP, 10.0, trivial)[1] is True
    assert estimate.calls(CAP, 10.0, working)[1] is False
    assert estimate.relative_error(CAP, 10.0, trivial) > estimate.MAX_ERROR

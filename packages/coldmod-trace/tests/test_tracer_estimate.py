"""Sampled mode's budget and estimator on call shapes with known truth: deterministic simulations, no timings.

Each shape is a list of call times (in seconds of the process's CPU time). The
simulation does what the engine does: calls are counted exactly while the budget
allows (``BUDGET`` calls in this window, drawn ``CHUNK`` at a time), then slices
of ``SLICE`` CPU seconds start on the sampler's random schedule in CPU time (a
seeded generator, so every run is the same), its period following what slices
cost, and count the calls inside them; :func:`estimate.calls` turns that into a
reported count.
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
from collections.abc import Callable

import pytest

from coldmod_trace._internal import estimate

pytestmark = pytest.mark.timeout(60)

CAP = estimate.CHUNK
WINDOW = 10.0  # the default flush interval: one window
#: What the simulated process's budget allows in a window: its hottest shapes are mostly sampled.
BUDGET = 100_000
#: What one call costs in a slice (s), for the sampler's period; and what the sampler's own cycle costs per
#: slice, its two wake-ups while the application holds the GIL included (~0.1 ms each, measured on 2 vCPUs).
COST = 1e-6
FIXED = 300e-6


def _exact_part(n: int, budget: int = BUDGET) -> int:
    """Calls counted exactly before the cap: the free chunk, then whole chunks while the budget lasts."""
    chunks = 1 + budget // CAP
    return min(n, chunks * (CAP + 1))


def schedule(
    rng: random.Random, window: float, watch: Callable[[float, float, float], float], start: float = 0.0
) -> None:
    """The sampler's schedule over one window, as :class:`~coldmod_trace._internal.sampling.Sampler`
    draws it: idle until ``start`` (the first cap: the share it leaves is kept), a random phase,
    then gaps around a period that follows what slices cost (:class:`estimate.Pace`).
    ``watch(start, end, weight)`` looks at one slice (standing for ``weight`` seconds: its period
    and the sampler's lag) and returns what it cost (s)."""
    pace = estimate.Pace()
    pace.worked(start)
    period = pace.period()
    at, worked, last = start + rng.uniform(0.0, period), start, None
    while at < window:
        if last is not None:
            pace.started(at - last, period)
        end = min(at + estimate.SLICE, window)
        pace.spent(watch(at, end, pace.weight(period)), end - worked)
        period, worked, last = pace.period(), end, at
        at = end + rng.uniform(0.5, 1.5) * (period - estimate.SLICE)


def simulate(times: list[float], seed: int, window: float = WINDOW, budget: int = BUDGET) -> tuple[int, bool]:
    """``(reported calls, lower_bound)`` for one window whose calls happen at ``times`` (sorted)."""
    exact = _exact_part(len(times), budget)
    if exact == len(times):
        return exact, False
    capped_at = times[exact]  # the call past the budget: switched off from here on
    slices = estimate.Slices()

    def watch(start: float, end: float, weight: float) -> float:
        seen = bisect.bisect_left(times, end) - bisect.bisect_left(times, start)
        slices.add(seen, end - start, weight=weight)
        return seen * COST + FIXED

    schedule(random.Random(seed), window, watch, start=capped_at)
    return estimate.calls(exact + 1, window - capped_at, slices)


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


def test_a_burst_at_start_up_within_the_budget_is_counted_exactly():
    times = steady(1_000_000, 0.0, 0.0081)  # 8,100 calls in 8 ms, then other work
    assert simulate(times, seed=1) == (8100, False)


def test_a_burst_past_the_budget_then_nothing_is_a_lower_bound_not_an_extrapolation():
    times = steady(10_000_000, 0.0, 0.02)  # 200,000 calls in 20 ms, then other work
    for seed in SEEDS:
        calls, lower = simulate(times, seed)
        assert lower
        assert BUDGET < calls <= len(times)


def test_a_burst_past_the_budget_among_quiet_work_is_met_by_slices_before_it_ends(monkeypatch):
    # 300,000 calls in 60 ms, half-way through a window of other work: capped a third of the way
    # into the burst. The share of the quiet seconds before is spent on slices at once, so the
    # rest of the burst is met by several; without that credit, by one or none (a lower bound
    # at a third of the truth, in most schedules).
    times = steady(5_000_000, 5.0, 5.06)
    ratios, lower = _ratios(times)
    assert lower == 0
    assert all(0.5 <= r <= 2 for r in ratios), ratios
    assert abs(statistics.median(ratios) - 1) <= 0.15
    monkeypatch.setattr(estimate, "CREDIT", 0.0)
    _, lower = _ratios(times)
    assert lower >= len(SEEDS) // 4


SHAPES = {
    "steady": steady(50_000),
    "steady, just past the budget": steady(15_000),
    "ramp": ramp(100_000),
    "burst at start-up, then other work": steady(1_000_000, 0.0, 0.0081),
    "a burst in step with the shortest period": bursts(every=estimate.MIN_PERIOD, length=0.005, rate=400_000),
    "a burst in step with the longest period": bursts(every=estimate.PERIOD, length=0.02, rate=2_000_000),
    "frequent short bursts": bursts(every=0.05, length=0.005, rate=400_000),
    "rare long bursts": bursts(every=2.0, length=0.3, rate=100_000),
    "bursts every 200 ms": bursts(every=0.2, length=0.01, rate=400_000),
    "a pace that stops half-way": steady(20_000, 0.0, 5.0),
    "a pace that starts half-way": steady(20_000, 5.0, 10.0),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_is_reported_within_2x_and_estimated_within_15_percent_at_the_median(shape):
    times = SHAPES[shape]
    ratios, lower = _ratios(times)  # (asserts that each lower bound is at most the truth)
    reported = [simulate(times, seed)[0] / len(times) for seed in SEEDS]
    assert all(0.5 <= r <= 2 for r in reported), reported  # lower bounds too
    assert lower <= len(SEEDS) // 10, lower
    assert abs(statistics.median(ratios) - 1) <= 0.15, ratios


def test_an_estimate_is_unbiased_over_schedules():
    # Calls at random moments: the estimate's mean over many schedules is the truth.
    rng = random.Random(7)
    times = sorted(rng.uniform(0, WINDOW) for _ in range(200_000))
    ratios, lower = _ratios(times)
    assert lower == 0
    assert abs(statistics.fmean(ratios) - 1) <= 0.03


def test_the_stated_error_shrinks_with_more_slices_and_refuses_too_few():
    too_few, few, many = estimate.Slices(), estimate.Slices(), estimate.Slices()
    for counts, slices in (([100, 90], too_few), ([100, 90, 110], few), ([100, 90, 110] * 10, many)):
        for n in counts:
            slices.add(n, estimate.SLICE)
    assert estimate.calls(CAP, 10.0, too_few)[1] is True  # fewer than MIN_SLICES: a lower bound
    assert estimate.calls(CAP, 10.0, few)[1] is False
    assert estimate.calls(CAP, 10.0, many)[1] is False
    assert estimate.relative_error(CAP, 10.0, many) < estimate.relative_error(CAP, 10.0, few)


def test_one_slice_that_caught_everything_is_not_trusted():
    slices = estimate.Slices()
    for n in [5000] + [0] * 9:
        slices.add(n, estimate.SLICE)
    calls, lower = estimate.calls(CAP, 10.0, slices)
    assert lower
    assert calls == CAP + 5000


def test_a_function_whose_slices_were_mostly_callbacks_is_estimated_with_a_larger_stated_error():
    # The same counts; in one case the callbacks' cost was 4x the application's own work in
    # the slices (a trivial function), in the other half of it. Both are estimated (a lower
    # bound would be 100x off); the first states a larger error (the calibration's share).
    trivial, working = estimate.Slices(), estimate.Slices()
    for n in [1000, 1100, 900, 1000, 1050, 950] * 2:
        trivial.add(n, 0.001, watched=0.005)
        working.add(n, 0.001, watched=0.0015)
    assert estimate.calls(CAP, 10.0, trivial)[1] is False
    assert estimate.calls(CAP, 10.0, working)[1] is False
    assert estimate.relative_error(CAP, 10.0, trivial) > 2 * estimate.relative_error(CAP, 10.0, working)


def test_the_budget_fills_with_a_share_of_cpu_time_up_to_its_capacity():
    budget = estimate.Budget(now=50.0)
    start = estimate.START
    assert budget.seconds == pytest.approx(start)
    budget.refill(51.0)  # one CPU second: SHARE of it
    assert budget.seconds == pytest.approx(start + estimate.SHARE)
    budget.refill(51.0)  # no CPU time: nothing
    assert budget.seconds == pytest.approx(start + estimate.SHARE)
    budget.refill(1000.0)
    assert budget.seconds == pytest.approx(estimate.CAPACITY)


def test_a_chunk_is_drawn_only_within_the_budget_and_the_functions_share():
    cost = 400e-9
    budget = estimate.Budget(now=0.0)
    budget.seconds = 3 * CAP * cost
    assert budget.take(exact=CAP, calls=CAP, cost=cost)
    assert budget.seconds == pytest.approx(2 * CAP * cost)
    budget.level = 2 * CAP
    assert not budget.take(exact=2 * CAP, calls=CAP, cost=cost)  # past its share: capped, seconds kept
    assert budget.seconds == pytest.approx(2 * CAP * cost)
    budget.level = math.inf
    assert budget.take(exact=2 * CAP, calls=CAP, cost=cost)
    assert budget.take(exact=3 * CAP, calls=CAP, cost=cost)
    assert not budget.take(exact=4 * CAP, calls=CAP, cost=cost)  # the bucket is empty
    assert budget.seconds == pytest.approx(0.0)


def test_a_draw_is_priced_at_the_cost_measured_then():
    budget = estimate.Budget(now=0.0)
    budget.seconds = CAP * 100e-9
    assert not budget.take(exact=CAP, calls=CAP, cost=200e-9)  # dearer calls: the same seconds buy half
    assert budget.take(exact=CAP, calls=CAP, cost=100e-9)


def test_a_short_bucket_is_refilled_with_the_cpu_time_since_before_it_says_no():
    budget = estimate.Budget(now=0.0)
    budget.seconds = 0.0
    looked: list[float] = []

    def now() -> float:
        looked.append(1.0)
        return 1.0  # one CPU second since the bucket was filled: SHARE of it

    assert budget.take(exact=CAP, calls=CAP, cost=1e-6, now=now)
    assert budget.seconds == pytest.approx(estimate.SHARE - CAP * 1e-6)
    assert budget.take(exact=2 * CAP, calls=CAP, cost=1e-6, now=now)
    assert looked == [1.0]  # the clock is read only when the bucket runs short
    budget.seconds = 0.0
    assert not budget.take(exact=3 * CAP, calls=CAP, cost=1e-6, now=now)  # no CPU time since: no


@pytest.mark.parametrize(
    ("needs", "budget", "level"),
    [
        ([10, 20, 30], 100, math.inf),  # every need fits: nobody is cut
        ([10, 20, 1000], 100, 70),  # the hottest gets what the others leave
        ([10, 500, 1000], 100, 45),  # the two hot ones share what the moderate one leaves
        ([1000, 1000, 1000, 1000], 100, 25),
        ([], 100, math.inf),
    ],
)
def test_water_level_serves_moderate_functions_whole_and_cuts_only_the_hottest(needs, budget, level):
    assert estimate.water_level(needs, budget) == level
    if level != math.inf:
        assert sum(min(n, level) for n in needs) == pytest.approx(budget)


@pytest.mark.parametrize(
    ("needs", "chances"),
    [
        ([(0.1, 1e-3)], [1.0]),  # one function: in every slice
        ([(None, 1e-3), (0.1, 1e-3)], [1.0, estimate.MIN_SHARE]),  # not known yet: needs most
        ([(4.0, 1e-3), (1.0, 1e-3)], [1.0, 0.5]),  # in proportion to sqrt(spread / cost)
        ([(1.0, 1e-3), (1.0, 4e-3)], [1.0, 0.5]),
        ([(5.0, 0.5e-3), (0.05, 5e-3)], [1.0, estimate.MIN_SHARE]),  # a steady, expensive one: the least
        ([(0.0, 1e-3), (0.0, 2e-3)], [1.0, 1.0]),  # slices that agree exactly: nothing to prefer
        ([], []),
    ],
)
def test_slices_arm_the_neediest_function_always_and_the_others_in_proportion_to_their_need(needs, chances):
    assert estimate.inclusion(needs) == pytest.approx(chances)


def test_the_spread_of_a_functions_slices_is_the_relative_variance_of_one_slices_count():
    steady_slices, bursty, silent = estimate.Slices(), estimate.Slices(), estimate.Slices()
    for n in (100, 100):
        steady_slices.add(n, estimate.SLICE)
    assert steady_slices.spread() is None  # too few to say
    steady_slices.add(100, estimate.SLICE)
    assert steady_slices.spread() == pytest.approx(0.0)
    for n in (0, 0, 0, 400):
        bursty.add(n, estimate.SLICE)
    # Mean 100 a slice; residuals -100, -100, -100, 300: mean square 30,000 over 100^2.
    assert bursty.spread() == pytest.approx(3.0)
    for _ in range(5):
        silent.add(0, estimate.SLICE)
    assert silent.spread() == 5.0  # as if one slice had seen one call: a need, but a finite one


def _two_functions(seed: int, thin: bool) -> tuple[dict[str, float], dict[str, int]]:
    """One window of a steady function with thousands of calls in every slice (``steady``, expensive
    to watch) beside a bursty one whose slices mostly see nothing (``bursty``), both past the cap
    from the start; slices drawn as the sampler draws them, their period following their cost, each
    function armed in a slice by :func:`estimate.inclusion` (``thin``) or in every slice. Returns
    each function's reported count over the truth, and how many slices armed it."""
    steady_rate = 2_000_000
    bursty_times = bursts(every=0.06, length=0.005, rate=1_000_000)
    truth = {"steady": steady_rate * WINDOW, "bursty": len(bursty_times)}

    def seen(name: str, start: float, end: float) -> int:
        if name == "steady":
            return int(end * steady_rate) - int(start * steady_rate)
        return bisect.bisect_left(bursty_times, end) - bisect.bisect_left(bursty_times, start)

    rng = random.Random(seed)
    slices = {name: estimate.Slices() for name in truth}

    def watch(start: float, end: float, weight: float) -> float:
        needs = [(s.spread(), estimate.ARM + (s.calls / s.n if s.n else 0) * COST) for s in slices.values()]
        chances = estimate.inclusion(needs) if thin else [1.0] * len(needs)
        spent = FIXED
        for (name, each), chance in zip(slices.items(), chances, strict=True):
            if rng.random() < chance:
                calls = seen(name, start, end)
                each.add(calls, end - start, weight=weight / chance)
                spent += estimate.ARM + calls * COST
        return spent

    schedule(rng, WINDOW, watch)
    ratios = {name: estimate.calls(0, WINDOW, s)[0] / truth[name] for name, s in slices.items()}
    return ratios, {name: s.n for name, s in slices.items()}


def test_a_steady_function_expensive_to_watch_leaves_the_slices_to_the_bursty_one_beside_it():
    thinned = [_two_functions(seed, thin=True) for seed in SEEDS]
    every = [_two_functions(seed, thin=False) for seed in SEEDS]
    # The steady function's slices all agree: armed in fewer, the bursty one gets more slices
    # for the same cost...
    assert statistics.median(n["bursty"] for _, n in thinned) >= 3 * statistics.median(n["bursty"] for _, n in every)
    # ...so it is reported within 2x in every schedule, and no worse than before at the median.
    bursty = [r["bursty"] for r, _ in thinned]
    assert all(0.5 <= r <= 2 for r in bursty), bursty
    assert abs(statistics.median(bursty) - 1) <= 0.15
    worst = max(abs(math.log(r)) for r in bursty)
    assert worst < max(abs(math.log(r["bursty"])) if r["bursty"] > 0 else math.inf for r, _ in every)
    # The steady function, in a tenth of the slices, is still estimated within 10 % (weighted by
    # its chance, the estimate stays unbiased).
    assert all(0.9 <= r["steady"] <= 1.1 for r, _ in thinned), [r["steady"] for r, _ in thinned]


def test_slices_spend_the_share_a_quiet_spell_left_at_the_quick_pace_then_follow_their_cost():
    pace = estimate.Pace()
    assert pace.period() == estimate.MIN_PERIOD  # nothing kept: the cost-driven period
    pace.worked(100.0)  # a long spell with nothing to watch: its share is kept, up to CREDIT
    assert pace.credit == estimate.CREDIT
    quick = 0
    while pace.period() == estimate.QUICK_PERIOD:  # a burst: each slice costs 9 ms of callbacks
        pace.spent(0.009, estimate.QUICK_PERIOD)
        quick += 1
    assert 3 <= quick <= 6
    # The credit spent, the period is what a slice costs at SLICE_SHARE.
    period = min(max(pace.cost / estimate.SLICE_SHARE, estimate.MIN_PERIOD), estimate.PERIOD)
    assert pace.period() == pytest.approx(period)
    # Slices cheaper than their share do not buy quick ones: only a quiet spell's share is kept.
    for _ in range(100):
        pace.spent(0.0001, estimate.MIN_PERIOD)
    assert pace.credit == 0.0
    assert pace.period() == estimate.MIN_PERIOD


def test_a_slice_after_a_random_phase_stands_for_the_period_and_the_samplers_lag():
    pace = estimate.Pace()
    assert pace.weight(0.05) == 0.05
    for _ in range(50):  # slices that start 8 ms later than drawn (the sampler's waits for the GIL)
        pace.started(0.058, 0.05)
    assert pace.weight(0.05) == pytest.approx(0.058, abs=1e-4)
    assert pace.weight(estimate.QUICK_PERIOD) == pytest.approx(estimate.QUICK_PERIOD + 0.008, abs=1e-4)

"""Sampled mode's engine in this process, slices opened by hand: what it reports is what ran (3.12+)."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest
from conftest import make_app

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring is 3.12+"),
]

MODULE = """
def hot():
    pass


def other():
    pass


def working():
    return sum(range(60))


def numbers(n):
    for i in range(n):
        yield i
"""


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from coldmod_trace._internal import sampling
    from coldmod_trace._internal.appfilter import AppFilter
    from coldmod_trace._internal.core import select_engine
    from coldmod_trace.config import Mode
    from coldmod_trace.rootmarker import load

    monkeypatch.setattr(sampling.Sampler, "start", lambda self: None)  # the test opens the slices
    root = make_app(tmp_path / "app", {"mod.py": MODULE})
    apps = AppFilter(load(root), str(root))
    engine, reason = select_engine(apps, Mode.SAMPLED)
    assert (engine.name, reason) == ("sys.monitoring", "")
    spec = importlib.util.spec_from_file_location("h4_slices_mod", root / "mod.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    engine.install()
    try:
        yield engine, module, apps
    finally:
        engine.uninstall()


def _by_name(deltas):
    return {code.co_name: rest for code, *rest in deltas}


def test_below_the_cap_every_call_is_counted_exactly(engine):
    eng, mod, _ = engine
    from coldmod_trace._internal.estimate import CHUNK as DEFAULT_CAP

    for _ in range(DEFAULT_CAP):
        mod.hot()
    for _ in range(7):
        list(mod.numbers(3))  # a generator: once per call, not per resume
    assert _by_name(eng.drain()) == {"hot": [DEFAULT_CAP, False, False], "numbers": [7, False, False]}
    mod.hot()
    assert _by_name(eng.drain()) == {"hot": [1, False, False]}  # a new window counts from zero


def _spent(eng) -> None:
    """The exact budget used up, and no CPU time refills it: the call past the first chunk is the cap."""
    eng._counting.budget.seconds = 0.0
    eng._counting.budget.at = float("inf")


def test_within_the_budget_every_call_is_counted_exactly_chunk_after_chunk(engine):
    eng, mod, _ = engine
    from coldmod_trace._internal.estimate import CHUNK

    counting = eng._counting
    budget = counting.budget
    seconds = budget.seconds
    for _ in range(5 * CHUNK + 7):
        mod.hot()
    # Five chunks drawn, each priced at what a call costs: the first is free, and each chunk's end
    # is one call more (the one that draws the next). Read before the drain, which refills the budget.
    assert budget.seconds == pytest.approx(seconds - 5 * CHUNK * counting.cost())
    assert _by_name(eng.drain()) == {"hot": [5 * CHUNK + 7, False, False]}


def test_a_function_past_its_share_of_the_budget_is_capped(engine):
    eng, mod, _ = engine
    from coldmod_trace._internal.estimate import CHUNK

    eng._counting.budget.level = 3 * CHUNK  # what water-filling gave it
    for _ in range(5 * CHUNK):
        mod.hot()
        mod.other()
    eng._counting.budget.level = float("inf")
    deltas = _by_name(eng.drain())
    calls, _estimated, lower = deltas["hot"]
    # Three chunks, and the call at the end of each (two drew the next, one was the cap); no slice
    # met it: what it saw, a lower bound.
    assert (calls, lower) == (3 * CHUNK + 3, True)
    assert deltas["other"][0] == 3 * CHUNK + 3  # the same level for every function


def test_the_budget_is_shared_in_order_of_need_in_the_next_window(engine):
    eng, mod, _ = engine
    from coldmod_trace._internal.estimate import CHUNK, IN_APP

    counting = eng._counting
    counting.overhead = 1e-6 / IN_APP  # a callback's cost among the app's work: 1 us; the window's
    # budget is SHARE * its CPU time / 1 us
    counting.window_start -= 1.0  # a window of 1 s of CPU time and a little: ~10,000 calls
    counting.budget.seconds = 1e9
    for _ in range(40 * CHUNK):
        mod.hot()
    for _ in range(2 * CHUNK):
        mod.other()
    eng.drain()
    # (The level's arithmetic is test_tracer_estimate's; here: the engine feeds it the window's needs.)
    assert 2 * CHUNK + 2 < counting.budget.level < 40 * CHUNK  # other() gets all it needs, hot() is cut


def test_a_slice_costs_its_calls_at_the_in_app_price_and_the_switching_of_each_function(engine):
    eng, mod, _ = engine
    from coldmod_trace._internal.estimate import ARM, CHUNK, IN_APP

    _spent(eng)
    for _ in range(CHUNK + 1):  # both past their first chunk: capped
        mod.hot()
        mod.working()
    eng._counting.overhead = 100e-9  # the probe's figure
    eng._measured = time.monotonic() + 3600  # no measuring again meanwhile
    shared = eng._begin_slice()
    assert len(shared.hot) == 2
    # No call in it: what switching its two functions on and off cost the application's thread.
    assert eng._end_slice(shared) == pytest.approx(2 * ARM)
    shared = eng._begin_slice()
    for _ in range(10):
        mod.hot()
    # Ten calls, each at what a callback costs among the application's work, not the probe's figure.
    assert eng._end_slice(shared) == pytest.approx(10 * 100e-9 * IN_APP + 2 * ARM)


def test_a_function_whose_slices_all_agree_is_armed_in_fewer_of_them_each_standing_for_more_time(engine):
    eng, mod, _ = engine
    import random

    from coldmod_trace._internal import estimate

    _spent(eng)
    for _ in range(estimate.CHUNK + 1):  # both past their first chunk: capped
        mod.hot()
        mod.working()
    eng._measured = time.monotonic() + 3600  # no measuring again meanwhile
    for calls in (0, 0, 0, 0, 0, 200):  # the first three arm both (how each varies is not known yet)
        shared = eng._begin_slice()
        for _ in range(calls):
            mod.hot()
        for _ in range(50):
            mod.working()
        eng._end_slice(shared)
    # working() showed 50 calls in every slice, hot() all of its calls in one: hot() needs the slices.
    eng._counting.random = random.Random(1)
    armed = {"hot": 0, "working": 0}
    for _ in range(60):
        shared = eng._begin_slice(weight=0.1)
        for each, weight in zip(shared.hot, shared.weights, strict=True):
            name = each.code.co_name
            armed[name] += 1
            # The mean time between its slices: the period over its chance of being armed.
            if name == "hot":
                assert weight == pytest.approx(0.1)  # in every slice
            else:
                assert weight > 0.1 * 1.2
        for _ in range(50):
            mod.working()
        eng._end_slice(shared)
    assert armed["hot"] == 60
    assert 1 <= armed["working"] <= 45
    [(calls, estimated, lower)] = [v for k, v in _by_name(eng.drain()).items() if k == "working"]
    assert estimated
    assert not lower


def test_past_the_cap_only_calls_inside_slices_are_seen_and_too_few_slices_give_a_lower_bound(engine):
    eng, mod, _ = engine
    from coldmod_trace._internal.estimate import CHUNK as DEFAULT_CAP

    _spent(eng)

    for _ in range(DEFAULT_CAP + 500):  # the call past the cap switches hot() off: 499 unseen
        mod.hot()
    inside = 0
    for calls in (30, 0, 12):
        shared = eng._begin_slice()
        for _ in range(calls):
            mod.hot()
        inside += calls
        eng._end_slice(shared)
        for _ in range(100):  # between slices: switched off, unseen
            mod.hot()
    [(calls, estimated, lower)] = _by_name(eng.drain()).values()
    # Three slices are too few to bound an estimate: what was seen for sure, marked as such.
    assert (calls, estimated, lower) == (DEFAULT_CAP + 1 + inside, False, True)
    for _ in range(5):
        mod.hot()
    assert _by_name(eng.drain()) == {"hot": [5, False, False]}  # re-armed: exact again


def test_enough_steady_slices_of_a_working_function_give_an_estimate_that_counts_the_unseen_calls(engine):
    eng, mod, _ = engine
    from coldmod_trace._internal.estimate import CHUNK as DEFAULT_CAP

    eng.calibrate()  # as the sampler thread does at start: what a call in a slice costs more
    _spent(eng)
    for _ in range(DEFAULT_CAP + 1):
        mod.working()
    seen = DEFAULT_CAP + 1
    total = seen
    for _ in range(12):
        shared = eng._begin_slice()
        for _ in range(2000):
            mod.working()
        eng._end_slice(shared)
        for _ in range(20_000):
            mod.working()
        seen += 2000
        total += 22_000
    [(calls, estimated, lower)] = _by_name(eng.drain()).values()
    assert estimated
    assert not lower
    assert seen < calls  # more than it saw: the calls between slices are estimated
    # The calls in slices ran slower (a callback each): without taking that out, estimates run low.
    assert total / 2 <= calls <= total * 2


def test_re_arming_a_window_leaves_library_code_switched_off(engine, monkeypatch):
    eng, mod, apps = engine
    from coldmod_trace._internal.estimate import CHUNK as DEFAULT_CAP

    decided: list[str] = []
    is_app = apps.is_app
    monkeypatch.setattr(apps, "is_app", lambda code: decided.append(code.co_name) or is_app(code))
    import json

    for _ in range(3):
        _spent(eng)
        for _ in range(DEFAULT_CAP + 10):
            mod.hot()
        json.dumps({"a": 1})  # library code: decided once, switched off for good
        shared = eng._begin_slice()
        mod.hot()
        eng._end_slice(shared)
        eng.drain()
    assert decided.count("dumps") <= 1
    assert decided.count("hot") == 1  # an application function too: decided once, re-armed by itself


def _work(seconds: float) -> None:
    """CPU time of this thread that calls no application function."""
    import time

    end = time.thread_time() + seconds
    while time.thread_time() < end:
        sum(range(200))


def test_the_sampler_thread_sleeps_until_a_function_is_past_its_budget(tmp_path: Path):
    # Each wake-up of the sampler while the application holds the GIL costs CPU time on both
    # threads: while every function is counted exactly, there is nothing to watch and no reason to.
    import time

    from coldmod_trace._internal.appfilter import AppFilter
    from coldmod_trace._internal.core import select_engine
    from coldmod_trace._internal.estimate import CHUNK
    from coldmod_trace.config import Mode
    from coldmod_trace.rootmarker import load

    root = make_app(tmp_path / "app", {"mod.py": MODULE})
    eng, _ = select_engine(AppFilter(load(root), str(root)), Mode.SAMPLED)
    spec = importlib.util.spec_from_file_location("h4_sleeping_mod", root / "mod.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    looks: list[float] = []
    begin = eng._sampler._begin
    eng._sampler._begin = lambda weight: looks.append(weight) or begin(weight)
    eng.install()
    try:
        eng.calibrate()  # (the sampler thread's first act; here it is done when this returns)
        for _ in range(100):
            mod.hot()  # within the budget: exact
        _work(0.3)  # a dozen mean periods of the application's CPU time
        assert len(looks) <= 1  # one look after the random phase found nothing to watch: asleep since
        _spent(eng)
        for _ in range(2 * CHUNK):
            mod.hot()  # the call past the first chunk is the cap: it wakes the sampler
        deadline = time.monotonic() + 10
        while not eng._counting.hot and time.monotonic() < deadline:
            _work(0.01)  # slices start in the application's CPU time
        assert eng._counting.hot  # picked up by a slice
        assert len(looks) >= 2
    finally:
        eng.uninstall()


class _Clock:
    """The wall clock and the application's CPU time, advanced only by the sampler's waits."""

    def __init__(self, pace: float) -> None:
        self.wall = 0.0
        self.pace = pace  # CPU seconds the application gets per second of the clock
        self.waits: list[float] = []

    def wait(self, seconds: float) -> bool:  # the sampler's stop event: never set here
        self.waits.append(seconds)
        self.wall += seconds
        return False


def _sampler_on(clock: _Clock, monkeypatch: pytest.MonkeyPatch):
    import time
    import types

    from coldmod_trace._internal import sampling

    monkeypatch.setattr(sampling, "cpu", lambda: clock.wall * clock.pace)
    monkeypatch.setattr(
        sampling, "time", types.SimpleNamespace(monotonic=lambda: clock.wall, thread_time=time.thread_time)
    )
    sampler = sampling.Sampler(lambda weight: None, lambda shared: 0.0, lambda: None)
    sampler._stop = clock  # type: ignore[assignment]
    return sampler


@pytest.mark.parametrize("pace", [1.0, 0.25, 0.05, 3.0])
def test_the_sampler_waits_for_the_rest_of_a_gap_at_the_pace_the_application_gets(monkeypatch, pace):
    # Each look at the CPU time is a wake-up (~0.1 ms of CPU while the application holds the GIL):
    # a process that gets a share of a busy machine's core is looked at twice per gap, not every 2 ms.
    clock = _Clock(pace)
    sampler = _sampler_on(clock, monkeypatch)
    assert sampler._wait(0.1)
    assert clock.wall * pace >= 0.1  # the gap was waited for in the application's CPU time
    assert len(clock.waits) <= 3, clock.waits  # (a third: a rounding short of the target)


def test_an_idle_process_is_looked_at_less_and_less_often(monkeypatch):
    from coldmod_trace._internal import estimate

    clock = _Clock(0.0)
    sampler = _sampler_on(clock, monkeypatch)
    stop_after = 12

    def wait(seconds: float) -> bool:
        clock.waits.append(seconds)
        clock.wall += seconds
        return len(clock.waits) >= stop_after  # then asked to stop

    clock.wait = wait  # type: ignore[method-assign]
    assert not sampler._wait(0.01)
    assert clock.waits == sorted(clock.waits)
    assert clock.waits[-1] == estimate.PERIOD


def test_after_a_quiet_spell_the_sampler_spends_its_share_on_quick_slices_then_follows_their_cost(monkeypatch):
    # Nothing to watch for 3 s of the application's CPU time, then a function is capped in the
    # middle of a burst: every slice costs 9 ms of callbacks. The quiet spell's share is spent
    # first, on slices every ~10 ms; then they come at what they cost, spent at SLICE_SHARE.
    import itertools
    import random
    import sys

    from coldmod_trace._internal import estimate

    clock = _Clock(1.0)
    sampler = _sampler_on(clock, monkeypatch)
    sampler._random = random.Random(1)
    starts: list[tuple[float, float]] = []  # (CPU time, weight) of each slice
    quiet: list[float] = []

    def begin(weight: float) -> object:
        if not quiet:
            return None  # nothing past its budget yet
        starts.append((clock.wall, weight))
        return object()

    def idle(timeout: float) -> None:
        clock.wall += 3.0  # the quiet spell, until a function is capped
        quiet.append(clock.wall)

    def end(shared: object) -> float:
        clock.wall += 0.006  # the slice, its callbacks included
        return 0.009

    def wait(seconds: float) -> bool:
        clock.wall += seconds
        return len(starts) >= 12  # then asked to stop

    sampler._begin, sampler._end, sampler._idle = begin, end, idle
    clock.wait = wait  # type: ignore[method-assign]
    sampler._run()
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(starts)]
    assert all(gap < estimate.MIN_PERIOD for gap in gaps[:4]), gaps  # quick: ~10 ms apart
    assert all(gap > 4 * estimate.MIN_PERIOD for gap in gaps[-4:]), gaps  # then ~0.3 s, what they cost
    # The first slice stands for its period and the sampler's lag (two switch intervals until measured).
    assert starts[0][1] == pytest.approx(estimate.QUICK_PERIOD + 2 * sys.getswitchinterval())


def test_the_tracers_own_functions_are_decided_without_a_look_at_the_file_system(tmp_path, monkeypatch):
    # The sampler thread first sees its own functions as it opens the first slice after a cap.
    # A system call there gives the GIL to a busy application for a whole switch interval:
    # realpath's one per path component made that first slice ~40 ms late.
    import json
    import os

    from coldmod_trace._internal import appfilter, sampling
    from coldmod_trace.rootmarker import load

    root = make_app(tmp_path / "app", {"mod.py": MODULE})
    apps = appfilter.AppFilter(load(root), str(root))
    looked: list[str] = []

    def realpath(path: str, *args: object, **kwargs: object) -> str:
        looked.append(path)
        return path

    monkeypatch.setattr(appfilter.os.path, "realpath", realpath)
    assert not apps.is_app(sampling._Hot.__init__.__code__)
    assert looked == []
    # A library's file outside the root is still looked at (reached through a symlink?).
    assert not apps.is_app(json.JSONEncoder.encode.__code__)
    assert looked == [os.path.normpath(json.__file__.replace("__init__.py", "encoder.py"))]

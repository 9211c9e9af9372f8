"""Exact mode counts every call exactly: threads, recursion, generators, coroutines, methods, nesting."""

from __future__ import annotations

import pytest
from conftest import Collector, clean_env, make_app, run_py

pytestmark = pytest.mark.timeout(120)

APP = """
import asyncio
import threading

import coldmod_trace

coldmod_trace.start(mode="exact", flush_interval=0.1)

from pkg import helpers


def work():
    pass


def recurse(n):
    return 0 if n == 0 else recurse(n - 1)


def numbers(n):
    for i in range(n):
        yield i


async def pause(n):
    for _ in range(n):
        await asyncio.sleep(0)


async def stream(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i


async def main():
    for _ in range(15):
        await pause(3)
    for _ in range(4):
        async for _ in stream(5):
            pass


class Shop:
    def buy(self):
        return 1

    @property
    def total(self):
        return 2


def outer():
    def inner():
        return 3

    return inner()


def never_called():
    pass


def spin():
    for _ in range(1000):
        work()


threads = [threading.Thread(target=spin) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
recurse(50)
for _ in range(20):
    assert sum(numbers(5)) == 10
asyncio.run(main())
shop = Shop()
for _ in range(7):
    shop.buy()
    shop.total
for _ in range(3):
    outer()
square = lambda x: x * x  # noqa: E731 - lambdas are not trace sources
[square(i) for i in range(10)]
helpers.helper()
helpers.helper()
"""

HELPERS = """
def helper():
    return 1
"""

EXPECTED = {
    "app.work": 8000,
    "app.spin": 8,
    "app.recurse": 51,
    "app.numbers": 20,
    "app.pause": 15,
    "app.stream": 4,
    "app.main": 1,
    "app.Shop.buy": 7,
    "app.Shop.total": 7,
    "app.outer": 3,
    "app.outer.<locals>.inner": 3,
    "pkg.helpers.helper": 2,
}


def test_exact_counts_for_threads_recursion_generators_coroutines(tmp_path, collector: Collector):
    root = make_app(tmp_path / "shop", {"app.py": APP, "pkg/__init__.py": "", "pkg/helpers.py": HELPERS})
    result = run_py(root, ["app.py"], clean_env(**collector.env))
    assert result.returncode == 0, result.stderr
    collector.wait_for(lambda r: r.totals() == EXPECTED)
    recorder = collector.recorder
    assert recorder.totals() == EXPECTED  # nothing else: no lambda, no tracer, no grpc
    assert recorder.estimated() == set()
    [register] = recorder.registers
    assert register.app == "shop"
    keys = {s.key for s in register.sources}
    assert set(EXPECTED) | {"app.never_called"} <= keys
    assert register.process.mode == "exact"
    assert register.process.engine in ("sys.monitoring", "sys.settrace")
    assert len(register.process.instance_id) == 32
    [instance] = recorder.instances()
    assert recorder.sequences(instance) == list(range(1, len(recorder.sequences(instance)) + 1))


def test_a_drain_reports_only_the_counters_that_moved_with_their_exact_calls():
    # An application of tens of thousands of functions has as many counters, few of which move
    # between two flushes; the drain compares them in bulk and looks only at those that moved.
    from coldmod_trace._internal.counting import Counting, value

    counting = Counting()
    counters = [counting.key_counter(f"app.f{i}") for i in range(20_000)]
    assert counting.drain(None, None) == []  # nothing called: nothing to report
    for i in (3, 17, 19_999):
        for _ in range(i % 7 + 1):
            next(counters[i])
    assert sorted(counting.drain(None, None)) == [
        ("app.f17", 4, False, False), ("app.f19999", 1, False, False), ("app.f3", 4, False, False)
    ]
    assert counting.drain(None, None) == []  # reported once
    next(counters[17])
    late = counting.key_counter("app.late")  # a module imported between two flushes
    next(late)
    counting.forget("app.f3")  # (its counter is no longer drained)
    assert sorted(counting.drain(None, None)) == [("app.f17", 1, False, False), ("app.late", 1, False, False)]
    assert value(counters[17]) == 5
    next(counters[5])
    counting.reset()  # a forked child: counts from here
    next(counters[5])
    assert counting.drain(None, None) == [("app.f5", 1, False, False)]

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

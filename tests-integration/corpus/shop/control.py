"""Definitions inside compound statements, nested functions, generators, coroutines."""

import asyncio
import contextlib
import sys

if sys.version_info >= (3, 11):

    def version_specific():
        return "new"

else:

    def version_specific():
        return "old"


try:
    import json

    def loads(text):
        return json.loads(text)

except ImportError:

    def loads(text):
        raise RuntimeError(text)

finally:

    def after_try():
        return None


for _name in ("a",):

    def in_for_loop():
        return _name

while False:

    def in_while_loop():
        return None

with contextlib.suppress(Exception):

    def in_with_block():
        return None


def outer(x):
    def inner(y):
        def innermost():
            return x + y

        return innermost()

    class Local:
        def method(self):
            return x

    squares = [v * v for v in range(x)]  # a comprehension: not a source
    double = lambda v: v * 2  # noqa: E731 (a lambda: not a source)
    return inner(1) + Local().method() + sum(squares) + double(0)


def make_global():
    global promoted

    def promoted():
        return "qualname is 'promoted', not 'make_global.<locals>.promoted'"

    return promoted


def counter(n):
    i = 0
    while i < n:
        yield i
        i += 1


async def fetch(delay):
    await asyncio.sleep(delay)
    return delay


async def agen(n):
    for i in range(n):
        yield i
        await asyncio.sleep(0)


def recursive(n):
    return 0 if n <= 0 else 1 + recursive(n - 1)


def matcher(value):
    match value:
        case {"kind": "a"}:

            def in_match_case():
                return "a"

            return in_match_case()
        case _:
            return None

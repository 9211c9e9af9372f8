"""Per-function counters, shared by both engines: what a count belongs to, and how it is drained.

An engine hands each application function a *tick*: one C callable that its
hot path calls once per call. Here the tick is a step of a :data:`Counter`
(an ``itertools.repeat(None, N)`` that counts down from ``N``), cumulative and
atomic under the GIL (exact across threads); ``drain`` reports the difference
from the value it read last time, so a counter is never swapped and no call can
fall between two counters. Sampled mode's windows and slices
extend this in :mod:`coldmod_trace._internal.sampling`.

All mutation happens under one lock, off the hot path.
"""

from __future__ import annotations

import itertools
import operator
import sys
import threading
from collections.abc import Callable
from types import CodeType
from typing import Protocol

from coldmod_trace.config import Mode

__all__ = ["Counted", "Counter", "Counting", "Delta", "Engine", "counter", "value"]

Counted = CodeType | str
"""What a count belongs to: a code object, or the key of a function the import hook rewrote."""
Delta = tuple[Counted, int, bool, bool]
"""``(code or key, calls, estimated, lower_bound)``: what an engine counted for one function since the last drain."""
#: ``rearm(id(code), tick)`` puts a function's new tick in place and re-enables its events;
#: ``disarm(code)`` switches them off (the sys.monitoring engine's; exact counting uses neither).
Rearm = Callable[[int, Callable[[], object]], None]
Disarm = Callable[[CodeType], None]
Counter = itertools.repeat
"""A call counter: ``next`` on it counts one call (C, no allocation: it returns None), and its
length hint, the calls it has left, is read in C (``itertools.count``'s value only through its
repr, ten times slower: a drain of 70,000 functions' counters took 240 ms)."""
#: What a counter starts from: no process calls one function this often.
_FULL = sys.maxsize
_LEFT = itertools.repeat.__length_hint__  # the method itself: no lookup per counter


class Engine(Protocol):
    """What the tracer needs from an engine."""

    name: str
    mode: Mode

    def install(self) -> None:
        """Start counting (every thread)."""

    def uninstall(self) -> None:
        """Stop counting; counts so far stay drainable."""

    def drain(self) -> list[Delta]:
        """Calls counted since the last drain (and, in sampled mode, start a new window)."""

    def forget(self, code: Counted) -> None:
        """Stop counting a code object (or key) that turned out not to be a trace source."""

    def reset_after_fork(self) -> None:
        """In a forked child: zero every count, keep what was learned about code objects."""

    def key_counter(self, key: str) -> Counter[None]:
        """The counter of ``key``'s calls (for code the import hook rewrote: it calls ``next`` on it)."""

    def exclude(self, code: CodeType) -> None:
        """Never count ``code`` here: the import hook compiled its counter into it."""


def counter() -> Counter[None]:
    """A new call counter at zero."""
    return itertools.repeat(None, _FULL)


def value(counter: Counter[None]) -> int:
    """Calls a counter has counted."""
    return _FULL - _LEFT(counter)


class Counting:
    """Exact counters: one :data:`Counter` per function (or per rewritten function's key)."""

    mode = Mode.EXACT

    def __init__(self) -> None:
        self.lock = threading.RLock()  # re-entrant: a first sight may happen while it is held
        self.codes: dict[int, Counted] = {}  # keeps counted code alive, so id() stays unique
        self.counters: dict[int, Counter[None]] = {}
        self.reported: dict[int, int] = {}  # what each counter had left when it was last reported
        self.keys: dict[str, Counter[None]] = {}

    def new_tick(self, code: CodeType) -> Callable[[], object]:
        """Register an application function; returns the C callable that counts one call."""
        cid = id(code)
        self.codes.setdefault(cid, code)
        return self.counters.setdefault(cid, counter()).__next__

    def key_counter(self, key: str) -> Counter[None]:
        """The counter of a rewritten function's key: one per key, shared by every load of its module."""
        made = self.keys.get(key)
        if made is None:
            made = self.keys[key] = counter()
            self.codes[id(key)] = key
            self.counters[id(key)] = made
        return made

    def drain(self, rearm: Rearm, disarm: Disarm) -> list[Delta]:
        """Every counter's calls since the last drain.

        An application of 70,000 functions has as many counters, and few of them move
        between two flushes: what each has left is read and compared with the last
        report in C (``map``); only the counters that moved are looked at in Python.
        """
        cids, counters = list(self.counters), list(self.counters.values())  # (mutated only under the lock)
        left = list(map(_LEFT, counters))
        moved = itertools.compress(range(len(cids)), map(operator.ne, left, map(self.reported.get, cids)))
        out: list[Delta] = []
        for i in moved:
            cid = cids[i]
            delta = self.reported.get(cid, _FULL) - left[i]
            self.reported[cid] = left[i]
            if delta:
                out.append((self.codes[cid], delta, False, False))
        return out

    def reset(self) -> dict[int, Callable[[], object]]:
        """Zero every count (forked child); returns the ticks to install (none here: counters stay)."""
        # The parent's lock may have been held by a thread the child does not have.
        self.lock = threading.RLock()  # re-entrant: a first sight may happen while it is held
        # The parent reports what it counted; the child starts from the values at the fork
        # (counters are not replaced: rewritten code holds on to its key's counter).
        self.reported = {cid: _LEFT(each) for cid, each in self.counters.items()}
        return {}

    def forget(self, code: Counted) -> None:
        """Drop a code object's (or key's) counters (it is not a trace source)."""
        cid = id(code)
        self.counters.pop(cid, None)
        self.reported.pop(cid, None)

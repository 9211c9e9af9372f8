"""The ``sys.monitoring`` engine (3.12+): ``PY_START``, foreign code disabled at first sight.

Exact mode uses one tool id: every application call runs the callback, whose
tick is a counter's step. Sampled mode uses two: the first (global
``PY_START``) only sees each code object once and arms the function's *local*
``PY_START`` on the second, so that each function can be switched off past its
cap and back on for a slice on its own (:mod:`coldmod_trace._internal.sampling`).
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable
from types import CodeType
from typing import Any

from coldmod_trace._internal.appfilter import AppFilter
from coldmod_trace._internal.counting import Counted, Counter, Counting, Delta
from coldmod_trace._internal.estimate import ARM, CHUNK
from coldmod_trace._internal.sampling import (
    SLICE_CALLS,
    SLICE_RUNS,
    CallbackCost,
    SampledCounting,
    Sampler,
    Slice,
)
from coldmod_trace.config import Mode

__all__ = ["SysMonitoringEngine"]

#: How often the callback's cost is measured again as a slice closes (s): it moves with the machine
#: (on a busy one, from one moment to the next: the clock's time, not the application's CPU time).
REMEASURE = 0.5


def _py_start_callback(
    ticks: dict[int, Callable[[], object]], first_sight: Callable[[CodeType], object]
) -> Callable[[CodeType, int], object]:
    """The hot path on 3.12+: one dict lookup and one C call per application call."""

    def py_start(code: CodeType, offset: int, _id: Callable[[object], int] = id) -> object:
        # (`_id` is a default argument: a local load, cheaper than a builtin lookup.)
        try:  # zero-cost on 3.11+ when nothing is raised
            # One C call, the one that counts: a counter's step (exact), a
            # window step that returns DISABLE past its cap (sampled), a slice's
            # tick, or a repeat(DISABLE) step for code we do not count. The return
            # value is sys.monitoring's: DISABLE switches PY_START off for this function.
            return ticks[_id(code)]()  # by id: hashing a code object is slow
        except KeyError:  # first call of this code object since start(), once per code
            return first_sight(code)  # decide (app or not), register, count this call

    return py_start


class SysMonitoringEngine:
    """``sys.monitoring`` PY_START on one tool id (exact) or two (sampled: global first sight, local counts)."""

    name = "sys.monitoring"

    def __init__(
        self, tool: int, apps: AppFilter, mode: Mode, chunk: int = CHUNK, local: int | None = None
    ) -> None:
        """Use the already claimed ``tool`` id (and ``local`` for sampled mode; None: count exactly)."""
        self.mode = mode
        self.tool = tool
        self.local = local
        self._apps = apps
        self._mon: Any = sys.monitoring  # type: ignore[attr-defined,unused-ignore]
        self._ticks: dict[int, Callable[[], object]] = {}
        self._installed = False
        self._sampler: Sampler | None = None
        self._cost: CallbackCost | None = None
        self._counting: Counting
        if mode is Mode.SAMPLED and local is not None:
            sampled = self._counting = SampledCounting(chunk, self._mon.DISABLE, self._ticks)
            self._sampler = Sampler(
                self._begin_slice, self._end_slice, self.calibrate, sampled.wait_for_cap, sampled.nudge
            )
            self._measured = 0.0  # when the callback's cost was last measured (monotonic s)
            self._cost = CallbackCost(sampled, self._ticks, self._arm_probe)
            self._callback = _py_start_callback(self._ticks, self._not_armed)
        else:
            self._counting = Counting()
            self._callback = _py_start_callback(self._ticks, self._first_sight)

    def _first_sight(self, code: CodeType) -> object:
        """Once per code object (callbacks do not nest, so this runs unobserved)."""
        if not self._apps.is_app(code):
            return self._mon.DISABLE  # never called again for this code
        with self._counting.lock:
            tick = self._ticks.setdefault(id(code), self._counting.new_tick(code))
        return tick()

    def _first_sight_sampled(self, code: CodeType, offset: int) -> object:
        """The global tool's callback in sampled mode: arm application functions' local events, once."""
        if id(code) in self._ticks:
            return self._mon.DISABLE  # seen again after someone's restart_events(): the local tool counts
        if not self._apps.is_app(code):
            return self._mon.DISABLE
        with self._counting.lock:
            tick = self._ticks.setdefault(id(code), self._counting.new_tick(code))
        self._mon.set_local_events(self.local, code, self._mon.events.PY_START)
        tick()  # this call: the local event fires from the next one on
        return self._mon.DISABLE

    def _not_armed(self, code: CodeType) -> object:
        """The local tool saw code it does not count (forgotten): switch it off."""
        return self._mon.DISABLE

    def _rearm(self, cid: int, tick: Callable[[], object]) -> None:
        """Install a function's tick and switch its local PY_START back on (clears a DISABLE)."""
        self._ticks[cid] = tick
        code = self._counting.codes.get(cid)
        if isinstance(code, CodeType) and self.local is not None and self._installed:
            self._mon.set_local_events(self.local, code, 0)
            self._mon.set_local_events(self.local, code, self._mon.events.PY_START)

    def _disarm(self, code: CodeType) -> None:
        """Switch a function's local PY_START off (the end of its slice)."""
        if self._installed:  # (after uninstall the tool id is no longer ours: the last drain)
            self._mon.set_local_events(self.local, code, 0)

    def _arm_probe(self, code: CodeType, on: bool) -> None:
        """The calibration probe's local PY_START on or off."""
        self._mon.set_local_events(self.local, code, self._mon.events.PY_START if on else 0)

    def _begin_slice(self, weight: float = 1.0) -> Slice | None:
        """On the sampler thread: one slice for every hot function, each re-armed on its own."""
        assert isinstance(self._counting, SampledCounting)
        with self._counting.lock:
            if not self._installed:
                raise RuntimeError("uninstalled")  # the sampler thread ends its round quietly
            return self._counting.open_slice(self._rearm, weight)

    def _end_slice(self, which: Slice) -> float:
        """On the sampler thread, a slice later: measure the callback's cost again (at most every
        ``REMEASURE`` s; while the slice is still open: the sampler's CPU time is not the
        application's), then close the slice; returns what its callbacks cost (CPU s)."""
        counting, cost = self._counting, self._cost
        assert isinstance(counting, SampledCounting)
        assert cost is not None
        fresh = None
        if which.hot and time.monotonic() - self._measured >= REMEASURE:
            self._measured = time.monotonic()
            fresh = cost.measure(SLICE_RUNS, SLICE_CALLS, self._ready)
        with counting.lock:
            if fresh is not None:
                counting.overhead = cost.recent(fresh)
            # Its callbacks, and what arming and disarming each function cost the application's
            # threads (not the sampler's: its own CPU time is counted by the sampler).
            return counting.close_slice(self._disarm, which) * counting.cost() + len(which.hot) * ARM

    def _ready(self) -> bool:
        return self._installed

    def calibrate(self) -> None:
        """Measure what a call in a slice costs more (once; sampled mode only; off the app's threads)."""
        if self._cost is not None:
            self._cost.calibrate(self._ready)

    def install(self) -> None:
        """Register the callback(s) and enable PY_START for every thread."""
        events = self._mon.events
        self._installed = True
        if self._sampler is not None:
            self._mon.register_callback(self.tool, events.PY_START, self._first_sight_sampled)
            self._mon.register_callback(self.local, events.PY_START, self._callback)
            self._sampler.start()
        else:
            self._mon.register_callback(self.tool, events.PY_START, self._callback)
        self._mon.set_events(self.tool, events.PY_START)

    def uninstall(self) -> None:
        """Disable events and give the tool id(s) back."""
        if self._sampler is not None:
            self._sampler.stop()
        with self._counting.lock:  # not while the sampler thread is between two calls of ours
            self._uninstall()

    def _uninstall(self) -> None:
        """Switch every event of ours off and free the ids (under the lock)."""
        self._installed = False
        for tool in (self.tool, self.local):
            if tool is None:
                continue
            try:
                self._mon.set_events(tool, 0)
                for cid, code in list(self._counting.codes.items()):
                    if tool == self.local and isinstance(code, CodeType) and cid in self._ticks:
                        self._mon.set_local_events(tool, code, 0)
                self._mon.register_callback(tool, self._mon.events.PY_START, None)
                self._mon.free_tool_id(tool)
            except ValueError:
                pass  # already freed (stop after a failed start, or twice)

    def drain(self) -> list[Delta]:
        """Counts since the last drain; in sampled mode, a new window for every function called."""
        with self._counting.lock:
            return self._counting.drain(self._rearm, self._disarm)

    def forget(self, code: Counted) -> None:
        """Not a trace source after all: disable it like foreign code."""
        with self._counting.lock:
            if isinstance(code, CodeType):
                self._ticks[id(code)] = itertools.repeat(self._mon.DISABLE).__next__
            self._counting.forget(code)

    def key_counter(self, key: str) -> Counter[None]:
        """The counter of a rewritten function's key."""
        with self._counting.lock:
            return self._counting.key_counter(key)

    def exclude(self, code: CodeType) -> None:
        """Counted by its own compiled-in counter: disabled at its first call, never counted here."""
        with self._counting.lock:
            self._counting.codes.setdefault(id(code), code)  # keep alive: its id is cached
            self._ticks[id(code)] = itertools.repeat(self._mon.DISABLE).__next__

    def reset_after_fork(self) -> None:
        """Fresh counters; re-arm whatever the parent had switched off; a sampler thread of our own."""
        ticks = self._counting.reset()  # first: it replaces the lock a vanished thread may hold
        if self._cost is not None:
            self._cost.after_fork()  # likewise
        with self._counting.lock:
            for cid, tick in ticks.items():
                self._rearm(cid, tick)
        if self._sampler is not None:
            self._sampler.start()

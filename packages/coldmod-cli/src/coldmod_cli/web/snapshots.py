"""The heatmaps the pages read: encoded once, shared by every page, bounded in memory and in CPU.

Reading a 100,000-key heatmap costs the collector about a second, and a busy
app changes many times a second, so "read it again on every change, for every
page" would let a few open pages use a core. Instead, per app:

- one encoded copy (gzipped JSON columns) is kept with the change count it
  saw, and served as long as no change came since;
- after a report, the copy is read again at most once per ``gap`` (the larger
  of ``MIN_GAP_S`` and twice what the last read cost); meanwhile pages get the
  copy they have, and when the gap ends the pages are told to fetch again, so
  the last change of a burst is never missed;
- a register, reset or delete replaces the whole heatmap: its copy is dropped
  at once;
- one read at a time per app: pages asking together wait for the same read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MIN_GAP_S", "Snapshots"]

#: The shortest time between two reads of one app's heatmap while reports keep coming (small apps:
#: a flush still reaches the screen within a second; big ones wait twice their read instead).
MIN_GAP_S = 0.5
#: Apps whose encoded heatmap is kept (under 1 MB each gzipped at 100,000 keys).
KEPT = 4


@dataclass(frozen=True)
class _Copy:
    data: bytes
    changes: int    # the app's change count when the read began
    finished: float  # monotonic seconds
    cost: float     # seconds the read and the encoding took


class Snapshots:
    """Encoded heatmaps by app (see the module docstring)."""

    def __init__(
        self,
        read: Callable[[str], bytes],
        notify: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``read(app)`` reads and encodes a heatmap (raising like the store); ``notify(app)`` tells the pages."""
        self._read = read
        self._notify = notify
        self._clock = clock
        self._lock = threading.Lock()
        self._copies: dict[str, _Copy] = {}  # oldest first
        self._changes: dict[str, int] = {}
        self._reading: dict[str, threading.Lock] = {}
        self._timers: dict[str, threading.Timer] = {}
        self._closed = False

    def changed(self, app: str, whole: bool) -> None:
        """The store changed ``app`` (``whole``: its key set or every count); called from its writer thread."""
        with self._lock:
            self._changes[app] = self._changes.get(app, 0) + 1
            if whole:
                self._copies.pop(app, None)

    def get(self, app: str) -> bytes:
        """The app's encoded heatmap: the kept copy when allowed, else a new read (one at a time per app)."""
        kept = self._usable(app)
        if kept is not None:
            return kept
        with self._lock:
            reading = self._reading.setdefault(app, threading.Lock())
        with reading:
            kept = self._usable(app)  # someone else may have just read it
            if kept is not None:
                return kept
            with self._lock:
                changes = self._changes.get(app, 0)
            started = self._clock()
            data = self._read(app)
            finished = self._clock()
            with self._lock:
                self._copies.pop(app, None)
                self._copies[app] = _Copy(data, changes, finished, finished - started)
                while len(self._copies) > KEPT:
                    del self._copies[next(iter(self._copies))]
                self._changes = {a: n for a, n in self._changes.items() if a in self._copies}
                self._reading = {a: lock for a, lock in self._reading.items() if a in self._copies or a == app}
            return data

    def _usable(self, app: str) -> bytes | None:
        """The kept copy if it is current, or recent enough (then a later refresh is scheduled)."""
        with self._lock:
            copy = self._copies.get(app)
            if copy is None:
                return None
            if copy.changes == self._changes.get(app, 0):
                return copy.data
            due = copy.finished + max(MIN_GAP_S, 2 * copy.cost)
            now = self._clock()
            if now >= due or self._closed:
                return None
            if app not in self._timers:
                timer = threading.Timer(due - now, self._due, (app,))
                timer.daemon = True
                self._timers[app] = timer
                timer.start()
            return copy.data

    def _due(self, app: str) -> None:
        """A gap has passed with changes not yet read: the pages fetch again (and get them)."""
        with self._lock:
            self._timers.pop(app, None)
            if self._closed:
                return
        self._notify(app)

    def close(self) -> None:
        """Cancel pending refreshes (the server is stopping)."""
        with self._lock:
            self._closed = True
            timers = list(self._timers.values())
            self._timers.clear()
        for timer in timers:
            timer.cancel()

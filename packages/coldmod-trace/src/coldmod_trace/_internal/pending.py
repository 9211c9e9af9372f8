"""The sender's bounded buffer: deltas per key in an open window, sealed into numbered batches.

Like OpenTelemetry's ``BatchProcessor`` buffer, apart from the delivery that
drains it (:mod:`coldmod_trace._internal.sender`):

- Deltas are aggregated per key in the *open window*; what does not fit under
  :data:`MAX_PENDING` (open plus sealed) is dropped, counted, and the count
  travels in the next batch's ``dropped_updates``.
- :meth:`Pending.seal` closes the open window into a batch with the next
  sequence number. Batches leave in sequence order, one at a time, and only
  when acknowledged (:meth:`Pending.delivered`) or refused for good
  (:meth:`Pending.refused`, whose deltas then count as dropped): the
  collector's exactly-once relies on a tracer resending only its oldest batch.
- A window never spans a UTC midnight of the sender's wall clock (the collector
  files a batch's counts under the UTC day of its ``window_start_ms``): adding
  deltas to a window opened on an earlier UTC day seals it, ending at that
  day's last millisecond. The sender wakes at each midnight to collect, so the
  calls drained then (made up to a few milliseconds after midnight) close the
  day that ends.

Pure and clocked by its callers (``now_ms``): tests drive midnight without waiting for one.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["DAY_MS", "MAX_PENDING", "Batch", "Pending", "next_midnight_ms"]

#: Most deltas held (open window plus sealed batches); beyond, updates are dropped and counted.
MAX_PENDING = 65_536
DAY_MS = 86_400_000


def next_midnight_ms(now_ms: int) -> int:
    """The first millisecond of the UTC day after ``now_ms``'s."""
    return (now_ms // DAY_MS + 1) * DAY_MS


@dataclass
class Batch:
    """One sealed window: its sequence number, its time span and the deltas per key."""

    sequence: int
    window_start_ms: int
    window_end_ms: int
    deltas: dict[str, list[int | bool]]  # key -> [calls, estimated, lower_bound]
    dropped: int
    wire: object = field(default=None, compare=False)  # the serialised request, built once by the sender


class Pending:
    """Bounded deltas waiting for the collector: one open window and the sealed batches in order."""

    def __init__(self, limit: int = MAX_PENDING) -> None:
        """Nothing pending; at most ``limit`` deltas held."""
        self.limit = limit
        self._lock = threading.Lock()
        self._open: dict[str, list[int | bool]] = {}
        self._open_since_ms = 0
        self._dropped = 0
        self._sealed: deque[Batch] = deque()
        self._held = 0  # deltas in sealed batches
        self._sequence = 0

    def add(self, deltas: Iterable[tuple[str, int, bool, bool]], now_ms: int) -> None:
        """Aggregate ``(key, calls, estimated, lower_bound)`` into the open window; seal it at a UTC midnight."""
        with self._lock:
            if not self._open and not self._dropped:
                self._open_since_ms = now_ms
            room = self.limit - self._held
            for key, calls, estimated, lower_bound in deltas:
                entry = self._open.get(key)
                if entry is not None:
                    entry[0] += calls
                    entry[1] = entry[1] or estimated
                    entry[2] = entry[2] or lower_bound
                elif len(self._open) < room:
                    self._open[key] = [calls, estimated, lower_bound]
                else:
                    self._dropped += 1
            if (self._open or self._dropped) and self._open_since_ms // DAY_MS < now_ms // DAY_MS:
                self._seal(next_midnight_ms(self._open_since_ms) - 1)

    def seal(self, now_ms: int) -> None:
        """Close the open window (if it holds anything) into the next batch."""
        with self._lock:
            if self._open or self._dropped:
                day_end = next_midnight_ms(self._open_since_ms) - 1
                self._seal(min(now_ms, day_end))

    def _seal(self, end_ms: int) -> None:
        self._sequence += 1
        batch = Batch(self._sequence, self._open_since_ms, max(end_ms, self._open_since_ms), self._open, self._dropped)
        self._sealed.append(batch)
        self._held += len(batch.deltas)
        self._open = {}
        self._dropped = 0
        self._open_since_ms = 0

    def oldest(self) -> Batch | None:
        """The batch to send now: the oldest sealed one."""
        with self._lock:
            return self._sealed[0] if self._sealed else None

    def delivered(self, batch: Batch) -> None:
        """The collector acknowledged ``batch``: forget it."""
        with self._lock:
            self._forget(batch)

    def refused(self, batch: Batch) -> int:
        """The collector refused ``batch`` for good: forget it, count its deltas as dropped; how many."""
        with self._lock:
            if not self._forget(batch):
                return 0
            lost = len(batch.deltas) + batch.dropped
            self._dropped += lost
            if not self._open:
                self._open_since_ms = self._open_since_ms or batch.window_end_ms
            return lost

    def _forget(self, batch: Batch) -> bool:
        if self._sealed and self._sealed[0] is batch:
            self._sealed.popleft()
            self._held -= len(batch.deltas)
            return True
        return False

    def clear(self) -> None:
        """Forget everything (tracing stopped for good)."""
        with self._lock:
            self._open = {}
            self._sealed.clear()
            self._held = 0
            self._dropped = 0

    def empty(self) -> bool:
        """Nothing open, sealed or dropped-and-untold."""
        with self._lock:
            return not self._open and not self._sealed and not self._dropped

    def status(self) -> dict[str, int]:
        """Counts for tests and debugging: open deltas, sealed deltas, drops not yet told, last sequence."""
        with self._lock:
            return {
                "pending": len(self._open),
                "inflight": self._held,
                "dropped": self._dropped,
                "sequence": self._sequence,
            }

"""Live updates for browsers: one :class:`Feed` per open page, filled from store changes and the broker.

The store calls its subscribers from its writer thread, which must never
wait for a browser: a change only marks the app in each feed (a set, so a
burst of commits collapses into one event) and wakes the feed's writer.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["Feed", "Hub"]

#: Connect events a slow page may fall behind by before it is told to start over.
MAX_PENDING = 10_000


class Feed:
    """What one page has yet to receive: changed apps and session events, as SSE frames."""

    def __init__(self) -> None:
        """An empty feed."""
        self._cond = threading.Condition()
        self._apps: set[str] = set()
        self._events: deque[tuple[str, str]] = deque()
        self._overflow = False
        self.closed = False

    def app_changed(self, app: str) -> None:
        """Mark ``app`` changed (called from the store's writer thread: never blocks)."""
        with self._cond:
            self._apps.add(app)
            self._cond.notify()

    def push(self, event: str, data: Any) -> None:
        """Queue one named event with JSON data."""
        with self._cond:
            if len(self._events) >= MAX_PENDING:
                self._overflow = True
                self._events.clear()
            self._events.append((event, json.dumps(data, separators=(",", ":"))))
            self._cond.notify()

    def close(self) -> None:
        """Wake the writer and make it stop."""
        with self._cond:
            self.closed = True
            self._cond.notify()

    def take(self, timeout: float) -> list[tuple[str, str]]:
        """Wait up to ``timeout`` seconds for events; returns them (empty on timeout or close)."""
        with self._cond:
            if not (self._apps or self._events or self.closed):
                self._cond.wait(timeout)
            if self.closed:
                return []
            frames = [("heatmap", json.dumps({"app": app})) for app in sorted(self._apps)]
            if self._overflow:
                frames.append(("reload", "{}"))
                self._overflow = False
            frames.extend(self._events)
            self._apps.clear()
            self._events.clear()
            return frames


class Hub:
    """Every open feed; fans store changes out to them."""

    def __init__(self) -> None:
        """No feeds yet."""
        self._lock = threading.Lock()
        self._feeds: set[Feed] = set()

    def on_change(self, change: Any) -> None:
        """The store's subscriber: mark the changed app in every feed."""
        with self._lock:
            feeds = list(self._feeds)
        for feed in feeds:
            feed.app_changed(change.app)

    def add(self, feed: Feed) -> Callable[[], None]:
        """Start delivering changes to ``feed``; returns the remover."""
        with self._lock:
            self._feeds.add(feed)

        def remove() -> None:
            """Stop delivering changes to this feed."""
            with self._lock:
                self._feeds.discard(feed)

        return remove

    def close(self) -> None:
        """Close every feed (the server is stopping)."""
        with self._lock:
            feeds = list(self._feeds)
            self._feeds.clear()
        for feed in feeds:
            feed.close()

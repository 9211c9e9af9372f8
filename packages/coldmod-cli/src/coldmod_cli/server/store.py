"""The store interface: what the collector needs from wherever heatmaps live.

One small interface, so that SQLite (here) and Redis (later) are
interchangeable. Every method is safe to call from any thread. Writes are
applied at most once and are durable when the call returns; reads see whole
transactions (a reader never sees half of a Register).

Change notifications (the hook for the web UI): ``store.subscribe(callback)``
registers ``callback(change: Change)``; it is called after every commit that
changed an app, from the store's writer thread, one ``Change`` per app and
commit. A callback must return quickly and never block (hand the change to
your own thread or event loop, e.g. ``loop.call_soon_threadsafe``); an
exception it raises is logged and ignored. ``subscribe`` returns a function
that unsubscribes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

__all__ = [
    "AppSummary",
    "Batch",
    "Change",
    "Entry",
    "Heatmap",
    "RegisterResult",
    "ReportResult",
    "SchemaError",
    "Source",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "UnknownApp",
    "open_store",
]


class StoreError(Exception):
    """A store cannot be opened or used; the message is one sentence for the user."""


class SchemaError(StoreError):
    """The store file is foreign, or its schema is newer or older than this version reads."""


class UnknownApp(StoreError):
    """The app has never been registered."""


class StoreUnavailable(StoreError):
    """The store is closing or failed to write; the caller may retry later."""


@dataclass(frozen=True, slots=True)
class Source:
    """A function that might run: its key and where it is defined."""

    key: str
    path: str = ""
    lines: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Batch:
    """One validated Report: ``(instance_id, sequence)`` identifies it.

    The deltas are three parallel lists (key, calls, estimated) with unique
    keys: a batch carries thousands, and lists let the store merge them with
    loops that run in C rather than one Python step per delta.
    """

    app: str
    instance_id: str
    sequence: int
    window_start_ms: int
    window_end_ms: int
    keys: list[str]
    calls: list[int]
    estimated: list[bool]
    dropped_updates: int = 0


@dataclass(frozen=True, slots=True)
class RegisterResult:
    """How a Register changed the app's set of keys."""

    kept: int
    added: int
    removed: int


@dataclass(frozen=True, slots=True)
class ReportResult:
    """The outcome of a Report (the same outcome when the batch is resent)."""

    sequence: int
    duplicate: bool
    unknown_keys: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One key of a heatmap."""

    key: str
    calls: int
    estimated: bool
    first_seen_ms: int
    last_seen_ms: int
    tracked_since_ms: int
    path: str
    lines: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Heatmap:
    """One app's heatmap, read in one transaction."""

    app: str
    entries: list[Entry]
    registered_ms: int
    dropped_unknown: int
    dropped_updates: int


@dataclass(frozen=True, slots=True)
class AppSummary:
    """One line of ListApps."""

    app: str
    keys: int
    cold_keys: int
    calls: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class Change:
    """What one commit changed in one app (sent to subscribers).

    ``kind`` is ``"register"``, ``"report"`` or ``"reset"``; ``keys`` holds
    the keys whose counts changed for a report, and is empty otherwise (a
    register or reset changes the whole heatmap: fetch it again).
    """

    app: str
    kind: str
    keys: frozenset[str] = field(default_factory=frozenset)


class Store(Protocol):
    """Where heatmaps live. See the module docstring for the guarantees."""

    url: str

    def register(self, app: str, sources: Sequence[Source], now_ms: int, fingerprint: str = "") -> RegisterResult:
        """Replace the app's set of keys atomically; kept keys keep their counts.

        ``fingerprint`` digests the set; when it equals the last one stored,
        the store may skip the work (a fleet restarting sends the same set).
        """
        ...

    def report(self, batch: Batch) -> ReportResult:
        """Apply the batch at most once; returns once it is durable."""
        ...

    def fetch(self, app: str) -> Heatmap:
        """The app's heatmap; raises UnknownApp."""
        ...

    def list_apps(self) -> list[AppSummary]:
        """Every app, sorted by name."""
        ...

    def reset(self, app: str, now_ms: int) -> int:
        """Zero every count of the app (its keys stay, tracked from ``now_ms``); returns the number of keys."""
        ...

    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call ``callback`` after each commit that changed an app; returns the unsubscriber."""
        ...

    def close(self) -> None:
        """Finish pending writes, then release the store. Idempotent."""
        ...


DEFAULT_STORE = "sqlite://coldmod.db"


def open_store(url: str | None = None, *, group_commit: bool = True) -> Store:
    """Open the store a ``--store`` URL names (default: ``coldmod.db`` in the working directory).

    ``sqlite:///abs/path.db`` or ``sqlite://relative.db`` or a plain path.
    """
    raw = (url if url is not None else DEFAULT_STORE).strip()
    if not raw:
        raise StoreError(f"the store URL is empty; use a URL like {DEFAULT_STORE} or sqlite:///var/lib/coldmod.db")
    scheme, sep, rest = raw.partition("://")
    if not sep:
        path = raw
    elif scheme.lower() == "sqlite":
        path = rest
    elif scheme.lower() in ("redis", "rediss"):
        raise StoreError(
            f"the store {raw!r} is a Redis URL, which this version does not support yet; use sqlite:///path/coldmod.db"
        )
    else:
        raise StoreError(
            f"the store {raw!r} has an unknown scheme {scheme!r}; use a URL like sqlite:///path/coldmod.db"
        )
    if not path or path.endswith("/"):
        raise StoreError(f"the store {raw!r} names no file; use a URL like sqlite:///path/coldmod.db")
    from coldmod_cli.server.sqlite_store import SqliteStore

    return SqliteStore(Path(path).expanduser().absolute(), group_commit=group_commit)

"""The store interface: what the collector needs from wherever heatmaps live.

One small interface, so that SQLite (sqlite_store) and Redis (redis_store)
are interchangeable, and ``coldmod store copy`` moves heatmaps between them
(``restore``). Every method is safe to call from any thread. Writes are
applied at most once and are durable when the call returns; reads see whole
transactions (a reader never sees half of a Register).

Versions and history (issue 17). A *version* of an app is one key set (its
fingerprint) with the deployment's optional label (``COLDMOD_VERSION``). The
app's heatmap is the union of the sets of its live versions; a Register adds or
refreshes its version and never drops another's keys or counts. A version none
of whose processes has registered or reported for the retention
(``coldmod serve --retire-after``, default 30 days) is retired by
:meth:`Store.retire`; only then do keys no remaining version has leave. Keys
matching a Register's ``[ignore]`` rules leave in every version. Each key also
keeps its calls per UTC day (days with calls only, at least
:data:`HISTORY_KEEP_DAYS`), from which a Fetch sums the last 7/30/90 days.

Change notifications (the hook for the web UI): ``store.subscribe(callback)``
registers ``callback(change: Change)``; it is called after every commit that
changed an app, from the store's writer thread, one ``Change`` per app and
commit. A callback must return quickly and never block (hand the change to
your own thread or event loop, e.g. ``loop.call_soon_threadsafe``); an
exception it raises is logged and ignored. ``subscribe`` returns a function
that unsubscribes.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import truth
from pathlib import Path
from typing import NamedTuple, Protocol

__all__ = [
    "DAY_MS",
    "DEFAULT_RETIRE_AFTER_MS",
    "HISTORY_KEEP_DAYS",
    "AppSummary",
    "Batch",
    "Change",
    "CountOverflow",
    "Entry",
    "Heatmap",
    "IgnoreRules",
    "RegisterResult",
    "ReportResult",
    "SchemaError",
    "Source",
    "Store",
    "StoreError",
    "StoreInfo",
    "StoreUnavailable",
    "TooManyApps",
    "UnknownApp",
    "Version",
    "entries",
    "gc_paused",
    "open_store",
    "utc_day",
]

#: Apps a collector keeps unless ``coldmod serve --max-apps`` says otherwise:
#: anyone who may Register can name a new app, so the number is bounded.
DEFAULT_MAX_APPS = 1000

#: Milliseconds in a UTC day: history is kept per ``utc_day(ms)``.
DAY_MS = 86_400_000

#: A version silent this long is retired (``coldmod serve --retire-after``'s default, 30 days).
DEFAULT_RETIRE_AFTER_MS = 30 * DAY_MS

#: History days older than ``utc_day(now) - HISTORY_KEEP_DAYS`` may be pruned by :meth:`Store.retire`.
HISTORY_KEEP_DAYS = 400


def utc_day(ms: int) -> int:
    """The UTC day (days since 1970-01-01) a Unix time in milliseconds falls in."""
    return ms // DAY_MS


class StoreError(Exception):
    """A store cannot be opened or used; the message is one sentence for the user."""


class SchemaError(StoreError):
    """The store file is foreign, or its schema is newer or older than this version reads."""


class UnknownApp(StoreError):
    """The app has never been registered."""


class StoreUnavailable(StoreError):
    """The store is closing or failed to write; the caller may retry later."""


class TooManyApps(StoreError):
    """A Register would create an app beyond the store's limit (RESOURCE_EXHAUSTED)."""


class CountOverflow(StoreError):
    """A batch would push a count past 2**63 - 1; nothing of it was applied (OUT_OF_RANGE)."""


@dataclass(frozen=True, slots=True)
class Source:
    """A function that might run: its key and where it is defined."""

    key: str
    path: str = ""
    lines: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Batch:
    """One validated Report: ``(instance_id, sequence)`` identifies it.

    The deltas are parallel lists (key, calls, estimated, lower_bound) with
    unique keys: a batch carries thousands, and lists let the store merge them
    with loops that run in C rather than one Python step per delta.
    ``lower_bound`` is empty when no delta is a lower bound (the usual case).
    The window is already bounded by the collector's clock (see
    :func:`coldmod_cli.server.limits.batch_from`): stores take first/last seen from it.
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
    lower_bound: list[bool] = field(default_factory=list)
    # The sender's version (its Register fingerprint); "" from older tracers: then the store
    # refreshes the version the instance registered with, if it knows it, else none.
    fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class IgnoreRules:
    """A registering process's rootmarker ``[ignore]``: matching keys leave the heatmap in every version.

    ``files`` are root-relative globs matched with ``coldmod_trace.rootmarker``'s
    own matcher (one matcher for the tracer and the collector).
    """

    keys: tuple[str, ...] = ()
    files: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Version:
    """One version of an app: a key set (its fingerprint) and the label its processes gave."""

    fingerprint: str
    label: str
    first_seen_ms: int  # its first Register
    last_seen_ms: int  # its last Register or Report: retired when older than the retention
    keys: int  # keys in its set (ignored ones excluded)


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


class Entry(NamedTuple):
    """One key of a heatmap.

    A named tuple rather than a dataclass: a Fetch makes one per key (100,000
    for a big app), and :func:`entries` builds tuples in C, where a frozen
    dataclass costs a Python ``__init__`` per key.
    """

    key: str
    calls: int
    estimated: bool
    first_seen_ms: int
    last_seen_ms: int
    tracked_since_ms: int
    path: str
    lines: tuple[int, ...]
    lower_bound: bool = False  # some delta was only a lower bound: the truth is >= calls
    versions: tuple[int, ...] = ()  # indices into Heatmap.versions of the versions that have the key
    # Calls in the last 7/30/90 UTC days ending with Heatmap.now_ms's day, that day included.
    calls_7d: int = 0
    calls_30d: int = 0
    calls_90d: int = 0
    # Sparse daily history (UTC day numbers ascending, days with calls only), parallel lists;
    # filled only as fetch(quiet_days=, all_history=) asks.
    days: tuple[int, ...] = ()
    day_calls: tuple[int, ...] = ()


def entries(
    keys: Iterable[str],
    calls: Iterable[int],
    estimated: Iterable[object],
    first_seen_ms: Iterable[int],
    last_seen_ms: Iterable[int],
    tracked_since_ms: Iterable[int],
    paths: Iterable[str],
    lines: Iterable[Iterable[int]],
    lower_bound: Iterable[object],
    *,
    versions: Iterable[tuple[int, ...]] | None = None,
    calls_7d: Iterable[int] | None = None,
    calls_30d: Iterable[int] | None = None,
    calls_90d: Iterable[int] | None = None,
    days: Iterable[tuple[int, ...]] | None = None,
    day_calls: Iterable[tuple[int, ...]] | None = None,
) -> list[Entry]:
    """Entries from parallel columns (flags made bool, lines tuples), built without a Python step per key.

    Each column from ``versions`` on may be None: every entry then takes the
    field's default. Given, it holds tuples and ints, one per key.
    """
    base = zip(
        keys,
        calls,
        map(truth, estimated),
        first_seen_ms,
        last_seen_ms,
        tracked_since_ms,
        paths,
        map(tuple, lines),
        map(truth, lower_bound),
        strict=True,
    )
    history = (versions, calls_7d, calls_30d, calls_90d, days, day_calls)
    if all(column is None for column in history):
        tails: Iterable[tuple[object, ...]] = repeat(_NO_HISTORY)
    else:
        # strict=False: the defaults are endless repeats; the base columns end the rows.
        tails = zip(*(repeat(d) if c is None else c for c, d in zip(history, _NO_HISTORY, strict=True)), strict=False)
    # One C-level concatenation per key, then tuple.__new__ straight from the row: what
    # Entry._make does, minus a Python call per key. The base columns stop the (endless) defaults.
    rows = map(tuple.__add__, base, tails)
    return list(map(tuple.__new__, repeat(Entry), rows))


#: The defaults of Entry's fields after lower_bound (versions, calls_7d/30d/90d, days, day_calls).
_NO_HISTORY: tuple[object, ...] = ((), 0, 0, 0, (), ())


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a heatmap is built (nested and threads: the last one out resumes).

    Why: 100,000 entries allocate several hundred thousand tuples, which
    trigger repeated full collections over the whole heap (the collector's
    process holds millions of objects); they cost more than the build itself
    and free nothing, since a heatmap holds no cycles.
    """
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = True


@dataclass(frozen=True, slots=True)
class Heatmap:
    """One app's heatmap, read in one transaction."""

    app: str
    entries: list[Entry]
    registered_ms: int
    dropped_unknown: int
    dropped_updates: int
    versions: list[Version] = field(default_factory=list)  # the live versions (Entry.versions index them)
    now_ms: int = 0  # the clock the 7/30/90-day sums end at
    retire_after_ms: int = DEFAULT_RETIRE_AFTER_MS  # the collector's retention (filled by the collector)


@dataclass(frozen=True, slots=True)
class AppSummary:
    """One line of ListApps; ``calls`` is the exact integer sum (saturating at 2**63 - 1)."""

    app: str
    keys: int
    cold_keys: int
    calls: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class Change:
    """What one commit changed in one app (sent to subscribers).

    ``kind`` is ``"register"``, ``"report"``, ``"reset"`` or ``"delete"``;
    ``keys`` holds the keys whose counts changed for a report, and is empty
    otherwise (a register or reset changes the whole heatmap: fetch it again;
    after a delete the app is gone).
    """

    app: str
    kind: str
    keys: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class StoreInfo:
    """What Info says about the store: its kind and location (no secrets), and what a crash can lose."""

    store: str
    durability: str


class Store(Protocol):
    """Where heatmaps live. See the module docstring for the guarantees."""

    url: str

    def register(
        self,
        app: str,
        sources: Sequence[Source],
        now_ms: int,
        fingerprint: str = "",
        *,
        version: str = "",
        instance_id: str = "",
        ignore: IgnoreRules | None = None,
    ) -> RegisterResult:
        """Add or refresh the version ``fingerprint`` (set ``sources``, label ``version``); atomic.

        The app's keys become the union of its live versions' sets: another
        version's keys and counts are never dropped. New keys start at zero,
        tracked from ``now_ms``. Keys matching ``ignore`` leave the heatmap and
        every version's set, counts and history included. ``instance_id`` is
        remembered so that its Reports without a fingerprint refresh this
        version. ``added`` counts keys new to the union, ``removed`` the keys
        that left (ignored), ``kept`` the rest. Creating an app beyond the
        store's ``max_apps`` raises TooManyApps.
        """
        ...

    def fingerprint(self, app: str) -> str:
        """The fingerprint of the app's most recently registered version; "" for an unknown app."""
        ...

    def knows_version(self, app: str, fingerprint: str) -> bool:
        """Whether the app has a live version with this fingerprint (its set is stored)."""
        ...

    def touch_version(
        self, app: str, fingerprint: str, now_ms: int, *, version: str = "", instance_id: str = ""
    ) -> None:
        """Refresh a known version as a fingerprint-only Register does: last seen, label, instance; no-op if unknown."""
        ...

    def report(self, batch: Batch) -> ReportResult:
        """Apply the batch at most once; returns once it is durable.

        A delta is applied iff its key is in the app's union (some live
        version has it and it is not ignored); the rest count as unknown. It
        adds to the key's total and to its history for
        ``utc_day(batch.window_start_ms)`` (a sender's window never spans a UTC
        midnight). The batch's version (or its instance's) is refreshed.
        A batch that would push any count past 2**63 - 1 raises CountOverflow
        and changes nothing (it is not recorded as applied either).
        """
        ...

    def fetch(self, app: str, *, now_ms: int | None = None, quiet_days: int = 0, all_history: bool = False) -> Heatmap:
        """The app's heatmap, with versions and 7/30/90-day sums ending at ``now_ms`` (None: the wall clock).

        ``quiet_days`` > 0: entries with no call in the last ``quiet_days``
        days (today included) carry their whole history in days/day_calls;
        ``all_history``: every entry does (``coldmod store copy``). Raises UnknownApp.
        """
        ...

    def history(self, app: str, keys: Sequence[str]) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
        """``(days, day_calls)`` per key asked (keys the app lacks are absent); raises UnknownApp."""
        ...

    def retire(self, now_ms: int, after_ms: int = DEFAULT_RETIRE_AFTER_MS) -> dict[str, list[Version]]:
        """Retire every version last seen before ``now_ms - after_ms``; returns what was retired per app.

        Keys no remaining version has leave the heatmap (counts and history).
        Also prunes history days before ``utc_day(now_ms) - HISTORY_KEEP_DAYS``.
        The collector calls it at start and every 10 minutes.
        """
        ...

    def list_apps(self, after: str = "", limit: int | None = None) -> list[AppSummary]:
        """Up to ``limit`` apps (all when None) named after ``after``, sorted by name."""
        ...

    def count_apps(self) -> int:
        """How many apps the store holds."""
        ...

    def delete_app(self, app: str) -> int:
        """Delete the app and its heatmap; returns its number of keys; raises UnknownApp."""
        ...

    def lease(self, app: str, fingerprint: str, holder: str, now_ms: int, lease_ms: int) -> bool:
        """Take the lease on sending this version's set until ``now_ms + lease_ms``; False while another holds one.

        "One sender per key set" across every collector sharing the store: the
        Register answered ``need_sources`` holds it; the fleet's other
        fingerprint-only Registers of that set wait for the set (or the lease's
        expiry). The same holder may take it again (renew).
        """
        ...

    def release(self, app: str, fingerprint: str, holder: str = "") -> None:
        """Give the lease back ("" releases it whoever holds it: the set was stored or refused)."""
        ...

    def restore(self, heatmap: Heatmap, fingerprint: str = "") -> None:
        """Make the app exactly this heatmap (created if new) in one atomic write: ``coldmod store copy``.

        Counts, flags, first/last seen, tracked since, drop counters, the
        fingerprint, the versions (with each entry's membership) and the
        history (each entry's days/day_calls) are taken as given (Register and
        Report cannot set them), so restoring the same heatmap twice is the
        same as once. Creating an
        app beyond ``max_apps`` raises TooManyApps; a count past 2**63 - 1
        raises CountOverflow; either changes nothing.
        """
        ...

    def info(self) -> StoreInfo:
        """The store's kind, location and durability, for the Info RPC."""
        ...

    def reset(self, app: str, now_ms: int) -> int:
        """Zero every count and the history of the app (keys stay, tracked from ``now_ms``); returns the key count."""
        ...

    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call ``callback`` after each commit that changed an app; returns the unsubscriber."""
        ...

    def close(self) -> None:
        """Finish pending writes, then release the store. Idempotent."""
        ...


DEFAULT_STORE = "sqlite://coldmod.db"


def open_store(url: str | None = None, *, group_commit: bool = True, max_apps: int = DEFAULT_MAX_APPS) -> Store:
    """Open the store a ``--store`` URL names (default: ``coldmod.db`` in the working directory).

    ``max_apps`` bounds how many apps Register may create (TooManyApps beyond it).

    ``sqlite:///abs/path.db`` or ``sqlite://relative.db`` or a plain path;
    ``redis://[user@]host:port/db`` or ``rediss://…?ca=PATH`` for the shared Redis store
    (:mod:`coldmod_cli.server.redis_store`; password in ``COLDMOD_REDIS_PASSWORD``).
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
        # Shared by several collectors; group commit is the SQLite writer's, not needed here.
        from coldmod_cli.server.redis_store import RedisStore

        return RedisStore(raw, max_apps=max_apps)
    else:
        raise StoreError(
            f"the store {raw!r} has an unknown scheme {scheme!r}; use a URL like sqlite:///path/coldmod.db"
        )
    if not path or path.endswith("/"):
        raise StoreError(f"the store {raw!r} names no file; use a URL like sqlite:///path/coldmod.db")
    from coldmod_cli.server.sqlite_store import SqliteStore

    return SqliteStore(Path(path).expanduser().absolute(), group_commit=group_commit, max_apps=max_apps)

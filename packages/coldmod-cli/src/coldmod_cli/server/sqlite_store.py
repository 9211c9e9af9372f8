"""The embedded store: one SQLite file, one writer thread, group commit.

Why one writer thread: SQLite allows one writer at a time, so the collector
funnels every write (Register, Report, Reset) through a queue that a single
thread drains. With group commit it applies *everything waiting* in one
transaction — merging the deltas of all waiting batches per stored row and
writing them with one statement — commits once (one fsync for the whole
group), and only then answers every caller.
Without group commit it commits each item on its own (the baseline the
benchmark compares against). Readers use their own connections; WAL lets
them read the last committed state while the writer writes.

Durability: WAL with ``synchronous=FULL``, so a commit is on disk (fsynced)
before any batch in it is acknowledged — a power loss cannot undo an ack.

Exactly-once: ``batches`` remembers each applied ``(instance_id, sequence)``
with the outcome returned then, so a resend gets the same answer and changes
nothing. Rows older than 24 hours are pruned; ``instances.pruned_through``
keeps, per instance, the highest pruned sequence, and anything at or below
it still counts as applied (tracers send in order and resend only the
unacknowledged batch, so a lower sequence is always an old resend).
Instances silent for 30 days are forgotten.

Versions: ``keys`` holds the *union* of the app's live versions' sets, so
Report's check "is this key tracked?" stays one dict lookup in the writer's
cache; ``versions`` holds each version (fingerprint, label, first and last
seen) and ``members`` which keys each version has. A Register adds or
refreshes its version in one transaction (readers see the union before or
after): keys new to the union get a zero count tracked from now; keys the
version had and no longer has (possible only for the fingerprint-less
version "") leave only if no other version has them. Keys matching the
Register's ``[ignore]`` rules leave every version. ``retire`` drops versions
silent for the retention (never an app's most recently seen one, so an app
whose fleet is stopped keeps its heatmap) and, with them, the keys no
remaining version has.

History: ``history`` holds calls per (app, UTC day, key) of *closed* days,
days with calls only, keyed in that order (WITHOUT ROWID). Report's hot path
does not write it: the calls of the app's open day (``apps.open_day``) are
each key's count minus its count when the day began (``day_base``). The first
batch of a later day closes the open day — one statement turns every key's
excess into a row and moves ``day_base`` up — so a day's rows are written
once, side by side at the end of the app's range, and Report costs what it
did before history (measured: ``bench/server.py``, the Report path alone). A
batch of a day already closed (sent late) writes its own rows and raises
``day_base`` by its calls, so they count for their day, not the open one.
Reading one key's days (a sparkline, a quiet key's seasons) uses the index
``history_key``; every read adds the open day's excess as the last day. The
budget app (100,000 keys, 10,000 called daily for 400 days: 4 M rows) takes
about 130 MB.

Sums: Fetch gives every key its calls in the last 7/30/90 days. Summing 90
days of rows at each Fetch is 900,000 rows for the budget app (seconds on a
busy machine), so ``sums`` keeps per key the sums of the *closed* days of
each window as of the day ``apps.sums_day`` (E): c7 = days E-6..E-1, c30 =
E-29..E-1, c90 = E-89..E-1. A Fetch on day E adds E's own rows (one day's
range), and a Fetch up to 7 days later also adds the days since and takes
off those that left the windows; any other day (a test's clock in the past)
sums the rows directly; the open day's excess counts as one more day. ``retire``
(every 10 minutes) closes the open day and moves E to today by adding the
day that closed and taking off the days that left (three one-day ranges), or
recomputes after a gap; a late Report for a day before E adds to the sums it
falls in, in the same transaction. History days older than HISTORY_KEEP_DAYS
are pruned by ``retire``.

Reset zeroes counts, clears history and restarts every key's
``tracked_since``: coldness is then judged from the reset on. Delete
removes the app, its keys, counts, versions and history. Restore
(``coldmod store copy``) replaces the app with a given heatmap (versions and
history included) in one transaction, so a copy run twice leaves what one
run left.

Upgrade from schema 2 (the release before versions): each app's stored set
becomes its one version (its fingerprint, no label, first seen at its last
Register, last seen at its last Register or Report), every key a member of
it; counts, flags and timestamps are untouched, and history starts empty
(``day_base`` = each count)
(the days before the upgrade were never recorded).

Exactness: counts are SQLite's signed 64-bit integers. A batch that would
push any count past 2**63 - 1 is refused whole (CountOverflow) before any of
it is applied. The writer keeps, per app, an upper bound of its counts (the
stored maximum plus every delta since), so the usual batch is checked with
one comparison and only a batch near the edge reads the stored counts.

A failing disk (full, read-only) fails the writes with one sentence each and
logs one line per LOG_EVERY_S with the number of failures; the first write
after a failure checkpoints the WAL first, so space freed on the disk is
enough for writes to succeed again (the WAL restarts from its beginning
instead of growing).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from itertools import compress, groupby, repeat
from operator import add, itemgetter, or_
from pathlib import Path
from typing import Any

from coldmod_cli.server.store import (
    DAY_MS,
    DEFAULT_MAX_APPS,
    DEFAULT_RETIRE_AFTER_MS,
    HISTORY_KEEP_DAYS,
    AppSummary,
    Batch,
    Change,
    CountOverflow,
    Heatmap,
    IgnoreRules,
    RegisterResult,
    ReportResult,
    SchemaError,
    Source,
    StoreError,
    StoreInfo,
    StoreUnavailable,
    TooManyApps,
    UnknownApp,
    Version,
    entries,
    gc_paused,
    utc_day,
)
from coldmod_trace.rootmarker import compile_globs

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SqliteStore"]

log = logging.getLogger(__name__)

#: ``PRAGMA application_id`` of every Coldmod store: "Cold" in ASCII.
APPLICATION_ID = 0x436F6C64
#: ``PRAGMA user_version`` this code writes; MIGRATIONS lifts older ones to it.
SCHEMA_VERSION = 3
#: The largest count SQLite's signed 64-bit integers hold; a batch beyond it is refused.
MAX_COUNT = 2**63 - 1  # written out as 9223372036854775807 in SQL
#: Seconds between two log lines about failing writes (the rest are counted).
LOG_EVERY_S = 30.0
DURABILITY = (
    "every acknowledged write is on disk (SQLite WAL, synchronous=FULL): a crash or power loss loses nothing"
    " acknowledged"
)
DEDUPE_KEEP_MS = 24 * 3600 * 1000
INSTANCE_KEEP_MS = 30 * 24 * 3600 * 1000
PRUNE_EVERY_S = 600.0
#: Most items one group commit takes, so one commit's latency stays bounded.
MAX_GROUP = 1024
#: A Fetch on a day up to this many days after ``apps.sums_day`` corrects the sums; beyond, it sums the rows.
SUMS_ROLL_DAYS = 7

#: What schema 3 added (versions and history): created by the migration from 2 as well.
_SCHEMA_3 = """
CREATE TABLE versions (
    id INTEGER PRIMARY KEY,
    app_id INTEGER NOT NULL REFERENCES apps(id),
    fingerprint TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    UNIQUE (app_id, fingerprint)
);
CREATE TABLE members (
    version_id INTEGER NOT NULL REFERENCES versions(id),
    key_id INTEGER NOT NULL REFERENCES keys(id),
    PRIMARY KEY (version_id, key_id)
) WITHOUT ROWID;
CREATE INDEX members_key ON members (key_id);
-- The version a process registered with, for its Reports that name none (older tracers).
CREATE TABLE instance_versions (
    instance_id TEXT PRIMARY KEY,
    version_id INTEGER NOT NULL REFERENCES versions(id),
    last_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE history (
    app_id INTEGER NOT NULL,
    day INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    PRIMARY KEY (app_id, day, key_id)
) WITHOUT ROWID;
CREATE INDEX history_key ON history (key_id, day);
-- "One sender per key set": the Register asked for a set holds its lease until it expires or the set is stored.
CREATE TABLE leases (
    app TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (app, fingerprint)
) WITHOUT ROWID;
-- Each key's count when the app's open day (apps.open_day) began: the open day's calls are the excess.
CREATE TABLE day_base (
    id INTEGER PRIMARY KEY,
    calls INTEGER NOT NULL
);
CREATE TABLE sums (
    app_id INTEGER NOT NULL,
    id INTEGER NOT NULL,
    c7 INTEGER NOT NULL,
    c30 INTEGER NOT NULL,
    c90 INTEGER NOT NULL,
    PRIMARY KEY (app_id, id)
) WITHOUT ROWID;
"""

_SCHEMA = (
    """
CREATE TABLE apps (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL DEFAULT '',
    registered_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    dropped_unknown INTEGER NOT NULL DEFAULT 0,
    dropped_updates INTEGER NOT NULL DEFAULT 0,
    sums_day INTEGER NOT NULL DEFAULT 0,
    open_day INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE keys (
    id INTEGER PRIMARY KEY,
    app_id INTEGER NOT NULL REFERENCES apps(id),
    key TEXT NOT NULL,
    path TEXT NOT NULL,
    lines TEXT NOT NULL,
    UNIQUE (app_id, key)
);
-- Apart from keys (same id) and narrow: a group commit rewrites a third of
-- the pages it would in one wide table, and its commit is ~10x quicker.
CREATE TABLE counts (
    id INTEGER PRIMARY KEY REFERENCES keys(id),
    calls INTEGER NOT NULL DEFAULT 0,
    estimated INTEGER NOT NULL DEFAULT 0,
    first_seen_ms INTEGER NOT NULL DEFAULT 0,
    last_seen_ms INTEGER NOT NULL DEFAULT 0,
    tracked_since_ms INTEGER NOT NULL,
    lower_bound INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE batches (
    instance_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    applied_ms INTEGER NOT NULL,
    unknown_keys INTEGER NOT NULL,
    PRIMARY KEY (instance_id, sequence)
) WITHOUT ROWID;
CREATE INDEX batches_applied ON batches (applied_ms);
CREATE TABLE instances (
    instance_id TEXT PRIMARY KEY,
    pruned_through INTEGER NOT NULL,
    last_ms INTEGER NOT NULL
) WITHOUT ROWID;
"""
    + _SCHEMA_3
)


#: ``from_version -> SQL`` lifting a store one version up.
MIGRATIONS: dict[int, str] = {
    # 2: counts known only as ">= N" (KeyDelta.lower_bound).
    1: "ALTER TABLE counts ADD COLUMN lower_bound INTEGER NOT NULL DEFAULT 0",
    # 3: versions and history. Each app's set becomes its one version, every key a member.
    2: "ALTER TABLE apps ADD COLUMN sums_day INTEGER NOT NULL DEFAULT 0;"  # noqa: S608 - constants only
    " ALTER TABLE apps ADD COLUMN open_day INTEGER NOT NULL DEFAULT 0;"
    + _SCHEMA_3
    + "INSERT INTO day_base (id, calls) SELECT id, calls FROM counts WHERE calls != 0;"
    + "INSERT INTO versions (app_id, fingerprint, label, first_seen_ms, last_seen_ms)"
    " SELECT id, fingerprint, '', registered_ms, max(registered_ms, updated_ms) FROM apps;"
    " INSERT INTO members (version_id, key_id) SELECT v.id, k.id FROM keys k JOIN versions v ON v.app_id = k.app_id",
}

# What a group adds to each stored row it touched, as one statement over a
# JSON array of [calls, estimated, first, last, rowid, lower_bound] rows: one
# call into SQLite, so the writer gives up and retakes the GIL once per group,
# not once per row (executemany does, and under load every retake waits
# behind the request threads). No sum can overflow: _report refused every
# batch that would. A batch window may open before the key entered the set
# (the batch was in flight during a Register): no call is seen before
# tracked_since.
_APPLY_BULK = (
    "UPDATE counts SET"
    " calls = calls + j.c,"
    " estimated = estimated | j.e,"
    " first_seen_ms = min(coalesce(nullif(first_seen_ms, 0), 9223372036854775807), max(j.f, tracked_since_ms)),"
    " last_seen_ms = max(last_seen_ms, j.l, tracked_since_ms),"
    " lower_bound = lower_bound | j.b"
    " FROM (SELECT json_extract(value, '$[0]') AS c, json_extract(value, '$[1]') AS e,"
    " json_extract(value, '$[2]') AS f, json_extract(value, '$[3]') AS l,"
    " json_extract(value, '$[4]') AS id, json_extract(value, '$[5]') AS b FROM json_each(?)) AS j"
    " WHERE counts.id = j.id"
)
#: The same a row at a time, for SQLite builds without UPDATE ... FROM (before 3.33) or JSON.
_APPLY_ROW = (
    "UPDATE counts SET"
    " calls = calls + ?,"
    " estimated = estimated | ?,"
    " first_seen_ms = min(coalesce(nullif(first_seen_ms, 0), 9223372036854775807), max(?, tracked_since_ms)),"
    " last_seen_ms = max(last_seen_ms, ?, tracked_since_ms),"
    " lower_bound = lower_bound | ?"
    " WHERE id = ?"
)
# A late batch's calls per (app, day, key).
_HISTORY_ROW = (
    "INSERT INTO history (app_id, day, key_id, calls) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (app_id, day, key_id) DO UPDATE SET calls = calls + excluded.calls"
)
# Add one day's rows of an app to the sums (times 1 or 0 per window), or take them off (times -1 or 0).
_SUMS_ADD_DAY = (
    "INSERT INTO sums (app_id, id, c7, c30, c90)"
    " SELECT app_id, key_id, calls * ?, calls * ?, calls * ? FROM history WHERE app_id = ? AND day = ?"
    " ON CONFLICT (app_id, id) DO UPDATE SET"
    " c7 = c7 + excluded.c7, c30 = c30 + excluded.c30, c90 = c90 + excluded.c90"
)
_SUMS_ADD_ROWS = (
    "INSERT INTO sums (app_id, id, c7, c30, c90) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (app_id, id) DO UPDATE SET"
    " c7 = c7 + excluded.c7, c30 = c30 + excluded.c30, c90 = c90 + excluded.c90"
)
# Close an app's open day: its excess over day_base becomes a history row, and the base moves up.
_CLOSE_DAY_HISTORY = (
    "INSERT INTO history (app_id, day, key_id, calls)"
    " SELECT k.app_id, ?, c.id, c.calls - coalesce(b.calls, 0) FROM keys k JOIN counts c ON c.id = k.id"
    " LEFT JOIN day_base b ON b.id = c.id WHERE k.app_id = ? AND c.calls != coalesce(b.calls, 0)"
    " ON CONFLICT (app_id, day, key_id) DO UPDATE SET calls = calls + excluded.calls"
)
_CLOSE_DAY_BASE = (
    "INSERT INTO day_base (id, calls)"
    " SELECT c.id, c.calls FROM keys k JOIN counts c ON c.id = k.id"
    " LEFT JOIN day_base b ON b.id = c.id WHERE k.app_id = ? AND c.calls != coalesce(b.calls, 0)"
    " ON CONFLICT (id) DO UPDATE SET calls = excluded.calls"
)
# The open day's calls per key of an app (keys called since it began).
_OPEN_DAY = (
    "SELECT c.id, c.calls - coalesce(b.calls, 0) FROM keys k JOIN counts c ON c.id = k.id"
    " LEFT JOIN day_base b ON b.id = c.id WHERE k.app_id = ? AND c.calls != coalesce(b.calls, 0)"
)
# Calls per key over the days a..b of an app.
_DAYS_SUM = "SELECT key_id, sum(calls) FROM history WHERE app_id = ? AND day BETWEEN ? AND ? GROUP BY key_id"

# The ListApps sums, exact: SQLite's sum() fails past 2**63 and total() is a
# float, so each count is summed in two 32-bit halves (neither half's sum can
# overflow for fewer than 2**31 keys) and joined in Python.
_LIST_APPS = (
    "SELECT a.name, count(c.id), coalesce(sum(c.calls = 0), 0),"
    " coalesce(sum(c.calls >> 32), 0), coalesce(sum(c.calls & 4294967295), 0), a.updated_ms"
    " FROM (SELECT id, name, updated_ms FROM apps WHERE name > ? ORDER BY name LIMIT ?) a"
    " LEFT JOIN keys k ON k.app_id = a.id LEFT JOIN counts c ON c.id = k.id"
    " GROUP BY a.id ORDER BY a.name"
)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class _App:
    """The writer's cache of one app: its row id, its keys' row ids and an upper bound of its counts."""

    id: int
    fingerprint: str
    keys: dict[str, int]
    ceiling: int = 0
    versions: dict[str, int] = field(default_factory=dict)  # fingerprint -> versions.id
    sums_day: int = 0  # apps.sums_day: the day the sums table is as of
    open_day: int = 0  # apps.open_day: the day whose calls are counts.calls - day_base.calls


@dataclass(slots=True, eq=False)
class _Item:
    op: str
    args: tuple[Any, ...]
    future: Future[Any]


_CLOSE = _Item("close", (), Future())
_UNKNOWN = object()


class _Merge:
    """The deltas of one group so far, merged per stored row.

    Ingestion's hot path: a group holds hundreds of thousands of deltas, so
    every per-delta step here is a loop that runs in C (map, zip,
    dict.update) instead of a Python statement per delta.
    """

    __slots__ = ("calls", "days", "estimated", "lower_bound", "sums_days", "versions", "windows")

    def __init__(self) -> None:
        self.calls: dict[int, int] = {}
        self.estimated: set[int] = set()
        self.lower_bound: set[int] = set()
        self.windows: list[tuple[int, int, list[int]]] = []
        self.days: dict[tuple[int, int], dict[int, int]] = {}  # (app id, late UTC day) -> calls per row
        self.sums_days: dict[int, int] = {}  # app id -> its sums_day (a late day also adds to the sums)
        self.versions: dict[int, int] = {}  # versions.id -> latest window end seen

    def add(
        self,
        rowids: list[int],
        calls: list[int],
        estimated: list[bool],
        lower_bound: list[bool],
        first: int,
        last: int,
    ) -> None:
        """Merge one batch (unique rows, non-zero calls) seen between ``first`` and ``last``."""
        merged = self.calls
        merged.update(zip(rowids, map(add, map(merged.get, rowids, repeat(0)), calls), strict=True))
        if any(estimated):
            self.estimated.update(compress(rowids, estimated))
        if any(lower_bound):
            self.lower_bound.update(compress(rowids, lower_bound))
        self.windows.append((first, last, rowids))

    def add_late(self, rowids: list[int], calls: list[int], day: tuple[int, int], sums_day: int) -> None:
        """A batch of a day before its app's open day (``day`` is (app id, day)): its own history rows."""
        on_day = self.days.get(day)
        if on_day is None:
            self.days[day] = dict(zip(rowids, calls, strict=True))
        else:
            on_day.update(zip(rowids, map(add, map(on_day.get, rowids, repeat(0)), calls), strict=True))
        self.sums_days[day[0]] = sums_day

    def rows(self) -> list[tuple[int, bool, int, int, int, bool]]:
        """``(calls, estimated, first, last, rowid, lower_bound)`` per row, in row order."""
        # Later updates win: earliest window start last, latest window end last.
        firsts: dict[int, int] = {}
        for first, _, rowids in sorted(self.windows, key=itemgetter(0), reverse=True):
            firsts.update(zip(rowids, repeat(first), strict=False))
        lasts: dict[int, int] = {}
        for _, last, rowids in sorted(self.windows, key=itemgetter(1)):
            lasts.update(zip(rowids, repeat(last), strict=False))
        # In row order: neighbouring rows share pages, so SQLite touches each page once.
        order = sorted(self.calls)
        return list(
            zip(
                map(self.calls.__getitem__, order),
                map(self.estimated.__contains__, order),
                map(firsts.__getitem__, order),
                map(lasts.__getitem__, order),
                order,
                map(self.lower_bound.__contains__, order),
                strict=True,
            )
        )

    def history_rows(self) -> list[tuple[int, int, int, int]]:
        """``(app id, day, rowid, calls)`` per merged history row, in key order (the table's)."""
        rows: list[tuple[int, int, int, int]] = []
        for (app_id, day), on_day in sorted(self.days.items()):
            order = sorted(on_day)
            rows += zip(repeat(app_id), repeat(day), order, map(on_day.__getitem__, order))
        return rows

    def clear(self) -> None:
        """Forget the calls written (the versions seen are written and forgotten on their own)."""
        self.calls.clear()
        self.estimated.clear()
        self.lower_bound.clear()
        self.windows.clear()
        self.days.clear()
        self.sums_days.clear()


class _FailureLog:
    """At most one log line per LOG_EVERY_S about failing writes (with how many failed), and one about recovering."""

    def __init__(self) -> None:
        self.failing = False  # the last write failed: checkpoint before the next one
        self._unlogged = 0
        self._next_failure_line = 0.0
        self._next_recovery_line = 0.0

    def failed(self, error: BaseException) -> None:
        """Count a failed write; log it when the last line is old enough."""
        self.failing = True
        self._unlogged += 1
        now = time.monotonic()
        if now >= self._next_failure_line:
            log.error("coldmod store: %d write(s) failed in the last %.0f s: %s", self._unlogged, LOG_EVERY_S, error)
            self._unlogged = 0
            self._next_failure_line = now + LOG_EVERY_S

    def succeeded(self) -> None:
        """A write went through: after failures, say so (a flapping disk: once per interval)."""
        if not self.failing:
            return
        self.failing = False
        now = time.monotonic()
        if now >= self._next_recovery_line:
            log.warning("coldmod store: writes succeed again")
            self._next_recovery_line = now + LOG_EVERY_S


class SqliteStore:
    """The :class:`~coldmod_cli.server.store.Store` in one SQLite file."""

    def __init__(self, path: Path, *, group_commit: bool = True, max_apps: int = DEFAULT_MAX_APPS) -> None:
        """Open (creating, migrating or refusing) the store file and start its writer."""
        self.path = path
        self.url = f"sqlite://{path}"
        self.group_commit = group_commit
        self.max_apps = max_apps
        self._failures = _FailureLog()
        self._lock_fd = _lock(path)
        try:
            self._db = _open_writer(path)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._bulk = _supports_bulk(self._db)
        self._apps: dict[str, _App] = {}
        self._instances: dict[str, int | None] = {}  # the writer's cache of instance_versions (None: none)
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._subscribers: list[Callable[[Change], None]] = []
        self._next_prune = 0.0
        self._writer = threading.Thread(target=self._write_loop, name="coldmod-store-writer", daemon=True)
        self._writer.start()

    # ------------------------------------------------------------- the API --

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
        """Add or refresh the version ``fingerprint`` with this set, atomically; no other version loses anything."""
        return self._submit(  # type: ignore[no-any-return]
            "register", app, sources, now_ms, fingerprint, version, instance_id, ignore or _NO_RULES
        )

    def knows_version(self, app: str, fingerprint: str) -> bool:
        """Whether the app has a live version with this fingerprint."""
        row = self._read(
            lambda db: db.execute(
                "SELECT 1 FROM versions v JOIN apps a ON a.id = v.app_id WHERE a.name = ? AND v.fingerprint = ?",
                (app, fingerprint),
            ).fetchone()
        )
        return row is not None

    def touch_version(
        self, app: str, fingerprint: str, now_ms: int, *, version: str = "", instance_id: str = ""
    ) -> None:
        """Refresh a known version (last seen, label, instance) as a fingerprint-only Register does."""
        self._submit("touch", app, fingerprint, now_ms, version, instance_id)

    def retire(self, now_ms: int, after_ms: int = DEFAULT_RETIRE_AFTER_MS) -> dict[str, list[Version]]:
        """Retire versions silent since ``now_ms - after_ms``, prune old history, bring the sums to today."""
        return self._submit("retire", now_ms, after_ms)  # type: ignore[no-any-return]

    def lease(self, app: str, fingerprint: str, holder: str, now_ms: int, lease_ms: int) -> bool:
        """Take the lease on sending this set unless another holder's is unexpired (read first: no write to refuse)."""
        row = self._read(
            lambda db: db.execute(
                "SELECT holder, expires_ms FROM leases WHERE app = ? AND fingerprint = ?", (app, fingerprint)
            ).fetchone()
        )
        if row is not None and row[0] != holder and row[1] > now_ms:
            return False
        return self._submit("lease", app, fingerprint, holder, now_ms, lease_ms)  # type: ignore[no-any-return]

    def release(self, app: str, fingerprint: str, holder: str = "") -> None:
        """Give the lease back ("": whoever holds it)."""
        self._submit("release", app, fingerprint, holder)

    def report(self, batch: Batch) -> ReportResult:
        """Apply the batch at most once; returns once it is durable."""
        return self._submit("report", batch)  # type: ignore[no-any-return]

    def reset(self, app: str, now_ms: int) -> int:
        """Zero the app's counts and restart its keys' tracking; returns the number of keys."""
        return self._submit("reset", app, now_ms)  # type: ignore[no-any-return]

    def delete_app(self, app: str) -> int:
        """Delete the app, its keys and counts; returns the number of keys; raises UnknownApp."""
        return self._submit("delete", app)  # type: ignore[no-any-return]

    def restore(self, heatmap: Heatmap, fingerprint: str = "") -> None:
        """Make the app exactly this heatmap (created if new), in one transaction: ``coldmod store copy``."""
        self._submit("restore", heatmap, fingerprint)

    def fingerprint(self, app: str) -> str:
        """The fingerprint stored with the app's current set; "" for an unknown app."""
        row = self._read(lambda db: db.execute("SELECT fingerprint FROM apps WHERE name = ?", (app,)).fetchone())
        return str(row[0]) if row else ""

    def count_apps(self) -> int:
        """How many apps the store holds."""
        return int(self._read(lambda db: db.execute("SELECT count(*) FROM apps").fetchone()[0]))

    def info(self) -> StoreInfo:
        """SQLite at this path, durable per acknowledged write."""
        return StoreInfo(f"sqlite {self.path}", DURABILITY)

    def _read(self, query: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run a read on this thread's reader; a failing read is StoreUnavailable."""
        try:
            return query(self._reader())
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the store could not be read ({exc})") from None

    def fetch(self, app: str, *, now_ms: int | None = None, quiet_days: int = 0, all_history: bool = False) -> Heatmap:
        """The app's heatmap with versions and 7/30/90-day sums, read in one transaction; raises UnknownApp."""
        now = _now_ms() if now_ms is None else now_ms
        with gc_paused():  # a big heatmap is hundreds of thousands of new tuples (see gc_paused)
            return self._read(lambda db: self._fetch(db, app, now, quiet_days, all_history))  # type: ignore[no-any-return]

    def history(self, app: str, keys: Sequence[str]) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
        """``(days, day_calls)`` per key asked that the app has; raises UnknownApp."""

        def read(db: sqlite3.Connection) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
            db.execute("BEGIN")
            try:
                row = db.execute("SELECT id, open_day FROM apps WHERE name = ?", (app,)).fetchone()
                if row is None:
                    raise UnknownApp(f"the app {app!r} is not registered")
                ids = dict(
                    db.execute(
                        "SELECT key, id FROM keys WHERE app_id = ? AND key IN (SELECT value FROM json_each(?))",
                        (row[0], json.dumps(list(keys))),
                    ).fetchall()
                )
                open_day = (row[1], dict(db.execute(_OPEN_DAY, (row[0],)).fetchall()))
                days = _key_days(db, list(ids.values()), open_day)
            finally:
                db.execute("COMMIT")
            return {k: days.get(i, _NO_DAYS) for k, i in ids.items()}

        return self._read(read)  # type: ignore[no-any-return]

    def _fetch(self, db: sqlite3.Connection, app: str, now_ms: int, quiet_days: int, all_history: bool) -> Heatmap:
        """Read the app's rows in one read transaction (a consistent snapshot) and build its entries."""
        today = utc_day(now_ms)
        db.execute("BEGIN")
        try:
            row = db.execute(
                "SELECT id, registered_ms, dropped_unknown, dropped_updates, sums_day, open_day FROM apps"
                " WHERE name = ?",
                (app,),
            ).fetchone()
            if row is None:
                raise UnknownApp(f"the app {app!r} is not registered")
            app_id = row[0]
            rows = db.execute(
                "SELECT k.key, c.calls, c.estimated, c.first_seen_ms, c.last_seen_ms, c.tracked_since_ms,"
                " k.path, k.lines, c.lower_bound, k.id FROM keys k JOIN counts c ON c.id = k.id WHERE k.app_id = ?"
                " ORDER BY k.key",
                (app_id,),
            ).fetchall()
            version_rows = db.execute(
                "SELECT id, fingerprint, label, first_seen_ms, last_seen_ms FROM versions WHERE app_id = ?"
                " ORDER BY first_seen_ms, id",
                (app_id,),
            ).fetchall()
            # Each version's keys as one string parsed in C (a Python step per row was most of the cost).
            members = [_member_ids(db, v[0]) for v in version_rows]
            open_day = (row[5], dict(db.execute(_OPEN_DAY, (app_id,)).fetchall()))
            windows = _window_sums(db, app_id, row[4], today, open_day)
            if rows and (all_history or quiet_days > 0):
                if all_history:
                    wanted = [r[9] for r in rows]
                else:
                    # Called once, but not since the quiet days began: a day of slack, as last seen is a
                    # window's end, which may be the first millisecond of the day after the calls' day.
                    wanted = [
                        k
                        for (k,) in db.execute(
                            "SELECT k.id FROM keys k JOIN counts c ON c.id = k.id"
                            " WHERE k.app_id = ? AND c.last_seen_ms > 0 AND c.last_seen_ms < ?",
                            (app_id, (today - quiet_days + 2) * DAY_MS),
                        )
                    ]
                days = _key_days(db, wanted, open_day)
                if not all_history:  # quiet: not one call in the last quiet_days days, today included
                    days = {k: d for k, d in days.items() if not d[0] or d[0][-1] <= today - quiet_days}
            else:
                days = {}
        finally:
            db.execute("COMMIT")
        versions = [
            Version(f, label, first, last, len(m))
            for (_, f, label, first, last), m in zip(version_rows, members, strict=True)
        ]
        heatmap = Heatmap(app, [], row[1], row[2], row[3], versions, now_ms)
        if not rows:
            return heatmap
        # Column by column, each a loop in C (a Python statement per row was most of a big Fetch).
        keys, calls, estimated, first, last, since, paths, lines, lower_bound, ids = zip(*rows, strict=True)
        del rows
        # Every "3,9" (or "") at once: one JSON array parsed in C instead of a split and int() per row.
        parsed = json.loads("[[" + "],[".join(lines) + "]]")
        # Which versions have each key: one version holding every key (the usual app) is one tuple for all;
        # otherwise a bit per version, then one tuple per distinct mask.
        if len(members) == 1 and len(members[0]) == len(ids):
            has: Iterable[tuple[int, ...]] = repeat((0,))
        else:
            masks = dict.fromkeys(ids, 0)
            for index, member_ids in enumerate(members):
                bit = 1 << index
                masks.update(zip(member_ids, map(or_, map(masks.__getitem__, member_ids), repeat(bit)), strict=True))
            combos = {m: tuple(i for i in range(len(members)) if m >> i & 1) for m in set(masks.values())}
            has = map(combos.__getitem__, map(masks.__getitem__, ids))
        sums = [map(w.get, ids, repeat(0)) if w else None for w in windows]
        history = list(map(days.get, ids, repeat(_NO_DAYS))) if days else None
        built = entries(
            keys,
            calls,
            estimated,
            first,
            last,
            since,
            paths,
            parsed,
            lower_bound,
            versions=has,
            calls_7d=sums[0],
            calls_30d=sums[1],
            calls_90d=sums[2],
            days=None if history is None else map(itemgetter(0), history),
            day_calls=None if history is None else map(itemgetter(1), history),
        )
        return Heatmap(app, built, row[1], row[2], row[3], versions, now_ms)

    def list_apps(self, after: str = "", limit: int | None = None) -> list[AppSummary]:
        """Up to ``limit`` apps named after ``after``, sorted, with key count, cold keys and exact total calls."""
        rows = self._read(lambda db: db.execute(_LIST_APPS, (after, -1 if limit is None else limit)).fetchall())
        return [AppSummary(n, k, c, min((hi << 32) + lo, MAX_COUNT), u) for n, k, c, hi, lo, u in rows]

    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call ``callback`` after each commit that changed an app; returns the unsubscriber."""
        self._subscribers = [*self._subscribers, callback]

        def unsubscribe() -> None:
            self._subscribers = [s for s in self._subscribers if s is not callback]

        return unsubscribe

    def close(self) -> None:
        """Apply and answer everything queued, checkpoint the WAL and release the file."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            # Under the lock: nothing can be queued behind _CLOSE, so nothing waits forever.
            self._queue.put(_CLOSE)
        self._writer.join()
        with self._readers_lock:
            for db in self._readers:
                db.close()
            self._readers.clear()
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()
        os.close(self._lock_fd)

    # ------------------------------------------------------------ plumbing --

    def _submit(self, op: str, *args: Any) -> Any:
        item = _Item(op, args, Future())
        with self._close_lock:
            if self._closed:
                raise StoreUnavailable("the store is closing")
            self._queue.put(item)
        return item.future.result()

    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            if self._closed:
                raise StoreUnavailable("the store is closing")
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 5000")
            db.execute("PRAGMA query_only = 1")
            with self._readers_lock:
                self._readers.append(db)
            self._local.db = db
        return db

    def _write_loop(self) -> None:
        """Drain the queue: one transaction per group (or per item), then answer."""
        closing = False
        while not closing:
            items = [self._queue.get()]
            limit = MAX_GROUP if self.group_commit else 1
            while len(items) < limit:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if _CLOSE in items:  # close() queues nothing after it: this is the last group
                items.remove(_CLOSE)
                closing = True
            if not items:
                continue
            if self._failures.failing:
                self._checkpoint()
            try:
                if self.group_commit or len(items) == 1:
                    self._apply(items)
                else:
                    for item in items:
                        self._apply([item])
            except Exception:  # a bug, not a write error: fail these calls, keep the writer alive
                log.exception("coldmod store: the writer failed")
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                self._apps.clear()
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(StoreUnavailable("the store failed to apply a write"))
            self._maybe_prune()

    def _apply(self, items: list[_Item]) -> None:
        """Apply items in one transaction; on failure, retry each alone so one bad item fails alone."""
        db = self._db
        changes: dict[str, Change] = {}  # whole-app changes: register, reset
        changed: dict[str, set[str]] = {}  # keys whose counts a report changed
        outcomes: list[tuple[_Item, Any, BaseException | None]] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            pending = _Merge()
            seen: dict[tuple[str, int], ReportResult] = {}
            counters: dict[int, list[int]] = {}
            for item in items:
                try:
                    if item.op == "report":
                        result: Any = self._report(item.args[0], pending, seen, counters, changed)
                    elif item.op == "register":
                        self._flush(pending, counters)  # a Register renumbers rows
                        name, sources, now_ms, fingerprint, label, instance_id, rules = item.args
                        result = self._register(name, sources, now_ms, fingerprint, label, instance_id, rules, changes)
                    elif item.op == "touch":
                        self._flush(pending, counters)
                        self._touch(*item.args)
                        result = None
                    elif item.op == "lease":
                        result = self._lease(*item.args)
                    elif item.op == "release":
                        app_name, fingerprint, holder = item.args
                        self._db.execute(
                            "DELETE FROM leases WHERE app = ? AND fingerprint = ? AND (? = '' OR holder = ?)",
                            (app_name, fingerprint, holder, holder),
                        )
                        result = None
                    elif item.op == "retire":
                        self._flush(pending, counters)
                        now_ms, after_ms = item.args
                        result = self._retire(now_ms, after_ms, changes)
                    elif item.op == "reset":
                        self._flush(pending, counters)
                        name, now_ms = item.args
                        result = self._reset(name, now_ms, changes)
                    elif item.op == "restore":
                        self._flush(pending, counters)
                        heatmap, fingerprint = item.args
                        self._restore(heatmap, fingerprint, changes)
                        result = None
                    else:
                        self._flush(pending, counters)
                        result = self._delete(item.args[0], changes)
                except (UnknownApp, TooManyApps, CountOverflow) as exc:  # refused before it changed anything
                    outcomes.append((item, None, exc))
                else:
                    outcomes.append((item, result, None))
            self._flush(pending, counters)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            self._apps.clear()  # the caches may hold rows the rollback undid
            if len(items) > 1:
                for item in items:
                    self._apply([item])
                return
            self._failures.failed(exc)
            items[0].future.set_exception(StoreUnavailable(f"the store could not be written ({exc})"))
            return
        self._failures.succeeded()
        for item, result, error in outcomes:
            if error is not None:
                item.future.set_exception(error)
            else:
                item.future.set_result(result)
        for name, keys in changed.items():
            cached = self._apps.get(name)
            stored = frozenset(filter(cached.keys.__contains__, keys)) if cached else frozenset()
            if stored:
                changes.setdefault(name, Change(name, "report", stored))
        for change in changes.values():
            for callback in self._subscribers:
                try:
                    callback(change)
                except Exception:
                    log.exception("coldmod store: a change subscriber failed")

    def _app(self, name: str) -> _App | None:
        cached = self._apps.get(name)
        if cached is not None:
            return cached
        row = self._db.execute(
            "SELECT id, fingerprint, sums_day, open_day FROM apps WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            return None
        keys = dict(self._db.execute("SELECT key, id FROM keys WHERE app_id = ?", (row[0],)).fetchall())
        versions = dict(self._db.execute("SELECT fingerprint, id FROM versions WHERE app_id = ?", (row[0],)))
        self._apps[name] = app = _App(row[0], row[1], keys, self._stored_ceiling(row[0]), versions, row[2], row[3])
        return app

    def _stored_ceiling(self, app_id: int) -> int:
        """The largest count the app holds in the store (inside the writer's transaction)."""
        row = self._db.execute(
            "SELECT max(c.calls) FROM counts c JOIN keys k ON k.id = c.id WHERE k.app_id = ?", (app_id,)
        ).fetchone()
        return int(row[0] or 0)

    def _check_overflow(
        self, app: _App, rowids: list[int], calls: list[int], pending: _Merge, counters: dict[int, list[int]]
    ) -> None:
        """Raise CountOverflow if the batch would push a count past MAX_COUNT (nothing applied yet)."""
        biggest = max(calls, default=0)
        if app.ceiling + biggest <= MAX_COUNT:  # the usual case: far from the edge
            app.ceiling += biggest
            return
        # Near the edge: write what is pending, then look at the real counts.
        self._flush(pending, counters)
        app.ceiling = self._stored_ceiling(app.id)
        if app.ceiling + biggest > MAX_COUNT:
            stored = dict(
                self._db.execute(
                    "SELECT id, calls FROM counts WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps(rowids),),
                ).fetchall()
            )
            for rowid, n in zip(rowids, calls, strict=True):
                if stored.get(rowid, 0) + n > MAX_COUNT:
                    raise CountOverflow(
                        f"the batch would raise a count past {MAX_COUNT} (2**63 - 1); nothing of it was applied"
                    )
        app.ceiling += biggest

    def _report(
        self,
        batch: Batch,
        pending: _Merge,
        seen: dict[tuple[str, int], ReportResult],
        counters: dict[int, list[int]],
        changed: dict[str, set[str]],
    ) -> ReportResult:
        ident = (batch.instance_id, batch.sequence)
        earlier = seen.get(ident)
        if earlier is not None:  # the same batch twice in one group
            return ReportResult(batch.sequence, True, earlier.unknown_keys)
        db = self._db
        row = db.execute("SELECT unknown_keys FROM batches WHERE instance_id = ? AND sequence = ?", ident).fetchone()
        if row is None:
            floor = db.execute(
                "SELECT pruned_through FROM instances WHERE instance_id = ?", (batch.instance_id,)
            ).fetchone()
            if floor is not None and batch.sequence <= floor[0]:
                row = (0,)
        if row is not None:
            return ReportResult(batch.sequence, True, row[0])
        app = self._app(batch.app)
        if app is None:
            raise UnknownApp(f"the app {batch.app!r} is not registered; register it before reporting")
        rowids = list(map(app.keys.get, batch.keys))
        calls, estimated = batch.calls, batch.estimated
        lower_bound = batch.lower_bound or [False] * len(calls)
        unknown = rowids.count(None)
        if unknown or 0 in calls:  # rare: drop unknown keys and zero deltas first
            keep = [i for i, (r, n) in enumerate(zip(rowids, calls, strict=True)) if r is not None and n]
            rowids = [rowids[i] for i in keep]
            calls = [calls[i] for i in keep]
            estimated = [estimated[i] for i in keep]
            lower_bound = [lower_bound[i] for i in keep]
        self._check_overflow(app, rowids, calls, pending, counters)  # type: ignore[arg-type]
        day = utc_day(batch.window_start_ms)  # a sender's window never spans a UTC midnight
        if day > app.open_day:  # the first batch of a new day: close the open one (once per app and day)
            self._flush(pending, counters)
            self._close_day(app, day)
        pending.add(
            rowids,  # type: ignore[arg-type]
            calls,
            estimated,
            lower_bound,
            batch.window_start_ms,
            batch.window_end_ms,
        )
        if day < app.open_day:  # rare: a batch of a closed day (sent late) writes its own history rows
            pending.add_late(rowids, calls, (app.id, day), app.sums_day)  # type: ignore[arg-type]
        version_id = app.versions.get(batch.fingerprint) if batch.fingerprint else self._instance_version(batch)
        if version_id is not None:
            pending.versions[version_id] = max(pending.versions.get(version_id, 0), batch.window_end_ms)
        if self._subscribers:  # narrowed to stored keys once per group, in _apply
            changed.setdefault(batch.app, set()).update(batch.keys)
        db.execute(
            "INSERT INTO batches (instance_id, sequence, applied_ms, unknown_keys) VALUES (?, ?, ?, ?)",
            (*ident, _now_ms(), unknown),
        )
        counter = counters.setdefault(app.id, [0, 0])
        counter[0] += unknown
        counter[1] += batch.dropped_updates
        result = ReportResult(batch.sequence, False, unknown)
        seen[ident] = result
        return result

    def _flush(self, pending: _Merge, counters: dict[int, list[int]]) -> None:
        """Write the merged deltas of the group so far (before a Register renumbers keys)."""
        if pending.calls:
            db = self._db
            history = pending.history_rows()
            if self._bulk:
                db.execute(_APPLY_BULK, (json.dumps(pending.rows()),))
            else:
                db.executemany(_APPLY_ROW, [(c, e, f, la, b, r) for c, e, f, la, r, b in pending.rows()])
            if history:  # late batches: their days' rows, and their calls kept out of the open day's
                db.executemany(_HISTORY_ROW, history)
                db.executemany(
                    "INSERT INTO day_base (id, calls) VALUES (?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET calls = calls + excluded.calls",
                    [(r[2], r[3]) for r in history],
                )
            for (app_id, day), on_day in pending.days.items():
                sums_day = pending.sums_days[app_id]
                if day < sums_day:  # a late batch for a closed day: add it to the sums it falls in
                    flags = [int(day > sums_day - w) for w in _WINDOWS]
                    if any(flags):
                        db.executemany(
                            _SUMS_ADD_ROWS,
                            [(app_id, k, n * flags[0], n * flags[1], n * flags[2]) for k, n in on_day.items()],
                        )
            pending.clear()
        if pending.versions:  # outside the calls: a batch of unknown keys still says its version is alive
            self._db.executemany(
                "UPDATE versions SET last_seen_ms = max(last_seen_ms, ?) WHERE id = ?",
                [(ms, v) for v, ms in pending.versions.items()],
            )
            pending.versions.clear()
        if counters:
            now = _now_ms()
            self._db.executemany(
                "UPDATE apps SET"
                " dropped_unknown = min(dropped_unknown + ?, 9223372036854775807),"
                " dropped_updates = min(dropped_updates + ?, 9223372036854775807),"
                " updated_ms = max(updated_ms, ?)"
                " WHERE id = ?",
                [(u, d, now, app_id) for app_id, (u, d) in counters.items()],
            )
            counters.clear()

    def _register(
        self,
        name: str,
        sources: Sequence[Source],
        now_ms: int,
        fingerprint: str,
        label: str,
        instance_id: str,
        ignore: IgnoreRules,
        changes: dict[str, Change],
    ) -> RegisterResult:
        db = self._db
        app = self._app(name)
        if app is None:
            if db.execute("SELECT count(*) FROM apps").fetchone()[0] >= self.max_apps:
                raise TooManyApps(
                    f"the collector keeps at most {self.max_apps} apps; delete one (coldmod apps delete NAME)"
                    " or start it with a larger --max-apps"
                )
            cursor = db.execute(
                "INSERT INTO apps (name, fingerprint, registered_ms, updated_ms, sums_day, open_day)"
                " VALUES (?, '', ?, ?, ?, ?)",
                (name, now_ms, now_ms, utc_day(now_ms), utc_day(now_ms)),
            )
            app = self._apps[name] = _App(
                int(cursor.lastrowid or 0), "", {}, sums_day=utc_day(now_ms), open_day=utc_day(now_ms)
            )
        ignored = self._ignored(app, ignore, sources)
        removed = set(self._drop_keys(app, [app.keys[k] for k in ignored if k in app.keys]))
        version_id = app.versions.get(fingerprint)
        if version_id is not None and fingerprint:
            # A fleet restarting registers the same set again and again: the version is refreshed, nothing else.
            self._touch_app(app, version_id, fingerprint, now_ms, label, instance_id)
            if removed:
                changes[name] = Change(name, "register")
            return RegisterResult(len(app.keys), 0, len(removed))
        new = {s.key: s for s in sources if s.key not in ignored}
        old = app.keys
        added = [s for k, s in new.items() if k not in old]
        kept = [
            (s.path, lines, old[k], s.path, lines)
            for k, s in new.items()
            if k in old
            for lines in (",".join(map(str, s.lines)),)
        ]
        db.executemany(  # the newest Register says where a shared key is defined
            "UPDATE keys SET path = ?, lines = ? WHERE id = ? AND (path != ? OR lines != ?)",
            kept,
        )
        db.executemany(
            "INSERT INTO keys (app_id, key, path, lines) VALUES (?, ?, ?, ?)",
            [(app.id, s.key, s.path, ",".join(map(str, s.lines))) for s in added],
        )
        if added:  # a count row for each new key, tracked from now
            db.execute(
                "INSERT INTO counts (id, tracked_since_ms) SELECT k.id, ? FROM keys k"
                " LEFT JOIN counts c ON c.id = k.id WHERE k.app_id = ? AND c.id IS NULL",
                (now_ms, app.id),
            )
            app.keys = dict(db.execute("SELECT key, id FROM keys WHERE app_id = ?", (app.id,)).fetchall())
        members = set(map(app.keys.__getitem__, new))
        if version_id is None:
            version_id = int(
                db.execute(
                    "INSERT INTO versions (app_id, fingerprint, label, first_seen_ms, last_seen_ms)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (app.id, fingerprint, label, now_ms, now_ms),
                ).lastrowid
                or 0
            )
            app.versions[fingerprint] = version_id
            before: set[int] = set()
        else:  # the fingerprint-less version "" sent another set: it is replaced
            before = {k for (k,) in db.execute("SELECT key_id FROM members WHERE version_id = ?", (version_id,))}
        left = sorted(before - members)
        # Key ids as one JSON array each: a 200,000-key set is one statement, not a Python step per key.
        db.execute(
            "DELETE FROM members WHERE version_id = ? AND key_id IN (SELECT value FROM json_each(?))",
            (version_id, json.dumps(left)),
        )
        db.execute(
            "INSERT INTO members (version_id, key_id) SELECT ?, value FROM json_each(?)",
            (version_id, json.dumps(sorted(members - before))),
        )
        removed.update(self._drop_keys(app, self._orphans(left)))
        self._touch_app(app, version_id, fingerprint, now_ms, label, instance_id)
        db.execute("UPDATE apps SET updated_ms = ? WHERE id = ?", (now_ms, app.id))
        changes[name] = Change(name, "register")
        return RegisterResult(len(new) - len(added), len(added), len(removed))

    def _close_day(self, app: _App, day: int) -> None:
        """The app's open day is over: its calls become history rows, and ``day`` is the open day."""
        self._db.execute(_CLOSE_DAY_HISTORY, (app.open_day, app.id))
        self._db.execute(_CLOSE_DAY_BASE, (app.id,))
        self._db.execute("UPDATE apps SET open_day = ? WHERE id = ?", (day, app.id))
        app.open_day = day

    def _lease(self, app: str, fingerprint: str, holder: str, now_ms: int, lease_ms: int) -> bool:
        """Take or renew the lease unless another holder's is unexpired (in the writer's transaction)."""
        self._db.execute(
            "INSERT INTO leases (app, fingerprint, holder, expires_ms) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (app, fingerprint) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms"
            " WHERE leases.holder = excluded.holder OR leases.expires_ms <= ?",
            (app, fingerprint, holder, now_ms + lease_ms, now_ms),
        )
        return bool(self._db.execute("SELECT changes()").fetchone()[0])

    def _touch(self, name: str, fingerprint: str, now_ms: int, label: str, instance_id: str) -> None:
        """A fingerprint-only Register of a known version: refresh it (no-op when unknown)."""
        app = self._app(name)
        version_id = app.versions.get(fingerprint) if app is not None else None
        if app is not None and version_id is not None:
            self._touch_app(app, version_id, fingerprint, now_ms, label, instance_id)

    def _touch_app(
        self, app: _App, version_id: int, fingerprint: str, now_ms: int, label: str, instance_id: str
    ) -> None:
        """The version registered now: its last seen and label, the instance's version, the app's last Register."""
        db = self._db
        db.execute(
            "UPDATE versions SET last_seen_ms = max(last_seen_ms, ?), label = CASE WHEN ? = '' THEN label ELSE ? END"
            " WHERE id = ?",
            (now_ms, label, label, version_id),
        )
        db.execute("UPDATE apps SET fingerprint = ?, registered_ms = ? WHERE id = ?", (fingerprint, now_ms, app.id))
        app.fingerprint = fingerprint
        if instance_id:
            db.execute(
                "INSERT INTO instance_versions (instance_id, version_id, last_ms) VALUES (?, ?, ?)"
                " ON CONFLICT (instance_id) DO UPDATE SET version_id = excluded.version_id, last_ms = excluded.last_ms",
                (instance_id, version_id, _now_ms()),  # the wall clock, as the dedupe rows: pruned with them
            )
            self._instances[instance_id] = version_id

    def _instance_version(self, batch: Batch) -> int | None:
        """The version a fingerprint-less batch's instance registered with (older tracers), if known."""
        cached = self._instances.get(batch.instance_id, _UNKNOWN)
        if cached is _UNKNOWN:
            row = self._db.execute(
                "SELECT version_id FROM instance_versions WHERE instance_id = ?", (batch.instance_id,)
            ).fetchone()
            cached = self._instances[batch.instance_id] = row[0] if row else None
        return cached  # type: ignore[return-value]

    def _ignored(self, app: _App, rules: IgnoreRules, sources: Sequence[Source]) -> set[str]:
        """The keys of the app and of ``sources`` that the rules ignore (by key, or by their file's path)."""
        ignored = set(rules.keys)
        if rules.files:
            matches = compile_globs(rules.files)
            paths = self._db.execute("SELECT key, path FROM keys WHERE app_id = ?", (app.id,)).fetchall()
            ignored.update(k for k, path in paths if matches(path))
            ignored.update(s.key for s in sources if matches(s.path))
        return ignored

    def _orphans(self, key_ids: list[int]) -> list[int]:
        """Those of the keys no version has any more."""
        if not key_ids:
            return []
        rows = self._db.execute(
            "SELECT value FROM json_each(?) WHERE value NOT IN (SELECT key_id FROM members)", (json.dumps(key_ids),)
        )
        return [k for (k,) in rows]

    def _drop_keys(self, app: _App, key_ids: list[int]) -> list[int]:
        """Remove keys from the app: counts, history, sums, memberships; returns their ids."""
        if not key_ids:
            return []
        db, ids = self._db, json.dumps(key_ids)
        tables = (("counts", "id"), ("day_base", "id"), ("history", "key_id"), ("members", "key_id"), ("keys", "id"))
        for table, column in tables:
            db.execute(f"DELETE FROM {table} WHERE {column} IN (SELECT value FROM json_each(?))", (ids,))  # noqa: S608
        db.execute("DELETE FROM sums WHERE app_id = ? AND id IN (SELECT value FROM json_each(?))", (app.id, ids))
        gone = set(key_ids)
        app.keys = {k: r for k, r in app.keys.items() if r not in gone}
        return key_ids

    def _retire(self, now_ms: int, after_ms: int, changes: dict[str, Change]) -> dict[str, list[Version]]:
        """Retire silent versions (never an app's newest-seen one), prune old history, bring the sums to today."""
        db, today = self._db, utc_day(now_ms)
        retired: dict[str, list[Version]] = {}
        stale = db.execute(
            "SELECT a.name, v.id, v.fingerprint, v.label, v.first_seen_ms, v.last_seen_ms,"
            " (SELECT count(*) FROM members m WHERE m.version_id = v.id)"
            " FROM versions v JOIN apps a ON a.id = v.app_id WHERE v.last_seen_ms < ?"
            " AND v.id != (SELECT w.id FROM versions w WHERE w.app_id = v.app_id"
            " ORDER BY w.last_seen_ms DESC, w.id DESC LIMIT 1)"
            " ORDER BY a.name, v.first_seen_ms",
            (now_ms - after_ms,),
        ).fetchall()
        for name, version_id, fingerprint, label, first, last, keys in stale:
            app = self._app(name)
            assert app is not None
            left = [k for (k,) in db.execute("SELECT key_id FROM members WHERE version_id = ?", (version_id,))]
            db.execute("DELETE FROM members WHERE version_id = ?", (version_id,))
            db.execute("DELETE FROM instance_versions WHERE version_id = ?", (version_id,))
            db.execute("DELETE FROM versions WHERE id = ?", (version_id,))
            self._drop_keys(app, self._orphans(left))
            app.versions = {f: v for f, v in app.versions.items() if v != version_id}
            self._instances.clear()
            retired.setdefault(name, []).append(Version(fingerprint, label, first, last, keys))
            changes[name] = Change(name, "register")
        db.execute("DELETE FROM leases WHERE expires_ms <= ?", (now_ms,))
        for app_id, name, sums_day, open_day in db.execute("SELECT id, name, sums_day, open_day FROM apps").fetchall():
            db.execute("DELETE FROM history WHERE app_id = ? AND day < ?", (app_id, today - HISTORY_KEEP_DAYS))
            if today > open_day:  # the sums take closed days from the table: close the open one first
                opened = self._app(name)
                assert opened is not None
                self._close_day(opened, today)
            if today > sums_day:
                self._roll_sums(app_id, sums_day, today)
                cached = self._apps.get(name)
                if cached is not None:
                    cached.sums_day = today
        return retired

    def _roll_sums(self, app_id: int, sums_day: int, today: int) -> None:
        """Bring the app's sums from ``sums_day`` to ``today`` (see "Sums" in the module docstring)."""
        db = self._db
        if sums_day <= 0 or today - sums_day > SUMS_ROLL_DAYS:
            db.execute("DELETE FROM sums WHERE app_id = ?", (app_id,))
            db.execute(
                "INSERT INTO sums (app_id, id, c7, c30, c90) SELECT app_id, key_id,"
                " sum(calls * (day >= ?)), sum(calls * (day >= ?)), sum(calls) FROM history"
                " WHERE app_id = ? AND day BETWEEN ? AND ? GROUP BY key_id",
                (today - 6, today - 29, app_id, today - 89, today - 1),
            )
        else:
            for day in range(sums_day, today):  # each day that closed enters every window ...
                db.execute(_SUMS_ADD_DAY, (1, 1, 1, app_id, day))
                for index, window in enumerate(_WINDOWS):  # ... and the day that left each window leaves it
                    signs = [0, 0, 0]
                    signs[index] = -1
                    db.execute(_SUMS_ADD_DAY, (*signs, app_id, day - window + 1))
            db.execute("DELETE FROM sums WHERE app_id = ? AND c7 = 0 AND c30 = 0 AND c90 = 0", (app_id,))
        db.execute("UPDATE apps SET sums_day = ? WHERE id = ?", (today, app_id))

    def _reset(self, name: str, now_ms: int, changes: dict[str, Change]) -> int:
        app = self._app(name)
        if app is None:
            raise UnknownApp(f"the app {name!r} is not registered")
        self._db.execute(
            "UPDATE counts SET calls = 0, estimated = 0, first_seen_ms = 0, last_seen_ms = 0, tracked_since_ms = ?,"
            " lower_bound = 0 WHERE id IN (SELECT id FROM keys WHERE app_id = ?)",
            (now_ms, app.id),
        )
        app.ceiling = 0
        self._db.execute("DELETE FROM history WHERE app_id = ?", (app.id,))
        self._db.execute("DELETE FROM sums WHERE app_id = ?", (app.id,))
        self._db.execute("DELETE FROM day_base WHERE id IN (SELECT id FROM keys WHERE app_id = ?)", (app.id,))
        app.open_day = utc_day(now_ms)
        self._db.execute(
            "UPDATE apps SET dropped_unknown = 0, dropped_updates = 0, updated_ms = ?, open_day = ? WHERE id = ?",
            (now_ms, app.open_day, app.id),
        )
        changes[name] = Change(name, "reset")
        return len(app.keys)

    def _delete(self, name: str, changes: dict[str, Change]) -> int:
        """Remove the app's counts, keys and row (in the writer's transaction)."""
        app = self._app(name)
        if app is None:
            raise UnknownApp(f"the app {name!r} is not registered")
        db = self._db
        db.execute("DELETE FROM counts WHERE id IN (SELECT id FROM keys WHERE app_id = ?)", (app.id,))
        db.execute("DELETE FROM day_base WHERE id IN (SELECT id FROM keys WHERE app_id = ?)", (app.id,))
        db.execute("DELETE FROM history WHERE app_id = ?", (app.id,))
        db.execute("DELETE FROM sums WHERE app_id = ?", (app.id,))
        versions = "SELECT id FROM versions WHERE app_id = ?"
        db.execute(f"DELETE FROM members WHERE version_id IN ({versions})", (app.id,))  # noqa: S608
        db.execute(f"DELETE FROM instance_versions WHERE version_id IN ({versions})", (app.id,))  # noqa: S608
        db.execute("DELETE FROM versions WHERE app_id = ?", (app.id,))
        db.execute("DELETE FROM keys WHERE app_id = ?", (app.id,))
        db.execute("DELETE FROM apps WHERE id = ?", (app.id,))
        self._instances.clear()
        del self._apps[name]
        changes[name] = Change(name, "delete")
        return len(app.keys)

    def _restore(self, heatmap: Heatmap, fingerprint: str, changes: dict[str, Change]) -> None:
        """Replace (or create) the app with exactly ``heatmap``, in the writer's transaction."""
        db, name = self._db, heatmap.app
        too_big = next((e for e in heatmap.entries if not 0 <= e.calls <= MAX_COUNT), None)
        if too_big is not None:  # SQLite's integers end there; refused before anything changed
            raise CountOverflow(
                f"the count of {too_big.key!r} is beyond 0..{MAX_COUNT} (2**63 - 1); nothing of the app was copied"
            )
        if self._app(name) is not None:
            self._delete(name, changes)
        elif db.execute("SELECT count(*) FROM apps").fetchone()[0] >= self.max_apps:
            raise TooManyApps(
                f"the collector keeps at most {self.max_apps} apps; delete one (coldmod apps delete NAME)"
                " or start it with a larger --max-apps"
            )
        app_id = int(
            db.execute(
                "INSERT INTO apps (name, fingerprint, registered_ms, updated_ms, dropped_unknown, dropped_updates)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (name, fingerprint, heatmap.registered_ms, _now_ms(), heatmap.dropped_unknown, heatmap.dropped_updates),
            ).lastrowid
            or 0
        )
        db.executemany(
            "INSERT INTO keys (app_id, key, path, lines) VALUES (?, ?, ?, ?)",
            [(app_id, e.key, e.path, ",".join(map(str, e.lines))) for e in heatmap.entries],
        )
        ids = dict(db.execute("SELECT key, id FROM keys WHERE app_id = ?", (app_id,)).fetchall())
        db.executemany(
            "INSERT INTO counts (id, calls, estimated, first_seen_ms, last_seen_ms, tracked_since_ms, lower_bound)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (ids[e.key], e.calls, e.estimated, e.first_seen_ms, e.last_seen_ms, e.tracked_since_ms, e.lower_bound)
                for e in heatmap.entries
            ],
        )
        # Versions as given; a heatmap without any (from an older store) is one version: the app's set.
        versions = heatmap.versions or [
            Version(fingerprint, "", heatmap.registered_ms, heatmap.registered_ms, len(heatmap.entries))
        ]
        version_ids = [
            int(
                db.execute(
                    "INSERT INTO versions (app_id, fingerprint, label, first_seen_ms, last_seen_ms)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (app_id, v.fingerprint, v.label, v.first_seen_ms, v.last_seen_ms),
                ).lastrowid
                or 0
            )
            for v in versions
        ]
        db.executemany(
            "INSERT INTO members (version_id, key_id) VALUES (?, ?)",
            [
                (version_ids[i], ids[e.key])
                for e in heatmap.entries
                for i in (e.versions if heatmap.versions else range(len(version_ids)))
            ],
        )
        db.executemany(
            "INSERT INTO history (app_id, day, key_id, calls) VALUES (?, ?, ?, ?)",
            [(app_id, d, ids[e.key], n) for e in heatmap.entries for d, n in zip(e.days, e.day_calls, strict=True)],
        )
        # The history is all in rows: the open day starts now with nothing in it.
        db.execute(
            "INSERT INTO day_base (id, calls) SELECT id, calls FROM counts"
            " WHERE id IN (SELECT id FROM keys WHERE app_id = ?) AND calls != 0",
            (app_id,),
        )
        db.execute("UPDATE apps SET open_day = ? WHERE id = ?", (utc_day(_now_ms()), app_id))
        self._roll_sums(app_id, 0, utc_day(_now_ms()))
        self._apps.pop(name, None)  # the writer reloads the new rows (and their ceiling) when next needed
        changes[name] = Change(name, "register")

    def _checkpoint(self) -> None:
        """After a failed write: copy the WAL into the file and empty it, so freed disk space suffices."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:
            log.debug("coldmod store: checkpoint after a failed write failed: %s", exc)

    def _maybe_prune(self) -> None:
        """Forget dedupe rows older than a day (keeping a per-instance floor) every few minutes."""
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY_S
        cutoff = _now_ms() - DEDUPE_KEEP_MS
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO instances (instance_id, pruned_through, last_ms)"
                " SELECT instance_id, max(sequence), max(applied_ms) FROM batches WHERE applied_ms < ?"
                " GROUP BY instance_id"
                " ON CONFLICT (instance_id) DO UPDATE SET"
                " pruned_through = max(pruned_through, excluded.pruned_through),"
                " last_ms = max(last_ms, excluded.last_ms)",
                (cutoff,),
            )
            db.execute("DELETE FROM batches WHERE applied_ms < ?", (cutoff,))
            db.execute("DELETE FROM instances WHERE last_ms < ?", (_now_ms() - INSTANCE_KEEP_MS,))
            db.execute("DELETE FROM instance_versions WHERE last_ms < ?", (_now_ms() - INSTANCE_KEEP_MS,))
            db.execute("COMMIT")
            self._instances.clear()
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            log.warning("coldmod store: pruning old batch ids failed: %s", exc)


_NO_RULES = IgnoreRules()
_NO_DAYS: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())
_WINDOWS = (7, 30, 90)


def _member_ids(db: sqlite3.Connection, version_id: int) -> list[int]:
    """The key ids of a version, as one string parsed in C (a Python step per row was most of the cost)."""
    joined = db.execute("SELECT group_concat(key_id) FROM members WHERE version_id = ?", (version_id,)).fetchone()[0]
    return json.loads(f"[{joined or ''}]")  # type: ignore[no-any-return]


#: An app's open day and the calls of each key on it (counts.calls - day_base.calls, non-zero only).
_OpenDay = tuple[int, dict[int, int]]


def _key_days(
    db: sqlite3.Connection, ids: list[int], open_day: _OpenDay
) -> dict[int, tuple[tuple[int, ...], tuple[int, ...]]]:
    """``key id -> (days, calls)`` for the keys that have history (index ``history_key``), the open day last."""
    if not ids:
        return {}
    rows = db.execute(
        "SELECT key_id, day, calls FROM history WHERE key_id IN (SELECT value FROM json_each(?)) ORDER BY key_id, day",
        (json.dumps(ids),),
    ).fetchall()
    out: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    for key_id, group in groupby(rows, itemgetter(0)):
        _, days, calls = zip(*group, strict=True)
        out[key_id] = (days, calls)
    day, today_calls = open_day
    for key_id in set(ids).intersection(today_calls):  # the open day is after every row (a restored one: equal)
        days, calls = out.get(key_id, _NO_DAYS)
        if days and days[-1] == day:
            out[key_id] = (days, (*calls[:-1], calls[-1] + today_calls[key_id]))
        else:
            out[key_id] = ((*days, day), (*calls, today_calls[key_id]))
    return out


def _window_sums(
    db: sqlite3.Connection, app_id: int, sums_day: int, today: int, open_day: _OpenDay
) -> list[dict[int, int]]:
    """Calls per key in the last 7, 30 and 90 days ending ``today`` (see "Sums" in the module docstring)."""
    day, open_calls = open_day
    if not 0 < sums_day <= today <= sums_day + SUMS_ROLL_DAYS:  # far from the kept sums: sum the rows
        rows = db.execute(
            "SELECT key_id, sum(calls * (day >= ?)), sum(calls * (day >= ?)), sum(calls) FROM history"
            " WHERE app_id = ? AND day BETWEEN ? AND ? GROUP BY key_id",
            (today - 6, today - 29, app_id, today - 89, today),
        ).fetchall()
        sums = [{r[0]: r[i] for r in rows} for i in (1, 2, 3)]
        for window, totals in zip(_WINDOWS, sums, strict=True):
            if today - window < day <= today:
                _add_into(totals, open_calls, 1)
        return sums
    rows = db.execute("SELECT id, c7, c30, c90 FROM sums WHERE app_id = ?", (app_id,)).fetchall()
    sums = [{r[0]: r[i] for r in rows} for i in (1, 2, 3)]
    since = dict(db.execute(_DAYS_SUM, (app_id, sums_day, today)).fetchall())  # the days not yet in the sums
    if sums_day <= day <= today:
        _add_into(since, open_calls, 1)
    for window, totals in zip(_WINDOWS, sums, strict=True):
        _add_into(totals, since, 1)
        if today > sums_day:  # the days that left the window since sums_day
            gone = dict(db.execute(_DAYS_SUM, (app_id, sums_day - window + 1, today - window)).fetchall())
            if sums_day - window + 1 <= day <= today - window:
                _add_into(gone, open_calls, 1)
            _add_into(totals, gone, -1)
    return sums


def _add_into(totals: dict[int, int], more: dict[int, int], sign: int) -> None:
    """``totals[k] += sign * more[k]`` for every k of ``more``, as C loops."""
    values = more.values() if sign == 1 else map(int.__neg__, more.values())
    totals.update(zip(more, map(add, map(totals.get, more, repeat(0)), values), strict=True))


def _supports_bulk(db: sqlite3.Connection) -> bool:
    """Whether this SQLite runs ``_APPLY_BULK`` (UPDATE ... FROM and JSON)."""
    try:
        db.execute(_APPLY_BULK, ("[]",))
    except sqlite3.OperationalError:
        return False
    return True


def _lock(path: Path) -> int:
    """Hold an exclusive lock on the store file: two collectors on one file would diverge."""
    if path.exists() and not path.is_file():
        raise StoreError(f"the store {path} is not a regular file; point --store at a file")
    if not path.parent.is_dir():
        raise StoreError(f"the store's directory {path.parent} does not exist; create it or choose another --store")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(f"the store {path} cannot be opened ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StoreError(f"the store {path} is in use by another coldmod serve") from None
    return fd


def _open_writer(path: Path) -> sqlite3.Connection:
    """The writer's connection: schema checked, created or migrated; WAL; synchronous=FULL."""
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"the store {path} cannot be opened ({exc})") from None
    try:
        try:
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.DatabaseError:
            raise SchemaError(
                f"{path} is not a Coldmod store (not an SQLite database); point --store at a new or Coldmod file"
            ) from None
        if app_id == 0 and version == 0 and tables == 0:
            db.executescript(
                f"BEGIN; {_SCHEMA} PRAGMA application_id = {APPLICATION_ID};"
                f" PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            )
        elif app_id != APPLICATION_ID:
            raise SchemaError(
                f"{path} is an SQLite database of another program, not a Coldmod store; choose another --store"
            )
        elif version > SCHEMA_VERSION:
            raise SchemaError(
                f"{path} was written by a newer Coldmod (schema {version}; this version reads up to {SCHEMA_VERSION});"
                " upgrade coldmod-cli"
            )
        elif version < SCHEMA_VERSION:
            _migrate(db, path, version)
        if db.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
            raise StoreError(f"the store {path} cannot use write-ahead logging; put it on a local file system")
        # FULL: in WAL mode, NORMAL may lose the last commits on power loss — acks must not be lost.
        db.execute("PRAGMA synchronous = FULL")
        # A heatmap of a few hundred thousand keys fits in the page cache: updates never wait on reads.
        db.execute("PRAGMA cache_size = -65536")
        # Checkpoint (copy the WAL into the file, with its own fsyncs) per ~16 MB, not per 4 MB.
        db.execute("PRAGMA wal_autocheckpoint = 4000")
        db.execute("PRAGMA busy_timeout = 5000")
        return db
    except sqlite3.Error as exc:  # reached only on I/O errors (disk full, permissions)
        db.close()
        raise StoreError(f"the store {path} cannot be used ({exc})") from None
    except BaseException:
        db.close()
        raise


def _migrate(db: sqlite3.Connection, path: Path, version: int) -> None:
    """Lift the store to SCHEMA_VERSION one step at a time, in one transaction."""
    steps = []
    for v in range(version, SCHEMA_VERSION):
        if v not in MIGRATIONS:
            raise SchemaError(
                f"{path} has schema {version}, which this version of Coldmod cannot migrate; start a new store"
            )
        steps.append(MIGRATIONS[v])
    db.executescript("BEGIN; " + "; ".join(steps) + f"; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")

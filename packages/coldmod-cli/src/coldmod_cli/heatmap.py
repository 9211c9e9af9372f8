"""The server's heatmap reconciled with the local checkout, and which functions are cold.

Local discovery is the truth for what exists and where: a server key the
checkout no longer has is skipped (and counted), a local key the server has not
seen yet is *untracked* (never cold: nothing is known about it).
"""

from __future__ import annotations

import ast
import marshal
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from coldmod_cli._words import plural, span
from coldmod_cli.server.store import DAY_MS  # the collector's UTC days: one definition

if TYPE_CHECKING:
    from coldmod_proto.v1 import coldmod_pb2
    from coldmod_trace.discovery import Discovery


@dataclass(frozen=True)
class Row:
    """One local function and what the collector knows of it."""

    key: str
    path: str
    line: int
    tracked: bool
    calls: int = 0
    estimated: bool = False
    first_seen_ms: int = 0
    last_seen_ms: int = 0
    tracked_since_ms: int = 0
    #: The line of every definition sharing the key (a getter and its setter); ``line`` is the first.
    lines: tuple[int, ...] = ()
    #: ``calls`` is only what the tracer saw for sure: the truth is at least that.
    lower_bound: bool = False
    #: Calls in the last 7, 30 and 90 UTC days (today included), from the collector's daily history.
    calls_7d: int = 0
    calls_30d: int = 0
    calls_90d: int = 0
    #: Indices into :attr:`CheckoutView.versions` of the live versions that have the key.
    versions: tuple[int, ...] = ()
    #: Sparse daily history (UTC day numbers with calls, oldest first, and their calls); only for the
    #: quiet rows a Fetch asked it for (``quiet_days``).
    days: tuple[int, ...] = ()
    day_calls: tuple[int, ...] = ()


@dataclass(frozen=True)
class Version:
    """One live version of the app: a key set (its fingerprint) and the label its deployment gave."""

    fingerprint: str
    label: str
    first_seen_ms: int
    last_seen_ms: int
    keys: int
    #: How it is shown: the label, else a fingerprint prefix (see :func:`version_names`).
    name: str = ""


@dataclass
class CheckoutView:
    """One app's heatmap as the checkout sees it: the collector's counts joined with the local functions.

    (What the collector keeps is :class:`coldmod_cli.server.store.Heatmap`.)
    """

    app: str
    root: str
    rows: list[Row] = field(default_factory=list)
    skipped_keys: list[str] = field(default_factory=list)
    registered_ms: int = 0
    dropped_unknown: int = 0
    dropped_updates: int = 0
    #: "Now" for every window: the collector's clock at the snapshot (the local clock for an older collector).
    now_ms: int = 0
    versions: list[Version] = field(default_factory=list)
    #: The collector's retention: a version none of whose processes reported for this long is retired.
    retire_after_ms: int = 0

    @property
    def untracked(self) -> int:
        """Local functions the collector has not seen registered."""
        return sum(1 for row in self.rows if not row.tracked)


def now_ms() -> int:
    """The current time in epoch milliseconds, the protocol's unit."""
    return int(time.time() * 1000)


#: How long a fingerprint prefix names a version that has no label.
FINGERPRINT_PREFIX = 8


def version_names(versions: Iterable[Any]) -> list[Version]:
    """The live versions, each named by its label, else a fingerprint prefix (``label@prefix`` when labels repeat).

    ``versions``: anything with the fields of ``coldmod_pb2.Version`` (the store's versions too: the web UI).
    """
    listed = list(versions)
    labels = [v.label for v in listed]
    out = []
    for v in listed:
        prefix = v.fingerprint[:FINGERPRINT_PREFIX]
        name = (f"{v.label}@{prefix}" if labels.count(v.label) > 1 else v.label) if v.label else prefix
        out.append(Version(v.fingerprint, v.label, v.first_seen_ms, v.last_seen_ms, v.keys, name or "?"))
    return out


def reconcile(response: coldmod_pb2.FetchResponse, discovery: Discovery) -> CheckoutView:
    """Join the server's entries with the local sources, sorted by file and line."""
    entries = {entry.key: entry for entry in response.entries}
    heatmap = CheckoutView(
        app=discovery.marker.app,
        root=str(discovery.marker.root),
        registered_ms=response.registered_ms,
        dropped_unknown=response.dropped_unknown,
        dropped_updates=response.dropped_updates,
        now_ms=response.now_ms or now_ms(),
        versions=version_names(response.versions),
        retire_after_ms=response.retire_after_ms,
    )
    for key, source in discovery.sources.items():
        entry = entries.get(key)
        line = source.lines[0] if source.lines else 0
        if entry is None:
            heatmap.rows.append(Row(key, source.path, line, tracked=False, lines=tuple(source.lines)))
            continue
        heatmap.rows.append(
            Row(
                key,
                source.path,
                line,
                tracked=True,
                calls=entry.calls,
                estimated=entry.estimated,
                first_seen_ms=entry.first_seen_ms,
                last_seen_ms=entry.last_seen_ms,
                tracked_since_ms=entry.tracked_since_ms,
                lines=tuple(source.lines),
                lower_bound=entry.lower_bound,
                calls_7d=entry.calls_7d,
                calls_30d=entry.calls_30d,
                calls_90d=entry.calls_90d,
                versions=tuple(entry.versions),
                days=tuple(entry.days),
                day_calls=tuple(entry.day_calls),
            )
        )
    heatmap.skipped_keys = sorted(set(entries) - set(discovery.sources))
    heatmap.rows.sort(key=lambda row: (row.path, row.line, row.key))
    return heatmap


def quiet(row: Row, *, now: int, since: float | None = None) -> bool:
    """No call in the window: never called, or with ``since`` seconds, no call in the last ``since`` before ``now``."""
    if row.calls == 0 or row.last_seen_ms == 0:
        return True
    return since is not None and row.last_seen_ms < now - since * 1000


def tracked_for(row: Row, *, now: int, seconds: float) -> bool:
    """The collector has had the key for at least ``seconds`` before ``now``."""
    return seconds <= 0 or row.tracked_since_ms <= now - seconds * 1000


def cold(rows: Iterable[Row], *, now: int, since: float | None = None, min_tracked: float | None = None) -> list[Row]:
    """Tracked rows, quiet (see :func:`quiet`), tracked at least as long as the window and ``min_tracked``.

    "No call in the last 90 days" says nothing of a function tracked for a week, so the window is also a
    minimum age; ``now`` is :attr:`CheckoutView.now_ms`, the collector's clock.
    """
    need = max(since or 0.0, min_tracked or 0.0)
    return [
        row
        for row in rows
        if row.tracked and quiet(row, now=now, since=since) and tracked_for(row, now=now, seconds=need)
    ]


def too_briefly_tracked(
    rows: Iterable[Row], *, now: int, since: float | None = None, min_tracked: float | None = None
) -> list[Row]:
    """Quiet rows left out of :func:`cold`: the collector has had them for less than the window or ``min_tracked``."""
    need = max(since or 0.0, min_tracked or 0.0)
    return [
        row
        for row in rows
        if row.tracked and quiet(row, now=now, since=since) and not tracked_for(row, now=now, seconds=need)
    ]


def quiet_days(since: float | None) -> int:
    """The ``quiet_days`` to ask Fetch for, so that every row cold for ``since`` seconds carries its history.

    A row with no call since ``now - since`` has none in the last ``floor(since / 1 day)`` UTC days; a window
    under a day still asks for one (its history then may be missing: :mod:`coldmod_cli.seasonal` falls back
    on the last call).
    """
    if since is None:
        return 0
    return max(1, int(since * 1000 // DAY_MS))


def iso(ms: int) -> str | None:
    """An epoch-milliseconds time as ISO 8601 UTC (``2026-01-31T12:00:00.123Z``); None for 0."""
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def row_json(row: Row, versions: Sequence[Version] = ()) -> dict[str, Any]:
    """The stable JSON form of a row (documented in the package README); ``versions`` are the heatmap's."""
    return {
        "key": row.key,
        "path": row.path,
        "line": row.line,
        "tracked": row.tracked,
        "calls": row.calls if row.tracked else None,
        "estimated": row.estimated,
        "lower_bound": row.lower_bound,
        "first_seen": iso(row.first_seen_ms),
        "last_seen": iso(row.last_seen_ms),
        "tracked_since": iso(row.tracked_since_ms),
        "calls_7d": row.calls_7d if row.tracked else None,
        "calls_30d": row.calls_30d if row.tracked else None,
        "calls_90d": row.calls_90d if row.tracked else None,
        "versions": [versions[i].name for i in row.versions if i < len(versions)],
    }


def ago(ms: int, now: int) -> str:
    """A short relative time: ``never``, ``12s ago``, ``5m ago``, ``3h ago``, ``4d ago``."""
    if not ms:
        return "never"
    seconds = max(0, (now - ms) // 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def table(rows: Iterable[Row], now: int, *, notes: Mapping[str, str] | None = None) -> list[str]:
    """Aligned text lines: calls, last call, location, key (``~`` an estimate, ``≥`` a lower bound).

    ``notes`` (by key) follow their row's key in parentheses, like the review reasons of ``rm``.
    """
    notes = notes or {}
    body = []
    for row in rows:
        body.append((calls_text(row), last_call_text(row, now), f"{row.path}:{row.line}", row.key))
    header = ("CALLS", "LAST CALL", "LOCATION", "KEY")
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(3)]
    return [
        f"{r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}"
        + (f"  ({notes[r[3]]})" if r[3] in notes else "")
        for r in [header, *body]
    ]


def calls_text(row: Row) -> str:
    """A row's calls as the tables show them: ``~`` an estimate, ``≥`` a lower bound, ``-`` untracked."""
    if not row.tracked:
        return "-"
    return ("≥" if row.lower_bound else "~" if row.estimated else "") + str(row.calls)


def last_call_text(row: Row, now: int) -> str:
    """A row's last call as the tables show it: ``4d ago``, ``never``, ``untracked``."""
    return ago(row.last_seen_ms, now) if row.tracked else "untracked"


def history_table(rows: Iterable[Row], heatmap: CheckoutView) -> list[str]:
    """``coldmod fetch``'s lines: the live versions, then per row calls (in all, last 7/30/90 days), last and
    first call, the versions that have it, location and key."""
    now = heatmap.now_ms
    names = [v.name for v in heatmap.versions]
    body = []
    for row in rows:
        recent = [str(n) if row.tracked else "-" for n in (row.calls_7d, row.calls_30d, row.calls_90d)]
        first = ago(row.first_seen_ms, now) if row.tracked else "-"
        body.append(
            (calls_text(row), *recent, last_call_text(row, now), first, versions_text(row, names),
             f"{row.path}:{row.line}", row.key)
        )
    header = ("CALLS", "7D", "30D", "90D", "LAST CALL", "FIRST CALL", "VERSIONS", "LOCATION", "KEY")
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header) - 1)]
    right = 4  # the counts are right-aligned
    lines = [versions_line(heatmap)]
    for r in [header, *body]:
        cells = [f"{c:>{w}}" if i < right else f"{c:<{w}}" for i, (c, w) in enumerate(zip(r, widths, strict=False))]
        lines.append("  ".join(cells) + "  " + r[-1])
    return lines


def versions_text(row: Row, names: Sequence[str]) -> str:
    """The versions that have a row's key: their names, ``all`` when every one of several does, ``-`` for none."""
    if not row.tracked or not row.versions:
        return "-"
    if len(names) > 1 and len(set(row.versions)) == len(names):
        return "all"
    return ",".join(names[i] for i in row.versions if i < len(names))


def versions_line(heatmap: CheckoutView) -> str:
    """One line: the app's live versions (name, functions, last seen) and the collector's retention."""
    now = heatmap.now_ms
    listed = ", ".join(
        f"{v.name} ({plural(v.keys, 'function')}, last seen {ago(v.last_seen_ms, now)})" for v in heatmap.versions
    )
    live = f"{plural(len(heatmap.versions), 'live version')}: {listed}" if listed else "no version listed"
    if heatmap.retire_after_ms:
        return f"{live}; a version silent for {span(heatmap.retire_after_ms / 1000)} is retired"
    return live


def line_counts(
    root: str,
    rows: Iterable[Row],
    cold_keys: set[str],
    progress: Callable[[Iterable[str]], Iterable[str]],
) -> tuple[int, int]:
    """(lines inside cold functions, lines inside all functions) of the rows' files, each line counted once.

    The standard library's ``ast`` gives every definition's extent (``end_lineno``);
    the definition's line ties it to the key discovery gave it. Extents are cached
    beside discovery's (``.coldmod-cache``, by the same file fingerprint), so a
    second ``coldmod cold`` parses only the files that changed.
    """
    cold_defs: dict[str, set[int]] = {}
    for row in rows:
        lines = cold_defs.setdefault(row.path, set())
        if row.key in cold_keys:
            lines.update(row.lines or (row.line,))
    cache = SpanCache(Path(root))
    cold_lines = total_lines = 0
    for relpath in progress(sorted(cold_defs)):
        spans = cache.spans(relpath)
        if spans is None:
            continue  # unreadable or unparsable: discovery already warned; its lines are not counted
        total_lines += _covered(spans)
        cold_lines += _covered([span for span in spans if span[2] in cold_defs[relpath]])
    cache.save(set(cold_defs))
    return cold_lines, total_lines


#: (first line with decorators, last line, the ``def`` line, 1 when marked ``# coldmod: keep`` else 0)
#: of each function in a file.
Span = tuple[int, int, int, int]


class SpanCache:
    """Function extents (and keep markers) per file, trusted while discovery's file fingerprint is unchanged.

    Any problem with the cache means a re-parse. The keep markers
    (:mod:`coldmod_cli.keep`) are read in the same pass, so they cost nothing
    once a file is cached.
    """

    def __init__(self, root: Path) -> None:
        from coldmod_trace.discovery import CACHE_DIR

        self.root = root
        self.path = root / CACHE_DIR / f"spans-{sys.implementation.cache_tag}.marshal"
        self.entries: dict[str, Any] = {}
        self.dirty = False
        try:
            # The trust of discovery's own cache: a file under the root that only we write.
            data = marshal.loads(self.path.read_bytes())  # noqa: S302
            if isinstance(data, dict):
                self.entries = data
        except (OSError, ValueError, EOFError, TypeError):
            self.entries = {}

    def spans(self, relpath: str) -> list[Span] | None:
        """The file's function extents (cached, else parsed), or None when it cannot be read or parsed."""
        from coldmod_trace.discovery import _fingerprint  # one definition of "unchanged" for both caches

        full = self.root / relpath
        try:
            fingerprint = _fingerprint(os.stat(full))
        except OSError:
            return None
        entry = self.entries.get(relpath)
        cached = entry[1] if type(entry) is list and len(entry) == 2 and entry[0] == fingerprint else None
        if _well_formed(cached):
            return cached
        try:
            source = full.read_bytes()
            tree = ast.parse(source, filename=relpath)
        except (OSError, SyntaxError, ValueError):
            return None
        return self._store(relpath, fingerprint, source, tree)

    def parsed(self, relpath: str, stat: os.stat_result, source: bytes, tree: ast.Module) -> None:
        """Discovery's hook (:data:`~coldmod_trace.discovery.ParseHook`): one parse serves both caches."""
        from coldmod_trace.discovery import _fingerprint

        self._store(relpath, _fingerprint(stat), source, tree)

    def _store(self, relpath: str, fingerprint: list[int], source: bytes, tree: ast.Module) -> list[Span]:
        from coldmod_cli.keep import marked_lines

        marked = marked_lines(source)
        spans = []
        for node in _definitions(tree.body):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            keep = int(node.lineno in marked or start in marked)
            spans.append((start, node.end_lineno or node.lineno, node.lineno, keep))
        self.entries[relpath] = [fingerprint, spans]
        self.dirty = True
        return spans

    def save(self, keep: set[str]) -> None:
        """Write atomically, dropping files no longer asked about; a read-only tree just means no cache."""
        stale = set(self.entries) - keep
        if not self.dirty and not stale:
            return
        for relpath in stale:
            del self.entries[relpath]
        try:
            self.path.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(marshal.dumps(self.entries))
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            pass


def _well_formed(spans: Any) -> TypeGuard[list[Span]]:
    """A cached entry is used only if it has the shape this module writes."""
    if type(spans) is not list:
        return False
    return all(type(s) is tuple and len(s) == 4 and all(type(n) is int for n in s) for s in spans)


def _definitions(body: list[Any]) -> list[Any]:
    """Every function definition under these statements (statement bodies only: a def is never in an expression)."""
    from coldmod_trace.discovery import _statements  # the walk discovery itself does

    out: list[Any] = []
    node: Any
    for node in _statements(body):
        kind = type(node)
        if kind is ast.FunctionDef or kind is ast.AsyncFunctionDef:
            out.append(node)
            out.extend(_definitions(node.body))
        elif kind is ast.ClassDef:
            out.extend(_definitions(node.body))
    return out


def _covered(spans: list[Span]) -> int:
    """How many lines the (start, end, …) spans cover together (nested functions count once)."""
    count, reach = 0, 0
    for start, end, *_ in sorted(spans):
        if end > reach:
            count += end - max(start, reach + 1) + 1
            reach = end
    return count

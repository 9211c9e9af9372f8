"""The server's heatmap reconciled with the local checkout, and which functions are cold.

Local discovery is the truth for what exists and where: a server key the
checkout no longer has is skipped (and counted), a local key the server has not
seen yet is *untracked* (never cold: nothing is known about it).
"""

from __future__ import annotations

import marshal
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

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


@dataclass
class Heatmap:
    """The reconciled heatmap of one app."""

    app: str
    root: str
    rows: list[Row] = field(default_factory=list)
    skipped_keys: list[str] = field(default_factory=list)
    registered_ms: int = 0
    dropped_unknown: int = 0
    dropped_updates: int = 0

    @property
    def untracked(self) -> int:
        """Local functions the collector has not seen registered."""
        return sum(1 for row in self.rows if not row.tracked)


def now_ms() -> int:
    """The current time in epoch milliseconds, the protocol's unit."""
    return int(time.time() * 1000)


def reconcile(response: coldmod_pb2.FetchResponse, discovery: Discovery) -> Heatmap:
    """Join the server's entries with the local sources, sorted by file and line."""
    entries = {entry.key: entry for entry in response.entries}
    heatmap = Heatmap(
        app=discovery.marker.app,
        root=str(discovery.marker.root),
        registered_ms=response.registered_ms,
        dropped_unknown=response.dropped_unknown,
        dropped_updates=response.dropped_updates,
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
            )
        )
    heatmap.skipped_keys = sorted(set(entries) - set(discovery.sources))
    heatmap.rows.sort(key=lambda row: (row.path, row.line, row.key))
    return heatmap


def cold(rows: Iterable[Row], *, now: int, since: float | None = None, min_tracked: float | None = None) -> list[Row]:
    """Tracked rows never called (or, with ``since`` seconds, not within it), tracked at least ``min_tracked``."""
    out = []
    for row in rows:
        if not row.tracked:
            continue
        if min_tracked and row.tracked_since_ms > now - min_tracked * 1000:
            continue
        if row.calls == 0 or row.last_seen_ms == 0 or (since is not None and row.last_seen_ms < now - since * 1000):
            out.append(row)
    return out


def iso(ms: int) -> str | None:
    """An epoch-milliseconds time as ISO 8601 UTC (``2026-01-31T12:00:00.123Z``); None for 0."""
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def row_json(row: Row) -> dict[str, Any]:
    """The stable JSON form of a row (documented in the package README)."""
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


def table(rows: Iterable[Row], now: int) -> list[str]:
    """Aligned text lines: calls, last call, location, key (``~`` an estimate, ``≥`` a lower bound)."""
    body = []
    for row in rows:
        if row.tracked:
            calls = ("≥" if row.lower_bound else "~" if row.estimated else "") + str(row.calls)
            last = ago(row.last_seen_ms, now)
        else:
            calls, last = "-", "untracked"
        body.append((calls, last, f"{row.path}:{row.line}", row.key))
    header = ("CALLS", "LAST CALL", "LOCATION", "KEY")
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(3)]
    return [f"{r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in [header, *body]]


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
        import ast

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
        from coldmod_cli.keep import marked_lines

        try:
            source = full.read_bytes()
            tree = ast.parse(source, filename=relpath)
        except (OSError, SyntaxError, ValueError):
            return None
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


def _definitions(body: list[Any]) -> Iterator[Any]:
    """Every function definition under these statements (statement bodies only: a def is never in an expression)."""
    import ast

    from coldmod_trace.discovery import _statements  # the walk discovery itself does

    for node in _statements(body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node
            yield from _definitions(node.body)
        elif isinstance(node, ast.ClassDef):
            yield from _definitions(node.body)


def _covered(spans: list[Span]) -> int:
    """How many lines the (start, end, …) spans cover together (nested functions count once)."""
    count, reach = 0, 0
    for start, end, *_ in sorted(spans):
        if end > reach:
            count += end - max(start, reach + 1) + 1
            reach = end
    return count

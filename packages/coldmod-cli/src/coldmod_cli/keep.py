"""``# coldmod: keep``: a function its team keeps, whatever the heatmap says.

A comment ``# coldmod: keep`` on a ``def`` line, or on the first decorator
line above it, keeps that function out of ``coldmod cold``, out of
``rm --cold``, and makes ``rm KEY`` refuse it, as ``# pragma: no cover`` keeps
a line out of coverage.py's report. The code that runs once a year on a
disaster-recovery path is the use.

The comments are found with the standard library's tokenizer (a ``#`` inside
a string is not a comment) while :mod:`coldmod_cli.heatmap` parses the file for
its function extents, and cached with them under ``.coldmod-cache``: a file
is read again only when it changes, and LibCST is never loaded for this, so
``coldmod cold`` stays fast.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from coldmod_cli import heatmap

if TYPE_CHECKING:
    from coldmod_trace.discovery import Discovery

__all__ = ["MARKER", "kept", "marked_lines", "rows_of"]

#: The comment, as written; ``#coldmod:keep`` and trailing words (``# coldmod: keep - DR path``) count too.
MARKER = re.compile(r"#\s*coldmod:\s*keep\b", re.IGNORECASE)
_MENTIONED = re.compile(rb"coldmod", re.IGNORECASE).search


def marked_lines(source: bytes) -> frozenset[int]:
    """The 1-based lines of ``source`` holding a ``# coldmod: keep`` comment (empty when it cannot be tokenized)."""
    if not _MENTIONED(source):  # the common case: no tokenizing at all
        return frozenset()
    lines = set()
    try:
        for token in tokenize.tokenize(io.BytesIO(source).readline):
            if token.type == tokenize.COMMENT and MARKER.match(token.string):
                lines.add(token.start[0])
    except (tokenize.TokenError, SyntaxError, ValueError):
        return frozenset()
    return frozenset(lines)


def kept(root: str | Path, rows: Iterable[heatmap.Row]) -> dict[str, str]:
    """The rows' keys marked ``# coldmod: keep``, each with its ``path:line``."""
    by_path: dict[str, list[heatmap.Row]] = {}
    for row in rows:
        by_path.setdefault(row.path, []).append(row)
    cache = heatmap.SpanCache(Path(root))
    out: dict[str, str] = {}
    for path in sorted(by_path):
        spans = cache.spans(path) or []
        marked = {def_line for _, _, def_line, keep in spans if keep}
        if not marked:
            continue
        for row in by_path[path]:
            line = next((line for line in (row.lines or (row.line,)) if line in marked), None)
            if line is not None:
                out[row.key] = f"{path}:{line}"
    cache.save(set(cache.entries))  # files not asked about here stay cached (``cold`` counts lines in them)
    return out


def rows_of(found: Discovery, keys: Iterable[str] | None = None) -> list[heatmap.Row]:
    """The checkout's functions (all, or those of ``keys``) as rows, to ask :func:`kept` about them."""
    sources = found.sources.values() if keys is None else [found.sources[k] for k in keys if k in found.sources]
    return [heatmap.Row(s.key, s.path, s.lines[0], tracked=False, lines=tuple(s.lines)) for s in sources]

"""Trace-source discovery with the standard library only: every ``def`` under the root.

Fast enough to run at every process start: ``ast.parse`` is C, and the walk only
descends into statement bodies (a ``def`` is never inside an expression). A
per-root cache in ``.coldmod-cache`` makes a warm start a ``stat`` per file.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import marshal
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from coldmod_trace._version import __version__
from coldmod_trace.keys import module_for
from coldmod_trace.rootmarker import Rootmarker, load

__all__ = [
    "CACHE_DIR",
    "EXCLUDED_DIRS",
    "Discovery",
    "ParseHook",
    "Skipped",
    "Source",
    "discover",
    "in_file_order",
    "iter_files",
    "qualnames",
]

log = logging.getLogger("coldmod_trace")

CACHE_DIR = ".coldmod-cache"
#: Directory names never walked (besides hidden ones and virtual environments).
EXCLUDED_DIRS = frozenset({"__pycache__", "site-packages", "node_modules", CACHE_DIR})
# marshal, as in __pycache__: several times faster to load than JSON, and the
# name carries the Python version whose marshal format it is.
_CACHE_NAME = f"discovery-{sys.implementation.cache_tag}-{__version__}.marshal"


class Source(NamedTuple):
    """One trace source: its key, its root-relative file and the line of each definition."""

    # A NamedTuple rather than a frozen dataclass: a warm start builds one per
    # function (tens of thousands), and a tuple is several times cheaper to make.
    key: str
    path: str
    lines: tuple[int, ...]


@dataclass(frozen=True)
class Skipped:
    """A file discovery could not parse, with where and why."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        """``path:line: skipped: reason``, the form of the warning."""
        return f"{self.path}:{self.line}: skipped: {self.reason}"


@dataclass
class Discovery:
    """The result of discovering one root."""

    marker: Rootmarker
    sources: dict[str, Source] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    cache_hits: int = 0
    #: ``[ignore] keys`` entries that name no function under the root (a typo, or a function since removed).
    unmatched_ignores: list[str] = field(default_factory=list)

    def unmatched_warning(self) -> str | None:
        """One sentence about the ``[ignore] keys`` entries that match no function, or None."""
        keys = self.unmatched_ignores
        if not keys:
            return None
        shown = ", ".join(repr(k) for k in keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        one = len(keys) == 1
        return (
            f"{len(keys)} [ignore] keys {'entry matches' if one else 'entries match'} no function in "
            f"{self.marker.path}: {shown}; fix the spelling or remove {'it' if one else 'them'} "
            f"(`coldmod srcs` lists the keys)"
        )


def in_file_order(sources: Iterable[Source]) -> list[Source]:
    """Sources by file, then first line, then key: the one order every listing of sources uses."""
    return sorted(sources, key=lambda s: (s.path, s.lines, s.key))


def iter_files(marker: Rootmarker) -> Iterator[str]:
    """Root-relative ``/``-separated paths of the ``.py`` files to parse, sorted per directory."""
    ignored = marker.file_filter()
    stack = [""]
    while stack:
        reldir = stack.pop()
        try:
            with os.scandir(marker.root / reldir if reldir else marker.root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            name = entry.name
            rel = f"{reldir}/{name}" if reldir else name
            if entry.is_dir(follow_symlinks=False):
                if name.startswith(".") or name in EXCLUDED_DIRS or ignored.prunes(rel):
                    continue
                if os.path.exists(os.path.join(entry.path, "pyvenv.cfg")):
                    continue
                subdirs.append(rel)
            elif name.endswith(".py") and entry.is_file() and not ignored(rel):
                yield rel
        stack.extend(reversed(subdirs))


def qualnames(tree: ast.Module) -> Iterator[tuple[str, int]]:
    """``(qualname, line)`` of every function definition in a module, as CPython names them."""
    # (a scope's statements, qualname prefix, names declared global in that scope); each scope is walked once
    stack: list[tuple[list[ast.stmt], str, frozenset[str]]] = [(_statements(tree.body), "", frozenset())]
    while stack:
        statements, prefix, globals_ = stack.pop()
        for node in statements:
            kind = type(node)
            if kind is ast.FunctionDef or kind is ast.AsyncFunctionDef or kind is ast.ClassDef:
                name = node.name  # type: ignore[attr-defined]
                # CPython: a nested def declared `global` in its enclosing scope
                # gets its bare name as qualname (compile.c, compiler_set_qualname).
                qualname = name if name in globals_ else prefix + name
                inner = _statements(node.body)  # type: ignore[attr-defined]
                if kind is ast.ClassDef:
                    stack.append((inner, qualname + ".", _declared_global(inner)))
                    continue
                yield qualname, node.lineno
                stack.append((inner, qualname + ".<locals>.", _declared_global(inner)))


#: The statement lists inside each compound statement (a new scope's are not: it is a scope of its own).
_NESTED: dict[type, tuple[str, ...]] = {
    ast.If: ("body", "orelse"),
    ast.For: ("body", "orelse"),
    ast.AsyncFor: ("body", "orelse"),
    ast.While: ("body", "orelse"),
    ast.With: ("body",),
    ast.AsyncWith: ("body",),
    ast.Try: ("body", "handlers", "orelse", "finalbody"),
    ast.Match: ("cases",),
    ast.ExceptHandler: ("body",),
    ast.TryStar: ("body", "handlers", "orelse", "finalbody"),
    ast.match_case: ("body",),
}


def _statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements of a scope in file order, descending into compound statements (not into new scopes)."""
    out: list[ast.stmt] = []
    _collect(body, out)
    return out


def _collect(body: list[Any], out: list[ast.stmt]) -> None:
    nested = _NESTED
    for node in body:
        kind = type(node)
        if kind is not ast.ExceptHandler and kind is not ast.match_case:  # not statements: only hold some
            out.append(node)
        fields = nested.get(kind)
        if fields is not None:
            for name in fields:
                _collect(getattr(node, name), out)


def _declared_global(statements: list[ast.stmt]) -> frozenset[str]:
    names = [name for node in statements if type(node) is ast.Global for name in node.names]
    return frozenset(names)


#: A file's definitions: their qualnames and the line of each, in file order.
#: Two parallel lists rather than pairs: the cache stores them as they are, and
#: a warm start then allocates nothing per definition but the key and its Source.
Defs = tuple[list[str], list[int]]


#: Called with each file discovery parsed (not the cached ones): its root-relative path, its
#: ``os.stat``, its bytes and its syntax tree. Another reader of the same files (the CLI's
#: function extents) fills its own cache from this parse instead of parsing every file again.
ParseHook = Callable[[str, os.stat_result, bytes, ast.Module], None]


def _parse(source: bytes, relpath: str) -> tuple[Defs, ast.Module] | Skipped:
    try:
        tree = ast.parse(source, filename=relpath)
    except SyntaxError as exc:
        return Skipped(relpath, exc.lineno or 1, f"syntax error ({exc.msg})")
    except (UnicodeDecodeError, LookupError) as exc:
        return Skipped(relpath, 1, f"cannot decode the file ({exc})")
    except ValueError as exc:  # e.g. source contains null bytes
        return Skipped(relpath, 1, f"cannot parse the file ({exc})")
    found = list(qualnames(tree))
    return ([qualname for qualname, _ in found], [line for _, line in found]), tree


def _fingerprint(stat: os.stat_result) -> list[int]:
    """What must be unchanged to trust a cache entry without reading the file.

    ctime cannot be set by ``touch``/``os.utime``, so an edit that restores the
    mtime and size still misses; a copied tree misses too and falls back to the
    content digest, which then refreshes the fingerprint.
    """
    return [stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size, stat.st_ino]


class _Cache:
    """Per-root discovery cache; any problem with it only costs a re-parse."""

    def __init__(self, root: Path, enabled: bool) -> None:
        self.path = root / CACHE_DIR / _CACHE_NAME
        self.enabled = enabled
        self.entries: dict[str, Any] = {}
        self.dirty = False
        if enabled:
            try:
                # The trust of __pycache__: a file under the root that only we write.
                data = marshal.loads(self.path.read_bytes())  # noqa: S302
                if isinstance(data, dict) and data.get("version") == __version__:
                    files = data.get("files")
                    self.entries = files if isinstance(files, dict) else {}
            except (OSError, ValueError, EOFError, TypeError):  # missing, truncated or garbage
                self.entries = {}

    def lookup(self, relpath: str, stat: os.stat_result) -> Defs | None:
        entry = self.entries.get(relpath)
        if not self.enabled or not isinstance(entry, dict):
            return None
        if entry.get("stat") == _fingerprint(stat):
            return _decode(entry)
        return None

    def lookup_digest(self, relpath: str, digest: str, stat: os.stat_result) -> Defs | None:
        entry = self.entries.get(relpath)
        if not self.enabled or not isinstance(entry, dict) or entry.get("sha256") != digest:
            return None
        defs = _decode(entry)
        if defs is not None:
            entry["stat"] = _fingerprint(stat)
            self.dirty = True
        return defs

    def store(self, relpath: str, digest: str, stat: os.stat_result, defs: Defs) -> None:
        if self.enabled:
            self.entries[relpath] = {"stat": _fingerprint(stat), "sha256": digest, "names": defs[0], "lines": defs[1]}
            self.dirty = True

    def save(self, keep: set[str]) -> None:
        """Write atomically; a read-only or full filesystem just means no cache."""
        if not self.enabled:
            return
        stale = set(self.entries) - keep
        if not self.dirty and not stale:
            return
        for relpath in stale:
            del self.entries[relpath]
        payload = marshal.dumps({"version": __version__, "files": self.entries})
        try:
            self.path.parent.mkdir(exist_ok=True)
            gitignore = self.path.parent / ".gitignore"
            if not gitignore.exists():
                gitignore.write_text("*\n")
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-")
            try:
                os.fchmod(fd, 0o644)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(payload)
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            log.debug("coldmod: discovery cache not written (%s)", exc)


def _decode(entry: dict[str, Any]) -> Defs | None:
    """A cache entry's definitions, or None when it is malformed (then the file is re-parsed)."""
    names, lines = entry.get("names"), entry.get("lines")
    if not (type(names) is list and type(lines) is list and len(names) == len(lines)):
        return None
    if all(type(n) is str for n in names) and all(type(n) is int for n in lines):
        return names, lines
    return None


def discover(
    root: str | os.PathLike[str] | Rootmarker | None = None,
    *,
    cache: bool = True,
    warn: Callable[[Skipped], None] | None = None,
    on_parse: ParseHook | None = None,
) -> Discovery:
    """Every trace source under the root, minus ``[ignore]`` files and keys.

    ``root`` is a directory at or below the rootmarker's (default: the cwd) or a
    loaded :class:`Rootmarker`. Files that cannot be parsed are skipped and
    reported through ``warn`` (default: a warning on the ``coldmod_trace`` logger).
    ``on_parse`` sees each file that was parsed rather than found in the cache.
    Raises :class:`~coldmod_trace.rootmarker.RootmarkerError` for a missing or
    invalid rootmarker.
    """
    marker = root if isinstance(root, Rootmarker) else load(root)
    result = Discovery(marker=marker)
    store = _Cache(marker.root, cache)
    collected: dict[str, Source] = {}
    root = str(marker.root)
    ignore_keys = marker.ignore_keys
    for relpath in iter_files(marker):
        full = os.path.join(root, relpath)
        try:
            stat = os.stat(full)
            defs = store.lookup(relpath, stat)
            if defs is None:
                with open(full, "rb") as handle:
                    data = handle.read()
                digest = hashlib.sha256(data).hexdigest()
                defs = store.lookup_digest(relpath, digest, stat)
                if defs is None:
                    parsed = _parse(data, relpath)
                    if isinstance(parsed, Skipped):
                        result.skipped.append(parsed)
                        (warn or _log_skipped)(parsed)
                        continue
                    defs, tree = parsed
                    store.store(relpath, digest, stat, defs)
                    if on_parse is not None:
                        on_parse(relpath, stat, data, tree)
                else:
                    result.cache_hits += 1
            else:
                result.cache_hits += 1
        except OSError as exc:
            skipped = Skipped(relpath, 1, f"cannot read the file ({exc.strerror or exc})")
            result.skipped.append(skipped)
            (warn or _log_skipped)(skipped)
            continue
        result.files.append(relpath)
        module = module_for(relpath)
        prefix = module + "." if module else ""
        for qualname, line in zip(*defs, strict=True):
            key = prefix + qualname  # keys.key_for, inlined: this loop runs per definition
            known = collected.get(key)
            if known is None:
                collected[key] = Source(key, relpath, (line,))
            elif known.path == relpath:  # getter and setter, overloads: one key, every line
                collected[key] = Source(key, relpath, tuple(sorted((*known.lines, line))))
    store.save(set(result.files))
    result.unmatched_ignores = sorted(key for key in ignore_keys if collected.pop(key, None) is None)
    result.sources = dict(sorted(collected.items()))
    return result


def _log_skipped(skipped: Skipped) -> None:
    log.warning("coldmod: %s", skipped)

"""``coldmod.rootmarker``: where the traced application's root is and how it is configured.

The one reader of the file; the tracer, the CLI and the server-side tools all
use it. Every problem becomes a :class:`RootmarkerError` whose message is one
sentence naming the file (and line, where there is one) and the expected form.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_IGNORE_FILES",
    "MARKER",
    "Rootmarker",
    "RootmarkerError",
    "compile_globs",
    "find_root",
    "is_test_file",
    "load",
]

MARKER = "coldmod.rootmarker"

#: Files never traced, whatever the rootmarker says: test code is not production
#: code, and a function that only tests call would look cold and be removed.
#: (glob relative to the root, what it catches)
DEFAULT_IGNORE_FILES: tuple[tuple[str, str], ...] = (
    ("**/tests/**", "a tests/ directory at any depth"),
    ("**/test_*.py", "pytest and unittest test modules"),
    ("**/*_test.py", "test modules named the other way round"),
    ("**/tests.py", "Django's per-app test module"),
    ("**/conftest.py", "pytest fixtures and hooks"),
)

_EXPECTED = {
    "app": {"name": 'a string, like name = "shop"'},
    "ignore": {
        "files": 'a list of glob strings relative to the root, like files = ["**/tests/**"]',
        "keys": 'a list of function keys, like keys = ["shop.settings.debug_toolbar"]',
    },
}


class RootmarkerError(Exception):
    """The rootmarker is missing or invalid; ``str(error)`` is the one-line explanation."""


@dataclass(frozen=True)
class Rootmarker:
    """A loaded rootmarker: the root directory and its configuration."""

    root: Path
    app: str
    ignore_files: tuple[str, ...] = ()
    ignore_keys: frozenset[str] = field(default_factory=frozenset)

    @property
    def path(self) -> Path:
        """The rootmarker file itself."""
        return self.root / MARKER

    def file_filter(self) -> FileFilter:
        """A matcher for the default exclusions plus ``[ignore] files`` (root-relative, ``/``-separated)."""
        return compile_globs([glob for glob, _ in DEFAULT_IGNORE_FILES] + list(self.ignore_files))


def find_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: the cwd) holding a rootmarker."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / MARKER).is_file():
            return candidate
    raise RootmarkerError(
        f"no {MARKER} in {here} or any parent directory; create one at your "
        f"application's root (`coldmod init`, or an empty file)"
    )


def load(root: str | os.PathLike[str] | None = None) -> Rootmarker:
    """Find (from ``root``, default the cwd, upward) and parse the rootmarker."""
    start = Path(root) if root is not None else None
    if start is not None and start.name == MARKER and start.is_file():
        start = start.parent
    base = find_root(start)
    path = base / MARKER
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RootmarkerError(
            f"{path}: cannot be read ({_reason(exc)}); it must be a UTF-8 TOML file"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _toml_error_line(str(exc))
        where = f"{path}:{line}" if line else str(path)
        raise RootmarkerError(
            f"{where}: invalid TOML ({_strip_position(str(exc))}); expected tables "
            f'like [app] name = "shop" and [ignore] files = ["**/tests/**"]'
        ) from None
    return _validate(base, path, text, data)


def _validate(base: Path, path: Path, text: str, data: dict[str, Any]) -> Rootmarker:
    for table, value in data.items():
        if table not in _EXPECTED:
            raise _error(path, text, None, table, f"unknown table [{table}]; the tables are [app] and [ignore]")
        if not isinstance(value, dict):
            raise _error(path, text, None, table, f"{table} must be a table, like [{table}]")
        for key in value:
            if key not in _EXPECTED[table]:
                known = ", ".join(_EXPECTED[table])
                message = f"unknown key {key!r} in [{table}]; the keys of [{table}] are {known}"
                raise _error(path, text, table, key, message)
    app_table = data.get("app", {})
    ignore = data.get("ignore", {})
    name = app_table.get("name", base.name)
    if not isinstance(name, str) or not name.strip():
        raise _error(path, text, "app", "name", f"[app] name must be {_EXPECTED['app']['name']}")
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("files", "keys"):
        value = ignore.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise _error(path, text, "ignore", key, f"[ignore] {key} must be {_EXPECTED['ignore'][key]}")
        lists[key] = tuple(value)
    return Rootmarker(root=base, app=name.strip(), ignore_files=lists["files"], ignore_keys=frozenset(lists["keys"]))


def _error(path: Path, text: str, table: str | None, key: str, message: str) -> RootmarkerError:
    line = _line_of(text, table, key)
    return RootmarkerError(f"{path}:{line}: {message}" if line else f"{path}: {message}")


def _line_of(text: str, table: str | None, key: str) -> int | None:
    """Best-effort line of ``key`` (inside ``[table]``, or a top-level table header)."""
    current: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        header = re.match(r"^\[\s*([^\]]+?)\s*\]", line)
        if header:
            current = header.group(1).strip().strip('"')
            if table is None and current == key:
                return number
            continue
        if re.match(rf'^"?{re.escape(key)}"?\s*=', line) and (current == table or table is None):
            return number
        dotted = re.match(rf"^{re.escape(table or '')}\.{re.escape(key)}\s*=", line) if table else None
        if dotted and current is None:
            return number
    return None


def _toml_error_line(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None


def _strip_position(message: str) -> str:
    return re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", message)


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__


class FileFilter:
    """Matches root-relative paths against ``[ignore] files`` globs (``**``: any depth)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        """Compile the globs once; matching is then one regex search per path."""
        self.patterns = tuple(patterns)
        regexes = [_glob_to_regex(p) for p in self.patterns]
        self._regex = re.compile("|".join(f"(?:{r})" for r in regexes)) if regexes else None

    def __call__(self, relpath: str) -> bool:
        """True when the ``/``-separated root-relative path is ignored."""
        return self._regex is not None and self._regex.fullmatch(relpath) is not None

    def prunes(self, reldir: str) -> bool:
        """True when every path below the directory ``reldir`` is ignored (skip walking it)."""
        return self._regex is not None and self._regex.fullmatch(reldir + "/\0") is not None


def compile_globs(patterns: Iterable[str]) -> FileFilter:
    """Compile ``[ignore] files`` globs."""
    return FileFilter(patterns)



def _glob_to_regex(pattern: str) -> str:
    """Translate a root-relative glob: ``**`` spans directories, ``*`` and ``?`` do not."""
    pattern = pattern.strip().lstrip("/").replace(os.sep, "/")
    if pattern.startswith("./"):
        pattern = pattern[2:]
    out: list[str] = []
    segments = pattern.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            # Any number of whole segments (zero included); as the last segment
            # it also matches the NUL probe used by FileFilter.prunes.
            out.append(".*" if last else "(?:[^/]*/)*")
            continue
        body = _segment_to_regex(segment)
        out.append(body + ("" if last else "/"))
    return "".join(out)


def _segment_to_regex(segment: str) -> str:
    """One path segment of a glob: ``*``, ``?`` and ``[...]`` never cross ``/``."""
    out: list[str] = []
    i = 0
    while i < len(segment):
        char = segment[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and "]" in segment[i + 2 :]:
            end = segment.index("]", i + 2)
            inner = segment[i + 1 : end]
            negate = inner.startswith("!")
            inner = re.escape(inner[1:] if negate else inner).replace(r"\-", "-")
            out.append(f"[{'^/' if negate else ''}{inner}]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


_TEST_FILES = FileFilter(glob for glob, _ in DEFAULT_IGNORE_FILES)


def is_test_file(relpath: str) -> bool:
    """True when the root-relative ``/``-separated path is test code (:data:`DEFAULT_IGNORE_FILES`)."""
    return _TEST_FILES(relpath)

"""Writing ``coldmod.rootmarker``: a new one for ``init``, and ``ignore`` edits that keep the user's comments.

Reading stays in :mod:`coldmod_trace.rootmarker`, the one reader; every write
here is atomic (a temporary file in the same directory, then a rename).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import tomlkit

from coldmod_cli._errors import CliError
from coldmod_trace.discovery import EXCLUDED_DIRS
from coldmod_trace.rootmarker import DEFAULT_IGNORE_FILES, MARKER

# Test code is never traced: the tracer applies DEFAULT_IGNORE_FILES whatever the
# file says; the template writes them out so the reader sees them. These other
# directory names usually hold tests but not always (django/test/ is library
# code), so they are written only where found, for the user to review.
_TEST_DIRS = frozenset({"test", "testing"})
_MIGRATION_DIRS = frozenset({"migrations", "alembic"})


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` all at once (keeping its permissions when it exists)."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _walk_dirs(root: Path) -> Iterator[tuple[str, bool]]:
    """(root-relative directory, is a virtual environment) for every non-hidden directory."""
    stack = [""]
    while stack:
        reldir = stack.pop()
        try:
            with os.scandir(root / reldir if reldir else root) as it:
                entries = sorted((e for e in it if e.is_dir(follow_symlinks=False)), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or entry.name in EXCLUDED_DIRS:
                continue
            rel = f"{reldir}/{entry.name}" if reldir else entry.name
            venv = os.path.exists(os.path.join(entry.path, "pyvenv.cfg"))
            yield rel, venv
            if not venv:
                stack.append(rel)


def suggested_ignores(root: Path) -> list[str]:
    """Globs for test code (always), and the other test directories, migrations and virtualenvs found."""
    globs = [glob for glob, _ in DEFAULT_IGNORE_FILES]
    for rel, venv in _walk_dirs(root):
        name = rel.rsplit("/", 1)[-1]
        if venv:
            globs.append(f"{rel}/**")
        elif name in _TEST_DIRS or name in _MIGRATION_DIRS:
            globs.append(f"**/{name}/**")
    return list(dict.fromkeys(globs))


def init_text(root: Path) -> str:
    """The text of a new rootmarker for the directory ``root``."""
    doc = tomlkit.document()
    doc.add(tomlkit.comment("Coldmod: this directory is the root of the traced application."))
    doc.add(tomlkit.comment("Function keys are <module>.<qualname>, with modules relative to here."))
    doc.add(tomlkit.nl())
    app = tomlkit.table()
    app.add(tomlkit.comment("The heatmap's name on the collector; defaults to this directory's name."))
    app.add("name", root.name or "app")
    doc.add("app", app)
    ignore = tomlkit.table()
    ignore.add(tomlkit.comment("Files never traced (globs relative to this directory; ** spans directories)."))
    ignore.add(tomlkit.comment("Test code is never traced even when left out here: the first five are built in."))
    files = tomlkit.array()
    files.multiline(True)
    files.extend(suggested_ignores(root))
    ignore.add("files", files)
    ignore.add(tomlkit.comment("Functions never traced (exact keys); `coldmod ignore KEY` adds to this list."))
    ignore.add("keys", tomlkit.array())
    doc.add("ignore", ignore)
    return tomlkit.dumps(doc)


def init(directory: Path) -> Path:
    """Write a rootmarker in ``directory``; refuses to overwrite one."""
    path = directory / MARKER
    if path.exists():
        raise CliError(f"{path} already exists; edit it, or delete it first to start over")
    write_atomic(path, init_text(directory))
    return path


def add_ignore_keys(path: Path, keys: Iterable[str]) -> list[str]:
    """Append keys to ``[ignore] keys``, keeping comments and formatting; returns the keys added."""
    text = path.read_text(encoding="utf-8")
    try:
        doc = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:  # load() validated it; only a race gets here
        raise CliError(f"{path}: invalid TOML ({exc}); fix the file and try again") from None
    if "ignore" not in doc:
        doc.add("ignore", tomlkit.table())
    ignore = doc["ignore"]
    if "keys" not in ignore:
        ignore["keys"] = tomlkit.array()
    array = ignore["keys"]
    present = {str(item) for item in array}
    added = [key for key in keys if key not in present]
    if not added:
        return []
    if not len(array) and len(added) > 1:
        # An empty list has no style to keep; one key per line reviews well.
        # A list the user laid out keeps its layout.
        array.multiline(True)
    array.extend(added)
    text = tomlkit.dumps(doc)
    write_atomic(path, text if text.endswith("\n") else text + "\n")
    return added

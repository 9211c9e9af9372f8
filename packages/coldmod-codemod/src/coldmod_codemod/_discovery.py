"""Function discovery with LibCST: the same keys as the tracer, plus what codemods need.

The key is ``<module>.<qualname>``: the module from the path relative to the
root, the qualname as CPython computes ``__qualname__``. The tracer discovers
with the standard library; the two are tested to agree on every tree.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

__all__ = [
    "EXCLUDED_DIRS",
    "DiscoveryFailure",
    "FunctionDef",
    "find_functions",
    "iter_python_files",
    "module_for",
    "parse_file",
]

#: Directory names never walked, besides hidden ones and virtual environments
#: (the tracer's discovery excludes the same).
EXCLUDED_DIRS = frozenset({"__pycache__", "site-packages", "node_modules", ".coldmod-cache"})


@dataclass(frozen=True)
class FunctionDef:
    """One ``def`` or ``async def``: its key and where it is."""

    key: str
    qualname: str
    path: str  # root-relative, "/"-separated
    line: int  # the line of the def keyword
    start_line: int  # first line of the definition, decorators included
    end_line: int
    name_line: int
    name_column: int


@dataclass(frozen=True)
class DiscoveryFailure:
    """A file that could not be parsed; it is skipped."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        """``path:line: skipped: reason``."""
        return f"{self.path}:{self.line}: skipped: {self.reason}"


def module_for(relpath: str) -> str:
    """Map a root-relative path to its module: ``pkg/mod.py`` → ``pkg.mod``, ``pkg/__init__.py`` → ``pkg``."""
    parts = relpath.replace(os.sep, "/").split("/")
    last = parts[-1][:-3] if parts[-1].endswith(".py") else parts[-1]
    if last == "__init__":
        parts.pop()
    else:
        parts[-1] = last
    return ".".join(p for p in parts if p)


def walk_files(root: str | os.PathLike[str], skip_dir: Callable[[str], bool]) -> Iterator[tuple[str, str]]:
    """``(root-relative path, file name)`` of every regular file, sorted, pruning directories ``skip_dir`` names.

    Directories holding ``pyvenv.cfg`` (virtual environments) are always pruned.
    """
    base = Path(root)
    stack = [""]
    while stack:
        reldir = stack.pop()
        try:
            with os.scandir(base / reldir if reldir else base) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            rel = f"{reldir}/{entry.name}" if reldir else entry.name
            if entry.is_dir(follow_symlinks=False):
                if skip_dir(entry.name) or os.path.exists(os.path.join(entry.path, "pyvenv.cfg")):
                    continue
                subdirs.append(rel)
            elif entry.is_file():
                yield rel, entry.name
        stack.extend(reversed(subdirs))


def iter_python_files(root: str | os.PathLike[str]) -> Iterator[str]:
    """Root-relative paths of the ``.py`` files under ``root``, skipping hidden and tool directories."""
    for rel, name in walk_files(root, lambda d: d.startswith(".") or d in EXCLUDED_DIRS):
        if name.endswith(".py"):
            yield rel


class _Collector(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, relpath: str) -> None:
        super().__init__()
        module = module_for(relpath)
        self.relpath = relpath
        self.prefix = module + "." if module else ""
        # One frame per scope: (qualname prefix inside it, names declared global in it).
        self.scopes: list[tuple[str, frozenset[str]]] = [("", frozenset())]
        self.found: list[FunctionDef] = []

    def _qualname(self, name: str) -> str:
        prefix, globals_ = self.scopes[-1]
        # CPython names a nested definition declared `global` in its enclosing
        # scope by its bare name (compile.c, compiler_set_qualname).
        return name if name in globals_ else prefix + name

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        qualname = self._qualname(node.name.value)
        span = self.get_metadata(PositionProvider, node)
        name_pos = self.get_metadata(PositionProvider, node.name).start
        # A FunctionDef's own range starts at `def`; its decorators come before.
        first = self.get_metadata(PositionProvider, node.decorators[0]) if node.decorators else span
        self.found.append(
            FunctionDef(
                key=self.prefix + qualname,
                qualname=qualname,
                path=self.relpath,
                line=name_pos.line,
                start_line=first.start.line,
                end_line=span.end.line,
                name_line=name_pos.line,
                name_column=name_pos.column,
            )
        )
        self.scopes.append((qualname + ".<locals>.", _declared_global(node.body)))
        return True

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.scopes.pop()

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        self.scopes.append((self._qualname(node.name.value) + ".", _declared_global(node.body)))
        return True

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self.scopes.pop()

    # Lambdas and comprehensions cannot contain a `def`; skip them for speed.
    def visit_Lambda(self, node: cst.Lambda) -> bool:
        return False


class _GlobalFinder(cst.CSTVisitor):
    """Names declared ``global`` directly in one scope (not in nested scopes)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.depth = 0

    def visit_Global(self, node: cst.Global) -> None:
        if self.depth == 0:
            self.names.update(item.name.value for item in node.names)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return False


def _declared_global(body: cst.BaseSuite) -> frozenset[str]:
    finder = _GlobalFinder()
    body.visit(finder)
    return frozenset(finder.names)


def parse_file(root: str | os.PathLike[str], relpath: str) -> list[FunctionDef] | DiscoveryFailure:
    """The functions of one file, or why it could not be parsed."""
    try:
        source = (Path(root) / relpath).read_bytes()
    except OSError as exc:
        return DiscoveryFailure(relpath, 1, f"cannot read the file ({exc.strerror or exc})")
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        return DiscoveryFailure(relpath, exc.raw_line, f"syntax error ({exc.message})")
    except (UnicodeDecodeError, LookupError, ValueError) as exc:
        return DiscoveryFailure(relpath, 1, f"cannot decode the file ({exc})")
    collector = _Collector(relpath)
    try:
        with _deep_recursion():
            MetadataWrapper(module, unsafe_skip_copy=True).visit(collector)
    except RecursionError:
        return DiscoveryFailure(relpath, 1, "expression nesting too deep for LibCST")
    return collector.found


@contextlib.contextmanager
def _deep_recursion(limit: int = 20_000) -> Iterator[None]:
    """LibCST's code generation recurses per nested expression (long ``a + b + …`` chains)."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def find_functions(
    root: str | os.PathLike[str],
    *,
    files: Iterable[str] | None = None,
    ignore_keys: Iterable[str] = (),
    failures: list[DiscoveryFailure] | None = None,
) -> list[FunctionDef]:
    """Every function definition under ``root``, sorted by path and line.

    ``files`` (root-relative) limits what is parsed — the CLI passes the files
    the rootmarker selects; by default every ``.py`` file under the root.
    Definitions whose key is in ``ignore_keys`` are left out. Files that cannot
    be parsed are skipped and, when ``failures`` is given, appended to it.
    """
    ignored = frozenset(ignore_keys)
    paths: Sequence[str] = list(files) if files is not None else list(iter_python_files(root))
    found: list[FunctionDef] = []
    for relpath in paths:
        result = parse_file(root, relpath.replace(os.sep, "/"))
        if isinstance(result, DiscoveryFailure):
            if failures is not None:
                failures.append(result)
            continue
        found.extend(f for f in result if f.key not in ignored)
    found.sort(key=lambda f: (f.path, f.line, f.name_column))
    return found

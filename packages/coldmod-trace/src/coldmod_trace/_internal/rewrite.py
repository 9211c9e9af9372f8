"""Exact mode's import hook: each application module is compiled with a counter step in every ``def``.

Like pytest's assertion rewriting, a meta-path finder hands application modules
to a loader that parses the source, inserts one statement at the top of each
function body (after its docstring) and compiles the tree. The statement is
``next(counter)`` with the builtin ``next`` and the function's counter (an
``itertools.repeat`` counting down: :data:`~coldmod_trace._internal.counting.Counter`)
placed into the code object's constants after compiling: two ``LOAD_CONST`` and
one specialised builtin call (~25 ns), atomic under the GIL, with no name added
to the module (a method-wrapper such as ``counter.__next__`` takes twice as long).
It carries the line
of the body's first statement, so a function has exactly the line events,
line numbers and tracebacks it has without the tracer (the ``def`` line would
add a line event on 3.12); the source on disk is untouched, so
``inspect.getsource`` and debuggers see what they always see.

The compiled code (with placeholders, not counters) is cached per module under
``.coldmod-cache``, checked against the source's digest, the Python version and
the tracer version: a warm start does not parse or compile. Nothing here may
break an import: any fault of ours falls back to the ordinary loader.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.machinery
import marshal
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

from coldmod_trace._internal.appfilter import AppFilter
from coldmod_trace._version import __version__
from coldmod_trace.discovery import CACHE_DIR, qualnames
from coldmod_trace.keys import key_for

__all__ = ["RewriteHook", "rewrite"]

_PLACEHOLDER = "__coldmod_counter_{}__"  # a string constant, replaced by the counter at load time
_NEXT = "__coldmod_next__"  # replaced by the builtin next
#: The shape of the inserted statement: part of the cache's name, so that a cache written by
#: another shape is never bound to the wrong constants.
_FORMAT = 2
_CACHE_SUBDIR = f"rewrite{_FORMAT}-{sys.implementation.cache_tag}-{__version__}"


def rewrite(source: bytes, path: str, relpath: str) -> tuple[list[str], CodeType]:
    """The module's keys (one per counter slot) and its code with a placeholder call in each def."""
    tree = ast.parse(source, filename=path)
    by_line = {line: qualname for qualname, line in qualnames(tree)}  # discovery's names, one logic
    keys: list[str] = []
    slots: dict[str, int] = {}
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.lineno not in by_line:
            continue
        key = key_for(relpath, by_line[node.lineno])
        slot = slots.setdefault(key, len(keys))  # a def repeated under one name shares its key's counter
        if slot == len(keys):
            keys.append(key)
        node.body.insert(_after_docstring(node.body), _counter_call(slot, node))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # "'str' object is not callable": it will be
        code = compile(tree, path, "exec", dont_inherit=True)
    return keys, code


def _after_docstring(body: list[ast.stmt]) -> int:
    first = body[0]
    value = first.value if isinstance(first, ast.Expr) else None
    return 1 if isinstance(value, ast.Constant) and isinstance(value.value, str) else 0


def _counter_call(slot: int, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.stmt:
    """``"<next>"("<placeholder>")`` on the line of the function's first line event, so it adds none."""
    body = node.body
    first = _after_docstring(body)
    if first < len(body):
        line, col = body[first].lineno, body[first].col_offset  # the first real statement
    else:
        # Only a docstring: the implicit ``return None`` carries the code's first line (the
        # first decorator's, else the def's) on every version.
        line = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        col = node.col_offset
    at: dict[str, Any] = {"lineno": line, "end_lineno": line, "col_offset": col, "end_col_offset": col}
    counter = ast.Constant(_PLACEHOLDER.format(slot), **at)
    return ast.Expr(ast.Call(ast.Constant(_NEXT, **at), [counter], [], **at), **at)


def _bind(code: CodeType, counters: Sequence[object], made: list[CodeType]) -> CodeType:
    """``code`` with each placeholder constant replaced by its counter, and ``next`` (nested code too)."""
    consts = []
    changed = False
    for const in code.co_consts:
        if isinstance(const, CodeType):
            new: Any = _bind(const, counters, made)
        elif const == _NEXT:
            new = next
        elif isinstance(const, str) and const.startswith("__coldmod_counter_") and const.endswith("__"):
            new = counters[int(const[18:-2])]
        else:
            new = const
        changed = changed or new is not const
        consts.append(new)
    bound = code.replace(co_consts=tuple(consts)) if changed else code
    made.append(bound)
    return bound


class _Cache:
    """One file per module under ``.coldmod-cache``; any problem with it only costs a recompile."""

    def __init__(self, root: str) -> None:
        self.dir = Path(root) / CACHE_DIR / _CACHE_SUBDIR

    def _file(self, path: str) -> Path:
        return self.dir / (hashlib.sha256(os.fsencode(path)).hexdigest()[:32] + ".marshal")

    def load(self, path: str, digest: str) -> tuple[list[str], CodeType] | None:
        try:
            data = marshal.loads(self._file(path).read_bytes())  # noqa: S302 - ours, like __pycache__
        except (OSError, ValueError, EOFError, TypeError):
            return None
        if not (isinstance(data, tuple) and len(data) == 3 and data[0] == digest):
            return None
        keys, code = data[1], data[2]
        if not isinstance(code, CodeType) or not isinstance(keys, list):
            return None
        return keys, code

    def store(self, path: str, digest: str, keys: list[str], code: CodeType) -> None:
        target = self._file(path)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(marshal.dumps((digest, keys, code)))
                os.replace(tmp, target)  # atomic: a reader sees the old file or the new one
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            pass  # read-only root (containers): the cache only ever saves time


class RewriteHook:
    """The meta-path finder: stands in front of ``PathFinder`` and rewrites what it finds of the app's."""

    def __init__(
        self, apps: AppFilter, counter: Callable[[str], object], exclude: Callable[[CodeType], None]
    ) -> None:
        """``counter(key)`` gives a key's counter; ``exclude(code)`` tells the engine not to count it."""
        self._apps = apps
        self._counter = counter
        self._exclude = exclude
        self._cache = _Cache(apps.root)
        self._local = threading.local()  # re-entrancy guard: finding may import (encodings…)
        self.compiled = 0  # modules parsed and compiled (not from the cache), for tests and status
        self.loaded = 0

    def install(self) -> None:
        """Insert the finder just before ``PathFinder``: builtin and frozen modules keep their finders."""
        if self in sys.meta_path:
            return
        for index, finder in enumerate(sys.meta_path):
            if finder is importlib.machinery.PathFinder:
                sys.meta_path.insert(index, self)
                break
        else:
            sys.meta_path.insert(0, self)
        # Modules found before the hook existed keep their cached finders' loaders; new
        # imports go through find_spec. Nothing to invalidate.

    def uninstall(self) -> None:
        """Remove the finder; modules already rewritten keep counting into counters nobody reads."""
        with contextlib.suppress(ValueError):  # not installed
            sys.meta_path.remove(self)

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        """PathFinder's answer, with the loader swapped for application source files."""
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or getattr(self._local, "busy", False):
            return spec
        try:
            self._local.busy = True
            loader = spec.loader
            if type(loader) is importlib.machinery.SourceFileLoader and spec.origin is not None:
                rel = self._apps.relpath(spec.origin)
                if rel is not None:
                    spec.loader = _Loader(fullname, spec.origin, self, rel)
        except Exception:  # noqa: S110 - never break an import: the plain loader stays
            pass
        finally:
            self._local.busy = False
        return spec

    def code_for(self, source: bytes, path: str, relpath: str) -> CodeType:
        """The module's rewritten code with its counters bound (from the cache when it is current)."""
        digest = hashlib.sha256(source).hexdigest()
        cached = self._cache.load(path, digest)
        if cached is None:
            keys, code = rewrite(source, path, relpath)
            self._cache.store(path, digest, keys, code)
            self.compiled += 1
        else:
            keys, code = cached
        made: list[CodeType] = []
        bound = _bind(code, [self._counter(key) for key in keys], made)
        for each in made:
            self._exclude(each)
        self.loaded += 1
        return bound


class _Loader(importlib.machinery.SourceFileLoader):
    """A source loader whose code has the counters in; it never writes ``__pycache__``."""

    def __init__(self, fullname: str, path: str, hook: RewriteHook, relpath: str) -> None:
        super().__init__(fullname, path)
        self._hook = hook
        self._relpath = relpath

    def get_code(self, fullname: str) -> CodeType:
        """Rewritten code; the plain loader's if anything of ours goes wrong (its own errors stay)."""
        try:
            source = self.get_data(self.path)
        except OSError:
            return super().get_code(fullname)  # type: ignore[return-value]
        try:
            return self._hook.code_for(source, self.path, self._relpath)
        except SyntaxError:
            pass  # let the plain loader raise it, exactly as it would without us
        except Exception:  # noqa: S110 - a fault of ours must not fail the application's import
            pass
        return super().get_code(fullname)  # type: ignore[return-value]

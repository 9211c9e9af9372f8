"""Which code objects are the application's, and their keys: decided once per code object."""

from __future__ import annotations

import os
from pathlib import Path
from types import CodeType

from coldmod_trace.discovery import CACHE_DIR, EXCLUDED_DIRS
from coldmod_trace.keys import is_function_code, key_for
from coldmod_trace.rootmarker import Rootmarker

__all__ = ["AppFilter"]


def _package_dirs(name: str) -> list[str]:
    """The directories of an importable package (several for a namespace package), unimported."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [os.path.abspath(d) + os.sep for d in spec.submodule_search_locations]


class AppFilter:
    """Maps a code object's file to its root-relative path, or None when it is not the app's.

    Mirrors :func:`coldmod_trace.discovery.iter_files` (hidden and excluded
    directories, ``[ignore] files``); the final word is whether the key is one of
    the discovered sources, checked by the sender when it maps counts to keys.
    """

    def __init__(self, marker: Rootmarker, cwd: str) -> None:
        """Prepare the per-file cache for one root; ``cwd`` resolves relative filenames."""
        self.root = str(marker.root)
        self._prefix = self.root.rstrip(os.sep) + os.sep
        self._cwd = cwd
        self._ignored = marker.file_filter()
        self._files: dict[str, str | None] = {}
        # Never count the tracer itself or grpc/protobuf, even when they live under the root.
        names = ("coldmod_trace", "coldmod_proto", "grpc", "google")
        self._foreign = tuple(d for name in names for d in _package_dirs(name))

    def relpath(self, filename: str) -> str | None:
        """Root-relative ``/``-separated path of an application file, else None (cached)."""
        try:
            return self._files[filename]
        except KeyError:
            rel = self._files[filename] = self._decide(filename)
            return rel

    def is_app(self, code: CodeType) -> bool:
        """True for functions (not lambdas, comprehensions, module or class bodies) in app files."""
        return is_function_code(code) and self.relpath(code.co_filename) is not None

    def key(self, code: CodeType | str) -> str | None:
        """The function key of an application code object, as discovery computes it (a key is itself)."""
        if isinstance(code, str):
            return code  # counted by the import hook, which computed the key when it rewrote the module
        rel = self.relpath(code.co_filename)
        return None if rel is None else key_for(rel, code.co_qualname)

    def _decide(self, filename: str) -> str | None:
        if not filename.endswith(".py") or filename.startswith("<"):
            return None
        path = os.path.normpath(os.path.join(self._cwd, filename))
        if path.startswith(self._foreign):
            # First, before any look at the file system: the sampler thread first sees the tracer's
            # own functions while it opens a slice, and each system call there gives the GIL away
            # to a busy application for a switch interval (realpath: one per path component).
            return None
        rel = self._under_root(path)
        if rel is None:
            # Reached through a symlink (the root itself is resolved)?
            rel = self._under_root(os.path.realpath(path))
        if rel is None:
            return None
        parts = rel.split("/")
        for part in parts[:-1]:
            if part.startswith(".") or part in EXCLUDED_DIRS or part == CACHE_DIR:
                return None
        if self._ignored(rel) or self._in_venv(parts):
            return None
        return rel

    def _under_root(self, path: str) -> str | None:
        if not path.startswith(self._prefix):
            return None
        return path[len(self._prefix) :].replace(os.sep, "/")

    def _in_venv(self, parts: list[str]) -> bool:
        """Discovery skips directories holding a pyvenv.cfg; so do we."""
        here = Path(self.root)
        for part in parts[:-1]:
            here = here / part
            if (here / "pyvenv.cfg").exists():
                return True
        return False

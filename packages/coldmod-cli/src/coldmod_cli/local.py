"""The local checkout: its rootmarker and its functions, as the tracer sees them."""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from coldmod_cli._errors import CliError, warn
from coldmod_trace import config

if TYPE_CHECKING:
    from coldmod_trace.discovery import Discovery, Skipped
    from coldmod_trace.rootmarker import Rootmarker


def _warn_skipped(skipped: Skipped) -> None:
    warn(str(skipped))


def checkout(start: str | os.PathLike[str] | None = None, *, cache: bool = True) -> Discovery:
    """Discover the functions under the rootmarker found from ``start`` (default: the cwd)."""
    from coldmod_trace.rootmarker import load

    marker = load(start)
    paused = gc.isenabled()
    if paused:
        # Parsing makes syntax trees that die with their file: reference counting frees them, and the
        # cycle collector's passes over them were a fifth of a first `coldmod cold` on a large tree.
        gc.disable()
    try:
        return _discover(marker, cache)
    finally:
        if paused:
            gc.enable()


def _discover(marker: Rootmarker, cache: bool) -> Discovery:
    from coldmod_cli.heatmap import SpanCache
    from coldmod_trace.discovery import discover

    if not cache:
        found = discover(marker, cache=False, warn=_warn_skipped)
    else:
        spans = SpanCache(marker.root)  # function extents from the same parse (``coldmod cold`` counts lines)
        found = discover(marker, warn=_warn_skipped, on_parse=spans.parsed)
        spans.save(set(found.files))
    unmatched = found.unmatched_warning()
    if unmatched:
        warn(unmatched)
    return found


def app_name(discovery: Discovery, env: Mapping[str, str] | None = None) -> str:
    """The heatmap's name: ``COLDMOD_APP``, else the rootmarker's ``[app] name``."""
    environ = os.environ if env is None else env
    return environ.get(config.COLDMOD_APP, "").strip() or discovery.marker.app


def require_keys(discovery: Discovery, keys: list[str], *, what: str) -> None:
    """Fail with one sentence when a key is not a function of this checkout."""
    unknown = [key for key in keys if key not in discovery.sources]
    if not unknown:
        return
    tests = {key: path for key in unknown if (path := test_file_of(discovery.marker.root, key))}
    if tests:
        shown = ", ".join(f"{key} ({path})" for key, path in list(tests.items())[:5])
        raise CliError(
            f"{shown} {'is' if len(tests) == 1 else 'are'} test code, which coldmod never traces "
            f"nor removes; delete test code by hand"
        )
    ignored = [key for key in unknown if key in discovery.marker.ignore_keys]
    if ignored and len(ignored) == len(unknown):
        raise CliError(f"{_quoted(ignored)} already ignored in {discovery.marker.path}; nothing to {what}")
    listing = _quoted(unknown)
    raise CliError(
        f"unknown key {listing}: no such function under {discovery.marker.root}; "
        f"`coldmod srcs` lists the keys (a key is <module>.<qualname>, like shop.cart.Cart.add)"
    )


def test_file_of(root: Path, key: str) -> str | None:
    """The root-relative test file (per the rootmarker's default exclusions) that would define ``key``."""
    from coldmod_trace.rootmarker import is_test_file

    parts = key.split(".")
    # The module is some prefix of the key (the rest is the qualname): try each, longest first.
    for end in range(len(parts) - 1, 0, -1):
        module = "/".join(parts[:end])
        for relpath in (f"{module}.py", f"{module}/__init__.py"):
            if is_test_file(relpath) and (root / relpath).is_file():
                return relpath
    return None


def _quoted(keys: list[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:5])
    return shown + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


def paths_under_root(root: Path, paths: list[str], cwd: Path | None = None) -> list[str]:
    """Root-relative forms of ``paths`` (as typed, from ``cwd``); a missing path or one outside the root is refused."""
    from coldmod_cli._errors import UsageError

    base = Path.cwd() if cwd is None else cwd
    out = []
    for typed in paths:
        full = (base / typed).resolve()
        if not full.exists():
            raise UsageError(f"{typed}: no such file or directory")
        if not full.is_relative_to(root.resolve()):
            raise UsageError(f"{typed} is outside the root {root}; name files or directories under it")
        relative = full.relative_to(root.resolve()).as_posix()
        out.append(relative if relative else ".")
    return out

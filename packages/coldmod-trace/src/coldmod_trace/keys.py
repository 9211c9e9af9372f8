"""The function key: ``<module>.<qualname>``, the one contract every part shares.

The module comes from the file's path relative to the root (the directory that
holds ``coldmod.rootmarker``), never from the runtime ``__name__``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from types import CodeType

__all__ = ["REGISTER_BUSY", "is_function_code", "key_for", "module_for", "sources_fingerprint"]

#: The collector's UNAVAILABLE details when another process of the app is sending the same
#: key set (fingerprint-first Register): a normal moment of a fleet restart, not an outage.
REGISTER_BUSY = "another process of this app is sending the same set of keys; retry in a moment"


def module_for(relpath: str) -> str:
    """Map a root-relative path (``/`` or ``os.sep`` separated) to its module name."""
    parts = relpath.replace(os.sep, "/").split("/")
    last = parts[-1]
    if last.endswith(".py"):
        last = last[:-3]
    if last == "__init__":
        parts.pop()
    else:
        parts[-1] = last
    return ".".join(p for p in parts if p)


def key_for(relpath: str, qualname: str) -> str:
    """The key of the function ``qualname`` defined in the file at ``relpath``."""
    module = module_for(relpath)
    return f"{module}.{qualname}" if module else qualname


# Code-object flags (Include/cpython/code.h): functions are optimized and get
# new locals; module and class bodies are neither.
_CO_OPTIMIZED = 0x0001
_CO_NEWLOCALS = 0x0002


def is_function_code(code: CodeType) -> bool:
    """True for the code of a ``def``/``async def``; False for modules, classes, lambdas, comprehensions."""
    return code.co_flags & (_CO_OPTIMIZED | _CO_NEWLOCALS) == (
        _CO_OPTIMIZED | _CO_NEWLOCALS
    ) and not code.co_name.startswith("<")


def sources_fingerprint(sources: Iterable[tuple[str, str, Sequence[int]]]) -> str:
    """The digest of a set of ``(key, path, lines)`` sources: equal sets, equal prints, in any order.

    The tracer sends it before its sources (a fleet restarting registers the
    same set many times); the collector computes it over what it receives.
    """
    digest = hashlib.blake2b(digest_size=16)
    for key, path, lines in sorted(sources, key=lambda s: s[0]):
        digest.update(f"{key}\0{path}\0{','.join(map(str, lines))}\n".encode())
    return digest.hexdigest()

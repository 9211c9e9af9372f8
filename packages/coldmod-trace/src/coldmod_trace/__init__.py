"""coldmod-trace: count calls to every function of an application, cheaply, and report them.

Public API: :func:`discover` (what will be traced), the rootmarker reader, and
the function key. The tracer itself (``start``/``stop``) imports grpc lazily so
that importing this package costs nothing in production until tracing starts.
"""

from __future__ import annotations

from coldmod_trace._version import __version__
from coldmod_trace.discovery import Discovery, Skipped, Source, discover
from coldmod_trace.keys import key_for, module_for
from coldmod_trace.rootmarker import MARKER, Rootmarker, RootmarkerError, find_root, load
from coldmod_trace.tracer import start, stop

__all__ = [
    "MARKER",
    "Discovery",
    "Rootmarker",
    "RootmarkerError",
    "Skipped",
    "Source",
    "__version__",
    "discover",
    "find_root",
    "key_for",
    "load",
    "module_for",
    "start",
    "stop",
]

"""Put on ``PYTHONPATH`` by ``coldmod-trace run``: trace every Python process started under it.

Python imports ``sitecustomize`` at startup, so this starts the tracer before
the program's first line. A ``sitecustomize`` of the environment that this one
shadows is imported afterwards, as if we were not here.
"""

from __future__ import annotations

import importlib
import os
import sys


def _start() -> None:
    try:
        import coldmod_trace
    except ImportError:
        return  # another interpreter without coldmod-trace inherited PYTHONPATH: nothing to trace
    coldmod_trace.start()  # never raises; problems are one warning on the coldmod_trace logger


def _chain() -> None:
    """Import the sitecustomize this file shadows, then leave sys.path as it would have been."""
    here = os.path.dirname(os.path.abspath(__file__))
    ours = sys.modules.pop("sitecustomize", None)
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    try:
        importlib.import_module("sitecustomize")
    except ModuleNotFoundError as exc:
        if exc.name != "sitecustomize":
            raise
        if ours is not None:
            sys.modules["sitecustomize"] = ours
    finally:
        saved = [p for p in saved if os.path.abspath(p or os.curdir) != here]
        sys.path[:] = saved


_start()
_chain()

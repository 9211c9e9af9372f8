"""Which engine counts calls in this process, and why a faster one could not be used.

The choice is made here and only here (as coverage.py's ``core.py`` makes it):
``sys.monitoring`` (:mod:`~coldmod_trace._internal.sysmon`) when a tool id is
free — two for sampled mode — else ``sys.settrace``
(:mod:`~coldmod_trace._internal.pytrace`). The reason a faster engine or mode
could not be used is returned, so the tracer can log it and ``coldmod-trace
srcs`` can report it.
"""

from __future__ import annotations

import sys
from typing import Any

from coldmod_trace._internal.appfilter import AppFilter
from coldmod_trace._internal.counting import Engine
from coldmod_trace._internal.pytrace import SettraceEngine
from coldmod_trace._internal.sysmon import SysMonitoringEngine
from coldmod_trace.config import Mode

__all__ = ["preview_engine", "select_engine"]

#: Tool ids tried in order: the two ids CPython leaves unassigned, then the optimizer's
#: and the profiler's. The debugger's (0) and coverage's (1) are left to their owners.
_TOOL_IDS = (3, 4, 5, 2)
_TOOL_NAME = "coldmod"


def select_engine(apps: AppFilter, mode: Mode) -> tuple[Engine, str]:
    """The fastest engine available, and why a faster one could not be used ("" when none)."""
    mode = Mode(mode)  # a bare "sampled"/"exact" from a caller becomes the typed value
    monitoring: Any = getattr(sys, "monitoring", None)
    if monitoring is not None:
        tool = _claim(monitoring)
        if tool is not None:
            if mode is not Mode.SAMPLED:
                return SysMonitoringEngine(tool, apps, mode), ""
            local = _claim(monitoring)
            reason = "" if local is not None else "only one sys.monitoring tool id is free: sampled mode counts exactly"
            return SysMonitoringEngine(tool, apps, mode, local=local), reason
    return SettraceEngine(apps, mode), _no_monitoring_reason(monitoring)


def preview_engine() -> tuple[str, str]:
    """The engine :func:`select_engine` would pick in this process now, and why not a faster one; claims nothing."""
    monitoring: Any = getattr(sys, "monitoring", None)
    if monitoring is not None and any(monitoring.get_tool(tool) is None for tool in _TOOL_IDS):
        return SysMonitoringEngine.name, ""
    return SettraceEngine.name, _no_monitoring_reason(monitoring)


def _claim(monitoring: Any) -> int | None:
    """Claim the first free tool id of ours, or None."""
    for tool in _TOOL_IDS:
        if monitoring.get_tool(tool) is None:
            try:
                monitoring.use_tool_id(tool, _TOOL_NAME)
            except ValueError:
                continue  # taken between the check and the claim
            return int(tool)
    return None


def _no_monitoring_reason(monitoring: Any) -> str:
    """Why sys.monitoring cannot be used here (it is absent, or every id we may use is taken)."""
    if monitoring is None:
        return f"Python {sys.version_info[0]}.{sys.version_info[1]} has no sys.monitoring"
    taken = ", ".join(f"{t}={monitoring.get_tool(t)}" for t in _TOOL_IDS)
    return f"every sys.monitoring tool id coldmod may use is taken ({taken})"

"""``coldmod-trace run -- COMMAND ARGS…``: run a command with every Python process in it traced.

Like ``coverage run``/``opentelemetry-instrument``/``ddtrace-run``: the command
inherits ``PYTHONPATH`` with our bootstrap directory first, whose
``sitecustomize`` calls :func:`coldmod_trace.start` in each Python process that
starts (the command itself, its Python subprocesses, a forking server's master;
forked workers then get their own identity from the fork hook). Not covered:
interpreters started with ``-I``/``-E``/``-S`` (they ignore ``PYTHONPATH`` or
skip ``site``) and Pythons without coldmod-trace installed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from coldmod_trace import config

__all__ = ["BOOTSTRAP_DIR", "environment", "run"]

BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap")


def environment(
    base: Mapping[str, str],
    *,
    root: str | None = None,
    app: str | None = None,
    mode: str | None = None,
    flush_interval: str | None = None,
) -> dict[str, str]:
    """The command's environment: the bootstrap directory first on PYTHONPATH, options as variables."""
    env = dict(base)
    existing = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != BOOTSTRAP_DIR]
    env["PYTHONPATH"] = os.pathsep.join([BOOTSTRAP_DIR, *existing])
    for variable, value in (
        (config.COLDMOD_ROOT, os.path.abspath(root) if root else None),
        (config.COLDMOD_APP, app),
        (config.COLDMOD_MODE, mode),
        (config.COLDMOD_FLUSH_INTERVAL, flush_interval),
    ):
        if value is not None:
            env[variable] = value
    return env


def run(command: list[str], env: dict[str, str]) -> int:
    """Replace this process with ``command``; returns only when it cannot be started."""
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("coldmod-trace: run needs a command, like: coldmod-trace run -- python app.py", file=sys.stderr)
        return 2
    try:
        os.execvpe(command[0], command, env)  # noqa: S606 - the command replaces us, no shell
    except OSError as exc:
        print(f"coldmod-trace: cannot run {command[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        return 127
    return 0  # not reached: exec replaced the process

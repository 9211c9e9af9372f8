"""One running tracer: resolves its configuration, owns the engine and the sender."""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

from coldmod_trace import config
from coldmod_trace._internal import lifecycle, relay
from coldmod_trace._internal.appfilter import AppFilter
from coldmod_trace._internal.core import select_engine
from coldmod_trace._internal.counting import Engine
from coldmod_trace._internal.rewrite import RewriteHook
from coldmod_trace._internal.sender import Sender, SenderConfig
from coldmod_trace.rootmarker import Rootmarker, RootmarkerError, find_root, load

__all__ = ["Tracer", "resolve_marker"]

log = logging.getLogger("coldmod_trace")


def resolve_marker(root: str | os.PathLike[str] | None) -> Rootmarker:
    """Argument, else ``COLDMOD_ROOT``, else upward from the cwd, else upward from the main script."""
    if root is None:
        root = os.environ.get(config.COLDMOD_ROOT) or None
    if root is not None:
        return load(root)
    try:
        return load(find_root())
    except RootmarkerError as first:
        script = _main_script_dir()
        if script is None:
            raise
        try:
            return load(find_root(script))
        except RootmarkerError:
            raise first from None


def _main_script_dir() -> str | None:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv and sys.argv[0] else None)
    if not path or path.startswith("-"):
        return None
    return str(Path(path).resolve().parent)


class Tracer:
    """The engine plus the sender of one process (a forked child swaps in a new sender)."""

    def __init__(
        self,
        marker: Rootmarker,
        app: str,
        mode: config.Mode,
        flush: float,
        client: config.ClientConfig,
        exit_timeout: float,
        version: str = "",
    ) -> None:
        """Choose the engine; nothing is installed yet."""
        self.exit_timeout = exit_timeout
        self.apps = AppFilter(marker, os.getcwd())
        self.engine: Engine
        self.engine, reason = select_engine(self.apps, mode)
        if reason:
            level = logging.WARNING if sys.version_info >= (3, 12) else logging.INFO
            log.log(level, "coldmod: tracing with %s: %s", self.engine.name, reason)
        # Exact mode compiles a counter into every application module imported from now on;
        # the engine counts what was compiled before (the main script, earlier imports).
        exact = mode is config.Mode.EXACT
        self.hook = RewriteHook(self.apps, self.engine.key_counter, self.engine.exclude) if exact else None
        self.sender_config = SenderConfig(app, marker, client, flush, mode, self.engine.name, version)
        self.sender = Sender(self.sender_config, self.engine, self.apps)
        self._lock = threading.RLock()  # re-entrant: a SIGTERM's flush may interrupt stop() on its thread
        self._stopped = False

    def start(self) -> None:
        """Engine first (calls right after start() count), then the sender thread, then the hooks."""
        self.engine.install()
        if self.hook is not None:
            self.hook.install()
        lifecycle.install(_exit_hook, _after_fork_child)  # before the sender thread starts
        relay.prepare()  # the tree's relay rendezvous, inherited by every process started from now on
        self.sender.start()

    def stop(self, timeout: float) -> bool:
        """Uninstall the engine and flush within ``timeout``; True when everything was delivered."""
        with self._lock:
            if self._stopped:
                return True
            self._stopped = True
        self.engine.uninstall()
        if self.hook is not None:
            self.hook.uninstall()
        with lifecycle.final_flush(timeout):
            return self.sender.close(timeout)

    def status(self) -> dict[str, Any]:
        """Internal state for tests and debugging."""
        rewritten = {} if self.hook is None else {"rewritten": self.hook.loaded, "compiled": self.hook.compiled}
        return {"engine": self.engine.name, "mode": self.engine.mode, **rewritten, **self.sender.status()}

    def after_fork_child(self) -> None:
        """In a forked child: counts from zero, a new identity, a new sender and channel."""
        if self._stopped:
            return
        self._lock = threading.RLock()
        self.engine.reset_after_fork()
        self.sender = Sender(self.sender_config, self.engine, self.apps, self.sender.sources_if_known())
        self.sender.start()


# The hooks are installed once per process and act on whichever tracer is running then
# (start() after stop() makes a new Tracer).


def _exit_hook() -> None:
    from coldmod_trace import tracer

    active = tracer.active()
    if active is not None:
        tracer.stop(active.exit_timeout)


def _after_fork_child() -> None:
    from coldmod_trace import tracer

    tracer._reinit_after_fork()
    active = tracer.active()
    if active is not None:
        active.after_fork_child()

"""How to start the collector as a child process: the demo, the tests and the benchmark all do.

The collector prints ``coldmod: gRPC listening on HOST:PORT …`` (and ``web UI
on …``) on stderr once it listens; with port 0 that line is how a parent
learns the ports it got.
"""

from __future__ import annotations

import sys

__all__ = ["collector_command"]


def collector_command(
    store: str, *extra: str, grpc_host: str = "127.0.0.1:0", web_host: str = "127.0.0.1:0"
) -> list[str]:
    """The argv of ``python -m coldmod_cli.server`` with the store at URL ``store``, on free loopback ports."""
    return [
        sys.executable, "-m", "coldmod_cli.server",
        "--grpc-host", grpc_host, "--web-host", web_host, "--store", store, *extra,
    ]

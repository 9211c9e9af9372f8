"""coldmod-cli: the developer's side of Coldmod (the ``coldmod`` command), the collector and its web UI.

Importing this package is cheap: the command line lives in :mod:`coldmod_cli.cli`
and is loaded by ``coldmod`` / ``python -m coldmod_cli``.
"""

from __future__ import annotations

import os

from coldmod_cli._version import __version__

# grpc's C core writes its own lines to stderr (`I1207 … ssl_transport_security.cc … Handshake
# failed`) where coldmod already says what went wrong in one sentence. GRPC_VERBOSITY is read once,
# when grpc is first imported, and every coldmod process (the CLI, `python -m coldmod_cli.server`)
# imports this package before grpc; set it to debug grpc itself.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

__all__ = ["__version__"]

"""coldmod-cli: the developer's side of Coldmod (the ``coldmod`` command), the collector and its web UI.

Importing this package is cheap: the command line lives in :mod:`coldmod_cli.cli`
and is loaded by ``coldmod`` / ``python -m coldmod_cli``.
"""

from __future__ import annotations

from coldmod_cli._version import __version__

__all__ = ["__version__"]

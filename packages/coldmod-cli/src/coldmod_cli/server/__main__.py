"""``python -m coldmod_cli.server``: the collector without the CLI around it."""

from __future__ import annotations

import argparse
import sys

from coldmod_cli._args import duration
from coldmod_cli._errors import UsageError
from coldmod_cli.server.runner import serve
from coldmod_cli.server.store import DEFAULT_RETIRE_AFTER_MS


def main(argv: list[str] | None = None) -> int:
    """Parse the options and run the collector; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m coldmod_cli.server", description="Run the Coldmod collector.")
    parser.add_argument("--grpc-host", help="host:port for gRPC (default: $COLDMOD_GRPC_HOST or localhost:7777)")
    parser.add_argument("--web-host", help="host:port for the web UI (default: $COLDMOD_WEB_HOST or localhost:7778)")
    parser.add_argument("--store", help="store URL, e.g. sqlite:///var/lib/coldmod.db (default: ./coldmod.db)")
    parser.add_argument(
        "--no-group-commit",
        action="store_true",
        help="commit each write alone (benchmark baseline)",
    )
    parser.add_argument("--max-apps", type=int, help="most apps the collector keeps (default: 1000)")
    parser.add_argument("--retire-after", help="retire versions silent this long, like 30d (default: 30d)")
    parser.add_argument(
        "--allow-remote-insecure",
        action="store_true",
        help="with COLDMOD_INSECURE=on, listen beyond loopback anyway (no TLS, no authentication)",
    )
    args = parser.parse_args(argv)
    try:
        retire_s = duration("retire-after", args.retire_after)
    except UsageError as exc:
        parser.error(str(exc))
    if retire_s is not None and retire_s < 1:
        parser.error(f"--retire-after must be a positive duration like 30d, not {args.retire_after!r}")
    return serve(
        args.grpc_host,
        args.web_host,
        args.store,
        group_commit=not args.no_group_commit,
        max_apps=args.max_apps,
        allow_remote_insecure=args.allow_remote_insecure,
        retire_after_ms=DEFAULT_RETIRE_AFTER_MS if retire_s is None else int(retire_s * 1000),
    )


if __name__ == "__main__":
    sys.exit(main())

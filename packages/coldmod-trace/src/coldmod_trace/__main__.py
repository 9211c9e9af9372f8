"""``coldmod-trace`` / ``python -m coldmod_trace``: what production images can run.

Production images carry no CLI; these commands tell an operator what will be
traced and start a program under the tracer.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from coldmod_trace.discovery import Skipped, discover, in_file_order
from coldmod_trace.rootmarker import RootmarkerError

#: What ``--help`` says first: plain text (the module docstring's RST markup read as noise on a terminal).
DESCRIPTION = (
    "coldmod-trace (also python -m coldmod_trace): what production images can run. "
    "Production images carry no CLI; these commands tell an operator what will be traced "
    "and start a program under the tracer."
)


def _srcs(args: argparse.Namespace) -> int:
    def warn(skipped: Skipped) -> None:
        print(f"coldmod-trace: warning: {skipped}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            # Parsing the application makes Python report *its* SyntaxWarnings ("\d" in a string):
            # the application's to fix, not this listing's to print. (Here only: this is our process.)
            warnings.simplefilter("ignore", SyntaxWarning)
            result = discover(args.root, cache=not args.no_cache, warn=warn)
    except RootmarkerError as exc:
        print(f"coldmod-trace: {exc}", file=sys.stderr)
        return 1
    unmatched = result.unmatched_warning()
    if unmatched:
        print(f"coldmod-trace: warning: {unmatched}", file=sys.stderr)
    out = sys.stdout
    for source in in_file_order(result.sources.values()):  # the order of `coldmod srcs`
        out.write(source.key + "\n")
    return 0


def _run(args: argparse.Namespace) -> int:
    import os

    from coldmod_trace._internal.run import environment, run

    env = environment(
        os.environ,
        root=args.root,
        app=args.app,
        mode=args.mode,
        flush_interval=args.flush_interval,
    )
    return run(list(args.cmd), env)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (subcommands srcs and run)."""
    parser = argparse.ArgumentParser(prog="coldmod-trace", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    srcs = commands.add_parser("srcs", help="print the keys of every function that will be traced")
    srcs.add_argument("root", nargs="?", default=None, help="a directory at or below the rootmarker (default: cwd)")
    srcs.add_argument("--no-cache", action="store_true", help="ignore and do not write .coldmod-cache")
    srcs.set_defaults(handler=_srcs)
    run = commands.add_parser(
        "run",
        help="run a command with its Python processes traced: coldmod-trace run -- python app.py",
        description="Run COMMAND with coldmod_trace.start() in every Python process it starts.",
    )
    run.add_argument("--root", help="the application's root (sets COLDMOD_ROOT)")
    run.add_argument("--app", help="the app name (sets COLDMOD_APP)")
    run.add_argument("--mode", choices=("sampled", "exact"), help="tracer mode (sets COLDMOD_MODE)")
    run.add_argument("--flush-interval", help="seconds between batches (sets COLDMOD_FLUSH_INTERVAL)")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND ARGS", help="what to run")
    run.set_defaults(handler=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``coldmod-trace``; returns the exit code."""
    args = build_parser().parse_args(argv)
    handler = args.handler
    try:
        code: int = handler(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): not an error; silence the final flush.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())

"""``coldmod`` / ``python -m coldmod_cli``: the developer's command line."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    """Run the ``coldmod`` command line (exit status via SystemExit)."""
    # Fire shows help through $PAGER on a terminal; help should just print.
    os.environ["PAGER"] = "cat"
    import fire

    from coldmod_cli.cli import Coldmod

    args = list(sys.argv[1:] if argv is None else argv)
    # --verbose may stand anywhere before Fire's own `--` separator (a flag of
    # the class would swallow the next word: `coldmod --verbose fetch`).
    end = args.index("--") if "--" in args else len(args)
    verbose = any(arg in ("--verbose", "-v") for arg in args[:end])
    args = [arg for arg in args[:end] if arg not in ("--verbose", "-v")] + args[end:]
    fire.Fire(Coldmod(verbose=verbose), command=args, name="coldmod")


if __name__ == "__main__":
    main()

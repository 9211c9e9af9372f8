"""``coldmod`` / ``python -m coldmod_cli``: the developer's command line."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    """Run the ``coldmod`` command line (exit status via SystemExit)."""
    # Fire would page through $PAGER on a terminal; nothing here should page.
    os.environ["PAGER"] = "cat"
    import fire

    from coldmod_cli._cmdline import help_text, parse
    from coldmod_cli._errors import EXIT_USAGE, UsageError, say
    from coldmod_cli.cli import Coldmod

    args = list(sys.argv[1:] if argv is None else argv)
    verbose = any(arg in ("--verbose", "-v") for arg in args)
    try:
        # The whole command line is understood before anything runs (see _cmdline).
        line = parse(Coldmod(verbose=verbose), args)
        if line.help:
            sys.stdout.write(help_text(Coldmod(verbose=verbose), line.path))
            sys.stdout.flush()
            return
    except UsageError as exc:
        say(str(exc))
        raise SystemExit(EXIT_USAGE) from None
    fire.Fire(Coldmod(verbose=line.verbose), command=line.fire_args, name="coldmod")


if __name__ == "__main__":
    main()

"""``coldmod`` / ``python -m coldmod_cli``: the developer's command line."""

from __future__ import annotations

import os
import sys
from typing import Any


def main(argv: list[str] | None = None) -> None:
    """Run the ``coldmod`` command line (exit status via SystemExit)."""
    # Fire's help (a direct fire.Fire caller's) would page through $PAGER on a terminal; nothing here should page.
    os.environ["PAGER"] = "cat"
    from coldmod_cli._cmdline import help_text, parse
    from coldmod_cli._errors import EXIT_USAGE, UsageError, say
    from coldmod_cli.cli import Coldmod

    try:
        # Which command, help or --verbose; the command's own words are checked once, by the
        # @command wrapper every caller goes through (_cmdline.check_call), before it runs.
        line = parse(Coldmod(), list(sys.argv[1:] if argv is None else argv))
        if line.help:
            sys.stdout.write(help_text(Coldmod(), line.path))
            sys.stdout.flush()
            return
    except UsageError as exc:
        say(str(exc))
        raise SystemExit(EXIT_USAGE) from None
    # Not fire.Fire(..., command=words): Fire reads words lossily (a boolean flag swallows the
    # next one, `-` chains calls) before any command could check them; the wrapper reads them as typed.
    command: Any = Coldmod(verbose=line.verbose)
    for name in line.path:
        command = getattr(command, name)
    command(*line.words)


if __name__ == "__main__":
    main()

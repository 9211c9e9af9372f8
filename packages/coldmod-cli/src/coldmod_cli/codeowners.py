"""The repository's CODEOWNERS: who owns a file, as GitHub decides it.

GitHub reads the first of ``.github/CODEOWNERS``, ``CODEOWNERS`` and
``docs/CODEOWNERS`` (at the repository's top) that exists. Each line is a
pattern and the owners (``@user``, ``@org/team`` or an e-mail); ``#`` starts a
comment. Patterns follow gitignore's rules, except that GitHub does not
support ``!`` negation, ``[ ]`` ranges or a ``\\#`` escape (such lines are
skipped here, as GitHub skips them). **The last matching line wins**, and a
line with a pattern but no owners makes the files it matches unowned.

The pattern rules, as a table :func:`_regex` applies:

=================  =====================================================
``*.py``           no slash: matches at any depth (``a/b/c.py``)
``/build/``        leading slash: anchored at the top; trailing slash: a directory
``apps/shop/``     a slash inside: anchored at the top too
``docs/*``         the files directly in ``docs/``, not those in subdirectories
``**/tests``       ``**`` spans directories
``apps/``          a directory matches everything under it
=================  =====================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LOCATIONS", "Codeowners", "Rule", "find", "parse"]

#: Where GitHub looks, in its order; the first that exists is the one used.
LOCATIONS = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")


@dataclass(frozen=True)
class Rule:
    """One line: its pattern, its owners (empty: unowned), its line number."""

    pattern: str
    owners: tuple[str, ...]
    line: int
    regex: re.Pattern[str]


@dataclass(frozen=True)
class Codeowners:
    """The rules of one CODEOWNERS file, in file order."""

    path: Path | None
    rules: tuple[Rule, ...]

    def owners(self, relpath: str) -> tuple[str, ...]:
        """The owners of ``relpath`` (relative to the repository's top): the last matching rule's; () if none."""
        for rule in reversed(self.rules):
            if rule.regex.match(relpath):
                return rule.owners
        return ()


def find(top: Path) -> Codeowners:
    """The CODEOWNERS GitHub would use in the repository at ``top`` (no rules when there is none)."""
    for location in LOCATIONS:
        path = top / location
        if path.is_file():
            return parse(path.read_text(encoding="utf-8", errors="replace"), path)
    return Codeowners(None, ())


def parse(text: str, path: Path | None = None) -> Codeowners:
    """The rules of a CODEOWNERS file's ``text``."""
    rules = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        pattern, *owners = line.split()
        if pattern.startswith(("!", "\\#")) or "[" in pattern:
            continue  # gitignore syntax GitHub does not support: GitHub ignores the line too
        rules.append(Rule(pattern, tuple(owners), number, _regex(pattern)))
    return Codeowners(path, tuple(rules))


def _regex(pattern: str) -> re.Pattern[str]:
    """A gitignore-style CODEOWNERS pattern as a regex over repository-relative paths."""
    anchored = pattern.startswith("/") or "/" in pattern.rstrip("/")
    directory = pattern.endswith("/")
    body = pattern.strip("/")
    only_direct = body.endswith("/*")  # `docs/*`: the files in docs/, not deeper (GitHub's reading)
    out = []
    index = 0
    while index < len(body):
        if body.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif body.startswith("**", index):
            out.append(".*")
            index += 2
        elif body[index] == "*":
            out.append("[^/]*")
            index += 1
        elif body[index] == "?":
            out.append("[^/]")
            index += 1
        else:
            out.append(re.escape(body[index]))
            index += 1
    head = "^" if anchored else "^(?:.*/)?"
    tail = "$" if only_direct else "/.*$" if directory else "(?:/.*)?$"
    return re.compile(head + "".join(out) + tail)

"""What a search finds: a ``Reference`` (a site and the rule it triggers) and a ``Match`` (with its site).

A reference's ``kind`` is a rule of ``_rules.RULES``, always given by the
rule's constant; a kind that is not in the table is a programming error and
fails when the reference is made, not later as a silent ``unsafe``.
"""

from __future__ import annotations

from typing import NamedTuple

from coldmod_codemod._rules import RULES, SAFE, UNSAFE
from coldmod_codemod._sites import Site

__all__ = ["Match", "Reference"]


class _Fields(NamedTuple):
    key: str
    path: str
    line: int
    column: int
    kind: str
    certain: bool = True
    detail: str = ""  # what was found there, when the kind alone does not say (``url``: ``GET /hello``)


class Reference(_Fields):
    """One site that may refer to a function; ``certain`` is False for the possible kinds.

    Immutable and cheap (a named tuple): a plan of a large tree makes hundreds of thousands.
    """

    __slots__ = ()

    def __new__(
        cls, key: str, path: str, line: int, column: int, kind: str, certain: bool = True, detail: str = ""
    ) -> Reference:
        if kind not in RULES:
            raise ValueError(f"{kind!r} is not a rule of _rules.RULES")
        return super().__new__(cls, key, path, line, column, kind, certain, detail)

    @property
    def verdict(self) -> str:
        """The verdict this reference gives its key, from the rules table."""
        return RULES[self.kind].verdict

    @property
    def reason(self) -> str:
        """``path:line kind`` for a definite reference; a review finding adds its rule's sentence."""
        rule = RULES[self.kind]
        if rule.verdict in (SAFE, UNSAFE):
            return str(self)
        return f"{self} ({rule.reason})"

    def __str__(self) -> str:
        """``path:line kind`` (and its detail), the form used in verdicts."""
        return f"{self.path}:{self.line} {self.kind}" + (f" {self.detail}" if self.detail else "")


class Match(NamedTuple):
    """A reference together with the site it was found at (None for one outside Python code)."""

    reference: Reference
    site: Site | None

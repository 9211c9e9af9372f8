"""Why a function stays, in one screen: its findings grouped by where they come from.

A kept function can have dozens of findings; what a person needs is which
*kind* of code still reaches it. Each finding goes into one group (the first
row of :data:`GROUPS` that takes it), sites are deduplicated by ``path:line``,
and each group is one line: a count and the first locations. The CLI's text,
its JSON and the web UI's removal dialog all print these groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from coldmod_codemod._rules import RULES

__all__ = ["COLD", "DEFINITION", "GROUPS", "LIVE", "STRINGS", "TESTS", "Place", "ReasonGroup", "group_of", "grouped"]

LIVE, COLD, TESTS, STRINGS, DEFINITION = "live", "cold", "tests", "strings", "definition"

# fmt: off
#: The groups, in the order they are shown, with the words that open their line.
GROUPS: dict[str, str] = {
    LIVE:       "from live code",                      # a function not planned as cold, or module-level code
    COLD:       "from cold code (goes if it goes)",    # a function this plan was asked about too
    TESTS:      "from tests",                          # a site in a test file
    STRINGS:    "from strings, templates or config",   # a name in a string, a text file, an entry point
    DEFINITION: "by its definition",                   # a decorator, a dispatch convention, an override
}
# fmt: on

#: Reference kinds that are a name written down outside code (see ``_rules.RULES``).
TEXT_KINDS = frozenset({"string", "mention", "text", "entry-point", "template"})


def group_of(kind: str, *, in_test: bool, referrer_cold: bool) -> str:
    """The group of one finding: read top to bottom, the first that fits."""
    rule = RULES.get(kind)
    if rule is not None and rule.own:
        return DEFINITION
    if in_test:
        return TESTS
    if kind in TEXT_KINDS:
        return STRINGS
    if referrer_cold:
        return COLD
    return LIVE


class Place(NamedTuple):
    """One finding's site: ``path:line``, its kind, and the function it lies in (None: module level).

    A named tuple: a plan of a large tree makes one per finding, millions of them.
    """

    path: str
    line: int
    kind: str
    referrer: str | None = None
    detail: str = ""  # what was found, when the kind alone does not say (``url``: ``GET /hello``)

    def __str__(self) -> str:
        """``path:line kind`` (its detail, and `` in key`` when inside a function)."""
        found = f"{self.path}:{self.line} {self.kind}" + (f" {self.detail}" if self.detail else "")
        return found + (f" in {self.referrer}" if self.referrer else "")


@dataclass(frozen=True)
class ReasonGroup:
    """The findings of one group, one per ``path:line``, in the order found."""

    name: str
    places: tuple[Place, ...]

    @property
    def title(self) -> str:
        """The words that open the group's line (``from live code``)."""
        return GROUPS[self.name]

    @property
    def referrers(self) -> tuple[str, ...]:
        """The functions the sites lie in, each once, in order."""
        return tuple(dict.fromkeys(p.referrer for p in self.places if p.referrer))

    def line(self, shown: int = 3, note: dict[str, str] | None = None) -> str:
        """``from live code (4): a.py:3 call in a.f, …, and 1 more``; ``note`` adds words after a referrer."""
        extra = note or {}
        first = [str(p) + (f" ({extra[p.referrer]})" if p.referrer in extra else "") for p in self.places[:shown]]
        more = len(self.places) - shown
        return f"{self.title} ({len(self.places)}): {', '.join(first)}" + (f", and {more} more" if more > 0 else "")


def grouped(found: list[tuple[str, Place]]) -> tuple[ReasonGroup, ...]:
    """``(group, place)`` pairs as groups in :data:`GROUPS` order, each site once (the first kind found wins)."""
    by_group: dict[str, dict[tuple[str, int], Place]] = {name: {} for name in GROUPS}
    for name, place in found:
        by_group[name].setdefault((place.path, place.line), place)
    return tuple(ReasonGroup(name, tuple(places.values())) for name, places in by_group.items() if places)

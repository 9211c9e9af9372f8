"""The verdict rules: what a finding is, which verdict it gives, and why — one table.

A key's verdict is the worst of its findings: ``unsafe`` (a definite
reference), ``review`` (only indirect or possible uses), ``test-only``
(whatever refers to it lies in test code), ``safe`` (nothing refers to it by
any route the tool knows). A reference that cannot be proved
to be something else counts as a reference, so every possible-but-unresolved
use is in the ``unsafe`` half of the table.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFINITION",
    "GOES",
    "REVIEW",
    "RULES",
    "SAFE",
    "TEST_ONLY",
    "UNSAFE",
    "USE",
    "VERDICTS",
    "Rule",
    "worst",
]

SAFE = "safe"
TEST_ONLY = "test-only"
REVIEW = "review"
UNSAFE = "unsafe"
#: The verdicts from best to worst. ``test-only`` is not a rule's verdict: a finding of any rule that lies
#: inside a function of a test file gives it (see ``_plan``), so the key goes only together with those
#: tests. It ranks below ``review``: tests are code the project controls and runs, a possible use is not.
VERDICTS = (SAFE, TEST_ONLY, REVIEW, UNSAFE)


#: Where a rule's finding is: at a use of the function, at the function's own definition, or at a site
#: removal takes away with the function (its imports, its ``__all__`` entries).
USE, DEFINITION, GOES = "use", "definition", "goes"


@dataclass(frozen=True)
class Rule:
    """One kind of finding: its name (the ``kind`` of a reference), the verdict it gives, where it is, and why."""

    name: str
    verdict: str
    site: str  # USE, DEFINITION or GOES
    reason: str

    @property
    def removable(self) -> bool:
        """Whether removal takes the site away with the function (imports, ``__all__`` entries)."""
        return self.site == GOES

    @property
    def own(self) -> bool:
        """Whether it is found at the function's own definition rather than at a use of it."""
        return self.site == DEFINITION


# fmt: off
#: Every rule, by name. Read it top to bottom: this is what "safe" means.
RULES: dict[str, Rule] = {rule.name: rule for rule in (
    # Sites removal edits away together with the function: they do not block it.
    Rule("import",       SAFE,   GOES, "imported here; the import goes with it"),
    Rule("__all__",      SAFE,   GOES, "listed in __all__; the entry goes with it"),
    # Definite references, or ones that cannot be proved to be something else.
    Rule("call",         UNSAFE, USE, "called here"),
    Rule("name",         UNSAFE, USE, "used by name here (or a bare name bound nowhere in the file)"),
    Rule("method",       UNSAFE, USE, "used as a method here (through self, cls or the class)"),
    Rule("attribute",    UNSAFE, USE, "an attribute of that name on an object that cannot be resolved"),
    Rule("string",       UNSAFE, USE, "named by a string shaped like a path (getattr, 'pkg.mod:f', a registry)"),
    Rule("entry-point",  UNSAFE, USE, "its full path or 'module:function' (entry points, configs, code in strings)"),
    Rule("export",       UNSAFE, USE, "imported from a module whose PEP 562 __getattr__ may hand it out"),
    Rule("unresolved",   UNSAFE, USE, "a relative import that cannot be resolved imports a name like it"),
    Rule("unparsed",     UNSAFE, USE, "mentioned in a Python file that cannot be parsed"),
    Rule("implicit",     UNSAFE, DEFINITION, "a dunder method: Python calls it by itself"),
    # Indirect or possible uses: removed only with include=("safe", "review").
    Rule("text",         REVIEW, USE, "mentioned in a template, text or config file"),
    Rule("mention",      REVIEW, USE, "its name appears inside a string (doctest, python -c, template, message)"),
    Rule("decorator",    REVIEW, DEFINITION, "registered by a decorator that is not a pure wrapper"),
    Rule("http-method",  REVIEW, DEFINITION, "an HTTP-verb method; class-based views dispatch it by name"),
    Rule("command",      REVIEW, DEFINITION, "handle/add_arguments; management commands are dispatched by name"),
    Rule("dispatch",     REVIEW, DEFINITION, "a do_*/visit_*/test_*/clean_* style name; dispatched by name"),
    Rule("test",         REVIEW, DEFINITION, "a test function or fixture; test runners find it by name"),
    Rule("override",     REVIEW, DEFINITION, "overrides (or may override) a base-class method"),
    Rule("dynamic",      REVIEW, DEFINITION, "its module looks names up dynamically (getattr, globals(), vars())"),
    Rule("side-effects", REVIEW, DEFINITION, "removing it drops a file's last import of an in-tree module, "
                                             "which may register things when imported"),
)}
# fmt: on


def worst(verdicts: list[str] | tuple[str, ...]) -> str:
    """The worst of ``verdicts`` (``safe`` for none)."""
    return max(verdicts, key=VERDICTS.index, default=SAFE)

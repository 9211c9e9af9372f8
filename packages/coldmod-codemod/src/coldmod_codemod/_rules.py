"""The verdict rules: what a finding is, which verdict it gives, and why — one table.

A key's verdict is the worst of its findings: ``unsafe`` (a definite
reference), ``review`` (only indirect or possible uses), ``safe`` (nothing
refers to it by any route the tool knows). A reference that cannot be proved
to be something else counts as a reference, so every possible-but-unresolved
use is in the ``unsafe`` half of the table.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "REVIEW",
    "RULES",
    "SAFE",
    "UNSAFE",
    "VERDICTS",
    "Rule",
    "worst",
]

SAFE = "safe"
REVIEW = "review"
UNSAFE = "unsafe"
#: The verdicts from best to worst.
VERDICTS = (SAFE, REVIEW, UNSAFE)


@dataclass(frozen=True)
class Rule:
    """One kind of finding: its name (the ``kind`` of a reference), the verdict it gives, and why."""

    name: str
    verdict: str
    reason: str
    removable: bool = False  # removal takes the site away with the function (imports, __all__ entries)


# fmt: off
#: Every rule, by name. Read it top to bottom: this is what "safe" means.
RULES: dict[str, Rule] = {rule.name: rule for rule in (
    # Sites removal edits away together with the function: they do not block it.
    Rule("import",      SAFE,   "imported here; the import goes with it", removable=True),
    Rule("__all__",     SAFE,   "listed in __all__; the entry goes with it", removable=True),
    # Definite references, or ones that cannot be proved to be something else.
    Rule("call",        UNSAFE, "called here"),
    Rule("name",        UNSAFE, "used by name here (or a bare name bound nowhere in the file)"),
    Rule("method",      UNSAFE, "used as a method here (through self, cls or the class)"),
    Rule("attribute",   UNSAFE, "an attribute of that name on an object that cannot be resolved"),
    Rule("string",      UNSAFE, "named by a string shaped like a path (getattr, 'pkg.mod:f', a registry)"),
    Rule("entry-point", UNSAFE, "named as 'module:function' or its dotted path in a config or text file"),
    Rule("export",      UNSAFE, "exported by a star import or __all__ and used through it"),
    Rule("unparsed",    UNSAFE, "mentioned in a Python file that cannot be parsed"),
    Rule("implicit",    UNSAFE, "a dunder method: Python calls it by itself"),
    Rule("unresolved",  UNSAFE, "a relative import that cannot be resolved imports a name like it"),
    # Indirect or possible uses: removed only with include=("safe", "review").
    Rule("decorator",   REVIEW, "registered by a decorator that is not a pure wrapper; a framework may call it"),
    Rule("http-method", REVIEW, "an HTTP-verb method; class-based views dispatch it by name"),
    Rule("command",     REVIEW, "handle/add_arguments; management commands are dispatched by name"),
    Rule("dispatch",    REVIEW, "a do_*/visit_*/leave_*/test_* style method; dispatched by name"),
    Rule("test",        REVIEW, "a test function or fixture; test runners find it by name"),
    Rule("override",    REVIEW, "overrides (or may override) a base-class method; callers reach it through the base"),
    Rule("text",        REVIEW, "mentioned in a template, text or config file"),
    Rule("mention",     REVIEW, "its name appears inside a string (doctest, python -c, template, message)"),
    Rule("dynamic",     REVIEW, "its module looks names up dynamically (getattr, globals(), vars(), __dict__)"),
)}
# fmt: on


def worst(verdicts: list[str] | tuple[str, ...]) -> str:
    """The worst of ``verdicts`` (``safe`` for none)."""
    return max(verdicts, key=VERDICTS.index, default=SAFE)

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
    "ALL",
    "ATTRIBUTE",
    "CALL",
    "COMMAND",
    "DECORATOR",
    "DEFINITION",
    "DISPATCH",
    "DYNAMIC",
    "ENTRY_POINT",
    "EXPORT",
    "FIELD_HOOK",
    "GOES",
    "HTTP_METHOD",
    "IMPLICIT",
    "IMPORT",
    "MENTION",
    "METHOD",
    "NAME",
    "OVERRIDE",
    "REGISTERED",
    "REMOVABLE_KINDS",
    "REVIEW",
    "RULES",
    "SAFE",
    "SIDE_EFFECTS",
    "STRING",
    "TEMPLATE",
    "TEST",
    "TEST_ONLY",
    "TEXT",
    "UNPARSED",
    "UNRESOLVED",
    "UNSAFE",
    "URL",
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


#: Every kind of finding, one constant each: the finders emit these, never a bare string.
#: Sites removal edits away together with the function.
IMPORT = "import"  # ``from m import f`` (any alias)
ALL = "__all__"  # an entry in ``__all__``
#: Definite references, or ones that cannot be proved to be something else.
CALL = "call"  # ``f(...)``, ``m.f(...)``, resolved through qualified names
NAME = "name"  # any other use (``x = f``, ``@f``, ``m.f``), and a bare name bound nowhere
METHOD = "method"  # ``self.m`` / ``cls.m`` / ``C.m`` for a method ``C.m``
ATTRIBUTE = "attribute"  # ``obj.f`` on an object that may be its class (see ``_receivers.RECEIVERS``)
STRING = "string"  # a string where strings become names: ``getattr(o, "f")``, a dispatch dict's key
ENTRY_POINT = "entry-point"  # ``module:function`` or the full dotted path, in a string or a text file
EXPORT = "export"  # an import from a module with a PEP 562 ``__getattr__``
UNRESOLVED = "unresolved"  # ``from ..x import f`` whose module cannot be resolved
UNPARSED = "unparsed"  # a file that mentions the name but cannot be parsed
IMPLICIT = "implicit"  # a ``__dunder__`` function: Python itself calls it
URL = "url"  # a test requests a URL its route matches, or names its endpoint (see ``_routes``)
TEMPLATE = "template"  # ``{{ obj.name }}``, ``{% if obj.name %}``: a template looks the attribute up
REGISTERED = "registered"  # ``@register`` (system checks), ``@receiver(signal)``, ``@library.filter``, ``@hookimpl``
FIELD_HOOK = "field-hook"  # ``clean_<field>``/``validate_<field>`` of a class that declares ``<field>``
#: Indirect or possible uses.
TEXT = "text"  # the bare name as a word in a text file (templates, configs)
MENTION = "mention"  # the bare name inside a Python string that is not a lookup, or in a minified/vendored file
DECORATOR = "decorator"
HTTP_METHOD = "http-method"
COMMAND = "command"
DISPATCH = "dispatch"
TEST = "test"
OVERRIDE = "override"
DYNAMIC = "dynamic"  # a getattr with a computed name (or globals(), vars()) in its module that may reach it
SIDE_EFFECTS = "side-effects"

# fmt: off
#: Every rule, by name. Read it top to bottom: this is what "safe" means.
RULES: dict[str, Rule] = {rule.name: rule for rule in (
    # Sites removal edits away together with the function: they do not block it.
    Rule(IMPORT,       SAFE,   GOES, "imported here; the import goes with it"),
    Rule(ALL,          SAFE,   GOES, "listed in __all__; the entry goes with it"),
    # Definite references, or ones that cannot be proved to be something else.
    Rule(CALL,         UNSAFE, USE, "called here"),
    Rule(NAME,         UNSAFE, USE, "used by name here (or a bare name bound nowhere in the file)"),
    Rule(METHOD,       UNSAFE, USE, "used as a method here (through self, cls or the class)"),
    Rule(ATTRIBUTE,    UNSAFE, USE, "an attribute of that name on an object that cannot be resolved"),
    Rule(STRING,       UNSAFE, USE, "named by a string shaped like a path (getattr, 'pkg.mod:f', a registry)"),
    Rule(ENTRY_POINT,  UNSAFE, USE, "its full path or 'module:function' (entry points, configs, code in strings)"),
    Rule(EXPORT,       UNSAFE, USE, "imported from a module whose PEP 562 __getattr__ may hand it out"),
    Rule(UNRESOLVED,   UNSAFE, USE, "a relative import that cannot be resolved imports a name like it"),
    Rule(UNPARSED,     UNSAFE, USE, "mentioned in a Python file that cannot be parsed"),
    Rule(IMPLICIT,     UNSAFE, DEFINITION, "a dunder method: Python calls it by itself"),
    Rule(URL,          UNSAFE, USE, "a test requests a URL its route matches (url_for/reverse: its endpoint)"),
    Rule(TEMPLATE,     UNSAFE, USE, "a method a template looks up ({{ obj.name }}, {% if obj.name %}) on any object"),
    Rule(REGISTERED,   UNSAFE, DEFINITION, "registered by a framework decorator (system check, signal receiver, "
                                           "template tag, plugin hook): it calls it"),
    Rule(FIELD_HOOK,   UNSAFE, DEFINITION, "clean_<field>/validate_<field> for a field its class declares: "
                                           "validation calls it"),
    # Indirect or possible uses: removed only with include=("safe", "review").
    Rule(TEXT,         REVIEW, USE, "mentioned in a template, text or config file"),
    Rule(MENTION,      REVIEW, USE, "its name appears inside a string (doctest, python -c, template, message)"),
    Rule(DECORATOR,    REVIEW, DEFINITION, "registered by a decorator that is not a pure wrapper"),
    Rule(HTTP_METHOD,  REVIEW, DEFINITION, "an HTTP-verb method; class-based views dispatch it by name"),
    Rule(COMMAND,      REVIEW, DEFINITION, "handle/add_arguments; management commands are dispatched by name"),
    Rule(DISPATCH,     REVIEW, DEFINITION, "a do_*/visit_*/test_*/clean_* style name; dispatched by name"),
    Rule(TEST,         REVIEW, DEFINITION, "a test function or fixture; test runners find it by name"),
    Rule(OVERRIDE,     REVIEW, DEFINITION, "overrides (or may override) a base-class method"),
    Rule(DYNAMIC,      REVIEW, DEFINITION, "a dynamic lookup here may reach it (getattr(o, computed), globals())"),
    Rule(SIDE_EFFECTS, REVIEW, DEFINITION, "removing it drops a file's last import of an in-tree module, "
                                           "which may register things when imported"),
)}
# fmt: on
#: Kinds that removal deals with by itself: the import or ``__all__`` entry goes with the function.
REMOVABLE_KINDS = frozenset(rule.name for rule in RULES.values() if rule.removable)


def worst(verdicts: list[str] | tuple[str, ...]) -> str:
    """The worst of ``verdicts`` (``safe`` for none)."""
    return max(verdicts, key=VERDICTS.index, default=SAFE)

"""The occurrences of names in one parsed file: every name, attribute, import and string, resolved.

The second pass over a file (after ``_scopes``), once per file: it records
sites, not findings; which key a site may refer to is decided later, in
``_matching``, against the whole tree.
"""

from __future__ import annotations

import ast
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field

from coldmod_codemod._scopes import (
    LOOKUP_CALLS,
    Binder,
    Scope,
    Visitor,
    absolute,
    annotation_exprs,
    default_exprs,
)

__all__ = ["PATH_STRING", "TOKEN", "WORD", "Finder", "Site", "StringLiteral", "nfkc", "string_sites"]

# A string counts as naming the function only if it looks like a dotted or
# colon-separated path (``f``, ``pkg.mod.f``, ``pkg.mod:f``), not prose.
PATH_STRING = re.compile(r"[^\W\d]\w*(?:[.:][^\W\d]\w*)*")
WORD = re.compile(r"\w+")
TOKEN = re.compile(r"[\w.:]+")
#: Functions and methods that turn a string argument into an attribute name.
LOOKUP_FUNCTIONS = LOOKUP_CALLS | frozenset({
    "attrgetter", "methodcaller", "getattr_static", "__getattribute__", "__getattr__", "__setattr__", "__delattr__",
})
#: Calls that return a namespace indexed by name, and the methods that index it.
NAMESPACES = frozenset({"globals", "vars", "locals"})
NAMESPACE_METHODS = frozenset({"get", "pop", "setdefault", "__getitem__", "__contains__"})


def nfkc(text: str) -> str:
    """``text`` as Python compares identifiers (NFKC-normalised)."""
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


@dataclass(frozen=True)
class Site:
    """An occurrence of a searched name in one file, before matching against keys."""

    shape: str  # "name", "attribute", "import", "all", "string", "mention" or "url" (a request, see ``_routes``)
    name: str  # the identifier (import: the bound name; all: the entry)
    line: int
    column: int
    statement_line: int  # first line of the innermost statement (for TODO comments)
    fqns: frozenset[str] = frozenset()  # what it may resolve to (import: what it imports)
    call: bool = False
    unbound: bool = False  # a bare name bound nowhere in the file
    self_class: str | None = None  # `self.m` in a method of this class
    module_level: bool = False
    node_id: int = 0  # id() of the ast node (import alias, __all__ entry) to find its LibCST node
    enclosing: tuple[int, ...] = ()  # `def` lines of the functions it lies in (decorators included)
    imported: str = ""  # import: the name in the imported module
    binds: tuple[str, ...] = ()  # import: the fully qualified names the binding creates
    scope_id: int = 0  # name: id of the scope it reads (0: unbound or ambiguous); import: the scope it binds in
    annotation: bool = False  # a string inside an annotation (``x: "Foo"``)
    lookup: bool = False  # a string where strings become names (getattr, a dispatch dict's key, attrgetter)
    receiver: ast.expr | None = field(default=None, compare=False, repr=False)  # attribute: the object before it
    scope: Scope | None = field(default=None, compare=False, repr=False)  # attribute: the scope it is read in


class Finder(Visitor):
    """Second pass, once per file: every name, attribute, import and string, resolved with the binder's scopes.

    Strings are kept as they are (``strings``); which names they mention is
    asked later, per name (see ``string_sites``).
    """

    def __init__(self, binder: Binder, package: str, aliases: tuple[str, ...]) -> None:
        self.binder = binder
        self.package = package
        self.aliases = aliases  # other prefixes of this module ("pkg.mod." for "src.pkg.mod.")
        self.scope = binder.root
        self.sites: list[Site] = []
        self.strings: list[StringLiteral] = []
        self._annotation = 0  # > 0 inside an annotation
        self._statement = 0
        self._callees: set[int] = set()
        self._skip: set[int] = set()
        self._lookups: set[int] = set()  # strings where strings become names
        # A lookup whose name is computed from anything: any string of the module may become a name.
        self._every_string = bool(binder.dynamic) or any(
            not (lookup.prefix or lookup.suffix or lookup.names) for lookup in binder.lookups)
        self._enclosing: tuple[int, ...] = ()

    def _add(self, shape: str, name: str, node: ast.expr | ast.alias, **extra: object) -> None:
        site = Site(shape, name, node.lineno, node.col_offset, self._statement, node_id=id(node),
                    enclosing=self._enclosing, **extra)  # type: ignore[arg-type]
        self.sites.append(site)

    def visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.stmt):
            outer_statement, self._statement = self._statement, node.lineno
            self._visit(node)
            self._statement = outer_statement
        else:
            self._visit(node)

    def _visit(self, node: ast.AST) -> None:
        scope = self.binder.scopes.get(id(node))
        if scope is None:
            super().visit(node)
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            self._scoped_parts(node, scope)
            return
        outer, self.scope = self.scope, scope
        super().visit(node)
        self.scope = outer

    def _scoped_parts(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda, scope: Scope
    ) -> None:
        """Decorators, defaults, annotations and bases belong to the enclosing scope; the body to the new one."""
        outer_enclosing = self._enclosing
        if isinstance(node, ast.ClassDef):
            outside: list[ast.expr | None] = [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]
            inside: list[ast.AST] = list(node.body)
        elif isinstance(node, ast.Lambda):
            outside, inside = list(default_exprs(node.args)), [node.body]
        else:
            outside = [*node.decorator_list, *default_exprs(node.args)]
            inside = list(node.body)
            # Decorators and annotations lie within the definition's span: removed with it.
            self._enclosing = (*outer_enclosing, node.lineno)
            self._annotated([node.returns, *annotation_exprs(node.args)])
        for expr in outside:
            if expr is not None:
                self.visit(expr)
        outer, self.scope = self.scope, scope
        for child in inside:
            self.visit(child)
        self.scope = outer
        self._enclosing = outer_enclosing

    def _annotated(self, exprs: list[ast.expr | None]) -> None:
        """Visit annotations, marking the strings in them (string annotations name what they annotate with)."""
        self._annotation += 1
        for expr in exprs:
            if expr is not None:
                self.visit(expr)
        self._annotation -= 1

    def visit_Call(self, node: ast.Call) -> None:
        self._callees.add(id(node.func))
        func = node.func
        called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if called in LOOKUP_FUNCTIONS or (
            isinstance(func, ast.Attribute) and func.attr in NAMESPACE_METHODS and _namespace(func.value)
        ):
            self._lookups.update(id(a) for a in node.args)
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        # A dispatch table: strings mapped to callables (a name, an attribute, a lambda) are names looked up.
        if any(isinstance(v, (ast.Name, ast.Attribute, ast.Lambda)) for v in node.values):
            self._lookups.update(id(k) for k in node.keys if k is not None)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        # globals()["f"], vars(obj)["f"], obj.__dict__["f"]: a namespace indexed by name.
        if _namespace(node.value):
            self._lookups.add(id(node.slice))
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, (ast.Load, ast.Del)):
            fqns = self.scope.resolve(node.id)
            self._add("name", node.id, node, fqns=frozenset(fqns or ()), call=id(node) in self._callees,
                      unbound=fqns is None, scope_id=_resolving_scope_id(self.scope, node.id))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        fqns, self_class = self._attribute(node)
        self._add("attribute", node.attr, node, fqns=fqns, call=id(node) in self._callees, self_class=self_class,
                  receiver=node.value, scope=self.scope)
        self.visit(node.value)

    def _attribute(self, node: ast.Attribute) -> tuple[frozenset[str], str | None]:
        """What ``x.attr`` may resolve to, and the class when ``x`` is a method's ``self``/``cls``."""
        parts = [node.attr]
        base: ast.expr = node.value
        while isinstance(base, ast.Attribute):
            parts.append(base.attr)
            base = base.value
        if not isinstance(base, ast.Name):
            return frozenset(), None
        suffix = ".".join(reversed(parts))
        self_class = None
        scope = self.scope
        while scope.kind == "other" and scope.parent is not None:
            scope = scope.parent
        if len(parts) == 1 and scope.self_name == base.id and scope.owner_class:
            self_class = scope.owner_class
        bases = self.scope.resolve(base.id) or set()
        return frozenset(f"{b}.{suffix}" for b in bases), self_class

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = absolute(node, self.package)
        for alias in node.names:
            if alias.name == "*":
                continue
            bound = alias.asname or alias.name
            binder = self.scope.binder_of(bound)
            prefixes = [binder.prefix, *self.aliases] if binder is self.binder.root else [binder.prefix]
            self._add(
                "import", bound, alias,
                fqns=frozenset({f"{module}.{alias.name}"}) if module is not None else frozenset(),
                module_level=binder is self.binder.root, imported=alias.name,
                binds=tuple(p + bound for p in prefixes), unbound=module is None, scope_id=id(binder),
            )

    def visit_Import(self, node: ast.Import) -> None:
        # Not a reference to a function, but a binding that removal may leave unused (see _imports).
        for alias in node.names:
            bound = alias.asname or alias.name.partition(".")[0]
            binder = self.scope.binder_of(bound)
            self._add("module", bound, alias, fqns=frozenset({alias.name}), module_level=binder is self.binder.root,
                      imported=alias.name, scope_id=id(binder))

    def _all(self, targets: list[ast.expr], value: ast.expr | None) -> bool:
        if self.scope is not self.binder.root:
            return False
        if not any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return False
        if isinstance(value, (ast.List, ast.Tuple)):
            for element in value.elts:
                if isinstance(element, ast.Constant) and isinstance(element.value, str):
                    self._skip.add(id(element))
                    self._add("all", element.value, element, module_level=True)
        return True

    def visit_Assign(self, node: ast.Assign) -> None:
        self._all(node.targets, node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._all([node.target], node.value)
        self.visit(node.target)
        self._annotated([node.annotation])
        if node.value is not None:
            self.visit(node.value)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._all([node.target], node.value)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and id(node) not in self._skip:
            text = nfkc(node.value)
            lookup = self._every_string or id(node) in self._lookups
            self.strings.append(StringLiteral(text, frozenset(WORD.findall(text)), node.lineno, node.col_offset,
                                              self._statement, self._enclosing, id(node), self._annotation > 0, lookup))


def _namespace(expr: ast.expr) -> bool:
    """Whether ``expr`` is a namespace indexed by name: ``globals()``, ``vars(o)``, ``locals()``, ``o.__dict__``."""
    return (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id in NAMESPACES) or (
        isinstance(expr, ast.Attribute) and expr.attr == "__dict__"
    )


def _resolving_scope_id(scope: Scope, name: str) -> int:
    """The id of the scope whose binding ``name`` reads here; 0 when unbound or ambiguous (class-body fallback)."""
    current: Scope | None = scope
    if name in scope.declared_global:
        while current is not None and current.parent is not None:
            current = current.parent
    first = True
    while current is not None:
        if (first or current.kind != "class") and name in current.bindings:
            return 0 if current.kind == "class" and current.parent is not None else id(current)
        first = False
        current = current.parent
    return 0


@dataclass(frozen=True)
class StringLiteral:
    """A string literal of a file, kept until a name is searched in it."""

    text: str
    words: frozenset[str]
    line: int
    column: int
    statement_line: int
    enclosing: tuple[int, ...]
    node_id: int
    annotation: bool
    lookup: bool = False  # where strings become names: getattr & co, a dispatch dict's key, globals()[...]


def string_sites(strings: list[StringLiteral], names: frozenset[str]) -> Iterator[Site]:
    """The sites of ``names`` in string literals: a path-shaped string naming one, or one as a word."""
    for string in strings:
        words = string.words & names
        if not words:
            continue
        text = string.text
        context = {"node_id": string.node_id, "enclosing": string.enclosing, "annotation": string.annotation,
                   "lookup": string.lookup}
        where = (string.line, string.column, string.statement_line)
        stripped = text.strip()
        if PATH_STRING.fullmatch(stripped):
            for part in words:
                yield Site("string", part, *where, fqns=frozenset({stripped}), **context)  # type: ignore[arg-type]
            continue
        # Prose, code or markup inside a string (doctests, `python -c`, entry points in setup.py):
        # the name as a word, with the dotted tokens holding it (``pkg.cli:main``).
        tokens = [t.strip(".:") for t in TOKEN.findall(text)]
        for word in words:
            holding = frozenset(t for t in tokens if word in WORD.findall(t))
            yield Site("mention", word, *where, fqns=holding, **context)  # type: ignore[arg-type]

"""Where a function may be referred to: imports, uses, ``__all__``, attributes, strings, other files.

Speed decides the design. The tree is read once: every file's identifiers are
collected once (the word index), so a key's candidate files are a set
lookup, not a search. Only Python files containing a searched name are
parsed, with the standard library's ``ast`` (C, ~100x faster than LibCST's
parser), each at most once, and the occurrences of every searched name are
collected in one pass per file into an index by name; every key is then
answered from the index. Names are resolved by a scope pass that follows the
rules of LibCST's ``QualifiedNameProvider``: the fully qualified name of a
binding is ``<module>.<qualname>``, imports resolve to what they import,
relative imports against the file's package. LibCST parses only the files
that are edited (see ``_cstfile``); the tests check that both resolve alike.

A module can be imported under more than one name (``src/pkg/mod.py`` as
``pkg.mod``, a test helper as a top-level module through pytest's rootdir
insertion, a root that is itself a package): every spelling counts.
"""

from __future__ import annotations

import ast
import os
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst

from coldmod_codemod._cstfile import CstFile, parse_cst
from coldmod_codemod._discovery import EXCLUDED_DIRS, module_for, walk_files
from coldmod_codemod._rules import RULES, SAFE, UNSAFE

__all__ = [
    "ALL",
    "ATTRIBUTE",
    "CALL",
    "IMPLICIT",
    "IMPORT",
    "METHOD",
    "NAME",
    "REMOVABLE_KINDS",
    "STRING",
    "UNPARSED",
    "FileFailure",
    "Reference",
    "find_references",
    "iter_source_files",
]

#: ``from m import f`` (any alias): removed together with the function.
IMPORT = "import"
#: An entry in ``__all__``: removed together with the function.
ALL = "__all__"
#: ``f(...)``, ``m.f(...)``, resolved through qualified names.
CALL = "call"
#: Any other use (``x = f``, ``@f``, ``m.f``), and a bare name bound nowhere (possible).
NAME = "name"
#: ``self.m`` / ``cls.m`` / ``C.m`` for a method ``C.m``.
METHOD = "method"
#: ``obj.f`` on an object that cannot be resolved: possibly the function.
ATTRIBUTE = "attribute"
#: A string literal naming it (``getattr(o, "f")``, ``"pkg.mod:f"``): possibly the function.
STRING = "string"
#: A file that mentions the name but cannot be parsed: it may refer to it.
UNPARSED = "unparsed"
#: A ``__dunder__`` function: Python itself calls it (``in``, ``len()``, module ``__getattr__``).
IMPLICIT = "implicit"
#: ``module:function`` or the full dotted path in a text or config file (entry points, logging configs).
ENTRY_POINT = "entry-point"
#: The bare name as a word in a text file (templates: ``url_for('bp.name')``, ``{% tag %}``, ``{{ o.m }}``).
TEXT = "text"
#: The bare name as a word inside a Python string that is not a path (doctests, ``python -c``).
MENTION = "mention"
#: An import from a module with a PEP 562 ``__getattr__``, which can hand out anything.
EXPORT = "export"
#: ``from ..x import f`` whose module cannot be resolved from the file's package.
UNRESOLVED = "unresolved"
#: Kinds that removal deals with by itself (see ``_rules.RULES``).
REMOVABLE_KINDS = frozenset(rule.name for rule in RULES.values() if rule.removable)

# A string counts as naming the function only if it looks like a dotted or
# colon-separated path (``f``, ``pkg.mod.f``, ``pkg.mod:f``), not prose.
_PATH_STRING = re.compile(r"[^\W\d]\w*(?:[.:][^\W\d]\w*)*")
_WORD = re.compile(r"\w+")
_WORD_BYTES = re.compile(rb"\w+")
_TOKEN = re.compile(r"[\w.:]+")
#: ``import *`` anywhere (after a semicolon, across a backslash): the cheap test before parsing for star imports.
_STAR_IMPORT = re.compile(rb"\bimport[\s\\]*\*")
#: Text files larger than this are not read (data dumps, not configuration).
_MAX_TEXT_BYTES = 2_000_000
#: Directories the reference scan never enters (tool caches and VCS data); other hidden ones are read.
SKIPPED_DIRS = EXCLUDED_DIRS | frozenset({
    ".git", ".hg", ".svn", ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".eggs",
})
#: Files the scan never reads: Coldmod's own configuration names keys without referring to them.
SKIPPED_FILES = frozenset({"coldmod.rootmarker"})
_BINARY_SUFFIXES = frozenset({
    ".pyc", ".pyo", ".so", ".pyd", ".dll", ".dylib", ".o", ".a", ".whl", ".zip", ".gz", ".bz2", ".xz",
    ".tar", ".png", ".jpg", ".jpeg", ".gif", ".ico", ".webp", ".pdf", ".woff", ".woff2", ".ttf", ".otf",
    ".eot", ".mo", ".db", ".sqlite", ".sqlite3", ".bin", ".mp3", ".mp4", ".svgz",
})


@dataclass(frozen=True)
class Reference:
    """One site that may refer to a function; ``certain`` is False for the possible kinds."""

    key: str
    path: str
    line: int
    column: int
    kind: str
    certain: bool = True

    @property
    def verdict(self) -> str:
        """The verdict this reference gives its key, from the rules table."""
        rule = RULES.get(self.kind)
        return rule.verdict if rule else UNSAFE

    @property
    def reason(self) -> str:
        """``path:line kind`` for a definite reference; a review finding adds its rule's sentence."""
        rule = RULES.get(self.kind)
        if rule is None or rule.verdict in (SAFE, UNSAFE):
            return str(self)
        return f"{self} ({rule.reason})"

    def __str__(self) -> str:
        """``path:line kind``, the form used in verdicts."""
        return f"{self.path}:{self.line} {self.kind}"


@dataclass(frozen=True)
class FileFailure:
    """A file that could not be read or parsed, with why; it is left untouched."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        """``path:line: reason``."""
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass(frozen=True)
class Definition:
    """One ``def`` as the reference search sees it: key, file and span (decorators included).

    Found with ``ast`` for speed; the keys are those of ``find_functions``
    (the tests compare the two on every corpus).
    """

    key: str
    qualname: str
    path: str
    line: int  # the line of the `def` (or `async`) keyword
    start_line: int
    end_line: int


# -- files ------------------------------------------------------------------------


def iter_source_files(root: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """Root-relative ``(python files, text files)`` the reference scan reads.

    Wider than discovery's walk: hidden directories (``.github``) are read,
    Python scripts without ``.py`` are recognised by their shebang, and every
    other small non-binary file is text that may name a function.
    """
    python: list[str] = []
    text: list[str] = []
    for rel, name in walk_files(root, SKIPPED_DIRS.__contains__):
        if name in SKIPPED_FILES:
            continue
        suffix = os.path.splitext(name)[1].lower()
        if suffix in (".py", ".pyi", ".pyw"):
            python.append(rel)
        elif suffix not in _BINARY_SUFFIXES:
            text.append(rel)
    return python, text


def _is_python_script(data: bytes) -> bool:
    """A file without ``.py`` that is a Python script: its shebang names python."""
    first = data[:200].partition(b"\n")[0]
    return first.startswith(b"#!") and b"python" in first


def _words(data: bytes) -> frozenset[str]:
    """Every identifier-like word of a file, compared as Python compares identifiers (NFKC)."""
    if data.isascii():
        return frozenset(w.decode() for w in _WORD_BYTES.findall(data))
    text = unicodedata.normalize("NFKC", data.decode("utf-8", "replace"))
    return frozenset(_WORD.findall(text))


def _nfkc(text: str) -> str:
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


# -- scopes ---------------------------------------------------------------------


@dataclass(eq=False)
class _Scope:
    kind: str  # "module", "function", "class" or "other" (lambda, comprehension)
    prefix: str  # fully qualified prefix of what it binds: "m.", "m.f.<locals>.", "m.C."
    parent: _Scope | None
    bindings: dict[str, set[str]] = field(default_factory=dict)  # name -> fully qualified names
    declared_global: set[str] = field(default_factory=set)
    declared_nonlocal: set[str] = field(default_factory=set)
    self_name: str | None = None  # first parameter of a method
    owner_class: str | None = None  # for a method: its class's fully qualified name

    def binder_of(self, name: str) -> _Scope:
        """The scope a binding of ``name`` made here lands in (``global``/``nonlocal`` move it)."""
        if name in self.declared_global:
            target = self
            while target.parent is not None:
                target = target.parent
            return target
        if name in self.declared_nonlocal:
            return _enclosing_binder(self, name) or self
        return self

    def bind(self, name: str, fqn: str | None = None) -> None:
        """Record that ``name`` is bound here (to ``fqn``, by default a local of this scope)."""
        target = self.binder_of(name)
        target.bindings.setdefault(name, set()).add(fqn or target.prefix + name)

    def resolve(self, name: str) -> set[str] | None:
        """Fully qualified names ``name`` may have here; None when it is bound nowhere."""
        scope: _Scope | None = self
        if name in self.declared_global:
            while scope is not None and scope.parent is not None:
                scope = scope.parent
        first = True
        while scope is not None:
            # A class body's names are not visible from the scopes inside it.
            if (first or scope.kind != "class") and name in scope.bindings:
                found = scope.bindings[name]
                if scope.kind == "class" and scope.parent is not None:
                    # A class body looks a name up in its own namespace, then
                    # outside: `x = staticmethod(x)` reads the module's `x`.
                    outer = scope.parent.resolve(name)
                    return found | outer if outer else found
                return found
            first = False
            scope = scope.parent
        return None


def _enclosing_binder(scope: _Scope, name: str) -> _Scope | None:
    parent = scope.parent
    while parent is not None and parent.kind != "module":
        if parent.kind == "function" and name in parent.bindings:
            return parent
        parent = parent.parent
    return None


@dataclass
class _DefInfo:
    """What the verdict rules need about one definition besides its span."""

    definition: Definition
    scope: _Scope  # the scope the `def` statement is in
    decorators: list[ast.expr]
    owner: str | None  # the class's fully qualified name, for a method


class _Binder(ast.NodeVisitor):
    """First pass: every scope of a module and the names each one binds."""

    def __init__(self, path: str, module: str, package: str) -> None:
        self.path = path
        self.package = package
        self.root = _Scope("module", f"{module}." if module else "", None)
        self.scope = self.root
        self.scopes: dict[int, _Scope] = {}
        self.definitions: list[Definition] = []
        self.infos: list[_DefInfo] = []
        self.classes: dict[str, tuple[list[ast.expr], _Scope, _Scope]] = {}  # fqn -> (bases, outer, body scope)
        self.dynamic: int = 0  # line of the first dynamic name lookup (getattr, globals()), 0 if none
        self.stars: list[tuple[str | None, str]] = []  # (imported module or None, the name in the import)
        self.exports: list[str] | None = None  # a static module-level __all__
        self.module_getattr = False  # PEP 562

    def _enter(self, node: ast.AST, kind: str, prefix: str) -> _Scope:
        scope = self.scopes[id(node)] = _Scope(kind, prefix, self.scope)
        self.scope = scope
        return scope

    def _leave(self, scope: _Scope) -> None:
        assert scope.parent is not None
        self.scope = scope.parent

    def _declarations(self, body: list[ast.stmt], scope: _Scope) -> None:
        for node in _statements(body):
            if isinstance(node, ast.Global):
                scope.declared_global.update(node.names)
            elif isinstance(node, ast.Nonlocal):
                scope.declared_nonlocal.update(node.names)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        outer = self.scope
        for expr in (*node.decorator_list, *_defaults(node.args), node.returns, *_annotations(node.args)):
            if expr is not None:
                self.visit(expr)
        outer.bind(node.name)
        # CPython names a definition declared `global` by its bare name (compile.c, compiler_set_qualname).
        fqn = (self.root.prefix if node.name in outer.declared_global else outer.prefix) + node.name
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        qualname = fqn[len(self.root.prefix):]
        definition = Definition(fqn, qualname, self.path, node.lineno, start, node.end_lineno or node.lineno)
        self.definitions.append(definition)
        owner = outer.prefix[:-1] if outer.kind == "class" else None
        self.infos.append(_DefInfo(definition, outer, list(node.decorator_list), owner))
        if outer is self.root and node.name == "__getattr__":
            self.module_getattr = True
        scope = self._enter(node, "function", fqn + ".<locals>.")
        self._declarations(node.body, scope)
        params = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        for arg in (*params, node.args.vararg, node.args.kwarg):
            if arg is not None:
                scope.bind(arg.arg)
        if outer.kind == "class" and params:
            scope.self_name = params[0].arg
            scope.owner_class = outer.prefix[:-1]
        for stmt in node.body:
            self.visit(stmt)
        self._leave(scope)

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        outer = self.scope
        for expr in (*node.decorator_list, *node.bases, *(k.value for k in node.keywords)):
            self.visit(expr)
        outer.bind(node.name)
        prefix = (self.root.prefix if node.name in outer.declared_global else outer.prefix) + node.name + "."
        scope = self._enter(node, "class", prefix)
        self.classes[prefix[:-1]] = (list(node.bases), outer, scope)
        self._declarations(node.body, scope)
        for stmt in node.body:
            self.visit(stmt)
        self._leave(scope)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for expr in _defaults(node.args):
            self.visit(expr)
        scope = self._enter(node, "other", self.scope.prefix + "<lambda>.<locals>.")
        for arg in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs,
                    node.args.vararg, node.args.kwarg):
            if arg is not None:
                scope.bind(arg.arg)
        self.visit(node.body)
        self._leave(scope)

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp) -> None:
        scope = self._enter(node, "other", self.scope.prefix + "<comp>.<locals>.")
        self.generic_visit(node)
        self._leave(scope)

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension

    def visit_Name(self, node: ast.Name) -> None:
        if not isinstance(node.ctx, ast.Load):
            self.scope.bind(node.id)
        elif node.id in _DYNAMIC_CALLS and not self.dynamic:
            self.dynamic = node.lineno

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (
            not self.dynamic
            and isinstance(func, ast.Name)
            and func.id in ("getattr", "hasattr", "setattr", "delattr")
            and len(node.args) >= 2
            and not isinstance(node.args[1], ast.Constant)
        ):
            self.dynamic = node.lineno
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr == "__dict__" and not self.dynamic:
            self.dynamic = node.lineno
        self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        scope = self.scope
        while scope.kind == "other" and scope.parent is not None:
            scope = scope.parent  # `:=` in a comprehension binds in the enclosing scope
        scope.bind(node.target.id)
        self.visit(node.value)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.scope.bind(alias.asname, alias.name)
            else:
                top = alias.name.partition(".")[0]
                self.scope.bind(top, top)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = _absolute(node, self.package)
        for alias in node.names:
            if alias.name == "*":
                if self.scope is self.root:
                    self.stars.append((module, alias.name))
                continue
            if module is not None:
                self.scope.bind(alias.asname or alias.name, f"{module}.{alias.name}")
            else:
                self.scope.bind(alias.asname or alias.name)

    def visit_Assign(self, node: ast.Assign) -> None:
        if self.scope is self.root and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            self._exports(node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if self.scope is self.root and isinstance(node.target, ast.Name) and node.target.id == "__all__":
            self._exports(node.value)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if self.scope is self.root and isinstance(node.target, ast.Name) and node.target.id == "__all__":
            self._exports(node.value)
        self.generic_visit(node)

    def _exports(self, value: ast.expr | None) -> None:
        if isinstance(value, (ast.List, ast.Tuple)):
            names = [e.value for e in value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            self.exports = [*(self.exports or []), *names]

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.scope.bind(node.name)
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name:
            self.scope.bind(node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.scope.bind(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self.scope.bind(node.rest)
        self.generic_visit(node)


#: Calls that look names up by a computed string: anything in the module may be reached.
_DYNAMIC_CALLS = frozenset({"globals", "vars", "locals"})


def _defaults(args: ast.arguments) -> list[ast.expr]:
    return [*args.defaults, *(d for d in args.kw_defaults if d is not None)]


def _annotations(args: ast.arguments) -> list[ast.expr]:
    params = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    return [p.annotation for p in params if p is not None and p.annotation is not None]


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements of one scope, through compound statements but not into new scopes."""
    for node in body:
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for attr in ("body", "orelse", "finalbody"):
            inner = getattr(node, attr, None)
            if isinstance(inner, list):
                yield from _statements(inner)
        for handler in getattr(node, "handlers", ()):
            yield from _statements(handler.body)
        for case in getattr(node, "cases", ()):
            yield from _statements(case.body)


def _absolute(node: ast.ImportFrom, package: str) -> str | None:
    """The absolute module a ``from`` import reads from, as ``importlib`` resolves it."""
    return _absolute_module(node.level, node.module, package)


def _absolute_module(level: int, module: str | None, package: str) -> str | None:
    if not level:
        return module
    parts = package.split(".") if package else []
    if level - 1 > len(parts) or not parts:
        return None
    base = parts[: len(parts) - (level - 1)]
    if module:
        base.append(module)
    return ".".join(base) or None


def dotted(expr: ast.expr, scope: _Scope) -> set[str]:
    """What ``a.b.c`` may resolve to in ``scope``: fully qualified names, or the bare dotted text when unbound."""
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return set()
    suffix = "".join(f".{p}" for p in reversed(parts))
    bases = scope.resolve(expr.id)
    if bases is None:
        return {expr.id + suffix}
    return {b + suffix for b in bases}


# -- sites ----------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """An occurrence of a searched name in one file, before matching against keys."""

    shape: str  # "name", "attribute", "import", "all", "string" or "mention"
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


class _Finder(ast.NodeVisitor):
    """Second pass, once per file: every name, attribute, import and string, resolved with the binder's scopes.

    Strings are kept as they are (``strings``); which names they mention is
    asked later, per name (see ``string_sites``).
    """

    def __init__(self, binder: _Binder, package: str, aliases: tuple[str, ...]) -> None:
        self.binder = binder
        self.package = package
        self.aliases = aliases  # other prefixes of this module ("pkg.mod." for "src.pkg.mod.")
        self.scope = binder.root
        self.sites: list[Site] = []
        self.strings: list[_String] = []
        self._annotation = 0  # > 0 inside an annotation
        self._statement = 0
        self._callees: set[int] = set()
        self._skip: set[int] = set()
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
        self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda, scope: _Scope
    ) -> None:
        """Decorators, defaults, annotations and bases belong to the enclosing scope; the body to the new one."""
        outer_enclosing = self._enclosing
        if isinstance(node, ast.ClassDef):
            outside: list[ast.expr | None] = [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]
            inside: list[ast.AST] = list(node.body)
        elif isinstance(node, ast.Lambda):
            outside, inside = list(_defaults(node.args)), [node.body]
        else:
            outside = [*node.decorator_list, *_defaults(node.args)]
            inside = list(node.body)
            # Decorators and annotations lie within the definition's span: removed with it.
            self._enclosing = (*outer_enclosing, node.lineno)
            self._annotated([node.returns, *_annotations(node.args)])
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
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, (ast.Load, ast.Del)):
            fqns = self.scope.resolve(node.id)
            self._add("name", node.id, node, fqns=frozenset(fqns or ()), call=id(node) in self._callees,
                      unbound=fqns is None, scope_id=_resolving_scope_id(self.scope, node.id))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        fqns, self_class = self._attribute(node)
        self._add("attribute", node.attr, node, fqns=fqns, call=id(node) in self._callees, self_class=self_class)
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
        module = _absolute(node, self.package)
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
            text = _nfkc(node.value)
            self.strings.append(_String(text, frozenset(_WORD.findall(text)), node.lineno, node.col_offset,
                                        self._statement, self._enclosing, id(node), self._annotation > 0))


def _resolving_scope_id(scope: _Scope, name: str) -> int:
    """The id of the scope whose binding ``name`` reads here; 0 when unbound or ambiguous (class-body fallback)."""
    current: _Scope | None = scope
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
class _String:
    """A string literal of a file, kept until a name is searched in it."""

    text: str
    words: frozenset[str]
    line: int
    column: int
    statement_line: int
    enclosing: tuple[int, ...]
    node_id: int
    annotation: bool


def string_sites(strings: list[_String], names: frozenset[str]) -> Iterator[Site]:
    """The sites of ``names`` in string literals: a path-shaped string naming one, or one as a word."""
    for string in strings:
        words = string.words & names
        if not words:
            continue
        text = string.text
        context = {"node_id": string.node_id, "enclosing": string.enclosing, "annotation": string.annotation}
        where = (string.line, string.column, string.statement_line)
        stripped = text.strip()
        if _PATH_STRING.fullmatch(stripped):
            for part in words:
                yield Site("string", part, *where, fqns=frozenset({stripped}), **context)  # type: ignore[arg-type]
            continue
        # Prose, code or markup inside a string (doctests, `python -c`, entry points in setup.py):
        # the name as a word, with the dotted tokens holding it (``pkg.cli:main``).
        tokens = [t.strip(".:") for t in _TOKEN.findall(text)]
        for word in words:
            holding = frozenset(t for t in tokens if word in _WORD.findall(t))
            yield Site("mention", word, *where, fqns=holding, **context)  # type: ignore[arg-type]


# -- files and the tree -----------------------------------------------------------


@dataclass(eq=False)
class ScannedFile:
    """One candidate file: its source, module, and the occurrences of the searched names."""

    path: str
    source: bytes
    module_name: str
    names: frozenset[str] = frozenset()
    sites: list[Site] = field(default_factory=list)
    tree: ast.Module | None = None
    binder: _Binder | None = None
    package_name: str | None = None  # the package relative imports resolve against
    aliases: tuple[str, ...] = ()  # the module's other prefixes ("pkg.mod." for "src.pkg.mod.")
    everything: dict[str, list[Site]] | None = None
    strings: list[_String] = field(default_factory=list)

    @property
    def package(self) -> str:
        """The package relative imports in this file are resolved against."""
        if self.package_name is not None:
            return self.package_name
        return self.module_name if self.path.endswith("__init__.py") else self.module_name.rpartition(".")[0]

    def bind(self) -> _Binder:
        """The file's scopes and definitions (computed once)."""
        if self.binder is None:
            assert self.tree is not None
            self.binder = _Binder(self.path, self.module_name, self.package)
            self.binder.visit(self.tree)
        return self.binder

    def occurrences(self) -> tuple[dict[str, list[Site]], list[_String]]:
        """Every site of the file by name, and its strings (one pass, computed once)."""
        if self.everything is None:
            binder = self.bind()
            finder = _Finder(binder, self.package, self.aliases)
            assert self.tree is not None  # bind() needs it too
            finder.visit(self.tree)
            everything: dict[str, list[Site]] = defaultdict(list)
            for site in finder.sites:
                everything[site.name].append(site)
                if site.shape == "import" and site.imported != site.name:
                    everything[site.imported].append(site)  # `from m import f as g` is found by f too
            self.everything, self.strings = everything, finder.strings
        return self.everything, self.strings

    def scan(self, names: frozenset[str]) -> list[Site]:
        """The occurrences of those of ``names`` not collected yet (they join ``sites``)."""
        new = names - self.names
        if not new:
            return []
        everything, strings = self.occurrences()
        given = {id(site) for site in self.sites}
        found = []
        for name in sorted(new):
            for site in everything.get(name, ()):
                if site.shape != "module" and id(site) not in given:
                    given.add(id(site))
                    found.append(site)
        found.extend(string_sites(strings, frozenset(new)))
        self.names = self.names | new
        self.sites.extend(found)
        return found


class Tree:
    """The files under a root, read once; parsed lazily, only where a name occurs, each at most once."""

    def __init__(self, root: str | os.PathLike[str], files: Iterable[str] | None = None) -> None:
        self.root = Path(root)
        if files is None:
            python, self.texts = iter_source_files(self.root)
        else:
            python, self.texts = [p.replace(os.sep, "/") for p in files], []
        self.paths = list(python)
        self.sources: dict[str, bytes] = {}
        self.scanned: dict[str, ScannedFile] = {}
        self.cst_files: dict[str, CstFile] = {}
        self.failures: dict[str, FileFailure] = {}
        self.by_name: dict[str, list[tuple[ScannedFile, Site]]] = defaultdict(list)
        self.imports: dict[str, list[tuple[ScannedFile, Site]]] = defaultdict(list)  # imported fqn -> sites
        self._words: dict[str, frozenset[str]] = {}
        self._word_index: dict[str, list[str]] | None = None
        self._text_words: dict[str, list[str]] | None = None
        self._text_queries = 0
        self._tokens: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
        self._stars: list[tuple[str, str]] | None = None
        self._modules: dict[str, list[str]] | None = None  # module name (any spelling) -> paths
        self._prefixes: dict[str, tuple[str, ...]] = {}
        if files is None:
            self._find_scripts()

    def _find_scripts(self) -> None:
        """Text files that are Python scripts by their shebang move to the Python files."""
        scripts = []
        for path in self.texts:
            if "." not in path.rpartition("/")[2]:
                data = self.read(path)
                if data is not None and _is_python_script(data):
                    scripts.append(path)
        if scripts:
            self.paths.extend(scripts)
            moved = set(scripts)
            self.texts = [p for p in self.texts if p not in moved]

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None (and a failure) when it cannot be read."""
        data = self.sources.get(path)
        if data is None and path not in self.failures:
            try:
                data = self.sources[path] = (self.root / path).read_bytes()
            except OSError as exc:
                self.failures[path] = FileFailure(path, 1, f"cannot read the file ({exc.strerror or exc})")
        return data

    def words(self, path: str) -> frozenset[str]:
        """The identifier-like words of a file (NFKC), computed once."""
        found = self._words.get(path)
        if found is None:
            data = self.read(path)
            found = self._words[path] = _words(data) if data is not None else frozenset()
        return found

    def _index(self) -> dict[str, list[str]]:
        """Word -> the Python files containing it, built once for the whole tree."""
        if self._word_index is None:
            index: dict[str, list[str]] = defaultdict(list)
            for path in self.paths:
                for word in self.words(path):
                    index[word].append(path)
            self._word_index = index
        return self._word_index

    def containing(self, names: Iterable[str]) -> Iterator[str]:
        """Python files containing one of ``names`` as a whole word (the cheap prefilter), in tree order."""
        names = list(names)
        if len(names) <= 3 and self._word_index is None:
            yield from (p for p in self.paths if self._has_word(p, names))
            return
        index = self._index()
        found = {p for n in names for p in index.get(n, ())}
        yield from (p for p in self.paths if p in found)

    def _has_word(self, path: str, names: list[str]) -> bool:
        """Whether the file contains one of a few ``names`` as a word (bytes first: no index for a small query)."""
        data = self.read(path)
        if data is None:
            return False
        if data.isascii() and not any(n.encode() in data for n in names if n.isascii()):
            return False
        words = self.words(path)
        return any(n in words for n in names)

    def module_prefixes(self, path: str) -> tuple[str, ...]:
        """Every ``module.`` prefix the file may be imported as; the first is its key's module."""
        found = self._prefixes.get(path)
        if found is not None:
            return found
        module = module_for(path)
        parts = module.split(".") if module else []
        names = [module]
        directories = path.split("/")[:-1]
        # A directory without __init__.py on the way down may be a sys.path entry
        # (src/ layouts, pytest's rootdir insertion of a test's directory).
        for depth in range(1, len(directories) + 1):
            if not (self.root.joinpath(*directories[:depth]) / "__init__.py").is_file():
                rest = parts[depth:]
                if rest:
                    names.append(".".join(rest))
        # A root that is itself a package is imported by its own name (and its parents').
        outer = self.root.resolve()
        prefix: list[str] = []
        while (outer / "__init__.py").is_file() and outer.name:
            prefix.insert(0, outer.name)
            names.append(".".join([*prefix, *parts]))
            outer = outer.parent
        found = self._prefixes[path] = tuple(dict.fromkeys(f"{n}." if n else "" for n in names))
        return found

    def _root_package(self, path: str) -> str | None:
        """The package to resolve relative imports against when the root itself is a package."""
        prefixes = self.module_prefixes(path)
        longest = max(prefixes, key=lambda p: p.count("."))
        if longest == prefixes[0]:
            return None
        module = longest[:-1]
        return module if path.endswith("__init__.py") else module.rpartition(".")[0]

    def modules(self) -> dict[str, list[str]]:
        """Every module spelling -> the Python files it may be."""
        if self._modules is None:
            found: dict[str, list[str]] = defaultdict(list)
            for path in self.paths:
                for prefix in self.module_prefixes(path):
                    found[prefix[:-1]].append(path)
            self._modules = found
        return self._modules

    def star_imports(self) -> list[tuple[str, str]]:
        """``(importing module, imported module)`` for every module-level ``from m import *`` in the tree."""
        if self._stars is None:
            self._stars = []
            for path in self.paths:
                data = self.read(path)
                if data is None or b"*" not in data or not _STAR_IMPORT.search(data):
                    continue  # only files that may hold `from m import *` are parsed for it
                scanned = self.file(path)
                if scanned is None:
                    continue
                for imported, _ in scanned.bind().stars:
                    if imported:
                        for prefix in self.module_prefixes(path):
                            self._stars.append((prefix[:-1], imported))
        return self._stars

    def exported(self, module: str, name: str) -> bool:
        """Whether ``from module import *`` binds ``name``: listed in its ``__all__``, else public."""
        for path in self.modules().get(module, ()):
            scanned = self.file(path)
            exports = scanned.bind().exports if scanned is not None else None
            if exports is not None:
                return name in exports
        return not name.startswith("_")

    def getattr_modules(self) -> set[str]:
        """Modules with a PEP 562 ``__getattr__``: ``from m import anything`` may succeed through it."""
        found: set[str] = set()
        for path in self.containing(["__getattr__"]):
            scanned = self.file(path)
            if scanned is not None and scanned.bind().module_getattr:
                found.update(p[:-1] for p in self.module_prefixes(path))
        return found

    def text_files_with(self, word: str) -> list[str]:
        """The text (non-Python) files containing ``word``; indexed once a plan asks for many words."""
        if self._text_words is None:
            self._text_queries += 1
            if self._text_queries <= 3:
                return [p for p in self.texts if self._readable_text(p) and self._has_word(p, [word])]
            index: dict[str, list[str]] = defaultdict(list)
            for path in self.texts:
                if self._readable_text(path):
                    for w in self.words(path):
                        index[w].append(path)
            self._text_words = index
        return self._text_words.get(word, [])

    def _readable_text(self, path: str) -> bool:
        data = self.read(path)
        return data is not None and len(data) <= _MAX_TEXT_BYTES and b"\0" not in data[:8192]

    def text_tokens(self, path: str) -> tuple[dict[str, int], dict[str, int]]:
        """A text file's dotted tokens (``pkg.mod:f``) and words, each with the line it first appears on."""
        found = self._tokens.get(path)
        if found is None:
            data = self.read(path) or b""
            text = _nfkc(data.decode("utf-8", "replace"))
            tokens: dict[str, int] = {}
            words: dict[str, int] = {}
            for number, line in enumerate(text.splitlines(), 1):
                for token in _TOKEN.findall(line):
                    tokens.setdefault(token.strip(".:"), number)
                    for word in _WORD.findall(token):
                        words.setdefault(word, number)
            found = self._tokens[path] = (tokens, words)
        return found

    def file(self, path: str) -> ScannedFile | None:
        """The parsed file, or None (and a failure) when it cannot be parsed."""
        scanned = self.scanned.get(path)
        if scanned is not None or path in self.failures:
            return scanned
        data = self.read(path)
        if data is None:
            return None
        try:
            tree = ast.parse(data, filename=path)
        except SyntaxError as exc:
            self.failures[path] = FileFailure(path, exc.lineno or 1, f"syntax error ({exc.msg})")
            return None
        except (UnicodeDecodeError, LookupError, ValueError, RecursionError, MemoryError) as exc:
            self.failures[path] = FileFailure(path, 1, f"cannot parse the file ({exc})")
            return None
        prefixes = self.module_prefixes(path)
        scanned = self.scanned[path] = ScannedFile(
            path, data, module_for(path), tree=tree, package_name=self._root_package(path), aliases=prefixes[1:]
        )
        return scanned

    def scan(self, path: str, names: frozenset[str]) -> None:
        """Collect the occurrences of ``names`` in one file into the indexes."""
        scanned = self.file(path)
        if scanned is None:
            return
        for site in scanned.scan(names):
            self.by_name[site.name].append((scanned, site))
            if site.shape == "import":
                for fqn in site.fqns:
                    self.imports[fqn].append((scanned, site))

    def adopt(self, path: str, source: bytes, module: cst.Module) -> None:
        """Take a module LibCST already parsed as the file at ``path`` (for the codemod commands)."""
        if path not in self.paths:
            self.paths.append(path)
        self.sources[path] = source
        scanned = self.file(path)
        result = parse_cst(path, source, scanned.tree, module) if scanned and scanned.tree else None
        if isinstance(result, CstFile):
            self.cst_files[path] = result
        elif result is not None:
            self.failures[path] = FileFailure(path, *result)

    def cst(self, path: str) -> CstFile | None:
        """The file parsed with LibCST (only files that are edited), or None (and a failure)."""
        parsed = self.cst_files.get(path)
        if parsed is not None or path in self.failures:
            return parsed
        scanned = self.file(path)
        if scanned is None or scanned.tree is None:
            return None
        result = parse_cst(path, scanned.source, scanned.tree)
        if isinstance(result, tuple):
            self.failures[path] = FileFailure(path, *result)
            return None
        self.cst_files[path] = result
        return result

    def defining_files(self, key: str) -> list[str]:
        """The files whose module is a prefix of ``key`` (where its definition can be)."""
        parts = key.split(".")
        known = set(self.paths) if len(self.paths) < 64 else self._known()
        found: list[str] = []
        for i in range(len(parts) - 1, -1, -1):
            base = "/".join(parts[:i])
            candidates = [f"{base}.py", f"{base}/__init__.py", f"{base}.pyi", f"{base}.pyw"] if base else [
                "__init__.py"]
            found.extend(c for c in candidates if c in known)
        return found

    def _known(self) -> set[str]:
        known = getattr(self, "_known_paths", None)
        if known is None or len(known) != len(self.paths):
            known = self._known_paths = set(self.paths)
        return known


@dataclass
class Target:
    """One key being looked for: its definitions and every name it is known by."""

    key: str
    definitions: list[Definition]
    fqns: set[str]
    names: set[str]
    infos: list[_DefInfo] = field(default_factory=list)
    binder: _Binder | None = None

    @property
    def bare_name(self) -> str:
        """The function's own name (last part of the key)."""
        return self.key.rpartition(".")[2]

    @property
    def class_fqn(self) -> str | None:
        """For a method, the fully qualified name of its class."""
        qualname = self.definitions[0].qualname if self.definitions else ""
        owner, _, _ = qualname.rpartition(".")
        if not owner or owner.endswith("<locals>"):
            return None
        return self.key[: len(self.key) - len(qualname)] + owner


def locate(tree: Tree, keys: Iterable[str]) -> dict[str, Target]:
    """Each key's definitions (an empty list for a key defined nowhere)."""
    targets: dict[str, Target] = {}
    by_file: dict[str, dict[str, list[_DefInfo]]] = {}
    for key in keys:
        key = _nfkc(key)
        name = key.rpartition(".")[2]
        target = targets[key] = Target(key, [], {key}, {name})
        for path in tree.defining_files(key):
            if name not in tree.words(path):
                continue
            scanned = tree.file(path)
            if scanned is None:
                continue
            infos = by_file.get(path)
            if infos is None:
                infos = by_file[path] = defaultdict(list)
                for info in scanned.bind().infos:
                    infos[info.definition.key].append(info)
            found = infos.get(key, [])
            target.infos.extend(found)
            target.definitions.extend(i.definition for i in found)
            if found:
                target.binder = scanned.bind()
                qualname = found[0].definition.qualname
                target.fqns.update(prefix + qualname for prefix in tree.module_prefixes(path))
    return targets


def collect(tree: Tree, targets: dict[str, Target], tick: Callable[[], None] | None = None) -> None:
    """Scan every candidate file, following imports and re-exports until no new name appears.

    ``tick()`` is called once per file of the tree as the first round goes through it.
    """
    scanned_names: set[str] = set()
    expanded: dict[str, set[str]] = {key: set() for key in targets}
    while True:
        names = set().union(*(t.names for t in targets.values())) if targets else set()
        new_names = names - scanned_names
        if not new_names:
            return
        frozen = frozenset(new_names)
        candidates = set(tree.containing(new_names))
        for path in list(tree.paths):
            if path in candidates:
                tree.scan(path, frozen)
            if tick is not None and not scanned_names:
                tick()
        scanned_names = names
        for target in targets.values():
            _expand(tree, target, expanded[target.key])


def _expand(tree: Tree, target: Target, done: set[str]) -> None:
    """Add the names the target is bound to by imports (in any scope) and star imports of it."""
    work = [f for f in target.fqns if f not in done]
    while work:
        fqn = work.pop()
        if fqn in done:
            continue
        done.add(fqn)
        module, _, name = fqn.rpartition(".")
        for importer, imported in tree.star_imports():
            alias = f"{importer}.{name}" if importer else name
            if module == imported and alias not in target.fqns and tree.exported(imported, name):
                target.fqns.add(alias)
                work.append(alias)
        for _scanned, site in tree.imports.get(fqn, ()):
            # `from m import f as g` binds g in its scope: uses of g are uses of f.
            target.names.add(site.name)
            for alias in site.binds:
                if alias not in target.fqns:
                    target.fqns.add(alias)
                    work.append(alias)


@dataclass(frozen=True)
class Match:
    """A reference together with the site it was found at (None for one outside Python code)."""

    reference: Reference
    site: Site | None


def match(tree: Tree, target: Target) -> list[Match]:
    """Every finding for ``target``: sites that may refer to it, other files, and its definition's own rules."""
    matches: list[Match] = []
    class_fqn = target.class_fqn
    getattr_modules = tree.getattr_modules() if target.definitions else set()
    for name in sorted(target.names):
        for scanned, site in tree.by_name.get(name, ()):
            kind, certain = _classify(tree, site, target, scanned, class_fqn, getattr_modules)
            if kind is not None:
                ref = Reference(target.key, scanned.path, site.line, site.column, kind, certain)
                matches.append(Match(ref, site))
    matches.sort(key=lambda m: (m.reference.path, m.reference.line, m.reference.column))
    matches.extend(_text_findings(tree, target))
    from coldmod_codemod._conventions import definition_findings  # the rules about a definition itself

    matches.extend(Match(ref, None) for ref in definition_findings(tree, target))
    for path in sorted(tree.failures):
        data = tree.sources.get(path)
        if data is not None and target.names & tree.words(path) and path not in tree.texts:
            failure = tree.failures[path]
            matches.append(Match(Reference(target.key, path, failure.line, 0, UNPARSED, False), None))
    return matches


def spellings(target: Target) -> frozenset[str]:
    """How an entry point or dotted config names the target: ``pkg.mod.C.m`` and ``pkg.mod:C.m``, every spelling."""
    found = set(target.fqns)
    if target.definitions:
        qualname = target.definitions[0].qualname
        for fqn in target.fqns:
            if fqn.endswith("." + qualname):
                found.add(f"{fqn[: -len(qualname) - 1]}:{qualname}")
    return frozenset(found)


def _text_findings(tree: Tree, target: Target) -> Iterator[Match]:
    """Mentions in text files: the full path (``mod:f``, ``mod.C.m``) is an entry point, the bare name a review."""
    name = target.bare_name
    paths = tree.text_files_with(name)
    if not paths:
        return
    names = spellings(target)
    for path in paths:
        tokens, words = tree.text_tokens(path)
        line = min((tokens[s] for s in names if s in tokens), default=0)
        kind = ENTRY_POINT if line else TEXT
        line = line or words.get(name, 0)
        if line:
            yield Match(Reference(target.key, path, line, 0, kind, False), None)


def _classify(
    tree: Tree, site: Site, target: Target, scanned: ScannedFile, class_fqn: str | None, getattr_modules: set[str]
) -> tuple[str | None, bool]:
    """The kind of reference ``site`` is to ``target``, or None when it is not one."""
    resolved = bool(site.fqns & target.fqns)
    if site.shape == "import":
        if resolved:
            return IMPORT, True
        if site.unbound and site.imported == target.bare_name:
            return UNRESOLVED, False  # `from ...x import f` beyond the root: cannot be ruled out
        if site.imported == target.bare_name and any(
            f.rpartition(".")[0] in getattr_modules for f in site.fqns
        ) and not _defined(tree, site.fqns):
            return EXPORT, False
        return None, True
    if site.shape == "all":
        prefixes = (scanned.module_name + "." if scanned.module_name else "", *scanned.aliases)
        return (ALL, True) if any(p + site.name in target.fqns for p in prefixes) else (None, True)
    if site.shape == "string":
        return STRING, False
    if site.shape == "mention":
        if site.name != target.bare_name:
            return None, True
        return (ENTRY_POINT if site.fqns & spellings(target) else MENTION), False
    if resolved:
        return (METHOD if class_fqn else CALL if site.call else NAME), True
    if site.shape == "name":
        return (NAME, False) if site.unbound else (None, True)
    if class_fqn is not None and site.self_class == class_fqn and site.name == target.bare_name:
        return METHOD, True
    return ATTRIBUTE, False


def _defined(tree: Tree, fqns: Iterable[str]) -> bool:
    """Whether one of ``fqns`` names something a module in the tree binds itself."""
    for fqn in fqns:
        module, _, name = fqn.rpartition(".")
        for path in tree.modules().get(module, ()):
            scanned = tree.file(path)
            if scanned is not None and name in scanned.bind().root.bindings:
                return True
    return False


def inside(definitions: Iterable[Definition], ref: Reference) -> bool:
    """Whether the reference lies within one of the definitions (decorators included)."""
    rule = RULES.get(ref.kind)
    if ref.kind == IMPLICIT or (rule is not None and rule.own):
        return False  # reported at the definition, but about every caller
    return any(d.path == ref.path and d.start_line <= ref.line <= d.end_line for d in definitions)


def within(found: Match, removed: set[tuple[str, int]]) -> bool:
    """Whether the finding lies inside one of the ``(path, def line)`` definitions being removed."""
    site = found.site
    if site is None or not site.enclosing:
        return False
    path = found.reference.path
    return any((path, line) in removed for line in site.enclosing)


def find_references(
    root: str | os.PathLike[str], key: str, *, files: Iterable[str] | None = None
) -> list[Reference]:
    """Every site under ``root`` that may refer to the function ``key``, outside its own definitions.

    Files that mention the name but cannot be parsed are reported as
    references of kind ``unparsed``; the rules about the definition itself
    (decorators, dispatch by name) are verdicts, not references, and are left out.
    """
    tree = Tree(root, files)
    targets = locate(tree, [key])
    collect(tree, targets)
    target = targets[_nfkc(key)]
    own = {(d.path, d.line) for d in target.definitions}
    return [
        m.reference for m in match(tree, target)
        if not within(m, own) and not RULES[m.reference.kind].own
    ]

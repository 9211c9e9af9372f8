"""Where a function may be referred to: imports, uses, ``__all__``, attributes, strings.

Speed decides the design. Parsing every file is what makes naive tools slow,
so the tree is first searched as bytes for the function's bare name (and the
names it is re-exported as); only files containing one as a whole word are
parsed. Those are parsed with the standard library's ``ast`` (C, ~100x faster
than LibCST's parser) and names are resolved by a scope pass that follows the
rules of LibCST's ``QualifiedNameProvider``: the fully qualified name of a
binding is ``<module>.<qualname>``, imports resolve to what they import,
relative imports against the file's package. LibCST's own scope metadata costs
about a millisecond per line, so LibCST parses only the files that are edited
(see ``_cstfile``); the tests check that both resolve names alike.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst

from coldmod_codemod._cstfile import CstFile, parse_cst
from coldmod_codemod._discovery import iter_python_files, module_for
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
#: Kinds that removal deals with by itself (see ``_rules.RULES``).
REMOVABLE_KINDS = frozenset(rule.name for rule in RULES.values() if rule.removable)

# A string counts as naming the function only if it looks like a dotted or
# colon-separated path (``f``, ``pkg.mod.f``, ``pkg.mod:f``), not prose.
_PATH_STRING = re.compile(r"[A-Za-z_]\w*(?:[.:][A-Za-z_]\w*)*")


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

    def bind(self, name: str, fqn: str | None = None) -> None:
        """Record that ``name`` is bound here (to ``fqn``, by default a local of this scope)."""
        target = self
        if name in self.declared_global:
            while target.parent is not None:
                target = target.parent
        elif name in self.declared_nonlocal:
            target = _enclosing_binder(self, name) or self
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
                return scope.bindings[name]
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


_SCOPE_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda,
                ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


class _Binder(ast.NodeVisitor):
    """First pass: every scope of a module and the names each one binds."""

    def __init__(self, path: str, module: str, package: str) -> None:
        self.path = path
        self.package = package
        self.root = _Scope("module", f"{module}." if module else "", None)
        self.scope = self.root
        self.scopes: dict[int, _Scope] = {}
        self.definitions: list[Definition] = []

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
        self.definitions.append(
            Definition(fqn, qualname, self.path, node.lineno, start, node.end_lineno or node.lineno)
        )
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
                continue
            if module is not None:
                self.scope.bind(alias.asname or alias.name, f"{module}.{alias.name}")
            else:
                self.scope.bind(alias.asname or alias.name)

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


_STAR_IMPORT = re.compile(rb"^[ \t]*from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t(]*\*", re.MULTILINE)
#: Files outside Python that name functions: entry points (``pkg.cli:main``).
CONFIG_FILES = ("pyproject.toml", "setup.cfg")


# -- sites ----------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """An occurrence of a searched name in one file, before matching against keys."""

    shape: str  # "name", "attribute", "import", "all" or "string"
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


class _Finder(ast.NodeVisitor):
    """Second pass: the occurrences of ``names``, resolved with the binder's scopes."""

    def __init__(self, binder: _Binder, names: frozenset[str], package: str) -> None:
        self.binder = binder
        self.names = names
        self.package = package
        self.scope = binder.root
        self.sites: list[Site] = []
        self._statement = 0
        self._callees: set[int] = set()
        self._skip: set[int] = set()

    def _add(self, shape: str, name: str, node: ast.expr | ast.alias, **extra: object) -> None:
        site = Site(shape, name, node.lineno, node.col_offset, self._statement, node_id=id(node), **extra)  # type: ignore[arg-type]
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
        if isinstance(node, ast.ClassDef):
            outside: list[ast.expr | None] = [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]
            inside: list[ast.AST] = list(node.body)
        elif isinstance(node, ast.Lambda):
            outside, inside = list(_defaults(node.args)), [node.body]
        else:
            outside = [*node.decorator_list, *_defaults(node.args), node.returns, *_annotations(node.args)]
            inside = list(node.body)
        for expr in outside:
            if expr is not None:
                self.visit(expr)
        outer, self.scope = self.scope, scope
        for child in inside:
            self.visit(child)
        self.scope = outer

    def visit_Call(self, node: ast.Call) -> None:
        self._callees.add(id(node.func))
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in self.names and isinstance(node.ctx, (ast.Load, ast.Del)):
            fqns = self.scope.resolve(node.id)
            self._add("name", node.id, node, fqns=frozenset(fqns or ()), call=id(node) in self._callees,
                      unbound=fqns is None)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in self.names:
            fqns, self_class = self._attribute(node)
            self._add("attribute", node.attr, node, fqns=fqns, call=id(node) in self._callees,
                      self_class=self_class)
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
        if module is None:
            return
        for alias in node.names:
            bound = alias.asname or alias.name
            if alias.name in self.names or bound in self.names:
                self._add("import", bound, alias, fqns=frozenset({f"{module}.{alias.name}"}),
                          module_level=self.scope is self.binder.root)

    def _all(self, targets: list[ast.expr], value: ast.expr | None) -> bool:
        if self.scope is not self.binder.root:
            return False
        if not any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return False
        if isinstance(value, (ast.List, ast.Tuple)):
            for element in value.elts:
                if isinstance(element, ast.Constant) and isinstance(element.value, str):
                    self._skip.add(id(element))
                    if element.value in self.names:
                        self._add("all", element.value, element, module_level=True)
        return True

    def visit_Assign(self, node: ast.Assign) -> None:
        self._all(node.targets, node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._all([node.target], node.value)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._all([node.target], node.value)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        text = node.value
        if not isinstance(text, str) or id(node) in self._skip or not any(n in text for n in self.names):
            return
        text = text.strip()
        if _PATH_STRING.fullmatch(text):
            for part in re.split(r"[.:]", text):
                if part in self.names:
                    self._add("string", part, node)


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

    @property
    def package(self) -> str:
        """The package relative imports in this file are resolved against."""
        return self.module_name if self.path.endswith("__init__.py") else self.module_name.rpartition(".")[0]

    def bind(self) -> _Binder:
        """The file's scopes and definitions (computed once)."""
        if self.binder is None:
            assert self.tree is not None
            self.binder = _Binder(self.path, self.module_name, self.package)
            self.binder.visit(self.tree)
        return self.binder

    def scan(self, names: frozenset[str]) -> None:
        """(Re)collect the occurrences of ``names``."""
        if names == self.names:
            return
        binder = self.bind()
        finder = _Finder(binder, names, self.package)
        assert self.tree is not None  # bind() needs it too
        finder.visit(self.tree)
        self.names, self.sites = names, finder.sites


class Tree:
    """The files under a root, read once; parsed lazily, only where a name occurs."""

    def __init__(self, root: str | os.PathLike[str], files: Iterable[str] | None = None) -> None:
        self.root = Path(root)
        paths = iter_python_files(self.root) if files is None else files
        self.paths = [p.replace(os.sep, "/") for p in paths]
        self.sources: dict[str, bytes] = {}
        self.scanned: dict[str, ScannedFile] = {}
        self.cst_files: dict[str, CstFile] = {}
        self.failures: dict[str, FileFailure] = {}
        self._stars: list[tuple[str, str]] | None = None

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None (and a failure) when it cannot be read."""
        data = self.sources.get(path)
        if data is None and path not in self.failures:
            try:
                data = self.sources[path] = (self.root / path).read_bytes()
            except OSError as exc:
                self.failures[path] = FileFailure(path, 1, f"cannot read the file ({exc.strerror or exc})")
        return data

    def containing(self, names: Iterable[str]) -> Iterator[str]:
        """Paths whose bytes contain one of ``names`` as a whole word (the cheap prefilter)."""
        needles = [(n.encode(), re.compile(rb"(?<!\w)" + re.escape(n.encode()) + rb"(?!\w)")) for n in names]
        for path in self.paths:
            data = self.read(path)
            if data is not None and any(b in data and rx.search(data) for b, rx in needles):
                yield path

    def star_imports(self) -> list[tuple[str, str]]:
        """``(importing module, imported module)`` for every ``from m import *`` in the tree."""
        if self._stars is None:
            self._stars = []
            for path in self.paths:
                data = self.read(path)
                if data is None or b"*" not in data:
                    continue
                module = module_for(path)
                package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
                for found in _STAR_IMPORT.finditer(data):
                    dots, name = found.group(1).decode(), found.group(2).decode("ascii", "replace")
                    imported = _absolute_module(len(dots), name or None, package)
                    if imported:
                        self._stars.append((module, imported))
        return self._stars

    def config_mentions(self, name: str) -> Iterator[tuple[str, int]]:
        """``(file, line)`` of entry-point-like mentions (``mod:name``, ``mod.name``) in the root's config files."""
        pattern = re.compile(rb"(?<![\w.:])[A-Za-z_][\w.]*[.:]" + re.escape(name.encode()) + rb"(?!\w)")
        for config in CONFIG_FILES:
            try:
                data = (self.root / config).read_bytes()
            except OSError:
                continue
            for found in pattern.finditer(data):
                yield config, data.count(b"\n", 0, found.start()) + 1

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
        scanned = self.scanned[path] = ScannedFile(path, data, module_for(path), tree=tree)
        return scanned

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
        known = set(self.paths)
        found: list[str] = []
        for i in range(len(parts) - 1, -1, -1):
            base = "/".join(parts[:i])
            candidates = [f"{base}.py", f"{base}/__init__.py"] if base else ["__init__.py"]
            found.extend(c for c in candidates if c in known)
        return found


@dataclass
class Target:
    """One key being looked for: its definitions and every name it is known by."""

    key: str
    definitions: list[Definition]
    fqns: set[str]
    names: set[str]

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
    for key in keys:
        definitions: list[Definition] = []
        for path in tree.defining_files(key):
            if _words(tree.read(path) or b"", [key.rpartition(".")[2]]):
                scanned = tree.file(path)
                if scanned is not None:
                    definitions.extend(d for d in scanned.bind().definitions if d.key == key)
        targets[key] = Target(key, definitions, {key}, {key.rpartition(".")[2]})
    return targets


def collect(tree: Tree, targets: dict[str, Target]) -> None:
    """Scan every candidate file, following re-exports until no new name appears."""
    scanned_names: set[str] = set()
    while True:
        names = set().union(*(t.names for t in targets.values())) if targets else set()
        new_names = names - scanned_names
        if not new_names:
            return
        frozen = frozenset(names)
        for path in tree.containing(new_names):
            scanned = tree.file(path)
            if scanned is not None:
                scanned.scan(frozen)
        for scanned in tree.scanned.values():
            if scanned.names and scanned.names != frozen and _words(scanned.source, new_names):
                scanned.scan(frozen)
        scanned_names = names
        # A module-level import binds the function in the importing module too:
        # `from pkg.mod import f` in pkg/__init__.py makes `pkg.f` another name
        # for it, and so does `from pkg.mod import *` (same name, no new file to scan).
        grew = True
        while grew:
            grew = False
            for target in targets.values():
                for importer, imported in tree.star_imports():
                    for fqn in list(target.fqns):
                        module, _, name = fqn.rpartition(".")
                        alias = f"{importer}.{name}" if importer else name
                        if module == imported and not name.startswith("_") and alias not in target.fqns:
                            target.fqns.add(alias)
                            grew = True
                for scanned in tree.scanned.values():
                    for site in scanned.sites:
                        if site.shape == "import" and site.module_level and site.fqns & target.fqns:
                            prefix = f"{scanned.module_name}." if scanned.module_name else ""
                            if prefix + site.name not in target.fqns:
                                target.fqns.add(prefix + site.name)
                                target.names.add(site.name)
                                grew = True


def _words(data: bytes, names: Iterable[str]) -> set[str]:
    return {n for n in names if n.encode() in data}


@dataclass(frozen=True)
class Match:
    """A reference together with the site it was found at (None for an unparsed file)."""

    reference: Reference
    site: Site | None


def match(tree: Tree, target: Target) -> list[Match]:
    """Every site in the scanned files that may refer to ``target``, in path/line order."""
    matches: list[Match] = []
    class_fqn = target.class_fqn
    for path in sorted(tree.scanned):
        scanned = tree.scanned[path]
        prefix = f"{scanned.module_name}." if scanned.module_name else ""
        for site in scanned.sites:
            if site.name in target.names:
                kind, certain = _classify(site, target, prefix, class_fqn)
                if kind is not None:
                    matches.append(Match(Reference(target.key, path, site.line, site.column, kind, certain), site))
    name = target.bare_name
    for config, line in tree.config_mentions(name):
        matches.append(Match(Reference(target.key, config, line, 0, STRING, False), None))
    if len(name) > 4 and name.startswith("__") and name.endswith("__"):
        for d in target.definitions[:1]:
            matches.append(Match(Reference(target.key, d.path, d.line, 0, IMPLICIT, False), None))
    for path in sorted(tree.failures):
        data = tree.sources.get(path)
        if data is not None and _words(data, target.names):
            failure = tree.failures[path]
            matches.append(Match(Reference(target.key, path, failure.line, 0, UNPARSED, False), None))
    return matches


def _classify(site: Site, target: Target, module_prefix: str, class_fqn: str | None) -> tuple[str | None, bool]:
    """The kind of reference ``site`` is to ``target``, or None when it is not one."""
    resolved = bool(site.fqns & target.fqns)
    if site.shape == "import":
        return (IMPORT, True) if resolved else (None, True)
    if site.shape == "all":
        return (ALL, True) if module_prefix + site.name in target.fqns else (None, True)
    if site.shape == "string":
        return STRING, False
    if resolved:
        return (METHOD if class_fqn else CALL if site.call else NAME), True
    if site.shape == "name":
        return (NAME, False) if site.unbound else (None, True)
    if class_fqn is not None and site.self_class == class_fqn and site.name == target.bare_name:
        return METHOD, True
    return ATTRIBUTE, False


def inside(definitions: Iterable[Definition], ref: Reference) -> bool:
    """Whether the reference lies within one of the definitions (decorators included)."""
    if ref.kind == IMPLICIT:
        return False  # reported at the definition, but it is about every caller
    return any(d.path == ref.path and d.start_line <= ref.line <= d.end_line for d in definitions)


def find_references(
    root: str | os.PathLike[str], key: str, *, files: Iterable[str] | None = None
) -> list[Reference]:
    """Every site under ``root`` that may refer to the function ``key``, outside its own definitions.

    Files that mention the name but cannot be parsed are reported as
    references of kind ``unparsed``.
    """
    tree = Tree(root, files)
    targets = locate(tree, [key])
    collect(tree, targets)
    target = targets[key]
    return [
        m.reference for m in match(tree, target)
        if not inside(target.definitions, m.reference)
    ]

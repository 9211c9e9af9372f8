"""Name resolution: every scope of a module, what each binds, and the definitions in it.

The first pass over a parsed file. It follows the rules of LibCST's
``QualifiedNameProvider`` (which LibCST keeps in ``metadata/scope_provider.py``
apart from what uses it, as this module is kept apart from the finders): the
fully qualified name of a binding is ``<module>.<qualname>``, imports resolve to
what they import, relative imports against the file's package, ``global`` and
``nonlocal`` move a binding, a class body's names are not visible inside its
methods. Nothing here knows about the tree or about the keys being searched.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = [
    "Binder",
    "DefInfo",
    "Definition",
    "Scope",
    "absolute",
    "absolute_module",
    "annotation_exprs",
    "default_exprs",
    "dotted",
]


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


@dataclass(eq=False)
class Scope:
    kind: str  # "module", "function", "class" or "other" (lambda, comprehension)
    prefix: str  # fully qualified prefix of what it binds: "m.", "m.f.<locals>.", "m.C."
    parent: Scope | None
    bindings: dict[str, set[str]] = field(default_factory=dict)  # name -> fully qualified names
    declared_global: set[str] = field(default_factory=set)
    declared_nonlocal: set[str] = field(default_factory=set)
    self_name: str | None = None  # first parameter of a method
    owner_class: str | None = None  # for a method: its class's fully qualified name

    def binder_of(self, name: str) -> Scope:
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
        scope: Scope | None = self
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


def _enclosing_binder(scope: Scope, name: str) -> Scope | None:
    parent = scope.parent
    while parent is not None and parent.kind != "module":
        if parent.kind == "function" and name in parent.bindings:
            return parent
        parent = parent.parent
    return None


@dataclass
class DefInfo:
    """What the verdict rules need about one definition besides its span."""

    definition: Definition
    scope: Scope  # the scope the `def` statement is in
    decorators: list[ast.expr]
    owner: str | None  # the class's fully qualified name, for a method


class Binder(ast.NodeVisitor):
    """First pass: every scope of a module and the names each one binds."""

    def __init__(self, path: str, module: str, package: str) -> None:
        self.path = path
        self.package = package
        self.root = Scope("module", f"{module}." if module else "", None)
        self.scope = self.root
        self.scopes: dict[int, Scope] = {}
        self.definitions: list[Definition] = []
        self.infos: list[DefInfo] = []
        self.classes: dict[str, tuple[list[ast.expr], Scope, Scope]] = {}  # fqn -> (bases, outer, body scope)
        self.dynamic: int = 0  # line of the first dynamic name lookup (getattr, globals()), 0 if none
        self.stars: list[tuple[str | None, str]] = []  # (imported module or None, the name in the import)
        self.exports: list[str] | None = None  # a static module-level __all__
        self.module_getattr = False  # PEP 562

    def _enter(self, node: ast.AST, kind: str, prefix: str) -> Scope:
        scope = self.scopes[id(node)] = Scope(kind, prefix, self.scope)
        self.scope = scope
        return scope

    def _leave(self, scope: Scope) -> None:
        assert scope.parent is not None
        self.scope = scope.parent

    def _declarations(self, body: list[ast.stmt], scope: Scope) -> None:
        for node in _statements(body):
            if isinstance(node, ast.Global):
                scope.declared_global.update(node.names)
            elif isinstance(node, ast.Nonlocal):
                scope.declared_nonlocal.update(node.names)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        outer = self.scope
        for expr in (*node.decorator_list, *default_exprs(node.args), node.returns, *annotation_exprs(node.args)):
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
        self.infos.append(DefInfo(definition, outer, list(node.decorator_list), owner))
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
        for expr in default_exprs(node.args):
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
        module = absolute(node, self.package)
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


def default_exprs(args: ast.arguments) -> list[ast.expr]:
    return [*args.defaults, *(d for d in args.kw_defaults if d is not None)]


def annotation_exprs(args: ast.arguments) -> list[ast.expr]:
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


def absolute(node: ast.ImportFrom, package: str) -> str | None:
    """The absolute module a ``from`` import reads from, as ``importlib`` resolves it."""
    return absolute_module(node.level, node.module, package)


def absolute_module(level: int, module: str | None, package: str) -> str | None:
    if not level:
        return module
    parts = package.split(".") if package else []
    if level - 1 > len(parts) or not parts:
        return None
    base = parts[: len(parts) - (level - 1)]
    if module:
        base.append(module)
    return ".".join(base) or None


def dotted(expr: ast.expr, scope: Scope) -> set[str]:
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

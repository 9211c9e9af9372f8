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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Binder",
    "ClassRecord",
    "DefInfo",
    "Definition",
    "Lookup",
    "Scope",
    "Value",
    "Visitor",
    "absolute",
    "absolute_module",
    "annotation_exprs",
    "default_exprs",
    "dotted",
]


class Visitor(ast.NodeVisitor):
    """``ast.NodeVisitor`` with the same contract, faster: each node class's method is looked up once.

    The reference scan visits every node of every file twice (scopes, then sites): the standard
    visitor's string building and ``getattr`` per node, and its generator over the fields, were a
    fifth of planning a large tree.
    """

    _node_methods: dict[type, Callable[[Any, Any], Any] | None]  # per subclass: node class -> its visit_ method

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._node_methods = {}

    def visit(self, node: ast.AST) -> Any:
        kind = node.__class__
        methods = type(self)._node_methods
        if kind in methods:
            method = methods[kind]
        else:
            method = methods[kind] = getattr(type(self), "visit_" + kind.__name__, None)
        if method is None:
            return self.generic_visit(node)
        return method(self, node)

    def generic_visit(self, node: ast.AST) -> None:
        visit, node_type = self.visit, ast.AST
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, node_type):
                        visit(item)
            elif isinstance(value, node_type):
                visit(value)


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


@dataclass(frozen=True, eq=False)
class Value:
    """What one binding of a name gives it, as far as the receiver table reads it (see ``_receivers``).

    ``how`` is ``"value"`` (``x = expr``, ``x := expr``: ``expr`` evaluated in
    ``scope``), ``"annotation"`` (a parameter or ``x: T``: ``expr`` is ``T``),
    ``"self"``/``"cls"`` (a method's first parameter), ``"name"`` (an import, a
    ``def`` or ``class``: the binding's qualified names say what it is) or
    ``"unknown"`` (a loop target, ``with ... as``, unpacking, ``except``...).
    """

    how: str
    expr: ast.expr | None = None
    scope: Scope | None = None


UNKNOWN = Value("unknown")
NAMED = Value("name")


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
    values: dict[str, list[Value]] = field(default_factory=dict)  # name -> what each binding gives it

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

    def bind(self, name: str, fqn: str | None = None, value: Value = UNKNOWN) -> None:
        """Record that ``name`` is bound here (to ``fqn``, by default a local of this scope), giving it ``value``."""
        target = self.binder_of(name)
        target.bindings.setdefault(name, set()).add(fqn or target.prefix + name)
        target.values.setdefault(name, []).append(value)

    def binding_scope(self, name: str) -> Scope | None:
        """The scope whose binding ``name`` reads here; None when unbound or ambiguous (a class body's fallback)."""
        current: Scope | None = self
        if name in self.declared_global:
            while current is not None and current.parent is not None:
                current = current.parent
        first = True
        while current is not None:
            if (first or current.kind != "class") and name in current.bindings:
                return None if current.kind == "class" and current.parent is not None else current
            first = False
            current = current.parent
        return None

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
    returns: ast.expr | None = None  # the return annotation


@dataclass(frozen=True, eq=False)
class ClassRecord:
    """One ``class`` statement: its bases and keywords (read in ``outer``) and its body's scope."""

    bases: list[ast.expr]
    keywords: list[ast.keyword]
    outer: Scope
    body: Scope


@dataclass(frozen=True, eq=False)
class Lookup:
    """``getattr(obj, <computed>)`` (or hasattr/setattr/delattr): which names it can produce, on what.

    ``prefix``/``suffix`` are the constant parts of the name (``f"do_{x}"``,
    ``"visit_" + x``); ``names`` a known set (the HTTP verbs of
    ``request.method.lower()``), None when any name with that prefix and suffix.
    """

    line: int
    receiver: ast.expr
    scope: Scope
    prefix: str = ""
    suffix: str = ""
    names: frozenset[str] | None = None

    def produces(self, name: str) -> bool:
        """Whether the lookup can produce ``name``."""
        if self.names is not None and name not in self.names:
            return False
        fixed = len(self.prefix) + len(self.suffix)
        return name.startswith(self.prefix) and name.endswith(self.suffix) and len(name) >= fixed


class Binder(Visitor):
    """First pass: every scope of a module and the names each one binds."""

    def __init__(self, path: str, module: str, package: str) -> None:
        self.path = path
        self.package = package
        self.root = Scope("module", f"{module}." if module else "", None)
        self.scope = self.root
        self.scopes: dict[int, Scope] = {}
        self.definitions: list[Definition] = []
        self.infos: list[DefInfo] = []
        self.classes: dict[str, ClassRecord] = {}  # fqn -> its class statement
        self.dynamic: int = 0  # line of the first lookup that reaches any name (globals(), vars()), 0 if none
        self.lookups: list[Lookup] = []  # getattr with a computed name, narrowed to what it can produce
        self._valued: set[int] = set()  # Name targets whose Value is recorded by their statement
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
        outer.bind(node.name, None, NAMED)
        # CPython names a definition declared `global` by its bare name (compile.c, compiler_set_qualname).
        fqn = (self.root.prefix if node.name in outer.declared_global else outer.prefix) + node.name
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        qualname = fqn[len(self.root.prefix):]
        definition = Definition(fqn, qualname, self.path, node.lineno, start, node.end_lineno or node.lineno)
        self.definitions.append(definition)
        owner = outer.prefix[:-1] if outer.kind == "class" else None
        self.infos.append(DefInfo(definition, outer, list(node.decorator_list), owner, node.returns))
        if outer is self.root and node.name == "__getattr__":
            self.module_getattr = True
        scope = self._enter(node, "function", fqn + ".<locals>.")
        self._declarations(node.body, scope)
        params = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        first = _first_parameter(node, outer) if params else None
        for arg in params:
            if arg is params[0] and first is not None:
                scope.bind(arg.arg, None, first)
            elif arg.annotation is not None:
                scope.bind(arg.arg, None, Value("annotation", arg.annotation, outer))
            else:
                scope.bind(arg.arg)
        for rest in (node.args.vararg, node.args.kwarg):
            if rest is not None:
                scope.bind(rest.arg)
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
        outer.bind(node.name, None, NAMED)
        prefix = (self.root.prefix if node.name in outer.declared_global else outer.prefix) + node.name + "."
        scope = self._enter(node, "class", prefix)
        self.classes[prefix[:-1]] = ClassRecord(list(node.bases), list(node.keywords), outer, scope)
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
            if id(node) not in self._valued:
                self.scope.bind(node.id)
        elif node.id in _DYNAMIC_CALLS and not self.dynamic:
            self.dynamic = node.lineno

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (
            isinstance(func, ast.Name)
            and func.id in LOOKUP_CALLS
            and len(node.args) >= 2
            and not isinstance(node.args[1], ast.Constant)
        ):
            self._lookup(node.lineno, node.args[0], node.args[1])
        self.generic_visit(node)

    def _lookup(self, line: int, receiver: ast.expr, name: ast.expr) -> None:
        """Record a getattr whose name is computed: narrowed when its shape says what it can produce."""
        shape = computed_name(name)
        self.lookups.append(Lookup(line, receiver, self.scope, *shape))

    def visit_Assign(self, node: ast.Assign) -> None:
        if self.scope is self.root and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            self._exports(node.value)
        for target in node.targets:
            if isinstance(target, ast.Name):
                self._valued.add(id(target))
                self.scope.bind(target.id, None, Value("value", node.value, self.scope))
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr == "__dict__" and not self.dynamic:
            self.dynamic = node.lineno
        self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        scope = self.scope
        while scope.kind == "other" and scope.parent is not None:
            scope = scope.parent  # `:=` in a comprehension binds in the enclosing scope
        scope.bind(node.target.id, None, Value("value", node.value, self.scope))
        self.visit(node.value)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.scope.bind(alias.asname, alias.name, NAMED)
            else:
                top = alias.name.partition(".")[0]
                self.scope.bind(top, top, NAMED)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = absolute(node, self.package)
        for alias in node.names:
            if alias.name == "*":
                if self.scope is self.root:
                    self.stars.append((module, alias.name))
                continue
            if module is not None:
                self.scope.bind(alias.asname or alias.name, f"{module}.{alias.name}", NAMED)
            else:
                self.scope.bind(alias.asname or alias.name)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if self.scope is self.root and isinstance(node.target, ast.Name) and node.target.id == "__all__":
            self._exports(node.value)
        if isinstance(node.target, ast.Name):
            self._valued.add(id(node.target))
            self.scope.bind(node.target.id, None, Value("annotation", node.annotation, self.scope))
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
#: The builtins that turn a string into an attribute of their first argument.
LOOKUP_CALLS = frozenset({"getattr", "hasattr", "setattr", "delattr"})
#: What ``request.method.lower()`` can be: the HTTP verbs (class-based views dispatch by them).
HTTP_VERBS = frozenset({"get", "post", "put", "patch", "delete", "head", "options", "trace", "connect"})


def computed_name(name: ast.expr) -> tuple[str, str, frozenset[str] | None]:
    """``(prefix, suffix, names)`` a computed attribute name can produce; ``("", "", None)``: any name."""
    if isinstance(name, ast.JoinedStr) and name.values:
        first, last = name.values[0], name.values[-1]
        prefix = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else ""
        suffix = last.value if isinstance(last, ast.Constant) and isinstance(last.value, str) else ""
        return prefix, suffix if last is not first else "", None
    if isinstance(name, ast.BinOp) and isinstance(name.op, ast.Add):
        left, right = name.left, name.right
        prefix = left.value if isinstance(left, ast.Constant) and isinstance(left.value, str) else ""
        suffix = right.value if isinstance(right, ast.Constant) and isinstance(right.value, str) else ""
        return prefix, suffix, None
    if (
        isinstance(name, ast.Call)
        and isinstance(name.func, ast.Attribute)
        and name.func.attr == "lower"
        and isinstance(name.func.value, ast.Attribute)
        and name.func.value.attr == "method"
    ):
        return "", "", HTTP_VERBS  # request.method.lower()
    return "", "", None


def _first_parameter(node: ast.FunctionDef | ast.AsyncFunctionDef, outer: Scope) -> Value | None:
    """What a method's first parameter is: its instance (``self``), its class (``cls``), or None (a staticmethod)."""
    if outer.kind != "class":
        return None
    names = {n for d in node.decorator_list for n in dotted(d, outer)}
    if names & {"staticmethod", "builtins.staticmethod"}:
        return None
    if names & {"classmethod", "builtins.classmethod"} or node.name in ("__new__", "__init_subclass__",
                                                                        "__class_getitem__"):
        return Value("cls", None, outer)
    return Value("self", None, outer)


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

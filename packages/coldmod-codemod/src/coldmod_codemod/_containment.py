"""Classes whose instances never escape: an unknown receiver cannot hold one of them.

``x.get(...)`` with ``x`` unknown (``request.args``, ``session``, what a
framework call returns) is still a reference to ``C.get`` — unless no
instance of ``C``, and not ``C`` itself, can ever get into ``x``. That holds
when every place the program can make or hand on an instance of ``C`` is
one the tree can follow to its end: the instance is made and only its
attributes are read (``C().label()``, ``spool = C(); spool.label()``), its
methods' ``self`` is only a receiver, and the class's name is only called,
tested (``isinstance``) or inherited from. Such a class is *contained*;
the expressions that may hold its instances are its *channels*, and an
unknown receiver reaches its methods only when it is one of them.

``CONTAINMENT`` lists every use a contained class may have; any other use,
anywhere in the tree, lets the class (and every base it inherits methods
through, since the check covers its whole family) escape, which keeps
today's rule: an unknown receiver may be anything. The family is the class
and its subclasses in the tree (an instance of a subclass is an instance of
the class); their in-tree bases' methods are checked too (their ``self``
may be an instance of the class).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from coldmod_codemod._classes import PARSE_BUDGET, class_file, class_record, descendants, identify, lineage
from coldmod_codemod._rules import MENTION, STRING, TEMPLATE, TEXT
from coldmod_codemod._scopes import LOOKUP_CALLS, Binder, Scope, absolute, annotation_exprs, default_exprs, dotted
from coldmod_codemod._sites import WORD, nfkc
from coldmod_codemod._tree import ScannedFile, Tree

__all__ = ["CONTAINMENT", "STRINGS", "Containment", "by_name_only", "contained", "may_hold"]


@dataclass(frozen=True)
class Row:
    """One row of the containment table: a use of a class or of its instances, and whether it keeps it contained."""

    name: str
    written: str
    keeps: bool


# fmt: off
#: Every use a contained class may have (keeps=True), and the uses named on purpose that make it escape. A use
#: not in the table escapes too ("other use"): read top to bottom.
CONTAINMENT: tuple[Row, ...] = (
    Row("receiver",       "C(...).attr, cls(...).attr, x.attr, self.attr (attr not a dunder)",             True),
    Row("bound",          "x = C(...) in a function or at module level: every load of x is one of these", True),
    Row("discarded",      "C(...) as a statement of its own",                                              True),
    Row("class attribute", "C.attr, cls.attr (attr not a dunder); C.attr() may return cls(...): followed", True),
    Row("type test",      "isinstance(x, C), issubclass(x, (A, C)), except C",                             True),
    Row("annotation",     "x: C, def f(c: 'C') -> C",                                                      True),
    Row("subclass",       "class D(C): D is in the family, checked by the same rows",                      True),
    Row("import",         "from m import C (its loads follow these rows), import m; m.C(...)",             True),
    Row("super",          "super() in a method of the family: a channel (it is self)",                    True),
    Row("external base",  "a base, anywhere above, that is not the tree's own class or object",            False),
    Row("class hook",     "a class decorator or keyword (metaclass=), __init_subclass__, __new__, "
                          "descriptor or pickling hooks, in the family or its bases",                       False),
    Row("class body",     "a class body statement other than a def, a docstring or a constant attribute", False),
    Row("method wrapper", "a method decorator other than staticmethod, classmethod, property",            False),
    Row("dunder",         "x.__class__, C.__new__, self.__dict__...: the object itself by another door",   False),
    Row("rebound",        "x = C() where x is global, nonlocal, a class attribute or a walrus",            False),
    Row("alias",          "from m import C as D, D = C",                                                   False),
    Row("by name",        "a string or a configuration file naming the class or its instance's name, "
                          "globals()/vars()/locals() in a file using either, __subclasses__ anywhere",      False),
    Row("exported",       "a module-level instance's name in another Python file or in __all__",           False),
    Row("unknown",        "a subclass search over budget, a name bound nowhere (a star import)",           False),
    Row("other use",      "argument, return, yield, await, with, for, stored, in a container, compared, "
                          "indexed, called (__call__), formatted...",                                       False),
)
# fmt: on
_ROWS = {row.name: row for row in CONTAINMENT}

#: Method decorators that neither wrap ``self`` nor hand it on.
PLAIN_DECORATORS = frozenset({
    "staticmethod", "classmethod", "property", "builtins.staticmethod", "builtins.classmethod", "builtins.property",
    "functools.cached_property", "abc.abstractmethod", "typing.final", "typing.override",
    "typing_extensions.override",
})
#: Names in a class body that let something else see the class or its instances.
HOOKS = frozenset({
    "__init_subclass__", "__class_getitem__", "__new__", "__set_name__", "__get__", "__set__", "__delete__",
    "__reduce__", "__reduce_ex__", "__getstate__", "__copy__", "__deepcopy__", "__del__", "__class__",
})
#: Text files whose words cannot import a class (prose, markup, templates, front-end assets).
PROSE_SUFFIXES = frozenset({
    ".md", ".rst", ".html", ".htm", ".jinja", ".jinja2", ".j2", ".css", ".js", ".svg", ".po", ".pot",
})
#: Findings that name a method by its bare name only: a contained class's method is out of their reach.
STRINGS = frozenset({STRING, MENTION, TEXT, TEMPLATE})
#: Calls that return a module.
MODULE_LOADERS = frozenset({"import_module", "__import__", "module_from_spec", "getmodule", "reload"})
#: Names that read a scope whole when called without an argument (globals() and locals() always).
SCOPE_READERS = frozenset({"globals", "locals", "vars"})
#: Calls that read an object's namespace whole (``dir()`` gives names only: a getattr then is a lookup).
NAMESPACE_READERS = frozenset({"vars", "getmembers", "getmembers_static"})
_TYPE_TESTS = frozenset({"isinstance", "issubclass", "builtins.isinstance", "builtins.issubclass"})


@dataclass(frozen=True)
class Containment:
    """Whether a class is contained: the ids of its channels, or None and the row (and place) that let it escape."""

    channels: frozenset[int] | None
    escape: str = ""
    where: str = ""


def by_name_only(tree: Tree, class_fqn: str | None, name: str) -> bool:
    """Whether the method ``name`` of ``class_fqn`` is out of reach of a string naming it (``STRINGS``): its class
    is contained, so no ``getattr``, template or dispatch table ever holds one of its instances."""
    if class_fqn is None or _dunder(name):
        return False
    return contained(tree, class_fqn).channels is not None


def may_hold(tree: Tree, class_fqn: str, receiver: ast.expr) -> bool:
    """Whether a receiver may hold an instance or the class ``class_fqn``: the class escapes, or it is one of its
    channels. Whatever the receiver table makes of it: a known receiver that is no channel (an object whose class
    forwards attributes, an annotated parameter) cannot hold one either, since none was ever handed to it."""
    found = contained(tree, class_fqn)
    return found.channels is None or id(receiver) in found.channels


def contained(tree: Tree, class_fqn: str) -> Containment:
    """Whether the tree's class ``class_fqn`` (its own module spelling) is contained, computed once per tree."""
    memo = tree.memo["containment"]
    if class_fqn not in memo:
        check = _Check(tree)
        try:
            what = identify(tree, class_fqn)
            if what is None or what[0] != "tree":
                raise _Escape("unknown", class_fqn)
            check.family(what[1])
            memo[class_fqn] = Containment(frozenset(check.channels))
        except _Escape as escape:
            memo[class_fqn] = Containment(None, escape.row, escape.where)
        except RecursionError:
            memo[class_fqn] = Containment(None, "unknown", "")
    return memo[class_fqn]  # type: ignore[return-value]


class _Escape(Exception):
    def __init__(self, row: str, where: str = "") -> None:
        assert row in _ROWS, row  # a misspelled row fails loudly
        self.row, self.where = row, where


@dataclass(eq=False)
class _Context:
    """One parsed file as the check reads it: each node's parent, scope, annotation-ness; nodes by name."""

    path: str
    binder: Binder
    parents: dict[int, ast.AST] = field(default_factory=dict)
    scopes: dict[int, Scope] = field(default_factory=dict)  # id(Name, Attribute or Call) -> the scope it is read in
    nodes: dict[int, ast.AST] = field(default_factory=dict)  # id(scope) -> the node that opens it
    annotations: set[int] = field(default_factory=set)
    names: dict[str, list[ast.Name | ast.Attribute]] = field(default_factory=dict)  # by id / by attr
    imports: dict[str, list[tuple[ast.alias, ast.ImportFrom]]] = field(default_factory=dict)
    strings: list[ast.Constant] = field(default_factory=list)  # not docstrings, not annotations
    supers: list[ast.Call] = field(default_factory=list)
    namespaces: list[ast.expr] = field(default_factory=list)  # what vars(), getmembers(), .__dict__ read
    dynamic: int = 0  # the line of the first globals(), locals(), vars() reading a scope whole

    def where(self, node: ast.AST) -> str:
        return f"{self.path}:{getattr(node, 'lineno', 0)}"


def _context(tree: Tree, path: str) -> _Context | None:
    memo = tree.memo["containment files"]
    if path not in memo:
        scanned = tree.file(path)
        memo[path] = None if scanned is None or scanned.tree is None else _read(path, scanned)
    return memo[path]  # type: ignore[return-value]


def _read(path: str, scanned: ScannedFile) -> _Context:
    assert scanned.tree is not None
    binder = scanned.bind()
    ctx = _Context(path, binder)
    ctx.nodes[id(binder.root)] = scanned.tree

    def visit(node: ast.AST, scope: Scope, annotation: bool) -> None:
        for child in ast.iter_child_nodes(node):
            ctx.parents[id(child)] = node
        if annotation:
            ctx.annotations.add(id(node))
        if isinstance(node, ast.Name):
            ctx.names.setdefault(node.id, []).append(node)
            ctx.scopes[id(node)] = scope
            if node.id in SCOPE_READERS and not ctx.dynamic:
                call = ctx.parents.get(id(node))
                if not (isinstance(call, ast.Call) and call.func is node and call.args and node.id == "vars"):
                    # vars(obj): an object's namespace (see NAMESPACE_READERS)
                    ctx.dynamic = node.lineno
        elif isinstance(node, ast.Attribute):
            ctx.names.setdefault(node.attr, []).append(node)
            ctx.scopes[id(node)] = scope
            if node.attr == "__dict__":
                ctx.namespaces.append(node.value)
        elif isinstance(node, ast.Call):
            ctx.scopes[id(node)] = scope
            if isinstance(node.func, ast.Name) and node.func.id == "super":
                ctx.supers.append(node)
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if called in NAMESPACE_READERS and node.args:
                ctx.namespaces.append(node.args[0])
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                ctx.imports.setdefault(alias.name, []).append((alias, node))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and not annotation
            and not isinstance(ctx.parents.get(id(node)), ast.Expr)  # a docstring or a bare string statement
        ):
            ctx.strings.append(node)
        inner = binder.scopes.get(id(node))
        if inner is not None:
            ctx.nodes[id(inner)] = node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda) and inner:
            if isinstance(node, ast.ClassDef):
                outside: list[ast.AST] = [*node.decorator_list, *node.bases, *node.keywords]
                annotated: list[ast.AST] = []
                body: list[ast.AST] = list(node.body)
            elif isinstance(node, ast.Lambda):
                outside, annotated, body = list(default_exprs(node.args)), [], [node.body]
            else:
                outside = [*node.decorator_list, *default_exprs(node.args)]
                annotated = [e for e in (node.returns, *annotation_exprs(node.args)) if e is not None]
                body = list(node.body)
            for part in outside:
                visit(part, scope, annotation)
            for part in annotated:
                visit(part, scope, True)
            for part in body:
                visit(part, inner, annotation)
            return
        if isinstance(node, ast.AnnAssign):
            visit(node.target, scope, annotation)
            visit(node.annotation, scope, True)
            if node.value is not None:
                visit(node.value, scope, annotation)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, inner or scope, annotation)

    visit(scanned.tree, binder.root, False)
    return ctx


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


class _Check:
    """One class's containment check: raises ``_Escape`` at the first use outside the table."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.channels: set[int] = set()
        self.followed: set[tuple[int, str]] = set()

    def family(self, class_fqn: str) -> None:
        """The class, its subclasses in the tree and, for their methods' ``self``, their bases."""
        tree = self.tree
        if any(True for _ in tree.containing(["__subclasses__"])):
            raise _Escape("by name", "__subclasses__")
        self.introspection()
        family = descendants(tree, class_fqn)
        if family is None:
            raise _Escape("unknown", class_fqn)
        above: set[str] = set()
        for member in sorted(family):
            line = lineage(tree, member)
            if line is None or not line.complete or line.metaclass:
                raise _Escape("external base", member)
            for base in line.classes:
                if base in ("builtins.object", "object"):
                    continue
                if class_record(tree, base) is None:
                    raise _Escape("external base", base)
                above.add(base)
        for cls in sorted(above):
            self.body(cls)
        for member in sorted(family):
            self.uses(member)
            home = class_file(tree, member)
            if home is None:
                raise _Escape("unknown", member)
            self.lookups(member.rpartition(".")[2], home)

    def lookups(self, name: str, home: str) -> None:
        """Row "by name": a getattr with a computed name that may produce ``name`` (bound in the file ``home``)
        on its module: the module named anywhere, or anything that may be a module in ``home`` itself.

        A loader whose module is data too (``getattr(import_module(path), attr)`` elsewhere) is not followed, as
        for a function (``_conventions``): the strings it is given name the class, and those are checked.
        """
        for path in self.tree.containing(sorted(LOOKUP_CALLS)):
            for lookup in self._binder(path).lookups:
                if not lookup.produces(name):
                    continue
                if path == home and _may_be_a_module(self.tree, lookup.receiver, lookup.scope):
                    raise _Escape("by name", f"{path}:{lookup.line}")
                if isinstance(lookup.receiver, ast.Name | ast.Attribute) and any(
                    home in self.tree.modules().get(f, ()) for f in dotted(lookup.receiver, lookup.scope)
                ):
                    raise _Escape("by name", f"{path}:{lookup.line}")

    def introspection(self) -> None:
        """Row "by name": a module's namespace read whole (``vars(mod)``, ``mod.__dict__``,
        ``inspect.getmembers(mod)``) anywhere in the tree reaches its classes and instances without naming them."""
        memo = self.tree.memo["containment introspection"]
        if "<introspection>" not in memo:
            found = ""
            for path in self.tree.containing(sorted(NAMESPACE_READERS | {"__dict__"})):
                ctx = self._file(path)
                found = found or next((ctx.where(n) for n in ctx.namespaces if _may_be_a_module(
                    self.tree, n, ctx.scopes.get(id(n)))), "")
            memo["<introspection>"] = found
        if memo["<introspection>"]:
            raise _Escape("by name", memo["<introspection>"])  # type: ignore[arg-type]

    def _binder(self, path: str) -> Binder:
        """A file's scopes, within the parse budget the subclass search keeps."""
        if path not in self.tree.scanned:
            spent = self.tree.memo["parse budget"]
            spent[path] = True
            if len(spent) > PARSE_BUDGET:
                raise _Escape("unknown", path)
        scanned = self.tree.file(path)
        if scanned is None:
            raise _Escape("unknown", path)
        return scanned.bind()

    def _file(self, path: str) -> _Context:
        """A file's context (parents, scopes, names), within the parse budget."""
        self._binder(path)
        ctx = _context(self.tree, path)
        if ctx is None:
            raise _Escape("unknown", path)
        return ctx

    def body(self, cls: str) -> None:
        """Row "class hook", "class body", "method wrapper" and, for every method, its ``self`` and ``cls``."""
        record = class_record(self.tree, cls)
        path = class_file(self.tree, cls)
        assert record is not None
        assert path is not None
        ctx = self._file(path)
        node = ctx.nodes.get(id(record.body))
        if not isinstance(node, ast.ClassDef):
            raise _Escape("unknown", cls)
        if node.decorator_list or node.keywords or HOOKS & set(record.body.bindings):
            raise _Escape("class hook", ctx.where(node))
        for stmt in node.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                self.method(stmt, record.body, ctx)
            elif not _plain_statement(stmt):
                raise _Escape("class body", ctx.where(stmt))

    def method(self, node: ast.FunctionDef | ast.AsyncFunctionDef, outer: Scope, ctx: _Context) -> None:
        kinds = set()
        for decorator in node.decorator_list:
            if isinstance(decorator, ast.Attribute) and decorator.attr in ("setter", "getter", "deleter"):
                continue
            names = dotted(decorator, outer)
            if not names or not names <= PLAIN_DECORATORS:
                raise _Escape("method wrapper", ctx.where(decorator))
            kinds |= {n.rpartition(".")[2] for n in names}
        params = [*node.args.posonlyargs, *node.args.args]
        scope = ctx.binder.scopes[id(node)]
        for call in ctx.supers:
            if self._inside(ctx.scopes[id(call)], scope):
                self.channels.add(id(call))
        if "staticmethod" in kinds:
            return
        if not params:
            if node.args.vararg is not None:
                raise _Escape("other use", ctx.where(node))  # def m(*args): args[0] is self
            return
        first = params[0].arg
        for load in self._loads(first, scope, ctx):
            if "classmethod" in kinds:
                self.class_use(load, ctx)
            else:
                self.instance(load, ctx)

    def _loads(self, name: str, scope: Scope, ctx: _Context) -> list[ast.Name]:
        """Every Name node of ``name`` read in ``scope`` or a scope inside it (which may rebind it: stricter)."""
        return [
            n for n in ctx.names.get(name, ())
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and self._inside(ctx.scopes[id(n)], scope)
        ]

    @staticmethod
    def _inside(scope: Scope | None, outer: Scope) -> bool:
        while scope is not None:
            if scope is outer:
                return True
            scope = scope.parent
        return False

    def uses(self, cls: str) -> None:
        """Every use of the class's name in the tree: each must be a row that keeps it contained."""
        name = cls.rpartition(".")[2]
        for path in self._paths(name):
            ctx = self._file(path)
            self._by_name(name, ctx)
            for alias, node in ctx.imports.get(name, ()):
                module = absolute(node, ctx.binder.package)
                if module is not None and self._is(f"{module}.{name}", cls) and alias.asname not in (None, name):
                    raise _Escape("alias", ctx.where(node))
            for found in ctx.names.get(name, ()):
                if isinstance(found, ast.Name) and not isinstance(found.ctx, ast.Load):
                    continue
                if isinstance(found, ast.Attribute) and not isinstance(found.ctx, ast.Load):
                    raise _Escape("other use", ctx.where(found))
                scope = ctx.scopes[id(found)]
                if isinstance(found, ast.Name):
                    resolved = scope.resolve(name)
                    if resolved is None:
                        raise _Escape("unknown", ctx.where(found))
                else:
                    resolved = dotted(found, scope)
                    if not resolved or not all(self._other(f) for f in resolved if not self._is(f, cls)):
                        raise _Escape("unknown", ctx.where(found))
                if any(self._is(f, cls) for f in resolved):
                    self.class_use(found, ctx)

    def _paths(self, name: str) -> list[str]:
        """The Python files holding ``name`` as a word; a configuration file holding it lets it escape."""
        for text in self.tree.text_files_with(name):
            if not self.tree.foreign(text) and not any(text.lower().endswith(s) for s in PROSE_SUFFIXES):
                raise _Escape("by name", text)
        return list(self.tree.containing([name]))

    def _by_name(self, name: str, ctx: _Context) -> None:
        """Row "by name": a string naming it, or a lookup of any name in the file."""
        if ctx.dynamic:
            raise _Escape("by name", f"{ctx.path}:{ctx.dynamic}")
        for string in ctx.strings:
            text = string.value
            if isinstance(text, str) and name in text and name in WORD.findall(nfkc(text)):
                raise _Escape("by name", ctx.where(string))

    def _is(self, fqn: str, cls: str) -> bool:
        what = identify(self.tree, fqn)
        return what is not None and what == ("tree", cls)

    def _other(self, fqn: str) -> bool:
        """Whether ``fqn`` is known to be something else than a class of the tree (``flask.Request``)."""
        what = identify(self.tree, fqn)
        return what is not None

    def class_use(self, node: ast.expr, ctx: _Context) -> None:
        """A use of the class object (its name, or ``cls``): rows "class attribute", "type test", "annotation"..."""
        if id(node) in ctx.annotations:
            return
        parent = ctx.parents[id(node)]
        if isinstance(parent, ast.Call) and parent.func is node:
            self.instance(parent, ctx)
            return
        if isinstance(parent, ast.Attribute) and parent.value is node:
            if _dunder(parent.attr):
                raise _Escape("dunder", ctx.where(parent))
            self.channels.add(id(node))  # Sub.get, cls.get: the class's own attributes
            return
        if isinstance(parent, ast.ClassDef) and node in parent.bases:
            return  # a subclass: in the family, checked by itself
        tested = ctx.parents[id(parent)] if isinstance(parent, ast.Tuple) else parent
        held = parent if isinstance(parent, ast.Tuple) else node
        if isinstance(tested, ast.Call) and len(tested.args) == 2 and tested.args[1] is held:
            scope = ctx.scopes[id(tested)]
            if dotted(tested.func, scope) & _TYPE_TESTS:
                return
        if isinstance(tested, ast.ExceptHandler) and tested.type is held:
            return
        raise _Escape("other use", ctx.where(node))

    def instance(self, node: ast.expr, ctx: _Context) -> None:
        """An expression that may hold an instance: rows "receiver", "bound", "discarded"."""
        parent = ctx.parents[id(node)]
        if isinstance(parent, ast.Attribute) and parent.value is node:
            if _dunder(parent.attr):
                raise _Escape("dunder", ctx.where(parent))
            self.channels.add(id(node))
            return
        if isinstance(parent, ast.Expr):
            return
        target = None
        if isinstance(parent, ast.Assign) and parent.value is node and len(parent.targets) == 1:
            target = parent.targets[0]
        elif isinstance(parent, ast.AnnAssign) and parent.value is node:
            target = parent.target
        if isinstance(target, ast.Name):
            self.bound(target, ctx)
            return
        raise _Escape("rebound" if isinstance(parent, ast.NamedExpr) else "other use", ctx.where(node))

    def bound(self, target: ast.Name, ctx: _Context) -> None:
        """Row "bound": every load of the name an instance is bound to is itself a contained use."""
        scope = ctx.scopes[id(target)]
        name = target.id
        if (id(scope), name) in self.followed:
            return
        self.followed.add((id(scope), name))
        if scope.binder_of(name) is not scope or scope.kind in ("class", "other"):
            raise _Escape("rebound", ctx.where(target))
        if scope.kind == "module":
            exports = ctx.binder.exports
            if exports is not None and name in exports:
                raise _Escape("exported", ctx.where(target))
            for path in self._paths(name):
                if path != ctx.path:
                    raise _Escape("exported", path)
            self.lookups(name, ctx.path)
        self._by_name(name, ctx)
        for load in self._loads(name, scope, ctx):
            self.instance(load, ctx)


def _may_be_a_module(tree: Tree, expr: ast.expr, scope: Scope | None, depth: int = 0) -> bool:
    """Whether ``expr`` (read in ``scope``) may be a module of the tree: a module's name, an import of one,
    ``import_module(...)``, ``sys.modules[...]``, or a local name bound to one of these.

    A parameter, an attribute, a container or a function's result holding a module is not followed (a known
    limit, see docs/verdicts.md): the name looked up must then come from a string naming the class.
    """
    if scope is None or depth > 8:
        return True
    if isinstance(expr, ast.Name | ast.Attribute):
        if _module_named(tree, dotted(expr, scope)):
            return True
        if not isinstance(expr, ast.Name):
            return False
        bound = scope.binding_scope(expr.id)
        if bound is None:
            return scope.resolve(expr.id) is not None  # a class body's fallback: may be either
        return any(
            v.how == "value" and v.expr is not None and _may_be_a_module(tree, v.expr, v.scope, depth + 1)
            for v in bound.values.get(expr.id, ())
        )
    if isinstance(expr, ast.Call):
        called = dotted(expr.func, scope) if isinstance(expr.func, ast.Name | ast.Attribute) else set()
        return any(f.rpartition(".")[2] in MODULE_LOADERS or f.startswith(("sys.modules.", "modules.")) for f in called)
    if isinstance(expr, ast.Subscript):  # sys.modules[name]
        return isinstance(expr.value, ast.Name | ast.Attribute) and any(
            f.endswith("modules") for f in dotted(expr.value, scope))
    if isinstance(expr, ast.IfExp | ast.BoolOp | ast.NamedExpr):
        parts = [expr.body, expr.orelse] if isinstance(expr, ast.IfExp) else (
            expr.values if isinstance(expr, ast.BoolOp) else [expr.value])
        return any(_may_be_a_module(tree, e, scope, depth + 1) for e in parts)
    return False


def _module_named(tree: Tree, fqns: set[str]) -> bool:
    """Whether one of ``fqns`` is a module of the tree, or a name bound nowhere (a star import may bind it)."""
    modules = tree.modules()
    return any(fqn in modules or ("." not in fqn and identify(tree, fqn) is None) for fqn in fqns)


def _plain_statement(stmt: ast.stmt) -> bool:
    """A class-body statement that hands nothing on: a docstring, ``pass``, a constant attribute."""
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Expr):
        return isinstance(stmt.value, ast.Constant)
    if isinstance(stmt, ast.Assign):
        return all(isinstance(t, ast.Name) for t in stmt.targets) and _constant(stmt.value)
    if isinstance(stmt, ast.AnnAssign):
        return isinstance(stmt.target, ast.Name) and (stmt.value is None or _constant(stmt.value))
    return False


def _constant(expr: ast.expr) -> bool:
    if isinstance(expr, ast.Constant):
        return True
    if isinstance(expr, ast.Tuple | ast.List | ast.Set):
        return all(_constant(e) for e in expr.elts)
    if isinstance(expr, ast.Dict):
        return all(k is not None and _constant(k) for k in expr.keys) and all(_constant(v) for v in expr.values)
    return False

"""What the object before ``.name`` may be: the receiver table, and whether ``x.name`` may reach ``C.name``.

``x.name`` counts against the method ``C.name`` only if ``x`` may be an
instance (or the class) of ``C``, of a subclass of ``C``, or of a class that
also inherits from ``C`` — a base of ``C`` included, as ``self`` in a base may
be an instance of ``C``. Receivers are resolved only where the code makes them
knowable without running it (``RECEIVERS``, read top to bottom); anything else
is unknown, and an unknown receiver is still a reference. A receiver whose
class may answer any attribute (``__getattr__``, a third-party base, a
metaclass of the tree's) reaches everything.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass
from typing import NamedTuple

from coldmod_codemod._classes import class_record, descendants, identify, lineage
from coldmod_codemod._scopes import DefInfo, Scope, Value, dotted
from coldmod_codemod._tree import Tree

__all__ = ["RECEIVERS", "Receiver", "bounded", "may_reach", "receivers"]

#: What a resolved receiver may be: exactly an instance of its class, an instance of it or of a subclass, the
#: same for an annotation (which an ABC's ``register`` or a Protocol can also satisfy), the class object, or
#: ``super()`` in its methods (what comes after it in the MRO of it or of a subclass).
EXACT, SUBCLASS, ANNOTATED, CLASS, CLASS_OR_SUBCLASS = "exact", "subclass", "annotated", "class", "class-or-subclass"
AFTER = "after"


class Receiver(NamedTuple):
    """One thing a receiver may be: ``cls`` (a class's fully qualified name) in one of the modes above."""

    cls: str
    mode: str


Receivers = frozenset[Receiver] | None  # None: unknown


@dataclass(frozen=True)
class Row:
    """One row of the receiver table: how the receiver is written, and what it may then be."""

    name: str
    written: str
    may_be: str


# fmt: off
#: Every receiver resolved, and how. Anything not here (``super()`` outside a method, ``self.x``, ``obj[k]``, a
#: call of an unannotated or third-party function, a loop variable, a parameter without annotation, ``Any``, ``object``,
#: a TypeVar, a third-party class) is unknown: ``x.name`` stays a possible reference.
RECEIVERS: tuple[Row, ...] = (
    Row("self",        "a method's first parameter (not a staticmethod's)",      "its class or a subclass's instance"),
    Row("cls",         "a classmethod's first parameter (and __new__'s)",        "its class or a subclass"),
    Row("super",       "super() in a method of C, super(C, x)",                  "a class after C in the MRO of C or "
                                                                                  "of a subclass: never C or below"),
    Row("constructed", "C(...) for a class C of the tree or the standard library", "exactly an instance of C"),
    Row("literal",     "'s', f'{x}', b'', 1, [..], {..}, (..), comprehensions",  "exactly str, bytes, int, list..."),
    Row("class",       "C or mod.C naming a class directly",                      "the class C itself"),
    Row("annotated",   "def f(x: T), x: T; Optional[T], Union[A, B], A | B, 'T'", "an instance of T or a subclass"),
    Row("returned",    "f(...) for a function of the tree annotated -> T",        "an instance of T or a subclass"),
    Row("variable",    "a name (local, enclosing or module-level): every binding "
                       "of it in its scope is one of these rows",                  "whatever any of its bindings is"),
)
# fmt: on

#: Annotations that say nothing about the class.
ANYTHING = frozenset({
    "typing.Any", "typing_extensions.Any", "builtins.object", "object", "typing.Self", "typing_extensions.Self",
})
_OPTIONAL = frozenset({"typing.Optional", "typing_extensions.Optional"})
_UNION = frozenset({"typing.Union", "typing_extensions.Union"})
_WRAPPING = frozenset({
    "typing.Annotated", "typing_extensions.Annotated", "typing.ClassVar", "typing.Final", "typing_extensions.Final",
})
#: Decorators after which a call still returns what the function is annotated to return.
RETURN_KEEPING = frozenset({
    "staticmethod", "classmethod", "builtins.staticmethod", "builtins.classmethod", "functools.cache",
    "functools.lru_cache", "typing.final", "typing.override", "typing_extensions.override",
})
_NONE = Receiver("types.NoneType", EXACT)
#: Literal syntax -> the builtin class it makes.
_LITERALS: dict[type[ast.expr], str] = {
    ast.JoinedStr: "builtins.str", ast.List: "builtins.list", ast.ListComp: "builtins.list",
    ast.Dict: "builtins.dict", ast.DictComp: "builtins.dict", ast.Set: "builtins.set", ast.SetComp: "builtins.set",
    ast.Tuple: "builtins.tuple", ast.GeneratorExp: "types.GeneratorType",
}
_DEPTH = 8


def receivers(tree: Tree, expr: ast.expr, scope: Scope) -> Receivers:
    """What ``expr`` (the object before ``.name``, read in ``scope``) may be; None when unknown."""
    memo = tree.memo["receivers"]
    key = id(expr)
    if key not in memo:
        memo[key] = _infer(tree, expr, scope, 0)
    return memo[key]  # type: ignore[return-value]


def _infer(tree: Tree, expr: ast.expr, scope: Scope, depth: int) -> Receivers:
    if depth > _DEPTH:
        return None
    if isinstance(expr, ast.Name):
        return _variable(tree, expr.id, scope, depth)
    if isinstance(expr, ast.Call):
        return _called(tree, expr, scope, depth)
    if isinstance(expr, ast.Constant):
        name = type(expr.value).__name__  # str, bytes, int, float, complex, bool; NoneType and ellipsis in types
        return frozenset({Receiver(f"builtins.{name}" if hasattr(builtins, name) else _NONE.cls, EXACT)}) if (
            expr.value is None or hasattr(builtins, name)) else None
    if type(expr) in _LITERALS:
        return frozenset({Receiver(_LITERALS[type(expr)], EXACT)})
    if isinstance(expr, ast.Attribute):
        return _classes(tree, dotted(expr, scope), CLASS)
    return None


def _classes(tree: Tree, fqns: set[str], mode: str) -> Receivers:
    """The classes ``fqns`` name, in ``mode``; None unless every one is a class of the tree or the standard library."""
    found = set()
    for fqn in fqns:
        if fqn in ANYTHING:
            return None
        what = identify(tree, fqn)
        if what is None or what[0] == "external":
            return None
        found.add(Receiver(what[1], mode))
    return frozenset(found) or None


def _variable(tree: Tree, name: str, scope: Scope, depth: int) -> Receivers:
    """Row "variable": the union of what every binding of the name gives it (or a builtin class's name)."""
    if depth > _DEPTH:
        return None
    bound = scope.binding_scope(name)
    if bound is None:
        return _classes(tree, {name}, CLASS) if scope.resolve(name) is None else None
    found: set[Receiver] = set()
    for value in bound.values.get(name, ()):
        one = _bound(tree, value, name, bound, depth)
        if one is None:
            return None
        found |= one
    return frozenset(found) or None


def _bound(tree: Tree, value: Value, name: str, bound: Scope, depth: int) -> Receivers:
    """What one binding gives a name (see ``_scopes.Value``)."""
    if value.how == "value" and value.expr is not None and value.scope is not None:
        return _infer(tree, value.expr, value.scope, depth + 1)
    if value.how == "annotation" and value.expr is not None and value.scope is not None:
        return _annotated(tree, value.expr, value.scope, depth + 1)
    if value.how in ("self", "cls") and value.scope is not None:
        owner = value.scope.prefix[:-1]
        return frozenset({Receiver(owner, SUBCLASS if value.how == "self" else CLASS_OR_SUBCLASS)})
    if value.how == "name":  # an import, a def or a class: a class object, a module-level instance, or unknown
        fqns = bound.bindings.get(name, set())
        if bound.prefix + name in fqns:  # a def or class of this scope: only a class is known
            return _classes(tree, fqns, CLASS)
        return _classes(tree, fqns, CLASS) or _union([_imported(tree, fqn, depth) for fqn in fqns])
    return None


def _imported(tree: Tree, fqn: str, depth: int) -> Receivers:
    """Row "variable" across modules: a module-level name of the tree's, imported (``from app.queues import q``)."""
    module, _, name = fqn.rpartition(".")
    for path in tree.modules().get(module, ()):
        scanned = tree.file(path)
        if scanned is None:
            return None
        root = scanned.bind().root
        return _variable(tree, name, root, depth + 1) if name in root.values else None
    return None


def _called(tree: Tree, call: ast.Call, scope: Scope, depth: int) -> Receivers:
    """Rows "constructed" and "returned": an instance of the class called, or the function's annotated return."""
    if isinstance(call.func, ast.Name) and call.func.id == "super" and scope.resolve("super") is None:
        return _super(tree, call, scope)
    made = _infer(tree, call.func, scope, depth + 1) if not isinstance(call.func, ast.Call) else None
    if made is not None and all(r.mode in (CLASS, CLASS_OR_SUBCLASS) for r in made):
        found = set()
        for r in made:
            line = lineage(tree, r.cls)
            if line is None or not line.constructs:
                return None
            found.add(Receiver(r.cls, EXACT if r.mode == CLASS else SUBCLASS))
        return frozenset(found)
    if not isinstance(call.func, (ast.Name, ast.Attribute)):
        return None
    fqns = dotted(call.func, scope)
    infos = [_function(tree, fqn) for fqn in fqns]
    if not infos or any(i is None or i.returns is None or not _keeps_return(i) for i in infos):
        return None
    found = set()
    for info in infos:
        assert info is not None
        assert info.returns is not None
        one = _annotated(tree, info.returns, info.scope, depth + 1)
        if one is None:
            return None
        found |= one
    return frozenset(found)


def _super(tree: Tree, call: ast.Call, scope: Scope) -> Receivers:
    """Row "super": ``super()`` in a method of C, or ``super(C, x)``; None when C cannot be told."""
    owner: str | None = None
    if not call.args and not call.keywords:
        method: Scope | None = scope
        while method is not None and method.kind == "other":  # a comprehension or lambda inside the method
            method = method.parent
        owner = method.owner_class if method is not None and method.kind == "function" else None
    elif len(call.args) == 2 and not call.keywords:
        named = _infer(tree, call.args[0], scope, _DEPTH)  # no deeper: a class named directly
        if named is not None and len(named) == 1:
            (one,) = named
            owner = one.cls if one.mode == CLASS else None
    return frozenset({Receiver(owner, AFTER)}) if owner is not None and _in_tree(tree, owner) else None


def _keeps_return(info: DefInfo) -> bool:
    """Whether calling the function gives what its ``def`` returns: no decorator that may wrap it in another."""
    for decorator in info.decorators:
        names = dotted(decorator.func if isinstance(decorator, ast.Call) else decorator, info.scope)
        if not names or not names <= RETURN_KEEPING:
            return False
    return True


def _function(tree: Tree, fqn: str) -> DefInfo | None:
    """The one definition of the tree's function ``fqn`` (None: not the tree's, or defined more than once)."""
    parts = fqn.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:i])
        for path in tree.modules().get(module, ()):
            scanned = tree.file(path)
            if scanned is None:
                return None
            binder = scanned.bind()
            own = binder.root.prefix + ".".join(parts[i:])
            found = [info for info in binder.infos if info.definition.key == own]
            return found[0] if len(found) == 1 else None
    return None


def _annotated(tree: Tree, expr: ast.expr, scope: Scope, depth: int) -> Receivers:
    """Row "annotated": the classes an annotation names, each as "that class or a subclass"."""
    if depth > _DEPTH:
        return None
    if isinstance(expr, ast.Constant):
        if expr.value is None:
            return frozenset({_NONE})
        if isinstance(expr.value, str):
            try:
                parsed = ast.parse(expr.value.strip(), mode="eval").body
            except SyntaxError:
                return None
            return _annotated(tree, parsed, scope, depth + 1)
        return None
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.BitOr):
        return _union([_annotated(tree, e, scope, depth + 1) for e in (expr.left, expr.right)])
    if isinstance(expr, ast.Subscript):
        head = dotted(expr.value, scope)
        inner = list(expr.slice.elts) if isinstance(expr.slice, ast.Tuple) else [expr.slice]
        if head and head <= _OPTIONAL:
            return _union([_annotated(tree, inner[0], scope, depth + 1), frozenset({_NONE})])
        if head and head <= _UNION:
            return _union([_annotated(tree, e, scope, depth + 1) for e in inner])
        if head and head <= _WRAPPING:
            return _annotated(tree, inner[0], scope, depth + 1)
        if head & {"type", "builtins.type", "typing.Type", "typing_extensions.Type"}:
            return None
        return _annotated(tree, expr.value, scope, depth + 1)  # list[Foo] is a list
    if isinstance(expr, (ast.Name, ast.Attribute)):
        return _classes(tree, dotted(expr, scope), ANNOTATED)
    return None


def _union(parts: list[Receivers]) -> Receivers:
    if any(p is None for p in parts):
        return None
    return frozenset().union(*parts)  # type: ignore[arg-type]


def may_reach(tree: Tree, found: Receivers, class_fqn: str | None, name: str) -> bool:
    """Whether ``x.name`` with ``x`` one of ``found`` may reach ``name`` defined in ``class_fqn`` (None: a function).

    A function of a module is an attribute of an instance or a class only where a class statement binds it
    (``from m import f as name`` in its body; ``name = f`` names it anyway): a known receiver reaches it only
    through a class of the tree whose body binds ``name``, or one that forwards attributes.
    """
    if found is None:
        return True
    memo = tree.memo["may reach"]
    key = (found, class_fqn, name if class_fqn is None else "")
    answer = memo.get(key)
    if answer is None:
        if class_fqn is None:
            answer = any(_binds(tree, r, name) for r in found)
        else:
            target = lineage(tree, class_fqn)
            answer = target is None or target.metaclass or any(_reaches(tree, r, class_fqn) for r in found)
        memo[key] = answer
    return bool(answer)


def bounded(tree: Tree, found: Receivers) -> bool:
    """Whether the receivers are known and reach a known set of classes (none forwards attributes)."""
    return found is not None and all(_reach(tree, r) is not None for r in found)


def _reaches(tree: Tree, receiver: Receiver, class_fqn: str) -> bool:
    reach = _reach(tree, receiver)
    if reach is None or class_fqn in reach:
        return True
    if receiver.mode not in (EXACT, CLASS) and not _in_tree(tree, receiver.cls):
        # A class of the standard library may be inherited through a third-party base the tree cannot see into.
        related = descendants(tree, class_fqn)
        return related is None or any(_opaque(tree, c) for c in related)
    return False


def _binds(tree: Tree, receiver: Receiver, name: str) -> bool:
    """Whether the receiver's class (or, unless exact, a subclass) may hold ``name`` bound in a class body."""
    memo = tree.memo["bound names"]
    if receiver not in memo:
        reach = _reach(tree, receiver)
        records = [class_record(tree, c) for c in reach] if reach is not None else []
        bound = (n for r in records if r is not None for n in r.body.bindings)
        memo[receiver] = None if reach is None else frozenset(bound)
    names = memo[receiver]
    return names is None or name in names  # type: ignore[operator]


def _reach(tree: Tree, receiver: Receiver) -> frozenset[str] | None:
    """Every class whose attributes the receiver may show (None: any attribute at all), computed once."""
    memo = tree.memo["reach"]
    if receiver not in memo:
        memo[receiver] = _reachable(tree, receiver)
    return memo[receiver]  # type: ignore[return-value]


def _reachable(tree: Tree, receiver: Receiver) -> frozenset[str] | None:
    line = lineage(tree, receiver.cls)
    if line is None or line.forwards or line.metaclass:
        return None  # it may answer any name; an instance of a metaclass is any class
    if receiver.mode in (EXACT, CLASS):
        return line.classes
    if receiver.mode == ANNOTATED and line.virtual:
        return None  # isinstance() holds for classes that do not inherit from it
    # An instance of a subclass: everything any subclass inherits (a mixin beside it included).
    subclasses = descendants(tree, receiver.cls)
    if subclasses is None:
        return None
    classes = set(line.classes)
    for sub in subclasses:
        below = lineage(tree, sub)
        if below is None or below.forwards or below.metaclass:
            return None
        classes |= below.classes
    if receiver.mode == AFTER:  # a class precedes its bases in every MRO: super() never finds it or a subclass
        classes -= subclasses
    return frozenset(classes)


def _opaque(tree: Tree, fqn: str) -> bool:
    line = lineage(tree, fqn)
    return line is None or not line.complete


def _in_tree(tree: Tree, fqn: str) -> bool:
    what = identify(tree, fqn)
    return what is not None and what[0] == "tree"


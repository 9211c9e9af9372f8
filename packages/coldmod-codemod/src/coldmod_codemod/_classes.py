"""The class hierarchy of the tree: what a name's class is, what it inherits, what inherits from it.

Read without running anything: a class statement's bases are resolved like
any other name (``_scopes``); a base from the standard library is looked at
directly (importing it has no side effects); a base from a third-party
package is opaque: it cannot inherit from a class of the tree, but it may
define anything, ``__getattr__`` included.
"""

from __future__ import annotations

import abc
import ast
import builtins
import importlib
import sys
import types
import warnings
from dataclasses import dataclass

from coldmod_codemod._scopes import ClassRecord, Scope, dotted
from coldmod_codemod._tree import Tree

__all__ = [
    "Lineage",
    "base_has",
    "class_file",
    "class_has",
    "class_record",
    "descendants",
    "identify",
    "lineage",
    "standard_class",
]

#: Standard-library modules never imported to look at a class: importing them does something.
NEVER_IMPORTED = frozenset({
    "this", "antigravity", "idlelib", "tkinter", "turtle", "turtledemo", "__main__", "__phello__", "ensurepip",
    "venv", "lib2to3", "pydoc_data", "webbrowser", "pdb", "site", "sitecustomize", "usercustomize", "__hello__",
    "test", "readline", "rlcompleter",
})
#: Attribute hooks: a class defining one may answer any attribute name.
FORWARDING = ("__getattr__", "__getattribute__")
#: Files the searches for subclasses may parse, in all, that nothing else parsed: past it, subclasses are unknown.
#: A plan of many keys has parsed them all already; a search for one key stays within its time.
PARSE_BUDGET = 60
#: How deep aliases and bases are followed before giving up (unknown).
_DEPTH = 40


@dataclass(frozen=True)
class Lineage:
    """A class and everything it inherits from, by fully qualified name (the class's own module spelling)."""

    classes: frozenset[str]
    complete: bool  # False: a base is third-party or an expression, and may bring more
    forwards: bool  # some class in it (or an opaque base) may answer any attribute (``__getattr__``, a metaclass)
    virtual: bool  # isinstance() may hold without inheriting: an ABC (``register``) or a Protocol
    metaclass: bool  # a subclass of ``type``: its methods are attributes of classes
    constructs: bool  # calling it makes an instance of it (no ``__new__`` or metaclass of the tree's in the way)


def standard_class(fqn: str) -> type | None:
    """The class ``fqn`` names in the standard library (``builtins.dict``, ``asyncio.Queue``), or None."""
    module, _, name = fqn.rpartition(".")
    if not module:
        module = "builtins"
    top = module.partition(".")[0]
    if top not in sys.stdlib_module_names or top in NEVER_IMPORTED:
        return None
    try:
        with warnings.catch_warnings():  # deprecated modules warn when imported
            warnings.simplefilter("ignore")
            found = getattr(sys.modules.get(module) or importlib.import_module(module), name, None)
    except Exception:  # a platform module that is missing or fails to import
        return None
    return found if isinstance(found, type) else None


def _standard_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def identify(tree: Tree, fqn: str, depth: int = 0) -> tuple[str, str] | None:
    """What ``fqn`` names: ``("tree", class)``, ``("standard", class)``, ``("external", fqn)`` or None (not a class
    of the tree, or unknown). Imports in the tree's modules are followed to what they import."""
    memo = tree.memo["identify"]
    if fqn not in memo:
        memo[fqn] = _identify(tree, fqn, depth)
    return memo[fqn]  # type: ignore[return-value]


def _identify(tree: Tree, fqn: str, depth: int) -> tuple[str, str] | None:
    if depth > _DEPTH:
        return None
    if "." not in fqn:
        found = getattr(builtins, fqn, None)
        return ("standard", _standard_name(found)) if isinstance(found, type) else None
    parts = fqn.split(".")
    modules = tree.modules()
    for i in range(len(parts) - 1, 0, -1):
        module, qual = ".".join(parts[:i]), ".".join(parts[i:])
        paths = modules.get(module, ())
        if not paths:
            continue
        for path in paths:
            scanned = tree.file(path)
            if scanned is None:
                return None
            binder = scanned.bind()
            own = binder.root.prefix + qual
            if own in binder.classes:
                return "tree", own
            if "." not in qual and qual in binder.root.bindings:
                others = binder.root.bindings[qual] - {own}
                if len(others) != 1 or own in binder.root.bindings[qual]:
                    return None  # assigned in the module, or bound more than one way
                return identify(tree, next(iter(others)), depth + 1)
        return None  # a module of the tree that does not bind it as a class
    if parts[0] in modules:
        return None
    standard = standard_class(fqn)
    if standard is not None:
        return "standard", _standard_name(standard)
    return "external", fqn


def class_record(tree: Tree, own: str) -> ClassRecord | None:
    """The class statement of the tree's class ``own`` (its own module spelling)."""
    memo = tree.memo["class"]
    if own not in memo:
        memo[own] = _class_record(tree, own)
    return memo[own]  # type: ignore[return-value]


def _class_record(tree: Tree, own: str) -> ClassRecord | None:
    path = class_file(tree, own)
    scanned = tree.file(path) if path is not None else None
    return scanned.bind().classes[own] if scanned is not None else None


def class_file(tree: Tree, own: str) -> str | None:
    """The file defining the tree's class ``own`` (its own module spelling), or None."""
    parts = own.split(".")
    for i in range(len(parts) - 1, 0, -1):
        for path in tree.modules().get(".".join(parts[:i]), ()):
            scanned = tree.file(path)
            if scanned is not None and own in scanned.bind().classes:
                return path
    return None


_SLOT = object.__getattribute__  # a C class's own attribute lookup (a slot wrapper): no forwarding


def _standard_lineage(fqn: str) -> Lineage | None:
    cls = standard_class(fqn)
    if cls is None:
        return None
    mro = cls.__mro__
    return Lineage(
        frozenset(_standard_name(c) for c in mro),
        complete=True,
        forwards=hasattr(cls, "__getattr__") or any(
            not isinstance(vars(c).get("__getattribute__", _SLOT), types.WrapperDescriptorType) for c in mro),
        virtual=isinstance(cls, abc.ABCMeta) or bool(getattr(cls, "_is_protocol", False)),
        metaclass=issubclass(cls, type),
        constructs=cls not in (type, super, object.__class__),
    )


#: An opaque class: known to exist, nothing known of what it does.
_OPAQUE = Lineage(frozenset(), complete=False, forwards=True, virtual=True, metaclass=False, constructs=False)


def lineage(tree: Tree, fqn: str) -> Lineage | None:
    """Everything the class ``fqn`` (as ``identify`` names it) inherits from; None when it is not a class."""
    memo = tree.memo["lineage"]
    if fqn in memo:
        return memo[fqn]  # type: ignore[return-value]
    memo[fqn] = _OPAQUE  # a cycle of bases
    found = _lineage(tree, fqn)
    memo[fqn] = found
    return found


def _lineage(tree: Tree, fqn: str) -> Lineage | None:
    if fqn.startswith("builtins.") or class_record(tree, fqn) is None:
        standard = _standard_lineage(fqn)
        if standard is not None:
            return standard
        if class_record(tree, fqn) is None:
            return Lineage(frozenset({fqn}), False, True, True, False, False)  # third-party: opaque
    record = class_record(tree, fqn)
    assert record is not None
    classes = {fqn}
    complete = True
    forwards = any(n in record.body.bindings for n in FORWARDING) or any(
        k.arg == "metaclass" for k in record.keywords)
    virtual = False
    metaclass = False
    constructs = "__new__" not in record.body.bindings and not any(k.arg == "metaclass" for k in record.keywords)
    for base in record.bases:
        for inherited in _bases(tree, base, record.outer):
            if inherited is None:
                complete, forwards, virtual, constructs = False, True, True, False
                continue
            classes |= inherited.classes
            complete &= inherited.complete
            forwards |= inherited.forwards
            virtual |= inherited.virtual
            metaclass |= inherited.metaclass
            constructs &= inherited.constructs
    return Lineage(frozenset(classes), complete, forwards, virtual, metaclass, constructs)


def _bases(tree: Tree, base: ast.expr, scope: Scope) -> list[Lineage | None]:
    """The lineage of each class a base expression may be (None: unknown)."""
    if isinstance(base, ast.Subscript):  # Generic[T], Base[int]
        base = base.value
    names = dotted(base, scope)
    if not names:
        return [None]
    found: list[Lineage | None] = []
    for name in names:
        what = identify(tree, name)
        found.append(None if what is None else lineage(tree, what[1]))
    return found


def descendants(tree: Tree, fqn: str) -> frozenset[str] | None:
    """The tree's classes that inherit from ``fqn`` (itself included); None when one may and cannot be told.

    A subclass names its base, or an alias of it: the files holding those names
    are read, round after round, until no new subclass or alias appears.
    """
    memo = tree.memo["descendants"]
    if fqn in memo:
        return memo[fqn]  # type: ignore[return-value]
    found = memo[fqn] = _descendants(tree, fqn)
    return found


def _descendants(tree: Tree, fqn: str) -> frozenset[str] | None:
    found = {fqn}
    names = {fqn.rpartition(".")[2]}
    read: set[str] = set()
    spent = tree.memo["parse budget"]
    while True:
        paths = [p for p in tree.containing(sorted(names)) if p not in read]
        if not paths:
            return frozenset(found)
        for path in paths:
            read.add(path)
            if path not in tree.scanned:
                spent[path] = True
                if len(spent) > PARSE_BUDGET:
                    return None  # a search of one key stays fast: unknown, so the attribute still counts
            scanned = tree.file(path)
            if scanned is None:
                continue
            binder = scanned.bind()
            for name, bound in binder.root.bindings.items():  # `from m import C as D`, `D = C`: D may name C
                values = binder.root.values.get(name, ())
                if any(b.rpartition(".")[2] in names for b in bound) or any(
                    v.expr is not None and _last_name(v.expr) in names for v in values if v.how == "value"
                ):
                    names.add(name)
            for own, record in binder.classes.items():
                line = lineage(tree, own)
                if line is None or fqn in line.classes:
                    found.add(own)
                    names.add(own.rpartition(".")[2])
                elif not line.complete and _names_any(record, names):
                    return None  # an expression base that names the class: it may be a subclass


def _last_name(expr: ast.expr) -> str:
    return expr.id if isinstance(expr, ast.Name) else expr.attr if isinstance(expr, ast.Attribute) else ""


def _names_any(record: ClassRecord, names: set[str]) -> bool:
    """Whether a class statement's bases mention one of ``names``."""
    return any(_last_name(n) in names for base in record.bases for n in ast.walk(base) if isinstance(n, ast.expr))


def class_has(tree: Tree, fqn: str, name: str, seen: set[str]) -> bool:
    """Whether the class ``fqn`` (a base as written, resolved) defines ``name`` or may: True when it cannot be told."""
    if fqn in seen or len(seen) > 50:
        return False
    seen.add(fqn)
    if fqn in ("object", "builtins.object"):
        return False
    if "." not in fqn or fqn.startswith("builtins."):
        found = getattr(builtins, fqn.rpartition(".")[2], None)
        if isinstance(found, type):
            return hasattr(found, name)
    parts = fqn.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module, qual = ".".join(parts[:i]), ".".join(parts[i:])
        for path in tree.modules().get(module, ()):
            scanned = tree.file(path)
            if scanned is None:
                return True
            binder = scanned.bind()
            own = binder.root.prefix + qual
            if own in binder.classes:
                record = binder.classes[own]
                if name in record.body.bindings:
                    return True
                return any(base_has(tree, b, record.outer, name, seen) for b in record.bases)
            if "." not in qual and qual in binder.root.bindings:
                # A name the module imports or assigns: follow what it is bound to.
                return any(
                    class_has(tree, other, name, seen) for other in binder.root.bindings[qual] if other != own
                ) if binder.root.bindings[qual] - {own} else True
    known = standard_class(fqn)
    if known is not None:
        return hasattr(known, name)
    return True  # not in the tree: may define anything


def base_has(tree: Tree, base: ast.expr, scope: Scope, name: str, seen: set[str]) -> bool:
    """Whether the class ``base`` (an expression in ``scope``) defines ``name`` or may: True when unknown."""
    if isinstance(base, ast.Subscript):  # Generic[T], Base[int]
        base = base.value
    resolved = dotted(base, scope)
    if not resolved:
        return True  # a call or other expression: cannot be ruled out
    return any(class_has(tree, fqn, name, seen) for fqn in resolved)

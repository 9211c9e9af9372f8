"""The rules about a definition itself: decorators that register it, names frameworks dispatch by, overrides.

Nothing may refer to such a function by name and still something calls it: a
decorator put it in a registry, a framework looks it up by convention, a base
class calls the method it overrides. Each finding is a ``Reference`` at the
definition whose ``kind`` is a rule of ``_rules.RULES``.
"""

from __future__ import annotations

import ast
import posixpath
import re
from collections import defaultdict

from coldmod_codemod._classes import base_has, class_file, class_record, descendants, lineage
from coldmod_codemod._containment import by_name_only, may_hold
from coldmod_codemod._findings import Reference
from coldmod_codemod._receivers import Receiver, bounded, may_reach, receivers
from coldmod_codemod._rules import (
    COMMAND,
    DECORATOR,
    DISPATCH,
    DYNAMIC,
    FIELD_HOOK,
    HTTP_METHOD,
    IMPLICIT,
    OVERRIDE,
    REGISTERED,
    TEST,
)
from coldmod_codemod._scopes import HTTP_VERBS, LOOKUP_CALLS, DefInfo, Lookup, Scope, dotted
from coldmod_codemod._targets import Target
from coldmod_codemod._tree import Tree

__all__ = ["definition_findings", "is_test_file"]

#: Decorators that only wrap the function and register it nowhere (by what they resolve to).
PURE_WRAPPERS = frozenset({
    "staticmethod", "classmethod", "property", "builtins.staticmethod", "builtins.classmethod", "builtins.property",
    "functools.cache", "functools.lru_cache", "functools.cached_property", "functools.wraps",
    "typing.overload", "typing.final", "typing.override", "typing.no_type_check",
    "typing_extensions.overload", "typing_extensions.final", "typing_extensions.override",
    "abc.abstractmethod", "abc.abstractproperty", "abc.abstractclassmethod", "abc.abstractstaticmethod",
    "contextlib.contextmanager", "contextlib.asynccontextmanager",
})
#: ``@p.setter`` and friends: the second half of a property, not a registration.
PROPERTY_PARTS = frozenset({"setter", "getter", "deleter"})
#: Decorators that make a test fixture (reported as the ``test`` rule).
FIXTURES = frozenset({"pytest.fixture", "pytest_asyncio.fixture"})
#: Methods class-based views dispatch by the request's HTTP verb (Django's View.http_method_names, Flask's MethodView).
HTTP_METHODS = frozenset({"get", "post", "put", "patch", "delete", "head", "options", "trace"})
#: Methods management commands are dispatched by (Django's BaseCommand).
COMMAND_METHODS = frozenset({"handle", "add_arguments", "handle_label", "handle_app_config"})
#: Prefixes that frameworks dispatch by: cmd's do_/help_/complete_, visitors, test runners, pytest hooks,
#: Django forms' clean_<field>.
DISPATCH_PREFIXES = ("do_", "help_", "complete_", "visit_", "leave_", "depart_", "test_", "test", "pytest_", "clean_")
#: Decorators that put the function in a framework's registry, which calls it on its own schedule (by what they
#: resolve to): Django's system checks and signal receivers, the admin's ModelAdmin registration. (An exit handler,
#: ``atexit.register``, runs in the traced process itself: a decorator the reader knows no more about, review.)
REGISTRARS = frozenset({
    "django.core.checks.register", "django.core.checks.registry.register",
    "django.dispatch.receiver", "django.dispatch.dispatcher.receiver",
    "django.contrib.admin.register", "django.contrib.admin.decorators.register",
})
#: Classes whose instances register what they decorate (``register = template.Library()`` then
#: ``@register.filter``; ``hookimpl = HookimplMarker("app")`` then ``@hookimpl``), by what the class resolves to.
REGISTRIES = frozenset({
    "django.template.Library", "django.template.library.Library", "django.template.base.Library",
    "pluggy.HookimplMarker", "pluggy._hooks.HookimplMarker", "pluggy.hooks.HookimplMarker",
})
#: Per-field hooks a form or serializer calls by name for each field its class declares (Django forms'
#: ``clean_<field>``, Django REST framework's ``validate_<field>``).
FIELD_HOOKS = ("clean_", "validate_")
#: Whole names unittest and doctest runners call.
DISPATCH_NAMES = frozenset({
    "setUp", "tearDown", "setUpClass", "tearDownClass", "setUpModule", "tearDownModule",
    "asyncSetUp", "asyncTearDown", "setup_method", "teardown_method", "setup_class", "teardown_class",
    "setup_module", "teardown_module", "setup_function", "teardown_function", "load_tests",
})
#: Files test runners collect (pytest's and Django's defaults): the table of
#: ``coldmod_trace.rootmarker.DEFAULT_IGNORE_FILES``, which this library cannot import (the CLI passes that one;
#: a CLI test checks that they agree).
TEST_FILE_GLOBS = ("test_*.py", "*_test.py", "tests.py", "conftest.py")
TEST_DIRS = frozenset({"tests"})


def definition_findings(tree: Tree, target: Target) -> list[Reference]:
    """Every rule that fires on the target's own definitions (``own`` rules), one finding per rule and line."""
    found: dict[tuple[str, str, int], Reference] = {}

    def add(kind: str, path: str, line: int) -> None:
        found.setdefault((kind, path, line), Reference(target.key, path, line, 0, kind, False))

    name = target.bare_name
    for info in target.infos:
        d = info.definition
        if len(name) > 4 and name.startswith("__") and name.endswith("__"):
            add(IMPLICIT, d.path, d.line)
        for decorator in info.decorators:
            kind = _decorator_kind(tree, decorator, info.scope)
            if kind is not None:
                add(kind, d.path, decorator.lineno)
        if info.owner is not None:
            if name.startswith(FIELD_HOOKS) and _declares(tree, info.owner, name.partition("_")[2]):
                add(FIELD_HOOK, d.path, d.line)
            if name in HTTP_METHODS and _may_be_a_view(tree, info):
                add(HTTP_METHOD, d.path, d.line)
            if name in COMMAND_METHODS:
                add(COMMAND, d.path, d.line)
            if _overrides(tree, info):
                add(OVERRIDE, d.path, d.line)
        if name.startswith(DISPATCH_PREFIXES) or name in DISPATCH_NAMES:
            add(DISPATCH, d.path, d.line)
        if is_test_file(d.path):
            add(TEST, d.path, d.line)
    where = _dynamic_lookup(tree, target)
    if where is not None:
        add(DYNAMIC, *where)
    return sorted(found.values(), key=lambda r: (r.path, r.line, r.kind))


def _dynamic_lookup(tree: Tree, target: Target) -> tuple[str, int] | None:
    """``(path, line)`` of the first dynamic lookup that may reach the target, None if none.

    In its own module, ``globals()``, ``vars()`` and ``__dict__`` reach every function, and a getattr with a
    computed name the names it can produce (``f"do_{x}"``, ``request.method.lower()``, any) on what its receiver
    may be (any, when unknown). Neither reaches a method of a contained class (``_containment``). In the modules
    of a method's base classes, a getattr whose receiver is known (``getattr(self, "on_" + event)`` in the base)
    reaches what it can produce in the classes it may be.
    """
    binder = target.binder
    if binder is None or not target.definitions:
        return None
    path, name = target.definitions[0].path, target.bare_name
    if binder.dynamic and not by_name_only(tree, target.class_fqn, name):  # a contained class: no namespace
        return path, binder.dynamic
    for lookup in binder.lookups:
        if not lookup.produces(name):
            continue
        found = receivers(tree, lookup.receiver, lookup.scope)
        if may_reach(tree, found, target.class_fqn, name) and (
            found is not None or target.class_fqn is None or may_hold(tree, target.class_fqn, lookup.receiver)
        ):
            return path, lookup.line
    line = lineage(tree, target.class_fqn) if target.class_fqn else None
    for base in sorted(line.classes if line is not None else ()):
        for elsewhere, lookup, found in _known_lookups(tree, base):
            if lookup.produces(name) and may_reach(tree, found, target.class_fqn, name):
                return elsewhere, lookup.line
    # A name built by a convention (``getattr(node, "as_" + vendor)``) dispatches across the tree: on an
    # unknown receiver it reaches every function whose name it can produce, in any module.
    for elsewhere, lookup in _named_lookups(tree, name):
        found = receivers(tree, lookup.receiver, lookup.scope)
        if may_reach(tree, found, target.class_fqn, name) and (
            found is not None or target.class_fqn is None or may_hold(tree, target.class_fqn, lookup.receiver)
        ):
            return elsewhere, lookup.line
    return None


def _named_lookups(tree: Tree, name: str) -> list[tuple[str, Lookup]]:
    """The tree's getattrs whose computed name is narrowed (a prefix, a suffix, a set) and includes ``name``.

    Such a lookup's constant part is written in a string inside the call (``"as_" + vendor``,
    ``f"visit_{kind}"``, ``f"{x}_handler"``): only the files with such a string are parsed.
    """
    memo = tree.memo["named lookups"]
    if name not in memo:
        index = _lookup_constants(tree)
        affixes = {name[:i] for i in range(1, len(name) + 1)} | {name[i:] for i in range(len(name))}
        if name in HTTP_VERBS:
            affixes.add(_HTTP_VERB_CALL)
        paths = {path for word in affixes for path in index.get(word, ())} | index.get("", set())
        found: list[tuple[str, Lookup]] = []
        for path in sorted(paths):
            found.extend((path, lookup) for lookup in _narrowed_lookups(tree, path) if lookup.produces(name))
        memo[name] = found
    return memo[name]  # type: ignore[return-value]


#: A call that looks an attribute up, and the constant part of a name computed in it: a string's first word
#: (``"as_" + x``, ``f"do_{x}"``) or its last (``x + "_at"``, ``f"{x}_at"``).
_LOOKUP_CALL = re.compile(rb"\b(?:getattr|hasattr|setattr|delattr)\s*\(")
_CONSTANT = re.compile(
    rb"[\"'](\w+)[\"']\s*\+"  # "as_" + vendor
    rb"|[\"'](\w+)\{"  # f"do_{x}"
    rb"|\+\s*[rbuRBU]?[\"'](\w+)[\"']"  # x + "_at"
    rb"|\}(\w+)[\"']"  # f"{x}_at"
)
#: How far after ``getattr(`` the computed name is looked for (a receiver written longer than this is unheard of).
_LOOKUP_WINDOW = 400
_HTTP_VERB_CALL = "method.lower()"


def _lookup_constants(tree: Tree) -> dict[str, set[str]]:
    """Each word of a string near a getattr call, with the files it is in ("" : files that must be parsed anyway)."""
    memo = tree.memo["lookup constants"]
    if not memo:
        index: dict[str, set[str]] = defaultdict(set)
        for path in tree.containing(sorted(LOOKUP_CALLS)):
            data = tree.read(path) or b""
            if not data.isascii():
                index[""].add(path)  # an identifier beyond ASCII: parse it rather than read its bytes
                continue
            for call in _LOOKUP_CALL.finditer(data):
                window = data[call.end() : call.end() + _LOOKUP_WINDOW]
                for groups in _CONSTANT.findall(window):
                    index[b"".join(groups).decode()].add(path)
                if _HTTP_VERB_CALL.encode() in window:
                    index[_HTTP_VERB_CALL].add(path)
        memo["index"] = index
    return memo["index"]  # type: ignore[return-value]


def _narrowed_lookups(tree: Tree, path: str) -> list[Lookup]:
    """The file's getattrs whose computed name is narrowed to a prefix, a suffix or a set."""
    memo = tree.memo["narrowed lookups"]
    if path not in memo:
        scanned = tree.file(path)
        lookups = scanned.bind().lookups if scanned is not None else []
        memo[path] = [lk for lk in lookups if lk.prefix or lk.suffix or lk.names is not None]
    return memo[path]  # type: ignore[return-value]


def _known_lookups(tree: Tree, cls: str) -> list[tuple[str, Lookup, frozenset[Receiver]]]:
    """The getattrs with a computed name in the module of the tree's class ``cls`` whose receiver is known."""
    memo = tree.memo["lookups"]
    if cls not in memo:
        known = []
        path = class_file(tree, cls)
        scanned = tree.file(path) if path is not None else None
        if scanned is not None:
            for lookup in scanned.bind().lookups:
                found = receivers(tree, lookup.receiver, lookup.scope)
                if found is not None and bounded(tree, found):  # an unknown one keeps its module's rule
                    known.append((path, lookup, found))
        memo[cls] = known
    return memo[cls]  # type: ignore[return-value]


def _decorator_kind(tree: Tree, decorator: ast.expr, scope: Scope) -> str | None:
    """The rule a decorator triggers: ``registered``, ``decorator``, ``test`` (a fixture) or None (a pure wrapper)."""
    func = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(func, ast.Attribute) and func.attr in PROPERTY_PARTS and isinstance(func.value, ast.Name):
        return None
    resolved = dotted(func, scope)
    if resolved & FIXTURES:
        return TEST
    if resolved and resolved <= PURE_WRAPPERS:
        return None
    if resolved & REGISTRARS or _made_by(tree, func.value if isinstance(func, ast.Attribute) else func, scope):
        return REGISTERED
    return DECORATOR


def _made_by(tree: Tree, expr: ast.expr, scope: Scope, depth: int = 0) -> bool:
    """Whether the name ``expr`` holds an instance of a registry (``REGISTRIES``): ``register = Library()`` in its
    module, or imported from a module of the tree that makes it there (through re-exports, a few deep)."""
    if not isinstance(expr, ast.Name) or depth > 3:
        return False
    where = scope.binding_scope(expr.id)
    if where is None:
        return False
    for value in where.values.get(expr.id, ()):
        made = value.how == "value" and isinstance(value.expr, ast.Call) and value.scope is not None
        if made and dotted(value.expr.func, value.scope) & REGISTRIES:  # type: ignore[union-attr,arg-type]
            return True
        if value.how == "name":
            for fqn in where.bindings.get(expr.id, ()):
                module, _, name = fqn.rpartition(".")
                for path in tree.modules().get(module, ()):
                    scanned = tree.file(path)
                    root = scanned.bind().root if scanned is not None else None
                    if root is not None and name in root.bindings and _made_by(
                        tree, ast.Name(id=name, ctx=ast.Load()), root, depth + 1
                    ):
                        return True
    return False


def _declares(tree: Tree, owner: str, field: str) -> bool:
    """Whether the class ``owner``, a class of the tree it inherits from or one inheriting from it binds ``field``
    in its body (a subclass's form validates its fields with the hooks it inherits)."""
    if not field:
        return False
    line = lineage(tree, owner)
    below = descendants(tree, owner) or frozenset()  # unknown (over budget): its own family only
    for cls in sorted({owner, *(line.classes if line is not None else ()), *below}):
        record = class_record(tree, cls)
        if record is not None and field in record.body.bindings:
            return True
    return False


def is_test_file(path: str) -> bool:
    """Whether the root-relative ``/``-separated path is test code (a ``tests/`` directory, ``test_*.py``, ...)."""
    directory, _, base = path.rpartition("/")
    if any(posixpath.basename(base) == g or _glob(base, g) for g in TEST_FILE_GLOBS):
        return True
    return bool(TEST_DIRS & set(directory.split("/")))


def _glob(name: str, pattern: str) -> bool:
    head, _, tail = pattern.partition("*")
    return name.startswith(head) and name.endswith(tail) and len(name) >= len(head) + len(tail)


def _may_be_a_view(tree: Tree, info: DefInfo) -> bool:
    """Whether the method's class may be a class-based view: it has a base (every framework's view has one).

    A class with no base but ``object`` is dispatched by name only by code of its own, which the
    dynamic-lookup rule sees (``getattr(self, request.method.lower())``).
    """
    assert info.owner is not None
    binder = tree.file(info.definition.path)
    if binder is None:
        return True
    record = binder.bind().classes.get(info.owner)
    if record is None:
        return True
    bases = [base for base in record.bases if not (isinstance(base, ast.Name) and base.id == "object")]
    return bool(bases or record.keywords)


def _overrides(tree: Tree, info: DefInfo) -> bool:
    """Whether the method may override one of a base class: defined there, or the base is not in the tree."""
    assert info.owner is not None
    binder = tree.file(info.definition.path)
    if binder is None:
        return True
    classes = binder.bind().classes
    if info.owner not in classes:
        return True
    record = classes[info.owner]
    name = info.definition.key.rpartition(".")[2]
    return any(base_has(tree, base, record.outer, name, set()) for base in record.bases)

"""Test-only code: the test functions a key's references lie in, and when they may go with it.

A function whose every reference lies inside functions of test files is
``test-only``. Removing it alone would break those tests; removing the tests
with it is right only when they exist for nothing else. A function of a test
file whose code refers to a planned key is its *companion* (a name in a string
is not such a reference, a request of the URL a view's route matches is: see
``_routes``); so is, in turn, a function of a test file that
refers to a companion (a helper's callers). A companion exists for the keys it
refers to and goes only with them, when none of these holds (``TestCompanions.stays``):

=====================================================  ==========================================
the companion ...                                       so it stays, and the key with it
=====================================================  ==========================================
refers to in-tree code outside the test files that      it also exercises live code
the plan does not remove (a function, a class, a
constant; a module object itself does not count)
is an ``autouse`` fixture                               it runs for every test
is a fixture a function that stays asks for by          that test needs it
parameter name
requests a URL whose view the plan does not remove      it also exercises that view
is referred to from outside what goes (like any key)    something else uses it
=====================================================  ==========================================

A reference at module level of a test file cannot go with any function: the
key stays (its finding is outside every removed definition). What counts as a
test file is one predicate, the tracer's table (``coldmod_trace.rootmarker``),
which the CLI passes; ``_conventions.is_test_file`` is the same table for the
library used alone.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field

from coldmod_codemod._conventions import FIXTURES
from coldmod_codemod._references import (
    REMOVABLE_KINDS,
    Definition,
    Match,
    Target,
    Tree,
    collect,
    locate,
    match,
    within,
)
from coldmod_codemod._routes import requested
from coldmod_codemod._rules import RULES
from coldmod_codemod._scopes import dotted
from coldmod_codemod._why import TEXT_KINDS

__all__ = ["TestCompanions", "definitions_by_line", "find_companions"]

#: Rounds of "a test function that refers to a companion is one too"; a chain of helpers longer than this stays.
_MAX_ROUNDS = 8


def definitions_by_line(tree: Tree, path: str) -> dict[int, Definition]:
    """The definitions of a file by the line of their ``def`` (empty when it cannot be parsed)."""
    scanned = tree.file(path)
    if scanned is None:
        return {}
    return {d.line: d for d in scanned.bind().definitions}


@dataclass
class TestCompanions:
    """The test functions around a plan's keys: their findings, what they need gone, and why some never go."""

    __test__ = False  # not a pytest class, whatever its name

    targets: dict[str, Target] = field(default_factory=dict)
    matches: dict[str, list[Match]] = field(default_factory=dict)
    needs: dict[str, set[str]] = field(default_factory=dict)  # planned keys and companions it refers to
    live: dict[str, str] = field(default_factory=dict)  # why it can never go
    requesters: dict[str, set[str]] = field(default_factory=dict)  # functions asking for it as a fixture

    def stays(self, test: str, removing: set[str], going: set[str], gone: set[tuple[str, int]]) -> str | None:
        """Why ``test`` cannot go with ``removing`` (the keys) and ``going`` (the tests), or None."""
        if test in self.live:
            return self.live[test]
        missing = sorted(self.needs.get(test, set()) - removing - going)
        if missing:
            return f"it also refers to {missing[0]}, which stays"
        asking = sorted(self.requesters.get(test, set()) - going)
        if asking:
            return f"{asking[0]} asks for it as a fixture"
        for m in self.matches.get(test, ()):
            rule = RULES.get(m.reference.kind)
            if m.reference.kind in REMOVABLE_KINDS or (rule is not None and rule.own) or within(m, gone):
                continue
            return f"{m.reference} refers to it"
        return None


def find_companions(
    tree: Tree, targets: dict[str, Target], matches: dict[str, list[Match]], is_test: Callable[[str], bool]
) -> TestCompanions:
    """Every companion of the keys ``targets`` (and of companions, for a few rounds), with their findings."""
    found = TestCompanions()
    fresh = _around(tree, matches, is_test, set(targets), found.needs)
    for _ in range(_MAX_ROUNDS):
        if not fresh:
            break
        located = locate(tree, sorted(fresh))
        collect(tree, located)
        new_matches = {}
        for key, target in located.items():
            if target.definitions:
                found.targets[key] = target
                new_matches[key] = found.matches[key] = match(tree, target)
        fresh = _around(tree, new_matches, is_test, set(targets) | set(found.targets), found.needs)
    by_fqn = {fqn: key for key, t in (*targets.items(), *found.targets.items()) for fqn in t.fqns}
    for key, target in found.targets.items():
        _read(tree, key, target, by_fqn, is_test, found)
    return found


def _around(
    tree: Tree,
    matches: dict[str, list[Match]],
    is_test: Callable[[str], bool],
    known: set[str],
    needs: dict[str, set[str]],
) -> set[str]:
    """The outermost functions of test files that the findings ``matches`` lie in, not already ``known``.

    Each needs the keys whose findings it holds gone (``needs``): it exists for them, so it goes only with them.
    A name in a string (``"hello world"``) is not code a test exercises: it makes no companion.
    """
    around: set[str] = set()
    for key, findings in matches.items():
        for m in findings:
            site, path, kind = m.site, m.reference.path, m.reference.kind
            if site is None or not site.enclosing or kind in REMOVABLE_KINDS or kind in TEXT_KINDS or not is_test(path):
                continue
            outer = definitions_by_line(tree, path).get(site.enclosing[0])
            if outer is None or outer.key == key:
                continue
            needs.setdefault(outer.key, set()).add(key)
            if outer.key not in known:
                around.add(outer.key)
    return around


def _read(
    tree: Tree,
    key: str,
    target: Target,
    by_fqn: dict[str, str],
    is_test: Callable[[str], bool],
    found: TestCompanions,
) -> None:
    """What one companion refers to (planned keys it needs gone, live code), and who asks for it as a fixture."""
    needs = found.needs.setdefault(key, set())
    for info in target.infos:
        d = info.definition
        for decorator in info.decorators:
            func = decorator.func if isinstance(decorator, ast.Call) else decorator
            if dotted(func, info.scope) & FIXTURES:
                if isinstance(decorator, ast.Call) and any(
                    k.arg == "autouse" and not (isinstance(k.value, ast.Constant) and not k.value.value)
                    for k in decorator.keywords
                ):
                    found.live.setdefault(key, f"{d.path}:{d.line} is an autouse fixture")
                found.requesters[key] = _asking_for(tree, target.bare_name, is_test) - {key}
        scanned = tree.file(d.path)
        if scanned is None:
            continue
        everything, _strings = scanned.occurrences()
        for sites in everything.values():
            for site in sites:
                if d.line not in site.enclosing or site.shape not in ("name", "attribute"):
                    continue
                for fqn in sorted(site.fqns):
                    planned = by_fqn.get(fqn)
                    if planned is not None:
                        if planned != key:
                            needs.add(planned)
                        continue
                    home = _module_file(tree, fqn)
                    if home is not None and not is_test(home):
                        found.live.setdefault(key, f"it also exercises {fqn} ({d.path}:{site.line}), which stays")
        for request, routes in requested(tree, d.path, d.line):  # a URL it requests reaches those views
            for route in routes:
                planned = next((by_fqn[f] for f in sorted(route.view) if f in by_fqn), None)
                if planned is not None:
                    if planned != key:
                        needs.add(planned)
                elif not is_test(route.path):  # a view of the tests' own app is not live code
                    found.live.setdefault(key, f"it also requests {request.shown} ({d.path}:{request.line}), "
                                               f"whose view {min(route.view)} stays")


def _module_file(tree: Tree, fqn: str) -> str | None:
    """The in-tree file that defines ``fqn`` (None for a module itself, or for anything outside the tree)."""
    modules = tree.modules()
    if fqn in modules:
        return None
    parts = fqn.split(".")
    for i in range(len(parts) - 1, 0, -1):
        paths = modules.get(".".join(parts[:i]))
        if paths:
            return paths[0]
    return None


def _asking_for(tree: Tree, name: str, is_test: Callable[[str], bool]) -> set[str]:
    """The functions of test files that have a parameter ``name`` (pytest hands them the fixture of that name)."""
    asking: set[str] = set()
    for path in tree.containing([name]):
        if not is_test(path):
            continue
        scanned = tree.file(path)
        if scanned is None or scanned.tree is None:
            continue
        by_line = definitions_by_line(tree, path)
        for node in ast.walk(scanned.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                if any(a.arg == name for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)):
                    d = by_line.get(node.lineno)
                    if d is not None:
                        asking.add(d.key)
    return asking

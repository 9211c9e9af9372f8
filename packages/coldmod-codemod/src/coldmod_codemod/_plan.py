"""``plan_removal``: what removing some functions would change, and whether it is safe.

A plan is computed without touching the tree: per-file new sources, a
unified diff and a verdict per key. :func:`coldmod_codemod.apply` writes it.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import gc
import hashlib
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import libcst as cst

from coldmod_codemod._conventions import is_test_file
from coldmod_codemod._imports import lost_modules, orphaned_imports
from coldmod_codemod._references import (
    IMPORT,
    REMOVABLE_KINDS,
    Definition,
    FileFailure,
    Match,
    Reference,
    Target,
    Tree,
    collect,
    locate,
    match,
    within,
)
from coldmod_codemod._routes import with_requests
from coldmod_codemod._rules import REVIEW, RULES, SAFE, SIDE_EFFECTS, TEST_ONLY, UNSAFE, VERDICTS, worst
from coldmod_codemod._testonly import TestCompanions, definitions_by_line, find_companions
from coldmod_codemod._transform import RemovalTransformer
from coldmod_codemod._why import DEFINITION as DEFINITION_GROUP
from coldmod_codemod._why import Place, ReasonGroup, group_of, grouped

__all__ = ["FileEdit", "Progress", "RemovalPlan", "Verdict", "plan_removal"]

_NOT_FOUND = "no function with this key under the root"


@dataclass(frozen=True)
class Verdict:
    """One key's verdict (``safe``, ``test-only``, ``review`` or ``unsafe``), its reasons, and whether it goes.

    ``reasons``: ``path:line kind`` for each definite reference, and
    ``path:line kind (sentence)`` for each review finding (see ``_rules.RULES``),
    ``(in a test)`` for one inside a test function. A key defined nowhere, or
    one that cannot be edited cleanly, is unsafe with that problem as its
    reason. ``groups``: the same findings by where they come from, sites
    deduplicated (see ``_why``): what the front ends print. ``tests``: the
    test functions and fixtures that go with it (``include`` with ``test-only``).
    """

    key: str
    verdict: str
    removed: bool
    reasons: tuple[str, ...] = ()
    references: tuple[Reference, ...] = ()
    groups: tuple[ReasonGroup, ...] = ()
    tests: tuple[str, ...] = ()

    @property
    def safe(self) -> bool:
        """Whether nothing refers to the key by any route the tool knows (``verdict == "safe"``)."""
        return self.verdict == SAFE

    def __str__(self) -> str:
        """``key: verdict`` with the reasons, one line."""
        state = self.verdict
        if self.removed and self.verdict == TEST_ONLY:
            state += ", removed with its tests"
        elif self.removed and self.verdict != SAFE:
            state += ", removed anyway"
        elif not self.removed and self.verdict == SAFE:
            state += ", not removed"
        return f"{self.key}: {state}" + (f" ({'; '.join(self.reasons)})" if self.reasons else "")


@dataclass(frozen=True)
class FileEdit:
    """The new content of one file; ``digest`` is the SHA-256 of the content the plan was made from."""

    path: str
    old: bytes
    new: bytes
    encoding: str
    digest: str

    def diff(self) -> str:
        """A unified diff of this file (``a/path`` → ``b/path``)."""
        old = self.old.decode(self.encoding).splitlines(keepends=True)
        new = self.new.decode(self.encoding).splitlines(keepends=True)
        lines = difflib.unified_diff(old, new, f"a/{self.path}", f"b/{self.path}")
        out = []
        for line in lines:
            out.append(line)
            if not line.endswith(("\n", "\r")):
                out.append("\n\\ No newline at end of file\n")
        return "".join(out)


@dataclass(frozen=True)
class RemovalPlan:
    """Everything removing ``keys`` would change; nothing is written until :func:`apply`."""

    root: str
    keys: tuple[str, ...]
    force: bool
    edits: tuple[FileEdit, ...] = ()
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    failures: tuple[FileFailure, ...] = ()
    #: The test functions and fixtures that go with the removed keys.
    tests: tuple[str, ...] = ()
    #: For the include asked and each of ``plan_removal(levels=...)``, named by its worst verdict: the keys
    #: it removes, each computed to its fixpoint on the same index.
    levels: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def removed(self) -> list[str]:
        """The keys this plan removes."""
        return [k for k, v in self.verdicts.items() if v.removed]

    @property
    def unsafe(self) -> list[str]:
        """The keys that are not safe (verdict ``test-only``, ``review`` or ``unsafe``)."""
        return [k for k, v in self.verdicts.items() if not v.safe]

    def by_verdict(self, verdict: str) -> list[str]:
        """The keys whose verdict is ``verdict`` (``safe``, ``test-only``, ``review`` or ``unsafe``)."""
        return [k for k, v in self.verdicts.items() if v.verdict == verdict]

    def diff(self) -> str:
        """A unified diff of every file the plan changes."""
        return "".join(edit.diff() for edit in self.edits)


#: A callback ``progress(done, total)``, counted in steps: files read, keys judged, files edited.
#: ``total`` grows when the files to edit are known; the last call has ``done == total``.
Progress = Callable[[int, int], None]


class _Ticker:
    """Counts steps and reports them to a ``Progress`` callback, at most once per percent."""

    def __init__(self, callback: Progress | None, total: int) -> None:
        self.callback, self.done, self.total, self._shown = callback, 0, max(total, 1), -1

    def __call__(self, steps: int = 1) -> None:
        """Count ``steps`` more done."""
        self.done = min(self.done + steps, self.total)
        percent = self.done * 100 // self.total
        if self.callback is not None and (percent != self._shown or self.done == self.total):
            self._shown = percent
            self.callback(self.done, self.total)

    def grow(self, steps: int) -> None:
        """Add ``steps`` to the total (the edits, once known)."""
        self.total += steps


def plan_removal(
    root: str | os.PathLike[str],
    keys: Iterable[str],
    *,
    include: Iterable[str] = (SAFE,),
    force: bool = False,
    files: Iterable[str] | None = None,
    progress: Progress | None = None,
    tests: Callable[[str], bool] | None = None,
    levels: Iterable[Iterable[str]] = (),
) -> RemovalPlan:
    """Plan removing the functions ``keys`` under ``root``, with their imports and ``__all__`` entries.

    Each key gets a verdict (``safe``, ``test-only``, ``review``, ``unsafe``,
    see ``_rules``); only keys whose verdict is in ``include`` are removed —
    ``("safe",)`` by default. ``test-only`` in ``include`` removes a key whose
    only references lie in test functions together with those tests and
    fixtures (when they exist for nothing else, see ``_testonly``); ``review``
    takes the review ones. With ``force`` every key found is removed whatever
    its verdict, and each statement still referring to it gets a TODO comment.
    ``files`` (root-relative) limits the files searched; by default every
    Python file under the root. ``tests(path)`` says whether a root-relative
    path is test code (default: the tracer's table, ``_conventions.is_test_file``).
    ``levels``: other ``include`` sets to compute too, on the same index and
    to the same fixpoint; ``RemovalPlan.levels`` then says what each removes.
    ``progress(done, total)`` is called as files are read and edited.
    """
    allowed = _allowed(include)
    other_levels = [] if force else [_allowed(level) for level in levels]
    with _without_cycle_collection():
        return _plan(root, keys, allowed, other_levels, force, files, progress, tests)


def _plan(
    root: str | os.PathLike[str],
    keys: Iterable[str],
    allowed: frozenset[str],
    other_levels: list[frozenset[str]],
    force: bool,
    files: Iterable[str] | None,
    progress: Progress | None,
    tests: Callable[[str], bool] | None,
) -> RemovalPlan:
    is_test = functools.cache(tests or is_test_file)  # asked once per finding: millions on a large tree
    wanted = list(dict.fromkeys(keys))
    tree = Tree(root, files)
    tick = _Ticker(progress, len(tree.paths) + len(wanted))
    targets = locate(tree, wanted)
    collect(tree, targets, tick)
    matches = {}
    for key, target in targets.items():
        matches[key] = with_requests(tree, target, match(tree, target), is_test)  # tests that request its URL too
        tick()
    wants_tests = not force and any(TEST_ONLY in a for a in (allowed, *other_levels))
    companions = find_companions(tree, targets, matches, is_test) if wants_tests else TestCompanions()
    work = _Work(tree, targets, matches, companions, is_test, force)
    outcome = work.settle(allowed, tick, write=True)
    levels_removed = {}
    for level in other_levels:
        removing = work.settle(level, tick).removing
        levels_removed[_level_name(level)] = tuple(k for k in wanted if k in removing)
    levels_removed[_level_name(allowed)] = tuple(k for k in wanted if k in outcome.removing)
    broken = dict(outcome.broken)
    for key, target in targets.items():
        if not target.definitions:  # say why, when its file could not be parsed
            failed = [str(tree.failures[p]) for p in tree.defining_files(key) if p in tree.failures]
            broken[key] = "; ".join(failed) or _NOT_FOUND
    judge = _Judge(work, outcome)
    verdicts = {key: judge.verdict(key, broken.get(key), outcome.held.get(key)) for key in wanted}
    failures = tuple(tree.failures[p] for p in sorted(tree.failures))
    tick(tick.total)
    return RemovalPlan(
        str(root), tuple(wanted), force, tuple(outcome.edits), verdicts, failures,
        tests=tuple(sorted(outcome.going)), levels=levels_removed,
    )


_collection_lock = threading.Lock()
_plans_running = 0
_collection_was_enabled = False


@contextlib.contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """Pause Python's cycle collector while plans run (it is put back as it was when the last one ends).

    A plan makes millions of objects (syntax trees, scopes, sites, findings) that all live until it
    returns; the collector's full passes over them were 40 % of planning a large tree. Reference
    counting still frees what dies meanwhile; cycles wait for the collector's next pass.
    """
    global _plans_running, _collection_was_enabled
    with _collection_lock:
        if _plans_running == 0:
            _collection_was_enabled = gc.isenabled()
            gc.disable()
        _plans_running += 1
    try:
        yield
    finally:
        with _collection_lock:
            _plans_running -= 1
            if _plans_running == 0 and _collection_was_enabled:
                gc.enable()


def _allowed(include: Iterable[str]) -> frozenset[str]:
    """The verdicts an ``include`` removes (``safe`` always); a word not in ``VERDICTS`` is a ValueError."""
    allowed = frozenset(include) | {SAFE}
    unknown = allowed - set(VERDICTS)
    if unknown:
        raise ValueError(
            f"include: unknown verdict(s) {sorted(unknown)}; use {', '.join(repr(v) for v in VERDICTS)}"
        )
    return allowed


def _level_name(allowed: frozenset[str]) -> str:
    """An include set's name in ``RemovalPlan.levels``: its worst verdict (``safe``, ``test-only``, ``review``)."""
    return worst(sorted(allowed))


@dataclass
class _Outcome:
    """One include level settled: the keys and tests it removes, the edits (when written), and who is held."""

    removing: set[str]
    going: set[str]
    edits: list[FileEdit]
    broken: dict[str, str]
    held: dict[str, Reference]
    refused: dict[str, str]  # test companion -> why it stays


@dataclass
class _Work:
    """What every include level shares: the index, each key's findings, and the test functions around them."""

    tree: Tree
    targets: dict[str, Target]
    matches: dict[str, list[Match]]
    companions: TestCompanions
    is_test: Callable[[str], bool]
    force: bool

    def settle(self, allowed: frozenset[str], tick: _Ticker, *, write: bool = False) -> _Outcome:
        """The fixpoint for one include level: remove, see what cannot be edited or is held, remove less, again.

        ``write``: also build the new sources (the other levels only need to know what they remove).
        """
        everything = {**self.targets, **self.companions.targets}
        findings = {**self.matches, **self.companions.matches}
        broken: dict[str, str] = {}
        held: dict[str, Reference] = {}
        edit_allowed = frozenset(VERDICTS) if self.force else allowed
        while True:
            excluded = set(broken) | set(held)
            removing = _removable(self.targets, self.matches, allowed, self.force, excluded)
            going: set[str] = set()
            refused: dict[str, str] = {}
            if TEST_ONLY in allowed and not self.force:
                removing, going, refused = _with_tests(self, allowed, removing, excluded)
            edits, bad, hold = _edit(
                self.tree, everything, findings, removing | going, edit_allowed, tick, self.is_test, write=write
            )
            if not bad and not hold:
                return _Outcome(removing, going, edits, broken, held, refused)
            for key, reason in bad.items():
                broken.setdefault(key, reason)
            for key, ref in hold.items():
                held.setdefault(key, ref)


def _with_tests(
    work: _Work, allowed: frozenset[str], candidates: set[str], excluded: set[str]
) -> tuple[set[str], set[str], dict[str, str]]:
    """The keys to remove and the test functions that go with them, at a level that includes ``test-only``.

    Start from every found key and every test companion, and drop what is
    still held: a key by a finding outside what goes, a test by what it
    needs (see ``TestCompanions.stays``). A cluster, test functions
    included, goes together or not at all.
    """
    companions = work.companions
    removing = {k for k, t in work.targets.items() if t.definitions and k not in excluded}
    going = set(companions.targets) - excluded
    blockers = {k: _blocking(work.matches[k], allowed) for k in removing}
    lines = {**work.targets, **companions.targets}
    refused: dict[str, str] = {}
    while True:
        gone = _removed_lines(lines, removing | going)
        kept = {k for k in removing if any(not within(m, gone) for m in blockers[k])}
        stays = {}
        for test in going:
            why = companions.stays(test, removing, going, gone)
            if why:
                stays[test] = why
        if not kept and not stays:
            return removing, going, refused
        removing -= kept
        going -= set(stays)
        refused.update(stays)


def _remaining(found: list[Match], gone: set[tuple[str, int]]) -> list[Match]:
    """The findings not inside the definitions ``gone`` (``(path, def line)``), which go away with them."""
    return [m for m in found if not within(m, gone)]


def _removed_lines(targets: dict[str, Target], removing: set[str]) -> set[tuple[str, int]]:
    """``(path, def line)`` of every definition of the keys ``removing``."""
    return {(d.path, d.line) for k in removing for d in targets[k].definitions}


def _blocking(matches: list[Match], allowed: frozenset[str] = frozenset({SAFE})) -> list[Match]:
    """The findings that keep a key in place: not removable, and of a verdict not allowed."""
    return [m for m in matches if m.reference.kind not in REMOVABLE_KINDS and m.reference.verdict not in allowed]


def _removable(
    targets: dict[str, Target],
    matches: dict[str, list[Match]],
    allowed: frozenset[str],
    force: bool,
    excluded: set[str],
) -> set[str]:
    """The keys to remove: found ones whose findings are all allowed (or all, with ``force``)."""
    removing = {k for k, t in targets.items() if t.definitions and k not in excluded}
    if force:
        return removing
    # A reference from inside another removed function does not count, unless
    # that one is kept itself: shrink until nothing changes. Only the findings
    # that would block are looked at, and a key stops at its first one.
    blockers = {k: _blocking(matches[k], allowed) for k in removing}
    while True:
        gone = _removed_lines(targets, removing)
        kept = {k for k in removing if any(not within(m, gone) for m in blockers[k])}
        if not kept:
            return removing
        removing -= kept


_RANK = {verdict: rank for rank, verdict in enumerate(VERDICTS)}


class _Judge:
    """Each key's verdict once its level is settled: its findings outside the removed code, grouped."""

    def __init__(self, work: _Work, outcome: _Outcome) -> None:
        self.work, self.outcome = work, outcome
        # Test functions that go do not hide a key's findings: they are why it is test-only.
        self.gone = _removed_lines(work.targets, outcome.removing)
        self._defs: dict[str, dict[int, Definition]] = {}
        self._sites: dict[int, tuple[bool, bool, str | None]] = {}  # id(site) -> _facts

    def verdict(self, key: str, broken: str | None, held: Reference | None) -> Verdict:
        """The key's verdict, reasons and groups; ``broken``: why it cannot be edited, ``held``: why it is held."""
        target, found = self.work.targets[key], self.work.matches[key]
        if not target.definitions:
            return Verdict(key, UNSAFE, removed=False, reasons=(broken or _NOT_FOUND,))
        own = {(d.path, d.line) for d in target.definitions}
        own_paths = {d.path for d in target.definitions}
        rated: list[tuple[int, str, Match, str | None]] = []  # (rank, rating, finding, referrer), one pass
        for m in _blocking(found):
            gone, in_test, referrer = self._facts(m)
            ref = m.reference
            if gone or (ref.path in own_paths and within(m, own)):
                continue
            rating = self._rating(m, in_test)
            rated.append((_RANK[rating], rating, m, referrer))
        rated.sort(key=lambda r: (-r[0], r[2].reference.path, r[2].reference.line))
        findings = [m for _, _, m, _ in rated]
        refs = tuple(m.reference for m in findings) + ((held,) if held else ())
        reasons = tuple(_reason(m.reference, rating) for _, rating, m, _ in rated) + ((held.reason,) if held else ())
        verdict = worst([rating for _, rating, _, _ in rated] + ([held.verdict] if held else []))
        reasons += tuple(self._tests_staying(findings))
        if broken is not None:
            reasons += (broken,)
            verdict = UNSAFE
        places = [self._place(m.reference, referrer) for _, _, m, referrer in rated]
        if held:
            places.append((DEFINITION_GROUP, Place(held.path, held.line, held.kind)))
        removed = key in self.outcome.removing
        tests = tuple(sorted(self._around(findings) & self.outcome.going)) if removed and self.outcome.going else ()
        return Verdict(key, verdict, removed, reasons, refs, grouped(places), tests)

    def _rating(self, m: Match, in_test_function: bool) -> str:
        """The verdict one finding gives: its rule's, or ``test-only`` for a use inside a function of a test file."""
        rule = RULES.get(m.reference.kind)
        if in_test_function and rule is not None and not rule.own:
            return min(rule.verdict, TEST_ONLY, key=_RANK.__getitem__)
        return m.reference.verdict

    def _in_test_function(self, m: Match) -> bool:
        return self._facts(m)[1]

    def _facts(self, m: Match) -> tuple[bool, bool, str | None]:
        """Of a finding's site: inside removed code, inside a function of a test file, its innermost referrer.

        The same for every key the site may refer to (a common name's thousands of sites are matched
        against dozens of keys each), so each is worked out once per site.
        """
        site = m.site
        if site is None or not site.enclosing:
            return False, False, None
        found = self._sites.get(id(site))
        if found is None:
            path = m.reference.path
            inner = self._definitions(path).get(site.enclosing[-1])
            found = self._sites[id(site)] = (
                any((path, line) in self.gone for line in site.enclosing),
                self.work.is_test(path),
                inner.key if inner else None,
            )
        return found

    def _definitions(self, path: str) -> dict[int, Definition]:
        if path not in self._defs:
            self._defs[path] = definitions_by_line(self.work.tree, path)
        return self._defs[path]

    def _referrer(self, m: Match, innermost: bool = True) -> str | None:
        """The key of the function the finding lies in (innermost, or outermost), None at module level."""
        if m.site is None or not m.site.enclosing:
            return None
        found = self._definitions(m.reference.path).get(m.site.enclosing[-1 if innermost else 0])
        return found.key if found else None

    def _place(self, ref: Reference, referrer: str | None) -> tuple[str, Place]:
        group = group_of(ref.kind, in_test=self.work.is_test(ref.path), referrer_cold=referrer in self.work.targets)
        return group, Place(ref.path, ref.line, ref.kind, referrer, ref.detail)

    def _around(self, findings: list[Match]) -> set[str]:
        """The outermost test functions the findings lie in."""
        around = set()
        for m in findings:
            if self._in_test_function(m):
                outer = self._referrer(m, innermost=False)
                if outer is not None:
                    around.add(outer)
        return around

    def _tests_staying(self, findings: list[Match]) -> list[str]:
        """For each test function around the findings that cannot go (at a level with tests), why."""
        refused = self.outcome.refused
        if not refused:
            return []
        return [f"{test} stays: {refused[test]}" for test in sorted(self._around(findings)) if test in refused]


def _reason(ref: Reference, rating: str) -> str:
    """``path:line kind``, with the rule's sentence for a review finding, or ``(in a test)``."""
    if rating == TEST_ONLY:
        return f"{ref} (in a test)"
    return ref.reason


@dataclass
class FileChanges:
    """What to do to one file: definitions and nodes to remove, TODOs to add, for which keys."""

    definitions: list[cst.FunctionDef] = field(default_factory=list)
    removed: list[cst.CSTNode] = field(default_factory=list)
    todos: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    keys: set[str] = field(default_factory=set)
    lineage: set[int] = field(default_factory=set)  # ids of the statements that contain a change

    def transformer(self) -> RemovalTransformer:
        """The transformer that makes these changes (on the paired module's own nodes)."""
        return RemovalTransformer(self.definitions, self.removed, self.todos, only=self.lineage)


def changes(
    tree: Tree,
    targets: dict[str, Target],
    matches: dict[str, list[Match]],
    removing: set[str],
    allowed: frozenset[str] = frozenset(VERDICTS),
    is_test: Callable[[str], bool] = is_test_file,
) -> tuple[dict[str, FileChanges], dict[str, str], dict[str, Reference]]:
    """Per file, what removing the keys ``removing`` changes.

    Also returns the keys whose sites LibCST cannot find (with why), and the
    keys held back for review because removing them would drop the last import
    of an in-tree module from a file that is not a test (when ``review`` is
    not ``allowed``).
    """
    per_file: dict[str, FileChanges] = defaultdict(FileChanges)
    bad: dict[str, str] = {}
    gone = _removed_lines(targets, removing)
    dropped: dict[str, list[tuple[int, set[str]]]] = defaultdict(list)  # path -> (id(ast alias), keys)
    for key in sorted(removing):
        for d in targets[key].definitions:
            parsed = tree.cst(d.path)
            node = parsed.defs.get(d.line) if parsed else None
            if parsed is None or node is None:
                bad[key] = str(tree.failures.get(d.path) or f"{d.path}:{d.line}: cannot edit the definition")
                continue
            per_file[d.path].definitions.append(node)
            per_file[d.path].keys.add(key)
            per_file[d.path].lineage.update(parsed.lineage(node))
        for m in _remaining(matches[key], gone):
            site, ref = m.site, m.reference
            if site is None:
                continue
            removable = ref.kind in REMOVABLE_KINDS
            if not removable and (ref.verdict != UNSAFE or site.shape == "mention"):
                continue  # a possible use (review) is the user's to judge: no TODO, and never before a docstring
            parsed = tree.cst(ref.path)
            found: cst.CSTNode | None = None
            if parsed is not None:
                # An import or __all__ entry is removed; a definite reference gets a TODO on its statement.
                found = parsed.nodes.get(site.node_id) if removable else parsed.statements.get(site.statement_line)
            if parsed is None or found is None:
                bad[key] = str(tree.failures.get(ref.path) or f"{ref}: cannot edit this reference")
                continue
            change = per_file[ref.path]
            change.keys.add(key)
            change.lineage.update(parsed.lineage(found))
            if removable:
                change.removed.append(found)
                if ref.kind == IMPORT:
                    dropped[ref.path].append((site.node_id, {key}))
            elif key not in change.todos[id(found)]:
                change.todos[id(found)].append(key)
    held = _clean_imports(tree, targets, per_file, removing, dropped, bad, is_test) if not bad else {}
    if REVIEW in allowed:
        held = {}
    return per_file, bad, held


def _clean_imports(
    tree: Tree,
    targets: dict[str, Target],
    per_file: dict[str, FileChanges],
    removing: set[str],
    dropped: dict[str, list[tuple[int, set[str]]]],
    bad: dict[str, str],
    is_test: Callable[[str], bool],
) -> dict[str, Reference]:
    """Remove the imports only the removed code used, in the files it edits; hold keys that would drop a module."""
    for path, change in sorted(per_file.items()):
        if not change.definitions:
            continue
        scanned, parsed = tree.file(path), tree.cst(path)
        if scanned is None or parsed is None:
            continue
        key_at = {d.line: k for k in removing for d in targets[k].definitions if d.path == path}
        for orphan in orphaned_imports(tree, scanned, set(key_at)):
            node = parsed.nodes.get(orphan.alias_id)
            if node is None:
                for key in {key_at[line] for line in orphan.users}:
                    bad[key] = f"{path}:{orphan.line}: cannot edit the import it leaves unused"
                continue
            change.removed.append(node)
            change.lineage.update(parsed.lineage(node))
            dropped[path].append((orphan.alias_id, {key_at[line] for line in orphan.users}))
    return _lost_modules(tree, targets, removing, dropped, is_test)


def _lost_modules(
    tree: Tree,
    targets: dict[str, Target],
    removing: set[str],
    dropped: dict[str, list[tuple[int, set[str]]]],
    is_test: Callable[[str], bool],
) -> dict[str, Reference]:
    """The keys held for review because the imports they drop (``dropped``) are a file's last of an in-tree module."""
    held: dict[str, Reference] = {}
    for path, aliases in sorted(dropped.items()):
        scanned = tree.file(path)
        if scanned is None or is_test(path):
            continue  # a test module's imports register nothing production runs
        gone_lines = [(d.start_line, d.end_line) for k in removing for d in targets[k].definitions if d.path == path]
        for _alias, keys, line in lost_modules(tree, scanned, {a for a, _ in aliases}, gone_lines, aliases):
            for key in keys:
                held.setdefault(key, Reference(key, path, line, 0, SIDE_EFFECTS, False))
    return held


def _settle_without_edits(
    tree: Tree,
    targets: dict[str, Target],
    matches: dict[str, list[Match]],
    removing: set[str],
    allowed: frozenset[str],
    is_test: Callable[[str], bool],
) -> tuple[dict[str, str], dict[str, Reference]]:
    """What ``changes`` finds about keys (cannot be edited, held), from ``ast`` alone: for the levels not written.

    LibCST parsing is what editing costs; a level that is only counted does not
    pay it. The keys a file LibCST already failed on cannot be edited, as in
    ``changes``; one that only LibCST would fail on (ast parses it) is the one
    case the count could differ from the run, which then reports it as unsafe.
    """
    bad: dict[str, str] = {}
    gone = _removed_lines(targets, removing)
    dropped: dict[str, list[tuple[int, set[str]]]] = defaultdict(list)
    defining: dict[str, dict[int, str]] = defaultdict(dict)
    for key in sorted(removing):
        for d in targets[key].definitions:
            defining[d.path][d.line] = key
            if d.path in tree.failures:
                bad[key] = str(tree.failures[d.path])
        for m in _remaining(matches[key], gone):
            if m.site is not None and m.reference.kind == IMPORT:
                dropped[m.reference.path].append((m.site.node_id, {key}))
    if REVIEW in allowed or bad:
        return bad, {}
    for path, key_at in sorted(defining.items()):
        scanned = tree.file(path)
        if scanned is None:
            continue
        for orphan in orphaned_imports(tree, scanned, set(key_at)):
            dropped[path].append((orphan.alias_id, {key_at[line] for line in orphan.users}))
    return bad, _lost_modules(tree, targets, removing, dropped, is_test)


def _edit(
    tree: Tree,
    targets: dict[str, Target],
    matches: dict[str, list[Match]],
    removing: set[str],
    allowed: frozenset[str],
    tick: _Ticker,
    is_test: Callable[[str], bool] = is_test_file,
    *,
    write: bool = True,
) -> tuple[list[FileEdit], dict[str, str], dict[str, Reference]]:
    """New sources for every file touched by removing ``removing``; keys that cannot be removed cleanly or are held.

    Without ``write`` only the keys are found, from ``ast`` (``_settle_without_edits``): what another include
    level needs.
    """
    if not write:
        bad, held = _settle_without_edits(tree, targets, matches, removing, allowed, is_test)
        return [], bad, held
    # LibCST parses the files with definitions to remove first: the slow part, so it is what progress counts.
    unparsed = sorted({d.path for k in removing for d in targets[k].definitions} - set(tree.cst_files))
    tick.grow(len(unparsed))
    for path in unparsed:
        tree.cst(path)
        tick()
    per_file, bad, held = changes(tree, targets, matches, removing, allowed, is_test)
    if bad or held:
        return [], bad, held
    edits: list[FileEdit] = []
    for path, change in sorted(per_file.items()):
        parsed = tree.cst(path)
        assert parsed is not None  # changes() found nodes in it
        new = parsed.module.visit(change.transformer()).bytes
        if new == parsed.source:
            continue
        problem = _check(parsed.path, parsed.source, new)
        if problem:
            for key in change.keys:
                bad[key] = f"{path}: removal would leave invalid code ({problem}); please report this"
            continue
        digest = hashlib.sha256(parsed.source).hexdigest()
        edits.append(FileEdit(path, parsed.source, new, parsed.module.encoding, digest))
    return edits, bad, held


def _check(path: str, old: bytes, new: bytes) -> str | None:
    """Why the new source does not compile, if the old one did."""
    try:
        compile(new, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        try:
            compile(old, path, "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            return None  # it did not compile before either: not ours to judge
        return str(exc)
    return None

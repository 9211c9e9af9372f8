"""``plan_removal``: what removing some functions would change, and whether it is safe.

A plan is computed without touching the tree: per-file new sources, a
unified diff and a verdict per key. :func:`coldmod_codemod.apply` writes it.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import libcst as cst

from coldmod_codemod._imports import lost_modules, orphaned_imports
from coldmod_codemod._references import (
    IMPORT,
    REMOVABLE_KINDS,
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
from coldmod_codemod._rules import REVIEW, SAFE, UNSAFE, VERDICTS, worst
from coldmod_codemod._transform import RemovalTransformer

__all__ = ["FileEdit", "Progress", "RemovalPlan", "Verdict", "plan_removal"]

_NOT_FOUND = "no function with this key under the root"


@dataclass(frozen=True)
class Verdict:
    """One key's verdict (``safe``, ``review`` or ``unsafe``), its reasons, and whether the plan removes it.

    ``reasons``: ``path:line kind`` for each definite reference, and
    ``path:line kind (sentence)`` for each review finding (see ``_rules.RULES``).
    A key defined nowhere, or one that cannot be edited cleanly, is unsafe with
    that problem as its reason.
    """

    key: str
    verdict: str
    removed: bool
    reasons: tuple[str, ...] = ()
    references: tuple[Reference, ...] = ()

    @property
    def safe(self) -> bool:
        """Whether nothing refers to the key by any route the tool knows (``verdict == "safe"``)."""
        return self.verdict == SAFE

    def __str__(self) -> str:
        """``key: verdict`` with the reasons, one line."""
        state = self.verdict
        if self.removed and self.verdict != SAFE:
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

    @property
    def removed(self) -> list[str]:
        """The keys this plan removes."""
        return [k for k, v in self.verdicts.items() if v.removed]

    @property
    def unsafe(self) -> list[str]:
        """The keys that are not safe (verdict ``review`` or ``unsafe``)."""
        return [k for k, v in self.verdicts.items() if not v.safe]

    def by_verdict(self, verdict: str) -> list[str]:
        """The keys whose verdict is ``verdict`` (``safe``, ``review`` or ``unsafe``)."""
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
) -> RemovalPlan:
    """Plan removing the functions ``keys`` under ``root``, with their imports and ``__all__`` entries.

    Each key gets a verdict (``safe``, ``review``, ``unsafe``, see
    ``_rules.RULES``); only keys whose verdict is in ``include`` are removed —
    ``("safe",)`` by default, ``("safe", "review")`` to take the review ones
    too. With ``force`` every key found is removed whatever its verdict, and
    each statement still referring to it gets a TODO comment. ``files``
    (root-relative) limits the files searched; by default every Python file
    under the root. ``progress(done, total)`` is called as files are read and
    edited.
    """
    allowed = frozenset(include) | {SAFE}
    unknown = allowed - set(VERDICTS)
    if unknown:
        raise ValueError(f"include: unknown verdict(s) {sorted(unknown)}; use 'safe', 'review' or 'unsafe'")
    wanted = list(dict.fromkeys(keys))
    tree = Tree(root, files)
    tick = _Ticker(progress, len(tree.paths) + len(wanted))
    targets = locate(tree, wanted)
    collect(tree, targets, tick)
    matches = {}
    for key, target in targets.items():
        matches[key] = match(tree, target)
        tick()
    broken: dict[str, str] = {}
    held: dict[str, Reference] = {}
    while True:
        removing = _removable(targets, matches, allowed, force, excluded=set(broken) | set(held))
        edits, bad, hold = _edit(tree, targets, matches, removing, frozenset(VERDICTS) if force else allowed, tick)
        if not bad and not hold:
            break
        for key, reason in bad.items():
            broken.setdefault(key, reason)
        for key, ref in hold.items():
            held.setdefault(key, ref)
    for key, target in targets.items():
        if not target.definitions:  # say why, when its file could not be parsed
            failed = [str(tree.failures[p]) for p in tree.defining_files(key) if p in tree.failures]
            broken[key] = "; ".join(failed) or _NOT_FOUND
    gone = _removed_lines(targets, removing)
    verdicts = {
        key: _verdict(targets[key], matches[key], removing, gone, broken.get(key), held.get(key)) for key in wanted
    }
    failures = tuple(tree.failures[p] for p in sorted(tree.failures))
    tick(tick.total)
    return RemovalPlan(str(root), tuple(wanted), force, tuple(edits), verdicts, failures)


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


def _verdict(
    target: Target,
    found: list[Match],
    removing: set[str],
    gone: set[tuple[str, int]],
    broken: str | None,
    held: Reference | None,
) -> Verdict:
    """The key's verdict: its findings outside the removed definitions (``gone``) and its own."""
    if not target.definitions:
        return Verdict(target.key, UNSAFE, removed=False, reasons=(broken or _NOT_FOUND,))
    own = {(d.path, d.line) for d in target.definitions}
    findings = [m for m in _blocking(found) if not within(m, gone) and not within(m, own)]
    findings.sort(key=lambda m: (-VERDICTS.index(m.reference.verdict), m.reference.path, m.reference.line))
    refs = tuple(m.reference for m in findings) + ((held,) if held else ())
    reasons = tuple(r.reason for r in refs)
    verdict = worst([r.verdict for r in refs])
    if broken is not None:
        reasons += (broken,)
        verdict = UNSAFE
    return Verdict(target.key, verdict, removed=target.key in removing, reasons=reasons, references=refs)


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
) -> tuple[dict[str, FileChanges], dict[str, str], dict[str, Reference]]:
    """Per file, what removing the keys ``removing`` changes.

    Also returns the keys whose sites LibCST cannot find (with why), and the
    keys held back for review because removing them would drop the last import
    of an in-tree module from a file (when ``review`` is not ``allowed``).
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
    held = _clean_imports(tree, targets, per_file, removing, dropped, bad) if not bad else {}
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
) -> dict[str, Reference]:
    """Remove the imports only the removed code used, in the files it edits; hold keys that would drop a module."""
    held: dict[str, Reference] = {}
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
    for path, aliases in sorted(dropped.items()):
        scanned = tree.file(path)
        if scanned is None:
            continue
        gone_lines = [(d.start_line, d.end_line) for k in removing for d in targets[k].definitions if d.path == path]
        for _alias, keys, line in lost_modules(tree, scanned, {a for a, _ in aliases}, gone_lines, aliases):
            for key in keys:
                held.setdefault(key, Reference(key, path, line, 0, "side-effects", False))
    return held


def _edit(
    tree: Tree,
    targets: dict[str, Target],
    matches: dict[str, list[Match]],
    removing: set[str],
    allowed: frozenset[str],
    tick: _Ticker,
) -> tuple[list[FileEdit], dict[str, str], dict[str, Reference]]:
    """New sources for every file touched by removing ``removing``; keys that cannot be removed cleanly or are held."""
    # LibCST parses the files with definitions to remove first: the slow part, so it is what progress counts.
    unparsed = sorted({d.path for k in removing for d in targets[k].definitions} - set(tree.cst_files))
    tick.grow(len(unparsed))
    for path in unparsed:
        tree.cst(path)
        tick()
    per_file, bad, held = changes(tree, targets, matches, removing, allowed)
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

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

from coldmod_codemod._references import (
    REMOVABLE_KINDS,
    FileFailure,
    Match,
    Reference,
    Target,
    Tree,
    collect,
    inside,
    locate,
    match,
)
from coldmod_codemod._rules import SAFE, UNSAFE, VERDICTS, worst
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


#: A callback ``progress(done, total)``, counted in files; ``total`` grows once, when the edits are known.
Progress = Callable[[int, int], None]


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
    targets = locate(tree, wanted)
    collect(tree, targets)
    matches = {key: match(tree, target) for key, target in targets.items()}
    broken: dict[str, str] = {}
    while True:
        removing = _removable(targets, matches, allowed, force, excluded=set(broken))
        edits, bad = _edit(tree, targets, matches, removing)
        if not bad:
            break
        for key, reason in bad.items():
            broken.setdefault(key, reason)
    for key, target in targets.items():
        if not target.definitions:  # say why, when its file could not be parsed
            failed = [str(tree.failures[p]) for p in tree.defining_files(key) if p in tree.failures]
            broken[key] = "; ".join(failed) or _NOT_FOUND
    verdicts = {key: _verdict(targets[key], matches[key], removing, targets, broken.get(key)) for key in wanted}
    failures = tuple(tree.failures[p] for p in sorted(tree.failures))
    if progress is not None:
        progress(1, 1)
    return RemovalPlan(str(root), tuple(wanted), force, tuple(edits), verdicts, failures)


def _remaining(key: str, found: list[Match], targets: dict[str, Target], removing: set[str]) -> list[Match]:
    """References of ``key`` that removing ``removing`` does not take away or deal with."""
    gone = [d for k in removing for d in targets[k].definitions]
    own = targets[key].definitions
    return [
        m for m in found
        if not inside(own, m.reference) and not inside(gone, m.reference)
    ]


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
    # that one is kept itself: shrink until nothing changes.
    while True:
        kept = {k for k in removing if _blocking(_remaining(k, matches[k], targets, removing), allowed)}
        if not kept:
            return removing
        removing -= kept


def _verdict(
    target: Target, found: list[Match], removing: set[str], targets: dict[str, Target], broken: str | None
) -> Verdict:
    if not target.definitions:
        return Verdict(target.key, UNSAFE, removed=False, reasons=(broken or _NOT_FOUND,))
    findings = _blocking(_remaining(target.key, found, targets, removing | {target.key}))
    findings.sort(key=lambda m: (-VERDICTS.index(m.reference.verdict), m.reference.path, m.reference.line))
    refs = tuple(m.reference for m in findings)
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
    tree: Tree, targets: dict[str, Target], matches: dict[str, list[Match]], removing: set[str]
) -> tuple[dict[str, FileChanges], dict[str, str]]:
    """Per file, what removing the keys ``removing`` changes; keys whose sites LibCST cannot find."""
    per_file: dict[str, FileChanges] = defaultdict(FileChanges)
    bad: dict[str, str] = {}
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
        for m in _remaining(key, matches[key], targets, removing):
            site, ref = m.site, m.reference
            if site is None:
                continue
            parsed = tree.cst(ref.path)
            found: cst.CSTNode | None = None
            removable = ref.kind in REMOVABLE_KINDS
            if parsed is not None:
                # An import or __all__ entry is removed; any other reference gets a TODO on its statement.
                found = parsed.nodes.get(site.node_id) if removable else parsed.statements.get(site.statement_line)
            if parsed is None or found is None:
                bad[key] = str(tree.failures.get(ref.path) or f"{ref}: cannot edit this reference")
                continue
            change = per_file[ref.path]
            change.keys.add(key)
            change.lineage.update(parsed.lineage(found))
            if removable:
                change.removed.append(found)
            elif key not in change.todos[id(found)]:
                change.todos[id(found)].append(key)
    return per_file, bad


def _edit(
    tree: Tree, targets: dict[str, Target], matches: dict[str, list[Match]], removing: set[str]
) -> tuple[list[FileEdit], dict[str, str]]:
    """New sources for every file touched by removing ``removing``; keys that cannot be removed cleanly."""
    per_file, bad = changes(tree, targets, matches, removing)
    if bad:
        return [], bad
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
    return edits, bad


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

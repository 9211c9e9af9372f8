"""``plan_removal``: what removing some functions would change, and whether it is safe.

A plan is computed without touching the tree: per-file new sources, a
unified diff and a verdict per key. :func:`coldmod_codemod.apply` writes it.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from collections import defaultdict
from collections.abc import Iterable
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
from coldmod_codemod._transform import RemovalTransformer

__all__ = ["FileEdit", "RemovalPlan", "Verdict", "plan_removal"]

_NOT_FOUND = "no function with this key under the root"


@dataclass(frozen=True)
class Verdict:
    """Whether one key can be removed safely, and whether the plan removes it.

    ``reasons`` are the references that make it unsafe (``path:line kind``);
    with ``force`` an unsafe key is removed anyway and those sites get a TODO.
    """

    key: str
    safe: bool
    removed: bool
    reasons: tuple[str, ...] = ()
    references: tuple[Reference, ...] = ()

    def __str__(self) -> str:
        """``key: safe`` or ``key: unsafe (reasons)``, one line."""
        state = "safe" if self.safe else "unsafe"
        if self.removed and not self.safe:
            state += ", removed anyway"
        elif not self.removed and self.safe:
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
        """The keys with references that removal cannot deal with."""
        return [k for k, v in self.verdicts.items() if not v.safe]

    def diff(self) -> str:
        """A unified diff of every file the plan changes."""
        return "".join(edit.diff() for edit in self.edits)


def plan_removal(
    root: str | os.PathLike[str],
    keys: Iterable[str],
    *,
    force: bool = False,
    files: Iterable[str] | None = None,
) -> RemovalPlan:
    """Plan removing the functions ``keys`` under ``root``, their imports and ``__all__`` entries.

    A key with references other than imports and ``__all__`` entries is unsafe
    and left in place, unless ``force``: then it is removed and each statement
    still referring to it gets a TODO comment. ``files`` (root-relative) limits
    the files searched; by default every ``.py`` file under the root.
    """
    wanted = list(dict.fromkeys(keys))
    tree = Tree(root, files)
    targets = locate(tree, wanted)
    collect(tree, targets)
    matches = {key: match(tree, target) for key, target in targets.items()}
    broken: dict[str, str] = {}
    while True:
        removing = _removable(targets, matches, force, excluded=set(broken))
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
    return RemovalPlan(str(root), tuple(wanted), force, tuple(edits), verdicts, failures)


def _remaining(key: str, found: list[Match], targets: dict[str, Target], removing: set[str]) -> list[Match]:
    """References of ``key`` that removing ``removing`` does not take away or deal with."""
    gone = [d for k in removing for d in targets[k].definitions]
    own = targets[key].definitions
    return [
        m for m in found
        if not inside(own, m.reference) and not inside(gone, m.reference)
    ]


def _blocking(matches: list[Match]) -> list[Match]:
    return [m for m in matches if m.reference.kind not in REMOVABLE_KINDS]


def _removable(
    targets: dict[str, Target], matches: dict[str, list[Match]], force: bool, excluded: set[str]
) -> set[str]:
    """The keys to remove: found ones whose references all go away (or all, with ``force``)."""
    removing = {k for k, t in targets.items() if t.definitions and k not in excluded}
    if force:
        return removing
    # A reference from inside another removed function does not count, unless
    # that one turns out unsafe itself: shrink until nothing changes.
    while True:
        unsafe = {k for k in removing if _blocking(_remaining(k, matches[k], targets, removing))}
        if not unsafe:
            return removing
        removing -= unsafe


def _verdict(
    target: Target, found: list[Match], removing: set[str], targets: dict[str, Target], broken: str | None
) -> Verdict:
    if not target.definitions:
        return Verdict(target.key, safe=False, removed=False, reasons=(broken or _NOT_FOUND,))
    blocking = _blocking(_remaining(target.key, found, targets, removing | {target.key}))
    reasons = tuple(str(m.reference) for m in blocking)
    if broken is not None:
        reasons += (broken,)
    refs = tuple(m.reference for m in blocking)
    return Verdict(target.key, safe=not reasons, removed=target.key in removing, reasons=reasons, references=refs)


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

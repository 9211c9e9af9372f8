"""``coldmod rm --cold --branch-per-owner``: one local branch, one commit and one PR description per code owner.

A removal across a big repository is reviewed by many teams; one pull
request per owner lets each review what is theirs. The cold functions are
grouped by the owners of their files in the repository's CODEOWNERS
(:mod:`coldmod_cli.codeowners`; one group when there is none). Each group is
planned on its own (so a branch holds everything its removal needs, an import
cleaned in another owner's file included) and committed on its own branch off
``HEAD``.

The commits are made with git's plumbing and a temporary index (``hash-object``,
``update-index``, ``write-tree``, ``commit-tree``, ``branch``): the work tree
and the current branch are never touched, so the developer stays where they
were and each branch starts from the same commit. Nothing is pushed. The PR
description (markdown: the functions, their evidence, their verdicts) is the
commit message's body and a file under ``.git/coldmod/``, ready for
``gh pr create --body-file``.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from coldmod_cli import heatmap
from coldmod_cli._errors import CliError, say
from coldmod_cli._words import plural

if TYPE_CHECKING:
    from coldmod_codemod import RemovalPlan
    from coldmod_trace.discovery import Discovery

__all__ = ["BRANCH_PREFIX", "Group", "groups", "per_owner"]

#: Every branch this makes is ``coldmod/cold-<owner>``.
BRANCH_PREFIX = "coldmod/cold-"
#: The group of files no CODEOWNERS line gives an owner, and the one group when there is no CODEOWNERS.
UNOWNED, EVERYONE = "unowned", "all"


@dataclass
class Group:
    """The keys whose files one set of owners holds."""

    owners: tuple[str, ...]
    keys: list[str]
    #: There is no CODEOWNERS: one group for every function.
    everyone: bool = False

    @property
    def name(self) -> str:
        """What the branch is called after: the owners without ``@``, or unowned / all."""
        if not self.owners:
            return EVERYONE if self.everyone else UNOWNED
        return re.sub(r"[^A-Za-z0-9._+-]+", "-", "+".join(o.lstrip("@") for o in self.owners)).strip("-.").lower()

    @property
    def branch(self) -> str:
        """``coldmod/cold-<name>``."""
        return BRANCH_PREFIX + self.name


def _git(top: Path, *args: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run git in ``top``; its stdout, or a CliError with git's own words."""
    try:
        done = subprocess.run(
            ["git", "--literal-pathspecs", *args], cwd=top, input=stdin, capture_output=True, timeout=60,
            check=False, env=None if env is None else {**os.environ, **env},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise CliError(f"cannot run git: {exc}") from None
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise CliError(f"git {args[0]} failed: {reason[-1] if reason else 'no reason given'}")
    return done.stdout.decode(errors="replace").strip()


def groups(found: Discovery, keys: list[str], top: Path, prefix: str) -> tuple[list[Group], Path | None]:
    """The keys grouped by the owners of their files (sorted by name), and the CODEOWNERS file used."""
    from coldmod_cli import codeowners

    owners = codeowners.find(top)
    if owners.path is None:
        return [Group((), list(keys), everyone=True)], None
    by_owners: dict[tuple[str, ...], list[str]] = {}
    for key in keys:
        by_owners.setdefault(owners.owners(prefix + found.sources[key].path), []).append(key)
    return sorted((Group(who, found_keys) for who, found_keys in by_owners.items()), key=lambda g: g.name), owners.path


def description(
    group: Group, removal: RemovalPlan, found: Discovery, rows: Mapping[str, heatmap.Row], *, app: str, now: int
) -> tuple[str, str]:
    """(title, markdown body) of the pull request for one group's removal."""
    from coldmod_cli.formats import evidence

    removed = sorted(removal.removed, key=lambda k: (found.sources[k].path, found.sources[k].lines[0]))
    files = sorted({edit.path for edit in removal.edits})
    whose = " ".join(group.owners) if group.owners else ("" if group.everyone else "no owner in CODEOWNERS")
    title = f"Remove {plural(len(removed), 'cold function')}" + (f" owned by {whose}" if group.owners else "")
    lines = [
        f"Production never called these functions of `{app}` while it was traced, and nothing in the "
        f"repository refers to them by any route Coldmod knows (the verdicts below).",
        "",
        f"Owners: {whose}" if whose else "",
        "",
        "| Function | Location | Evidence | Verdict |",
        "|---|---|---|---|",
    ]
    for key in removed:
        source = found.sources[key]
        row = rows.get(key)
        verdict = removal.verdicts[key]
        reasons = f" ({'; '.join(verdict.reasons)})" if verdict.reasons else ""
        lines.append(
            f"| `{key}` | `{source.path}:{source.lines[0]}` | {evidence(row, now) if row else 'not in the heatmap'} "
            f"| {verdict.verdict}{reasons} |"
        )
    lines += [
        "",
        f"Files changed: {', '.join(f'`{f}`' for f in files)}.",
        "",
        "Made by `coldmod rm --cold --branch-per-owner`. Run the tests; a function the team wants to keep "
        "whatever production says can be marked `# coldmod: keep` on its `def` line instead.",
    ]
    return title, "\n".join(lines) + "\n"


def _commit(top: Path, prefix: str, removal: RemovalPlan, message: str, branch: str) -> str:
    """Commit ``removal``'s edits on top of HEAD as ``branch`` without touching the work tree or the index."""
    with tempfile.TemporaryDirectory(prefix="coldmod-index-") as tmp:
        index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(top, "read-tree", "HEAD", env=index)
        for edit in removal.edits:
            path = prefix + edit.path
            staged = _git(top, "ls-files", "--stage", "--", path, env=index).split()
            mode = staged[0] if staged else "100644"
            blob = _git(top, "hash-object", "-w", "--stdin", stdin=edit.new)
            _git(top, "update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}", env=index)
        tree = _git(top, "write-tree", env=index)
        commit = _git(top, "commit-tree", tree, "-p", "HEAD", "-F", "-", stdin=message.encode())
    _git(top, "branch", branch, commit)
    return commit


def per_owner(
    found: Discovery,
    keys: list[str],
    result: heatmap.CheckoutView,
    *,
    include: tuple[str, ...],
    dry_run: bool,
) -> None:
    """Plan each owner's share of ``keys`` and commit it on its own branch (``dry_run``: say what would be made)."""
    from coldmod_cli import formats, removal

    root = found.marker.root
    top = Path(_git(root, "rev-parse", "--show-toplevel"))
    prefix = formats.repo_prefix(root)
    if not keys:
        say("no cold functions to remove")
        return
    made, path = groups(found, keys, top, prefix)
    say(f"{plural(len(made), 'owner group')} from {path.relative_to(top) if path else 'no CODEOWNERS (one group)'}")
    taken = [g.branch for g in made if subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{g.branch}"], cwd=top, capture_output=True,
        check=False).returncode == 0]
    if taken and not dry_run:
        raise CliError(f"the branch {taken[0]} already exists; delete it (git branch -D {taken[0]}) or merge it first")
    rows = {row.key: row for row in result.rows}
    now = heatmap.now_ms()
    notes = Path(_git(root, "rev-parse", "--absolute-git-dir")) / "coldmod"
    for group in made:
        plan = removal.plan(found, group.keys, include=include)
        for line in removal.verdict_lines(plan, found):
            print(line)
        if not plan.removed:
            say(f"{group.branch}: nothing to remove ({plural(len(group.keys), 'cold function')} kept; reasons above)")
            continue
        title, body = description(group, plan, found, rows, app=result.app, now=now)
        files = {edit.path for edit in plan.edits}
        what = f"{plural(len(plan.removed), 'function')} from {plural(len(files), 'file')}"
        if dry_run:
            print(f"\n## {group.branch}: {title}\n\n{body}")
            say(f"would commit {what} on {group.branch} (dry run: no branch made)")
            continue
        _commit(top, prefix, plan, f"{title}\n\n{body}", group.branch)
        notes.mkdir(exist_ok=True)
        note = notes / f"pr-{group.name}.md"
        note.write_text(f"{body}", encoding="utf-8")
        say(f"{group.branch}: committed {what}; PR title {title!r}, description in {note}")
    if not dry_run:
        say("nothing was pushed and your work tree is as it was; push each branch and open its pull request "
            "(gh pr create --head BRANCH --title … --body-file …)")

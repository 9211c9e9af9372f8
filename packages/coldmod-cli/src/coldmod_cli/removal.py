"""``coldmod rm``: remove functions through the codemod library, with verdicts and a git check."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from coldmod_cli._errors import CliError, say, warn

if TYPE_CHECKING:
    from coldmod_codemod import RemovalPlan
    from coldmod_trace.discovery import Discovery


def uncommitted(root: Path, paths: list[str]) -> list[str]:
    """The paths among ``paths`` with uncommitted git changes (empty outside a git work tree)."""
    if not paths:
        return []
    try:
        # --literal-pathspecs: a file name is never read as pathspec magic.
        done = subprocess.run(
            ["git", "--literal-pathspecs", "status", "--porcelain", "--", *paths],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []  # no git: nothing to warn about
    if done.returncode != 0:
        return []
    return [line[3:] for line in done.stdout.splitlines() if len(line) > 3]


def plan(found: Discovery, keys: list[str], cold_keys: list[str], *, force: bool) -> RemovalPlan:
    """The removal plan: named keys (forced when ``force``) plus the cold keys that are safe."""
    from coldmod_codemod import plan_removal

    root = found.marker.root
    extra = [key for key in cold_keys if key not in keys]
    if extra and force:
        # --force is for the keys named; a cold key is only ever removed when safe.
        probe = plan_removal(root, extra)
        extra = [key for key in extra if probe.verdicts[key].safe]
    return plan_removal(root, keys + extra, force=force)


#: The word for a verdict, by (safe, removed).
_STATES = {(True, True): "safe", (True, False): "kept", (False, True): "forced", (False, False): "unsafe"}


def verdict_lines(removal: RemovalPlan, found: Discovery) -> list[str]:
    """One line per key, by file and line: ``safe``, ``unsafe`` (with its references) or ``forced``."""

    def where(key: str) -> tuple[str, int, str]:
        source = found.sources.get(key)
        return (source.path, source.lines[0], key) if source else ("", 0, key)

    lines = []
    for key in sorted(removal.verdicts, key=where):
        verdict = removal.verdicts[key]
        state = _STATES[verdict.safe, verdict.removed]
        reasons = f"  ({'; '.join(verdict.reasons)})" if verdict.reasons else ""
        lines.append(f"{state:<7} {key}{reasons}")
    return lines


def remove(found: Discovery, keys: list[str], cold_keys: list[str], *, dry_run: bool, force: bool) -> None:
    """Plan, print the verdicts (and the diff for a dry run), then apply unless ``dry_run``."""
    from coldmod_codemod import apply

    if not keys and not cold_keys:
        say("no cold functions to remove")
        return
    removal = plan(found, keys, cold_keys, force=force)
    for failure in removal.failures:
        warn(f"{failure}")
    for line in verdict_lines(removal, found):
        print(line)
    touched = [edit.path for edit in removal.edits]
    refused = [key for key in keys if not removal.verdicts[key].removed]
    removed = removal.removed
    dirty = uncommitted(found.marker.root, touched)
    if dirty:
        warn(
            f"uncommitted changes in {', '.join(dirty)}; commit them first "
            f"so that the removal can be reviewed (and undone) on its own"
        )
    files = f"{len(touched)} file{'s' if len(touched) != 1 else ''}"
    if dry_run:
        print(removal.diff(), end="")
        say(f"would remove {len(removed)} functions from {files} (dry run: nothing changed)")
    elif removed:
        result = apply(removal)
        if not result.ok:
            raise CliError(f"nothing was changed: {'; '.join(result.problems)}")
        say(f"removed {len(removed)} functions from {files}; run your tests, then review with `git diff`")
    else:
        say("nothing removed")
    unsafe_cold = [k for k in cold_keys if k not in keys and k not in removed]
    if unsafe_cold:
        say(
            f"left {len(unsafe_cold)} cold functions that are still referenced (`coldmod rm --dry-run KEY` shows where)"
        )
    if refused:
        raise CliError(
            f"refused {len(refused)} unsafe key{'s' if len(refused) != 1 else ''} "
            f"({', '.join(refused)}): still referenced; remove the references, or re-run with --force"
        )

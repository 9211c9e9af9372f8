"""``coldmod rm``: remove functions through the codemod library, behind guard rails.

The guard rails, each checked before anything is written:

- test code is never removed (a key in a test file is refused by
  :func:`coldmod_cli.local.require_keys`; the tracer never traces tests);
- ``--cold`` trusts a heatmap only once it has been tracked for a minimum
  (:data:`DEFAULT_MIN_TRACKED`, ``--min-tracked`` to change), so a minute of
  traffic never drives a removal;
- it writes only on a clean git work tree (:func:`dirty`), unless
  ``--allow-dirty``, so the removal can be reviewed and undone on its own;
- it removes only the verdicts asked for: ``safe`` by default, ``review`` too
  with ``--include review``; ``unsafe`` ones only when named with ``--force``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coldmod_cli import heatmap
from coldmod_cli._errors import CliError, UsageError, say, warn
from coldmod_cli._progress import steps
from coldmod_cli._words import plural, span

if TYPE_CHECKING:
    from coldmod_codemod import RemovalPlan
    from coldmod_trace.discovery import Discovery

#: Seconds a heatmap must have been tracked before ``rm --cold`` trusts its silence: a week
#: of traffic sees the weekly jobs and the Monday-only pages.
DEFAULT_MIN_TRACKED = 7 * 86400.0

#: What ``--include`` accepts, and the verdicts each choice removes.
INCLUDE = {"safe": ("safe",), "review": ("safe", "review")}

#: What to do about a named key the plan kept, by its verdict.
_REFUSED_HINT = {
    "review": "re-run with --include review to remove it anyway",
    "unsafe": "remove the references first, or re-run with --force",
}


def include_option(value: Any) -> tuple[str, ...]:
    """The verdicts ``--include`` asks to remove: ``safe`` (the default) or ``review``."""
    if value is None or value == "":
        return INCLUDE["safe"]
    words = value if isinstance(value, (tuple, list)) else str(value).split(",")
    chosen = {str(word).strip().lower() for word in words} - {""}
    if chosen - set(INCLUDE):
        raise UsageError(
            f"--include takes review (or safe), not {value!r}; unsafe keys are removed only by name with --force"
        )
    return INCLUDE["review"] if "review" in chosen else INCLUDE["safe"]


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    """Run git in ``root``; None when git cannot run at all."""
    try:
        # --literal-pathspecs: a file name is never read as pathspec magic.
        return subprocess.run(
            ["git", "--literal-pathspecs", *args],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None


def dirty(root: Path) -> list[str] | None:
    """Uncommitted changes under ``root`` (tracked files, staged or not); None outside a git work tree.

    Untracked files do not count: build output, caches and virtual environments
    are often untracked, and they are still read for references, so they can
    only make a verdict stricter; what must be committed is every file the
    removal could edit and the reviewer will diff.
    """
    inside = _git(root, "rev-parse", "--is-inside-work-tree")
    if inside is None or inside.returncode != 0 or inside.stdout.strip() != "true":
        return None
    status = _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".")
    if status is None or status.returncode != 0:
        return None
    return [line[3:] for line in status.stdout.splitlines() if len(line) > 3]


def uncommitted(root: Path, paths: list[str]) -> list[str]:
    """The paths among ``paths`` with uncommitted git changes (empty outside a git work tree)."""
    if not paths:
        return []
    done = _git(root, "status", "--porcelain", "--", *paths)
    if done is None or done.returncode != 0:
        return []
    return [line[3:] for line in done.stdout.splitlines() if len(line) > 3]


def require_clean(root: Path) -> None:
    """Refuse to write unless ``root`` is in a git work tree without uncommitted changes."""
    changed = dirty(root)
    if changed is None:
        raise CliError(
            f"{root} is not in a git work tree, so the removal could not be reviewed or undone; "
            f"commit the code to git first, or pass --allow-dirty"
        )
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise CliError(
            f"uncommitted changes in {shown}; commit or stash them first so that the removal can be "
            f"reviewed and undone on its own, or pass --allow-dirty"
        )


def cold_keys(
    result: heatmap.Heatmap, *, since: float | None, min_tracked: float | None, dry_run: bool = False
) -> list[str]:
    """The keys ``rm --cold`` considers, once the heatmap has been tracked long enough.

    Tracked too briefly, a removal is refused; a dry run changes nothing, so it
    only warns, and shows what the removal would be once the minimum is reached.
    Functions marked ``# coldmod: keep`` are left out.
    """
    from coldmod_cli import keep, report

    minimum = DEFAULT_MIN_TRACKED if min_tracked is None else min_tracked
    now = result.now_ms
    began = report.tracking_began(result)
    if not began:
        raise CliError(
            f"the collector has tracked no function of this checkout for app {result.app!r} yet; "
            f"run the application under coldmod-trace first"
        )
    age = max(0.0, (now - began) / 1000)
    if age < minimum:
        short = (
            f"the heatmap of {result.app!r} has been tracked for {span(age)}, less than the minimum of "
            f"{span(minimum)}; let production run longer before removing what it never called, "
            f"or lower the minimum with --min-tracked (like --min-tracked 1d)"
        )
        if not dry_run:
            raise CliError(short)
        warn(short + "; this dry run shows what would be removed if the tracking so far were enough")
        minimum = 0.0
    else:
        say(f"the heatmap of {result.app!r} has been tracked for {span(age)} (minimum {span(minimum)}, --min-tracked)")
    rows = heatmap.cold(result.rows, now=now, since=since, min_tracked=minimum)
    younger = len(heatmap.too_briefly_tracked(result.rows, now=now, since=since, min_tracked=minimum))
    if younger:
        need = max(since or 0.0, minimum)
        say(f"left out {plural(younger, 'function')} tracked for less than {span(need)} (new since tracking began)")
    marked = keep.kept(result.root, rows)
    if marked:
        say(f"left out {plural(len(marked), 'cold function')} marked `# coldmod: keep`")
    return [row.key for row in rows if row.key not in marked]


def refuse_kept(found: Discovery, keys: list[str]) -> None:
    """Refuse to remove a named function marked ``# coldmod: keep``: the marker is the team's decision."""
    from coldmod_cli import keep

    marked = keep.kept(found.marker.root, keep.rows_of(found, keys))
    if marked:
        shown = ", ".join(f"{key} ({where})" for key, where in list(marked.items())[:5])
        raise CliError(
            f"{shown} {'is' if len(marked) == 1 else 'are'} marked `# coldmod: keep`; "
            f"delete the marker first to remove {'it' if len(marked) == 1 else 'them'}"
        )


def seasonal_held(result: heatmap.Heatmap, cold: list[str]) -> dict[str, str]:
    """The cold keys whose history makes them seasonal, with the reason: review, never removed as safe."""
    from coldmod_cli import seasonal

    wanted = set(cold)
    return dict(seasonal.reasons([row for row in result.rows if row.key in wanted], result.now_ms))


def hold_seasonal(
    found: Discovery, cold: list[str], seasonal: Mapping[str, str], include: tuple[str, ...]
) -> list[str]:
    """The cold keys to plan: seasonal ones only with ``--include review``; says which are held, and why."""
    held = {key: seasonal[key] for key in cold if key in seasonal}
    if not held:
        return cold
    if "review" in include:
        say(f"planning {plural(len(held), 'seasonal cold function')} as --include review asks: "
            + "; ".join(f"{key} ({text})" for key, text in held.items()))
        return cold
    for key in sorted(held, key=lambda k: _place(found, k)):
        print(f"{'review':<7} {key}  (seasonal: {held[key]})")
    say(f"kept {plural(len(held), 'seasonal cold function')} (review: --include review removes them)")
    return [key for key in cold if key not in held]


def _place(found: Discovery, key: str) -> tuple[str, int, str]:
    """Where a key is defined, to list keys by file and line."""
    source = found.sources.get(key)
    return (source.path, source.lines[0], key) if source else ("", 0, key)


def plan(
    found: Discovery, keys: Iterable[str], *, include: tuple[str, ...] = INCLUDE["safe"], force: bool = False
) -> RemovalPlan:
    """The removal plan for ``keys``, with a progress bar on a terminal while it is made."""
    from coldmod_codemod import plan_removal

    with steps("planning the removal") as progress:
        return plan_removal(found.marker.root, list(keys), include=include, force=force, progress=progress)


def verdict_lines(removal: RemovalPlan, found: Discovery) -> list[str]:
    """One line per key, by file and line: its verdict (``forced`` when removed anyway) and the reasons."""

    def where(key: str) -> tuple[str, int, str]:
        source = found.sources.get(key)
        return (source.path, source.lines[0], key) if source else ("", 0, key)

    lines = []
    for key in sorted(removal.verdicts, key=where):
        verdict = removal.verdicts[key]
        word = "forced" if removal.force and verdict.removed and verdict.verdict == "unsafe" else verdict.verdict
        reasons = f"  ({'; '.join(verdict.reasons)})" if verdict.reasons else ""
        lines.append(f"{word:<7} {key}{reasons}")
    return lines


def remove(
    found: Discovery,
    keys: list[str],
    cold: list[str],
    *,
    dry_run: bool,
    force: bool = False,
    include: tuple[str, ...] = INCLUDE["safe"],
    allow_dirty: bool = False,
    seasonal: Mapping[str, str] | None = None,
) -> None:
    """Plan, print each verdict with its reasons (and the diff for a dry run), then apply unless ``dry_run``.

    ``keys`` are named by the user (``force`` applies to them); ``cold`` come
    from the heatmap and are removed only when their verdict is in ``include``.
    ``seasonal`` cold keys (with their reason, see :func:`seasonal_held`) are
    review: planned only with ``--include review``.
    """
    from coldmod_codemod import apply

    cold = hold_seasonal(found, cold, {k: v for k, v in (seasonal or {}).items() if k not in keys}, include)

    if force and cold:
        raise UsageError("--force applies to keys named one by one; it cannot be combined with --cold")
    if not keys and not cold:
        say("no cold functions to remove")
        return
    root = found.marker.root
    if not dry_run and not allow_dirty:
        require_clean(root)  # before the (long) planning: nothing is done on a tree we would refuse
    removal = plan(found, [*keys, *(k for k in cold if k not in keys)], include=include, force=force)
    for failure in removal.failures:
        warn(f"{failure}")
    for line in verdict_lines(removal, found):
        print(line)
    touched = [edit.path for edit in removal.edits]
    removed = removal.removed
    counts = {v: sum(removal.verdicts[k].verdict == v for k in removed) for v in ("review", "unsafe")}
    beyond_safe = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    what = f"{plural(len(removed), 'function')} from {plural(len(touched), 'file')}"
    what += f" ({beyond_safe} among them)" if beyond_safe else ""
    if dry_run:
        print(removal.diff(), end="")
        say(f"would remove {what} (dry run: nothing changed)")
        changed = dirty(root) if removed and not allow_dirty else []
        if changed:
            say(f"note: uncommitted changes in {', '.join(changed[:5])}; without --dry-run, rm refuses until "
                f"they are committed (or --allow-dirty)")
    elif removed:
        result = apply(removal)
        if not result.ok:
            raise CliError(f"nothing was changed: {'; '.join(result.problems)}")
        say(f"removed {what}; run your tests, then review with `git diff`")
    else:
        say("nothing removed")
    kept = [k for k in cold if k not in keys and k not in removed]
    kept_review = [k for k in kept if removal.verdicts[k].verdict == "review"]
    if kept:
        review_hint = f" ({len(kept_review)} review: --include review removes them)" if kept_review else ""
        say(f"kept {plural(len(kept), 'cold function')} that may still be used{review_hint}; the reasons are above")
    refused = [key for key in keys if not removal.verdicts[key].removed]
    if refused:
        hints = sorted({_REFUSED_HINT.get(removal.verdicts[k].verdict, _REFUSED_HINT["unsafe"]) for k in refused})
        raise CliError(
            f"refused {plural(len(refused), 'key')} ({', '.join(refused)}): may still be used (the reasons "
            f"are above); {'; or '.join(hints)}"
        )

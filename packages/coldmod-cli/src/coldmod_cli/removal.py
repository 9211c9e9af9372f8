"""``coldmod rm``: remove functions through the codemod library, behind guard rails.

The guard rails, each checked before anything is written:

- test code is never removed (a key in a test file is refused by
  :func:`coldmod_cli.local.require_keys`; the tracer never traces tests);
- ``--cold`` trusts a heatmap only once it has been tracked for a minimum
  (:data:`DEFAULT_MIN_TRACKED`, ``--min-tracked`` to change), so a minute of
  traffic never drives a removal;
- it writes only on a clean git work tree (:func:`dirty`), unless
  ``--allow-dirty``, so the removal can be reviewed and undone on its own;
- it removes only the verdicts asked for: ``safe`` by default, ``test-only``
  (with the tests that exist only for them) with ``--include test-only``,
  ``review`` too with ``--include review``; ``unsafe`` ones only when named
  with ``--force``.

A dry run tells the truth about the other levels: each is planned to its
fixpoint on the same index (:func:`plan`), and the summary says how many more
each wider ``--include`` would remove. Why a kept function stays is printed as
its findings grouped by where they come from (:func:`reason_groups`, the one
place the text, the JSON and the web UI's dialog take them from).
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
    from coldmod_codemod import RemovalPlan, Verdict
    from coldmod_trace.discovery import Discovery

#: Seconds a heatmap must have been tracked before ``rm --cold`` trusts its silence: a week
#: of traffic sees the weekly jobs and the Monday-only pages.
DEFAULT_MIN_TRACKED = 7 * 86400.0

#: What ``--include`` accepts, and the verdicts each choice removes: a ladder, from best to worst verdict,
#: each level removing what the one before it does and more.
INCLUDE = {
    "safe": ("safe",),
    "test-only": ("safe", "test-only"),  # and the test functions and fixtures that exist only for them
    "review": ("safe", "test-only", "review"),
}

#: What to do about a named key the plan kept, by its verdict.
_REFUSED_HINT = {
    "test-only": "re-run with --include test-only to remove it with the tests that exist only for it",
    "review": "re-run with --include review to remove it anyway",
    "unsafe": "remove the references first, or re-run with --force",
}


def include_option(value: Any) -> tuple[str, ...]:
    """The verdicts ``--include`` asks to remove: ``safe`` (the default), ``test-only`` or ``review``."""
    if value is None or value == "":
        return INCLUDE["safe"]
    words = value if isinstance(value, (tuple, list)) else str(value).split(",")
    chosen = {str(word).strip().lower() for word in words} - {""}
    if chosen - set(INCLUDE):
        raise UsageError(
            f"--include takes safe, test-only or review, not {value!r}; unsafe keys are removed only by name "
            f"with --force"
        )
    return INCLUDE[max(chosen, key=list(INCLUDE).index, default="safe")]


def level_of(include: tuple[str, ...]) -> str:
    """The ``--include`` word for a set of verdicts (``safe``, ``test-only``, ``review``)."""
    return next((word for word, verdicts in INCLUDE.items() if verdicts == include), include[-1])


def wider_levels(include: tuple[str, ...]) -> list[str]:
    """The ``--include`` words that remove more than ``include``, narrowest first."""
    words = list(INCLUDE)
    return words[words.index(level_of(include)) + 1 :]


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
    result: heatmap.CheckoutView, *, since: float | None, min_tracked: float | None, dry_run: bool = False
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


def seasonal_held(result: heatmap.CheckoutView, cold: list[str]) -> dict[str, str]:
    """The cold keys whose history makes them seasonal, with the reason: review, never removed as safe."""
    from coldmod_cli import seasonal

    wanted = set(cold)
    return dict(seasonal.reasons([row for row in result.rows if row.key in wanted], result.now_ms))


def hold_seasonal(
    found: Discovery, cold: list[str], seasonal: Mapping[str, str], include: tuple[str, ...], fmt: str = "text"
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
        line = f"{'review':<7} {key}  (seasonal: {held[key]})"
        say(line) if fmt == "json" else print(line)  # stdout holds only the JSON document
    say(f"kept {plural(len(held), 'seasonal cold function')} (review: --include review removes them)")
    return [key for key in cold if key not in held]


def _place(found: Discovery, key: str) -> tuple[str, int, str]:
    """Where a key is defined, to list keys by file and line."""
    source = found.sources.get(key)
    return (source.path, source.lines[0], key) if source else ("", 0, key)


def plan(
    found: Discovery,
    keys: Iterable[str],
    *,
    include: tuple[str, ...] = INCLUDE["safe"],
    force: bool = False,
    levels: Iterable[str] = (),
) -> RemovalPlan:
    """The removal plan for ``keys``, with a progress bar on a terminal while it is made.

    ``levels``: other ``--include`` words to plan too, on the same index (``RemovalPlan.levels``).
    Test code is what the tracer never traces (``coldmod_trace.rootmarker.is_test_file``).
    """
    from coldmod_codemod import plan_removal
    from coldmod_trace.rootmarker import is_test_file

    with steps("planning the removal") as progress:
        return plan_removal(
            found.marker.root,
            list(keys),
            include=include,
            force=force,
            progress=progress,
            tests=is_test_file,
            levels=[INCLUDE[word] for word in levels],
        )


def production_calls(result: heatmap.CheckoutView) -> dict[str, int]:
    """Each tracked key's calls in production, to say how live the code that refers to a kept function is."""
    return {row.key: row.calls for row in result.rows if row.tracked}


def reason_groups(verdict: Verdict, calls: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """Why a function stays, one entry per group of findings (live code, cold code, tests, strings, definition).

    Each entry: ``group``, ``title``, ``count`` (sites, each ``path:line`` once), ``sites`` (the first three:
    ``path``, ``line``, ``kind``, ``detail`` — what was found, when the kind alone does not say, such as
    ``GET /hello`` for ``url`` — ``in`` — the function it lies in, or None at module level — and its
    production ``calls`` when the heatmap knows them) and ``line``, the entry as one line of text. The CLI's
    text, ``--format json`` and the web UI's removal dialog all show these.
    """
    known = calls or {}
    groups = []
    for group in verdict.groups:
        # Live code is live by its calls: say how many. (Cold code has none; that is why it is cold.)
        live = group.name == "live"
        note = {key: plural(known[key], "call") for key in group.referrers if key in known and live}
        groups.append({
            "group": group.name,
            "title": group.title,
            "count": len(group.places),
            "sites": [
                {
                    "path": p.path, "line": p.line, "kind": p.kind, "detail": p.detail, "in": p.referrer,
                    "calls": known.get(p.referrer or ""),
                }
                for p in group.places[:3]
            ],
            "line": group.line(note=note),
        })
    return groups


def reason_notes(verdict: Verdict) -> list[str]:
    """The reasons that are not findings: why a test that would go with it stays, why it cannot be edited."""
    return list(verdict.reasons[len(verdict.references) :])


def reason_lines(verdict: Verdict, calls: Mapping[str, int] | None = None) -> list[str]:
    """Why a function stays, in one screen: a line per group of findings, then the notes."""
    return [group["line"] for group in reason_groups(verdict, calls)] + reason_notes(verdict)


def verdict_word(removal: RemovalPlan, verdict: Verdict) -> str:
    """The verdict as printed: ``forced`` for an unsafe key removed anyway."""
    return "forced" if removal.force and verdict.removed and verdict.verdict == "unsafe" else verdict.verdict


def _by_place(removal: RemovalPlan, found: Discovery) -> list[str]:
    """The plan's keys by file and line."""

    def where(key: str) -> tuple[str, int, str]:
        source = found.sources.get(key)
        return (source.path, source.lines[0], key) if source else ("", 0, key)

    return sorted(removal.verdicts, key=where)


def verdict_lines(removal: RemovalPlan, found: Discovery, calls: Mapping[str, int] | None = None) -> list[str]:
    """A line per key, by file and line: its verdict (``forced`` when removed anyway); indented under a key
    that is not safe, why (:func:`reason_lines`), and the tests that go with one that is removed."""
    lines = []
    for key in _by_place(removal, found):
        verdict = removal.verdicts[key]
        lines.append(f"{verdict_word(removal, verdict):<7} {key}")
        if verdict.removed and verdict.tests:
            lines.append(f"{'':<10}with the tests that exist only for it: {', '.join(verdict.tests)}")
        lines.extend(f"{'':<10}{line}" for line in reason_lines(verdict, calls))
    return lines


def plan_json(
    removal: RemovalPlan, found: Discovery, calls: Mapping[str, int] | None = None, *, dry_run: bool
) -> dict[str, Any]:
    """The plan as ``rm --format json`` prints it: every verdict with its reason groups, the edits, the levels."""
    return {
        "dry_run": dry_run,
        "removed": removal.removed,
        "tests_removed": list(removal.tests),
        "files": [edit.path for edit in removal.edits],
        "levels": {level: list(keys) for level, keys in removal.levels.items()},
        "verdicts": [
            {
                "key": key,
                "verdict": verdict_word(removal, removal.verdicts[key]),
                "removed": removal.verdicts[key].removed,
                "tests": list(removal.verdicts[key].tests),
                "groups": reason_groups(removal.verdicts[key], calls),
                "notes": reason_notes(removal.verdicts[key]),
            }
            for key in _by_place(removal, found)
        ],
        "diff": removal.diff() if dry_run else "",
    }


def levels_summary(
    removal: RemovalPlan, include: tuple[str, ...], planned: Mapping[str, Iterable[str]] | None = None
) -> str:
    """``--include test-only would remove 1 more, --include review 4 more``, from the levels the plan computed.

    ``planned``: what a level removes when it was planned apart (with the seasonal keys a narrower level holds).
    """
    removed = set(removal.removed)
    parts: list[str] = []
    for word in wider_levels(include):
        if planned and word in planned:
            more = len(set(planned[word]) - removed)
            parts.append(f"--include {word} {'would remove ' if not parts else ''}{more} more")
        elif word in removal.levels:
            more = len(set(removal.levels[word]) - removed)
            parts.append(f"--include {word} {'would remove ' if not parts else ''}{more} more")
    return ", ".join(parts)


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
    calls: Mapping[str, int] | None = None,
    fmt: str = "text",
) -> None:
    """Plan, print each verdict with its reasons (and the diff for a dry run), then apply unless ``dry_run``.

    ``keys`` are named by the user (``force`` applies to them); ``cold`` come
    from the heatmap and are removed only when their verdict is in ``include``.
    ``seasonal`` cold keys (with their reason, see :func:`seasonal_held`) are
    review: planned only with ``--include review``. A dry run also plans each
    wider ``--include`` and says how many more it would remove. ``calls``:
    production calls per key (from the heatmap), to say how live the code is
    that keeps a function. ``fmt`` ``json``: the plan as one JSON document on
    stdout (:func:`plan_json`) instead of text.
    """
    from coldmod_codemod import apply

    quiet = cold
    cold = hold_seasonal(found, cold, {k: v for k, v in (seasonal or {}).items() if k not in keys}, include, fmt)
    held = [k for k in quiet if k not in cold]

    if force and cold:
        raise UsageError("--force applies to keys named one by one; it cannot be combined with --cold")
    if not keys and not cold:
        say("no cold functions to remove")
        return
    root = found.marker.root
    if not dry_run and not allow_dirty:
        require_clean(root)  # before the (long) planning: nothing is done on a tree we would refuse
    wanted = [*keys, *(k for k in cold if k not in keys)]
    removal = plan(found, wanted, include=include, force=force, levels=wider_levels(include) if dry_run else ())
    for failure in removal.failures:
        warn(f"{failure}")
    if fmt == "json":
        from coldmod_cli.report import print_json

        print_json(plan_json(removal, found, calls, dry_run=dry_run))
    else:
        for line in verdict_lines(removal, found, calls):
            print(line)
    touched = [edit.path for edit in removal.edits]
    removed = removal.removed
    counts = {v: sum(removal.verdicts[k].verdict == v for k in removed) for v in ("test-only", "review", "unsafe")}
    beyond_safe = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    what = f"{plural(len(removed), 'function')}"
    what += f" and {plural(len(removal.tests), 'test function')}" if removal.tests else ""
    what += f" from {plural(len(touched), 'file')}"
    what += f" ({beyond_safe} among them)" if beyond_safe else ""
    if dry_run:
        if fmt != "json":
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
    if kept:
        planned: dict[str, list[str]] = {}
        if dry_run and held and "review" in wider_levels(include):
            # --include review plans the seasonal keys this run held: plan that level with them, so the
            # number said is the number that run removes (clusters through them included).
            planned["review"] = plan(found, [*wanted, *held], include=INCLUDE["review"]).removed
        wider = levels_summary(removal, include, planned) if dry_run else ""
        if not dry_run and wider_levels(include):
            wider = "a dry run says how many more each --include would remove"
        say(f"kept {plural(len(kept), 'cold function')} that may still be used{f' ({wider})' if wider else ''}; "
            f"the reasons are {'in the JSON' if fmt == 'json' else 'above'}")
    refused = [key for key in keys if not removal.verdicts[key].removed]
    if refused:
        hints = sorted({_REFUSED_HINT.get(removal.verdicts[k].verdict, _REFUSED_HINT["unsafe"]) for k in refused})
        raise CliError(
            f"refused {plural(len(refused), 'key')} ({', '.join(refused)}): may still be used (the reasons "
            f"are above); {'; or '.join(hints)}"
        )

"""What ``fetch`` and ``cold`` print, shared with ``demo`` (data on stdout, the summary on stderr)."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coldmod_cli import formats, heatmap, keep, local, seasonal
from coldmod_cli._errors import CliError, say
from coldmod_cli._progress import progress
from coldmod_cli._words import plural, span

if TYPE_CHECKING:
    from coldmod_proto.v1 import coldmod_pb2


def print_json(data: Any) -> None:
    """Indented JSON on stdout."""
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def load(
    start: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    quiet_days: int = 0,
    snapshot: str | None = None,
) -> heatmap.CheckoutView:
    """The checkout at ``start`` (default: the cwd) reconciled with its heatmap (the collector's, or a snapshot's).

    ``quiet_days``: the rows with no call in that many days carry their daily history (see :func:`heatmap.quiet_days`);
    a snapshot carries what its ``fetch --save`` asked for.
    """
    found = local.checkout(start)
    app = local.app_name(found, env)
    if snapshot is not None:
        from coldmod_cli import snapshot as snapshots

        response = snapshots.read(snapshot, app)
    else:
        response = fetch_response(app, env, quiet_days=quiet_days)
    result = heatmap.reconcile(response, found)
    result.app = app
    if result.skipped_keys:
        say(
            f"skipped {plural(len(result.skipped_keys), 'key')} the collector knows but this checkout does not have "
            f"(removed, renamed or ignored since the application last started)"
        )
    return result


def fetch_response(
    app: str, env: Mapping[str, str] | None = None, *, quiet_days: int = 0
) -> coldmod_pb2.FetchResponse:
    """The collector's heatmap of ``app``, as it answered; one sentence when it has none."""
    import grpc

    from coldmod_cli import client

    try:
        return client.fetch(app, env=env, quiet_days=quiet_days)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
        raise CliError(
            f"the collector has no heatmap for app {app!r} yet; "
            f"start the application under coldmod-trace (it registers when it starts)"
        ) from None


def fetch(result: heatmap.CheckoutView, fmt: str) -> None:
    """Print the reconciled heatmap."""
    if fmt == "json":
        print_json(
            {
                "app": result.app,
                "root": result.root,
                "registered": heatmap.iso(result.registered_ms),
                "now": heatmap.iso(result.now_ms),
                "versions": versions_json(result),
                "retire_after_seconds": result.retire_after_ms // 1000 if result.retire_after_ms else None,
                "functions": [heatmap.row_json(row, result.versions) for row in result.rows],
                "skipped_server_keys": len(result.skipped_keys),
                "untracked": result.untracked,
                "dropped_unknown": result.dropped_unknown,
                "dropped_updates": result.dropped_updates,
            }
        )
        return
    for line in heatmap.history_table(result.rows, result):
        print(line)


def tracking_began(result: heatmap.CheckoutView) -> int:
    """When the collector began tracking this checkout's functions (epoch ms; 0 when it tracks none)."""
    return min((row.tracked_since_ms for row in result.rows if row.tracked and row.tracked_since_ms), default=0)


def tracked_for(result: heatmap.CheckoutView, now: int) -> str:
    """``the app has been tracked for 3d (since 2026-…)``, or that it is not tracked yet."""
    began = tracking_began(result)
    if not began:
        return f"the collector tracks no function of this checkout for app {result.app!r} yet"
    return f"{result.app!r} has been tracked for {span(max(0, now - began) / 1000)} (since {heatmap.iso(began)})"


def only_under(result: heatmap.CheckoutView, relpaths: list[str]) -> heatmap.CheckoutView:
    """The heatmap limited to the files under these root-relative paths (``.`` is the whole root)."""
    if not relpaths or "." in relpaths:
        return result
    prefixes = tuple(path.rstrip("/") + "/" for path in relpaths)
    rows = [row for row in result.rows if row.path in relpaths or row.path.startswith(prefixes)]
    return dataclasses.replace(result, rows=rows)


def cold(
    result: heatmap.CheckoutView,
    fmt: str,
    *,
    since: float | None = None,
    min_tracked: float | None = None,
) -> list[heatmap.Row]:
    """Print the cold functions (text, json, markdown or sarif) and their summary; returns them.

    Seasonal ones (see :mod:`coldmod_cli.seasonal`) are listed with their reason: review, not safe.
    Functions marked ``# coldmod: keep`` are never listed.
    """
    now = result.now_ms
    marked = keep.kept(result.root, heatmap.cold(result.rows, now=now, since=since))
    rows = [
        row for row in heatmap.cold(result.rows, now=now, since=since, min_tracked=min_tracked) if row.key not in marked
    ]
    # Quiet but tracked for less than the window or --min-tracked: left out, and said so (not known to be cold yet).
    too_brief = sum(
        row.key not in marked
        for row in heatmap.too_briefly_tracked(result.rows, now=now, since=since, min_tracked=min_tracked)
    )
    held = seasonal.reasons(rows, now)
    tracked = [row for row in result.rows if row.tracked]
    cold_lines, total_lines = heatmap.line_counts(
        result.root,
        tracked,
        {row.key for row in rows},
        progress=lambda files: progress(files, "counting lines"),
    )
    if fmt == "json":
        print_json(
            {
                "app": result.app,
                "root": result.root,
                "now": heatmap.iso(now),
                "cold": [heatmap.row_json(row, result.versions) | {"seasonal": held.get(row.key)} for row in rows],
                "summary": {
                    "cold_functions": len(rows),
                    "seasonal_functions": len(held),
                    "tracked_functions": len(tracked),
                    "untracked_functions": result.untracked,
                    "tracked_too_briefly": too_brief,
                    "kept": len(marked),
                    "cold_lines": cold_lines,
                    "function_lines": total_lines,
                    "tracked_since": heatmap.iso(tracking_began(result)),
                },
            }
        )
        return rows
    are = "is" if len(rows) == 1 or len(tracked) == 1 else "are"
    need = max(since or 0.0, min_tracked or 0.0)
    if fmt == "sarif":
        print_json(formats.sarif(rows, root=Path(result.root), now=now))
    elif fmt == "markdown":
        summary = (
            f"{len(rows)} of {plural(len(tracked), 'tracked function')} {are} cold "
            f"({cold_lines} of {plural(total_lines, 'line')} in functions); {tracked_for(result, now)}."
        )
        print(formats.markdown(rows, app=result.app, now=now, summary=summary), end="")
    elif rows:
        for line in heatmap.table(rows, now, notes={key: f"seasonal: {text}" for key, text in held.items()}):
            print(line)
    say(
        f"{len(rows)} of {plural(len(tracked), 'tracked function')} {are} cold "
        f"({cold_lines} of {plural(total_lines, 'line')} in functions)"
        + (f"; {len(held)} of them seasonal (review: rm --cold keeps them unless --include review)" if held else "")
        + (f"; {plural(result.untracked, 'untracked function')} left out" if result.untracked else "")
        + (f"; {plural(len(marked), 'cold function')} marked `# coldmod: keep` left out" if marked else "")
        + (
            f"; {plural(too_brief, 'cold function')} left out for being tracked less than {span(need)}"
            if too_brief
            else ""
        )
        + f"; {tracked_for(result, now)}"
    )
    return rows


def versions_json(result: heatmap.CheckoutView) -> list[dict[str, Any]]:
    """The live versions as JSON (``functions[].versions`` lists their names)."""
    return [
        {
            "name": v.name,
            "label": v.label or None,
            "fingerprint": v.fingerprint,
            "functions": v.keys,
            "first_seen": heatmap.iso(v.first_seen_ms),
            "last_seen": heatmap.iso(v.last_seen_ms),
        }
        for v in result.versions
    ]

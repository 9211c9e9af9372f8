"""What ``fetch`` and ``cold`` print, shared with ``demo`` (data on stdout, the summary on stderr)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from coldmod_cli import heatmap, local, seasonal
from coldmod_cli._errors import CliError, say
from coldmod_cli._progress import progress
from coldmod_cli._words import plural, span


def print_json(data: Any) -> None:
    """Indented JSON on stdout."""
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def load(
    start: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None, *, quiet_days: int = 0
) -> heatmap.Heatmap:
    """The checkout at ``start`` (default: the cwd) reconciled with its heatmap on the collector.

    ``quiet_days``: the rows with no call in that many days carry their daily history (see :func:`heatmap.quiet_days`).
    """
    import grpc

    from coldmod_cli import client

    found = local.checkout(start)
    app = local.app_name(found, env)
    try:
        response = client.fetch(app, env=env, quiet_days=quiet_days)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
        raise CliError(
            f"the collector has no heatmap for app {app!r} yet; "
            f"start the application under coldmod-trace (it registers when it starts)"
        ) from None
    result = heatmap.reconcile(response, found)
    result.app = app
    if result.skipped_keys:
        say(
            f"skipped {plural(len(result.skipped_keys), 'key')} the collector knows but this checkout does not have "
            f"(removed, renamed or ignored since the application last started)"
        )
    return result


def fetch(result: heatmap.Heatmap, fmt: str) -> None:
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


def cold(
    result: heatmap.Heatmap,
    fmt: str,
    *,
    since: float | None = None,
    min_tracked: float | None = None,
) -> list[heatmap.Row]:
    """Print the cold functions and their summary; returns them.

    Seasonal ones (see :mod:`coldmod_cli.seasonal`) are listed with their reason: review, not safe.
    """
    now = result.now_ms
    rows = heatmap.cold(result.rows, now=now, since=since, min_tracked=min_tracked)
    # Quiet but tracked for less than the window or --min-tracked: left out, and said so (not known to be cold yet).
    too_brief = len(heatmap.too_briefly_tracked(result.rows, now=now, since=since, min_tracked=min_tracked))
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
                    "cold_lines": cold_lines,
                    "function_lines": total_lines,
                },
            }
        )
        return rows
    if rows:
        for line in heatmap.table(rows, now, notes={key: f"seasonal: {text}" for key, text in held.items()}):
            print(line)
    are = "is" if len(rows) == 1 or len(tracked) == 1 else "are"
    need = max(since or 0.0, min_tracked or 0.0)
    say(
        f"{len(rows)} of {plural(len(tracked), 'tracked function')} {are} cold "
        f"({cold_lines} of {plural(total_lines, 'line')} in functions)"
        + (f"; {len(held)} of them seasonal (review: rm --cold keeps them unless --include review)" if held else "")
        + (f"; {plural(result.untracked, 'untracked function')} left out" if result.untracked else "")
        + (
            f"; {plural(too_brief, 'cold function')} left out for being tracked less than {span(need)}"
            if too_brief
            else ""
        )
    )
    return rows


def versions_json(result: heatmap.Heatmap) -> list[dict[str, Any]]:
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

"""What ``fetch`` and ``cold`` print, shared with ``demo`` (data on stdout, the summary on stderr)."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coldmod_cli import formats, heatmap, keep, local
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
    snapshot: str | None = None,
) -> heatmap.Heatmap:
    """The checkout at ``start`` (default: the cwd) reconciled with its heatmap (the collector's, or a snapshot's)."""
    found = local.checkout(start)
    app = local.app_name(found, env)
    if snapshot is not None:
        from coldmod_cli import snapshot as snapshots

        response = snapshots.read(snapshot, app)
    else:
        response = fetch_response(app, env)
    result = heatmap.reconcile(response, found)
    result.app = app
    if result.skipped_keys:
        say(
            f"skipped {plural(len(result.skipped_keys), 'key')} the collector knows but this checkout does not have "
            f"(removed, renamed or ignored since the application last started)"
        )
    return result


def fetch_response(app: str, env: Mapping[str, str] | None = None) -> coldmod_pb2.FetchResponse:
    """The collector's heatmap of ``app``, as it answered; one sentence when it has none."""
    import grpc

    from coldmod_cli import client

    try:
        return client.fetch(app, env=env)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
        raise CliError(
            f"the collector has no heatmap for app {app!r} yet; "
            f"start the application under coldmod-trace (it registers when it starts)"
        ) from None


def fetch(result: heatmap.Heatmap, fmt: str) -> None:
    """Print the reconciled heatmap."""
    if fmt == "json":
        print_json(
            {
                "app": result.app,
                "root": result.root,
                "registered": heatmap.iso(result.registered_ms),
                "functions": [heatmap.row_json(row) for row in result.rows],
                "skipped_server_keys": len(result.skipped_keys),
                "untracked": result.untracked,
                "dropped_unknown": result.dropped_unknown,
                "dropped_updates": result.dropped_updates,
            }
        )
        return
    for line in heatmap.table(result.rows, heatmap.now_ms()):
        print(line)


def tracking_began(result: heatmap.Heatmap) -> int:
    """When the collector began tracking this checkout's functions (epoch ms; 0 when it tracks none)."""
    return min((row.tracked_since_ms for row in result.rows if row.tracked and row.tracked_since_ms), default=0)


def tracked_for(result: heatmap.Heatmap, now: int) -> str:
    """``the app has been tracked for 3d (since 2026-…)``, or that it is not tracked yet."""
    began = tracking_began(result)
    if not began:
        return f"the collector tracks no function of this checkout for app {result.app!r} yet"
    return f"{result.app!r} has been tracked for {span(max(0, now - began) / 1000)} (since {heatmap.iso(began)})"


def only_under(result: heatmap.Heatmap, relpaths: list[str]) -> heatmap.Heatmap:
    """The heatmap limited to the files under these root-relative paths (``.`` is the whole root)."""
    if not relpaths or "." in relpaths:
        return result
    prefixes = tuple(path.rstrip("/") + "/" for path in relpaths)
    rows = [row for row in result.rows if row.path in relpaths or row.path.startswith(prefixes)]
    return dataclasses.replace(result, rows=rows)


def cold(
    result: heatmap.Heatmap,
    fmt: str,
    *,
    since: float | None = None,
    min_tracked: float | None = None,
) -> list[heatmap.Row]:
    """Print the cold functions (text, json, markdown or sarif) and their summary; returns them."""
    now = heatmap.now_ms()
    everything = heatmap.cold(result.rows, now=now, since=since)
    marked = keep.kept(result.root, everything)  # `# coldmod: keep`: never listed
    rows = [row for row in heatmap.cold(result.rows, now=now, since=since, min_tracked=min_tracked)
            if row.key not in marked]
    # Cold but traced for less than --min-tracked: left out, and said so (they are not known to be cold yet).
    too_brief = sum(row.key not in marked for row in everything) - len(rows) if min_tracked else 0
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
                "cold": [heatmap.row_json(row) for row in rows],
                "summary": {
                    "cold_functions": len(rows),
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
    if fmt == "sarif":
        print_json(formats.sarif(rows, root=Path(result.root), now=now))
    elif fmt == "markdown":
        summary = (
            f"{len(rows)} of {plural(len(tracked), 'tracked function')} {are} cold "
            f"({cold_lines} of {plural(total_lines, 'line')} in functions); {tracked_for(result, now)}."
        )
        print(formats.markdown(rows, app=result.app, now=now, summary=summary), end="")
    elif rows:
        for line in heatmap.table(rows, now):
            print(line)
    say(
        f"{len(rows)} of {plural(len(tracked), 'tracked function')} {are} cold "
        f"({cold_lines} of {plural(total_lines, 'line')} in functions)"
        + (f"; {plural(result.untracked, 'untracked function')} left out" if result.untracked else "")
        + (f"; {plural(len(marked), 'cold function')} marked `# coldmod: keep` left out" if marked else "")
        + (
            f"; {plural(too_brief, 'cold function')} left out for being tracked less than {span(min_tracked)}"
            if too_brief and min_tracked
            else ""
        )
        + f"; {tracked_for(result, now)}"
    )
    return rows

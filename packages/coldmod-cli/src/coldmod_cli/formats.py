"""The cold list in the formats other tools read: markdown for a pull-request comment, SARIF for code scanning.

SARIF 2.1.0 (OASIS) is what GitHub code scanning, GitLab and most IDE viewers
ingest. A log holds ``version``, ``$schema`` and ``runs``; a run names its
tool (``tool.driver``: name, informationUri, the rules) and lists its results.
Each result here is one cold function: a ``ruleId`` (the verdict when one is
known, else ``cold``), a ``level``, a ``message.text`` carrying the evidence
(calls, last call, tracked since) and one location at the ``def`` line, its
``artifactLocation.uri`` relative to the repository root (``uriBaseId``
``%SRCROOT%``) so an annotation lands on the function in a pull request even
when the rootmarker is below the repository's top. ``partialFingerprints``
holds the function's key, so the alert follows the function when lines move.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from coldmod_cli import heatmap
from coldmod_cli._words import plural, span

__all__ = ["RULES", "SARIF_SCHEMA", "markdown", "repo_prefix", "sarif"]

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
INFORMATION_URI = "https://github.com/coldmod/coldmod"
#: The base every result's path is relative to (the repository's root, as code scanning expects).
SRCROOT = "%SRCROOT%"

#: rule id: (level, short description, what to do). ``cold`` when no verdict is known (``coldmod cold``);
#: a verdict's rule when ``rm --dry-run`` planned the removal.
RULES: dict[str, tuple[str, str, str]] = {
    "cold": ("warning", "Function never called in production",
             "No call was counted while the application ran under coldmod-trace; "
             "`coldmod rm --dry-run KEY` shows whether it can be removed."),
    "safe": ("warning", "Cold function, safe to remove",
             "Nothing refers to it by any known route; `coldmod rm --cold` removes it."),
    "review": ("note", "Cold function with indirect uses",
               "Only indirect or possible uses; review the reasons, then `coldmod rm --include review`."),
    "test-only": ("note", "Cold function used only by tests",
                  "Referenced only from tests; removed with the tests that exist only for it when asked."),
    "unsafe": ("note", "Cold function still referenced",
               "A definite reference remains; remove it first, or mark the function `# coldmod: keep`."),
}


def evidence(row: heatmap.Row, now: int) -> str:
    """What the heatmap knows of a cold function, in words: calls, last call, tracked since."""
    calls = ("at least " if row.lower_bound else "about " if row.estimated else "") + plural(row.calls, "call")
    last = "never called" if not row.last_seen_ms else f"last called {heatmap.iso(row.last_seen_ms)}"
    since = heatmap.iso(row.tracked_since_ms)
    tracked = f"tracked since {since} ({span(max(0, now - row.tracked_since_ms) / 1000)})" if since else "tracked"
    return f"{calls}, {last}, {tracked}"


def repo_prefix(root: Path) -> str:
    """The rootmarker's directory relative to the git repository's top (``""`` at the top or outside git)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--show-prefix"], cwd=root, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def sarif(
    rows: Iterable[heatmap.Row], *, root: Path, now: int, verdicts: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one result per cold function at its ``def`` line."""
    verdicts = verdicts or {}
    prefix = repo_prefix(root)
    results: list[dict[str, Any]] = []
    used: list[str] = []
    for row in rows:
        rule = verdicts.get(row.key, "cold")
        if rule not in used:
            used.append(rule)
        results.append(
            {
                "ruleId": rule,
                "ruleIndex": 0,  # set below, once the rules are known
                "level": RULES[rule][0],
                "message": {"text": f"{row.key} is cold ({RULES[rule][1].lower()}): {evidence(row, now)}."},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": prefix + row.path, "uriBaseId": SRCROOT},
                            "region": {"startLine": row.line},
                        },
                        "logicalLocations": [{"fullyQualifiedName": row.key, "kind": "function"}],
                    }
                ],
                "partialFingerprints": {"coldmodKey/v1": row.key},
            }
        )
    used = sorted(used, key=list(RULES).index)
    for result in results:
        result["ruleIndex"] = used.index(result["ruleId"])
    rules = [
        {
            "id": rule,
            "name": RULES[rule][1].title().replace(" ", "").replace(",", ""),
            "shortDescription": {"text": RULES[rule][1]},
            "fullDescription": {"text": RULES[rule][2]},
            "defaultConfiguration": {"level": RULES[rule][0]},
            "helpUri": INFORMATION_URI,
        }
        for rule in used
    ]
    from coldmod_cli import __version__

    return {
        "version": SARIF_VERSION,
        "$schema": SARIF_SCHEMA,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "coldmod",
                        "version": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": rules,
                    }
                },
                "originalUriBaseIds": {SRCROOT: {"description": {"text": "The repository's root."}}},
                "results": results,
            }
        ],
    }


def markdown(
    rows: list[heatmap.Row],
    *,
    app: str,
    now: int,
    summary: str,
    verdicts: Mapping[str, str] | None = None,
) -> str:
    """A markdown section for a pull-request comment: a heading, the summary, one table row per function."""
    verdicts = verdicts or {}
    lines = [f"### Coldmod: {plural(len(rows), 'cold function')} in `{app}`", "", summary, ""]
    if not rows:
        return "\n".join(lines)
    with_verdict = bool(verdicts)
    header = ["Function", "Location", "Calls", "Last call", "Tracked since"] + (["Verdict"] if with_verdict else [])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        calls = ("≥" if row.lower_bound else "~" if row.estimated else "") + str(row.calls)
        cells = [
            _code(row.key),
            _code(f"{row.path}:{row.line}"),
            calls,
            heatmap.iso(row.last_seen_ms) or "never",
            heatmap.iso(row.tracked_since_ms) or "",
        ] + ([verdicts.get(row.key, "")] if with_verdict else [])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _code(text: str) -> str:
    """Inline code in a table cell: ``<locals>`` stays text, a ``|`` never splits the cell."""
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"

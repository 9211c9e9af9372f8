"""``coldmod report --html DIR``: the web UI's page as static files that open from ``file://``.

The report is the web UI itself — the same ``index.html``, ``app.js`` and
``style.css`` the collector serves (no second UI to keep in step) — plus
``data.js``, which sets ``window.COLDMOD_REPORT`` to what the page would
otherwise ask the collector for: the list of apps and the heatmap's columns
(the encoding :func:`coldmod_cli.web.httpd._heatmap_columns` serves), and
the time the report was made, so "3 days ago" reads as of then. ``app.js``
finds it and neither fetches nor listens: the treemap, the table, the filters
and each function's details work with no network, in a browser opened on the
folder or attached to a CI run. A script file rather than JSON, because a
page opened from ``file://`` may not ``fetch`` its neighbours.
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from coldmod_cli._errors import CliError
from coldmod_cli.server.store import DEFAULT_RETIRE_AFTER_MS, Entry, Heatmap, Version

if TYPE_CHECKING:
    from coldmod_proto.v1 import coldmod_pb2

__all__ = ["FILES", "write"]

#: What a report folder holds.
FILES = ("index.html", "app.js", "style.css", "data.js")


def page(static_index: str) -> str:
    """The UI's index.html with its assets next to it and the report's data loaded before app.js."""
    html = static_index.replace('href="/static/style.css"', 'href="style.css"')
    return html.replace('<script src="/static/app.js" defer></script>',
                        '<script src="data.js"></script>\n<script src="app.js" defer></script>')


def data(response: coldmod_pb2.FetchResponse, now_ms: int) -> str:
    """data.js: the apps list and the heatmap as the page reads them from the collector."""
    from coldmod_cli.web.httpd import _heatmap_columns  # the one encoding of a heatmap for the page

    entries = response.entries
    summary = {
        "app": response.app,
        "keys": len(entries),
        "cold_keys": sum(1 for e in entries if not e.calls),
        "calls": sum(e.calls for e in entries),
        "updated_ms": now_ms,
    }
    report = {
        "now_ms": now_ms,
        "apps": {"apps": [summary], "total": 1, "next": ""},
        "heatmap": _heatmap_columns(_stored(response, now_ms)),
    }
    # JSON is JavaScript; `</` is escaped anyway so the text could never close a script element.
    return "window.COLDMOD_REPORT = " + json.dumps(report, separators=(",", ":")).replace("</", "<\\/") + ";\n"


def _stored(response: coldmod_pb2.FetchResponse, now_ms: int) -> Heatmap:
    """The Fetch answer as the collector's own heatmap, which the page's encoding reads."""
    rows = [
        Entry(e.key, e.calls, e.estimated, e.first_seen_ms, e.last_seen_ms, e.tracked_since_ms, e.path,
              tuple(e.lines), e.lower_bound, tuple(e.versions), e.calls_7d, e.calls_30d, e.calls_90d)
        for e in response.entries
    ]
    versions = [Version(v.fingerprint, v.label, v.first_seen_ms, v.last_seen_ms, v.keys) for v in response.versions]
    return Heatmap(response.app, rows, response.registered_ms, response.dropped_unknown, response.dropped_updates,
                   versions, response.now_ms or now_ms, response.retire_after_ms or DEFAULT_RETIRE_AFTER_MS)


def write(directory: str | os.PathLike[str], response: coldmod_pb2.FetchResponse, now_ms: int) -> Path:
    """Write the report's files into ``directory`` (made if missing); returns its index.html."""
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise CliError(f"{directory} is a file; name a directory for the report")
    static = resources.files("coldmod_cli.web") / "static"
    contents = {
        "index.html": page((static / "index.html").read_text(encoding="utf-8")),
        "app.js": (static / "app.js").read_text(encoding="utf-8"),
        "style.css": (static / "style.css").read_text(encoding="utf-8"),
        "data.js": data(response, now_ms),
    }
    try:
        target.mkdir(parents=True, exist_ok=True)
        for name, text in contents.items():
            fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text)
                os.replace(tmp, target / name)
            except BaseException:
                os.unlink(tmp)
                raise
    except OSError as exc:
        raise CliError(f"cannot write the report into {directory}: {exc.strerror or exc}") from None
    return target / "index.html"

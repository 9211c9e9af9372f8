"""Heatmap snapshots: the collector's answer saved to a file, so CI reads it with no collector and no credentials.

``coldmod fetch --save FILE`` writes one; ``cold``, ``rm`` and ``report`` read
it with ``--from FILE``. The file is JSON::

    {"format": "coldmod-heatmap", "version": 1, "app": "shop",
     "saved": "2026-12-07T05:00:00.000Z", "fetch": {...}}

``fetch`` is the collector's ``FetchResponse`` in protobuf's canonical JSON
mapping (field names as in ``coldmod.proto``; 64-bit numbers as strings), so a
field the protocol gains is carried without this module knowing it, and a
reader ignores fields newer than itself. ``version`` changes only when the
wrapper does; a file of a newer version is refused rather than misread. The
write is atomic (a temporary file renamed over the target), so a reader never
sees half a snapshot.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coldmod_cli import heatmap
from coldmod_cli._errors import CliError, UsageError

if TYPE_CHECKING:
    from coldmod_proto.v1 import coldmod_pb2

__all__ = ["FORMAT", "VERSION", "read", "write"]

#: What the file says it is.
FORMAT = "coldmod-heatmap"
#: The wrapper's version: readers refuse a newer one.
VERSION = 1


def write(path: str | os.PathLike[str], app: str, response: coldmod_pb2.FetchResponse) -> Path:
    """Save ``response`` (the heatmap of ``app``) to ``path`` atomically; returns the path written."""
    from google.protobuf import json_format

    target = Path(path)
    document = {
        "format": FORMAT,
        "version": VERSION,
        "app": app,
        "saved": heatmap.iso(heatmap.now_ms()),
        "fetch": json_format.MessageToDict(response, preserving_proto_field_name=True),
    }
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise UsageError(f"cannot save to {path}: the directory {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=1, ensure_ascii=False)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise CliError(f"cannot save to {path}: {exc.strerror or exc}") from None
    return target


def read(path: str | os.PathLike[str], app: str) -> coldmod_pb2.FetchResponse:
    """The FetchResponse saved in ``path``, which must be a snapshot of ``app``; one sentence (exit 2) otherwise."""
    from google.protobuf import json_format

    from coldmod_proto.v1 import coldmod_pb2

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise UsageError(f"cannot read the snapshot {path}: {reason}") from None
    try:
        document: Any = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise UsageError(f"{path} is not a coldmod heatmap snapshot; write one with `coldmod fetch --save {path}`")
    version = document.get("version")
    if type(version) is not int or version < 1:
        raise UsageError(f"{path} is a damaged snapshot (its version is {version!r}); save it again")
    if version > VERSION:
        raise UsageError(
            f"{path} was saved by a newer coldmod (snapshot version {version}; this one reads up to {VERSION}); "
            f"upgrade coldmod-cli"
        )
    saved_app = document.get("app")
    if saved_app != app:
        raise UsageError(
            f"{path} is a snapshot of the app {saved_app!r}, but this checkout is the app {app!r}; "
            f"use the snapshot of this app (or set COLDMOD_APP={saved_app} if it is the same code under another name)"
        )
    if not isinstance(document.get("fetch"), dict):
        raise UsageError(f"{path} is a damaged snapshot (no heatmap in it); save it again")
    response = coldmod_pb2.FetchResponse()
    try:
        json_format.ParseDict(document["fetch"], response, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, AttributeError) as exc:
        raise UsageError(f"{path} is a damaged snapshot ({exc}); save it again") from None
    return response

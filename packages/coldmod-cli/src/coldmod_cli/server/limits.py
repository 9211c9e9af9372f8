"""What the collector accepts: limits and the validation of incoming messages.

Every check raises :class:`Rejected` with the gRPC status and one sentence;
nothing here touches the store, so a rejected message never changes data.
"""

from __future__ import annotations

import base64
import binascii
import time

import grpc

from coldmod_cli.server.store import Batch, IgnoreRules, Source
from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_trace.keys import sources_fingerprint

__all__ = [
    "MAX_APP_LENGTH",
    "MAX_CALLS",
    "MAX_INSTANCE_ID_LENGTH",
    "MAX_KEYS_PER_APP",
    "MAX_KEY_LENGTH",
    "MAX_PAGE_SIZE",
    "Rejected",
    "batch_from",
    "check_app",
    "check_fingerprint",
    "ignore_from",
    "label_from",
    "page_from",
    "page_token",
    "sources_from",
]

MAX_KEYS_PER_APP = 200_000
MAX_KEY_LENGTH = 1024
MAX_PATH_LENGTH = 4096
MAX_LINES_PER_SOURCE = 1024
MAX_APP_LENGTH = 128
MAX_INSTANCE_ID_LENGTH = 128
#: A version's label (COLDMOD_VERSION: a git sha, a release tag) and a set's fingerprint.
MAX_LABEL_LENGTH = 128
MAX_FINGERPRINT_LENGTH = 128
#: [ignore] rules one Register may carry (keys and files globs each).
MAX_IGNORE_RULES = 10_000
#: No process makes 2**62 calls in one window; larger deltas are corrupt or hostile.
MAX_CALLS = 2**62
#: Batch windows may run ahead of the server's clock by this much (clock skew);
#: what is ahead is brought back to the collector's clock.
MAX_CLOCK_SKEW_MS = 24 * 3600 * 1000
#: ListApps pages: the default size and the most one page holds (far below the message cap).
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class Rejected(Exception):
    """A message the collector refuses: its status code and one sentence."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        """Keep the status code next to the message."""
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message: str) -> Rejected:
    return Rejected(grpc.StatusCode.INVALID_ARGUMENT, message)


def check_app(app: str) -> str:
    """The app name, if it is a usable heatmap namespace."""
    if not app:
        raise _invalid("the app name is empty")
    if len(app) > MAX_APP_LENGTH or not app.isprintable() or app != app.strip():
        raise _invalid(f"the app name must be 1 to {MAX_APP_LENGTH} printable characters without surrounding spaces")
    return app


def _check_key(key: str) -> None:
    if not key:
        raise _invalid("a key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise _invalid(f"a key is {len(key)} characters long; keys may be at most {MAX_KEY_LENGTH}")
    if not key.isprintable():
        raise _invalid(f"the key {key[:80]!r} holds control characters")


def sources_from(request: pb.RegisterRequest) -> tuple[list[Source], str]:
    """The validated sources of a Register and their fingerprint (equal sets, equal prints)."""
    if len(request.sources) > MAX_KEYS_PER_APP:
        raise Rejected(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the app has {len(request.sources)} keys; a collector keeps at most {MAX_KEYS_PER_APP} per app",
        )
    # A fleet's large set: one pass per field, then checks done by C loops
    # (min/max/join, a set); the per-source loop below runs only to name a fault.
    items = list(request.sources)
    keys = [s.key for s in items]
    paths = [s.path for s in items]
    lines = [tuple(s.lines) for s in items]
    if items and (
        not min(map(len, keys))
        or max(map(len, keys)) > MAX_KEY_LENGTH
        or max(map(len, paths)) > MAX_PATH_LENGTH
        or max(map(len, lines)) > MAX_LINES_PER_SOURCE
        or not "".join(keys).isprintable()
        or not "".join(paths).isprintable()
        or len(set(keys)) != len(keys)
    ):
        _name_the_fault(keys, paths, lines)
    sources = list(map(Source, keys, paths, lines))
    return sources, sources_fingerprint(zip(keys, paths, lines, strict=True))


def _name_the_fault(keys: list[str], paths: list[str], lines: list[tuple[int, ...]]) -> None:
    """Raise the refusal of the first bad source of a Register."""
    seen: set[str] = set()
    for key, path, where in zip(keys, paths, lines, strict=True):
        _check_key(key)
        if key in seen:
            raise _invalid(f"the key {key[:80]!r} is registered twice; send each key once with all its lines")
        seen.add(key)
        if len(path) > MAX_PATH_LENGTH or not path.isprintable():
            raise _invalid(f"the path of {key[:80]!r} is too long or holds control characters")
        if len(where) > MAX_LINES_PER_SOURCE:
            raise _invalid(f"the key {key[:80]!r} has {len(where)} lines; at most {MAX_LINES_PER_SOURCE}")
    raise AssertionError("unreachable: a fault was detected")  # pragma: no cover


def label_from(request: pb.RegisterRequest) -> str:
    """The version label of a Register (COLDMOD_VERSION), if it is short and printable."""
    label = request.version
    if len(label) > MAX_LABEL_LENGTH or not label.isprintable():
        raise _invalid(f"the version label must be at most {MAX_LABEL_LENGTH} printable characters")
    return label


def ignore_from(request: pb.RegisterRequest) -> IgnoreRules:
    """The [ignore] rules a Register carries (keys, and root-relative files globs)."""
    keys, files = tuple(request.ignore_keys), tuple(request.ignore_files)
    if len(keys) > MAX_IGNORE_RULES or len(files) > MAX_IGNORE_RULES:
        raise _invalid(f"a Register carries at most {MAX_IGNORE_RULES} [ignore] keys and as many files globs")
    for key in keys:
        _check_key(key)
    if any(len(f) > MAX_PATH_LENGTH or not f.isprintable() for f in files):
        raise _invalid(f"an [ignore] files glob is longer than {MAX_PATH_LENGTH} or holds control characters")
    return IgnoreRules(keys, files)


def check_fingerprint(fingerprint: str) -> str:
    """A set's fingerprint as sent, if it is short and printable."""
    if len(fingerprint) > MAX_FINGERPRINT_LENGTH or not fingerprint.isprintable():
        raise _invalid(f"the fingerprint must be at most {MAX_FINGERPRINT_LENGTH} printable characters")
    return fingerprint


def batch_from(request: pb.ReportRequest, now_ms: int | None = None) -> Batch:
    """The validated batch of a Report, its window bounded by the collector's clock ``now_ms`` (None: wall)."""
    app = check_app(request.app)
    instance = request.instance_id
    if not instance or len(instance) > MAX_INSTANCE_ID_LENGTH or not instance.isprintable():
        raise _invalid(f"the instance_id must be 1 to {MAX_INSTANCE_ID_LENGTH} printable characters")
    if request.sequence < 1:
        raise _invalid("the sequence must start at 1")
    if request.sequence >= 2**63:
        raise _invalid("the sequence is beyond 2**63")
    start, end = request.window_start_ms, request.window_end_ms
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if start < 0 or end < 0 or end < start:
        raise _invalid("the batch window must satisfy 0 <= window_start_ms <= window_end_ms")
    if end > now + MAX_CLOCK_SKEW_MS:
        raise _invalid("the batch window ends more than a day in the future; check the clock")
    if end == 0:  # the tracer did not say when: now is the best guess
        start = end = now
    elif start == 0:
        start = end
    # first/last seen come from the window (calls made while the collector was
    # down keep their time), but never from the future of the collector's clock.
    end = min(end, now)
    start = min(start, end)
    if request.dropped_updates > MAX_CALLS:
        raise _invalid(f"dropped_updates {request.dropped_updates} is beyond any real count")
    if len(request.deltas) > MAX_KEYS_PER_APP:
        raise Rejected(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the batch has {len(request.deltas)} deltas; an app has at most {MAX_KEYS_PER_APP} keys",
        )
    # The ingestion hot path: one pass per field, then checks done by C loops
    # (min/max/join); a per-delta Python loop costs about twice as much.
    items = list(request.deltas)  # wrap each element once, not once per field
    keys = [d.key for d in items]
    calls = [d.calls for d in items]
    estimated = [d.estimated for d in items]
    lower_bound = [d.lower_bound for d in items]
    if not any(lower_bound):
        lower_bound = []  # the usual case: the store skips the column
    if keys and (not min(map(len, keys)) or max(map(len, keys)) > MAX_KEY_LENGTH or not "".join(keys).isprintable()):
        for key in keys:
            _check_key(key)
    if calls and max(calls) > MAX_CALLS:
        raise _invalid(f"a delta has {max(calls)} calls, beyond any real count")
    if len(set(keys)) != len(keys):
        seen: set[str] = set()
        for key in keys:
            if key in seen:
                raise _invalid(f"the key {key[:80]!r} appears twice in one batch; aggregate it first")
            seen.add(key)
    fingerprint = check_fingerprint(request.fingerprint)
    return Batch(
        app,
        instance,
        request.sequence,
        start,
        end,
        keys,
        calls,
        estimated,
        request.dropped_updates,
        lower_bound,
        fingerprint,
    )


def page_from(request: pb.ListAppsRequest) -> tuple[str, int]:
    """The app name a ListApps page starts after, and the page size (0 is the default, larger is capped)."""
    size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    if not request.page_token:
        return "", size
    try:
        return check_app(base64.urlsafe_b64decode(request.page_token.encode("ascii")).decode("utf-8")), size
    except (binascii.Error, UnicodeError, ValueError, Rejected):
        raise _invalid("the page_token is not one this collector issued; start again with an empty one") from None


def page_token(last_app: str) -> str:
    """The token of the page after ``last_app`` (opaque to clients)."""
    return base64.urlsafe_b64encode(last_app.encode("utf-8")).decode("ascii")

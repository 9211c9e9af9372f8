"""``coldmod store copy SRC DST``: move heatmaps between stores (SQLite → Redis and back).

Each app of SRC becomes *exactly* the same app in DST (keys, counts, first
and last seen, tracked since, drop counters, fingerprint, its versions and
which keys each has, and every key's daily history) in one atomic write per
app (``Store.restore``), so running the copy again changes nothing and an
interrupted copy is finished by running it again. Apps only in DST stay.

What does not move: batch ids (the exactly-once records). Copy with the
collectors stopped (an SQLite store refuses anyway while its collector runs),
and a tracer's one in-flight batch, resent to the new store, is applied
there once more at worst — stop the traced fleet too for an exact switch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from coldmod_cli.server.store import Store, StoreError, open_store

__all__ = ["Copied", "copy"]

#: Apps read per ListApps page from SRC.
_PAGE = 500


@dataclass(frozen=True)
class Copied:
    """One app copied."""

    app: str
    keys: int
    calls: int


def _apps(store: Store) -> list[str]:
    names: list[str] = []
    while True:
        page = store.list_apps(after=names[-1] if names else "", limit=_PAGE)
        names += [a.app for a in page]
        if len(page) < _PAGE:
            return names


def copy(src_url: str, dst_url: str, progress: Callable[[Copied], None] | None = None) -> list[Copied]:
    """Make every app of SRC the same in DST; raises StoreError (one sentence) before writing if it cannot."""
    if src_url.strip() == dst_url.strip():
        raise StoreError("the source and the destination are the same store; name two different stores")
    src = open_store(src_url)
    try:
        dst = open_store(dst_url)
        try:
            return _copy(src, dst, progress)
        finally:
            dst.close()
    finally:
        src.close()


def _copy(src: Store, dst: Store, progress: Callable[[Copied], None] | None) -> list[Copied]:
    """Restore every app of ``src`` into ``dst``, one atomic write per app, after checking ``dst``'s app limit."""
    if src.url == dst.url:
        raise StoreError("the source and the destination are the same store; name two different stores")
    names = _apps(src)
    present = set(_apps(dst))
    new = [n for n in names if n not in present]
    limit = getattr(dst, "max_apps", None)
    if limit is not None and dst.count_apps() + len(new) > limit:
        raise StoreError(
            f"{dst.url} would hold {dst.count_apps() + len(new)} apps, more than its limit of {limit};"
            " delete apps there first"
        )
    done = []
    for name in names:
        heatmap = src.fetch(name, all_history=True)
        dst.restore(heatmap, src.fingerprint(name))
        copied = Copied(name, len(heatmap.entries), sum(e.calls for e in heatmap.entries))
        done.append(copied)
        if progress is not None:
            progress(copied)
    return done

"""Progress for long work: a bar on stderr when it is a terminal, nothing when piped."""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def _size() -> dict[str, int]:
    """The bar's size: a terminal that reports none (a bare pty) would hide it, so 80x24 then."""
    size = shutil.get_terminal_size()
    return {"ncols": size.columns, "nrows": size.lines}


def progress(items: Iterable[T], description: str) -> Iterator[T]:
    """Iterate ``items``, showing a tqdm bar on a terminal's stderr (stdout stays data only)."""
    if not sys.stderr.isatty():
        yield from items
        return
    from tqdm import tqdm

    # leave=False: the bar disappears when done, so the terminal keeps only results.
    yield from tqdm(items, desc=description, file=sys.stderr, leave=False, unit="file", **_size())


@contextlib.contextmanager
def steps(description: str) -> Iterator[Callable[[int, int], None] | None]:
    """A ``progress(done, total)`` callback drawing a bar on a terminal's stderr; None when not a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    with tqdm(desc=description, file=sys.stderr, leave=False, unit="file", **_size()) as bar:

        def update(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        yield update

"""Progress for long work: a bar on stderr when it is a terminal, nothing when piped."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], description: str) -> Iterator[T]:
    """Iterate ``items``, showing a tqdm bar on a terminal's stderr (stdout stays data only)."""
    if not sys.stderr.isatty():
        yield from items
        return
    from tqdm import tqdm

    # leave=False: the bar disappears when done, so the terminal keeps only results.
    yield from tqdm(items, desc=description, file=sys.stderr, leave=False, unit="file")

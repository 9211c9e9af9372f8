"""How counts and periods read in every message: ``1 function``, ``2 functions``, ``7d``."""

from __future__ import annotations

__all__ = ["plural", "span"]

#: Nouns whose plural is not the noun plus ``s``.
_IRREGULAR = {"process": "processes", "entry": "entries", "is": "are", "was": "were"}


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun`` agreeing: ``1 call``, ``1,500 calls``; the last word of ``noun`` is inflected."""
    if count == 1:
        return f"1 {noun}"
    head, _, last = noun.rpartition(" ")
    many = _IRREGULAR.get(last, last + "s")
    return f"{count:,} {head + ' ' if head else ''}{many}"


def span(seconds: float) -> str:
    """A duration the way ``--since`` and ``--min-tracked`` are written: ``7d``, ``3h``, ``12m``, ``40s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            whole = seconds / size
            return f"{whole:.0f}{unit}" if whole >= 10 or whole == int(whole) else f"{whole:.1f}{unit}"
    return f"{seconds:.0f}s"

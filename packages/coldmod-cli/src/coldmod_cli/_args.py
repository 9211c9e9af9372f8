"""Explicit conversion of command-line values (every command receives strings from Fire)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from coldmod_cli._errors import UsageError
from coldmod_trace.config import SWITCH_WORDS

#: The yes/no words of a boolean flag: the project's one set (``COLDMOD_INSECURE`` reads the same),
#: less the empty word, which only an unset variable means.
TRUE = frozenset(word for word, on in SWITCH_WORDS.items() if word and on)
FALSE = frozenset(word for word, on in SWITCH_WORDS.items() if word and not on)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
FORMATS = ("text", "json")
#: What ``coldmod cold`` prints besides: a pull-request comment, and code scanning's format.
COLD_FORMATS = ("text", "json", "markdown", "sarif")


def flag(name: str, value: Any) -> bool:
    """A boolean flag's value; ``--name`` alone is true."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise UsageError(f"--{name} takes no value (or yes/no), not {value!r}; put it after the other arguments")


def output_format(value: Any, allowed: tuple[str, ...] = FORMATS) -> str:
    """``--format``: one of ``allowed`` (text or json unless the command prints more)."""
    text = str(value).strip().lower()
    if text not in allowed:
        raise UsageError(f"--format must be {', '.join(allowed[:-1])} or {allowed[-1]}, not {value!r}")
    return text


def duration(name: str, value: Any) -> float | None:
    """Seconds from a duration like ``30d``, ``12h``, ``15m``, ``90s`` or ``2w``; None when unset."""
    if value is None or value == "":
        return None
    match = _DURATION.match(str(value))
    if not match:
        raise UsageError(f"--{name} must be a duration like 30d, 12h, 15m or 2w, not {value!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]


def keys(values: Iterable[Any]) -> list[str]:
    """Function keys from positional arguments, as typed (deduplicated, order kept)."""
    out: list[str] = []
    for value in values:
        # Fire hands over strings here (see _errors.command); a tuple only
        # arrives from Python callers, so flatten it rather than stringify it.
        items = value if isinstance(value, (tuple, list)) else [value]
        for item in items:
            # A key never holds a comma, so `a.f,b.g` is two keys.
            for part in str(item).split(","):
                key = part.strip()
                if key and key not in out:
                    out.append(key)
    return out

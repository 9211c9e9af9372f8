"""What the collector refuses, counted and said at most once a minute per kind.

A tracer with a stale API key, or a client that speaks plaintext to the TLS
port, is visible to its own operator only if the collector says so: each
refusal is counted here (by the gRPC key check, and by the web UI's basic auth
and TLS handshake) and :meth:`Refusals.tick` says, at most once every
``INTERVAL_S`` per kind, one line with how many were refused since the last
line and the peer of the last one. The key or header presented never reaches
this module: callers pass only the kind and the peer's address.

Memory is a few fields per kind, whatever the number of peers: the line names
the *last* peer, not all of them (a map of peers would grow with a scan).

What is not counted, and why: a client that fails the TLS handshake on the
*gRPC* port (plaintext, or a CA that does not sign our certificate). gRPC's
core ends such a connection inside its handshaker; no interceptor, servicer
or channelz node ever sees it (channelz creates a socket only once the
handshake succeeded, and the server's call counters do not move). Seeing it
would need a listener of our own in front of gRPC's, which changes the
transport. The web UI's handshakes are ours (``ssl.SSLContext.wrap_socket``)
and are counted.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from coldmod_cli._words import plural

__all__ = ["INTERVAL_S", "Refusal", "Refusals", "web_peer"]

log = logging.getLogger(__name__)

#: Seconds between two lines of one kind.
INTERVAL_S = 60.0


class Refusal(enum.Enum):
    """A kind of refusal (its value names it in ``coldmod status --format json``)."""

    CREDENTIALS = "credentials"
    TLS = "tls"


#: How a line names what was refused: the counted noun, and what was wrong with it.
_SAID: dict[Refusal, tuple[str, str]] = {
    Refusal.CREDENTIALS: ("call", "with a wrong or missing API key"),
    Refusal.TLS: (
        "connection",
        "whose TLS handshake failed (plaintext, or a client that does not trust the certificate)",
    ),
}


@dataclass
class _Tally:
    """One kind's counts: since start, and since its last line."""

    total: int = 0
    unsaid: int = 0
    last_peer: str = ""
    since: float = 0.0  # when the first unsaid one was refused
    said_at: float | None = None  # when the last line was said


class Refusals:
    """Thread-safe counters of refusals by kind, and their rate-limited log lines."""

    def __init__(
        self,
        now_s: Callable[[], float] | None = None,
        say: Callable[[str], None] | None = None,
        interval_s: float = INTERVAL_S,
    ) -> None:
        """Count with this clock (seconds; the collector's own, injectable) and say lines with ``say``."""
        self._now_s = now_s or time.monotonic
        self._say = say or log.warning
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._tallies = {kind: _Tally() for kind in Refusal}

    def refused(self, kind: Refusal, peer: str) -> None:
        """Count one refusal from ``peer`` (an address, never a credential); say it if a line is due."""
        now = self._now_s()
        with self._lock:
            tally = self._tallies[kind]
            if not tally.unsaid:
                tally.since = now
            tally.total += 1
            tally.unsaid += 1
            tally.last_peer = unquote(peer)
            line = self._due(kind, tally, now)
        if line:
            self._say(line)

    def tick(self) -> None:
        """Say the refusals of every kind whose line is due (the collector calls this twice a second)."""
        now = self._now_s()
        with self._lock:
            lines = [self._due(kind, tally, now) for kind, tally in self._tallies.items()]
        for line in lines:
            if line:
                self._say(line)

    def flush(self) -> None:
        """Say every unsaid refusal now, due or not (when the collector stops)."""
        now = self._now_s()
        with self._lock:
            lines = [self._line(kind, tally, now) for kind, tally in self._tallies.items() if tally.unsaid]
        for line in lines:
            self._say(line)

    def counts(self) -> dict[Refusal, int]:
        """Refusals of each kind since the collector started."""
        with self._lock:
            return {kind: tally.total for kind, tally in self._tallies.items()}

    def _due(self, kind: Refusal, tally: _Tally, now: float) -> str:
        """The line to say now for ``tally`` ("" when nothing is unsaid or the last line is too recent)."""
        if not tally.unsaid:
            return ""
        # A clock that went back (the wall clock, set by hand) counts as a minute passed: never stay silent.
        if tally.said_at is not None and tally.said_at <= now < tally.said_at + self._interval_s:
            return ""
        return self._line(kind, tally, now)

    def _line(self, kind: Refusal, tally: _Tally, now: float) -> str:
        """The line for ``tally``'s unsaid refusals; they count as said from now."""
        seconds = max(1, math.ceil(now - tally.since))
        noun, what = _SAID[kind]
        line = (
            f"coldmod serve: refused {plural(tally.unsaid, noun)} {what} in the last {seconds} s,"
            f" last from {tally.last_peer}"
        )
        tally.unsaid = 0
        tally.said_at = now
        return line


def web_peer(client_address: tuple[str, int] | tuple[str, int, int, int]) -> str:
    """A web client's address written as gRPC writes its peers, marked as the web UI's."""
    host, port = client_address[0], client_address[1]
    if ":" in host:
        return f"ipv6:[{host}]:{port} (web UI)"
    return f"ipv4:{host}:{port} (web UI)"

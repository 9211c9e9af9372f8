"""Connect across collectors: the relay's key book in Redis, so a key issued by one collector pairs on any.

Only SHA-256 digests of connect keys and of the sides' tokens reach Redis,
never a key. Each issued key is a hash ``coldmod:{connect}:k:<digest>``
(fields ``cli`` and ``ui``: the digest of the token holding that side) that
expires ``ttl_s`` after its last use; ``coldmod:{connect}:live`` (a sorted
set by expiry) counts the live keys for the limit. Both share one hash tag,
so each script is single-slot in Redis Cluster. Every call is one script:
issue and claim are atomic across collectors, and expiry runs on Redis's
clock (collectors' clocks may differ).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from coldmod_cli.web.relay import Claim, RelayError

__all__ = ["RedisKeyBook"]

_LIVE = "coldmod:{connect}:live"
_RECORD = "coldmod:{connect}:k:"

# KEYS: live, record. ARGV: member, ttl_ms, limit. Returns 1 when issued, 0 when the book is full.
_ISSUE = """#!lua
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'issued', now)
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""

# KEYS: live, record. ARGV: member, ttl_ms, side, token digest, bind ("1"/"0"). Returns the Claim's value.
_CLAIM = """#!lua
if redis.call('EXISTS', KEYS[2]) == 0 then return 'unknown' end
local holder = redis.call('HGET', KEYS[2], ARGV[3])
if not holder and ARGV[5] == '1' then
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
  holder = ARGV[4]
end
-- Digests, not secrets: comparing them in Lua leaks nothing about a token.
if not holder or holder ~= ARGV[4] then return 'taken' end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 'ok'
"""


@contextlib.contextmanager
def _unavailable() -> Iterator[None]:
    """A Redis failure is a retryable refusal for the CLI or the page, not a traceback."""
    import redis

    try:
        yield
    except redis.RedisError as exc:
        raise RelayError(f"the collector cannot reach its Redis store ({type(exc).__name__}); try again") from None


class RedisKeyBook:
    """A :class:`~coldmod_cli.web.relay.KeyBook` shared by every collector on one Redis."""

    def __init__(self, client: Any) -> None:
        """Use this redis-py client (decode_responses on)."""
        self._client = client
        self._issue = client.register_script(_ISSUE)
        self._claim = client.register_script(_CLAIM)

    def issue(self, key: bytes, ttl_s: float, limit: int) -> bool:
        """Remember a new key on Redis; False when ``limit`` live keys exist already."""
        member = key.hex()
        with _unavailable():
            return bool(self._issue(keys=[_LIVE, _RECORD + member], args=[member, int(ttl_s * 1000), limit]))

    def claim(self, key: bytes, side: str, token: bytes, ttl_s: float, *, bind: bool = True) -> Claim:
        """Check ``token`` for ``side`` of ``key`` on Redis; binds an unclaimed side when ``bind``."""
        member = key.hex()
        with _unavailable():
            answer = self._claim(
                keys=[_LIVE, _RECORD + member],
                args=[member, int(ttl_s * 1000), side, token.hex(), "1" if bind else "0"],
            )
        return Claim(answer)

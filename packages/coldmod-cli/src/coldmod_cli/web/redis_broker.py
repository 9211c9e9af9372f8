"""Connect across collectors: the broker's key book and its sessions in Redis.

A key issued by one collector pairs on any (RedisKeyBook), and a CLI
attached to one collector works with a page open on another (RedisSessions).

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
import json
import logging
import secrets
import threading
from collections.abc import Iterator
from typing import Any

from coldmod_cli.web.broker import BrokerError, Claim

__all__ = ["RedisKeyBook", "RedisSessions"]

log = logging.getLogger(__name__)

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
        raise BrokerError(f"the collector cannot reach its Redis store ({type(exc).__name__}); try again") from None


class RedisKeyBook:
    """A :class:`~coldmod_cli.web.broker.KeyBook` shared by every collector on one Redis."""

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


# ------------------------------------------------------------------ sessions across collectors --

_BUS = "coldmod:{connect}:bus"
_STATE = "coldmod:{connect}:s:"
#: A collector holding CLIs says it is alive this often; silent for ALIVE_TTL_S, its CLIs count as gone
#: (a collector killed with -9 never detaches them).
ALIVE_EVERY_S = 2.0
ALIVE_TTL_S = 8.0
_ALIVE = "coldmod:{connect}:alive:"


class RedisSessions:
    """Carries one collector's connect sessions to the others: a CLI attached here, a page anywhere.

    It wraps the broker's ``attach``/``receive``/``detach`` (after them, the
    session's state is saved in Redis and its events published on the bus),
    ``listen`` (a page here whose CLI is elsewhere starts from the saved
    state, then hears the CLI's events from the bus) and ``command`` (sent
    over the bus to the collector holding the CLI, whose answer comes back
    the same way). Whoever can write to this Redis can talk to attached CLIs:
    Redis is the collectors' trusted store, behind its password. Pages are
    still checked here, by the key book, before anything is sent.
    """

    def __init__(self, broker: Any, client: Any) -> None:
        """Wrap ``broker``'s methods and follow the bus on ``client``'s Redis."""
        from coldmod_cli.server.redis_store import follow

        self._broker = broker
        self._client = client
        self._origin = secrets.token_hex(8)
        self._pending: dict[str, Any] = {}
        self._pending_lock = threading.Lock()
        self._closed = threading.Event()
        self._orig = {name: getattr(broker, name) for name in ("attach", "receive", "detach", "listen", "command")}
        broker.attach, broker.receive, broker.detach = self.attach, self.receive, self.detach
        broker.listen, broker.command = self.listen, self.command
        self._thread = threading.Thread(
            target=follow, args=(client, _BUS, self._deliver, self._closed), name="coldmod-connect-bus", daemon=True
        )
        self._thread.start()
        self._alive = threading.Thread(target=self._say_alive, name="coldmod-connect-alive", daemon=True)
        self._alive.start()

    def close(self) -> None:
        """Stop following the bus and saying we are alive."""
        self._closed.set()
        self._thread.join(5)
        self._alive.join(5)
        with contextlib.suppress(Exception):
            self._client.delete(_ALIVE + self._origin)

    def _say_alive(self) -> None:
        while not self._closed.is_set():
            try:
                self._client.set(_ALIVE + self._origin, "1", px=int(ALIVE_TTL_S * 1000))
            except Exception as exc:
                log.debug("coldmod connect: could not say alive: %s", exc)
            self._closed.wait(ALIVE_EVERY_S)

    def _holder(self, saved: dict[str, str] | None) -> str:
        """The live collector holding the session's CLI, or "" (none, or it died without detaching)."""
        holder = (saved or {}).get("holder", "")
        if not holder:
            return ""
        try:
            return holder if self._client.exists(_ALIVE + holder) else ""
        except Exception:
            return ""

    # -------------------------------------------------------- the CLI is here

    def attach(self, hello: Any, token: str) -> Any:
        """The broker's attach, then tell every collector the CLI is here."""
        attachment, key = self._orig["attach"](hello, token)
        self._share(key, attachment, ("cli",))
        return attachment, key

    def receive(self, attachment: Any, key: str, event: Any) -> None:
        """The broker's receive, then share what the CLI said (its sources, its references)."""
        self._orig["receive"](attachment, key, event)
        kind = event.WhichOneof("event")
        if kind in ("sources", "references"):
            self._share(key, attachment, (kind,))

    def detach(self, attachment: Any, key: str) -> None:
        """The broker's detach, then tell every collector the CLI is gone."""
        self._orig["detach"](attachment, key)
        self._share(key, attachment, ("cli",), gone=True)

    def _share(self, key: str, attachment: Any, events: tuple[str, ...], *, gone: bool = False) -> None:
        """Save the session's state in Redis and publish ``events`` (best effort: a page reloads to catch up)."""
        from coldmod_cli.web.broker import KEY_TTL_S, _digest

        broker = self._broker
        with broker._lock:
            session = broker._find(key, create=False)
            if session is not None and session.cli not in (attachment, None):
                return  # another CLI holds the pairing now: it speaks for it
            if session is None or session.cli is None:
                state = {"connected": False, "seen": True, **attachment.hello}
            else:
                state = session.state()
            sources = session.sources if session is not None else []
            references = list(session.references.values()) if session is not None else []
        digest = _digest(key).hex()
        data = {"cli": state, "sources": sources, "references": references}
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(
                _STATE + digest,
                mapping={
                    "cli": json.dumps(state),
                    "sources": json.dumps(sources),
                    "references": json.dumps(references),
                    "holder": "" if gone or not state["connected"] else self._origin,
                },
            )
            pipe.pexpire(_STATE + digest, int(KEY_TTL_S * 1000))
            for event in events:
                pipe.publish(_BUS, json.dumps({"o": self._origin, "t": "event", "d": digest, "e": event,
                                               "data": data[event]}))  # fmt: skip
            pipe.execute()
        except Exception as exc:  # a page elsewhere misses an update; the CLI here is unaffected
            log.warning("coldmod connect: could not share a session through Redis: %s", exc)

    # ------------------------------------------------------- a page is here

    def listen(self, key: str, token: str, listener: Any) -> Any:
        """The broker's listen; when the CLI is attached elsewhere, continue from its saved state."""
        from coldmod_cli.web.broker import _digest

        unsubscribe = self._orig["listen"](key, token, listener)
        if not self._local_cli(key):
            saved = self._saved(_digest(key).hex())
            if saved is not None and self._holder(saved):
                listener("cli", json.loads(saved.get("cli") or "{}"))
                listener("sources", json.loads(saved.get("sources") or "[]"))
                references = json.loads(saved.get("references") or "[]")
                if references:
                    listener("references", references)
        return unsubscribe

    def command(self, key: str, token: str, command: str, target: str, timeout: float | None = None) -> Any:
        """The broker's command; when the CLI is attached elsewhere, send it there over the bus and wait."""
        from coldmod_cli.web.broker import COMMAND_TIMEOUT_S, COMMANDS, _digest, _Waiter, valid_key

        timeout = COMMAND_TIMEOUT_S if timeout is None else timeout
        valid = command in COMMANDS and isinstance(target, str) and 0 < len(target) <= 1024 and valid_key(key)
        digest = _digest(key).hex() if valid else ""
        saved = self._saved(digest) if valid and not self._local_cli(key) else None
        if not self._holder(saved):
            return self._orig["command"](key, token, command, target, timeout)  # here, or nowhere: as before
        self._broker._claim(key, "ui", token, bind=False)  # the page must hold the pairing, as for a local CLI
        command_id = secrets.token_hex(8)
        waiter = _Waiter()
        with self._pending_lock:
            self._pending[command_id] = waiter
        try:
            message = {"o": self._origin, "t": "command", "d": digest, "id": command_id, "c": command, "k": target}
            with _unavailable():
                self._client.publish(_BUS, json.dumps(message))
            if not waiter.done.wait(timeout):
                raise BrokerError(f"the CLI did not answer within {timeout:.0f} seconds")
        finally:
            with self._pending_lock:
                self._pending.pop(command_id, None)
        assert waiter.result is not None
        if waiter.result.get("error"):
            raise BrokerError(waiter.result["error"])
        return waiter.result

    def _local_cli(self, key: str) -> bool:
        broker = self._broker
        with broker._lock:
            session = broker._find(key, create=False)
            return session is not None and session.cli is not None

    def _saved(self, digest: str) -> dict[str, str] | None:
        try:
            saved: dict[str, str] = self._client.hgetall(_STATE + digest)
        except Exception as exc:
            log.warning("coldmod connect: could not read a session from Redis: %s", exc)
            return None
        return saved or None

    # ------------------------------------------------------------- the bus

    def _deliver(self, data: str) -> None:
        """One bus message: an event for pages here, a command for a CLI here, or a result for a page here."""
        message = json.loads(data)
        if message.get("o") == self._origin:
            return
        kind = message.get("t")
        if kind == "event":
            self._emit_here(bytes.fromhex(message["d"]), str(message["e"]), message.get("data"))
        elif kind == "command":
            self._run_here(message)
        elif kind == "result":
            with self._pending_lock:
                waiter = self._pending.get(str(message.get("id")))
            if waiter is not None:
                waiter.result = dict(message.get("result") or {"error": "the CLI's answer was lost"})
                waiter.done.set()

    def _emit_here(self, digest: bytes, event: str, data: Any) -> None:
        broker = self._broker
        with broker._lock:
            session = broker._sessions.get(digest)
            if session is not None and session.cli is None:  # a CLI here speaks for itself
                session.emit(event, data)

    def _run_here(self, message: dict[str, Any]) -> None:
        """Put a command from a page elsewhere down the stream of the CLI attached here; answer over the bus."""
        from coldmod_cli.web.broker import COMMAND_TIMEOUT_S, COMMANDS, _Waiter
        from coldmod_proto.v1 import coldmod_pb2 as pb

        command, target, command_id = str(message.get("c")), str(message.get("k")), str(message.get("id"))
        if command not in COMMANDS:
            return
        broker = self._broker
        waiter = _Waiter()
        with broker._lock:
            session = broker._sessions.get(bytes.fromhex(message["d"]))
            if session is None or session.cli is None:
                return  # not ours; the collector holding the CLI answers
            session.waiting[command_id] = waiter
            cli = session.cli
        cli.commands.put(pb.UiCommand(command_id=command_id, **{command: target}))

        def answer() -> None:
            if not waiter.done.wait(COMMAND_TIMEOUT_S):
                waiter.result = {"error": f"the CLI did not answer within {COMMAND_TIMEOUT_S:.0f} seconds"}
            with broker._lock:
                session.waiting.pop(command_id, None)
                broker._forget_if_idle(session)
            reply = {"o": self._origin, "t": "result", "id": command_id, "result": waiter.result}
            try:
                self._client.publish(_BUS, json.dumps(reply))
            except Exception as exc:
                log.warning("coldmod connect: could not send a CLI's answer through Redis: %s", exc)

        threading.Thread(target=answer, name="coldmod-connect-answer", daemon=True).start()

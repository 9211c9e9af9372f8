"""Connect mode on the collector: pairs a developer's CLI with web UIs through a connect key.

The CLI holds one gRPC stream (``Connect.Attach``): it sends what it knows of
its checkout and the results of commands, and receives the UI's commands. A
browser holds a live feed of the same session and posts commands over HTTP.
A session is named by its connect key (at least 128 bits, from the CLI or the
UI); it exists while either side is there, and either side may come and go.

Keys are looked up by their SHA-256 (so the table never compares secrets by
prefix) and then compared in constant time.

It is the *pairing broker*, :class:`Broker`: "relay" is the tracer's process
that carries counts to the collector, one name per concept.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import queue
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

import grpc

from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc

__all__ = [
    "ATTACHED_METADATA",
    "CLI_TOKEN_METADATA",
    "COMMANDS",
    "KEY_METADATA",
    "Broker",
    "BrokerError",
    "Claim",
    "ConnectService",
    "KeyBook",
    "MemoryKeyBook",
    "valid_key",
]

#: base64url characters: 22 of them carry 132 bits, the least we accept.
_KEY = re.compile(r"[A-Za-z0-9_-]{22,128}")
#: Commands a UI may send, and the UiCommand field each one sets.
COMMANDS = frozenset({"ignore", "plan_removal", "apply_removal", "open"})
#: Pairings held at once; more is a misbehaving client, not a team.
MAX_SESSIONS = 256
#: Seconds a UI waits for the CLI to answer a command (a removal plan parses the whole tree).
COMMAND_TIMEOUT_S = 180.0
#: Longest text a CLI may put in one field we pass on (a diff can be long; a key cannot).
_MAX_FIELD = 4 * 1024 * 1024
#: Request metadata: the CLI's own random token, the same on each of its reconnects.
CLI_TOKEN_METADATA = "coldmod-connect-cli"  # noqa: S105 - a metadata name, not a secret
#: Initial response metadata: the pairing's connect key (new when the hello carried none).
KEY_METADATA = "coldmod-connect-key"
#: The initial metadata that tells a CLI its pairing was accepted (a refusal sends none).
ATTACHED_METADATA = ("coldmod-connect", "attached")
#: Seconds an issued key stays valid after its last use (issue, claim, attach, open page).
KEY_TTL_S = 7 * 24 * 3600.0
#: Issued keys kept at once; issuing beyond this is refused (memory stays bounded).
MAX_KEYS = 4096
#: Bytes of randomness in a key and in a side's token (192 bits; the form check accepts >= 132).
_KEY_BYTES = 24


def valid_key(key: str) -> bool:
    """True when ``key`` looks like a connect key: 22 to 128 base64url characters (>= 128 bits)."""
    return bool(_KEY.fullmatch(key))


def _digest(key: str) -> bytes:
    """What the key book and the session table hold instead of a secret."""
    return hashlib.sha256(key.encode()).digest()


class Claim(enum.Enum):
    """What the key book says to a side presenting a token for a key."""

    OK = "ok"            # the side is (now) this token's
    UNKNOWN = "unknown"  # never issued, or expired
    TAKEN = "taken"      # the side belongs to another token


class KeyBook(Protocol):
    """Issued connect keys and who holds each side of them (digests only); atomic per call."""

    def issue(self, key: bytes, ttl_s: float, limit: int) -> bool:
        """Remember a new key; False when ``limit`` live keys exist already."""

    def claim(self, key: bytes, side: str, token: bytes, ttl_s: float, *, bind: bool = True) -> Claim:
        """Check ``token`` for ``side`` ("cli" or "ui") of ``key``; an unclaimed side is bound to it when ``bind``.

        Any OK answer keeps the key alive for ``ttl_s`` more seconds.
        """


class MemoryKeyBook:
    """The key book of one collector (SQLite deployments): a dict under a lock, expired lazily."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """Empty; ``clock`` is monotonic seconds."""
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[bytes, dict[str, Any]] = {}

    def issue(self, key: bytes, ttl_s: float, limit: int) -> bool:
        """Remember a new key; False when ``limit`` live keys exist already."""
        now = self._clock()
        with self._lock:
            if len(self._keys) >= limit:
                for stale in [k for k, r in self._keys.items() if r["expires"] <= now]:
                    del self._keys[stale]
            if len(self._keys) >= limit:
                return False
            self._keys[key] = {"expires": now + ttl_s, "cli": None, "ui": None}
            return True

    def claim(self, key: bytes, side: str, token: bytes, ttl_s: float, *, bind: bool = True) -> Claim:
        """Check ``token`` for ``side`` of ``key``; binds an unclaimed side when ``bind``."""
        now = self._clock()
        with self._lock:
            record = self._keys.get(key)
            if record is None or record["expires"] <= now:
                self._keys.pop(key, None)
                return Claim.UNKNOWN
            holder = record[side]
            if holder is None and bind:
                record[side] = holder = token
            if holder is None or not hmac.compare_digest(holder, token):
                return Claim.TAKEN
            record["expires"] = now + ttl_s
            return Claim.OK


class BrokerError(Exception):
    """A pairing or a command is refused; the message is one sentence for the UI or the CLI.

    ``final`` is true when retrying cannot help (the CLI stops instead of reconnecting).
    """

    def __init__(self, message: str, *, final: bool = False) -> None:
        """``message`` for the person; ``final``: do not retry."""
        super().__init__(message)
        self.final = final


#: The sentence for each refused claim, by side (the UI's words, then the CLI's).
_REFUSALS = {
    ("ui", Claim.UNKNOWN): (
        "this collector did not issue this connect key (or it expired, or the collector restarted); "
        "choose 'Connect a checkout' for a new pairing"
    ),
    ("ui", Claim.TAKEN): (
        "this pairing is open in another browser and cannot be taken over; "
        "choose 'Connect a checkout' for a pairing of your own"
    ),
    ("cli", Claim.UNKNOWN): (
        "the collector did not issue this connect key (or it expired, or the collector restarted); "
        "choose 'Connect a checkout' in the web UI for a new key, or run `coldmod connect` without one"
    ),
    ("cli", Claim.TAKEN): (
        "another `coldmod connect` holds this pairing and it cannot be taken over; "
        "stop that one, or choose 'Connect a checkout' in the web UI for a new key"
    ),
}


Listener = Callable[[str, Any], None]
"""``listener(event, data)``: called for each session event (must not block)."""


@dataclass
class _Waiter:
    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] | None = None


class _Attachment:
    """One CLI stream: the commands waiting to go down it, and whether it has ended."""

    def __init__(self, hello: pb.CliHello) -> None:
        """A CLI stream that has said ``hello``."""
        self.hello = {"app": hello.app, "root": hello.root, "hostname": hello.hostname}
        self.commands: queue.Queue[pb.UiCommand | None] = queue.Queue()
        self.closed = threading.Event()

    def close(self) -> None:
        """End the stream (idempotent): the command queue gets its end marker."""
        if not self.closed.is_set():
            self.closed.set()
            self.commands.put(None)


class _Session:
    """Everything known about one pairing; guarded by the broker's lock."""

    def __init__(self, key: str) -> None:
        """An empty session named by ``key``."""
        self.key = key
        self.cli: _Attachment | None = None
        self.last_hello: dict[str, str] | None = None
        self.sources: list[dict[str, Any]] = []
        self.references: dict[str, dict[str, Any]] = {}
        self.listeners: set[Listener] = set()
        self.waiting: dict[str, _Waiter] = {}

    def state(self) -> dict[str, Any]:
        """What a UI shows about the session's CLI."""
        hello = self.last_hello or {"app": "", "root": "", "hostname": ""}
        return {"connected": self.cli is not None, "seen": self.last_hello is not None, **hello}

    def emit(self, event: str, data: Any) -> None:
        """Pass one event to every UI listening (caller holds the broker's lock)."""
        for listener in list(self.listeners):
            listener(event, data)


class Broker:
    """The table of connect sessions, shared by the gRPC servicer and the web server."""

    def __init__(self, keys: KeyBook | None = None) -> None:
        """An empty table over ``keys`` (default: this collector's memory)."""
        self.keys: KeyBook = keys if keys is not None else MemoryKeyBook()
        self._lock = threading.Lock()
        self._sessions: dict[bytes, _Session] = {}
        self._closed = False

    def _find(self, key: str, *, create: bool) -> _Session | None:
        """The session for ``key`` (caller holds the lock)."""
        session = self._sessions.get(_digest(key))
        if session is not None and hmac.compare_digest(session.key.encode(), key.encode()):
            return session
        if not create:
            return None
        if len(self._sessions) >= MAX_SESSIONS:
            raise BrokerError(f"the collector holds {MAX_SESSIONS} connect sessions already; try again later")
        session = _Session(key)
        self._sessions[_digest(key)] = session
        return session

    def _forget_if_idle(self, session: _Session) -> None:
        """Drop a session nobody uses any more (caller holds the lock)."""
        if session.cli is None and not session.listeners and not session.waiting:
            self._sessions.pop(_digest(session.key), None)

    def _new_key(self) -> str:
        """A fresh key in the key book (raises when the book is full)."""
        key = secrets.token_urlsafe(_KEY_BYTES)
        if not self.keys.issue(_digest(key), KEY_TTL_S, MAX_KEYS):
            raise BrokerError(f"the collector holds {MAX_KEYS} connect keys already; try again later")
        return key

    def _claim(self, key: str, side: str, token: str, *, bind: bool) -> None:
        """Raise the refusal's sentence unless ``token`` holds ``side`` of ``key``."""
        claim = (
            self.keys.claim(_digest(key), side, _digest(token), KEY_TTL_S, bind=bind)
            if valid_key(key)
            else Claim.UNKNOWN
        )
        if claim is not Claim.OK:
            if side == "ui" and claim is Claim.TAKEN and not bind:
                raise BrokerError("this page does not hold this pairing; choose 'Connect a checkout' for your own")
            raise BrokerError(_REFUSALS[side, claim], final=True)

    # --------------------------------------------------------- the browser side

    def issue_for_ui(self) -> tuple[str, str]:
        """A new pairing made by a page: (connect key for the CLI, the page's token)."""
        key = self._new_key()
        token = secrets.token_urlsafe(_KEY_BYTES)
        self._claim(key, "ui", token, bind=True)
        return key, token

    def claim_ui(self, key: str) -> str:
        """The page's token for a pairing a CLI made (first page only); raises BrokerError otherwise."""
        token = secrets.token_urlsafe(_KEY_BYTES)
        self._claim(key, "ui", token, bind=True)
        return token

    def listen(self, key: str, token: str, listener: Listener) -> Callable[[], None]:
        """Feed ``listener`` this session's events, starting with everything known; returns the unsubscriber."""
        self._claim(key, "ui", token, bind=False)
        with self._lock:
            session = self._find(key, create=True)
            assert session is not None
            session.listeners.add(listener)
            listener("cli", session.state())
            listener("sources", session.sources)
            if session.references:
                listener("references", list(session.references.values()))

        def unsubscribe() -> None:
            """Stop feeding this listener."""
            with self._lock:
                session.listeners.discard(listener)
                self._forget_if_idle(session)

        return unsubscribe

    def command(
        self, key: str, token: str, command: str, target: str, timeout: float = COMMAND_TIMEOUT_S
    ) -> dict[str, Any]:
        """Send one command to the session's CLI and wait for its result (a dict for the UI)."""
        if command not in COMMANDS:
            raise BrokerError(f"unknown command {command!r}; use one of {', '.join(sorted(COMMANDS))}")
        if not isinstance(target, str) or not target or len(target) > 1024:
            raise BrokerError("a command needs the function key it applies to")
        self._claim(key, "ui", token, bind=False)
        command_id = secrets.token_hex(8)
        waiter = _Waiter()
        with self._lock:
            session = self._find(key, create=False)
            if session is None or session.cli is None:
                raise BrokerError("no CLI is connected; run `coldmod connect --stdin` in your checkout")
            session.waiting[command_id] = waiter
            cli = session.cli
        cli.commands.put(pb.UiCommand(command_id=command_id, **{command: target}))
        try:
            if not waiter.done.wait(timeout):
                raise BrokerError(f"the CLI did not answer within {timeout:.0f} seconds")
        finally:
            with self._lock:
                session.waiting.pop(command_id, None)
                self._forget_if_idle(session)
        assert waiter.result is not None
        if waiter.result.get("error"):
            raise BrokerError(waiter.result["error"])
        return waiter.result

    # ------------------------------------------------------------- the CLI side

    def attach(self, hello: pb.CliHello, token: str) -> tuple[_Attachment, str]:
        """A CLI has said hello with its ``token``: (its attachment, the pairing's key).

        No key in the hello: a new one is issued to this CLI. Its own earlier
        stream (a reconnect the collector has not noticed yet) is let go;
        another CLI's is not — that refusal is final.
        """
        if not token or len(token) > 256:
            raise BrokerError(
                f"the CLI sent no {CLI_TOKEN_METADATA} token; update coldmod-cli to this collector's version",
                final=True,
            )
        key = hello.connect_key or self._new_key()
        self._claim(key, "cli", token, bind=True)
        attachment = _Attachment(hello)
        with self._lock:
            if self._closed:
                raise BrokerError("the collector is stopping")
            session = self._find(key, create=True)
            assert session is not None
            previous = session.cli
            session.cli = attachment
            session.last_hello = attachment.hello
            session.emit("cli", session.state())
        if previous is not None:
            previous.close()
        return attachment, key

    def receive(self, attachment: _Attachment, key: str, event: pb.CliEvent) -> None:
        """One event from a CLI: remember it and pass it on to the session's UIs."""
        kind = event.WhichOneof("event")
        with self._lock:
            session = self._find(key, create=False)
            if session is None or session.cli is not attachment:
                return  # a replaced CLI still talking: ignore it
            if kind == "sources":
                session.sources = [
                    {"key": s.key, "path": s.path, "line": s.line, "ignored": s.ignored}
                    for s in event.sources.sources
                ]
                known = {s["key"] for s in session.sources}
                session.references = {k: v for k, v in session.references.items() if k in known}
                session.emit("sources", session.sources)
            elif kind == "references":
                ref = event.references
                entry = {
                    "key": ref.key,
                    "references": ref.references,
                    "verdict": _verdict(ref.verdict, ref.safe),
                    "reasons": [r[:_MAX_FIELD] for r in ref.reasons[:100]],
                }
                session.references[ref.key] = entry
                session.emit("references", [entry])
            elif kind == "result":
                result = event.result
                waiter = session.waiting.get(result.command_id)
                if waiter is not None:
                    waiter.result = {
                        "ok": result.ok,
                        "message": result.message[:_MAX_FIELD],
                        "diff": result.diff[:_MAX_FIELD],
                        "verdict": _verdict(result.verdict, result.safe),
                        "reasons": [r[:_MAX_FIELD] for r in result.reasons],
                    }
                    waiter.done.set()

    def detach(self, attachment: _Attachment, key: str) -> None:
        """A CLI stream has ended: commands waiting on it fail, and UIs see it gone."""
        attachment.close()
        with self._lock:
            session = self._find(key, create=False)
            if session is None or session.cli is not attachment:
                return
            session.cli = None
            for waiter in session.waiting.values():
                waiter.result = {"error": "the CLI disconnected before answering"}
                waiter.done.set()
            session.emit("cli", session.state())
            self._forget_if_idle(session)

    def close(self) -> None:
        """End every CLI stream (the collector is stopping); refuse new ones."""
        with self._lock:
            self._closed = True
            attachments = [s.cli for s in self._sessions.values() if s.cli is not None]
        for attachment in attachments:
            attachment.close()


#: The verdicts a CLI may report; anything else is shown as the cautious one.
_VERDICTS = frozenset({"safe", "test-only", "review", "unsafe"})


def _verdict(verdict: str, safe: bool) -> str:
    """The verdict to show: the CLI's word, or (from an older CLI) "safe"/"unsafe" from its bool."""
    if verdict in _VERDICTS:
        return verdict
    return "safe" if safe and not verdict else "unsafe"


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    """Abort the call with ``code`` (typed as never returning)."""
    context.abort(code, message)
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


class ConnectService(pb_grpc.ConnectServicer):
    """The gRPC side of the broker: one ``Attach`` stream per connected CLI."""

    def __init__(self, broker: Broker) -> None:
        """Carry through this table."""
        self.broker = broker

    def Attach(
        self, request_iterator: Iterator[pb.CliEvent], context: grpc.ServicerContext
    ) -> Iterator[pb.UiCommand]:
        """Read the hello, then pass events up and commands down until either side ends."""
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("event") != "hello":
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "the first event of Attach must be a hello")
        if first.hello.connect_key and not valid_key(first.hello.connect_key):
            _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "the connect key must be 22 to 128 base64url characters (at least 128 bits)",
            )
        token = dict(context.invocation_metadata()).get(CLI_TOKEN_METADATA, "")
        try:
            attachment, key = self.broker.attach(first.hello, str(token))
        except BrokerError as exc:
            code = grpc.StatusCode.FAILED_PRECONDITION if exc.final else grpc.StatusCode.UNAVAILABLE
            _abort(context, code, str(exc))
        context.add_callback(attachment.close)
        # Tells the CLI it is in the table (it waits for this before saying "connected"), and the key.
        context.send_initial_metadata((ATTACHED_METADATA, (KEY_METADATA, key)))

        def read() -> None:
            """Pass on the CLI's events until its stream ends."""
            try:
                for event in request_iterator:
                    self.broker.receive(attachment, key, event)
            except grpc.RpcError:
                pass  # the CLI went away; detach below
            finally:
                attachment.close()

        reader = threading.Thread(target=read, daemon=True, name="coldmod-connect-reader")
        reader.start()
        try:
            while True:
                command = attachment.commands.get()
                if command is None:
                    return
                yield command
        finally:
            self.broker.detach(attachment, key)


def register(server: grpc.Server, keys: KeyBook | None = None) -> Broker:
    """Add the Connect service to a gRPC server (before it starts); returns the broker for the web UI."""
    broker = Broker(keys)
    pb_grpc.add_ConnectServicer_to_server(ConnectService(broker), server)  # type: ignore[no-untyped-call]
    return broker

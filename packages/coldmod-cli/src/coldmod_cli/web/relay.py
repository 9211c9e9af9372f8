"""Connect mode on the collector: pairs a developer's CLI with web UIs through a connect key.

The CLI holds one gRPC stream (``Connect.Attach``): it sends what it knows of
its checkout and the results of commands, and receives the UI's commands. A
browser holds a live feed of the same session and posts commands over HTTP.
A session is named by its connect key (at least 128 bits, from the CLI or the
UI); it exists while either side is there, and either side may come and go.

Keys are looked up by their SHA-256 (so the table never compares secrets by
prefix) and then compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import queue
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc

from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc

__all__ = [
    "COMMANDS",
    "ConnectService",
    "Relay",
    "RelayError",
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
#: Longest text a CLI may put in one field we relay (a diff can be long; a key cannot).
_MAX_FIELD = 4 * 1024 * 1024


def valid_key(key: str) -> bool:
    """True when ``key`` looks like a connect key: 22 to 128 base64url characters (>= 128 bits)."""
    return bool(_KEY.fullmatch(key))


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class RelayError(Exception):
    """A command cannot be relayed; the message is one sentence for the UI."""


Listener = Callable[[str, Any], None]
"""``listener(event, data)``: called for each session event (must not block)."""


@dataclass
class _Waiter:
    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] | None = None


class _Attachment:
    """One CLI stream: the commands waiting to go down it, and whether it has ended."""

    def __init__(self, hello: pb.CliHello) -> None:
        self.hello = {"app": hello.app, "root": hello.root, "hostname": hello.hostname}
        self.commands: queue.Queue[pb.UiCommand | None] = queue.Queue()
        self.closed = threading.Event()

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self.commands.put(None)


class _Session:
    """Everything known about one pairing; guarded by the relay's lock."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.cli: _Attachment | None = None
        self.last_hello: dict[str, str] | None = None
        self.sources: list[dict[str, Any]] = []
        self.references: dict[str, dict[str, Any]] = {}
        self.listeners: set[Listener] = set()
        self.waiting: dict[str, _Waiter] = {}

    def state(self) -> dict[str, Any]:
        hello = self.last_hello or {"app": "", "root": "", "hostname": ""}
        return {"connected": self.cli is not None, "seen": self.last_hello is not None, **hello}

    def emit(self, event: str, data: Any) -> None:
        for listener in list(self.listeners):
            listener(event, data)


class Relay:
    """The table of connect sessions, shared by the gRPC servicer and the web server."""

    def __init__(self) -> None:
        """An empty table."""
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
            raise RelayError(f"the collector holds {MAX_SESSIONS} connect sessions already; try again later")
        session = _Session(key)
        self._sessions[_digest(key)] = session
        return session

    def _forget_if_idle(self, session: _Session) -> None:
        if session.cli is None and not session.listeners and not session.waiting:
            self._sessions.pop(_digest(session.key), None)

    # --------------------------------------------------------- the browser side

    def listen(self, key: str, listener: Listener) -> Callable[[], None]:
        """Feed ``listener`` this session's events, starting with everything known; returns the unsubscriber."""
        if not valid_key(key):
            raise RelayError("the connect key is malformed; use the URL `coldmod connect` printed")
        with self._lock:
            session = self._find(key, create=True)
            assert session is not None
            session.listeners.add(listener)
            listener("cli", session.state())
            listener("sources", session.sources)
            if session.references:
                listener("references", list(session.references.values()))

        def unsubscribe() -> None:
            with self._lock:
                session.listeners.discard(listener)
                self._forget_if_idle(session)

        return unsubscribe

    def command(self, key: str, command: str, target: str, timeout: float = COMMAND_TIMEOUT_S) -> dict[str, Any]:
        """Send one command to the session's CLI and wait for its result (a dict for the UI)."""
        if command not in COMMANDS:
            raise RelayError(f"unknown command {command!r}; use one of {', '.join(sorted(COMMANDS))}")
        if not isinstance(target, str) or not target or len(target) > 1024:
            raise RelayError("a command needs the function key it applies to")
        command_id = secrets.token_hex(8)
        waiter = _Waiter()
        with self._lock:
            session = self._find(key, create=False) if valid_key(key) else None
            if session is None or session.cli is None:
                raise RelayError("no CLI is connected; run `coldmod connect` with this page's URL")
            session.waiting[command_id] = waiter
            cli = session.cli
        cli.commands.put(pb.UiCommand(command_id=command_id, **{command: target}))
        try:
            if not waiter.done.wait(timeout):
                raise RelayError(f"the CLI did not answer within {timeout:.0f} seconds")
        finally:
            with self._lock:
                session.waiting.pop(command_id, None)
                self._forget_if_idle(session)
        assert waiter.result is not None
        if waiter.result.get("error"):
            raise RelayError(waiter.result["error"])
        return waiter.result

    # ------------------------------------------------------------- the CLI side

    def attach(self, hello: pb.CliHello) -> _Attachment:
        """A CLI has said hello; an earlier CLI with the same key is let go."""
        attachment = _Attachment(hello)
        with self._lock:
            if self._closed:
                raise RelayError("the collector is stopping")
            session = self._find(hello.connect_key, create=True)
            assert session is not None
            previous = session.cli
            session.cli = attachment
            session.last_hello = attachment.hello
            session.emit("cli", session.state())
        if previous is not None:
            previous.close()
        return attachment

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
                entry = {"key": ref.key, "references": ref.references, "safe": ref.safe}
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
                        "safe": result.safe,
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


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


class ConnectService(pb_grpc.ConnectServicer):
    """The gRPC side of the relay: one ``Attach`` stream per connected CLI."""

    def __init__(self, relay: Relay) -> None:
        """Relay through this table."""
        self.relay = relay

    def Attach(
        self, request_iterator: Iterator[pb.CliEvent], context: grpc.ServicerContext
    ) -> Iterator[pb.UiCommand]:
        """Read the hello, then relay events up and commands down until either side ends."""
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("event") != "hello":
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "the first event of Attach must be a hello")
        key = first.hello.connect_key
        if not valid_key(key):
            _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "the connect key must be 22 to 128 base64url characters (at least 128 bits)",
            )
        try:
            attachment = self.relay.attach(first.hello)
        except RelayError as exc:
            _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        context.add_callback(attachment.close)
        # Tells the CLI it is in the table (it waits for this before saying "connected").
        context.send_initial_metadata((("coldmod-connect", "attached"),))

        def read() -> None:
            try:
                for event in request_iterator:
                    self.relay.receive(attachment, key, event)
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
            self.relay.detach(attachment, key)


def register(server: grpc.Server) -> Relay:
    """Add the Connect service to a gRPC server (before it starts); returns the relay for the web UI."""
    relay = Relay()
    pb_grpc.add_ConnectServicer_to_server(ConnectService(relay), server)  # type: ignore[no-untyped-call]
    return relay

"""Delivery through a relay process: grpc never runs inside the application.

grpc's C core is not fork-safe: a process that forks while grpc's own threads
hold a lock hands the child that lock, locked, and a child that then makes a
channel can freeze in grpc with the GIL held (seen in 200-fork tests, even with
no call in flight). So the application's processes never import grpc. Each
process talks to a *relay*, a process of ours started with ``fork`` + ``exec``
(safe at any time) that holds the channels:

- The app side (:class:`Relay`) sends each Register or Report as bytes over a
  Unix socket and waits for the collector's answer, relayed back unchanged: a
  batch is still only forgotten once the collector acknowledged it.
- A process and everything it forks share one relay. Forked children inherit
  the socket's path and the relay's *lifeline* (the write end of its stdin),
  and each connects on its own; the relay gives each connection a channel of
  its own. A process that finds no relay (none yet, or it died) starts one.
- The relay is not the application's child (it forks once more and its first
  process exits, so an app's ``os.wait()`` never sees it), runs in a session of
  its own, writes nothing anywhere, and exits once every process holding its
  lifeline has ended and no connection is open.
- Its socket (``relay.sock``) and pid (``relay.pid``) live in a directory only
  this user can enter (``$TMPDIR/coldmod-relay-*``), removed when it exits.
- What runs on the sender thread takes no lock an app's fork could inherit
  taken (no ``tempfile``, no import; the generated code is imported under
  :data:`~coldmod_trace._internal.lifecycle.fork_guard`).
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any

from coldmod_trace.config import MAX_MESSAGE_BYTES, ClientConfig

__all__ = ["REGISTER", "REPORT", "Relay", "RelayError", "serve"]

REGISTER = 1
REPORT = 2
#: The collector's methods, by the relay's method number.
METHODS = {REGISTER: "/coldmod.v1.Tracing/Register", REPORT: "/coldmod.v1.Tracing/Report"}
_REQUEST = struct.Struct("!BdI")  # method, timeout in seconds, payload length
_ANSWER = struct.Struct("!BI")  # 0 answered (payload: the response) or 1 failed ("CODE\ndetails"), length
MAX_FRAME = MAX_MESSAGE_BYTES + (1 << 20)
#: A relay that ended must not kill an app that set SIGPIPE to its default action.
_NO_SIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
#: Seconds a process waits at most for a relay it started to listen.
LAUNCH_TIMEOUT = 10.0
#: Seconds beyond a call's own timeout that the app side waits for the relay's answer.
ANSWER_MARGIN = 2.0
#: Run by ``python -I -S -c``: no site, so no sitecustomize (the relay is never traced).
_BOOT = (
    "import sys,json;c=json.loads(sys.stdin.readline());sys.path[:]=c['sys_path'];"
    "from coldmod_trace._internal import relay;relay.serve(c)"
)


class RelayError(Exception):
    """A call that did not get the collector's answer: a gRPC status code's name and details."""

    def __init__(self, code: str, details: str) -> None:
        """``code`` is a gRPC status code's name, e.g. ``UNAVAILABLE``."""
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


# -- the application's side ------------------------------------------------------------

_launch_lock = threading.Lock()
#: The relay per client configuration, inherited by forked children.
_paths: dict[ClientConfig, str] = {}


def _reset_after_fork() -> None:
    global _launch_lock
    _launch_lock = threading.Lock()  # a launch in the parent's thread never ends here


os.register_at_fork(after_in_child=_reset_after_fork)


class Relay:
    """One process's connection to its relay; one call at a time (the caller serialises)."""

    def __init__(self, client: ClientConfig) -> None:
        """Nothing happens until the first call."""
        self.client = client
        self._sock: socket.socket | None = None

    def call(self, method: int, payload: bytes, timeout: float) -> bytes:
        """The collector's answer to one call; raises :class:`RelayError` when there is none."""
        deadline = time.monotonic() + timeout
        for attempt in (1, 2):
            reused = self._sock is not None
            try:
                return self._exchange(self._connection(deadline), method, payload, timeout, deadline)
            except _Broken as exc:
                self.close()
                if not reused or attempt == 2:
                    raise RelayError("UNAVAILABLE", f"the relay process dropped the connection ({exc})") from None
                # The relay we were connected to is gone (it ended or was killed): once, a new one.
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Drop the connection (the relay drops its channel with it)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _exchange(self, sock: socket.socket, method: int, payload: bytes, timeout: float, deadline: float) -> bytes:
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.sendall(_REQUEST.pack(method, timeout, len(payload)), _NO_SIGNAL)
            sock.sendall(payload, _NO_SIGNAL)
            sock.settimeout(max(0.001, deadline + ANSWER_MARGIN - time.monotonic()))
            status, length = _ANSWER.unpack(_recv_exactly(sock, _ANSWER.size))
            body = _recv_exactly(sock, length)
        except TimeoutError:
            self.close()
            raise RelayError("DEADLINE_EXCEEDED", "the relay did not answer in time") from None
        except OSError as exc:
            raise _Broken(exc.strerror or type(exc).__name__) from None
        if status:
            code, _, details = body.decode("utf-8", "replace").partition("\n")
            raise RelayError(code, details)
        return body

    def _connection(self, deadline: float) -> socket.socket:
        if self._sock is not None:
            return self._sock
        path = _paths.get(self.client)
        if path is not None:
            sock = _connect(path)
            if sock is not None:
                self._sock = sock
                return sock
            # Nobody listens there: that relay was killed. Its directory goes; a new relay comes.
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)
        if not _launch_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise RelayError("DEADLINE_EXCEEDED", "another thread is still starting the relay process")
        try:
            current = _paths.get(self.client)
            sock = _connect(current) if current is not None and current != path else None
            if sock is None:
                sock = _connect(_launch(self.client, deadline))
        finally:
            _launch_lock.release()
        if sock is None:
            raise RelayError("UNAVAILABLE", "the relay process started but does not listen")
        self._sock = sock
        return sock


class _Broken(Exception):
    """The connection to the relay failed (it ended, or was never there)."""


def _connect(path: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def _launch(client: ClientConfig, deadline: float) -> str:
    """Start a relay for ``client``; its socket's path once it listens."""
    directory = _private_directory()
    path = os.path.join(directory, "relay.sock")
    config = {
        "sys_path": [entry for entry in sys.path if entry],  # no cwd entry: the app's files never shadow ours
        "socket": path,
        "directory": directory,
        "target": client.target,
        "insecure": client.insecure,
        "api_key": client.api_key,
        "ca": client.ca.decode("latin-1") if client.ca is not None else None,
    }
    interpreter = _interpreter()
    read_end, write_end = os.pipe()
    try:
        process = subprocess.Popen(
            [interpreter, "-I", "-S", "-c", _BOOT],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,
        )
    except OSError as exc:
        os.close(read_end)
        os.close(write_end)
        shutil.rmtree(directory, ignore_errors=True)
        raise RelayError("UNAVAILABLE", f"the relay process could not start ({exc.strerror})") from None
    os.close(read_end)
    failure = ""
    try:
        _write_all(write_end, json.dumps(config).encode() + b"\n", deadline)
        returncode = process.wait(timeout=max(0.001, deadline - time.monotonic()))
    except (OSError, subprocess.TimeoutExpired) as exc:
        process.kill()
        returncode = process.wait()
        failure = "it did not start in time" if isinstance(exc, (TimeoutError, subprocess.TimeoutExpired)) else ""
    assert process.stderr is not None
    why = _read_available(process.stderr.fileno()).decode("utf-8", "replace").strip().splitlines()
    process.stderr.close()
    if failure or returncode:
        os.close(write_end)
        shutil.rmtree(directory, ignore_errors=True)
        reason = failure or (why[-1] if why else f"exit code {returncode}")
        raise RelayError("UNAVAILABLE", f"the relay process could not start ({reason})")
    # write_end, the relay's lifeline, stays open until this process (and its forks) end; never
    # closed by us: after a fork, a daemonising app may have reused the number.
    _paths[client] = path
    return path


def _private_directory() -> str:
    """A new directory only this user may enter, like ``mkdtemp`` but without ``tempfile``'s lock:
    this runs on the sender thread, and an app forking meanwhile would inherit that lock taken."""
    base = os.environ.get("TMPDIR") or "/tmp"  # noqa: S108 - a private, random-named directory in it
    for _ in range(16):
        directory = os.path.join(base, f"coldmod-relay-{secrets.token_hex(8)}")
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue
        except OSError as exc:
            raise RelayError("UNAVAILABLE", f"cannot make the relay's directory in {base} ({exc.strerror})") from None
        return directory
    raise RelayError("UNAVAILABLE", f"cannot make the relay's directory in {base}")


def _interpreter() -> str:
    """A Python to run the relay: this one, unless it is embedded (uWSGI's ``sys.executable`` is uwsgi)."""
    executable = sys.executable
    if executable and any(name in os.path.basename(executable).lower() for name in ("python", "pypy")):
        return executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidate = os.path.join(sys.exec_prefix, "bin", version)
    if os.access(candidate, os.X_OK):
        return candidate
    raise RelayError(
        "UNAVAILABLE",
        f"no Python interpreter to run the relay process (sys.executable is {executable!r}, "
        f"and {candidate} is not there)",
    )


def _write_all(fd: int, data: bytes, deadline: float) -> None:
    """Write ``data`` to a pipe by the deadline (a relay that does not read must not hang the app)."""
    os.set_blocking(fd, False)
    view = memoryview(data)
    while view:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the relay process does not read its configuration")
        _, ready, _ = select.select([], [fd], [], remaining)
        if ready:
            view = view[os.write(fd, view) :]


def _read_available(fd: int) -> bytes:
    """What a pipe holds now, without waiting (the relay's own stderr is /dev/null)."""
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    return b"".join(chunks)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    while view:
        got = sock.recv_into(view)
        if not got:
            raise ConnectionResetError(0, "the connection closed")
        view = view[got:]
    return bytes(buffer)


# -- the relay process -------------------------------------------------------------------


def serve(config: dict[str, Any]) -> None:
    """The relay's main: listen, leave the launcher, relay calls until the lifeline ends."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(config["socket"])
    listener.listen(128)
    if os.fork():
        os._exit(0)  # the launcher waits for this: the socket listens; the relay is not its child
    with open(os.path.join(config["directory"], "relay.pid"), "w") as pid_file:  # for whoever looks
        pid_file.write(f"{os.getpid()}\n")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (1, 2):
        os.dup2(devnull, fd)  # grpc's C core logs to stderr; nothing of ours reaches any output
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    ca = config["ca"]
    client = ClientConfig(config["target"], config["insecure"], config["api_key"], ca.encode("latin-1") if ca else None)
    _Server(listener, client).run()
    shutil.rmtree(config["directory"], ignore_errors=True)
    os._exit(0)


class _Server:
    def __init__(self, listener: socket.socket, client: ClientConfig) -> None:
        self.listener = listener
        self.client = client
        self.lock = threading.Lock()
        self.open = 0
        self.lifeline_ended = threading.Event()

    def run(self) -> None:
        threading.Thread(target=self._watch_lifeline, daemon=True).start()
        self.listener.settimeout(0.2)
        while True:
            with self.lock:
                if self.lifeline_ended.is_set() and self.open == 0:
                    return
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                time.sleep(0.05)
                continue
            conn.settimeout(None)
            with self.lock:
                self.open += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _watch_lifeline(self) -> None:
        """Stdin ends when every process holding its write end (the launcher and its forks) ended."""
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        self.lifeline_ended.set()

    def _serve(self, conn: socket.socket) -> None:
        """One app process's calls, on a channel of its own (a fresh one after each fault)."""
        import grpc

        from coldmod_trace.config import client_channel

        channel = None
        try:
            while True:
                try:
                    head = conn.recv(_REQUEST.size, socket.MSG_WAITALL)
                    if len(head) < _REQUEST.size:
                        return  # the process closed the connection or ended
                    method, timeout, length = _REQUEST.unpack(head)
                    if length > MAX_FRAME or method not in METHODS:
                        return
                    payload = _recv_exactly(conn, length)
                except OSError:
                    return
                if channel is None:
                    channel = client_channel(self.client)
                # No (de)serializers: bytes in, bytes out, relayed unchanged.
                call = channel.unary_unary(METHODS[method], None, None)
                try:
                    status, body = 0, call(payload, timeout=timeout)
                except grpc.RpcError as exc:
                    code = exc.code()
                    details = exc.details() or ""
                    status, body = 1, f"{code.name if code else 'UNKNOWN'}\n{details}".encode()
                    channel.close()
                    channel = None
                except Exception as exc:
                    status, body = 1, f"INTERNAL\nthe relay failed ({type(exc).__name__}: {exc})".encode()
                try:
                    conn.sendall(_ANSWER.pack(status, len(body)) + body, _NO_SIGNAL)
                except OSError:
                    return
        finally:
            conn.close()
            if channel is not None:
                channel.close()
            with self.lock:
                self.open -= 1

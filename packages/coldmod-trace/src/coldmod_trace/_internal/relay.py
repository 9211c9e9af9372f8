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
- One relay per process tree (and client configuration). The tree's first
  traced process (:func:`prepare`, at ``start()``) names a directory in
  ``COLDMOD_RELAY_DIR`` and makes the relay's *lifeline* pipe; every process it
  forks or executes inherits the name, every fork the lifeline. The first
  process that needs the relay and finds none listening starts it, under the
  directory's ``flock`` so that a hundred workers starting at once start one;
  the others connect to it. A gunicorn master and its workers (with or without
  ``--preload``), a pre-fork server and a ``multiprocessing`` pool share one.
- The application never waits on the relay past the call's own deadline: the
  connect, each send and each receive have it. A relay that does not answer
  (stopped by SIGSTOP or a frozen container, its queue full) is *unavailable*:
  the batch stays pending and nobody starts another. A relay that is gone
  (nobody listens on its socket) is replaced.
- The relay is not the application's child (it forks once more and its first
  process exits, so an app's ``os.wait()`` never sees it), runs in a session of
  its own, writes nothing anywhere, and exits once every process holding its
  lifeline has ended and no connection is open.
- The relay is the one process of the tree that talks to the collector, so it
  knows what the tree was already told: a failed answer says whether it is
  *news* (the first of its code since the collector last answered a call) or
  was already handed to another process of the tree (:attr:`RelayError.told`).
  The processes say a refusal only when it is news: once per tree, not once
  per worker (the relay itself writes nothing).
- Its socket (``<name>.sock``) and pid (``<name>.pid``) live in the tree's
  directory, which only this user can enter (the app side checks its owner and
  mode, and the socket's peer user); the relay removes them, and the directory
  once empty, when it exits.
- What runs on the sender thread takes no lock an app's fork could inherit
  taken (no ``tempfile``, no import; the generated code is imported under
  :data:`~coldmod_trace._internal.lifecycle.fork_guard`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import select
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from typing import Any

from coldmod_trace._internal import lifecycle
from coldmod_trace.config import COLDMOD_RELAY_DIR, MAX_MESSAGE_BYTES, ClientConfig

__all__ = ["REGISTER", "REPORT", "Relay", "RelayError", "prepare", "serve"]

REGISTER = 1
REPORT = 2
#: The collector's methods, by the relay's method number.
METHODS = {REGISTER: "/coldmod.v1.Tracing/Register", REPORT: "/coldmod.v1.Tracing/Report"}
_REQUEST = struct.Struct("!BdI")  # method, timeout in seconds, payload length
_ANSWER = struct.Struct("!BI")  # status (below) and the payload's length
ANSWERED = 0  # payload: the collector's response
FAILED = 1  # payload: "CODE\ndetails"; news for the tree
FAILED_TOLD = 2  # the same, but another process of the tree was handed this code already
MAX_FRAME = MAX_MESSAGE_BYTES + (1 << 20)
#: A relay that ended must not kill an app that set SIGPIPE to its default action.
_NO_SIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
#: Seconds (at most a quarter of the call's) by which the relay's deadline precedes the app's.
ANSWER_ROOM = 0.25
_PEERCRED = struct.Struct("3i")  # pid, uid, gid (Linux's struct ucred)
#: Run by ``python -I -S -c``: no site, so no sitecustomize (the relay is never traced). It listens
#: and leaves its starter (who waits for that) before importing anything of ours: the tree's other
#: processes connect while it does.
_BOOT = (
    "import sys,json,os,socket;c=json.loads(sys.stdin.readline());"
    "s=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM);s.bind(c['socket']);s.listen(128);"
    "os.fork() and os._exit(0);"
    "sys.path[:]=c['sys_path'];from coldmod_trace._internal import relay;relay.serve(c,s)"
)


class RelayError(Exception):
    """A call that did not get the collector's answer: a gRPC status code's name and details."""

    def __init__(self, code: str, details: str, told: bool = False) -> None:
        """``code`` is a gRPC status code's name, e.g. ``UNAVAILABLE``; ``told``: the relay already handed
        this code to another process of the tree since the collector last answered (it is no news)."""
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details
        self.told = told


# -- the application's side ------------------------------------------------------------

_launch_lock = threading.Lock()
#: The lifeline of this process tree's relays: (read end, write end, the pipe's inode). Made by the
#: tree's first traced process (:func:`prepare`), inherited by every fork; the write end is never closed.
_lifeline: tuple[int, int, int] | None = None
#: The tree's directory when COLDMOD_RELAY_DIR names one we must not use (another user's, or not private).
_fallback_directory: str | None = None


def _reset_after_fork() -> None:
    global _launch_lock
    _launch_lock = threading.Lock()  # a launch in the parent's thread never ends here


os.register_at_fork(after_in_child=_reset_after_fork)


def prepare() -> None:
    """In a traced process at start: join the tree's rendezvous, or become the root of a new one.

    Runs on the application's thread, before its first fork: the directory's
    path goes into the environment (every process of the tree inherits it, exec
    included) and the lifeline pipe is made (every fork inherits it). Nothing
    is started: the first process that needs the relay starts it.
    """
    global _lifeline
    if not _usable_name(os.environ.get(COLDMOD_RELAY_DIR, "")):
        name = f"coldmod-relay-{secrets.token_hex(8)}"
        base = os.path.abspath(os.environ.get("TMPDIR") or "/tmp")  # noqa: S108 - a private, random-named directory
        if len(os.path.join(base, name, _SOCKET_NAME_SHAPE)) > MAX_SOCKET_PATH:
            base = "/tmp"  # noqa: S108 - a long TMPDIR (pytest's, macOS's) cannot hold a Unix socket's path
        os.environ[COLDMOD_RELAY_DIR] = os.path.join(base, name)
    if _lifeline is None or not _is_our_pipe(_lifeline):
        read_end, write_end = os.pipe()  # close-on-exec: forks inherit it, exec'd programs do not
        _lifeline = (read_end, write_end, os.fstat(read_end).st_ino)


#: The longest path a Unix socket can bind to (``sun_path`` holds 108 bytes on Linux, 104 on macOS, NUL included).
MAX_SOCKET_PATH = 103
#: What a relay's socket name looks like (:attr:`Relay.name` + ``.sock``), for measuring a path.
_SOCKET_NAME_SHAPE = "0" * 16 + ".sock"


def _usable_name(path: str) -> bool:
    return os.path.isabs(path) and os.path.basename(path).startswith("coldmod-relay-")


def _is_our_pipe(lifeline: tuple[int, int, int]) -> bool:
    """Both ends still ours (a daemonising app may have closed them, and reused the numbers)."""
    read_end, write_end, inode = lifeline
    try:
        return all(stat.S_ISFIFO(st.st_mode) and st.st_ino == inode for st in map(os.fstat, (read_end, write_end)))
    except OSError:
        return False


#: Connections one call may try when the relay drops them (each within the call's deadline): the one it
#: had, and a new relay's, twice — a relay killed while a new one starts can reset the first new connection.
_ATTEMPTS = 3


class Relay:
    """One process's connection to its tree's relay; one call at a time (the caller serialises)."""

    def __init__(self, client: ClientConfig) -> None:
        """Nothing happens until the first call."""
        self.client = client
        # One relay per client configuration in the tree: a process told another collector has its own.
        self.name = hashlib.sha256(
            json.dumps([client.target, client.insecure, client.api_key, _text(client.ca)]).encode()
        ).hexdigest()[:16]
        self._sock: socket.socket | None = None

    def call(self, method: int, payload: bytes, timeout: float) -> bytes:
        """The collector's answer to one call within ``timeout`` seconds; raises :class:`RelayError` when none."""
        deadline = time.monotonic() + timeout
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return self._exchange(self._connection(deadline), method, payload, deadline)
            except _Broken as exc:
                self.close()
                if attempt == _ATTEMPTS or time.monotonic() >= deadline:
                    raise RelayError("UNAVAILABLE", f"the relay process dropped the connection ({exc})") from None
                # The relay we were connected to is gone (it ended or was killed), or a relay that had just
                # been replaced reset a new connection while it went: again, with a new one, within the deadline.
        raise AssertionError("unreachable")

    def open(self, deadline: float) -> None:
        """Connect now (starting the tree's relay if none listens); raises :class:`RelayError`."""
        self._connection(deadline)

    def close(self) -> None:
        """Drop the connection."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _exchange(self, sock: socket.socket, method: int, payload: bytes, deadline: float) -> bytes:
        """Send one call and wait for its answer, every step by the call's own deadline."""
        remaining = deadline - time.monotonic()
        # The relay's own deadline ends a little earlier, so that its answer (DEADLINE_EXCEEDED
        # included) is back before ours: the app never waits past the time it gave the call.
        relayed = max(0.001, remaining - min(ANSWER_ROOM, remaining / 4))
        try:
            sock.settimeout(max(0.001, remaining))
            sock.sendall(_REQUEST.pack(method, relayed, len(payload)), _NO_SIGNAL)
            sock.sendall(payload, _NO_SIGNAL)
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            status, length = _ANSWER.unpack(_recv_exactly(sock, _ANSWER.size))
            body = _recv_exactly(sock, length)
        except TimeoutError:
            self.close()
            raise RelayError("DEADLINE_EXCEEDED", "the relay did not answer in time") from None
        except OSError as exc:
            raise _Broken(exc.strerror or type(exc).__name__) from None
        if status != ANSWERED:
            code, _, details = body.decode("utf-8", "replace").partition("\n")
            raise RelayError(code, details, told=status == FAILED_TOLD)
        return body

    def _connection(self, deadline: float) -> socket.socket:
        """The open connection, or a new one to the tree's relay (started first when none listens)."""
        if self._sock is not None:
            return self._sock
        directory = _tree_directory()
        path = os.path.join(directory, f"{self.name}.sock")
        self._sock = _connect_or_launch(self.client, directory, path, deadline)
        return self._sock


class _Broken(Exception):
    """The connection to the relay failed (it ended, or was never there)."""


def _connect(path: str, deadline: float) -> socket.socket | None:
    """A connection to the relay at ``path``; None when nobody listens there (none, or a dead one's).

    The connect has the call's deadline: a relay that is stopped (SIGSTOP, a
    frozen container) or whose queue is full makes a blocking connect wait in
    the kernel for ever, where this one fails at once (EAGAIN) or by the
    deadline. Such a relay is unavailable, not dead: nobody starts another.
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise RelayError("DEADLINE_EXCEEDED", "no time left to reach the relay process")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(remaining)
        sock.connect(path)
        _check_peer(sock)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    except (BlockingIOError, TimeoutError):
        sock.close()
        raise RelayError("UNAVAILABLE", "the relay process does not answer (stopped, or its queue is full)") from None
    except OSError as exc:
        sock.close()
        raise RelayError("UNAVAILABLE", f"cannot connect to the relay process ({exc.strerror or exc})") from None
    return sock


def _check_peer(sock: socket.socket) -> None:
    """The process listening is this user's (where the system says who it is)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return  # the directory's ownership and mode are then the only check
    _pid, uid, _gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, option, _PEERCRED.size))
    if uid != os.getuid():
        raise OSError(0, f"the relay's socket belongs to user {uid}")


def _tree_directory() -> str:
    """The tree's relay directory (COLDMOD_RELAY_DIR), made if missing; only this user may enter it."""
    global _fallback_directory
    if _fallback_directory is not None:
        return _fallback_directory
    path = os.environ.get(COLDMOD_RELAY_DIR, "")
    if not _usable_name(path):
        prepare_problem = f"{COLDMOD_RELAY_DIR} is not set by coldmod_trace.start()"
        _fallback_directory = _private_directory(prepare_problem)
        return _fallback_directory
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise RelayError("UNAVAILABLE", f"cannot make the relay's directory {path} ({exc.strerror})") from None
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        _fallback_directory = _private_directory(f"{path} is not a private directory of this user")
        return _fallback_directory
    return path


def _connect_or_launch(client: ClientConfig, directory: str, path: str, deadline: float) -> socket.socket:
    """A connection to the tree's relay, started first when nobody listens (none yet, or it was killed).

    One process of the tree starts it, holding the directory's ``flock`` (released by the kernel
    if the holder dies); the others keep trying to connect meanwhile, and get in as soon as the
    new relay listens, before its starter is done.
    """
    delay = 0.005
    while True:
        sock = _connect(path, deadline)
        if sock is not None:
            return sock
        lock = _try_lock(directory)
        if lock is not None:
            try:
                sock = _connect(path, deadline)
                if sock is None:
                    _launch(client, directory, path, deadline)
                    sock = _connect(path, deadline)
            finally:
                _unlock(lock)
            if sock is None:
                raise RelayError("UNAVAILABLE", "the relay process started but does not listen")
            return sock
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RelayError("DEADLINE_EXCEEDED", "another process of this tree is still starting the relay")
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)


def _try_lock(directory: str) -> int | None:
    """The turn to start the tree's relay (a descriptor holding the directory's flock), or None if taken."""
    if not _launch_lock.acquire(blocking=False):
        return None  # another thread of this process is starting it
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        _launch_lock.release()
        raise RelayError("UNAVAILABLE", f"cannot open the relay's directory {directory} ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        _launch_lock.release()
        return None
    return fd


def _unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)  # explicit: a fork may hold a copy of the descriptor
    os.close(fd)
    _launch_lock.release()


def _launch(client: ClientConfig, directory: str, path: str, deadline: float) -> None:
    """Start the tree's relay for ``client`` at ``path``; returns once it listens (under the tree's lock)."""
    for stale in (path, path[: -len(".sock")] + ".pid"):
        try:
            os.unlink(stale)  # a killed relay's: nobody listens there
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise RelayError("UNAVAILABLE", f"cannot remove {stale} ({exc.strerror})") from None
    if _lifeline is None or not _is_our_pipe(_lifeline):
        prepare()  # a sender started without the tracer's start(), or the app closed our pipe
    assert _lifeline is not None
    config = {
        "sys_path": [entry for entry in sys.path if entry],  # no cwd entry: the app's files never shadow ours
        "socket": path,
        "directory": directory,
        "lifeline": _lifeline[0],
        "target": client.target,
        "insecure": client.insecure,
        "api_key": client.api_key,
        "ca": _text(client.ca),
    }
    interpreter = _interpreter()
    read_end, write_end = os.pipe()
    try:
        # The app's forks wait while Popen runs: a process forked meanwhile would inherit the pipe
        # on which Popen learns that the exec happened, and Popen would wait for that process to end
        # (a multiprocessing pool's worker: for ever), the relay for its configuration.
        with lifecycle.fork_guard:
            process = subprocess.Popen(
                [interpreter, "-I", "-S", "-c", _BOOT],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                close_fds=True,
                pass_fds=(_lifeline[0],),
                start_new_session=True,
            )
    except OSError as exc:
        os.close(read_end)
        os.close(write_end)
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
    finally:
        os.close(write_end)
    assert process.stderr is not None
    why = _read_available(process.stderr.fileno()).decode("utf-8", "replace").strip().splitlines()
    process.stderr.close()
    if failure or returncode:
        reason = failure or (why[-1] if why else f"exit code {returncode}")
        raise RelayError("UNAVAILABLE", f"the relay process could not start ({reason})")


def _private_directory(why: str) -> str:
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
    raise RelayError("UNAVAILABLE", f"cannot make the relay's directory in {base} ({why})")


def _text(ca: bytes | None) -> str | None:
    return ca.decode("latin-1") if ca is not None else None


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


def serve(config: dict[str, Any], listener: socket.socket) -> None:
    """The relay's main, once it listens (bind is atomic: of two relays for one path, one binds) and
    has left its starter (the relay is not the app's child): relay calls until the lifeline ends."""
    path = config["socket"]
    bound = os.stat(path).st_ino
    pid_path = path[: -len(".sock")] + ".pid"
    with open(pid_path, "w") as pid_file:  # for whoever looks
        pid_file.write(f"{os.getpid()}\n")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)  # grpc's C core logs to stderr; nothing of ours reaches any output
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    ca = config["ca"]
    client = ClientConfig(config["target"], config["insecure"], config["api_key"], ca.encode("latin-1") if ca else None)
    _Server(listener, client, config["lifeline"]).run()
    try:
        if os.stat(path).st_ino == bound:  # still ours, not a successor's
            os.unlink(path)
            os.unlink(pid_path)
        os.rmdir(config["directory"])  # once no relay of the tree is left in it
    except OSError:
        pass
    os._exit(0)


class _Channel:
    """The relay's channel to the collector and the calls using it."""

    def __init__(self, channel: Any) -> None:
        self.grpc = channel
        self.users = 0
        self.retired = False


class _Server:
    def __init__(self, listener: socket.socket, client: ClientConfig, lifeline: int) -> None:
        self.listener = listener
        self.client = client
        self.lifeline = lifeline
        self.lock = threading.Lock()
        self.open = 0
        self.lifeline_ended = threading.Event()
        self.channel: _Channel | None = None  # one channel for every connection, made anew after a fault
        self.told: set[str] = set()  # failure codes handed to a process since the collector last answered

    def run(self) -> None:
        threading.Thread(target=self._watch_lifeline, daemon=True).start()
        threading.Thread(target=self._warm, daemon=True).start()
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

    def _warm(self) -> None:
        """Import grpc and make the channel now, while the first connections wait in the queue: a
        short-lived process's exit budget is not spent on the relay's start-up."""
        with contextlib.suppress(Exception):  # the first call makes it again and answers with the reason
            self._done(self._channel(), False)

    def _watch_lifeline(self) -> None:
        """The lifeline ends when every process holding its write end (the tree's forks) ended."""
        try:
            while os.read(self.lifeline, 4096):
                pass
        except OSError:
            pass
        self.lifeline_ended.set()

    def _channel(self) -> _Channel:
        """The channel for the next call; the caller ends its use with :meth:`_done`."""
        from coldmod_trace.config import client_channel

        with self.lock:
            if self.channel is None:
                self.channel = _Channel(client_channel(self.client))
            self.channel.users += 1
            return self.channel

    def _done(self, channel: _Channel, failed: bool) -> None:
        """A call ended. After a connection fault the channel is retired (the next call gets a fresh
        one, where grpc's own reconnect backoff, up to two minutes, would fail the tree's retries fast)
        and closed once its last call is over: closing it earlier would cancel the others' calls."""
        with self.lock:
            channel.users -= 1
            if failed and self.channel is channel:
                self.channel = None
                channel.retired = True
            close = channel.retired and channel.users == 0
        if close:
            channel.grpc.close()

    def _answered(self) -> int:
        """A call was answered: any failure after it is news again (a key fixed, then refused, is)."""
        if self.told:
            with self.lock:
                self.told.clear()
        return ANSWERED

    def _failed(self, code: str) -> int:
        """FAILED for the first process handed ``code`` since the collector last answered, FAILED_TOLD after."""
        with self.lock:
            if code in self.told:
                return FAILED_TOLD
            self.told.add(code)
            return FAILED

    def _serve(self, conn: socket.socket) -> None:
        """One app process's calls, in order, on the relay's shared channel."""
        import grpc

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
                channel = self._channel()
                failed = False
                try:
                    # No (de)serializers: bytes in, bytes out, relayed unchanged.
                    body = channel.grpc.unary_unary(METHODS[method], None, None)(payload, timeout=timeout)
                    status = self._answered()
                except grpc.RpcError as exc:
                    code = exc.code()
                    name = code.name if code else "UNKNOWN"
                    status, body = self._failed(name), f"{name}\n{exc.details() or ''}".encode()
                    failed = code == grpc.StatusCode.UNAVAILABLE  # the connection, not this call's deadline
                except Exception as exc:
                    failure = f"the relay failed ({type(exc).__name__}: {exc})"
                    status, body = self._failed("INTERNAL"), f"INTERNAL\n{failure}".encode()
                finally:
                    self._done(channel, failed)
                try:
                    conn.sendall(_ANSWER.pack(status, len(body)) + body, _NO_SIGNAL)
                except OSError:
                    return
        finally:
            conn.close()
            with self.lock:
                self.open -= 1

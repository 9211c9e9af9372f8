"""``coldmod connect``: pair this checkout with a web UI, and do here what the UI asks.

The CLI holds one gRPC stream to the collector (``Connect.Attach``), named by
a connect key of 192 random bits that only the collector makes: the page asks
for one ("Connect a checkout") and the developer gives it to this command
through stdin (``--stdin``, pasted at a prompt), ``COLDMOD_CONNECT_KEY`` or a
0600 ``--key-file`` — never through argv, which every local user can read in
``/proc``. Without a key, the collector issues one to this CLI and it prints
the page's URL. The stream also carries this process's own random token, so
its reconnects are recognised and any other CLI presenting the key is
refused (nothing is taken over silently). Up the stream
go the checkout's functions, its ignored keys and, computed in the
background, each function's reference count; down it come the UI's commands:
Ignore (edit the rootmarker), Remove (plan, then apply once the UI confirms),
Open (``$EDITOR`` at the line, started without a shell). When the stream
breaks, the CLI reconnects with backoff until stopped with Ctrl-C.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
import queue
import random
import secrets
import shlex
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from coldmod_cli import local
from coldmod_cli._errors import CliError, UsageError, say, warn
from coldmod_cli._words import plural
from coldmod_trace import config

if TYPE_CHECKING:
    import grpc

    from coldmod_codemod import RemovalPlan
    from coldmod_proto.v1 import coldmod_pb2 as pb
    from coldmod_trace.discovery import Discovery

__all__ = ["COLDMOD_CONNECT_KEY", "connect", "editor_command", "key_from_url", "read_key", "ui_url"]

#: The environment variable that may hold the connect key (instead of stdin or a file).
COLDMOD_CONNECT_KEY = "COLDMOD_CONNECT_KEY"
#: Where a connect key may come from, in the words of the refusal for a key in argv.
_KEY_SOURCES = (
    "run `coldmod connect --stdin` and paste it when asked, set COLDMOD_CONNECT_KEY, "
    "or pass --key-file with a file only you can read (chmod 600)"
)

#: Reconnection backoff: first wait, cap, and the jitter around each wait.
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 15.0
JITTER = 0.2
#: Editors that take ``file:line`` (the rest take ``+line file``, as vi and emacs do).
_COLON_EDITORS = frozenset({"subl", "sublime_text", "zed", "hx", "helix", "mate", "kak-remote"})
_GOTO_EDITORS = frozenset({"code", "code-insiders", "codium", "cursor", "windsurf"})
_LINE_FLAG_EDITORS = frozenset({"idea", "pycharm", "charm", "webstorm"})


def _reference_count(key: str, references: int, verdict: str, reasons: tuple[str, ...]) -> Any:
    """The ``ReferenceCount`` event for one key: its references, its verdict and the reasons for it."""
    from coldmod_proto.v1 import coldmod_pb2 as pb

    return pb.ReferenceCount(
        key=key, references=references, safe=verdict == "safe", verdict=verdict, reasons=list(reasons)
    )


def _codemod() -> Any:
    """The codemod library (imported late: LibCST is slow to import and only needed for commands)."""
    import coldmod_codemod

    return coldmod_codemod


def key_from_url(url: str) -> str:
    """The connect key in a UI URL (``…/#connect=KEY``), or the URL itself when it is a bare key."""
    from coldmod_cli.web.broker import valid_key

    text = url.strip()
    parts = urlsplit(text)
    candidates = [text]
    for part in (parts.fragment, parts.query):
        candidates += parse_qs(part).get("connect", [])
    for candidate in reversed(candidates):
        if valid_key(candidate):
            return candidate
    raise UsageError(
        "the URL holds no connect key; copy the whole URL the web UI shows after "
        "'Connect a checkout' (it ends in #connect=...), or run `coldmod connect` without a URL"
    )


def _key_in(text: str) -> str | None:
    """The connect key in ``text`` (a URL or a bare key), or None."""
    try:
        return key_from_url(text)
    except UsageError:
        return None


def read_key(
    url: str | None,
    *,
    stdin: bool,
    key_file: str | None,
    env: Mapping[str, str],
    stream: Any = None,
) -> str:
    """The connect key the developer gave, "" for a new pairing; refuses a key on the command line.

    Sources, in order: ``--key-file`` (mode 0600 or stricter), ``--stdin``
    (a prompt without echo on a terminal), ``COLDMOD_CONNECT_KEY``.
    """
    if url and _key_in(url):
        raise UsageError(
            "the connect key must not be on the command line, where other users of this machine "
            f"can read it (/proc/PID/cmdline); {_KEY_SOURCES}"
        )
    given = [name for name, on in (("--stdin", stdin), ("--key-file", key_file)) if on]
    if len(given) > 1:
        raise UsageError("give the connect key one way: --stdin or --key-file, not both")
    if key_file:
        text = _read_private(key_file)
        where = key_file
    elif stdin:
        text = _read_stdin(stream if stream is not None else sys.stdin)
        where = "stdin"
    elif env.get(COLDMOD_CONNECT_KEY):
        text = env[COLDMOD_CONNECT_KEY]
        where = COLDMOD_CONNECT_KEY
    else:
        return ""
    key = _key_in(text)
    if key is None:
        raise UsageError(
            f"{where} holds no connect key; copy the key the web UI shows after 'Connect a checkout' "
            "(22 or more characters of A-Z a-z 0-9 - _)"
        )
    return key


def _read_private(path: str) -> str:
    """A key file's text, refused unless only its owner (this user) can read it."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise UsageError(f"cannot read the key file {path} ({exc.strerror or exc})") from None
    with os.fdopen(fd, encoding="utf-8", errors="replace") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"the key file {path} is not a regular file")
        if info.st_mode & 0o077 or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
            raise UsageError(
                f"the key file {path} can be read by others (mode {stat.S_IMODE(info.st_mode):o}); "
                f"run `chmod 600 {shlex.quote(path)}`"
            )
        return handle.read(4096)


def _read_stdin(stream: Any) -> str:
    """One line from stdin; on a terminal, asked for without echo."""
    if hasattr(stream, "isatty") and stream.isatty():
        try:
            return getpass.getpass("connect key (from the web UI's 'Connect a checkout'): ")
        except EOFError:
            return ""
    return str(stream.readline(4096))


def ui_url(key: str, env: Mapping[str, str] | None = None, *, channel: grpc.Channel | None = None) -> str:
    """The web UI's URL for a new pairing: where the collector on ``channel`` says its UI is, else from the env."""
    environ = os.environ if env is None else env
    if channel is not None:
        reported, why = reported_web_url(channel)
        if reported:
            return f"{reported.split('#')[0].rstrip('/')}/#connect={key}"
        say(
            f"the collector did not say where its web UI is ({why}); the address below is built from "
            f"{config.COLDMOD_WEB_HOST} and may not be where the UI listens"
        )
    host, port = config.host_port(None, variable=config.COLDMOD_WEB_HOST, env=environ)
    if _unspecified(host):
        host = "localhost"  # a collector bound to every interface is reachable here as localhost
    scheme = "http" if config.insecure(environ) else "https"
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"{scheme}://{netloc}/#connect={key}"


def reported_web_url(channel: grpc.Channel, timeout: float = 5.0) -> tuple[str, str]:
    """``(web_url, "")`` from the collector's Info, or ``("", why not)``."""
    import grpc

    from coldmod_proto.v1 import coldmod_pb2, coldmod_pb2_grpc

    try:
        stub = coldmod_pb2_grpc.HeatmapStub(channel)  # type: ignore[no-untyped-call]
        info = stub.Info(coldmod_pb2.InfoRequest(), timeout=timeout)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.UNIMPLEMENTED:
            return "", "it is older than this coldmod-cli"
        return "", f"Info failed: {error.code().name.lower()}"
    return (info.web_url, "") if info.web_url else ("", "it runs without a web UI")


def _unspecified(host: str) -> bool:
    """True for an empty or any-interface address (0.0.0.0, ::)."""
    try:
        return not host or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False  # a host name


def editor_command(editor: str, path: str, line: int) -> list[str]:
    """The argv that opens ``path`` at ``line`` in ``editor`` (a ``$EDITOR`` value, split like a shell would)."""
    argv = shlex.split(editor)
    if not argv:
        raise CliError("$EDITOR is empty; set it to your editor, like EDITOR=vim or EDITOR='code --wait'")
    name = os.path.basename(argv[0])
    if name in _GOTO_EDITORS:
        return [*argv, "--goto", f"{path}:{line}"]
    if name in _COLON_EDITORS:
        return [*argv, f"{path}:{line}"]
    if name in _LINE_FLAG_EDITORS:
        return [*argv, "--line", str(line), path]
    return [*argv, f"+{line}", path]


class Checkout:
    """The local side of a pairing: the checkout's functions, reference counts, and the UI's commands."""

    def __init__(self, start: str | os.PathLike[str] | None, env: Mapping[str, str]) -> None:
        """Discover the checkout at or above ``start`` (raises RootmarkerError when there is none)."""
        self.env = env
        self.found: Discovery = local.checkout(start)
        self.root = self.found.marker.root
        self.app = local.app_name(self.found, env)
        self._lock = threading.Lock()
        self._sink: Callable[[pb.CliEvent], None] | None = None
        # key -> (references, verdict, reasons), as the UI shows them
        self._references: dict[str, tuple[int, str, tuple[str, ...]]] = {}
        self._generation = 0
        self._plans: dict[str, RemovalPlan] = {}
        self._closed = threading.Event()
        self._start_counting()

    # ------------------------------------------------------------ what we send

    def sources_event(self) -> pb.CliEvent:
        """Every function of the checkout, and every ignored key."""
        from coldmod_proto.v1 import coldmod_pb2 as pb

        sources = [
            pb.LocalSource(key=s.key, path=s.path, line=s.lines[0] if s.lines else 0)
            for s in sorted(self.found.sources.values(), key=lambda s: (s.path, s.lines, s.key))
        ]
        sources += [pb.LocalSource(key=k, ignored=True) for k in sorted(self.found.marker.ignore_keys)]
        return pb.CliEvent(sources=pb.LocalSources(sources=sources))

    def attach(self, sink: Callable[[pb.CliEvent], None] | None) -> None:
        """Send events to ``sink`` from now on (None: the stream is down); replays the known counts."""
        from coldmod_proto.v1 import coldmod_pb2 as pb

        with self._lock:
            self._sink = sink
            known = dict(self._references)
        if sink is None:
            return
        sink(self.sources_event())
        for key, counted in known.items():
            sink(pb.CliEvent(references=_reference_count(key, *counted)))

    def _send(self, event: pb.CliEvent) -> None:
        """Send ``event`` up the stream when there is one."""
        with self._lock:
            sink = self._sink
        if sink is not None:
            sink(event)

    def close(self) -> None:
        """Stop counting references."""
        self._closed.set()

    # ------------------------------------------------------ reference counting

    def _start_counting(self) -> None:
        """Count references of every function in a background thread (restarted after each edit)."""
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._references.clear()
        keys = sorted(self.found.sources, key=lambda k: (self.found.sources[k].path, self.found.sources[k].lines))
        threading.Thread(
            target=self._count, args=(generation, keys), daemon=True, name="coldmod-references"
        ).start()

    def _count(self, generation: int, keys: list[str]) -> None:
        """Count each function's references and verdict, sending each as it is known."""
        from coldmod_proto.v1 import coldmod_pb2 as pb

        codemod = _codemod()
        removable = codemod.REMOVABLE_KINDS
        for key in keys:
            if self._closed.is_set() or generation != self._generation:
                return  # the checkout changed: a newer thread counts again
            try:
                references = codemod.find_references(self.root, key)
            except Exception as exc:  # one bad file must not stop the others
                warn(f"cannot count the references of {key}: {exc}")
                continue
            # The verdict from the references alone (the rules table decides each kind); a plan says the rest.
            blocking = [r for r in references if r.kind not in removable]
            verdict = max((r.verdict for r in blocking), key=codemod.VERDICTS.index, default=codemod.SAFE)
            reasons = tuple(f"{r.path}:{r.line} {r.kind}" for r in blocking)
            with self._lock:
                if generation != self._generation:
                    return
                self._references[key] = (len(references), verdict, reasons)
            self._send(pb.CliEvent(references=_reference_count(key, len(references), verdict, reasons)))

    def _refresh(self) -> None:
        """Discover again after an edit, tell the UI, and count again."""
        self.found = local.checkout(self.root)
        with self._lock:
            self._plans.clear()
        self._send(self.sources_event())
        self._start_counting()

    # ---------------------------------------------------------------- commands

    def run(self, command: pb.UiCommand) -> pb.CliEvent:
        """Carry out one UI command; the result is always an event (failures say why in one sentence)."""
        from coldmod_proto.v1 import coldmod_pb2 as pb

        kind = command.WhichOneof("command")
        key = getattr(command, kind) if kind else ""
        handler = {
            "ignore": self.ignore,
            "plan_removal": self.plan_removal,
            "apply_removal": self.apply_removal,
            "open": self.open,
        }.get(kind or "")
        if handler is None:
            result = pb.CommandResult(ok=False, message="this CLI does not know that command; update coldmod-cli")
        else:
            try:
                result = handler(key)
            except CliError as exc:
                result = pb.CommandResult(ok=False, message=str(exc))
            except Exception as exc:  # the UI gets one sentence; the terminal the details
                warn(f"{kind} {key} failed: {type(exc).__name__}: {exc}")
                result = pb.CommandResult(ok=False, message=f"{kind} failed in the CLI ({type(exc).__name__}: {exc})")
        result.command_id = command.command_id
        return pb.CliEvent(result=result)

    def _require(self, key: str, what: str) -> None:
        """Raise CliError unless ``key`` is a function of the checkout."""
        if key not in self.found.sources:
            if key in self.found.marker.ignore_keys:
                raise CliError(f"{key} is ignored in {self.found.marker.path}; nothing to {what}")
            raise CliError(f"{key} is not a function of the checkout {self.root}; nothing to {what}")

    def ignore(self, key: str) -> pb.CommandResult:
        """Add ``key`` to ``[ignore] keys`` in the rootmarker."""
        from coldmod_cli import markerfile
        from coldmod_proto.v1 import coldmod_pb2 as pb

        self._require(key, "ignore")
        markerfile.add_ignore_keys(self.found.marker.path, [key])
        say(f"ignored {key} (added to [ignore] keys in {self.found.marker.path})")
        self._refresh()
        return pb.CommandResult(
            ok=True,
            message=f"Ignored {key} in {self.found.marker.path}; "
            "it leaves the heatmap when the application next starts.",
        )

    def plan_removal(self, key: str) -> pb.CommandResult:
        """Plan removing ``key``: the diff, and whether it is safe (with the references grouped, when not)."""
        from coldmod_cli.removal import reason_lines, uncommitted
        from coldmod_proto.v1 import coldmod_pb2 as pb
        from coldmod_trace.rootmarker import is_test_file

        self._require(key, "remove")
        plan = _codemod().plan_removal(self.root, [key], tests=is_test_file)
        verdict = plan.verdicts[key]
        with self._lock:
            self._plans[key] = plan
        files = [edit.path for edit in plan.edits]
        if verdict.removed:
            message = f"Removes {key} from {', '.join(files)}."
            dirty = uncommitted(self.root, files)
            if dirty:
                message += (
                    f" Note: {', '.join(dirty)} has uncommitted changes; commit first to review the removal alone."
                )
        else:
            where = sum(len(group.places) for group in verdict.groups) or len(verdict.reasons)
            places = plural(where, "place")
            message = {
                "test-only": f"only tests use {key} ({places}: see the reasons); "
                f"`coldmod rm --include test-only {key}` in a terminal removes it with the tests that exist "
                f"only for it.",
                "review": f"{key} may be used indirectly ({places}: see the reasons); if it is not, "
                f"run `coldmod rm --include review {key}` in a terminal.",
            }.get(
                verdict.verdict,
                f"{key} is still referenced ({places}); "
                f"remove those references first, or run `coldmod rm --force {key}` in a terminal.",
            )
        return pb.CommandResult(
            ok=True,
            message=message,
            diff=plan.diff(),
            safe=verdict.safe,
            verdict=verdict.verdict,
            reasons=reason_lines(verdict),  # one line per group, as `rm --dry-run` prints them
        )

    def apply_removal(self, key: str) -> pb.CommandResult:
        """Apply the plan made for ``key``, only if it is safe and nothing changed since."""
        from coldmod_proto.v1 import coldmod_pb2 as pb

        with self._lock:
            plan = self._plans.pop(key, None)
        if plan is None:
            raise CliError(f"there is no current plan for {key}; choose Remove again to see what it changes")
        verdict = plan.verdicts[key]
        if not verdict.removed:
            raise CliError(f"refused: {key}'s verdict is {verdict.verdict} ({'; '.join(verdict.reasons)})")
        result = _codemod().apply(plan)
        if not result.ok:
            raise CliError(f"nothing was changed: {'; '.join(result.problems)}")
        say(f"removed {key} ({', '.join(result.written)}); run your tests, then review with `git diff`")
        self._refresh()
        return pb.CommandResult(
            ok=True,
            message=f"Removed {key} from {', '.join(result.written)}; run your tests, then review with git diff.",
        )

    def open(self, key: str) -> pb.CommandResult:
        """Open ``$VISUAL``/``$EDITOR`` at the function's first line (no shell; the key never reaches argv)."""
        from coldmod_proto.v1 import coldmod_pb2 as pb

        self._require(key, "open")
        source = self.found.sources[key]
        editor = self.env.get("VISUAL") or self.env.get("EDITOR")
        if not editor:
            raise CliError(
                "set $EDITOR (or $VISUAL) in the shell that runs `coldmod connect` to open files from the UI"
            )
        line = source.lines[0] if source.lines else 1
        argv = editor_command(editor, str(self.root / source.path), line)
        try:
            process = subprocess.Popen(argv, cwd=self.root)
        except OSError as exc:
            raise CliError(f"cannot start the editor {argv[0]!r} ({exc.strerror or exc}); check $EDITOR") from None
        threading.Thread(target=process.wait, daemon=True, name="coldmod-editor").start()
        return pb.CommandResult(ok=True, message=f"Opened {source.path}:{line} in {os.path.basename(argv[0])}.")


class _Stream:
    """One ``Attach`` call: events up from a queue, commands down, each command run in order."""

    def __init__(self, channel: grpc.Channel, pairing: _Pairing, checkout: Checkout, hostname: str) -> None:
        """Open the Attach call on ``channel`` for ``pairing``."""
        from coldmod_cli.web.broker import CLI_TOKEN_METADATA
        from coldmod_proto.v1 import coldmod_pb2 as pb
        from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc

        self.outgoing: queue.Queue[pb.CliEvent | None] = queue.Queue()
        self.pairing = pairing
        self.hello = pb.CliEvent(
            hello=pb.CliHello(connect_key=pairing.key, app=checkout.app, root=str(checkout.root), hostname=hostname)
        )
        self.checkout = checkout
        self.call = pb_grpc.ConnectStub(channel).Attach(  # type: ignore[no-untyped-call]
            self._events(), metadata=((CLI_TOKEN_METADATA, pairing.token),)
        )

    def _events(self) -> Iterator[pb.CliEvent]:
        """The hello, then whatever is queued, until the end marker."""
        yield self.hello
        while True:
            event = self.outgoing.get()
            if event is None:
                return
            yield event

    def run(self, on_attached: Callable[[], None]) -> None:
        """Until the stream ends: wait to be attached, then carry out each command (raises grpc.RpcError)."""
        from coldmod_cli.web.broker import ATTACHED_METADATA, KEY_METADATA

        # The collector sends `coldmod-connect: attached` once the pairing is in its table. A refusal
        # ends the call with empty initial metadata, possibly before done() says so: only the marker
        # means the key was accepted, so "connected" is never said before a refusal.
        metadata = dict(self.call.initial_metadata() or ())
        if metadata.get(ATTACHED_METADATA[0]) == ATTACHED_METADATA[1]:
            if not self.pairing.key:
                self.pairing.key = str(metadata.get(KEY_METADATA, ""))
            on_attached()
        self.checkout.attach(self.outgoing.put)
        # One worker: commands edit files, and two edits at once would race.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="coldmod-command") as worker:
            try:
                for command in self.call:
                    worker.submit(self._answer, command)
            finally:
                self.checkout.attach(None)
                self.outgoing.put(None)

    def _answer(self, command: pb.UiCommand) -> None:
        """Carry out one command and queue its result."""
        self.outgoing.put(self.checkout.run(command))

    def cancel(self) -> None:
        """End the call (from another thread)."""
        self.outgoing.put(None)
        self.call.cancel()


def _cancel_on_stop(stop: threading.Event, done: threading.Event, stream: _Stream) -> None:
    """Cancel ``stream`` once ``stop`` is set (until the call is ``done``)."""
    while not done.wait(0.2):
        if stop.is_set():
            stream.cancel()
            return


def _wait(stop: threading.Event, attempt: int) -> None:
    """Back off before reconnecting: doubling, capped, with jitter; Ctrl-C interrupts."""
    delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**attempt)
    stop.wait(delay * random.uniform(1 - JITTER, 1 + JITTER))  # noqa: S311 - jitter, not a secret


class _Pairing:
    """This CLI's side of a pairing: the key (issued on first attach when none was given) and its token."""

    def __init__(self, key: str, base: str | None = None) -> None:
        """A pairing under ``key`` ( until the collector issues one)."""
        self.key = key
        self.base = base  # the UI address the developer named, if any
        self.issued = not key  # the collector makes the key: print the page's URL once it has
        self.announced = False
        # Ours alone, for this process's lifetime: the collector lets only it reattach under the key.
        self.token = secrets.token_urlsafe(24)


def _attach_once(
    settings: config.ClientConfig, pairing: _Pairing, checkout: Checkout, hostname: str, stop: threading.Event
) -> tuple[bool, str]:
    """One ``Attach`` call until it ends: (whether it was attached, how it ended).

    Raises CliError for what retrying cannot fix (credentials, a collector without connect mode).
    """
    import grpc

    with config.client_channel(settings) as channel:
        stream = _Stream(channel, pairing, checkout, hostname)
        done = threading.Event()
        threading.Thread(
            target=_cancel_on_stop, args=(stop, done, stream), daemon=True, name="coldmod-connect-stop"
        ).start()
        attached = threading.Event()

        def on_attached() -> None:
            """Say we are connected (and, for a new pairing, print its page's address once)."""
            first = not pairing.announced
            pairing.announced = True
            attached.set()
            if first and pairing.issued:
                page = f"{pairing.base.split('#')[0].rstrip('/')}/#connect={pairing.key}" if pairing.base else (
                    ui_url(pairing.key, checkout.env, channel=channel)
                )
                print(page, flush=True)
                say("open the address above in your browser: it is this pairing (do not share it)")
            say(f"connected through the collector at {settings.target}; waiting for the UI (Ctrl-C to stop)")

        try:
            stream.run(on_attached)
            return attached.is_set(), "the collector ended the pairing"
        except grpc.RpcError as error:
            code = error.code()
            if stop.is_set():
                return attached.is_set(), "stopped"
            if code == grpc.StatusCode.UNIMPLEMENTED:
                raise CliError(
                    f"the collector at {settings.target} does not offer connect mode; "
                    "upgrade it to this version of coldmod-cli"
                ) from None
            if code == grpc.StatusCode.FAILED_PRECONDITION:  # the broker's final refusals, one sentence each
                raise CliError(error.details() or "the collector refused the pairing") from None
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
                        grpc.StatusCode.INVALID_ARGUMENT):
                from coldmod_cli.client import explain_rpc_error

                raise CliError(explain_rpc_error(error)) from None
            details = error.details() or ""
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED or details.startswith("the collector "):
                # The collector's own sentence (full, stopping) says more than "cannot reach".
                return attached.is_set(), details or "the collector is full"
            return attached.is_set(), "lost the collector" if attached.is_set() else "cannot reach the collector"
        finally:
            done.set()
            stream.cancel()


def connect(
    url: str | None,
    root: str | os.PathLike[str] | None = None,
    *,
    stdin: bool = False,
    key_file: str | None = None,
    stop: threading.Event | None = None,
    env: Mapping[str, str] | None = None,
    input_stream: Any = None,
) -> int:
    """Pair this checkout with a web UI until Ctrl-C (or ``stop``); returns the exit code.

    The key comes from ``--stdin``/``--key-file``/``COLDMOD_CONNECT_KEY``
    (see :func:`read_key`); without one the collector issues a new pairing
    and its URL is printed (no browser is started: the URL would sit in its
    command line). User errors (a key in argv, no rootmarker, bad variables,
    refused credentials, a pairing held by another CLI) raise with one sentence.
    """
    environ = os.environ if env is None else env
    key = read_key(url, stdin=stdin, key_file=key_file, env=environ, stream=input_stream)
    settings = config.client_config(env=environ)
    checkout = Checkout(root, environ)
    pairing = _Pairing(key, url)
    what = "a new pairing" if not key else "the web UI that made this key"
    say(f"pairing {checkout.root} (app {checkout.app}, {plural(len(checkout.found.sources), 'function')}) with {what}")
    stop = stop or threading.Event()
    hostname = socket.gethostname()
    attempt = 0
    try:
        while not stop.is_set():
            attached, ended = _attach_once(settings, pairing, checkout, hostname, stop)
            if stop.is_set():
                break
            attempt = 0 if attached else attempt + 1
            if attempt <= 1:  # once per outage, not once per retry
                say(f"{ended} at {settings.target}; reconnecting until it is back (Ctrl-C to stop)")
            _wait(stop, attempt)
    except KeyboardInterrupt:
        say("stopped")
    finally:
        stop.set()
        checkout.close()
    return 0

"""``coldmod demo``: the whole job on the bundled sample shop, on a fresh machine, in under a minute.

A collector on free ports with a temporary SQLite store, the shop (copied to a
temporary directory first: the installed package is never edited) under
``coldmod-trace run``, traffic through it, then the heatmap, the cold list and
a dry-run removal. Everything runs as subprocesses of this one and is stopped
at the end, also on errors, Ctrl-C, SIGTERM and SIGHUP; the temporary directory
goes with them. The printed next steps are exact commands that work when pasted.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType

from coldmod_cli import heatmap, local, removal, report
from coldmod_cli._errors import CliError, say
from coldmod_cli._words import plural
from coldmod_cli.server.process import collector_command

SAMPLE = Path(__file__).parent / "demo_app"
#: Seconds to wait for a process to say it is listening.
START_TIMEOUT = 30.0
#: The requests the demo sends: the shop's everyday pages (the coupon page is never visited).
TRAFFIC = [
    "/",
    "/product?id=tea",
    "/product?id=pot",
    "/product?id=nope",
    "/cart/add?id=mug",
    "/cart/add?id=tea&quantity=2",
]
ROUNDS = 10


class _Process:
    """A child process whose output lines are read in the background (a full pipe never blocks it)."""

    def __init__(self, name: str, argv: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.name = name
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        # Its own process group: Ctrl-C on the demo reaches the demo, which then stops it.
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True, name=f"demo-{name}").start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.log.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: re.Pattern[str], timeout: float = START_TIMEOUT) -> re.Match[str]:
        """The first output line matching ``pattern``; fails if the process ends or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.popen.poll() is not None and self.lines.empty():
                    break
                continue
            found = pattern.search(line)
            if found:
                return found
        self.stop()
        tail = " | ".join(self.log[-3:]) or "no output"
        raise CliError(f"the demo's {self.name} did not start ({tail}); re-run with --verbose, or report it")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.popen.poll() is None:
            with suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def copy_sample(workdir: Path) -> Path:
    """Copy the bundled shop into ``workdir`` (never run or edit the installed copy)."""
    target = workdir / "demo-shop"
    shutil.copytree(SAMPLE, target, ignore=shutil.ignore_patterns("__pycache__", ".coldmod-cache"))
    return target


@contextmanager
def collector(workdir: Path) -> Iterator[tuple[str, str | None, _Process]]:
    """A collector on free loopback ports with a store in ``workdir``: (gRPC address, web address, process)."""
    env = dict(os.environ, COLDMOD_INSECURE="on", PYTHONUNBUFFERED="1")
    argv = collector_command(f"sqlite:///{workdir / 'coldmod.db'}")
    process = _Process("collector", argv, cwd=workdir, env=env)
    try:
        grpc_address = process.wait_for(re.compile(r"gRPC listening on (\S+)")).group(1)
        web_address = None
        # The web UI line follows the gRPC one when the web UI is installed.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and web_address is None:
            try:
                line = process.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            found = re.search(r"web UI on (\S+)", line)
            if found:
                web_address = found.group(1)
            elif "store" not in line:
                break
        yield grpc_address, web_address, process
    finally:
        process.stop()


def drive(base_url: str) -> int:
    """Send the demo traffic; returns how many requests were answered."""
    answered = 0
    for _ in range(ROUNDS):
        for path in TRAFFIC:
            try:
                with urllib.request.urlopen(base_url + path, timeout=5) as response:  # noqa: S310 - loopback http
                    response.read()
            except urllib.error.HTTPError as exc:  # the 404 page is part of the traffic
                exc.read()
            answered += 1
    return answered


def wait_for_counts(root: Path, env: dict[str, str], timeout: float = 15.0) -> heatmap.CheckoutView:
    """The heatmap once the collector has counts (the tracer flushes at exit; the ack is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        result = report.load(root, env)
        if any(row.calls for row in result.rows):
            return result
        if time.monotonic() > deadline:
            raise CliError(
                f"the collector received no calls from the sample shop within {timeout:.0f}s; "
                f"re-run with --verbose, or report it with the output"
            )
        time.sleep(0.2)


def heading(text: str) -> None:
    """A section title in the demo's output."""
    print(f"\n== {text}", flush=True)


@contextmanager
def stopped_like_ctrl_c() -> Iterator[None]:
    """SIGTERM and SIGHUP end the demo as Ctrl-C does, so every ``finally`` stops and removes what it started."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        signal.signal(signum, signal.SIG_IGN)  # a second signal must not cut the clean-up short
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def program(name: str) -> str:
    """How to type an installed command: its bare name when PATH finds this installation's, else its full path."""
    script = Path(sys.executable).parent / name
    if not script.exists():
        return name
    found = shutil.which(name)
    return name if found and Path(found).resolve() == script.resolve() else shlex.quote(str(script))


def git_commit(root: Path) -> bool:
    """Make ``root`` a git work tree with one commit, as a real checkout is (rm wants one); False without git."""
    if shutil.which("git") is None:
        return False
    env = dict(os.environ, GIT_AUTHOR_NAME="coldmod demo", GIT_AUTHOR_EMAIL="demo@localhost",
               GIT_COMMITTER_NAME="coldmod demo", GIT_COMMITTER_EMAIL="demo@localhost")  # fmt: skip
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "the sample shop"]):
        if subprocess.run(["git", *args], cwd=root, env=env, capture_output=True).returncode != 0:
            return False
    return True


def next_steps(shop: Path, grpc_address: str, web_address: str | None, *, kept: bool, git: bool) -> list[str]:
    """The closing hints: every command line in them works when pasted into a shell."""
    coldmod, trace = program("coldmod"), program("coldmod-trace")
    lines = []
    if kept and web_address:
        lines.append(f"web UI: http://{web_address}/ (until Ctrl-C)")
    elif web_address:
        lines.append(f"the web UI and the collector stopped with the demo; `{coldmod} demo --keep` keeps them up")
    if kept:
        # The heatmap is seconds old: --min-tracked 0s lifts rm's guard against a too-young heatmap.
        remove = f"{coldmod} rm --cold --min-tracked 0s" + ("  &&  git diff --stat" if git else " --allow-dirty")
        lines += [
            "try the sample shop while the demo runs (paste these lines into a shell):",
            f"  cd {shlex.quote(str(shop))}",
            f"  export COLDMOD_INSECURE=on COLDMOD_GRPC_HOST={grpc_address}",
            f"  {coldmod} cold",
            f"  {remove}",
        ]
    own = [
        (f"{coldmod} init", "at your application's root"),
        (f"COLDMOD_INSECURE=on {coldmod} serve", "in another terminal: gRPC on localhost:7777, web UI on :7778"),
        (f"COLDMOD_INSECURE=on {trace} run -- python -m yourapp", ""),
        (f"COLDMOD_INSECURE=on {coldmod} cold", "once it has run a while"),
    ]
    width = max(len(command) for command, _ in own)
    lines.append("on your own code, with a development collector (plaintext and no API key; not for production):")
    lines += [f"  {command:<{width}}  # {note}" if note else f"  {command}" for command, note in own]
    if coldmod != "coldmod":
        where = shlex.quote(str(Path(sys.executable).parent))
        lines.append(f"(coldmod is in {where}, which is not on PATH; `source {where}/activate` puts it there)")
    return lines


def run(*, open_browser: bool = False, keep: bool = False) -> None:
    """Run the demo end to end; with ``keep`` or ``open_browser``, leave the collector up until Ctrl-C or SIGTERM."""
    started = time.monotonic()
    kept = keep or open_browser
    with stopped_like_ctrl_c():
        workdir = Path(tempfile.mkdtemp(prefix="coldmod-demo-"))
        try:
            _run(workdir, started, open_browser=open_browser, kept=kept)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(workdir: Path, started: float, *, open_browser: bool, kept: bool) -> None:
    """The demo in ``workdir`` (removed by the caller)."""
    shop = copy_sample(workdir)
    say(f"copied the sample shop to {shop}")
    with collector(workdir) as (grpc_address, web_address, _server):
        say(f"collector listening on {grpc_address} (insecure, loopback only; store in {workdir})")
        env = dict(
            os.environ,
            COLDMOD_GRPC_HOST=grpc_address,
            COLDMOD_INSECURE="on",
            COLDMOD_FLUSH_INTERVAL="0.2",
            COLDMOD_MODE="exact",
            PYTHONUNBUFFERED="1",
        )
        env.pop("COLDMOD_APP", None)
        env.pop("COLDMOD_ROOT", None)
        argv = [
            sys.executable,
            "-m",
            "coldmod_trace",
            "run",
            "--",
            sys.executable,
            "-m",
            "shop",
        ]
        app = _Process("sample shop", argv, cwd=shop, env=env)
        try:
            base_url = app.wait_for(re.compile(r"listening on (http://\S+)")).group(1)
            say(f"the shop runs under coldmod-trace at {base_url}; sending traffic")
            answered = drive(base_url)
            say(f"{plural(answered, 'request')} answered; stopping the shop (the tracer flushes its counts at exit)")
        finally:
            app.stop()
        result = wait_for_counts(shop, env)
        heading(f"heatmap of {result.app} (coldmod fetch)")
        report.fetch(result, "text")
        heading("cold functions (coldmod cold)")
        cold_rows = report.cold(result, "text")
        heading("removing them, as a dry run (coldmod rm --cold --min-tracked 0s --dry-run)")
        found = local.checkout(shop)
        removal.remove(found, [], [row.key for row in cold_rows], dry_run=True, force=False)
        heading("next")
        git = kept and git_commit(shop)
        for line in next_steps(shop, grpc_address, web_address, kept=kept, git=git):
            print(line)
        sys.stdout.flush()
        say(f"demo finished in {time.monotonic() - started:.1f}s")
        if kept:
            if open_browser and web_address:
                import webbrowser

                webbrowser.open(f"http://{web_address}/")
            say("the collector keeps running; press Ctrl-C to stop it and remove the sample shop")
            with suppress(KeyboardInterrupt):
                while _server.popen.poll() is None:
                    time.sleep(0.5)
            say("stopped; removing the sample shop")

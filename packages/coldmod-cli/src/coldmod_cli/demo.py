"""``coldmod demo``: the whole job on the bundled sample shop, on a fresh machine, in under a minute.

A collector on free ports with a temporary SQLite store, the shop (copied to a
temporary directory first: the installed package is never edited) under
``coldmod-trace run``, traffic through it, then the heatmap, the cold list and
a dry-run removal. Everything runs as subprocesses of this one and is stopped
at the end, also on errors and Ctrl-C.
"""

from __future__ import annotations

import os
import queue
import re
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

from coldmod_cli import heatmap, local, removal, report
from coldmod_cli._errors import CliError, say
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


def wait_for_counts(root: Path, env: dict[str, str], timeout: float = 15.0) -> heatmap.Heatmap:
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


def run(*, open_browser: bool = False, keep: bool = False) -> None:
    """Run the demo end to end; with ``keep`` or ``open_browser``, leave the collector up until Ctrl-C."""
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="coldmod-demo-"))
    try:
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
                say(f"{answered} requests answered; stopping the shop (the tracer flushes its counts at exit)")
            finally:
                app.stop()
            result = wait_for_counts(shop, env)
            heading(f"heatmap of {result.app} (coldmod fetch)")
            report.fetch(result, "text")
            heading("cold functions (coldmod cold)")
            cold_rows = report.cold(result, "text")
            heading("removing them, as a dry run (coldmod rm --cold --dry-run)")
            found = local.checkout(shop)
            removal.remove(found, [], [row.key for row in cold_rows], dry_run=True, force=False)
            heading("next")
            if web_address:
                lasting = "until Ctrl-C" if open_browser or keep else "while the demo runs; --keep keeps it up"
                print(f"web UI: http://{web_address}/ ({lasting})")
            if keep or open_browser:
                print(f"the sample shop stays in {shop}: try `coldmod rm --cold` there, with")
                print(f"  COLDMOD_INSECURE=on COLDMOD_GRPC_HOST={grpc_address}")
            print("on your own code: `coldmod init` at its root, `coldmod serve`, then")
            print("  `coldmod-trace run -- python -m yourapp`, and later `coldmod cold`")
            say(f"demo finished in {time.monotonic() - started:.1f}s")
            if web_address and (open_browser or keep):
                if open_browser:
                    import webbrowser

                    webbrowser.open(f"http://{web_address}/")
                say("the collector keeps running for the web UI; press Ctrl-C to stop")
                with suppress(KeyboardInterrupt):
                    while _server.popen.poll() is None:
                        time.sleep(0.5)
            elif open_browser or keep:
                say("this installation has no web UI to open")
    finally:
        if not (open_browser or keep):
            shutil.rmtree(workdir, ignore_errors=True)

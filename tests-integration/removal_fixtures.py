"""What the removal acceptance tests share: a TLS + API key collector, the coldmod commands, real processes.

Everything runs for real: `coldmod serve` with a trustme certificate and an
API key (production configuration, never COLDMOD_INSECURE), the traced app
under `coldmod-trace run` and a real server, pip downloading pinned sdists.
The tools come from the environment running the tests (nox installs our
wheels and the pinned third-party packages of noxfile.TEST_DEPS there).
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
API_KEY = "acceptance-key-0123456789abcdef0123"


def run(*argv: str | Path, check: bool = False, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, output captured."""
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600, **kwargs)
    if check:
        assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done


def clean_env() -> dict[str, str]:
    """The test's environment without any COLDMOD_* or PYTHON* setting of the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLDMOD_", "PYTHON"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


class Process:
    """A background process whose output lines are collected as they come."""

    def __init__(self, argv: list[str | Path], **kwargs) -> None:
        self.popen = subprocess.Popen(
            [str(a) for a in argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
            **kwargs,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """The first output line matching ``pattern``; fails with the output when the process ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = re.search(pattern, line)
                if found:
                    return found
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in output: {''.join(self.lines)}")

    def stop(self) -> int:
        """SIGTERM (how production processes end), then wait."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


@dataclass
class Collector:
    """A running `coldmod serve` with TLS and an API key, and the client environment that reaches it."""

    process: Process
    env: dict[str, str]

    def coldmod(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        """Run the `coldmod` command in ``cwd`` against this collector."""
        return run(BIN / "coldmod", *args, cwd=cwd, env=self.env)


def start_collector(directory: Path) -> Collector:
    """`coldmod serve` on loopback port 0 with a trustme certificate, an API key and a SQLite file."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    server_env = clean_env() | {
        "COLDMOD_API_KEY": API_KEY,
        "COLDMOD_TLS_CERT": str(directory / "cert.pem"),
        "COLDMOD_TLS_KEY": str(directory / "key.pem"),
    }
    argv = [BIN / "coldmod", "serve", "--grpc-host", "127.0.0.1:0", "--web-host", "127.0.0.1:0"]
    process = Process([*argv, "--store", f"sqlite:///{directory / 'coldmod.db'}"], cwd=directory, env=server_env)
    address = process.wait_for(r"gRPC listening on (\S+)").group(1)
    env = clean_env() | {
        "COLDMOD_GRPC_HOST": address,
        "COLDMOD_API_KEY": API_KEY,
        "COLDMOD_TLS_CA": str(directory / "ca.pem"),
    }
    return Collector(process, env)


def sdist(name: str, version: str, into: Path) -> Path:
    """Download ``name==version``'s sdist from the package index into ``into`` and unpack it; its folder."""
    archive = next(into.glob(f"{name}-{version}.tar.gz"), None) or next(into.glob(f"{name.title()}-{version}.*"), None)
    if archive is None:
        run(sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps",
            f"{name}=={version}", "-d", into, check=True)  # fmt: skip
        archive = next(p for p in into.iterdir() if p.name.lower().startswith(f"{name.lower()}-{version}"))
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return next(p for p in into.iterdir() if p.is_dir() and p.name.lower() == f"{name.lower()}-{version}")


def git_commit(root: Path, message: str) -> None:
    """Make ``root`` a git work tree with everything committed (rm writes only on a clean tree)."""
    env = clean_env() | {
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
    }  # fmt: skip
    if not (root / ".git").exists():
        run("git", "init", "-q", cwd=root, env=env, check=True)
    run("git", "add", "-A", cwd=root, env=env, check=True)
    run("git", "commit", "-q", "--allow-empty", "-m", message, cwd=root, env=env, check=True)


def wait_for_app(collector: Collector, root: Path, timeout: float = 60) -> None:
    """Wait until the collector has the app's heatmap: the traced process registered (as production does long
    before anyone looks, and before the test's short burst of traffic)."""
    deadline = time.monotonic() + timeout
    while True:
        fetched = collector.coldmod("fetch", "--format", "json", cwd=root)
        if fetched.returncode == 0 or time.monotonic() > deadline:
            assert fetched.returncode == 0, fetched.stderr
            return
        time.sleep(0.3)


def wait_for_calls(collector: Collector, root: Path, key: str, timeout: float = 30) -> dict[str, dict]:
    """`coldmod fetch --format json` until ``key`` shows calls (the tracer flushes at exit); by key."""
    deadline = time.monotonic() + timeout
    while True:
        fetched = collector.coldmod("fetch", "--format", "json", cwd=root)
        assert fetched.returncode == 0, fetched.stderr + "".join(collector.process.lines)
        functions = {f["key"]: f for f in json.loads(fetched.stdout)["functions"]}
        if (functions.get(key, {}).get("calls") or 0) > 0 or time.monotonic() > deadline:
            return functions
        time.sleep(0.3)


def cold_keys(collector: Collector, root: Path) -> set[str]:
    """What `coldmod cold` calls cold."""
    cold = collector.coldmod("cold", "--format", "json", cwd=root)
    assert cold.returncode == 0, cold.stderr
    return {c["key"] for c in json.loads(cold.stdout)["cold"]}


def remove_cold(collector: Collector, root: Path) -> subprocess.CompletedProcess[str]:
    """`coldmod rm --cold` after a test-length trace (hence --min-tracked 0s); it must succeed."""
    removed = collector.coldmod("rm", "--cold", "--min-tracked", "0s", cwd=root)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    return removed


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None  # the status of each response is what we compare, 302 included


class Browser:
    """A cookie-keeping HTTP client that records (method, path, status) of every request, redirects unfollowed."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect()
        )
        self.log: list[tuple[str, str, int]] = []

    def request(self, path: str, form: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> str:
        """GET (or POST ``form``) ``path``; returns the body and records the status."""
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with self.opener.open(request, timeout=20) as response:
                status, body = response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read().decode("utf-8", "replace")
        self.log.append(("POST" if form is not None else "GET", path, status))
        return body

"""Across collectors on one Redis: the live web UI of A shows what arrives at B; connect keys pair anywhere.

Two collector processes (TLS, API key, each with its web UI) share a real
redis-server. The page's event stream on A must announce a Report sent to
B within 2 seconds, and a connect key issued by A must be known to B.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from redis_helpers import API_KEY, REDIS_PASSWORD, Collector, report, sources, tls_env

from coldmod_cli.server.redis_process import RedisProcess
from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def pair(tmp_path: Path):
    """Collectors A and B on one Redis (password from the environment)."""
    with RedisProcess(tmp_path / "redis", password=REDIS_PASSWORD) as redis:
        env = tls_env(tmp_path)
        a, b = Collector(redis.url, env).start(), Collector(redis.url, env).start()
        try:
            yield a, b
        finally:
            a.kill()
            b.kill()


def _context(collector: Collector) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=collector.env["COLDMOD_TLS_CA"])


def _headers() -> dict[str, str]:
    secret = base64.b64encode(f"coldmod:{API_KEY}".encode()).decode()
    return {"Authorization": f"Basic {secret}"}


def _url(collector: Collector, path: str) -> str:
    return f"https://127.0.0.1:{collector.web_port}{path}"


def _post(collector: Collector, path: str, body: dict[str, Any], extra: dict[str, str] | None = None):
    headers = _headers() | {"Content-Type": "application/json", "X-Coldmod": "1"} | (extra or {})
    request = urllib.request.Request(_url(collector, path), json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10, context=_context(collector)) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _heard(frames: list[tuple[float, str]], app: str) -> list[float]:
    """When the stream's ``heatmap`` events named ``app``."""
    return [t for t, line in frames if line.startswith("data:") and json.loads(line[5:]).get("app") == app]


def test_counts_reported_to_b_appear_live_in_the_ui_of_a(pair):
    a, b = pair
    assert a.web_port, a.stderr
    assert b.web_port, b.stderr
    with b.channel() as channel:
        tracing = pb_grpc.TracingStub(channel)
        tracing.Register(pb.RegisterRequest(app="shop", sources=sources(["m.a", "m.b"])), timeout=10)
        frames: list[tuple[float, str]] = []
        stream = urllib.request.urlopen(
            urllib.request.Request(_url(a, "/api/events"), headers=_headers()), timeout=30, context=_context(a)
        )

        def read() -> None:
            try:
                for raw in stream:
                    frames.append((time.monotonic(), raw.decode().strip()))
            except (OSError, ValueError):
                pass  # closed at the end of the test

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(0.5)  # the stream is open and subscribed
        assert _calls(a) == {"m.a": 0, "m.b": 0}  # A has read (and may keep) the heatmap before the Report
        frames.clear()
        sent = time.monotonic()
        tracing.Report(report("shop", "i1", 1, {"m.a": 7}), timeout=10)
        deadline = sent + 2.0
        while time.monotonic() < deadline and not _heard(frames, "shop"):
            time.sleep(0.02)
        # The stream stays open: the reader ends when the collectors stop (closing it here would wait on the reader).
    arrived = _heard(frames, "shop")
    assert arrived, f"A's page heard nothing of B's Report within 2 s: {frames}"
    assert arrived[0] - sent < 2.0
    # A serves the new counts within the 2 s too (its kept copy is refreshed at most every half second).
    while _calls(a) != {"m.a": 7, "m.b": 0}:
        assert time.monotonic() < sent + 2.0, f"A still serves {_calls(a)} 2 s after B acknowledged the Report"
        time.sleep(0.05)


def _calls(collector: Collector) -> dict[str, int]:
    """The counts a collector's web UI serves for the app shop."""
    request = urllib.request.Request(_url(collector, "/api/heatmap?app=shop"), headers=_headers())
    with urllib.request.urlopen(request, timeout=10, context=_context(collector)) as response:
        columns = json.loads(response.read())
    return dict(zip(columns["key"], columns["calls"], strict=True))


def test_a_connect_key_issued_by_one_collector_is_known_to_the_other(pair):
    a, b = pair
    status, made = _post(a, "/api/connect", {})
    assert status == 200, made
    key, token = made["key"], made["token"]
    command = {"command": "ignore", "key": "m.a"}
    # B knows the key and the page's token: the refusal is only that no CLI is attached yet.
    status, answer = _post(b, f"/api/connect/{key}/commands", command, {"X-Coldmod-Token": token})
    assert status == 409
    assert "no CLI is connected" in answer["error"]
    # A key nobody issued, and the right key with another page's token, are refused on B.
    status, answer = _post(b, f"/api/connect/{'A' * 22}/commands", command, {"X-Coldmod-Token": token})
    assert (status, "did not issue" in answer["error"]) == (409, True)
    status, answer = _post(b, f"/api/connect/{key}/commands", command, {"X-Coldmod-Token": "x" * 32})
    assert (status, "does not hold this pairing" in answer["error"]) == (409, True)
    # The page's side is taken: a second page on B cannot claim the pairing A issued.
    status, answer = _post(b, f"/api/connect/{key}/claim", {})
    assert status == 409


class _Cli:
    """A CLI's side of Connect.Attach on one collector: says hello and its sources, answers commands."""

    def __init__(self, collector: Collector, key: str) -> None:
        import queue

        from coldmod_cli.web.broker import CLI_TOKEN_METADATA

        self.events: queue.Queue = queue.Queue()
        self.commands: list[pb.UiCommand] = []
        self.events.put(pb.CliEvent(hello=pb.CliHello(connect_key=key, app="shop", root="/src/shop", hostname="dev")))
        self.events.put(
            pb.CliEvent(sources=pb.LocalSources(sources=[pb.LocalSource(key="m.a", path="m.py", line=3)]))
        )
        self.channel = collector.channel()
        self.stream = pb_grpc.ConnectStub(self.channel).Attach(
            iter(self.events.get, None), metadata=((CLI_TOKEN_METADATA, "cli-token-" + "c" * 30),)
        )
        self.thread = threading.Thread(target=self._answer, daemon=True)
        self.thread.start()

    def _answer(self) -> None:
        try:
            for command in self.stream:
                self.commands.append(command)
                result = pb.CommandResult(command_id=command.command_id, ok=True, message=f"ignored {command.ignore}")
                self.events.put(pb.CliEvent(result=result))
        except grpc.RpcError:
            pass

    def close(self) -> None:
        self.events.put(None)
        self.stream.cancel()
        self.channel.close()


def test_a_cli_attached_to_a_and_a_page_on_b_work_together(pair):
    a, b = pair
    status, made = _post(b, "/api/connect", {})  # the page on B makes the pairing
    assert status == 200, made
    key, token = made["key"], made["token"]
    cli = _Cli(a, key)  # the developer's CLI reaches A
    try:
        frames: list[tuple[float, str]] = []
        stream = urllib.request.urlopen(
            urllib.request.Request(_url(b, f"/api/events/{key}?token={token}"), headers=_headers()),
            timeout=30,
            context=_context(b),
        )

        def read() -> None:
            try:
                for raw in stream:
                    frames.append((time.monotonic(), raw.decode().strip()))
            except (OSError, ValueError):
                pass

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any('"m.a"' in line for _, line in frames):
            time.sleep(0.05)
        data = [json.loads(line[5:]) for _, line in frames if line.startswith("data:")]
        assert any(isinstance(d, dict) and d.get("connected") and d.get("hostname") == "dev" for d in data), data
        assert any(isinstance(d, list) and any(s.get("key") == "m.a" for s in d) for d in data), data
        # A command posted on B reaches the CLI on A, and its answer comes back to B.
        status, answer = _post(b, f"/api/connect/{key}/commands", {"command": "ignore", "key": "m.a"},
                               {"X-Coldmod-Token": token})  # fmt: skip
        assert status == 200, answer
        assert answer["message"] == "ignored m.a"
        assert [c.ignore for c in cli.commands] == ["m.a"]
        # Another page's token is refused on B before anything reaches the CLI.
        status, answer = _post(b, f"/api/connect/{key}/commands", {"command": "ignore", "key": "m.b"},
                               {"X-Coldmod-Token": "t" * 32})  # fmt: skip
        assert status == 409
        assert [c.ignore for c in cli.commands] == ["m.a"]
    finally:
        cli.close()

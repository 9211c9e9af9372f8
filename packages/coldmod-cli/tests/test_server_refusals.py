"""The collector says what it refuses: wrong API keys and failed TLS handshakes, once a minute per kind."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import trustme
from server_fixtures import (
    API_KEY,
    ServerProcess,
    make_tls_env,
    tls_env_fixture,  # noqa: F401 - the tls_env fixture
)

from coldmod_cli.server.refusals import Refusal, Refusals, web_peer
from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc
from coldmod_trace.config import client_channel, client_config

pytestmark = pytest.mark.timeout(120)

WRONG_KEY = "wrong-key-never-logged-0123"
_KEYS_LINE = re.compile(
    r"coldmod serve: refused (\d+) calls? with a wrong or missing API key in the last (\d+) s, "
    r"last from (ipv4:127\.0\.0\.1:\d+( \(web UI\))?)"
)
_TLS_LINE = re.compile(r"coldmod serve: refused (\d+) connections? whose TLS handshake failed .* last from (.+)")


# ------------------------------------------------------------- the counters --


class _Clock:
    """Seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _refusals() -> tuple[Refusals, _Clock, list[str]]:
    clock, said = _Clock(), []
    return Refusals(clock, said.append), clock, said


def test_the_first_refusal_is_said_at_once_and_the_next_only_a_minute_later():
    refusals, clock, said = _refusals()
    refusals.refused(Refusal.CREDENTIALS, "ipv4:10.0.0.1:5000")
    assert said == [
        "coldmod serve: refused 1 call with a wrong or missing API key in the last 1 s, last from ipv4:10.0.0.1:5000"
    ]
    for second in range(1, 12):
        clock.now = 1000.0 + second * 5  # 11 more within the minute: counted, not said
        refusals.refused(Refusal.CREDENTIALS, f"ipv4:10.0.0.{second}:5000")
        refusals.tick()
    assert len(said) == 1
    clock.now = 1060.0
    refusals.tick()
    assert said[1] == (
        "coldmod serve: refused 11 calls with a wrong or missing API key in the last 55 s,"
        " last from ipv4:10.0.0.11:5000"
    )
    clock.now = 1200.0
    refusals.tick()
    assert len(said) == 2, "nothing new, nothing said"
    assert refusals.counts() == {Refusal.CREDENTIALS: 12, Refusal.TLS: 0}


def test_each_kind_has_its_own_minute():
    refusals, clock, said = _refusals()
    refusals.refused(Refusal.CREDENTIALS, "ipv4:10.0.0.1:1")
    clock.now += 10
    refusals.refused(Refusal.TLS, "ipv6:[::1]:2 (web UI)")
    refusals.refused(Refusal.CREDENTIALS, "ipv4:10.0.0.1:3")
    assert [line.split(" refused ")[1][:12] for line in said] == ["1 call with ", "1 connection"]
    clock.now += 50  # the keys' minute is over, not the handshakes'
    refusals.refused(Refusal.TLS, "ipv6:[::1]:4 (web UI)")
    refusals.tick()
    assert len(said) == 3
    assert said[2].startswith("coldmod serve: refused 1 call with a wrong or missing API key in the last 50 s")
    refusals.flush()  # the collector stops: what is unsaid is said, due or not
    assert said[3].startswith("coldmod serve: refused 1 connection whose TLS handshake failed")
    assert said[3].endswith("last from ipv6:[::1]:4 (web UI)")


def test_a_clock_set_back_does_not_silence_the_lines():
    refusals, clock, said = _refusals()
    refusals.refused(Refusal.CREDENTIALS, "ipv4:10.0.0.1:1")
    clock.now -= 3600
    refusals.refused(Refusal.CREDENTIALS, "ipv4:10.0.0.1:2")
    assert len(said) == 2


def test_counting_from_many_threads_loses_nothing():
    refusals, clock, said = _refusals()

    def refuse(thread: int) -> None:
        for n in range(2000):
            refusals.refused(Refusal.CREDENTIALS, f"ipv4:10.{thread}.{n // 256}.{n % 256}:{n}")

    threads = [threading.Thread(target=refuse, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert refusals.counts()[Refusal.CREDENTIALS] == 16_000
    assert len(said) == 1
    clock.now += 60
    refusals.tick()
    assert said[1].startswith("coldmod serve: refused 15,999 calls")


def test_memory_does_not_grow_with_the_number_of_peers():
    import tracemalloc

    refusals, _, _ = _refusals()
    refusals.refused(Refusal.CREDENTIALS, "ipv4:10.0.0.0:1")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(20_000):  # a scan from 20,000 addresses
            refusals.refused(Refusal.CREDENTIALS, f"ipv4:10.{n // 65536}.{n // 256 % 256}.{n % 256}:{n}")
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 4096, f"{grown} bytes kept for 20,000 peers"


def test_grpc_peers_read_plainly_and_web_peers_like_them():
    refusals, _, said = _refusals()
    refusals.refused(Refusal.CREDENTIALS, "ipv6:%5B::1%5D:4444")
    assert said[0].endswith("last from ipv6:[::1]:4444")
    assert web_peer(("127.0.0.1", 80)) == "ipv4:127.0.0.1:80 (web UI)"
    assert web_peer(("::1", 80, 0, 0)) == "ipv6:[::1]:80 (web UI)"


# ------------------------------------------------ a real collector (TLS + key) --


@dataclass
class _Running:
    info: object
    env: dict[str, str]
    clock: list[int]
    ca: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.info.grpc_port}"

    def channel(self, api_key: str) -> grpc.Channel:
        return client_channel(client_config(self.target, env={**self.env, "COLDMOD_API_KEY": api_key}))

    def advance_s(self, seconds: int) -> None:
        self.clock[0] += seconds * 1000


@pytest.fixture(name="collector")
def collector_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Running]:
    """``serve`` in this process (TLS, API key, web UI) with a clock the test moves."""
    from coldmod_cli.server import ServerInfo, serve

    env = make_tls_env(tmp_path)
    for name in [n for n in os.environ if n.startswith("COLDMOD_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    clock = [1_800_000_000_000]
    started: list[ServerInfo] = []
    up = threading.Event()

    def ready(info: ServerInfo) -> None:
        started.append(info)
        up.set()

    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(
            serve(
                "127.0.0.1:0",
                "127.0.0.1:0",
                f"sqlite://{tmp_path}/c.db",
                ready=ready,
                now_ms=lambda: clock[0],
            )
        )
    )
    thread.start()
    assert up.wait(30), "the collector did not start"
    yield _Running(started[0], env, clock, Path(env["COLDMOD_TLS_CA"]))
    started[0].stop()
    thread.join(30)
    assert result == [0]


def _lines(caplog: pytest.LogCaptureFixture, pattern: re.Pattern[str]) -> list[re.Match[str]]:
    return [m for m in (pattern.search(r.getMessage()) for r in caplog.records) if m]


def _wait_for(caplog: pytest.LogCaptureFixture, pattern: re.Pattern[str], count: int) -> list[re.Match[str]]:
    """The matching lines once there are ``count`` (the collector's loop ticks twice a second)."""
    deadline = time.monotonic() + 10
    while len(found := _lines(caplog, pattern)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _refused_calls(running: _Running, api_key: str, calls: int) -> None:
    with running.channel(api_key) as channel:
        heatmap = pb_grpc.HeatmapStub(channel)
        for _ in range(calls):
            with pytest.raises(grpc.RpcError) as err:
                heatmap.ListApps(pb.ListAppsRequest(), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_wrong_keys_are_said_once_a_minute_with_count_and_peer_never_the_key(collector, caplog, capfd):
    caplog.set_level(logging.WARNING)
    _refused_calls(collector, WRONG_KEY, 5)
    with collector.channel(WRONG_KEY) as channel:  # a stream, and a client with another connection
        with pytest.raises(grpc.RpcError):
            list(pb_grpc.HeatmapStub(channel).Fetch(pb.FetchRequest(app="shop"), timeout=10))
    with grpc.secure_channel(collector.target, grpc.ssl_channel_credentials(collector.ca.read_bytes())) as bare:
        with pytest.raises(grpc.RpcError):  # no authorization header at all
            pb_grpc.TracingStub(bare).Report(pb.ReportRequest(app="shop", instance_id="i", sequence=1), timeout=10)

    first = _wait_for(caplog, _KEYS_LINE, 1)
    assert [m.group(1) for m in first] == ["1"], "the first refusal is said at once"
    time.sleep(1.2)  # two of the collector's ticks: within the (injected) minute they say nothing
    assert len(_lines(caplog, _KEYS_LINE)) == 1

    collector.advance_s(61)
    second = _wait_for(caplog, _KEYS_LINE, 2)
    assert len(second) == 2
    assert second[1].group(1) == "6", second[1].group(0)
    assert second[1].group(3).startswith("ipv4:127.0.0.1:")

    _refused_calls(collector, WRONG_KEY, 2)  # within the next minute: counted, said later
    time.sleep(1.2)
    assert len(_lines(caplog, _KEYS_LINE)) == 2
    collector.advance_s(60)
    third = _wait_for(caplog, _KEYS_LINE, 3)
    assert third[2].group(1) == "2"

    # the right key still works, and is never refused nor logged
    with collector.channel(API_KEY) as channel:
        pb_grpc.HeatmapStub(channel).ListApps(pb.ListAppsRequest(), timeout=10)
    with collector.channel(API_KEY) as channel:
        info = pb_grpc.HeatmapStub(channel).Info(pb.InfoRequest(), timeout=10)
    assert (info.refused_credentials, info.refused_tls) == (9, 0)
    logged = caplog.text + "".join(capfd.readouterr())
    assert WRONG_KEY not in logged
    assert API_KEY not in logged
    assert "Bearer" not in logged


def _https(port: int, context: ssl.SSLContext, header: str | None) -> int:
    """The status of GET /api/apps over TLS with this Authorization header."""
    import http.client

    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        connection.request("GET", "/api/apps", headers={"Authorization": header} if header else {})
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_web_ui_counts_wrong_passwords_and_failed_handshakes(collector, caplog):
    caplog.set_level(logging.WARNING)
    port = collector.info.web_port
    trusting = ssl.create_default_context(cafile=str(collector.ca))
    good = "Basic " + base64.b64encode(f"coldmod:{API_KEY}".encode()).decode()
    wrong = "Basic " + base64.b64encode(f"coldmod:{WRONG_KEY}".encode()).decode()

    assert _https(port, trusting, good) == 200
    assert _https(port, trusting, None) == 401  # a browser's first ask: the challenge, not a refusal
    assert _https(port, trusting, wrong) == 401
    assert _https(port, trusting, wrong) == 401
    with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:  # plain HTTP to the TLS port
        plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            assert plain.recv(100) == b"", "no answer: the handshake failed"
        except ConnectionResetError:
            pass  # or the close came as a reset (our bytes were left unread)
    with pytest.raises(ssl.SSLError):  # a client that does not trust our certificate
        _https(port, ssl.create_default_context(cafile=None, cadata=trustme.CA().cert_pem.bytes().decode()), good)
    with socket.create_connection(("127.0.0.1", port), timeout=10):
        pass  # a port probe: connected and gone, no mismatch

    keys = _wait_for(caplog, _KEYS_LINE, 1)
    assert keys[0].group(1) == "1"
    assert keys[0].group(4) == " (web UI)"
    handshakes = _wait_for(caplog, _TLS_LINE, 1)
    assert handshakes[0].group(1) == "1"
    assert handshakes[0].group(2).endswith("(web UI)")
    collector.advance_s(60)
    assert _wait_for(caplog, _KEYS_LINE, 2)[1].group(1) == "1"
    assert _wait_for(caplog, _TLS_LINE, 2)[1].group(1) == "1"
    with collector.channel(API_KEY) as channel:
        info = pb_grpc.HeatmapStub(channel).Info(pb.InfoRequest(), timeout=10)
    assert (info.refused_credentials, info.refused_tls) == (2, 2)
    assert WRONG_KEY not in caplog.text
    assert API_KEY not in caplog.text


def test_coldmod_status_shows_the_counts(collector, cli, tmp_path, monkeypatch):
    _refused_calls(collector, WRONG_KEY, 3)
    checkout = tmp_path / "shop"
    checkout.mkdir()
    (checkout / "coldmod.rootmarker").write_text('[app]\nname = "shop"\n')
    monkeypatch.chdir(checkout)
    monkeypatch.setenv("COLDMOD_GRPC_HOST", collector.target)

    data = json.loads(cli("status", "--format", "json").out)
    assert data["collector"]["refused"] == {"credentials": 3, "tls": 0}
    text = cli("status")
    assert text.code == 0, text.err
    assert (
        "refused:      3 calls with a wrong or missing API key, 0 failed TLS handshakes on the web UI"
        " (since the collector started)"
    ) in text.out


def test_a_collector_process_says_refusals_on_stderr_and_the_rest_when_it_stops(tmp_path, tls_env):
    server = ServerProcess(tmp_path / "c.db", tls_env)
    try:
        assert server.port, server.stderr
        with server.channel(COLDMOD_API_KEY=WRONG_KEY) as channel:
            heatmap = pb_grpc.HeatmapStub(channel)
            for _ in range(4):
                with pytest.raises(grpc.RpcError):
                    heatmap.ListApps(pb.ListAppsRequest(), timeout=10)
        code, _ = server.terminate()
    finally:
        server.close()
    assert code == 0
    said = [m.group(1) for m in _KEYS_LINE.finditer(server.stderr)]
    assert said == ["1", "3"], server.stderr  # the first at once; the other three when it stopped
    assert WRONG_KEY not in server.stderr
    assert API_KEY not in server.stderr

"""serve: the collector through `coldmod serve`, and its errors through the CLI's exit codes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from conftest import HOT, traced

pytestmark = pytest.mark.timeout(120)


def test_serve_runs_a_collector_that_fetch_and_status_use(tmp_path, shop):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")} | {"COLDMOD_INSECURE": "on"}
    server = subprocess.Popen(
        [sys.executable, "-m", "coldmod_cli", "serve", "--grpc-host", "127.0.0.1:0", "--web-host", "127.0.0.1:0",
         "--store", f"sqlite:///{tmp_path / 'store.db'}"],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        address = None
        deadline = time.monotonic() + 30
        while address is None and time.monotonic() < deadline:
            line = server.stderr.readline()
            found = re.search(r"gRPC listening on (\S+)", line)
            address = found.group(1) if found else None
            assert line or server.poll() is None
        assert address
        traced(address, shop, HOT)
        env["COLDMOD_GRPC_HOST"] = address
        status = subprocess.run(
            [sys.executable, "-m", "coldmod_cli", "status", "--format", "json"],
            cwd=shop, env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        state = json.loads(status.stdout)["collector"]
        assert state["apps"] == 1
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", state["web_url"])  # from Info, where connect looks too
    finally:
        server.terminate()
        server.wait(20)
    assert server.returncode == 0  # SIGTERM is a clean stop
    assert (tmp_path / "store.db").exists()


def test_serve_with_a_bad_address_is_one_sentence_exit_1(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLDMOD_INSECURE", "on")

    result = cli("serve", "--grpc-host", "http://nowhere", "--store", f"sqlite:///{tmp_path / 's.db'}")

    assert result.code == 1
    assert "is not a host:port" in result.err
    assert "Traceback" not in result.err


def _serve(tmp_path, env):
    """`coldmod serve` on free ports: (process, gRPC address, web address)."""
    server = subprocess.Popen(
        [sys.executable, "-m", "coldmod_cli", "serve", "--grpc-host", "127.0.0.1:0", "--web-host", "127.0.0.1:0",
         "--store", f"sqlite:///{tmp_path / 'store.db'}"],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    found: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while len(found) < 2 and time.monotonic() < deadline:
        line = server.stderr.readline()
        assert line or server.poll() is None, "the collector ended"
        for name, pattern in (("grpc", r"gRPC listening on (\S+)"), ("web", r"web UI on (?:https?://)?([^/\s]+)")):
            match = re.search(pattern, line)
            if match:
                found[name] = match.group(1)
    threading.Thread(target=server.stderr.read, daemon=True).start()
    return server, found["grpc"], found["web"]


def test_connect_without_a_url_prints_the_address_the_collector_reports(tmp_path, shop):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")} | {"COLDMOD_INSECURE": "on"}
    server, grpc_address, web_address = _serve(tmp_path, env)
    try:
        # COLDMOD_WEB_HOST names a port where nothing listens, as in the issue: the collector knows better.
        connect = subprocess.Popen(
            [sys.executable, "-m", "coldmod_cli", "connect"], cwd=shop, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
            env=env | {"COLDMOD_GRPC_HOST": grpc_address, "COLDMOD_WEB_HOST": "127.0.0.1:9"},
        )  # fmt: skip
        try:
            page = connect.stdout.readline().strip()
            assert page.startswith(f"http://{web_address}/#connect="), page
            with urllib.request.urlopen(page.split("#")[0], timeout=10) as response:
                assert response.status == 200
        finally:
            connect.send_signal(signal.SIGINT)
            connect.wait(20)
        assert "COLDMOD_WEB_HOST" not in connect.stderr.read()  # no fallback was needed
    finally:
        server.terminate()
        server.wait(20)


def test_connect_falls_back_to_coldmod_web_host_and_says_so(capsys):
    # A collector older than Info: a real gRPC server whose Heatmap service does not implement it.
    from concurrent import futures

    import grpc

    from coldmod_cli.connect import ui_url
    from coldmod_proto.v1 import coldmod_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    coldmod_pb2_grpc.add_HeatmapServicer_to_server(coldmod_pb2_grpc.HeatmapServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            env = {"COLDMOD_INSECURE": "on", "COLDMOD_WEB_HOST": "127.0.0.1:9999"}
            url = ui_url("k" * 32, env, channel=channel)
    finally:
        server.stop(None)

    assert url == "http://127.0.0.1:9999/#connect=" + "k" * 32
    said = capsys.readouterr().err
    assert said.count("\n") == 1
    assert "the collector did not say where its web UI is (it is older than this coldmod-cli)" in said
    assert "COLDMOD_WEB_HOST" in said


@pytest.mark.parametrize("value", ["nope", "-3d", "0d", "30"])
def test_serve_with_a_bad_retention_is_one_sentence_exit_2_and_starts_nothing(cli, tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLDMOD_INSECURE", "on")

    result = cli("serve", "--retire-after", value, "--store", f"sqlite:///{tmp_path / 's.db'}")

    assert result.code == 2
    assert "--retire-after" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "s.db").exists(), "nothing was started"

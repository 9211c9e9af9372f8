"""The web UI inside a real collector process: HTTPS, basic auth, and a clean stop with a stream open."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
import trustme
from web_fixtures import write_checkout

from coldmod_cli.connect import connect
from coldmod_cli.server.process import collector_command

pytestmark = pytest.mark.timeout(60)


def start_collector(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str, int, str]:
    """``python -m coldmod_cli.server`` on free ports: (process, gRPC address, web port, what it printed)."""
    process = subprocess.Popen(
        collector_command(f"sqlite:///{tmp_path / 'coldmod.db'}"),
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    assert process.stderr is not None
    grpc_address = web_port = None
    seen = []
    deadline = time.monotonic() + 30
    while web_port is None and time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        if found := re.search(r"gRPC listening on (\S+)", line):
            grpc_address = found.group(1)
        if found := re.search(r"web UI on 127\.0\.0\.1:(\d+)", line):
            web_port = int(found.group(1))
    if grpc_address is None or web_port is None:
        process.kill()
        raise AssertionError("".join(seen))
    # Keep draining stderr so the collector never blocks on a full pipe.
    threading.Thread(target=process.stderr.read, daemon=True).start()
    return process, grpc_address, web_port, "".join(seen)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")}


def test_serve_runs_the_web_ui_over_https_and_stops_cleanly(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key_path.write_bytes(cert.private_key_pem.bytes())
    api_key = "serve-test-key"
    env = _clean_env() | {
        "COLDMOD_API_KEY": api_key,
        "COLDMOD_TLS_CERT": str(cert_path),
        "COLDMOD_TLS_KEY": str(key_path),
    }
    process, _, port, printed = start_collector(tmp_path, env)
    try:
        assert api_key not in printed

        context = ssl.create_default_context(cadata=ca.cert_pem.bytes().decode())

        def get(path: str, password: str | None) -> http.client.HTTPResponse:
            connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
            headers = {}
            if password is not None:
                headers["Authorization"] = "Basic " + base64.b64encode(f"coldmod:{password}".encode()).decode()
            connection.request("GET", path, headers=headers)
            return connection.getresponse()

        assert get("/", None).status == 401
        assert get("/", "nope").status == 401
        page = get("/", api_key)
        assert page.status == 200
        assert b"/static/app.js" in page.read()
        assert get("/static/app.js", api_key).status == 200
        stream = get("/api/events", api_key)  # left open: stopping must not wait for it
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")

        stopped = time.monotonic()
        process.terminate()
        assert process.wait(10) == 0
        assert time.monotonic() - stopped < 6
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_passes_connect_commands_between_the_page_api_and_a_cli(tmp_path: Path) -> None:
    checkout = write_checkout(tmp_path / "checkout")
    process, grpc_address, port, _ = start_collector(tmp_path, _clean_env() | {"COLDMOD_INSECURE": "on"})

    def post(path: str, body: dict[str, object], token: str = "") -> tuple[int, dict[str, object]]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request(
            "POST", path, json.dumps(body),
            {"Content-Type": "application/json", "X-Coldmod": "1", "X-Coldmod-Token": token},
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())

    status, pairing = post("/api/connect", {})  # what 'Connect a checkout' does
    assert status == 200, pairing
    key, token = str(pairing["key"]), str(pairing["token"])
    stop = threading.Event()
    env = {
        "COLDMOD_INSECURE": "on", "COLDMOD_GRPC_HOST": grpc_address, "COLDMOD_WEB_HOST": f"127.0.0.1:{port}",
        "COLDMOD_CONNECT_KEY": key,
    }
    cli = threading.Thread(target=connect, args=(None, checkout), kwargs={"stop": stop, "env": env}, daemon=True)
    cli.start()
    try:
        command = {"command": "ignore", "key": "shop.views.legacy"}
        deadline = time.monotonic() + 15
        status, answer = post(f"/api/connect/{key}/commands", command, token)
        while status == 409 and "no CLI" in str(answer) and time.monotonic() < deadline:
            time.sleep(0.1)  # the CLI is still attaching
            status, answer = post(f"/api/connect/{key}/commands", command, token)
        assert status == 200, answer
        assert answer["ok"] is True
        assert '"shop.views.legacy"' in (checkout / "coldmod.rootmarker").read_text()
    finally:
        stop.set()
        cli.join(10)
        process.terminate()
        assert process.wait(10) == 0

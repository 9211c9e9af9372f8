"""A client pointed at the wrong thing is told which thing; grpc's own log lines never reach a coldmod terminal.

Real collectors (TLS with a trustme CA, and plaintext) and `coldmod` as a subprocess, so that grpc is
imported the way a user's run imports it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import DEMO_APP
from server_fixtures import INSECURE, ServerProcess, tls_env_fixture  # noqa: F401

pytestmark = pytest.mark.timeout(120)

#: What grpc's C core prints: `I1207 05:25:23.392039   31856 ssl_transport_security.cc:2563] …`.
CORE_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+\.cc:\d+\]", re.MULTILINE)


@pytest.fixture
def tls_server(tmp_path, tls_env):
    server = ServerProcess(tmp_path / "tls.db", tls_env)
    yield server
    server.close()


@pytest.fixture
def plain_server(tmp_path):
    server = ServerProcess(tmp_path / "plain.db", INSECURE)
    yield server
    server.close()


def web_address(server: ServerProcess) -> str:
    import time

    deadline = time.monotonic() + 20
    while not (found := re.search(r"web UI on \S*?:(\d+)", server.stderr)) and time.monotonic() < deadline:
        time.sleep(0.05)  # the collector prints it just after the gRPC line the fixture waited for
    assert found, server.stderr
    return f"127.0.0.1:{found.group(1)}"


def coldmod(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("COLDMOD_", "GRPC_"))}
    return subprocess.run(
        [sys.executable, "-m", "coldmod_cli", *argv],
        cwd=DEMO_APP, env=clean | env, capture_output=True, text=True, timeout=60, check=False,
    )


def test_plaintext_client_at_a_tls_collector_is_told_so(tls_server):
    done = coldmod("fetch", env={"COLDMOD_INSECURE": "on", "COLDMOD_GRPC_HOST": tls_server.target})
    assert done.returncode == 1
    assert f"the collector at {tls_server.target} uses TLS, but COLDMOD_INSECURE=on" in done.stderr
    assert "start one with `coldmod serve`" not in done.stderr
    assert not CORE_LINE.search(done.stderr), done.stderr


def test_tls_client_at_a_plaintext_collector_is_told_so(plain_server, tls_env):
    env = {"COLDMOD_GRPC_HOST": plain_server.target, **{k: tls_env[k] for k in ("COLDMOD_API_KEY", "COLDMOD_TLS_CA")}}
    done = coldmod("fetch", env=env)
    assert done.returncode == 1
    assert f"the collector at {plain_server.target} speaks plaintext" in done.stderr
    assert "set COLDMOD_INSECURE=on here too" in done.stderr
    assert not CORE_LINE.search(done.stderr), done.stderr


@pytest.mark.parametrize("secure", [True, False])
def test_the_web_port_is_named_as_such(tls_server, plain_server, tls_env, secure):
    server = tls_server if secure else plain_server
    env = {k: tls_env[k] for k in ("COLDMOD_API_KEY", "COLDMOD_TLS_CA")} if secure else {"COLDMOD_INSECURE": "on"}
    done = coldmod("fetch", env=env | {"COLDMOD_GRPC_HOST": web_address(server)})
    assert done.returncode == 1
    assert "is a web server (the collector's web UI?), not the collector's gRPC port" in done.stderr
    assert "'gRPC listening on'" in done.stderr
    assert not CORE_LINE.search(done.stderr), done.stderr


def test_wrong_ca_still_says_set_the_ca_and_no_core_lines_on_either_side(tls_server, tmp_path):
    import trustme

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    env = {"COLDMOD_GRPC_HOST": tls_server.target, "COLDMOD_API_KEY": "k", "COLDMOD_TLS_CA": str(other)}
    done = coldmod("fetch", env=env)
    assert done.returncode == 1
    assert "cannot make a TLS connection to the collector" in done.stderr
    assert "set COLDMOD_TLS_CA to the CA that signed its certificate" in done.stderr
    assert not CORE_LINE.search(done.stderr), done.stderr
    coldmod("fetch", env={"COLDMOD_INSECURE": "on", "COLDMOD_GRPC_HOST": tls_server.target})  # a failed handshake
    assert "Handshake failed" not in tls_server.stderr
    assert not CORE_LINE.search(tls_server.stderr), tls_server.stderr


def test_nothing_listening_is_still_cannot_reach():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = coldmod("fetch", env={"COLDMOD_INSECURE": "on", "COLDMOD_GRPC_HOST": f"127.0.0.1:{port}"})
    assert done.returncode == 1
    assert "cannot reach the collector at" in done.stderr

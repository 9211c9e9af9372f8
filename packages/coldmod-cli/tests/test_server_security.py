"""TLS, the API key, and startups the collector refuses with one sentence."""

from __future__ import annotations

import socket
import sqlite3

import grpc
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc
from server_fixtures import (
    API_KEY,
    INSECURE,
    complete,
    report,
    run_server_once,
    sources,
    start_server_fixture,  # noqa: F401 - the start_server fixture
    tls_env_fixture,  # noqa: F401 - the tls_env fixture
)

from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(120)

def _code(call, *args) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        complete(call, *args, timeout=10)
    return err.value.code(), err.value.details()


def test_tls_with_the_api_key_works(start_server, tls_env):
    server = start_server(env=tls_env)
    tracing, heatmap = server.tracing(), server.heatmap()
    assert "TLS, API key required" in server.stderr
    tracing.Register(pb.RegisterRequest(app="shop", sources=sources("m.a")))
    assert heatmap.Reset(pb.ResetRequest(app="shop")).keys == 1, "an authenticated caller may reset"
    assert [a.app for a in heatmap.ListApps(pb.ListAppsRequest()).apps] == ["shop"]


@pytest.mark.parametrize("presented", ["", "wrong-key", API_KEY + "x", API_KEY[:-1]])
def test_a_missing_or_wrong_key_is_unauthenticated_and_learns_nothing(start_server, tls_env, presented):
    server = start_server(env=tls_env)
    server.tracing().Register(pb.RegisterRequest(app="shop", sources=sources("m.a")))
    if presented:
        stranger = server.channel(COLDMOD_API_KEY=presented)
    else:  # TLS but no authorization header at all
        creds = grpc.ssl_channel_credentials(open(tls_env["COLDMOD_TLS_CA"], "rb").read())
        stranger = grpc.secure_channel(server.target, creds)
    calls = [
        (pb_grpc.HeatmapStub(stranger).Fetch, pb.FetchRequest(app="shop")),
        (pb_grpc.HeatmapStub(stranger).ListApps, pb.ListAppsRequest()),
        (pb_grpc.HeatmapStub(stranger).Reset, pb.ResetRequest(app="shop")),
        (pb_grpc.HeatmapStub(stranger).Fetch, pb.FetchRequest(app="no-such-app")),
        (pb_grpc.TracingStub(stranger).Report, pb.ReportRequest(app="shop", instance_id="i", sequence=1)),
        (pb_grpc.TracingStub(stranger).Register, pb.RegisterRequest(app="evil")),
    ]
    for call, request in calls:
        code, details = _code(call, request)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert details == "missing or invalid credentials"
    stranger.close()
    apps = server.heatmap().ListApps(pb.ListAppsRequest()).apps
    assert [a.app for a in apps] == ["shop"], "the stranger changed nothing"


def test_health_answers_without_a_key(start_server, tls_env):
    server = start_server(env=tls_env)
    creds = grpc.ssl_channel_credentials(open(tls_env["COLDMOD_TLS_CA"], "rb").read())
    with grpc.secure_channel(server.target, creds) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="coldmod.v1.Tracing"), timeout=10
        )
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_a_plaintext_client_cannot_talk_to_a_tls_collector(start_server, tls_env):
    server = start_server(env=tls_env)
    with grpc.insecure_channel(server.target) as channel:
        code, _ = _code(pb_grpc.HeatmapStub(channel).ListApps, pb.ListAppsRequest())
    assert code == grpc.StatusCode.UNAVAILABLE


def test_insecure_reset_is_allowed_from_this_machine(start_server):
    server = start_server(env=INSECURE)
    server.tracing().Register(pb.RegisterRequest(app="shop", sources=sources("m.a")))
    assert server.heatmap().Reset(pb.ResetRequest(app="shop")).keys == 1


# ------------------------------------------------------------ refused starts --


def _one_sentence(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("missing", ["COLDMOD_API_KEY", "COLDMOD_TLS_CERT", "COLDMOD_TLS_KEY"])
def test_starting_without_key_or_files_is_one_sentence(tmp_path, tls_env, missing):
    env = {k: v for k, v in tls_env.items() if k != missing}
    code, stderr = run_server_once(tmp_path / "c.db", env)
    assert code == 1
    assert missing in _one_sentence(stderr)


def test_an_unreadable_or_mismatched_certificate_is_one_sentence(tmp_path, tls_env):
    code, stderr = run_server_once(tmp_path / "c.db", {**tls_env, "COLDMOD_TLS_CERT": str(tmp_path / "nope.pem")})
    assert code == 1
    assert "cannot be read" in _one_sentence(stderr)

    other = trustme.CA().issue_cert("127.0.0.1")
    other_key = tmp_path / "other-key.pem"
    other.private_key_pem.write_to_path(str(other_key))
    code, stderr = run_server_once(tmp_path / "c.db", {**tls_env, "COLDMOD_TLS_KEY": str(other_key)})
    assert code == 1
    assert "not a matching PEM certificate and private key" in _one_sentence(stderr)


def test_a_port_in_use_is_one_sentence(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, stderr = run_server_once(tmp_path / "c.db", INSECURE, "--grpc-host", f"127.0.0.1:{port}")
    assert code == 1
    assert "in use" in _one_sentence(stderr)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://localhost:6379/0", "Redis"),
        ("mysql://db/coldmod", "unknown scheme"),
        ("sqlite:///no/such/dir/c.db", "does not exist"),
        ("sqlite://", "names no file"),
    ],
)
def test_a_bad_store_url_is_one_sentence(tmp_path, url, says):
    code, stderr = run_server_once(tmp_path / "unused.db", INSECURE, "--store", url)
    assert code == 1
    assert says in _one_sentence(stderr)


def test_a_bad_grpc_host_is_one_sentence(tmp_path):
    code, stderr = run_server_once(tmp_path / "c.db", INSECURE, "--grpc-host", "http://x:1")
    assert code == 1
    assert "COLDMOD_GRPC_HOST" in _one_sentence(stderr)


def test_usage_errors_exit_2(tmp_path):
    code, stderr = run_server_once(tmp_path / "c.db", INSECURE, "--bogus")
    assert code == 2
    assert "Traceback" not in stderr


def test_a_newer_schema_is_refused_and_left_alone(tmp_path, start_server):
    path = tmp_path / "c.db"
    server = start_server(store=path)
    server.tracing().Register(pb.RegisterRequest(app="shop", sources=sources("m.a")))
    assert server.terminate()[0] == 0
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    before = path.read_bytes()

    code, stderr = run_server_once(path, INSECURE)

    assert code == 1
    assert "newer Coldmod (schema 99" in _one_sentence(stderr)
    assert path.read_bytes() == before


def test_a_foreign_file_is_refused_and_left_alone(tmp_path):
    text = tmp_path / "notes.db"
    text.write_text("not a database, just notes\n" * 100)
    code, stderr = run_server_once(text, INSECURE)
    assert code == 1
    assert "not an SQLite database" in _one_sentence(stderr)
    assert text.read_text().startswith("not a database")

    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    code, stderr = run_server_once(other, INSECURE)
    assert code == 1
    assert "another program" in _one_sentence(stderr)


def test_a_store_in_use_is_refused(tmp_path, start_server):
    path = tmp_path / "c.db"
    start_server(store=path)
    code, stderr = run_server_once(path, INSECURE)
    assert code == 1
    assert "in use by another coldmod serve" in _one_sentence(stderr)


# ----------------------------------------------------- insecure mode binds --


@pytest.mark.parametrize(
    ("flag", "host", "says"),
    [
        ("--grpc-host", "0.0.0.0:0", "gRPC on 0.0.0.0:0"),
        ("--web-host", "0.0.0.0:0", "the web UI on 0.0.0.0:0"),
        ("--grpc-host", "[::]:0", "gRPC on :::0"),
    ],
)
def test_insecure_mode_refuses_to_listen_beyond_loopback(tmp_path, flag, host, says):
    code, stderr = run_server_once(tmp_path / "c.db", INSECURE, flag, host)
    assert code == 1
    sentence = _one_sentence(stderr)
    assert says in sentence
    assert "--allow-remote-insecure" in sentence
    assert not (tmp_path / "c.db").exists(), "nothing was done before the input was understood"


def test_tls_mode_may_listen_on_every_interface_without_a_warning(start_server, tls_env):
    server = start_server(env=tls_env, args=("--grpc-host", "0.0.0.0:0"))
    assert "warning" not in server.stderr
    assert server.heatmap().ListApps(pb.ListAppsRequest(), timeout=10).apps == []


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("", False),
        ("no-such-host.invalid", False),
    ],
)
def test_which_hosts_count_as_loopback(host, loopback):
    from coldmod_cli.server.settings import is_loopback_host

    assert is_loopback_host(host) is loopback


# ------------------------------------------------------- coldmod apps ... --


def test_coldmod_apps_list_and_delete(start_server, tls_env, cli, monkeypatch):
    import json

    server = start_server(env=tls_env)
    for name, value in tls_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLDMOD_GRPC_HOST", server.target)
    monkeypatch.delenv("COLDMOD_INSECURE", raising=False)
    tracing = server.tracing()
    tracing.Register(pb.RegisterRequest(app="shop", sources=sources("m.a", "m.b")))
    tracing.Register(pb.RegisterRequest(app="blog", sources=sources("m.a")))
    tracing.Report(report("shop", "i1", 1, {"m.a": 7}))

    listed = cli("apps", "list")
    assert listed.code == 0, listed.err
    assert [line.split()[:4] for line in listed.out.splitlines()] == [
        ["APP", "FUNCTIONS", "COLD", "CALLS"],
        ["blog", "1", "1", "0"],
        ["shop", "2", "1", "7"],
    ]
    as_json = json.loads(cli("apps", "list", "--format", "json").out)
    assert [(a["app"], a["functions"], a["calls"]) for a in as_json] == [("blog", 1, 0), ("shop", 2, 7)]

    deleted = cli("apps", "delete", "shop")
    assert deleted.code == 0, deleted.err
    assert "deleted the app 'shop'" in deleted.err
    assert [a.app for a in server.heatmap().ListApps(pb.ListAppsRequest()).apps] == ["blog"]
    again = cli("apps", "delete", "shop")
    assert again.code == 1
    assert len(again.err.strip().splitlines()) == 1
    assert "Traceback" not in again.err

    monkeypatch.setenv("COLDMOD_API_KEY", "not-the-key")
    refused = cli("apps", "delete", "blog")
    assert refused.code == 1
    assert "refused the credentials" in refused.err
    assert [a.app for a in server.heatmap().ListApps(pb.ListAppsRequest()).apps] == ["blog"]


def test_a_max_apps_out_of_range_is_one_sentence(tmp_path):
    code, stderr = run_server_once(tmp_path / "c.db", INSECURE, "--max-apps", "0")
    assert code == 1
    assert "--max-apps 0 is out of range" in _one_sentence(stderr)
    assert not (tmp_path / "c.db").exists()


def test_coldmod_serve_refuses_a_max_apps_that_is_not_a_number(cli):
    result = cli("serve", "--max-apps", "many")
    assert result.code == 2
    assert "--max-apps 'many' is not a number" in result.err
    assert "Traceback" not in result.err

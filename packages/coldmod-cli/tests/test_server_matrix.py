"""The collector's tested surface at a glance: input x component -> expected outcome (gRPC side).

One TLS + API key collector for the module. Each row of a table below is
one test; the id says what is sent and to which RPC. Rows about the fields
of Report and Register are in test_server_hostile.py (a table too), load in
test_server_load.py, faults in test_server_crash.py and
test_server_recovery.py; this module holds authentication on every RPC and
the inputs that came with this round's RPCs.

| input                                           | component           | expected                         |
|-------------------------------------------------|---------------------|----------------------------------|
| no, wrong, near-miss, prefix, longer, lowercase  | every RPC           | UNAUTHENTICATED, same sentence,  |
| "bearer", 100 KB key                            |                     | nothing changed                  |
| no key                                          | health Check        | SERVING                          |
| fingerprint_only without a fingerprint / with   | Register            | INVALID_ARGUMENT                 |
| sources; a fingerprint that does not match      |                     |                                  |
| bytes that are not a RegisterRequest            | Register            | INVALID_ARGUMENT                 |
| a page_token not issued, page_size 10**9        | ListApps            | INVALID_ARGUMENT / capped page   |
| empty, unknown, control-character app           | DeleteApp, Fetch    | INVALID_ARGUMENT / NOT_FOUND     |
| a delta that would overflow int64               | Report              | OUT_OF_RANGE, batch not applied  |
| a new app beyond --max-apps                     | Register            | RESOURCE_EXHAUSTED               |
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from server_fixtures import (
    API_KEY,
    ServerProcess,
    complete,
    heat,
    make_tls_env,
    report,
    sources,
)

from coldmod_cli.server.auth import UNAUTHENTICATED_MESSAGE
from coldmod_cli.server.limits import MAX_PAGE_SIZE
from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(120)

INVALID = grpc.StatusCode.INVALID_ARGUMENT
MAX_APPS = 5


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One TLS + API key collector with app "shop" (m.a: 5 calls, m.b: 0) and room for MAX_APPS apps."""
    env = make_tls_env(tmp_path_factory.mktemp("tls"))
    server = ServerProcess(tmp_path_factory.mktemp("store") / "c.db", env, ("--max-apps", str(MAX_APPS)))
    assert server.port, server.stderr
    tracing = server.tracing()
    tracing.Register(pb.RegisterRequest(app="shop", sources=sources("m.a", "m.b")))
    tracing.Report(report("shop", "good", 1, {"m.a": 5}))
    yield server
    server.close()


def _unchanged(server: ServerProcess) -> None:
    assert [(k, e.calls) for k, e in sorted(heat(server.heatmap(), "shop").items())] == [("m.a", 5), ("m.b", 0)]


def _stranger(server: ServerProcess) -> grpc.Channel:
    """TLS that trusts the collector, and no key of its own."""
    ca = open(server.env["COLDMOD_TLS_CA"], "rb").read()
    return grpc.secure_channel(server.target, grpc.ssl_channel_credentials(ca))


def _attach(channel: grpc.Channel, metadata: Any) -> Any:
    return complete(pb_grpc.ConnectStub(channel).Attach, iter([pb.CliEvent()]), metadata=metadata, timeout=10)


#: Every RPC a client can make, with a request that would change or reveal something.
RPCS: dict[str, Callable[[grpc.Channel, Any], Any]] = {
    "Register": lambda ch, md: pb_grpc.TracingStub(ch).Register(
        pb.RegisterRequest(app="shop", sources=sources("m.evil")), metadata=md, timeout=10
    ),
    "Report": lambda ch, md: pb_grpc.TracingStub(ch).Report(
        report("shop", "evil", 1, {"m.b": 9}), metadata=md, timeout=10
    ),
    "Fetch": lambda ch, md: complete(
        pb_grpc.HeatmapStub(ch).Fetch, pb.FetchRequest(app="shop"), metadata=md, timeout=10
    ),
    "ListApps": lambda ch, md: pb_grpc.HeatmapStub(ch).ListApps(pb.ListAppsRequest(), metadata=md, timeout=10),
    "Reset": lambda ch, md: pb_grpc.HeatmapStub(ch).Reset(pb.ResetRequest(app="shop"), metadata=md, timeout=10),
    "DeleteApp": lambda ch, md: pb_grpc.HeatmapStub(ch).DeleteApp(
        pb.DeleteAppRequest(app="shop"), metadata=md, timeout=10
    ),
    "Info": lambda ch, md: pb_grpc.HeatmapStub(ch).Info(pb.InfoRequest(), metadata=md, timeout=10),
    "Attach": _attach,
}

#: Credentials that are not the key.
WRONG_CREDENTIALS: dict[str, tuple[tuple[str, str], ...]] = {
    "no key": (),
    "wrong key": (("authorization", "Bearer not-the-key"),),
    "near miss": (("authorization", f"Bearer {API_KEY[:-1]}X"),),
    "prefix": (("authorization", f"Bearer {API_KEY[:5]}"),),
    "longer": (("authorization", f"Bearer {API_KEY}x"),),
    "lowercase bearer": (("authorization", f"bearer {API_KEY}"),),
    "no scheme": (("authorization", API_KEY),),
    "100 KB key": (("authorization", "Bearer " + "k" * 100_000),),
}


@pytest.mark.parametrize("credentials", list(WRONG_CREDENTIALS))
@pytest.mark.parametrize("rpc", list(RPCS))
def test_every_rpc_refuses_every_wrong_credential(collector, rpc, credentials):
    with _stranger(collector) as channel, pytest.raises(grpc.RpcError) as err:
        RPCS[rpc](channel, WRONG_CREDENTIALS[credentials])
    if credentials == "100 KB key":  # beyond gRPC's metadata limit: refused before any handler runs
        assert err.value.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED)
    else:
        assert (err.value.code(), err.value.details()) == (grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
    _unchanged(collector)


def test_health_answers_without_a_key(collector):
    with _stranger(collector) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def _register(**fields: Any) -> pb.RegisterRequest:
    return pb.RegisterRequest(app="shop", **fields)


#: (what is sent, RPC, request) -> the status expected; the store is unchanged after each.
REFUSED: list[tuple[str, str, Any, grpc.StatusCode]] = [
    ("fingerprint_only without fingerprint", "Register", _register(fingerprint_only=True), INVALID),
    (
        "fingerprint_only with sources",
        "Register",
        _register(fingerprint="f" * 32, fingerprint_only=True, sources=sources("m.x")),
        INVALID,
    ),
    ("fingerprint not of the sources", "Register", _register(fingerprint="f" * 32, sources=sources("m.x")), INVALID),
    ("page_token not issued", "ListApps", pb.ListAppsRequest(page_token="%%%"), INVALID),
    ("page_token of a bad name", "ListApps", pb.ListAppsRequest(page_token="Cg=="), INVALID),
    ("DeleteApp of an empty name", "DeleteApp", pb.DeleteAppRequest(app=""), INVALID),
    ("DeleteApp with a control character", "DeleteApp", pb.DeleteAppRequest(app="shop\x1b"), INVALID),
    ("DeleteApp of an unknown app", "DeleteApp", pb.DeleteAppRequest(app="nobody"), grpc.StatusCode.NOT_FOUND),
    ("Fetch of an unknown app", "Fetch", pb.FetchRequest(app="nobody"), grpc.StatusCode.NOT_FOUND),
    (
        "a delta overflowing int64",
        "Report",
        report("shop", "big", 1, {"m.a": 2**62, "m.b": 1}),
        grpc.StatusCode.OUT_OF_RANGE,
    ),
]


def _call(server: ServerProcess, rpc: str, request: Any, timeout: float = 10) -> Any:
    stub = pb_grpc.TracingStub(server.channel()) if rpc in ("Register", "Report") else server.heatmap()
    return complete(getattr(stub, rpc), request, timeout=timeout)


@pytest.mark.parametrize(("name", "rpc", "request_", "code"), REFUSED, ids=[row[0] for row in REFUSED])
def test_this_rounds_inputs_are_refused_with_a_precise_status(collector, name, rpc, request_, code):
    if code == grpc.StatusCode.OUT_OF_RANGE:  # bring m.a near the edge first (its own instance)
        _call(collector, "Report", report("shop", "edge", 1, {"m.a": 2**62}))
        _call(collector, "Report", report("shop", "edge", 2, {"m.a": 2**62 - 10}))
    with pytest.raises(grpc.RpcError) as err:
        _call(collector, rpc, request_)
    assert err.value.code() == code, name
    assert err.value.details(), "every refusal says why"
    entries = heat(collector.heatmap(), "shop")
    assert set(entries) == {"m.a", "m.b"}
    assert entries["m.b"].calls == 0, "no part of a refused batch is applied"
    if code == grpc.StatusCode.OUT_OF_RANGE:
        collector.heatmap().Reset(pb.ResetRequest(app="shop"))
        _call(collector, "Report", report("shop", "good", 2, {"m.a": 5}))
    _unchanged(collector)


def test_garbage_bytes_to_register_are_invalid_argument(collector):
    raw = collector.channel().unary_unary("/coldmod.v1.Tracing/Register")
    with pytest.raises(grpc.RpcError) as err:
        raw(b"\xff\xff\xff\xff garbage", timeout=10)
    assert err.value.code() == INVALID
    _unchanged(collector)


def test_a_huge_page_size_is_capped(collector):
    page = collector.heatmap().ListApps(pb.ListAppsRequest(page_size=10**9), timeout=10)
    assert len(page.apps) <= MAX_PAGE_SIZE
    assert page.total_apps >= 1


def test_new_apps_beyond_max_apps_are_resource_exhausted(collector):
    tracing = collector.tracing()
    names = [f"extra-{n}" for n in range(MAX_APPS)]
    outcomes = []
    for name in names:
        try:
            tracing.Register(pb.RegisterRequest(app=name, sources=sources("m.f")), timeout=10)
            outcomes.append("ok")
        except grpc.RpcError as exc:
            outcomes.append(exc.code().name)
    assert outcomes == ["ok"] * (MAX_APPS - 1) + ["RESOURCE_EXHAUSTED"], "shop plus 4 more fill the 5"
    for name in names[:-1]:
        collector.heatmap().DeleteApp(pb.DeleteAppRequest(app=name), timeout=10)
    _unchanged(collector)

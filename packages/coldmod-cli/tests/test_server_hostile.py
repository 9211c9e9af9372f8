"""Malformed and hostile messages: a precise status each, and the stored data unchanged."""

from __future__ import annotations

import grpc
import pytest
from server_fixtures import (
    complete,
    fetch,
    heat,
    now_ms,
    report,
    sources,
    start_server_fixture,  # noqa: F401 - the start_server fixture
)

from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_trace.config import MAX_MESSAGE_BYTES

pytestmark = pytest.mark.timeout(120)

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def shop(start_server):
    """A collector with app "shop" registered and one batch applied."""
    server = start_server()
    tracing = server.tracing()
    tracing.Register(pb.RegisterRequest(app="shop", sources=sources("m.a", "m.b")))
    tracing.Report(report("shop", "good", 1, {"m.a": 5}))
    return server


def _status(call, request) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        complete(call, request, timeout=30)
    assert err.value.details(), "every refusal says why"
    return err.value.code()


def _unchanged(server) -> None:
    fetched = fetch(server.heatmap(), "shop")
    assert [(e.key, e.calls) for e in fetched.entries] == [("m.a", 5), ("m.b", 0)]
    assert fetched.dropped_unknown == 0
    assert [a.app for a in server.heatmap().ListApps(pb.ListAppsRequest()).apps] == ["shop"]


def _bad(**changes) -> pb.ReportRequest:
    request = report("shop", "evil", 1, {"m.a": 1, "m.b": 1})
    deltas = changes.pop("deltas", None)
    if deltas is not None:
        del request.deltas[:]
        request.deltas.extend(deltas)
    for name, value in changes.items():
        setattr(request, name, value)
    return request


@pytest.mark.parametrize(
    ("name", "request_", "code"),
    [
        ("empty key", _bad(deltas=[pb.KeyDelta(key="", calls=1)]), INVALID),
        ("huge key", _bad(deltas=[pb.KeyDelta(key="m." + "x" * 5000, calls=1)]), INVALID),
        ("control characters", _bad(deltas=[pb.KeyDelta(key="m.a\n", calls=1)]), INVALID),
        ("duplicate keys", _bad(deltas=[pb.KeyDelta(key="m.a", calls=1), pb.KeyDelta(key="m.a", calls=2)]), INVALID),
        ("absurd count", _bad(deltas=[pb.KeyDelta(key="m.a", calls=2**64 - 1)]), INVALID),
        ("absurd dropped_updates", _bad(dropped_updates=2**64 - 1), INVALID),
        ("unknown app", _bad(app="never-registered"), grpc.StatusCode.FAILED_PRECONDITION),
        ("empty app", _bad(app=""), INVALID),
        ("app with newline", _bad(app="shop\n"), INVALID),
        ("huge app", _bad(app="a" * 500), INVALID),
        ("empty instance", _bad(instance_id=""), INVALID),
        ("sequence zero", _bad(sequence=0), INVALID),
        ("sequence beyond int64", _bad(sequence=2**63), INVALID),
        ("window backwards", _bad(window_start_ms=2000, window_end_ms=1000), INVALID),
        ("negative window", _bad(window_start_ms=-5, window_end_ms=1000), INVALID),
        ("window far in the future", _bad(window_end_ms=now_ms() + 10 * 86400_000), INVALID),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_hostile_reports_get_a_precise_status_and_change_nothing(shop, name, request_, code):
    assert _status(shop.tracing().Report, request_) == code, name
    _unchanged(shop)
    # The refused batch id was not consumed: the real batch is still applied.
    sequence = request_.sequence if 1 <= request_.sequence < 2**63 else 1
    fine = report("shop", request_.instance_id or "evil", sequence, {"m.b": 1})
    assert not shop.tracing().Report(fine).duplicate


@pytest.mark.parametrize(
    ("name", "sources_", "code"),
    [
        ("empty key", [pb.TraceSource(key="")], INVALID),
        ("huge key", [pb.TraceSource(key="k" * 2000)], INVALID),
        ("duplicate keys", [pb.TraceSource(key="m.a"), pb.TraceSource(key="m.a")], INVALID),
        ("path with NUL", [pb.TraceSource(key="m.a", path="a\0b")], INVALID),
        ("too many keys", [pb.TraceSource(key=f"k{i}") for i in range(200_001)], grpc.StatusCode.RESOURCE_EXHAUSTED),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_hostile_registers_get_a_precise_status_and_change_nothing(shop, name, sources_, code):
    request = pb.RegisterRequest(app="shop", sources=sources_)
    assert _status(shop.tracing().Register, request) == code, name
    _unchanged(shop)


def test_a_message_over_the_size_limit_is_resource_exhausted(shop):
    big = pb.RegisterRequest(app="shop", sources=[pb.TraceSource(key="m.a", path="p" * 4000)] * 9000)
    assert big.ByteSize() > MAX_MESSAGE_BYTES
    assert _status(shop.tracing().Register, big) == grpc.StatusCode.RESOURCE_EXHAUSTED
    _unchanged(shop)


def test_fetch_and_reset_validate_the_app_name(shop):
    assert _status(shop.heatmap().Fetch, pb.FetchRequest(app="")) == INVALID
    assert _status(shop.heatmap().Reset, pb.ResetRequest(app="x\x00")) == INVALID
    assert _status(shop.heatmap().Reset, pb.ResetRequest(app="nobody")) == grpc.StatusCode.NOT_FOUND
    _unchanged(shop)


def test_a_batch_that_would_overflow_a_count_is_refused_whole(shop):
    tracing = shop.tracing()
    tracing.Report(report("shop", "big", 1, {"m.b": 2**62}))
    tracing.Report(report("shop", "big", 2, {"m.b": 2**62 - 1}))
    for _ in range(2):  # a resend is refused the same way: it was never recorded as applied
        assert _status(tracing.Report, report("shop", "big", 3, {"m.a": 1, "m.b": 1})) == grpc.StatusCode.OUT_OF_RANGE
    entries = heat(shop.heatmap(), "shop")
    assert entries["m.b"].calls == 2**63 - 1
    assert entries["m.a"].calls == 5, "no part of the refused batch was applied"
    assert tracing.Report(report("shop", "big", 4, {"m.a": 1})).duplicate is False


def test_an_empty_batch_is_fine(shop):
    answer = shop.tracing().Report(pb.ReportRequest(app="shop", instance_id="quiet", sequence=1))
    assert (answer.sequence, answer.duplicate, answer.unknown_keys) == (1, False, 0)
    _unchanged(shop)


def test_garbage_bytes_are_refused_without_harm(shop):
    raw = shop.channel().unary_unary("/coldmod.v1.Tracing/Report")
    with pytest.raises(grpc.RpcError) as err:
        raw(b"\xff\xff\xff\xff garbage", timeout=10)
    assert err.value.code() in (grpc.StatusCode.INTERNAL, INVALID)
    _unchanged(shop)

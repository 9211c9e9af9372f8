"""Apps and counts against a real collector, on both stores: limits, paging, delete, Info,
fingerprint-first Register, exact sums, batch windows, lower bounds."""

from __future__ import annotations

import time

import grpc
import pytest
from server_fixtures import (
    STORES,
    complete,
    fetch,
    heat,
    now_ms,
    report,
    sources,
    start_server_fixture,  # noqa: F401 - the start_server fixture
    tls_env_fixture,  # noqa: F401 - the tls_env fixture
)

from coldmod_cli import __version__
from coldmod_cli.server.limits import MAX_KEYS_PER_APP
from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_trace.keys import sources_fingerprint

pytestmark = [pytest.mark.timeout(120), pytest.mark.parametrize("store_kind", STORES, indirect=True)]


def _refused(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        complete(call, request, timeout=10)
    return err.value.code(), err.value.details()


def _print(request_sources) -> str:
    return sources_fingerprint((s.key, s.path, tuple(s.lines)) for s in request_sources)


def test_a_new_app_beyond_max_apps_is_refused_until_one_is_deleted(start_server, tls_env):
    server = start_server(env=tls_env, args=("--max-apps", "3"))
    tracing, heatmap = server.tracing(), server.heatmap()
    for name in ("a", "b", "c"):
        tracing.Register(pb.RegisterRequest(app=name, sources=sources("m.f")))
    code, details = _refused(tracing.Register, pb.RegisterRequest(app="d", sources=sources("m.f")))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "at most 3 apps" in details
    assert "coldmod apps delete" in details
    tracing.Register(pb.RegisterRequest(app="c", sources=sources("m.f", "m.g")))  # a known app still registers
    assert heatmap.DeleteApp(pb.DeleteAppRequest(app="b")).keys == 1
    tracing.Register(pb.RegisterRequest(app="d", sources=sources("m.f")))
    assert [a.app for a in heatmap.ListApps(pb.ListAppsRequest()).apps] == ["a", "c", "d"]
    assert heatmap.Info(pb.InfoRequest()).max_apps == 3


def test_delete_removes_the_app_and_its_counts_and_a_new_register_starts_afresh(start_server):
    server = start_server()
    tracing, heatmap = server.tracing(), server.heatmap()
    tracing.Register(pb.RegisterRequest(app="shop", sources=sources("m.a", "m.b")))
    tracing.Report(report("shop", "i1", 1, {"m.a": 4}))
    tracing.Register(pb.RegisterRequest(app="other", sources=sources("m.a")))
    assert heatmap.DeleteApp(pb.DeleteAppRequest(app="shop")).keys == 2
    assert _refused(heatmap.Fetch, pb.FetchRequest(app="shop"))[0] == grpc.StatusCode.NOT_FOUND
    assert _refused(heatmap.DeleteApp, pb.DeleteAppRequest(app="shop"))[0] == grpc.StatusCode.NOT_FOUND
    assert _refused(heatmap.DeleteApp, pb.DeleteAppRequest(app=""))[0] == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = _refused(tracing.Report, report("shop", "i1", 2, {"m.a": 1}))
    assert code == grpc.StatusCode.FAILED_PRECONDITION, "a deleted app takes no counts until it registers again"
    again = tracing.Register(pb.RegisterRequest(app="shop", sources=sources("m.a")))
    assert (again.kept, again.added) == (0, 1)
    assert heat(heatmap, "shop")["m.a"].calls == 0
    assert [a.app for a in heatmap.ListApps(pb.ListAppsRequest()).apps] == ["other", "shop"]


def test_list_apps_is_paged_with_a_total_and_refuses_foreign_tokens(start_server):
    server = start_server()
    tracing, heatmap = server.tracing(), server.heatmap()
    names = [f"app-{n:02d}" for n in range(7)]
    for name in reversed(names):
        tracing.Register(pb.RegisterRequest(app=name, sources=sources("m.f")))
    seen, token, pages = [], "", 0
    while True:
        page = heatmap.ListApps(pb.ListAppsRequest(page_size=3, page_token=token))
        assert page.total_apps == 7
        assert len(page.apps) <= 3
        seen += [a.app for a in page.apps]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert (seen, pages) == (names, 3)
    assert [a.app for a in heatmap.ListApps(pb.ListAppsRequest()).apps] == names, "page_size 0 is the default"
    for bad in ("not base64 !", "AAAA", "x" * 5000):
        assert _refused(heatmap.ListApps, pb.ListAppsRequest(page_token=bad))[0] == grpc.StatusCode.INVALID_ARGUMENT


def test_list_apps_sums_calls_exactly_as_integers(start_server):
    server = start_server()
    tracing, heatmap = server.tracing(), server.heatmap()
    tracing.Register(pb.RegisterRequest(app="shop", sources=sources("m.a", "m.b", "m.c")))
    tracing.Report(report("shop", "i1", 1, {"m.a": 2**53 + 1, "m.b": 2}))
    (summary,) = heatmap.ListApps(pb.ListAppsRequest()).apps
    assert summary.calls == 2**53 + 3 == sum(e.calls for e in fetch(heatmap, "shop").entries)
    assert (summary.keys, summary.cold_keys) == (3, 1)
    tracing.Report(report("shop", "i1", 2, {"m.a": 2**62, "m.c": 2**62 - 2**53}))
    (summary,) = heatmap.ListApps(pb.ListAppsRequest()).apps
    assert summary.calls == 2**63 - 1, "a sum beyond int64 saturates (documented) rather than wrapping or rounding"


def test_first_and_last_seen_come_from_the_batch_window_bounded_by_the_collectors_clock(start_server):
    server = start_server()
    tracing, heatmap = server.tracing(), server.heatmap()
    tracing.Register(pb.RegisterRequest(app="shop", sources=sources("m.a", "m.b")))
    registered = now_ms()
    time.sleep(0.6)
    # Calls made a while ago (the collector was down), delivered now: their own time, not the arrival time.
    start, end = registered + 100, registered + 200
    tracing.Report(report("shop", "i1", 1, {"m.a": 3}, start=start, end=end))
    entry = heat(heatmap, "shop")["m.a"]
    assert (entry.first_seen_ms, entry.last_seen_ms) == (start, end)
    # A tracer whose clock runs an hour ahead: never later than the collector's now.
    before = now_ms()
    hour = 3600_000
    tracing.Report(report("shop", "i1", 2, {"m.b": 1}, start=now_ms() + hour, end=now_ms() + hour + 1000))
    entry = heat(heatmap, "shop")["m.b"]
    assert before <= entry.first_seen_ms <= entry.last_seen_ms <= now_ms()


def test_lower_bound_counts_are_kept_and_returned(start_server):
    server = start_server()
    tracing, heatmap = server.tracing(), server.heatmap()
    tracing.Register(pb.RegisterRequest(app="shop", sources=sources("m.a", "m.b", "m.c")))
    batch = report("shop", "i1", 1, {"m.a": 10, "m.b": 5})
    batch.deltas[0].lower_bound = True
    tracing.Report(batch)
    tracing.Report(report("shop", "i1", 2, {"m.a": 1, "m.c": 2}))  # an exact delta later: still only ">="
    entries = heat(heatmap, "shop")
    assert [(k, entries[k].calls, entries[k].lower_bound) for k in ("m.a", "m.b", "m.c")] == [
        ("m.a", 11, True),
        ("m.b", 5, False),
        ("m.c", 2, False),
    ]
    heatmap.Reset(pb.ResetRequest(app="shop"))
    assert not heat(heatmap, "shop")["m.a"].lower_bound


def test_fingerprint_first_register(start_server):
    server = start_server()
    tracing = server.tracing()
    full = sources("m.a", "m.b")
    printed = _print(full)

    def probe(fingerprint: str) -> pb.RegisterResponse:
        return tracing.Register(pb.RegisterRequest(app="shop", fingerprint=fingerprint, fingerprint_only=True))

    assert probe(printed).need_sources, "an unknown app needs the set"
    code, details = _refused(tracing.Register, pb.RegisterRequest(app="shop", fingerprint="0" * 32, sources=full))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not match" in details
    assert tracing.Register(pb.RegisterRequest(app="shop", fingerprint=printed, sources=full)).added == 2
    answer = probe(printed)
    assert not answer.need_sources, "the same set again: nothing to send"
    changed = sources("m.a", "m.c")
    assert probe(_print(changed)).need_sources, "another set needs sending"
    result = tracing.Register(pb.RegisterRequest(app="shop", fingerprint=_print(changed), sources=changed))
    assert (result.kept, result.added, result.removed) == (1, 1, 0), "a second version: the first keeps m.b"
    assert not probe(printed).need_sources, "the first version is still known"
    # A tracer that never sends a fingerprint still registers (the collector computes one).
    tracing.Register(pb.RegisterRequest(app="old", sources=full))
    assert not tracing.Register(pb.RegisterRequest(app="old", fingerprint=printed, fingerprint_only=True)).need_sources
    for bad in (
        pb.RegisterRequest(app="shop", fingerprint_only=True),
        pb.RegisterRequest(app="shop", fingerprint=printed, fingerprint_only=True, sources=full),
    ):
        assert _refused(tracing.Register, bad)[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert set(heat(server.heatmap(), "shop")) == {"m.a", "m.b", "m.c"}, "refusals changed nothing"


def test_info_says_version_web_address_store_and_limits(start_server, tls_env, store_kind):
    server = start_server(env=tls_env, args=("--max-apps", "50"))
    for _ in range(100):  # printed just after the gRPC line
        web = [line for line in server.lines if "web UI on" in line]
        if web:
            break
        time.sleep(0.05)
    web_port = int(web[0].rsplit(":", 1)[1])
    info = server.heatmap().Info(pb.InfoRequest(), timeout=10)
    assert info.version == __version__
    assert info.web_url == f"https://127.0.0.1:{web_port}/"
    assert info.store.startswith(store_kind)
    assert "password" not in info.store
    assert info.durability
    assert (info.max_apps, info.max_keys_per_app) == (50, MAX_KEYS_PER_APP)

"""Register, Report, Fetch, ListApps and Reset against a real collector process."""

from __future__ import annotations

import threading

import grpc
import pytest
from server_fixtures import (
    STORES,
    fetch,
    heat,
    now_ms,
    report,
    sources,
    start_server_fixture,  # noqa: F401 - the start_server fixture
)

from coldmod_proto.v1 import coldmod_pb2 as pb

# One suite, both stores: every test runs on SQLite and on a real redis-server.
pytestmark = [pytest.mark.timeout(120), pytest.mark.parametrize("store_kind", STORES, indirect=True)]


def test_another_set_is_another_version_and_takes_nothing_from_the_first(start_server):
    server = start_server()
    tracing, heatmap = server.tracing(), server.heatmap()
    first = tracing.Register(pb.RegisterRequest(app="shop", sources=sources("m.a", "m.b", "m.c")))
    assert (first.kept, first.added, first.removed) == (0, 3, 0)
    tracing.Report(report("shop", "i1", 1, {"m.a": 5, "m.b": 7}))
    before = heat(heatmap, "shop")

    second = tracing.Register(pb.RegisterRequest(app="shop", sources=sources("m.a", "m.c", "m.d")))

    assert (second.kept, second.added, second.removed) == (2, 1, 0)
    after = heat(heatmap, "shop")
    assert set(after) == {"m.a", "m.b", "m.c", "m.d"}  # the union: m.b is still the first version's
    assert (after["m.a"].calls, after["m.b"].calls) == (5, 7)
    assert list(after["m.b"].versions) == [0]
    assert list(after["m.a"].versions) == [0, 1]
    assert list(after["m.d"].versions) == [1]
    assert after["m.a"].tracked_since_ms == before["m.a"].tracked_since_ms
    assert after["m.d"].calls == 0
    assert after["m.d"].tracked_since_ms >= before["m.a"].tracked_since_ms
    assert (after["m.d"].path, list(after["m.d"].lines)) == ("m.py", [1])


def test_registering_the_same_set_again_changes_nothing(start_server):
    server = start_server()
    tracing, heatmap = server.tracing(), server.heatmap()
    tracing.Register(pb.RegisterRequest(app="shop", sources=sources("m.a", "m.b")))
    tracing.Report(report("shop", "i1", 1, {"m.a": 2}))

    again = tracing.Register(pb.RegisterRequest(app="shop", sources=sources("m.b", "m.a")))

    assert (again.kept, again.added, again.removed) == (2, 0, 0)
    assert heat(heatmap, "shop")["m.a"].calls == 2


def test_report_adds_counts_and_keeps_the_window(start_server):
    server = start_server()
    tracing, heatmap = server.tracing(), server.heatmap()
    tracing.Register(pb.RegisterRequest(app="shop", sources=sources("m.a", "m.b")))
    t = now_ms()

    tracing.Report(report("shop", "i1", 1, {"m.a": 3}, start=t - 5000, end=t - 4000))
    tracing.Report(report("shop", "i1", 2, {"m.a": 4}, start=t - 2000, end=t - 1000))
    tracing.Report(report("shop", "i2", 1, {"m.a": 1}, estimated=True, start=t - 3000, end=t - 2500))
    tracing.Report(report("shop", "i1", 3, {"m.a": 1}, start=t - 1000, end=t))

    entry = heat(heatmap, "shop")["m.a"]
    assert entry.calls == 9
    assert entry.estimated, "one estimated delta marks the count estimated for good"
    tracked = entry.tracked_since_ms
    assert entry.first_seen_ms == max(t - 5000, tracked)
    assert entry.last_seen_ms == t
    cold = heat(heatmap, "shop")["m.b"]
    assert (cold.calls, cold.first_seen_ms, cold.last_seen_ms) == (0, 0, 0)


def test_a_resent_batch_is_applied_once(start_server):
    server = start_server()
    tracing, heatmap = server.tracing(), server.heatmap()
    tracing.Register(pb.RegisterRequest(app="shop", sources=sources("m.a")))
    batch = report("shop", "i1", 1, {"m.a": 10, "gone.key": 1})

    answers = [tracing.Report(batch) for _ in range(5)]

    assert [a.duplicate for a in answers] == [False, True, True, True, True]
    assert {a.unknown_keys for a in answers} == {1}, "a resend gets the first answer"
    fetched = fetch(heatmap, "shop")
    assert fetched.entries[0].calls == 10
    assert fetched.dropped_unknown == 1


def test_concurrent_resends_of_one_batch_apply_once(start_server):
    server = start_server()
    tracing, heatmap = server.tracing(), server.heatmap()
    tracing.Register(pb.RegisterRequest(app="shop", sources=sources("m.a")))
    batch = report("shop", "i1", 1, {"m.a": 1})
    answers: list[pb.ReportResponse] = []
    threads = [threading.Thread(target=lambda: answers.append(tracing.Report(batch))) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(not a.duplicate for a in answers) == 1
    assert heat(heatmap, "shop")["m.a"].calls == 1


def test_unknown_keys_are_dropped_and_counted_per_app(start_server):
    server = start_server()
    tracing, heatmap = server.tracing(), server.heatmap()
    tracing.Register(pb.RegisterRequest(app="shop", sources=sources("m.a")))
    tracing.Register(pb.RegisterRequest(app="blog", sources=sources("m.a")))

    answer = tracing.Report(report("shop", "i1", 1, {"m.a": 1, "m.x": 4, "m.y": 1}))

    assert answer.unknown_keys == 2
    shop = fetch(heatmap, "shop")
    assert shop.dropped_unknown == 2
    assert [e.key for e in shop.entries] == ["m.a"]
    assert fetch(heatmap, "blog").dropped_unknown == 0


def test_dropped_updates_are_summed_once(start_server):
    server = start_server()
    tracing, heatmap = server.tracing(), server.heatmap()
    tracing.Register(pb.RegisterRequest(app="shop", sources=sources("m.a")))
    batch = report("shop", "i1", 1, {"m.a": 1})
    batch.dropped_updates = 7
    tracing.Report(batch)
    tracing.Report(batch)
    assert fetch(heatmap, "shop").dropped_updates == 7


def test_apps_are_separate_and_listed(start_server):
    server = start_server()
    tracing, heatmap = server.tracing(), server.heatmap()
    tracing.Register(pb.RegisterRequest(app="shop", sources=sources("m.a", "m.b")))
    tracing.Register(pb.RegisterRequest(app="blog", sources=sources("m.a")))
    tracing.Report(report("shop", "i1", 1, {"m.a": 2}))
    tracing.Report(report("blog", "i2", 1, {"m.a": 5}))

    apps = {a.app: a for a in heatmap.ListApps(pb.ListAppsRequest()).apps}

    assert (apps["shop"].keys, apps["shop"].cold_keys, apps["shop"].calls) == (2, 1, 2)
    assert (apps["blog"].keys, apps["blog"].cold_keys, apps["blog"].calls) == (1, 0, 5)
    assert heat(heatmap, "shop")["m.a"].calls == 2


def test_fetch_of_an_unknown_app_is_not_found(start_server):
    heatmap = start_server().heatmap()
    with pytest.raises(grpc.RpcError) as err:
        fetch(heatmap, "nobody")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_reset_zeroes_counts_and_keeps_keys(start_server):
    server = start_server()
    tracing, heatmap = server.tracing(), server.heatmap()
    tracing.Register(pb.RegisterRequest(app="shop", sources=sources("m.a", "m.b")))
    tracing.Report(report("shop", "i1", 1, {"m.a": 2, "m.x": 1}, estimated=True))
    before = now_ms()

    # Insecure mode: Reset is allowed from this machine (loopback) only.
    assert heatmap.Reset(pb.ResetRequest(app="shop")).keys == 2

    fetched = fetch(heatmap, "shop")
    assert [(e.key, e.calls, e.estimated, e.first_seen_ms) for e in fetched.entries] == [
        ("m.a", 0, False, 0),
        ("m.b", 0, False, 0),
    ]
    assert all(e.tracked_since_ms >= before for e in fetched.entries)
    assert fetched.dropped_unknown == 0
    # Batch ids survive a reset: an old resend does not come back.
    assert tracing.Report(report("shop", "i1", 1, {"m.a": 2})).duplicate


def test_counts_survive_a_restart(start_server, tmp_path):
    first = start_server()
    first.tracing().Register(pb.RegisterRequest(app="shop", sources=sources("m.a")))
    first.tracing().Report(report("shop", "i1", 1, {"m.a": 3}))
    assert first.terminate()[0] == 0

    second = start_server()

    assert heat(second.heatmap(), "shop")["m.a"].calls == 3
    assert second.tracing().Report(report("shop", "i1", 1, {"m.a": 3})).duplicate


def test_sigterm_acknowledges_in_flight_batches_and_exits_0(start_server):
    server = start_server()
    tracing = server.tracing()
    keys = [f"m.k{i}" for i in range(2000)]
    tracing.Register(pb.RegisterRequest(app="shop", sources=sources(*keys)))
    acked: list[int] = []
    unanswered: list[pb.ReportRequest] = []
    errors: list[grpc.StatusCode] = []

    def send(instance: str) -> None:
        seq = 0
        while True:
            seq += 1
            batch = report("shop", instance, seq, dict.fromkeys(keys, 1))
            try:
                tracing.Report(batch, timeout=10)
                acked.append(1)
            except grpc.RpcError as exc:
                errors.append(exc.code())
                unanswered.append(batch)
                return

    senders = [threading.Thread(target=send, args=(f"i{n}",)) for n in range(8)]
    for t in senders:
        t.start()
    while len(acked) < 20:
        threading.Event().wait(0.01)
    code, seconds = server.terminate()
    for t in senders:
        t.join()

    assert code == 0, server.stderr
    assert seconds < 5
    assert "coldmod: stopped" in server.stderr
    # Calls that arrive while it stops are refused (UNAVAILABLE) or dropped unstarted (CANCELLED).
    assert set(errors) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
    restarted = start_server()
    for batch in unanswered:  # a tracer resends what was not acknowledged
        restarted.tracing().Report(batch)
    total = sum(e.calls for e in heat(restarted.heatmap(), "shop").values())
    assert total == (len(acked) + len(unanswered)) * len(keys), "every batch counted exactly once"

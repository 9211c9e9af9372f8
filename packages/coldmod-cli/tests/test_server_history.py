"""Versions side by side, retirement, [ignore] across versions and per-day history (issue 17).

Time is the tests' own: the collector runs in this process with an injected
clock (``Clock``), on a real gRPC server with TLS and an API key over a real
SQLite file or a real redis-server, and ``Store.retire`` is called with the same clock — nothing
here sleeps. ``HISTORY_STORES`` names the stores these semantics are checked
on.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from server_fixtures import (  # noqa: F401 - the tls_env fixture
    API_KEY,
    STORES,
    ServerProcess,
    fetch,
    now_ms,
    tls_env_fixture,
)

from coldmod_cli.client import merge_fetch
from coldmod_cli.server import open_store
from coldmod_cli.server.auth import ApiKeyInterceptor
from coldmod_cli.server.service import HeatmapService, TracingService
from coldmod_cli.server.sqlite_store import SqliteStore
from coldmod_cli.server.store import DAY_MS, Batch, Source, Store, Version
from coldmod_cli.server.store_copy import copy
from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc
from coldmod_trace.config import client_channel, client_config
from coldmod_trace.keys import sources_fingerprint

pytestmark = pytest.mark.timeout(180)

#: The stores the version and history semantics are checked on: both (Redis where redis-server is installed).
HISTORY_STORES = STORES
EVERY_STORE = pytest.mark.parametrize("store_kind", HISTORY_STORES, indirect=True)

#: 2026-03-31 (a quarter-end) at 00:00 UTC, in days and milliseconds.
DAY = 20543
MIDNIGHT = DAY * DAY_MS
FIXTURE = Path(__file__).parent / "fixtures" / "store_schema2.db"


class Clock:
    """The collector's clock, moved by the test."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@dataclass
class Collector:
    """A real gRPC collector (TLS + API key) in this process, on the store, with the test's clock."""

    store: Store
    clock: Clock
    tracing: pb_grpc.TracingStub
    heatmap: pb_grpc.HeatmapStub

    def fetch(self, app: str, quiet_days: int = 0) -> pb.FetchResponse:
        return merge_fetch(self.heatmap.Fetch(pb.FetchRequest(app=app, quiet_days=quiet_days), timeout=30))

    def entries(self, app: str, quiet_days: int = 0) -> dict[str, pb.HeatmapEntry]:
        return {e.key: e for e in self.fetch(app, quiet_days).entries}


@contextmanager
def clocked_collector(store: Store, tls_env: dict[str, str], clock: Clock) -> Iterator[Collector]:
    """Serve ``store`` over TLS with the API key, the services on ``clock``."""
    server = grpc.server(ThreadPoolExecutor(max_workers=16), interceptors=[ApiKeyInterceptor(API_KEY)])
    pb_grpc.add_TracingServicer_to_server(TracingService(store, clock), server)
    pb_grpc.add_HeatmapServicer_to_server(
        HeatmapService(store, insecure=False, max_apps=100, now_ms=clock, retire_after_ms=30 * DAY_MS), server
    )
    key = Path(tls_env["COLDMOD_TLS_KEY"]).read_bytes()
    chain = Path(tls_env["COLDMOD_TLS_CERT"]).read_bytes()
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, chain)]))
    server.start()
    channel = client_channel(client_config(f"127.0.0.1:{port}", env=tls_env))
    try:
        yield Collector(store, clock, pb_grpc.TracingStub(channel), pb_grpc.HeatmapStub(channel))
    finally:
        channel.close()
        server.stop(None).wait()


@pytest.fixture
def collector(store_url, tls_env) -> Iterator[Collector]:
    store = open_store(store_url)
    try:
        with clocked_collector(store, tls_env, Clock(MIDNIGHT + 12 * 3600 * 1000)) as served:
            yield served
    finally:
        store.close()


def _sources(*keys: str) -> list[pb.TraceSource]:
    return [pb.TraceSource(key=k, path=k.split(":")[0].replace(".", "/") + ".py", lines=[1]) for k in keys]


def _print(sources: list[pb.TraceSource]) -> str:
    return sources_fingerprint((s.key, s.path, tuple(s.lines)) for s in sources)


def _register(collector: Collector, app: str, keys: tuple[str, ...], label: str, instance: str, **extra) -> str:
    """Register as a tracer does: the fingerprint first, the whole set only when asked."""
    sent = _sources(*keys)
    printed = _print(sent)
    process = pb.ProcessIdentity(instance_id=instance)
    probe = collector.tracing.Register(
        pb.RegisterRequest(app=app, process=process, fingerprint=printed, fingerprint_only=True, version=label)
    )
    if probe.need_sources:
        collector.tracing.Register(
            pb.RegisterRequest(app=app, process=process, fingerprint=printed, sources=sent, version=label, **extra)
        )
    return printed


def _report(
    collector: Collector, app: str, instance: str, seq: int, calls: dict[str, int], start: int, end: int, fp: str
) -> pb.ReportResponse:
    return collector.tracing.Report(
        pb.ReportRequest(
            app=app,
            instance_id=instance,
            sequence=seq,
            window_start_ms=start,
            window_end_ms=end,
            deltas=[pb.KeyDelta(key=k, calls=n) for k, n in calls.items()],
            fingerprint=fp,
        )
    )


def _labels(response: pb.FetchResponse, entry: pb.HeatmapEntry) -> list[str]:
    return [response.versions[i].label for i in entry.versions]


# ----------------------------------------------------------------- versions --


@EVERY_STORE
def test_two_versions_side_by_side_and_an_old_restart_drop_nothing(collector):
    old_keys, new_keys = ("shop:shared", "shop:old_only"), ("shop:shared", "shop:new_only")
    expected = {"shop:shared": 0, "shop:old_only": 0, "shop:new_only": 0}
    fps = {"v1": _register(collector, "shop", old_keys, "v1", "old-1")}
    rng = random.Random(17)
    seq = {"old-1": 0, "new-1": 0, "old-2": 0}
    for step in range(60):
        if step == 10:  # the rollout starts: the new version registers
            fps["v2"] = _register(collector, "shop", new_keys, "v2", "new-1")
        if step == 30:  # a lagging worker of the old version restarts after the new one
            assert _register(collector, "shop", old_keys, "v1", "old-2") == fps["v1"]
        live = ["old-1"] + (["new-1"] if step >= 10 else []) + (["old-2"] if step >= 30 else [])
        instance = rng.choice(live)
        keys = new_keys if instance.startswith("new") else old_keys
        calls = {k: rng.randint(1, 50) for k in keys}
        seq[instance] += 1
        collector.clock.ms += 1000
        now = collector.clock.ms
        fp = fps["v2" if instance.startswith("new") else "v1"]
        answer = _report(collector, "shop", instance, seq[instance], calls, now - 900, now - 100, fp)
        assert answer.unknown_keys == 0, f"step {step}: a batch was dropped as unknown"
        for k, n in calls.items():
            expected[k] += n

    response = collector.fetch("shop")
    got = {e.key: e for e in response.entries}
    assert {k: e.calls for k, e in got.items()} == expected, "every count exact, nothing untracked"
    assert response.dropped_unknown == 0
    assert _labels(response, got["shop:shared"]) == ["v1", "v2"]
    assert _labels(response, got["shop:old_only"]) == ["v1"]
    assert _labels(response, got["shop:new_only"]) == ["v2"]
    assert [(v.label, v.keys) for v in response.versions] == [("v1", 2), ("v2", 2)]
    assert response.now_ms == collector.clock.ms
    assert response.retire_after_ms == 30 * DAY_MS
    # Every call today: the history agrees with the totals.
    assert all(e.calls_7d == e.calls == e.calls_90d for e in got.values())


@EVERY_STORE
def test_a_version_silent_for_the_retention_is_retired_its_own_keys_leave_shared_ones_stay(collector):
    fp1 = _register(collector, "shop", ("shop:shared", "shop:gone"), "v1", "a")
    now = collector.clock.ms
    _report(collector, "shop", "a", 1, {"shop:shared": 5, "shop:gone": 3}, now - 500, now, fp1)
    collector.clock.ms += 2 * DAY_MS
    fp2 = _register(collector, "shop", ("shop:shared", "shop:new"), "v2", "b")
    now = collector.clock.ms
    _report(collector, "shop", "b", 1, {"shop:shared": 7, "shop:new": 1}, now - 500, now, fp2)

    # v1 was last seen 2 days before v2; at 30 days after v1's last sign of life, minus a millisecond, both live.
    v1_last = collector.fetch("shop").versions[0].last_seen_ms
    assert collector.store.retire(v1_last + 30 * DAY_MS, 30 * DAY_MS) == {}
    collector.clock.ms = v1_last + 30 * DAY_MS + 1
    retired = collector.store.retire(collector.clock.ms, 30 * DAY_MS)

    assert [(v.label, v.fingerprint, v.keys) for v in retired["shop"]] == [("v1", fp1, 2)]
    response = collector.fetch("shop")
    got = {e.key: e for e in response.entries}
    assert set(got) == {"shop:shared", "shop:new"}, "v1's own key left with it"
    assert got["shop:shared"].calls == 12, "the shared key keeps its count"
    assert (list(got["shop:shared"].days), list(got["shop:shared"].day_calls)) == ([], [])
    history = collector.store.history("shop", ["shop:shared", "shop:gone"])
    assert history == {"shop:shared": ((DAY, DAY + 2), (5, 7))}, "and its history; the gone key has none"
    assert [v.label for v in response.versions] == ["v2"]
    assert list(got["shop:shared"].versions) == [0]
    # A batch of the retired version now counts as unknown for its own key, and still lands for the shared one.
    now = collector.clock.ms
    answer = _report(collector, "shop", "a", 2, {"shop:shared": 1, "shop:gone": 1}, now - 500, now, fp1)
    assert answer.unknown_keys == 1
    # The newest version is never retired: an app whose fleet stopped keeps its heatmap.
    collector.clock.ms += 400 * DAY_MS
    assert collector.store.retire(collector.clock.ms, 30 * DAY_MS) == {}
    assert {e.key for e in collector.fetch("shop").entries} == {"shop:shared", "shop:new"}


@EVERY_STORE
def test_a_restarting_version_is_refreshed_by_its_fingerprint_alone_and_not_retired(collector):
    fp1 = _register(collector, "shop", ("shop:a",), "v1", "a")
    _register(collector, "shop", ("shop:b",), "v2", "b")
    for _ in range(3):  # v1's processes keep restarting every 20 days: fingerprint-only Registers
        collector.clock.ms += 20 * DAY_MS
        probe = collector.tracing.Register(
            pb.RegisterRequest(app="shop", fingerprint=fp1, fingerprint_only=True, version="v1.1")
        )
        assert not probe.need_sources
        collector.store.retire(collector.clock.ms, 30 * DAY_MS)
    response = collector.fetch("shop")
    assert [v.label for v in response.versions] == ["v1.1"], "v2 (silent 60 days) retired; v1 kept, label refreshed"
    assert response.versions[0].last_seen_ms == collector.clock.ms


@EVERY_STORE
def test_ignore_rules_of_a_register_remove_keys_from_every_version(collector):
    fp1 = _register(collector, "shop", ("shop:keep", "shop:noisy", "shop.tests.t:case"), "v1", "a")
    now = collector.clock.ms
    _report(collector, "shop", "a", 1, {"shop:noisy": 4, "shop.tests.t:case": 2}, now - 500, now, fp1)
    collector.clock.ms += 1000
    _register(
        collector,
        "shop",
        ("shop:keep", "shop:v2"),
        "v2",
        "b",
        ignore_keys=["shop:noisy"],
        ignore_files=["shop/tests/**"],
    )
    response = collector.fetch("shop")
    assert {e.key for e in response.entries} == {"shop:keep", "shop:v2"}
    assert [(v.label, v.keys) for v in response.versions] == [("v1", 1), ("v2", 2)]
    assert collector.store.history("shop", ["shop:noisy"]) == {}
    now = collector.clock.ms
    assert _report(collector, "shop", "a", 2, {"shop:noisy": 1}, now - 500, now, fp1).unknown_keys == 1
    # v1 restarting (its set is known) does not bring the ignored keys back.
    assert _register(collector, "shop", ("shop:keep", "shop:noisy", "shop.tests.t:case"), "v1", "c") == fp1
    assert {e.key for e in collector.fetch("shop").entries} == {"shop:keep", "shop:v2"}


def test_the_fingerprintless_version_replaces_its_set_and_keeps_what_others_have(tmp_path):
    store = SqliteStore(tmp_path / "s.db")
    try:
        store.register("shop", [Source("a"), Source("b")], 1000, "fp-1")
        store.register("shop", [Source("b"), Source("c")], 2000)  # fingerprint "": a version of its own
        result = store.register("shop", [Source("d")], 3000)  # "" again: its set is replaced
        assert (result.kept, result.added, result.removed) == (0, 1, 1)  # c left; b stays with fp-1
        heatmap = store.fetch("shop", now_ms=3000)
        assert [(e.key, e.versions) for e in heatmap.entries] == [("a", (0,)), ("b", (0,)), ("d", (1,))]
        assert heatmap.versions == [Version("fp-1", "", 1000, 1000, 2), Version("", "", 2000, 3000, 1)]
        assert store.fingerprint("shop") == ""
        assert store.knows_version("shop", "fp-1")
        assert not store.knows_version("shop", "fp-2")
    finally:
        store.close()


def test_reports_without_a_fingerprint_refresh_the_version_their_instance_registered(tmp_path):
    store = SqliteStore(tmp_path / "s.db")
    try:
        store.register("shop", [Source("a")], 1000, "fp-1", instance_id="old-tracer")
        store.register("shop", [Source("b")], 2000, "fp-2", instance_id="new-tracer")
        store.report(Batch("shop", "old-tracer", 1, 5000, 6000, ["a"], [1], [False]))  # an older tracer: no print
        store.report(Batch("shop", "new-tracer", 1, 5000, 7000, ["b"], [1], [False], fingerprint="fp-2"))
        assert [v.last_seen_ms for v in store.fetch("shop", now_ms=8000).versions] == [6000, 7000]
        assert store.retire(6000 + 30 * DAY_MS + 1, 30 * DAY_MS)["shop"][0].fingerprint == "fp-1"
    finally:
        store.close()


# ------------------------------------------------------------------ history --


@EVERY_STORE
def test_calls_on_either_side_of_a_utc_midnight_land_in_their_days(collector):
    fp = _register(collector, "shop", ("shop:f", "shop:g"), "v1", "a")
    collector.clock.ms = MIDNIGHT + DAY_MS + 5000  # just after the next midnight
    before = MIDNIGHT + DAY_MS
    # The sender closes its window at midnight: one batch ends a millisecond before, the next starts on it.
    _report(collector, "shop", "a", 1, {"shop:f": 3, "shop:g": 1}, before - 4000, before - 1, fp)
    _report(collector, "shop", "a", 2, {"shop:f": 5}, before, before + 4000, fp)
    assert collector.store.history("shop", ["shop:f", "shop:g", "shop:nope"]) == {
        "shop:f": ((DAY, DAY + 1), (3, 5)),
        "shop:g": ((DAY,), (1,)),
    }
    got = collector.entries("shop", quiet_days=1)
    assert (got["shop:f"].calls_7d, list(got["shop:f"].days)) == (8, []), "called today: not quiet"
    assert (list(got["shop:g"].days), list(got["shop:g"].day_calls)) == ([DAY], [1]), "quiet today: its days"
    # The collector's clock bounds a window from the future: it lands today, not tomorrow.
    _report(collector, "shop", "a", 3, {"shop:g": 2}, before + DAY_MS + 10, before + DAY_MS + 20, fp)
    assert collector.store.history("shop", ["shop:g"])["shop:g"] == ((DAY, DAY + 1), (1, 2))


def _brute(days: dict[int, int], today: int, window: int) -> int:
    return sum(n for d, n in days.items() if today - window < d <= today)


@EVERY_STORE
def test_calls_7d_30d_90d_are_exact_at_day_boundaries(collector):
    fp = _register(collector, "shop", ("shop:f",), "v1", "a")
    today = DAY + 200
    marks = {0: 1, 6: 10, 7: 100, 29: 1_000, 30: 10_000, 89: 100_000, 90: 1_000_000}  # days ago -> calls
    collector.clock.ms = (today + 1) * DAY_MS
    for seq, (ago, calls) in enumerate(sorted(marks.items()), start=1):
        start = (today - ago) * DAY_MS
        _report(collector, "shop", "a", seq, {"shop:f": calls}, start, start + DAY_MS - 1, fp)
    for now in (today * DAY_MS, (today + 1) * DAY_MS - 1):  # the first and the last millisecond of the day
        collector.clock.ms = now
        f = collector.entries("shop")["shop:f"]
        assert (f.calls_7d, f.calls_30d, f.calls_90d) == (11, 1_111, 111_111)
    collector.clock.ms = (today + 1) * DAY_MS  # the next day: today-6 leaves the 7 days, and so on
    f = collector.entries("shop")["shop:f"]
    assert (f.calls_7d, f.calls_30d, f.calls_90d) == (1, 111, 11_111)


@EVERY_STORE
def test_kept_sums_agree_with_the_days_whatever_the_clock_and_late_batches(store_url):
    """Random history, retire (which moves the kept sums) on some days, Fetch on every day and in the past."""
    rng = random.Random(1717)
    store = open_store(store_url)
    try:
        store.register("shop", [Source(f"k{i}") for i in range(6)], DAY * DAY_MS, "fp")
        days: dict[str, dict[int, int]] = {f"k{i}": {} for i in range(6)}
        seq = 0
        for today in range(DAY, DAY + 130):
            for _ in range(rng.randint(0, 3)):
                key = f"k{rng.randrange(6)}"
                day = today - rng.choice([0, 0, 0, 1, 2, 9, 40])  # mostly today, some late batches
                calls = rng.randint(1, 9)
                seq += 1
                start = day * DAY_MS + rng.randrange(DAY_MS - 10)
                store.report(Batch("shop", "i", seq, start, start + 5, [key], [calls], [False], fingerprint="fp"))
                days[key][day] = days[key].get(day, 0) + calls
            if rng.random() < 0.6:
                store.retire(today * DAY_MS + rng.randrange(DAY_MS), 10_000 * DAY_MS)
            for asked in (today, today - rng.randrange(1, 120), today + rng.randrange(1, 12)):
                got = {
                    e.key: (e.calls_7d, e.calls_30d, e.calls_90d)
                    for e in store.fetch("shop", now_ms=asked * DAY_MS).entries
                }
                want = {k: tuple(_brute(d, asked, w) for w in (7, 30, 90)) for k, d in days.items()}
                assert got == want, f"day {today - DAY}, asked {asked - DAY}"
        full = store.fetch("shop", now_ms=(DAY + 129) * DAY_MS, all_history=True)
        assert {e.key: dict(zip(e.days, e.day_calls, strict=True)) for e in full.entries} == days
    finally:
        store.close()


def test_history_older_than_400_days_is_pruned_and_reset_clears_it(tmp_path):
    store = SqliteStore(tmp_path / "s.db")
    try:
        store.register("shop", [Source("a")], DAY * DAY_MS, "fp")
        for seq, day in enumerate((DAY, DAY + 1, DAY + 2), start=1):
            store.report(Batch("shop", "i", seq, day * DAY_MS, day * DAY_MS + 1, ["a"], [seq], [False]))
        store.retire((DAY + 401) * DAY_MS, 30 * DAY_MS)
        assert store.history("shop", ["a"]) == {"a": ((DAY + 1, DAY + 2), (2, 3))}
        store.reset("shop", (DAY + 401) * DAY_MS)
        assert store.history("shop", ["a"]) == {"a": ((), ())}
        assert store.fetch("shop", now_ms=(DAY + 2) * DAY_MS).entries[0].calls_90d == 0
    finally:
        store.close()


# ------------------------------------------------------------ upgrade, copy --


def test_a_schema2_store_upgrades_with_nothing_lost(tmp_path):
    path = tmp_path / "old.db"
    shutil.copy(FIXTURE, path)
    old = sqlite3.connect(path)
    assert old.execute("PRAGMA user_version").fetchone() == (2,)
    apps_before = old.execute("SELECT * FROM apps ORDER BY id").fetchall()
    counts_before = old.execute(
        "SELECT a.name, k.key, k.path, k.lines, c.calls, c.estimated, c.first_seen_ms, c.last_seen_ms,"
        " c.tracked_since_ms, c.lower_bound FROM keys k JOIN counts c ON c.id = k.id JOIN apps a ON a.id = k.app_id"
        " ORDER BY a.name, k.key"
    ).fetchall()
    batches_before = old.execute("SELECT * FROM batches ORDER BY instance_id, sequence").fetchall()
    old.close()
    # What the fixture holds, written out: the upgrade must keep exactly this.
    assert [r[:4] for r in counts_before[:4]] == [
        ("billing", "b:idle", "b.py", "7"),
        ("billing", "b:run", "b.py", "1"),
        ("idle", "idle:f", "idle.py", "2"),
        ("shop", "shop.cart:add", "shop/cart.py", "3"),
    ]
    shop = {r[1]: r[4:] for r in counts_before if r[0] == "shop"}
    assert shop == {
        "shop.cart:add": (12, 1, 1_780_000_100_000, 1_780_086_460_000, 1_780_000_000_000, 0),
        "shop.cart:remove": (3, 0, 1_780_086_400_000, 1_780_086_460_000, 1_780_000_000_000, 0),
        "shop.pay:charge": (9_000_000_000_002, 0, 1_780_000_100_000, 1_780_090_030_000, 1_780_000_000_000, 1),
        "shop.pay:refund": (0, 0, 0, 0, 1_780_000_000_000, 0),
    }

    store = SqliteStore(path)
    try:
        now = 1_797_000_000_000  # after the fixture was written (its updated_ms)
        upgraded = {name: store.fetch(name, now_ms=now) for name in ("billing", "idle", "shop")}
        after = sorted(
            (name, e.key, e.path, ",".join(map(str, e.lines)), e.calls, int(e.estimated), e.first_seen_ms,
             e.last_seen_ms, e.tracked_since_ms, int(e.lower_bound))
            for name, heatmap in upgraded.items()
            for e in heatmap.entries
        )  # fmt: skip
        assert after == counts_before, "every count, flag, timestamp, path and line kept"
        by_id = {a[1]: a for a in apps_before}
        for name, heatmap in upgraded.items():
            _, _, fingerprint, registered, updated, unknown, dropped = by_id[name]
            assert (heatmap.registered_ms, heatmap.dropped_unknown, heatmap.dropped_updates) == (
                registered,
                unknown,
                dropped,
            )
            # The stored set became the app's one version, every key a member of it.
            assert heatmap.versions == [
                Version(fingerprint, "", registered, max(registered, updated), len(heatmap.entries))
            ]
            assert {e.versions for e in heatmap.entries} == {(0,)}
            assert store.knows_version(name, fingerprint)
            assert all((e.calls_90d, e.days) == (0, ()) for e in heatmap.entries), "history starts at the upgrade"
        assert {(a.app, a.keys, a.calls) for a in store.list_apps()} == {
            ("billing", 2, 2),
            ("idle", 1, 0),
            ("shop", 4, 9_000_000_000_017),
        }
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA user_version").fetchone() == (3,)
        assert db.execute("SELECT * FROM batches ORDER BY instance_id, sequence").fetchall() == batches_before
        db.close()
        # The upgraded store takes Reports on its version, into the history.
        day = now // DAY_MS
        store.report(Batch("shop", "i9", 1, now - 10, now, ["shop.pay:refund"], [4], [False], fingerprint="fp-shop-1"))
        refund = {e.key: e for e in store.fetch("shop", now_ms=now).entries}["shop.pay:refund"]
        assert (refund.calls, refund.calls_7d) == (4, 4)
        assert store.history("shop", ["shop.pay:refund"]) == {"shop.pay:refund": ((day,), (4,))}
        assert store.fetch("shop", now_ms=now).versions[0].last_seen_ms == now
    finally:
        store.close()


def test_store_copy_carries_versions_and_history_exactly_and_twice_is_once(tmp_path):
    src_path, dst_path = tmp_path / "src.db", tmp_path / "dst.db"
    src = SqliteStore(src_path)
    try:
        src.register(
            "shop", [Source("a", "a.py", (1,)), Source("s", "s.py", (2, 5))], DAY * DAY_MS, "fp-1", version="v1"
        )
        src.register("shop", [Source("s", "s.py", (2, 5)), Source("b")], (DAY + 1) * DAY_MS, "fp-2", version="v2")
        for seq, (key, day, calls) in enumerate([("a", DAY, 3), ("s", DAY, 1), ("s", DAY + 3, 2), ("b", DAY + 9, 7)]):
            start = day * DAY_MS + 60_000
            src.report(Batch("shop", "i", seq + 1, start, start + 5, [key], [calls], [False], fingerprint="fp-1"))
        src.register("other", [Source("x")], DAY * DAY_MS)
        now = (DAY + 10) * DAY_MS
        before = {name: src.fetch(name, now_ms=now, all_history=True) for name in ("shop", "other")}
    finally:
        src.close()
    for _ in range(2):
        copied = copy(f"sqlite://{src_path}", f"sqlite://{dst_path}")
        assert [(c.app, c.keys, c.calls) for c in copied] == [("other", 1, 0), ("shop", 3, 13)]
        dst = SqliteStore(dst_path)
        try:
            for name, heatmap in before.items():
                again = dst.fetch(name, now_ms=now, all_history=True)
                assert again.entries == heatmap.entries
                assert again.versions == heatmap.versions
                assert (again.registered_ms, again.dropped_unknown, again.dropped_updates) == (
                    heatmap.registered_ms,
                    heatmap.dropped_unknown,
                    heatmap.dropped_updates,
                )
            assert dst.fingerprint("shop") == "fp-2"
            assert dst.knows_version("shop", "fp-1")
        finally:
            dst.close()
    shop = {e.key: e for e in before["shop"].entries}
    assert (shop["s"].days, shop["s"].day_calls, shop["s"].versions) == ((DAY, DAY + 3), (1, 2), (0, 1))
    assert shop["b"].calls_7d == 7


def test_the_collector_retires_silent_versions_when_it_starts(tmp_path, tls_env):
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    now = now_ms()
    store.register("shop", [Source("shop:old"), Source("shop:both")], now - 3 * DAY_MS, "fp-old", version="v1")
    store.register("shop", [Source("shop:new"), Source("shop:both")], now - 1000, "fp-new", version="v2")
    store.close()
    server = ServerProcess(path, tls_env, ("--retire-after", "2d"))
    try:
        assert server.port, server.stderr
        response = fetch(server.heatmap(), "shop")
        assert {e.key for e in response.entries} == {"shop:both", "shop:new"}
        assert [v.label for v in response.versions] == ["v2"]
        assert response.retire_after_ms == 2 * DAY_MS
        assert "retired 1 silent version(s) of shop: v1" in server.stderr
    finally:
        server.close()


# ------------------------------------------------------------------- leases --


def test_a_lease_is_one_holders_until_it_expires_or_is_released(tmp_path):
    store = SqliteStore(tmp_path / "s.db")
    try:
        assert store.lease("shop", "fp", "a", 1000, 10_000)
        assert not store.lease("shop", "fp", "b", 10_999, 10_000), "a's until 11,000"
        assert store.lease("shop", "fp-2", "b", 5000, 10_000), "another version's set: another lease"
        assert store.lease("shop", "fp", "a", 5000, 10_000), "the holder renews (to 15,000)"
        assert not store.lease("shop", "fp", "b", 14_999, 10_000)
        assert store.lease("shop", "fp", "b", 15_000, 10_000), "expired: b takes it"
        store.release("shop", "fp", "a")  # not a's any more: nothing happens
        assert not store.lease("shop", "fp", "a", 16_000, 10_000)
        store.release("shop", "fp")  # the set was stored: whoever held it lets go
        assert store.lease("shop", "fp", "a", 16_000, 10_000)
    finally:
        store.close()


def test_one_sender_per_set_across_two_collectors_sharing_the_store(tmp_path, tls_env):
    """Collector B's fleet waits for the set collector A asked for, instead of sending it again."""
    store = SqliteStore(tmp_path / "s.db")
    clock = Clock(MIDNIGHT)
    sent = _sources("shop:a", "shop:b")
    printed = _print(sent)
    probe = pb.RegisterRequest(app="shop", fingerprint=printed, fingerprint_only=True)
    try:
        with clocked_collector(store, tls_env, clock) as a, clocked_collector(store, tls_env, clock) as b:
            assert a.tracing.Register(probe).need_sources, "A's caller sends the set"
            waiting = b.tracing.Register.future(probe, timeout=30)
            assert not waiting.done(), "B's caller waits for it"
            a.tracing.Register(pb.RegisterRequest(app="shop", fingerprint=printed, sources=sent))
            assert not waiting.result().need_sources, "and is answered once the set is stored"
            # A caller that was asked and never sent: its lease expires (the collectors' clock), and another is asked.
            other = _sources("shop:c")
            second = pb.RegisterRequest(app="shop", fingerprint=_print(other), fingerprint_only=True)
            assert a.tracing.Register(second).need_sources
            late = b.tracing.Register.future(second, timeout=30)
            clock.ms += 10_001
            assert late.result().need_sources
    finally:
        store.close()

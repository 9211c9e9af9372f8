"""The Redis store against a real redis-server: what the shared suite cannot show with one collector.

Two ``RedisStore`` objects on one Redis are two collectors: a batch resent to
the other one is applied once, a Fetch never sees half of the other's
Register, and changes written through one reach the other's subscribers.
Refusals (auth, database, out of memory, no redis-py) are one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from redis.crc import key_slot
from redis_helpers import REDIS_PASSWORD, Collector, report, run_collector_once, sources

from coldmod_cli.server import open_store
from coldmod_cli.server.process import collector_command
from coldmod_cli.server.redis_process import RedisProcess
from coldmod_cli.server.redis_store import DEDUPE_KEEP, DEDUPE_TTL_MS, AppKeys, RedisStore
from coldmod_cli.server.store import (
    DAY_MS,
    Batch,
    Change,
    Heatmap,
    IgnoreRules,
    Source,
    StoreError,
    TooManyApps,
    UnknownApp,
)
from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(120)

INSECURE = {"COLDMOD_INSECURE": "on"}


@pytest.fixture(scope="module")
def server() -> Iterator[RedisProcess]:
    """One plain redis-server for this module."""
    with RedisProcess() as process:
        yield process


@pytest.fixture
def two(server: RedisProcess) -> Iterator[tuple[RedisStore, RedisStore]]:
    """Two stores (as two collectors would open them) on a flushed Redis."""
    first, second = RedisStore(server.url), RedisStore(server.url)
    first._client.flushall()
    yield first, second
    first.close()
    second.close()


def _batch(instance: str, seq: int, calls: dict[str, int], app: str = "shop") -> Batch:
    keys = list(calls)
    return Batch(app, instance, seq, 1000, 2000, keys, [calls[k] for k in keys], [False] * len(keys))


def test_every_key_of_an_app_is_in_one_hash_slot():
    for app in ["shop", "a{b}c", "}x", "{", "x{}y", "{shop}"]:
        keys = AppKeys.of(app)
        named = [keys.instance("i-1"), keys.instance("{i}"), keys.lease("f{p}"), keys.history(640, "m:{x}")]
        slots = {key_slot(k.encode()) for k in [*keys.all(), *named]}
        assert len(slots) == 1, f"the keys of {app!r} span slots {slots}"
    # ...and apps spread over the cluster instead of all sharing one slot.
    assert len({key_slot(AppKeys.of(f"app{n}").meta.encode()) for n in range(20)}) > 10


def test_a_batch_resent_to_another_collector_is_applied_once(two):
    first, second = two
    first.register("shop", [Source("m.a")], 1000)
    results = []
    threads = [
        threading.Thread(target=lambda s=store: results.append(s.report(_batch("i1", 7, {"m.a": 5}))))
        for store in [first, second] * 10
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.duplicate for r in results) == [False] + [True] * 19
    assert second.fetch("shop").entries[0].calls == 5


def test_fetch_never_sees_half_of_a_register(two):
    first, second = two
    evens = [Source(f"m.k{i}") for i in range(0, 4000, 2)]
    odds = [Source(f"m.k{i}") for i in range(1, 4000, 2)]
    first.register("shop", evens, 1000, "evens")
    stop = threading.Event()

    def swap() -> None:  # a version adds the odd keys; another's [ignore] takes them out again
        n = 0
        while not stop.is_set():
            n += 1
            first.register("shop", odds, 1000, f"odds-{n}")
            first.register("shop", evens, 1000, "evens", ignore=IgnoreRules(keys=tuple(s.key for s in odds)))

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        seen = set()
        for _ in range(40):
            keys = {e.key for e in second.fetch("shop").entries}
            assert keys in ({s.key for s in evens}, {s.key for s in evens + odds}), f"a torn read of {len(keys)} keys"
            seen.add(len(keys))
    finally:
        stop.set()
        swapper.join()
    assert len(seen) == 2, "the reads never overlapped a Register"


def test_changes_written_through_one_collector_reach_the_other(two):
    first, second = two
    heard: list[Change] = []
    arrived = threading.Event()

    def listen(change: Change) -> None:
        heard.append(change)
        arrived.set()

    second.subscribe(listen)
    time.sleep(0.3)  # the subscriber thread subscribes
    first.register("shop", [Source("m.a"), Source("m.b")], 1000)
    first.report(_batch("i1", 1, {"m.a": 1, "gone": 2}))
    first.reset("shop", 3000)
    first.delete_app("shop")
    deadline = time.monotonic() + 2
    while len(heard) < 4 and time.monotonic() < deadline:
        arrived.wait(0.1)
    assert heard == [
        Change("shop", "register"),
        Change("shop", "report"),  # from another collector: which app, not which keys
        Change("shop", "reset"),
        Change("shop", "delete"),
    ]


def test_dedupe_records_stay_bounded_and_expire(two):
    first, _ = two
    first.register("shop", [Source("m.a")], 1000)
    for seq in range(1, 101):
        first.report(_batch("i1", seq, {"m.a": 1}))
    record = AppKeys.of("shop").instance("i1")
    assert first._client.hlen(record) == DEDUPE_KEEP + 1  # the recent ids and the floor
    assert DEDUPE_TTL_MS - 60_000 < first._client.pttl(record) <= DEDUPE_TTL_MS
    for seq in (1, 50, 100):  # below the floor and remembered: both are old resends
        assert first.report(_batch("i1", seq, {"m.a": 1})).duplicate
    assert first.fetch("shop").entries[0].calls == 100


def test_apps_are_listed_in_pages_and_bounded(server):
    store = RedisStore(server.url, max_apps=3)
    try:
        store._client.flushall()
        for name in ("b", "a", "c"):
            store.register(name, [Source("m.x")], 1000)
        store.report(_batch("i1", 1, {"m.x": 2**62}, app="a"))
        store.report(_batch("i2", 1, {"m.x": 2**62}, app="b"))
        with pytest.raises(TooManyApps):
            store.register("d", [Source("m.x")], 1000)
        store.register("a", [Source("m.x"), Source("m.y")], 2000)  # an existing app is not new
        assert store.count_apps() == 3
        assert [a.app for a in store.list_apps(limit=2)] == ["a", "b"]
        assert [(a.app, a.keys, a.cold_keys, a.calls) for a in store.list_apps(after="a")] == [
            ("b", 1, 0, 2**62),
            ("c", 1, 1, 0),
        ]
        assert store.delete_app("c") == 1
        with pytest.raises(UnknownApp):
            store.delete_app("c")
        store.register("d", [Source("m.x")], 1000)  # room again
    finally:
        store.close()


@pytest.mark.parametrize(
    ("appendonly", "appendfsync", "says"),
    [(True, "always", "appendfsync always"), (True, "everysec", "power loss"), (False, "everysec", "without AOF")],
)
def test_status_says_what_a_crash_loses(appendonly, appendfsync, says):
    with RedisProcess(appendonly=appendonly, appendfsync=appendfsync) as process:
        store = RedisStore(process.url)
        try:
            info = store.info()
        finally:
            store.close()
    assert info.store == f"redis://127.0.0.1:{process.port}/0 (Redis {store._version})"
    assert says in info.durability


def test_coldmod_status_says_what_a_redis_crash_loses(tmp_path: Path):
    (tmp_path / "coldmod.rootmarker").write_text('[app]\nname = "shop"\n')
    with RedisProcess(appendonly=True, appendfsync="everysec") as process:
        collector = Collector(process.url, INSECURE).start()
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")}
            env |= INSECURE | {"COLDMOD_GRPC_HOST": collector.target}
            done = subprocess.run(
                [sys.executable, "-m", "coldmod_cli", "status"], env=env, cwd=tmp_path, capture_output=True, text=True
            )
        finally:
            collector.kill()
    store_line = next(line for line in done.stdout.splitlines() if line.startswith("store:"))
    assert f"redis://127.0.0.1:{process.port}/0" in store_line
    assert "appendfsync everysec" in store_line
    assert "power loss" in store_line


def _one_line_refusal(code: int, stderr: str, *needles: str) -> None:
    assert code == 1, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) <= 2, stderr  # the refusal (and "coldmod: stopped" if the store was opened)
    assert lines[0].startswith("coldmod serve: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_refusals_at_start_are_one_line(tmp_path: Path):
    with RedisProcess(password=REDIS_PASSWORD, databases=2) as process:
        base = f"redis://127.0.0.1:{process.port}"
        cases = [
            (f"{base}/0", {}, ["asks for a password", "COLDMOD_REDIS_PASSWORD"]),
            (f"{base}/0", {"COLDMOD_REDIS_PASSWORD": "wrong"}, ["refused the credentials"]),
            (f"{base}/5", {"COLDMOD_REDIS_PASSWORD": REDIS_PASSWORD}, ["has no database 5"]),
            (f"{base}/x", {}, ["database 'x' is not a number"]),
            ("redis://127.0.0.1:1/0", {}, ["unreachable"]),
            (f"{base}/0?tls=1", {}, ["unknown option 'tls'"]),
        ]
        for url, env, needles in cases:
            code, stderr = run_collector_once(url, INSECURE | env)
            _one_line_refusal(code, stderr, *needles)
            assert REDIS_PASSWORD not in stderr


def test_without_redis_py_the_collector_says_how_to_install_it():
    argv = collector_command("redis://127.0.0.1:1/0")
    program = (
        "import sys; sys.modules['redis'] = None; sys.argv = ['coldmod']+sys.argv[1:];"
        " from coldmod_cli.server.__main__ import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")} | INSECURE
    done = subprocess.run([sys.executable, "-c", program, *argv[3:]], env=env, capture_output=True, text=True)
    _one_line_refusal(done.returncode, done.stderr, "pip install 'coldmod-cli[redis]'")


def test_out_of_memory_acknowledges_only_what_was_stored(tmp_path: Path):
    keys = [f"m.k{i}" for i in range(20000)]
    with RedisProcess() as process:
        collector = Collector(process.url, INSECURE).start()
        try:
            with collector.channel() as channel:
                tracing = pb_grpc.TracingStub(channel)
                tracing.Register(pb.RegisterRequest(app="shop", sources=sources(keys)), timeout=30)
                store = RedisStore(process.url)
                used = int(store._client.info("memory")["used_memory"])
                store._client.config_set("maxmemory-policy", "noeviction")
                store._client.config_set("maxmemory", str(used + 400_000))
                acked, refused = 0, None
                for seq in range(1, 40):  # each batch counts 500 keys never counted before: memory grows
                    batch = {k: 1 for k in keys[(seq - 1) * 500 : seq * 500]}
                    try:
                        tracing.Report(report("shop", "i1", seq, batch), timeout=10)
                        acked += 1
                    except grpc.RpcError as exc:
                        refused = exc
                        break
                assert refused is not None, "Redis never ran out of memory"
                assert refused.code() == grpc.StatusCode.UNAVAILABLE
                assert "out of memory" in (refused.details() or "")
                assert acked >= 1
                store._client.config_set("maxmemory", "0")
                stored = store.fetch("shop")
                store.close()
                # Every acknowledged batch whole, nothing of the refused one.
                assert sum(e.calls for e in stored.entries) == acked * 500
                assert tracing.Report(report("shop", "i1", acked + 1, {keys[0]: 1}), timeout=10).duplicate is False
        finally:
            collector.kill()


def test_counts_stay_exact_past_2_53_and_an_overflow_is_refused_whole(two):
    from coldmod_cli.server.store import CountOverflow

    first, _ = two
    first.register("shop", [Source("m.a"), Source("m.b"), Source("m.c")], 1000)
    first.report(_batch("i1", 1, {"m.a": 2**53 - 1, "m.b": 2**62, "m.c": 1}))
    first.report(_batch("i1", 2, {"m.a": 3, "m.b": 2**62 - 1}))  # past doubles' exact range; to 2**63 - 1
    with pytest.raises(CountOverflow):
        first.report(_batch("i1", 3, {"m.c": 5, "m.b": 1}))  # m.b would pass 2**63 - 1: nothing applied
    counts = {e.key: e.calls for e in first.fetch("shop").entries}
    assert counts == {"m.a": 2**53 + 2, "m.b": 2**63 - 1, "m.c": 1}
    assert not first.report(_batch("i1", 3, {"m.c": 5})).duplicate  # the refused id was not recorded


def test_rediss_verifies_the_server_against_the_ca_given(tmp_path: Path):
    import trustme

    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    with RedisProcess(tls=(cert, key)) as process:
        for url, env in [(f"{process.url}?ca={ca_file}", {}), (process.url, {"COLDMOD_REDIS_CA": str(ca_file)})]:
            store = RedisStore(url, env=env)
            try:
                store.register("shop", [Source("m.a")], 1000)
                assert [e.key for e in store.fetch("shop").entries] == ["m.a"]
                assert store.url == f"rediss://127.0.0.1:{process.port}/0"
            finally:
                store.close()
        with pytest.raises(StoreError, match=r"TLS connection to Redis .* failed"):
            RedisStore(process.url, env={})  # the system's CAs do not sign this server
        with pytest.raises(StoreError, match="for TLS: use a rediss://"):
            RedisStore(f"redis://127.0.0.1:{process.port}/0?ca={ca_file}", env={})


def _coldmod(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")} | (env or {})
    return subprocess.run([sys.executable, "-m", "coldmod_cli", *args], env=full, capture_output=True, text=True)


def _same(copied: Heatmap, original: Heatmap) -> None:
    """Everything a heatmap holds, exactly (counts, flags, windows, tracked since, sources, drop counters)."""
    assert copied.entries == original.entries
    assert (copied.registered_ms, copied.dropped_unknown, copied.dropped_updates) == (
        original.registered_ms,
        original.dropped_unknown,
        original.dropped_updates,
    )


def test_store_copy_makes_the_destination_the_same_and_again_changes_nothing(tmp_path: Path):
    from coldmod_cli.server.sqlite_store import SqliteStore

    sqlite_url = f"sqlite://{tmp_path / 'src.db'}"
    src = SqliteStore(tmp_path / "src.db")
    src.register("shop", [Source("m.a", "m.py", (3, 9)), Source("m.b", "m.py", (12,)), Source("m.c")], 1000, "print-1")
    # Past 2**62 (and past doubles' exact range), estimated and a lower bound, unknown keys and dropped updates.
    big = 2**62 + 2**40 + 7
    src.report(
        Batch("shop", "i1", 1, 1500, 2500, ["m.a", "gone"], [big, 1], [True, False], 3, lower_bound=[True, False])
    )
    src.report(Batch("shop", "i1", 2, 1200, 2600, ["m.b"], [5], [True]))  # estimated only
    src.register("web", [Source("w.x")], 2000)
    expected = {name: src.fetch(name) for name in ("shop", "web")}
    src.close()
    shop = {e.key: e for e in expected["shop"].entries}
    assert (shop["m.a"].calls, shop["m.a"].estimated, shop["m.a"].lower_bound) == (big, True, True)
    assert (shop["m.b"].estimated, shop["m.b"].lower_bound, shop["m.b"].first_seen_ms) == (True, False, 1200)
    assert (expected["shop"].dropped_unknown, expected["shop"].dropped_updates) == (1, 3)
    with RedisProcess(password=REDIS_PASSWORD) as process:
        env = {"COLDMOD_REDIS_PASSWORD": REDIS_PASSWORD}
        dst = RedisStore(process.url, env=env)
        try:
            dst.register("shop", [Source("m.z")], 5000)  # older data there: replaced, not merged
            dst.register("other", [Source("o.y")], 5000)  # an app only there: kept
            dst.report(Batch("other", "i9", 1, 7000, 8000, ["o.y"], [2**62 + 1], [False], lower_bound=[True]))
            for _ in range(2):  # twice: the second run changes nothing
                done = _coldmod("store", "copy", sqlite_url, process.url, env=env)
                assert done.returncode == 0, done.stderr
                assert "2 apps copied" in done.stderr
                assert REDIS_PASSWORD not in done.stderr + done.stdout
                for name, heatmap in expected.items():
                    _same(dst.fetch(name), heatmap)
                assert dst.fingerprint("shop") == "print-1"
                assert [a.app for a in dst.list_apps()] == ["other", "shop", "web"]
            in_redis = {name: dst.fetch(name) for name in ("other", "shop", "web")}
        finally:
            dst.close()
        # And back: Redis -> SQLite, into a store holding an older "shop" and an app only there.
        back = tmp_path / "back.db"
        older = SqliteStore(back)
        older.register("shop", [Source("m.a"), Source("m.old")], 500, "print-0")
        older.report(Batch("shop", "i2", 1, 600, 700, ["m.a", "m.old"], [9, 9], [False, False]))
        older.register("local", [Source("l.x")], 500)
        older.close()
        for run in range(2):  # twice = once (the second run also undoes the Report the first round adds)
            done = _coldmod("store", "copy", process.url, f"sqlite://{back}", env=env)
            assert done.returncode == 0, done.stderr
            assert "3 apps copied" in done.stderr
            returned = SqliteStore(back)
            try:
                for name, heatmap in in_redis.items():
                    _same(returned.fetch(name), heatmap)
                _same(returned.fetch("shop"), expected["shop"])
                assert returned.fingerprint("shop") == "print-1"
                assert returned.fingerprint("other") == ""
                assert [a.app for a in returned.list_apps()] == ["local", "other", "shop", "web"]
                assert [(a.app, a.calls) for a in returned.list_apps() if a.app == "shop"] == [("shop", big + 5)]
                # The restored app takes Reports (the writer's cache follows the new rows).
                returned.report(Batch("shop", f"i3-{run}", 1, 3000, 4000, ["m.c", "m.old"], [2, 2], [False, False]))
                assert {e.key: e.calls for e in returned.fetch("shop").entries}["m.c"] == 2
            finally:
                returned.close()


def test_one_group_with_twins_an_overflow_and_sums_past_2_53_answers_each_batch_exactly(two):
    from concurrent.futures import Future

    from coldmod_cli.server.redis_store import _Waiting
    from coldmod_cli.server.store import CountOverflow

    first, _ = two
    first.register("shop", [Source("m.a"), Source("m.b"), Source("m.c")], 1000)
    first.report(_batch("i0", 1, {"m.b": 2**63 - 2}))
    batches = [
        _batch("i1", 1, {"m.a": 2**52, "gone": 1}),
        _batch("i2", 1, {"m.a": 2**52 + 1}),  # merged with i1: past 2**53, so the group goes one by one
        _batch("i3", 1, {"m.b": 1}),  # reaches 2**63 - 1 exactly
        _batch("i4", 1, {"m.b": 1, "m.c": 9}),  # would pass it: refused whole, alone
        _batch("i5", 1, {"m.c": 5}),
        _batch("i5", 1, {"m.c": 5}),  # its twin in the same group: applied once
    ]
    group = [_Waiting(b, Future()) for b in batches]
    first._apply("shop", group)
    with pytest.raises(CountOverflow):
        group[3].future.result()
    answers = [(w.future.result().duplicate, w.future.result().unknown_keys) for i, w in enumerate(group) if i != 3]
    assert answers == [(False, 1), (False, 0), (False, 0), (False, 0), (True, 0)]
    counts = {e.key: e.calls for e in first.fetch("shop").entries}
    assert counts == {"m.a": 2**53 + 1, "m.b": 2**63 - 1, "m.c": 5}
    assert first.fetch("shop").dropped_unknown == 1
    # The same group again (all resends now, the refused one still new): nothing changes but i4's refusal.
    again = [_Waiting(b, Future()) for b in batches]
    first._apply("shop", again)
    assert [w.future.result().duplicate for i, w in enumerate(again) if i != 3] == [True] * 5
    assert {e.key: e.calls for e in first.fetch("shop").entries} == counts
    # A group that merges (no sum past 2**53): twins, unknown keys and counts per batch, one write.
    twin = {"m.c": 1, "gone": 1}
    merged = [_batch("i6", 1, twin), _batch("i6", 1, twin), _batch("i7", 1, {"m.c": 2})]
    waiting = [_Waiting(b, Future()) for b in merged]
    first._apply("shop", waiting)
    assert [(w.future.result().duplicate, w.future.result().unknown_keys) for w in waiting] == [
        (False, 1),
        (True, 1),
        (False, 0),
    ]
    assert {e.key: e.calls for e in first.fetch("shop").entries}["m.c"] == 8
    assert first.fetch("shop").dropped_unknown == 2


# ------------------------------------------------ versions and history (issue 17) --

DAY = DAY_MS
T0 = 20_500 * DAY  # a UTC midnight (2026-02-15)


def _vbatch(
    instance: str, seq: int, calls: dict[str, int], start: int, end: int | None = None, fingerprint: str = ""
) -> Batch:
    keys = list(calls)
    window_end = start + 1000 if end is None else end
    return Batch(
        "shop",
        instance,
        seq,
        start,
        window_end,
        keys,
        [calls[k] for k in keys],
        [False] * len(keys),
        fingerprint=fingerprint,
    )


def _history_keys(store: RedisStore, app: str = "shop") -> set[str]:
    prefix = AppKeys.of(app).meta[: -len("meta")] + "h:"
    return set(store._client.scan_iter(prefix + "*"))


def test_two_versions_interleaved_on_two_collectors_lose_nothing(two):
    """A rolling deploy: old and new register and report in turn, through either collector; then an old restart."""
    first, second = two
    old = [Source("shop.shared", "shop/a.py", (1,)), Source("shop.old_only", "shop/a.py", (5,))]
    new = [Source("shop.shared", "shop/a.py", (1,)), Source("shop.new_only", "shop/b.py", (2,))]
    first.register("shop", old, T0, "fp-old", version="v1", instance_id="old-1")
    second.register("shop", new, T0 + 10, "fp-new", version="v2", instance_id="new-1")
    sent = {"shop.shared": 0, "shop.old_only": 0, "shop.new_only": 0}
    unknown = 0
    for seq in range(1, 41):  # the two fleets' batches alternate between the collectors
        store = (first, second)[seq % 2]
        a = store.report(
            _vbatch("old-1", seq, {"shop.shared": 1, "shop.old_only": 2}, T0 + seq * 1000, fingerprint="fp-old")
        )
        b = store.report(
            _vbatch("new-1", seq, {"shop.shared": 3, "shop.new_only": 4}, T0 + seq * 1000, fingerprint="fp-new")
        )
        unknown += a.unknown_keys + b.unknown_keys
        sent["shop.shared"] += 4
        sent["shop.old_only"] += 2
        sent["shop.new_only"] += 4
        if seq == 20:  # a lagging old worker restarts mid-rollout: registers its set again (known: a refresh)
            assert first.knows_version("shop", "fp-old")
            first.register("shop", old, T0 + seq * 1000, "fp-old", version="v1", instance_id="old-2")
    heatmap = second.fetch("shop", now_ms=T0 + DAY - 1)
    assert unknown == 0
    assert heatmap.dropped_unknown == 0
    assert {e.key: e.calls for e in heatmap.entries} == sent
    labels = [v.label for v in heatmap.versions]
    assert labels == ["v1", "v2"]
    has = {e.key: sorted(labels[i] for i in e.versions) for e in heatmap.entries}
    assert has == {"shop.shared": ["v1", "v2"], "shop.old_only": ["v1"], "shop.new_only": ["v2"]}
    assert [v.keys for v in heatmap.versions] == [2, 2]
    # The history holds the same calls, on the day of the windows.
    assert {e.key: (e.calls_7d, e.days) for e in heatmap.entries} == {k: (n, ()) for k, n in sent.items()}
    assert second.history("shop", ["shop.shared", "nope"]) == {"shop.shared": ((T0 // DAY,), (sent["shop.shared"],))}


def test_a_batch_resent_to_both_collectors_counts_once_in_total_and_history(two):
    first, second = two
    first.register("shop", [Source("m.a")], T0, "fp-1", instance_id="i1")
    second.register("shop", [Source("m.a"), Source("m.b")], T0, "fp-2", instance_id="i2")
    results = []
    batch = _vbatch("i2", 7, {"m.a": 5, "m.b": 6}, T0 + 5 * DAY, fingerprint="fp-2")
    threads = [
        threading.Thread(target=lambda s=store: results.append(s.report(batch))) for store in [first, second] * 8
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.duplicate for r in results) == [False] + [True] * 15
    assert first.history("shop", ["m.a", "m.b"]) == {"m.a": ((T0 // DAY + 5,), (5,)), "m.b": ((T0 // DAY + 5,), (6,))}
    versions = {v.fingerprint: v.last_seen_ms for v in first.fetch("shop", now_ms=T0 + 5 * DAY).versions}
    assert versions == {"fp-1": T0, "fp-2": T0 + 5 * DAY + 1000}  # only the batch's version was refreshed


def test_retirement_follows_the_injected_clock(two):
    first, second = two
    first.register("shop", [Source("m.shared"), Source("m.old")], T0, "fp-old", instance_id="old-1")
    first.register("shop", [Source("m.shared"), Source("m.new")], T0, "fp-new", instance_id="new-1")
    first.report(_vbatch("old-1", 1, {"m.shared": 5, "m.old": 7}, T0 + 1000))  # no fingerprint: its instance's
    second.report(_vbatch("new-1", 1, {"m.shared": 1, "m.new": 2}, T0 + 10 * DAY, fingerprint="fp-new"))
    assert _history_keys(first)
    old_seen = T0 + 2000  # the old version's last batch ended then
    assert first.retire(old_seen + 30 * DAY) == {}  # silent exactly the retention: still live
    assert second.knows_version("shop", "fp-old")
    retired = second.retire(old_seen + 30 * DAY + 1)
    assert [(v.fingerprint, v.last_seen_ms, v.keys) for v in retired["shop"]] == [("fp-old", old_seen, 2)]
    assert not first.knows_version("shop", "fp-old")
    heatmap = first.fetch("shop", now_ms=T0 + 31 * DAY, all_history=True)
    assert {e.key: (e.calls, e.days) for e in heatmap.entries} == {
        "m.shared": (6, (T0 // DAY, T0 // DAY + 10)),
        "m.new": (2, (T0 // DAY + 10,)),
    }
    assert [(v.fingerprint, v.keys) for v in heatmap.versions] == [("fp-new", 2)]
    assert all(e.versions == (0,) for e in heatmap.entries)
    # Its own key left with its history; a batch of it now is unknown.
    assert not any(key.endswith(":m.old") for key in _history_keys(first))
    assert first.report(_vbatch("old-1", 2, {"m.old": 1}, T0 + 31 * DAY)).unknown_keys == 1
    # A touch keeps a version alive: the new one, touched at day 39, outlives day 45's retirement.
    first.touch_version("shop", "fp-new", T0 + 39 * DAY, version="v2")
    assert second.retire(T0 + 45 * DAY) == {}
    assert [v.label for v in first.fetch("shop").versions] == ["v2"]


def test_ignore_rules_remove_keys_from_every_version(two):
    first, second = two
    first.register("shop", [Source("m.a", "shop/a.py"), Source("m.gen", "shop/generated/x.py")], T0, "fp-1")
    first.register(
        "shop", [Source("m.a", "shop/a.py"), Source("m.b", "shop/b.py"), Source("m.c", "shop/c.py")], T0, "fp-2"
    )
    first.report(_vbatch("i1", 1, {"m.a": 1, "m.b": 2, "m.gen": 3, "m.c": 4}, T0))
    first.report(_vbatch("i1", 2, {"m.a": 1, "m.b": 2, "m.gen": 3, "m.c": 4}, T0 + DAY))  # day T0 to the buckets
    result = second.register(
        "shop",
        [Source("m.a", "shop/a.py"), Source("m.b", "shop/b.py")],
        T0 + DAY,
        "fp-3",
        ignore=IgnoreRules(keys=("m.c",), files=("shop/generated/**",)),
    )
    assert (result.kept, result.added, result.removed) == (2, 0, 2)
    heatmap = first.fetch("shop", now_ms=T0 + DAY)
    assert {e.key: e.calls for e in heatmap.entries} == {"m.a": 2, "m.b": 4}
    assert [v.keys for v in heatmap.versions] == [1, 2, 2]  # fp-1 lost m.gen, fp-2 lost m.c
    assert {k.rsplit(":", 1)[-1] for k in _history_keys(first)} == {"m.a", "m.b"}
    assert first.report(_vbatch("i1", 3, {"m.gen": 1, "m.c": 1}, T0 + DAY)).unknown_keys == 2
    # Registered again later, an ignored key starts from nothing.
    first.register("shop", [Source("m.c", "shop/c.py")], T0 + DAY, "fp-4")
    assert first.history("shop", ["m.a", "m.c"]) == {"m.a": ((T0 // DAY, T0 // DAY + 1), (1, 1)), "m.c": ((), ())}


def test_calls_across_a_utc_midnight_land_in_their_days(two):
    from concurrent.futures import Future

    from coldmod_cli.server.redis_store import _Waiting

    first, _ = two
    first.register("shop", [Source("m.a"), Source("m.b")], T0 - DAY, "fp-1", instance_id="i1")
    midnight = T0
    # The sender closes its window at midnight: one batch before, one after; and both in one group.
    first.report(_vbatch("i1", 1, {"m.a": 3}, midnight - 5000, midnight - 1))
    first.report(_vbatch("i1", 2, {"m.a": 4}, midnight, midnight + 5000))
    group = [
        _Waiting(_vbatch("i2", 1, {"m.b": 1, "m.a": 10}, midnight - 9000, midnight - 1), Future()),
        _Waiting(_vbatch("i3", 1, {"m.b": 2, "m.a": 20}, midnight, midnight + 9000), Future()),
        _Waiting(_vbatch("i4", 1, {"m.b": 4}, midnight + 1, midnight + 9000), Future()),
    ]
    first._apply("shop", group)
    assert [w.future.result().duplicate for w in group] == [False] * 3
    day = midnight // DAY
    assert first.history("shop", ["m.a", "m.b"]) == {"m.a": ((day - 1, day), (13, 24)), "m.b": ((day - 1, day), (1, 6))}
    # A late batch of the day before (a resend after an outage) still lands in that day.
    first.report(_vbatch("i5", 1, {"m.a": 100}, midnight - 60_000, midnight - 1))
    assert first.history("shop", ["m.a"]) == {"m.a": ((day - 1, day), (113, 24))}
    # The 7/30/90-day sums end with the fetch's day; quiet entries carry their days.
    sums = {
        e.key: (e.calls_7d, e.calls_30d, e.calls_90d) for e in first.fetch("shop", now_ms=midnight + 6 * DAY).entries
    }
    assert sums == {"m.a": (24, 137, 137), "m.b": (6, 7, 7)}  # day - 1 is 7 days before day + 6
    sums = {e.key: e.calls_90d for e in first.fetch("shop", now_ms=midnight + 89 * DAY).entries}
    assert sums == {"m.a": 24, "m.b": 6}
    quiet = first.fetch("shop", now_ms=midnight + 10 * DAY, quiet_days=11)  # the last 11 days hold `day`
    assert {e.key: (e.days, e.day_calls) for e in quiet.entries} == {"m.a": ((), ()), "m.b": ((), ())}
    quiet = first.fetch("shop", now_ms=midnight + 10 * DAY, quiet_days=10)
    assert {e.key: (e.days, e.day_calls) for e in quiet.entries} == {
        "m.a": ((day - 1, day), (113, 24)),
        "m.b": ((day - 1, day), (1, 6)),
    }


def test_history_is_kept_400_days_in_small_listpack_hashes_and_pruned_after(two):
    first, _ = two
    first.register("shop", [Source("m.a"), Source("m.b")], T0, "fp-1", instance_id="i1")
    for n in range(500):  # a call every day for 500 days
        first.report(_vbatch("i1", n + 1, {"m.a": n + 1}, T0 + n * DAY))
    now = T0 + 499 * DAY
    keys = _history_keys(first)
    assert len(keys) == len(range(T0 // DAY // 32, (T0 // DAY + 499) // 32 + 1))
    assert {first._client.object("encoding", key) for key in keys} == {"listpack"}
    assert first.retire(now) == {}  # the version reported today: only pruning
    days, calls = first.history("shop", ["m.a"])["m.a"]
    today = now // DAY
    assert days == tuple(range(today - 400, today + 1))
    assert calls == tuple(range(100, 501))
    entry = first.fetch("shop", now_ms=now).entries[0]
    assert (entry.calls, entry.calls_7d, entry.calls_90d) == (
        500 * 501 // 2,
        sum(range(494, 501)),
        sum(range(411, 501)),
    )
    assert len(_history_keys(first)) == len(range((today - 400) // 32, today // 32 + 1))
    # The next day prunes one more day (the boundary bucket loses its oldest field).
    first.retire(now + DAY)
    assert first.history("shop", ["m.a"])["m.a"][0][0] == today - 399


def test_reset_and_delete_take_the_history_with_them(two):
    first, _ = two
    first.register("shop", [Source("m.a")], T0, "fp-1")
    first.report(_vbatch("i1", 1, {"m.a": 5}, T0 + 3 * DAY))
    first.report(_vbatch("i1", 2, {"m.a": 5}, T0 + 4 * DAY))  # day 3 moves to its bucket
    assert _history_keys(first)
    assert first.reset("shop", T0 + 4 * DAY) == 1
    assert not _history_keys(first)
    assert first.history("shop", ["m.a"]) == {"m.a": ((), ())}
    first.report(_vbatch("i1", 3, {"m.a": 5}, T0 + 5 * DAY))
    first.report(_vbatch("i1", 4, {"m.a": 5}, T0 + 6 * DAY))
    assert _history_keys(first)
    first.delete_app("shop")
    left = {key.split(":")[2] for key in first._client.scan_iter("coldmod:{shop}:*")}
    assert left == {"i"}  # only the dedupe record, which expires on its own


def test_restore_carries_versions_and_history_and_twice_is_once(two):
    first, _ = two
    first.register("shop", [Source("m.a", "a.py", (1,)), Source("m.b")], T0, "fp-1", version="v1")
    first.register("shop", [Source("m.b"), Source("m.c")], T0 + 1, "fp-2", version="v2")
    for n in range(3):
        first.report(_vbatch("i1", n + 1, {"m.a": 1, "m.b": 2 + n}, T0 + n * 40 * DAY))
    original = first.fetch("shop", now_ms=T0 + 100 * DAY, all_history=True)
    assert original.entries[1].days == (T0 // DAY, T0 // DAY + 40, T0 // DAY + 80)
    target = RedisStore(first.target.display.rsplit("/", 1)[0] + "/3")
    try:
        target.register("shop", [Source("m.z")], T0, "fp-z")  # older data there: replaced
        for _ in range(2):
            target.restore(original)
            copied = target.fetch("shop", now_ms=T0 + 100 * DAY, all_history=True)
            assert copied.entries == original.entries
            assert copied.versions == original.versions
            assert target.knows_version("shop", "fp-2")
            assert not target.knows_version("shop", "fp-z")
        # The copy takes Reports in its versions and history.
        target.report(_vbatch("i9", 1, {"m.c": 9}, T0 + 100 * DAY, fingerprint="fp-2"))
        assert target.history("shop", ["m.c"]) == {"m.c": ((T0 // DAY + 100,), (9,))}
    finally:
        target._client.flushdb()
        target.close()


def _load_dump(client, dump: dict[str, dict]) -> None:  # type: ignore[no-untyped-def, type-arg]
    """Write a JSON dump of keys (make_redis_v1_dataset.py's format) into Redis, TTLs included."""
    for key, item in dump.items():
        kind, value = item["type"], item["value"]
        if kind == "hash":
            client.hset(key, mapping=value)
        elif kind == "set":
            client.sadd(key, *value)
        elif kind == "zset":
            client.zadd(key, dict(value))
        if item["pttl"] > 0:
            client.pexpire(key, item["pttl"])


def test_a_dataset_written_by_the_previous_release_upgrades_in_place(server):
    import json

    fixture = json.loads((Path(__file__).parent / "fixtures" / "redis_v1_dataset.json").read_text())
    loader = RedisStore(server.url)
    loader._client.flushall()
    _load_dump(loader._client, fixture["keys"])
    loader.close()
    stores = [RedisStore(server.url), RedisStore(server.url)]  # two collectors open it: each app upgraded once
    store = stores[0]
    try:
        for app, old in fixture["heatmaps"].items():
            heatmap = store.fetch(app, now_ms=T0)
            # Every count, flag, timestamp and source as the old Fetch answered.
            assert [[*e[:7], list(e.lines), e.lower_bound] for e in heatmap.entries] == old["entries"], app
            assert (heatmap.registered_ms, heatmap.dropped_unknown, heatmap.dropped_updates) == (
                old["registered_ms"],
                old["dropped_unknown"],
                old["dropped_updates"],
            )
            # The fingerprint it had is its one version, holding every key.
            assert len(heatmap.versions) == 1
            if old["fingerprint"]:
                assert heatmap.versions[0].fingerprint == old["fingerprint"]
                assert store.knows_version(app, old["fingerprint"])
            assert heatmap.versions[0].keys == len(old["entries"])
            assert all(e.versions == (0,) for e in heatmap.entries)
            assert store.fingerprint(app) == heatmap.versions[0].fingerprint
        # A batch applied before the upgrade is still a duplicate; a new one lands in total and history.
        assert store.report(Batch("shop", "i-1", 1, 0, 0, ["shop.views:index"], [7], [False])).duplicate
        store.report(_vbatch("i-1", 2, {"shop.views:index": 2}, T0))
        entry = next(e for e in store.fetch("shop", now_ms=T0).entries if e.key == "shop.views:index")
        assert (entry.calls, entry.calls_7d) == (13, 2)
        # A new version registers beside it: the upgraded keys and counts stay.
        store.register("shop", [Source("shop.api:v2", "shop/api.py", (9,))], T0, "fp-shop-3")
        heatmap = store.fetch("shop", now_ms=T0)
        assert len(heatmap.entries) == 5
        assert len(heatmap.versions) == 2
        assert {e.key: e.calls for e in heatmap.entries}["shop.views:cart"] == 2**53 + 11
    finally:
        for s in stores:
            s.close()


def test_the_fingerprintless_version_is_replaced_and_the_newest_version_never_retires(two):
    first, second = two
    first.register("shop", [Source("m.a"), Source("m.b")], T0)
    first.report(_vbatch("i1", 1, {"m.a": 1, "m.b": 2}, T0))
    result = second.register("shop", [Source("m.b"), Source("m.c")], T0 + 1)  # "" again: its set is replaced
    assert (result.kept, result.added, result.removed) == (1, 1, 1)
    heatmap = first.fetch("shop", now_ms=T0)
    assert {e.key: e.calls for e in heatmap.entries} == {"m.b": 2, "m.c": 0}
    assert [(v.fingerprint, v.keys, v.first_seen_ms) for v in heatmap.versions] == [("", 2, T0)]
    assert first.history("shop", ["m.a"]) == {}
    # A stopped fleet keeps its heatmap: its one (most recently seen) version is never retired.
    assert second.retire(T0 + 400 * DAY) == {}
    first.register("shop", [Source("m.d")], T0 + 2, "fp-d")
    first.touch_version("shop", "", T0 + 2)  # a tie: the newest version stays
    assert [v.fingerprint for v in second.retire(T0 + 400 * DAY)["shop"]] == [""]
    assert [e.key for e in first.fetch("shop").entries] == ["m.d"]


def test_coldmod_store_copy_carries_versions_and_history_between_redis_and_sqlite(server, tmp_path: Path):
    """Redis -> Redis, and Redis -> SQLite -> Redis: the versions, memberships and every day arrive as they were."""
    from coldmod_cli.server.sqlite_store import SqliteStore

    source = RedisStore(server.url)
    source._client.flushall()
    try:
        source.register("shop", [Source("m.a", "a.py", (1,)), Source("m.b")], T0, "fp-1", version="v1")
        source.register("shop", [Source("m.b"), Source("m.c")], T0 + 1, "fp-2", version="v2")
        for n in range(4):  # days spread over buckets, today's in the keys' last values
            source.report(_vbatch("i1", n + 1, {"m.a": 1 + n, "m.b": 2, "m.c": n}, T0 + n * 33 * DAY))
        now = T0 + 100 * DAY
        original = source.fetch("shop", now_ms=now, all_history=True)
    finally:
        source.close()
    assert original.entries[1].days == tuple(T0 // DAY + n * 33 for n in range(4))
    redis_copy = server.url.rsplit("/", 1)[0] + "/5"
    sqlite_copy = f"sqlite://{tmp_path / 'copy.db'}"
    hops = [(server.url, redis_copy)]
    if hasattr(SqliteStore, "history"):  # the SQLite store of issue 17 (branch i17-sqlite) carries them too
        hops += [(redis_copy, sqlite_copy), (sqlite_copy, server.url.rsplit("/", 1)[0] + "/6")]
    for src, dst in hops:
        done = _coldmod("store", "copy", src, dst)
        assert done.returncode == 0, done.stderr
        copied = open_store(dst)
        try:
            got = copied.fetch("shop", now_ms=now, all_history=True)
        finally:
            copied.close()
        assert got.entries == original.entries, dst
        assert [(v.fingerprint, v.label, v.first_seen_ms, v.last_seen_ms, v.keys) for v in got.versions] == [
            (v.fingerprint, v.label, v.first_seen_ms, v.last_seen_ms, v.keys) for v in original.versions
        ]


def test_a_register_lease_holds_across_collectors_on_their_clock(two):
    """Store.lease: one sender per version's set, whichever collector the fleet reaches; expiry on now_ms."""
    first, second = two
    assert first.lease("shop", "fp", "a", 1000, 10_000)
    assert not second.lease("shop", "fp", "b", 10_999, 10_000), "a's until 11,000, on the other collector too"
    assert second.lease("shop", "fp-2", "b", 5000, 10_000), "another version's set: another lease"
    assert first.lease("shop", "fp", "a", 5000, 10_000), "the holder renews (to 15,000)"
    assert not second.lease("shop", "fp", "b", 14_999, 10_000)
    assert second.lease("shop", "fp", "b", 15_000, 10_000), "expired: b takes it"
    first.release("shop", "fp", "a")  # not a's any more: nothing happens
    assert not first.lease("shop", "fp", "a", 16_000, 10_000)
    second.release("shop", "fp")  # the set was stored: whoever held it lets go
    assert first.lease("shop", "fp", "a", 16_000, 10_000)
    key = AppKeys.of("shop").lease("fp")
    assert 0 < first._client.pttl(key) <= 10_000 + 3_600_000  # an unreleased lease is collected, never kept

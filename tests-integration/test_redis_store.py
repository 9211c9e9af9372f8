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

from coldmod_cli.server.process import collector_command
from coldmod_cli.server.redis_process import RedisProcess
from coldmod_cli.server.redis_store import DEDUPE_KEEP, DEDUPE_TTL_MS, AppKeys, RedisStore
from coldmod_cli.server.store import (
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
        slots = {key_slot(k.encode()) for k in [*keys.all(), keys.instance("i-1"), keys.instance("{i}")]}
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

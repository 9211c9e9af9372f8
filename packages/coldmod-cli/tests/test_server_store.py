"""The stores on their own: group merging, change notifications (on SQLite and Redis), pruning, files."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time

import grpc
import pytest
from server_fixtures import (
    INSECURE,
    STORES,
    fetch,
    sources,
    start_server_fixture,  # noqa: F401 - the start_server fixture
)

from coldmod_cli.server import open_store
from coldmod_cli.server.service import is_loopback
from coldmod_cli.server.sqlite_store import SqliteStore
from coldmod_cli.server.store import (
    Batch,
    Change,
    CountOverflow,
    Entry,
    Heatmap,
    SchemaError,
    Source,
    StoreError,
    TooManyApps,
    Version,
)
from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc
from coldmod_trace.config import client_channel, client_config

pytestmark = pytest.mark.timeout(120)


def _batch(instance: str, seq: int, calls: dict[str, int], start: int, end: int, est: bool = False) -> Batch:
    keys = list(calls)
    return Batch("shop", instance, seq, start, end, keys, [calls[k] for k in keys], [est] * len(keys))


#: Tests of what every store promises run on SQLite and on a real redis-server.
EVERY_STORE = pytest.mark.parametrize("store_kind", STORES, indirect=True)


@pytest.fixture
def store(store_url):
    """A three-key app on the store of ``store_kind`` (SQLite unless a test asks for EVERY_STORE)."""
    opened = open_store(store_url)
    opened.register("shop", [Source("m.a"), Source("m.b"), Source("m.c")], 1000)
    yield opened
    opened.close()


def _entries(store) -> dict:
    return {e.key: e for e in store.fetch("shop").entries}


@EVERY_STORE
def test_batches_waiting_together_are_merged_exactly(store):
    batches = [
        _batch(f"i{n}", 1, {"m.a": n + 1, "m.b": 1}, start=5000 + n, end=6000 + n, est=(n == 3)) for n in range(40)
    ]
    threads = [threading.Thread(target=store.report, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = _entries(store)
    assert entries["m.a"].calls == sum(range(1, 41))
    assert entries["m.b"].calls == 40
    assert (entries["m.a"].first_seen_ms, entries["m.a"].last_seen_ms) == (5000, 6039)
    assert entries["m.a"].estimated
    assert entries["m.b"].estimated
    assert entries["m.c"].calls == 0


@EVERY_STORE
def test_subscribers_hear_each_commit_with_the_changed_keys(store):
    heard: list[Change] = []
    unsubscribe = store.subscribe(heard.append)
    store.report(_batch("i1", 1, {"m.a": 1, "gone": 3}, 2000, 3000))
    store.register("shop", [Source("m.a"), Source("m.d")], 4000)
    store.reset("shop", 5000)
    unsubscribe()
    store.report(_batch("i1", 2, {"m.a": 1}, 6000, 7000))
    assert heard == [
        Change("shop", "report", frozenset({"m.a"})),
        Change("shop", "register"),
        Change("shop", "reset"),
    ]


@EVERY_STORE
def test_a_failing_subscriber_does_not_fail_the_write(store):
    def broken(change: Change) -> None:
        raise RuntimeError("boom")

    store.subscribe(broken)
    assert not store.report(_batch("i1", 1, {"m.a": 1}, 2000, 3000)).duplicate
    assert _entries(store)["m.a"].calls == 1


@EVERY_STORE
def test_restore_makes_the_app_exactly_the_heatmap_and_twice_is_once(store):
    big = 2**63 - 1 - 2**40  # past 2**62 and past doubles' exact range
    entries = [
        Entry("m.a", big, True, 1500, 2500, 1000, "m.py", (3, 9), True),
        Entry("m.b", 5, False, 1200, 2600, 900, "m.py", (12,), False),
        Entry("m.new", 0, False, 0, 0, 1100, "", (), False),
    ]
    heatmap = Heatmap("shop", entries, 800, 4, 2**62 + 3)
    heard: list[Change] = []
    store.subscribe(heard.append)
    store.report(_batch("i1", 1, {"m.c": 7, "gone": 1}, 2000, 3000))  # replaced, not merged
    for _ in range(2):
        store.restore(heatmap, "print-1")
        restored = store.fetch("shop")
        # A heatmap without versions (from an older store) becomes one version holding every key.
        assert restored.entries == [e._replace(versions=(0,)) for e in entries]
        assert restored.versions == [Version("print-1", "", 800, 800, 3)]
        assert (restored.registered_ms, restored.dropped_unknown, restored.dropped_updates) == (800, 4, 2**62 + 3)
        assert store.fingerprint("shop") == "print-1"
    assert heard[-2:] == [Change("shop", "register")] * 2
    store.restore(Heatmap("web", [entries[1]], 700, 0, 0))  # a new app
    assert [(a.app, a.keys, a.calls) for a in store.list_apps()] == [("shop", 3, big + 5), ("web", 1, 5)]
    # The restored app takes Reports on its new set (and refuses to pass 2**63 - 1 as before).
    assert store.report(_batch("i2", 1, {"m.new": 2, "m.c": 1}, 3000, 4000)).unknown_keys == 1
    assert _entries(store)["m.new"].calls == 2
    with pytest.raises(CountOverflow):
        store.report(_batch("i2", 2, {"m.a": 2**40 + 1}, 3000, 4000))
    assert _entries(store)["m.a"].calls == big


def test_restore_beyond_the_app_limit_or_64_bits_changes_nothing(tmp_path):
    store = SqliteStore(tmp_path / "s.db", max_apps=1)
    try:
        store.register("shop", [Source("m.a")], 1000)
        with pytest.raises(TooManyApps):
            store.restore(Heatmap("web", [], 1000, 0, 0))
        store.restore(Heatmap("shop", [Entry("m.b", 1, False, 1, 2, 1, "", ())], 1000, 0, 0))  # not new: fine
        with pytest.raises(CountOverflow):
            store.restore(Heatmap("shop", [Entry("m.c", 2**63, False, 1, 2, 1, "", ())], 1000, 0, 0))
        assert [(e.key, e.calls) for e in store.fetch("shop").entries] == [("m.b", 1)]
        assert store.count_apps() == 1
    finally:
        store.close()


def test_gc_pause_resumes_when_the_last_builder_is_done_and_keeps_a_disabled_gc_off():
    import gc

    from coldmod_cli.server.store import gc_paused

    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()

    def other_builder() -> None:
        with gc_paused():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other_builder)
    with gc_paused():
        thread.start()
        inside.wait(10)
        assert not gc.isenabled()
    assert not gc.isenabled(), "the other thread still builds"
    release.set()
    thread.join()
    assert gc.isenabled()
    gc.disable()  # the process's own choice survives a pause
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_old_batch_ids_are_pruned_but_still_refused(store):
    store.report(_batch("i1", 1, {"m.a": 1}, 2000, 3000))
    store.report(_batch("i1", 2, {"m.a": 1}, 2000, 3000))
    db = sqlite3.connect(store.path, isolation_level=None)
    db.execute("UPDATE batches SET applied_ms = applied_ms - 2 * 86400000")  # two days old
    store._next_prune = 0.0
    store.report(_batch("other", 1, {"m.b": 1}, 2000, 3000))  # the writer prunes after this write
    deadline = time.monotonic() + 10
    while db.execute("SELECT count(*) FROM batches WHERE instance_id = 'i1'").fetchone() != (0,):
        assert time.monotonic() < deadline, "the old batch ids were not pruned"
        time.sleep(0.02)
    assert db.execute("SELECT pruned_through FROM instances WHERE instance_id = 'i1'").fetchone() == (2,)
    db.close()
    assert store.report(_batch("i1", 1, {"m.a": 1}, 2000, 3000)).duplicate
    assert store.report(_batch("i1", 2, {"m.a": 1}, 2000, 3000)).duplicate
    assert not store.report(_batch("i1", 3, {"m.a": 1}, 2000, 3000)).duplicate
    assert _entries(store)["m.a"].calls == 3


def test_reopening_keeps_everything(tmp_path):
    path = tmp_path / "s.db"
    first = SqliteStore(path)
    first.register("shop", [Source("m.a", "m.py", (3, 9))], 1000)
    first.report(_batch("i1", 1, {"m.a": 4}, 2000, 3000))
    first.close()
    first.close()  # idempotent
    second = SqliteStore(path)
    try:
        entry = second.fetch("shop").entries[0]
        assert (entry.key, entry.calls, entry.path, entry.lines) == ("m.a", 4, "m.py", (3, 9))
        assert second.report(_batch("i1", 1, {"m.a": 4}, 2000, 3000)).duplicate
    finally:
        second.close()


def test_store_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    urls = [("sqlite://rel.db", "rel.db"), ("plain.db", "plain.db"), (f"sqlite://{tmp_path}/abs.db", "abs.db")]
    for url, name in urls:
        opened = open_store(url)
        assert opened.url == f"sqlite://{tmp_path / name}"
        opened.close()
    with pytest.raises(StoreError, match="Redis"):
        open_store("redis://localhost")


def test_a_schema_without_a_migration_path_is_refused(tmp_path):
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 0")
    db.close()
    with pytest.raises(SchemaError, match="cannot migrate"):
        SqliteStore(path)


def test_is_loopback():
    assert is_loopback("ipv4:127.0.0.1:5000")
    assert is_loopback("ipv6:[::1]:5000")
    assert is_loopback("unix:/tmp/socket")
    assert not is_loopback("ipv4:10.0.0.7:5000")
    assert not is_loopback("ipv6:[2001:db8::1]:5000")


def _outward_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_insecure_reset_is_refused_from_another_machine(start_server):
    address = _outward_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address")
    server = start_server(args=("--grpc-host", "0.0.0.0:0", "--allow-remote-insecure"))
    assert "warning: insecure mode serves gRPC on 0.0.0.0" in server.stderr
    server.tracing().Register(pb.RegisterRequest(app="shop", sources=sources("m.a")))
    with client_channel(client_config(f"{address}:{server.port}", env=INSECURE)) as remote:
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.HeatmapStub(remote).Reset(pb.ResetRequest(app="shop"), timeout=10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # Reading stays open to everyone in insecure mode.
        assert fetch(pb_grpc.HeatmapStub(remote), "shop", timeout=10).app == "shop"


@pytest.mark.parametrize("bulk", [True, False], ids=["one-statement", "row-by-row"])
def test_both_ways_of_writing_a_group_agree(store, bulk):
    assert store._bulk, "this SQLite runs the one-statement update; the test forces the fallback"
    store._bulk = bulk
    store.report(_batch("i1", 1, {"m.a": 2**62, "m.b": 3}, 2000, 3000, est=True))
    store.report(_batch("i1", 2, {"m.a": 2**62 - 1, "m.b": 4}, 1500, 3500))
    with pytest.raises(CountOverflow):  # one past 2**63 - 1: refused whole, m.b's delta too
        store.report(_batch("i1", 3, {"m.b": 100, "m.a": 1}, 2500, 4600))
    entries = _entries(store)
    assert entries["m.a"].calls == 2**63 - 1
    assert (entries["m.b"].calls, entries["m.b"].estimated) == (7, True)
    assert (entries["m.b"].first_seen_ms, entries["m.b"].last_seen_ms) == (1500, 3500)


def test_serve_in_process_reports_ready_and_stops(tmp_path, monkeypatch, capsys):
    from coldmod_cli.server import ServerInfo, serve

    monkeypatch.setenv("COLDMOD_INSECURE", "on")
    seen: list[ServerInfo] = []
    result: list[int] = []

    def ready(info: ServerInfo) -> None:
        seen.append(info)
        with client_channel(client_config(f"127.0.0.1:{info.grpc_port}", env=INSECURE)) as channel:
            assert pb_grpc.HeatmapStub(channel).ListApps(pb.ListAppsRequest(), timeout=10).apps == []
        info.stop()

    # Not the main thread: no signal handlers, info.stop() is the way out.
    thread = threading.Thread(
        target=lambda: result.append(serve("127.0.0.1:0", "127.0.0.1:0", f"sqlite://{tmp_path}/s.db", ready=ready))
    )
    thread.start()
    thread.join(30)
    assert result == [0]
    assert seen[0].grpc_port > 0
    assert seen[0].store_url == f"sqlite://{tmp_path}/s.db"
    err = capsys.readouterr().err
    assert f"coldmod: gRPC listening on 127.0.0.1:{seen[0].grpc_port} (plaintext, no authentication)" in err
    assert "coldmod: stopped" in err

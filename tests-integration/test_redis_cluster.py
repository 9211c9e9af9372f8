"""The Redis store on a real 3-primary Redis Cluster (Debian's redis-server, loopback ports).

Apps spread over the nodes (each app's keys share one hash slot), every
script runs on its app's node, and a batch resent to another collector is
still applied exactly once.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis.crc import key_slot
from redis_helpers import Collector, report, sources, tls_env

from coldmod_cli.server.redis_process import RedisProcess
from coldmod_cli.server.redis_store import AppKeys, RedisStore
from coldmod_cli.server.store import Batch, Heatmap, Source, StoreError, UnknownApp, open_store
from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[RedisProcess]]:
    """Three cluster-enabled redis-servers joined as one cluster of three primaries; all stopped at the end."""
    nodes: list[RedisProcess] = []
    try:
        for _ in range(3):
            node = RedisProcess(extra=("--cluster-enabled", "yes", "--cluster-node-timeout", "2000"))
            nodes.append(node.start())
        addresses = [f"127.0.0.1:{n.port}" for n in nodes]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 20
        for node in nodes:  # every node agrees the cluster is up
            with redis.Redis(port=node.port, decode_responses=True) as client:
                while client.cluster("info").get("cluster_state") != "ok":
                    assert time.monotonic() < deadline, "the cluster did not come up"
                    time.sleep(0.05)
        yield nodes
    finally:
        for node in nodes:
            node.close()


@pytest.fixture
def url(cluster: list[RedisProcess]) -> str:
    """The store URL through the first node, on an emptied cluster."""
    for node in cluster:
        with redis.Redis(port=node.port) as client:
            client.flushall()
    return f"redis://127.0.0.1:{cluster[0].port}/0?cluster=1"


def _batch(app: str, instance: str, seq: int, calls: dict[str, int]) -> Batch:
    keys = list(calls)
    return Batch(app, instance, seq, 1000, 2000, keys, [calls[k] for k in keys], [False] * len(keys))


def test_apps_spread_over_the_nodes_and_each_lives_whole_on_one(url: str, cluster: list[RedisProcess]):
    store = open_store(url)
    try:
        assert store.url == f"redis://127.0.0.1:{cluster[0].port}/0?cluster=1"
        names = [f"app{n}" for n in range(12)]
        for name in names:
            store.register(name, [Source("m.a"), Source("m.b")], 1000)
            store.report(_batch(name, "i1", 1, {"m.a": 2**62 + 1, "m.b": 1}))
        holders: dict[str, set[int]] = {}
        for node in cluster:
            with redis.Redis(port=node.port, decode_responses=True) as client:
                for key in client.keys("coldmod:{*"):
                    holders.setdefault(key.split("{")[1].split("}")[0], set()).add(node.port)
        assert set(holders) == set(names)
        assert all(len(ports) == 1 for ports in holders.values()), f"an app's keys span nodes: {holders}"
        assert len(set().union(*holders.values())) == 3, "the apps did not spread over the three nodes"
        assert [a.app for a in store.list_apps()] == sorted(names)
        assert [(a.keys, a.calls) for a in store.list_apps(after="app5", limit=1)] == [(2, 2**62 + 2)]
        assert store.count_apps() == 12
        heatmap = store.fetch("app3")
        assert [(e.key, e.calls) for e in heatmap.entries] == [("m.a", 2**62 + 1), ("m.b", 1)]
        store.restore(Heatmap("app3", heatmap.entries[:1], 500, 2, 3, heatmap.versions), "print-9")
        assert (store.fetch("app3").entries, store.fingerprint("app3")) == (heatmap.entries[:1], "print-9")
        assert store.reset("app4", 5000) == 2
        assert store.delete_app("app5") == 2
        with pytest.raises(UnknownApp):
            store.fetch("app5")
        assert "Redis 7" in store.info().store
    finally:
        store.close()


def test_a_batch_resent_to_another_collector_is_applied_once_on_the_cluster(url: str):
    first, second = RedisStore(url), RedisStore(url)
    try:
        apps = [f"shop{n}" for n in range(6)]  # on several nodes
        for app in apps:
            first.register(app, [Source("m.a")], 1000)
        results: list[tuple[str, bool]] = []
        lock = threading.Lock()

        def send(store: RedisStore, app: str, seq: int) -> None:
            result = store.report(_batch(app, "i1", seq, {"m.a": 5}))
            with lock:
                results.append((app, result.duplicate))

        threads = [
            threading.Thread(target=send, args=(store, app, seq))
            for app in apps
            for seq in (1, 2)
            for store in [first, second] * 5
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for app in apps:
            assert sorted(d for a, d in results if a == app) == [False] * 2 + [True] * 18
            assert [e.calls for e in second.fetch(app).entries] == [10]
        slots = {AppKeys.of(app).meta for app in apps}
        assert len({redis.crc.key_slot(k.encode()) for k in slots}) == len(apps)
    finally:
        first.close()
        second.close()


def test_changes_through_one_collector_reach_the_other_on_the_cluster(url: str):
    from coldmod_cli.server.store import Change

    first, second = RedisStore(url), RedisStore(url)
    try:
        heard: list[Change] = []
        second.subscribe(heard.append)
        time.sleep(0.3)  # the subscriber thread subscribes
        apps = [f"web{n}" for n in range(6)]  # apps on every node: pub/sub reaches across the cluster
        for app in apps:
            first.register(app, [Source("m.a")], 1000)
            first.report(_batch(app, "i1", 1, {"m.a": 1}))
        deadline = time.monotonic() + 5
        while len(heard) < 2 * len(apps) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted((c.app, c.kind) for c in heard) == sorted(
            (app, kind) for app in apps for kind in ("register", "report")
        )
    finally:
        first.close()
        second.close()


def test_a_cluster_url_refusals_are_one_sentence(cluster: list[RedisProcess]):
    port = cluster[0].port
    with pytest.raises(StoreError, match="only database 0"):
        open_store(f"redis://127.0.0.1:{port}/2?cluster=1")
    with pytest.raises(StoreError, match="is not 1 or 0"):
        open_store(f"redis://127.0.0.1:{port}/0?cluster=maybe")
    with RedisProcess() as single:  # not a cluster node
        with pytest.raises(StoreError, match="drop \\?cluster=1"):
            open_store(f"{single.url}?cluster=1")


def test_serve_help_names_the_cluster_url_form():
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")}
    done = subprocess.run(
        [sys.executable, "-m", "coldmod_cli", "serve", "--help"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert "?cluster=1 for a" in done.stdout + done.stderr


def test_a_collector_on_the_cluster_acknowledges_each_batch_once(url: str, tmp_path):
    env = tls_env(tmp_path)  # production: TLS and an API key
    del env["COLDMOD_REDIS_PASSWORD"]  # this cluster asks for none
    collector = Collector(url, env).start()
    try:
        with collector.channel() as channel:
            tracing = pb_grpc.TracingStub(channel)
            tracing.Register(pb.RegisterRequest(app="shop", sources=sources(["m.a", "m.b"])), timeout=30)
            answers = [tracing.Report(report("shop", "i1", 1, {"m.a": 3, "gone": 1}), timeout=10) for _ in range(3)]
            assert [a.duplicate for a in answers] == [False, True, True]
        store = RedisStore(url)
        try:
            heatmap = store.fetch("shop")
        finally:
            store.close()
        assert [(e.key, e.calls) for e in heatmap.entries] == [("m.a", 3), ("m.b", 0)]
        assert heatmap.dropped_unknown == 1
        assert collector.terminate() == 0
    finally:
        collector.kill()


def test_versions_history_retirement_and_the_upgrade_run_whole_on_each_apps_node(url: str, cluster: list[RedisProcess]):
    """Every issue-17 script names history keys from the app's tag: same slot, so each runs on one node."""
    import json
    from pathlib import Path

    from test_redis_store import _load_dump

    from coldmod_cli.server.store import DAY_MS

    day0 = 20_500
    t0 = day0 * DAY_MS
    fixture = json.loads((Path(__file__).parent / "fixtures" / "redis_v1_dataset.json").read_text())
    with redis.RedisCluster(host="127.0.0.1", port=cluster[0].port, decode_responses=True) as client:
        _load_dump(client, fixture["keys"])  # the previous release's dataset, spread over the nodes
    first, second = RedisStore(url), RedisStore(url)
    try:
        upgraded = first.fetch("shop", now_ms=t0)
        assert [v.fingerprint for v in upgraded.versions] == [fixture["heatmaps"]["shop"]["fingerprint"]]
        assert [e.calls for e in upgraded.entries] == [e[1] for e in fixture["heatmaps"]["shop"]["entries"]]
        names = [f"app{n}" for n in range(9)]
        for n, name in enumerate(names):
            first.register(
                name, [Source("m.shared"), Source("m.old")], t0 - DAY_MS, "fp-old", instance_id=f"{name}-old"
            )
            second.register(
                name, [Source("m.shared"), Source("m.new")], t0 - DAY_MS, "fp-new", instance_id=f"{name}-new"
            )
            for seq, (store, start) in enumerate([(first, t0 - 5000), (second, t0 + 5000)], start=1):
                keys = ["m.shared", "m.old", "m.new"]
                batch = Batch(name, "i1", seq, start, start + 1000, keys, [n + 1, 2, 3], [False] * 3)
                assert store.report(batch).unknown_keys == 0
            second.report(Batch(name, f"{name}-new", 1, t0 + 40 * DAY_MS, t0 + 40 * DAY_MS, ["m.new"], [1], [False]))
        for name in names:
            meta_slot = key_slot(AppKeys.of(name).meta.encode())
            owners = set()
            for node in cluster:
                with redis.Redis(port=node.port, decode_responses=True) as client:
                    history = list(client.scan_iter(AppKeys.of(name).meta[: -len("meta")] + "h:*"))
                    if history:
                        owners.add(node.port)
                        assert {key_slot(k.encode()) for k in history} == {meta_slot}
            assert len(owners) == 1, f"{name}'s history spans nodes"
        retired = second.retire(t0 + 35 * DAY_MS)  # the old version was last seen on day0 - 1
        assert sorted(retired) == sorted(names)  # "quiet" (upgraded, silent since 2025) keeps its only version
        for n, name in enumerate(names):
            heatmap = first.fetch(name, now_ms=t0 + 40 * DAY_MS, all_history=True)
            assert {e.key: (e.calls, e.days, e.day_calls) for e in heatmap.entries} == {
                "m.shared": (2 * (n + 1), (day0 - 1, day0), (n + 1, n + 1)),
                "m.new": (7, (day0 - 1, day0, day0 + 40), (3, 3, 1)),
            }
            assert [v.fingerprint for v in heatmap.versions] == ["fp-new"]
            assert first.history(name, ["m.new"]) == {"m.new": ((day0 - 1, day0, day0 + 40), (3, 3, 1))}
        copy = first.fetch("app4", now_ms=t0 + 40 * DAY_MS, all_history=True)
        second.restore(Heatmap("app5", copy.entries, copy.registered_ms, 0, 0, copy.versions))
        assert second.fetch("app5", now_ms=t0 + 40 * DAY_MS, all_history=True).entries == copy.entries
    finally:
        first.close()
        second.close()

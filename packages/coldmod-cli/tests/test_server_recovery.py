"""The SQLite store after faults: a full disk recovers once space is freed, and says so in few lines;
older stores migrate; a cancelled Register writes nothing."""

from __future__ import annotations

import sqlite3
import threading
import time

import grpc
import pytest
from server_fixtures import (
    INSECURE,
    ServerProcess,
    fetch,
    heat,
    now_ms,
    report,
    sources,
    start_server_fixture,  # noqa: F401 - the start_server fixture
)

from coldmod_cli.server import open_store
from coldmod_cli.server.registrar import Registrar
from coldmod_cli.server.store import Source
from coldmod_proto.v1 import coldmod_pb2 as pb

pytestmark = pytest.mark.timeout(120)


def _register(tracing, app: str, keys: int) -> bool:
    """Register ``keys`` new keys as ``app``; False when the store could not write."""
    try:
        tracing.Register(pb.RegisterRequest(app=app, sources=sources(*(f"m{n}.f" for n in range(keys)))), timeout=30)
    except grpc.RpcError as exc:
        refusal = (exc.code(), "could not be written" in exc.details())
    else:
        return True
    assert refusal == (grpc.StatusCode.UNAVAILABLE, True)
    return False


def test_a_full_disk_recovers_by_checkpointing_and_logs_a_line_per_interval(tmp_path):
    # Each file may grow to 2 MB: the WAL fills long before SQLite's own checkpoint (at ~16 MB).
    server = ServerProcess(tmp_path / "c.db", INSECURE, max_file_bytes=2 * 1024 * 1024)
    try:
        tracing = server.tracing()
        outcomes = [_register(tracing, f"app-{n:03d}", 1500) for n in range(40)]
        assert outcomes[0]
        first_failure = outcomes.index(False)
        assert True in outcomes[first_failure:], "after a failed write the next one checkpoints and succeeds"
        failures = outcomes.count(False)
        assert outcomes[-5:] == [False] * 5, "the database file itself is full now"
        logged = [line for line in server.lines if "write(s) failed" in line]
        assert 1 <= len(logged) <= 2 < failures, f"{failures} failures logged as {len(logged)} lines"
        # Free the space: the next write goes through and it is said once.
        server.set_max_file_bytes(1024 * 1024 * 1024)
        assert _register(tracing, "after", 10)
        time.sleep(0.2)
        assert 1 <= sum("writes succeed again" in line for line in server.lines) <= 2
        assert len(fetch(server.heatmap(), "app-000").entries) == 1500, "nothing written before was lost"
        assert server.terminate()[0] == 0
    finally:
        server.close()
    db = sqlite3.connect(tmp_path / "c.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()


_SCHEMA_1 = """
CREATE TABLE apps (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, fingerprint TEXT NOT NULL DEFAULT '',
    registered_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, dropped_unknown INTEGER NOT NULL DEFAULT 0,
    dropped_updates INTEGER NOT NULL DEFAULT 0);
CREATE TABLE keys (id INTEGER PRIMARY KEY, app_id INTEGER NOT NULL REFERENCES apps(id), key TEXT NOT NULL,
    path TEXT NOT NULL, lines TEXT NOT NULL, UNIQUE (app_id, key));
CREATE TABLE counts (id INTEGER PRIMARY KEY REFERENCES keys(id), calls INTEGER NOT NULL DEFAULT 0,
    estimated INTEGER NOT NULL DEFAULT 0, first_seen_ms INTEGER NOT NULL DEFAULT 0,
    last_seen_ms INTEGER NOT NULL DEFAULT 0, tracked_since_ms INTEGER NOT NULL);
CREATE TABLE batches (instance_id TEXT NOT NULL, sequence INTEGER NOT NULL, applied_ms INTEGER NOT NULL,
    unknown_keys INTEGER NOT NULL, PRIMARY KEY (instance_id, sequence)) WITHOUT ROWID;
CREATE INDEX batches_applied ON batches (applied_ms);
CREATE TABLE instances (instance_id TEXT PRIMARY KEY, pruned_through INTEGER NOT NULL, last_ms INTEGER NOT NULL)
    WITHOUT ROWID;
INSERT INTO apps VALUES (1, 'shop', 'fp', 1000, 2000, 0, 0);
INSERT INTO keys VALUES (1, 1, 'm.a', 'm.py', '1'), (2, 1, 'm.b', 'm.py', '5');
INSERT INTO counts VALUES (1, 42, 1, 1500, 1900, 1000), (2, 0, 0, 0, 0, 1000);
INSERT INTO batches VALUES ('i1', 7, {applied_ms}, 0);
PRAGMA application_id = 1131375716;
PRAGMA user_version = 1;
"""


def test_a_schema_1_store_migrates_keeping_counts_and_batch_ids(tmp_path, start_server):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    # Applied just now: a batch id older than a day and an instance silent for 30 days are forgotten by design.
    db.executescript(_SCHEMA_1.replace("{applied_ms}", str(now_ms())))
    db.close()
    server = start_server(store=path)
    entries = heat(server.heatmap(), "shop")
    assert [(k, e.calls, e.estimated, e.lower_bound) for k, e in sorted(entries.items())] == [
        ("m.a", 42, True, False),
        ("m.b", 0, False, False),
    ]
    tracing = server.tracing()
    assert tracing.Report(report("shop", "i1", 7, {"m.a": 1})).duplicate, "applied batch ids survive"
    lower = report("shop", "i1", 8, {"m.b": 3})
    lower.deltas[0].lower_bound = True
    tracing.Report(lower)
    assert heat(server.heatmap(), "shop")["m.b"].lower_bound
    assert server.terminate()[0] == 0
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (3,)


class _Context:
    """The part of a gRPC servicer context the registrar uses; ``leave()`` is the client going away."""

    def __init__(self) -> None:
        self._active = True

    def is_active(self) -> bool:
        return self._active

    def leave(self) -> None:
        self._active = False

    def abort(self, code, details):
        raise RuntimeError(f"{code.name}: {details}")


def test_a_register_whose_client_left_while_waiting_writes_nothing(tmp_path):
    store = open_store(f"sqlite://{tmp_path}/s.db")
    try:
        registrar = Registrar(store, lambda: 5000)
        store.register("shop", [Source("m.a")], 1000)
        outcome: list[BaseException] = []
        context = _Context()
        request = pb.RegisterRequest(app="shop", sources=sources("m.b", "m.c"))

        def late() -> None:
            try:
                registrar.register(request, context)
            except BaseException as exc:
                outcome.append(exc)

        with registrar._gate("shop", lambda: True):  # another Register of the app is in progress
            waiter = threading.Thread(target=late)
            waiter.start()
            time.sleep(0.3)
            context.leave()  # the client's deadline passed while it waited
            waiter.join(5)
        assert not waiter.is_alive(), "a waiting call whose client left gives up"
        assert "CANCELLED" in str(outcome[0])
        assert [e.key for e in store.fetch("shop").entries] == ["m.a"], "nothing was written for it"
        assert registrar._gates == {}, "no gate is kept for an app nobody registers"
    finally:
        store.close()

"""The collector under load and size, in the production configuration (TLS + API key).

Connect streams beyond the handler pool, a fleet of 48 workers of a
200,000-function app registering at once, an app at the size limits fetched
whole, identical Registers coalesced in bounded memory.
"""

from __future__ import annotations

import functools
import random
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from server_fixtures import (
    report,
    sources,
    start_server_fixture,  # noqa: F401 - the start_server fixture
    tls_env_fixture,  # noqa: F401 - the tls_env fixture
)

from coldmod_cli.client import merge_fetch
from coldmod_cli.server.limits import MAX_KEYS_PER_APP
from coldmod_cli.server.runner import ATTACH_REFUSED, MAX_ATTACH, MAX_WORKERS
from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc
from coldmod_trace.config import MAX_MESSAGE_BYTES
from coldmod_trace.keys import sources_fingerprint

pytestmark = pytest.mark.timeout(180)

FLEET = 48
#: The issue's bound on the collector's memory, whatever the fleet does.
MAX_RSS_KB = 1024 * 1024


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _varint(len(payload)) + payload


@functools.cache
def _big_app() -> tuple[bytes, bytes]:
    """A 200,000-key Register near the message cap (long keys and paths): (full, fingerprint-only).

    Written in the wire format by hand: building 200,000 TraceSource objects
    would cost the test more than the collector's whole Register.
    """
    triples = [
        (
            f"service_{i % 97:02d}.handlers.module_{i // 100:05d}.ResourceHandlerForThingNumber{i:06d}.handle_request",
            f"service_{i % 97:02d}/handlers/module_{i // 100:05d}/a_fairly_long_directory_name/file.py",
            (i % 5000 + 1,),
        )
        for i in range(MAX_KEYS_PER_APP)
    ]
    fingerprint = sources_fingerprint(triples)
    body = b"".join(
        _field(0x1A, _field(0x0A, k.encode()) + _field(0x12, p.encode()) + _field(0x1A, b"".join(map(_varint, ln))))
        for k, p, ln in triples
    )
    full = _field(0x0A, b"big") + body + _field(0x22, fingerprint.encode())
    decoded = pb.RegisterRequest.FromString(full)  # the hand-written bytes are what the tracer would send
    assert (len(decoded.sources), decoded.sources[7].lines, decoded.fingerprint) == (MAX_KEYS_PER_APP, [8], fingerprint)
    probe = pb.RegisterRequest(app="big", fingerprint=fingerprint, fingerprint_only=True).SerializeToString()
    return full, probe


def _raw_register(channel: grpc.Channel):
    """Register taking serialized bytes (the 30 MB message is built once, sent by many clients)."""
    return channel.unary_unary(
        "/coldmod.v1.Tracing/Register", request_serializer=None, response_deserializer=pb.RegisterResponse.FromString
    )


def _peak_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc")


def test_attach_streams_beyond_the_handler_pool_leave_tracers_answered(start_server, tls_env):
    server = start_server(env=tls_env)
    tracing, heatmap = server.tracing(), server.heatmap()
    tracing.Register(pb.RegisterRequest(app="shop", sources=sources("m.a")))
    hold = threading.Event()

    def silent():  # a CLI that connected and says nothing: its handler waits for the hello
        hold.wait(60)
        return
        yield  # pragma: no cover

    connect = pb_grpc.ConnectStub(server.channel())
    streams = [connect.Attach(silent(), timeout=60) for _ in range(MAX_WORKERS + 12)]
    try:
        time.sleep(2)  # every stream has reached the collector
        refused = [s for s in streams if s.done()]
        assert len(refused) >= len(streams) - MAX_ATTACH, "Attach beyond the cap is refused at once"
        assert {(s.code(), s.details()) for s in refused} == {(grpc.StatusCode.RESOURCE_EXHAUSTED, ATTACH_REFUSED)}
        # Tracers and readers are answered while every admitted stream stays open.
        for seq in range(1, 21):
            tracing.Report(report("shop", "i1", seq, {"m.a": 1}), timeout=5)
        assert merge_fetch(heatmap.Fetch(pb.FetchRequest(app="shop"), timeout=5)).entries[0].calls == 20
        health = health_pb2_grpc.HealthStub(server.channel())
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        assert sum(not s.done() for s in streams) <= MAX_ATTACH
        # With every place taken, a caller without the key still learns only that it has none.
        ca = open(tls_env["COLDMOD_TLS_CA"], "rb").read()
        with grpc.secure_channel(server.target, grpc.ssl_channel_credentials(ca)) as stranger:
            with pytest.raises(grpc.RpcError) as err:
                list(pb_grpc.ConnectStub(stranger).Attach(iter([pb.CliEvent()]), timeout=10))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        hold.set()
        for stream in streams:
            stream.cancel()


def test_a_fleet_restart_of_a_200k_function_app_registers_all_and_sends_the_set_once(start_server, tls_env):
    full, probe = _big_app()
    assert len(full) < MAX_MESSAGE_BYTES
    server = start_server(env=tls_env)
    sent_full = [False] * FLEET
    took = [0.0] * FLEET
    errors: list[BaseException] = []
    go = threading.Barrier(FLEET)

    def worker(n: int) -> None:
        """One restarted process, speaking the protocol as the tracer does (backoff on UNAVAILABLE)."""
        register = _raw_register(server.channel())  # a channel (a connection) of its own
        go.wait()
        start = time.monotonic()
        pause = 0.5  # the tracer's backoff: 0.5 s doubling to 30 s, +-20% jitter (coldmod_trace's sender)
        try:
            while True:
                try:
                    if register(probe, timeout=30).need_sources:
                        register(full, timeout=30)
                        sent_full[n] = True
                    break
                except grpc.RpcError as exc:
                    if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        raise
                    time.sleep(pause * (0.8 + 0.4 * random.random()))
                    pause = min(pause * 2, 30.0)
            took[n] = time.monotonic() - start
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(FLEET)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors[:3]
    assert sum(sent_full) == 1, f"{sum(sent_full)} of {FLEET} processes had to send the whole set"
    assert max(took) < 60, f"the last of {FLEET} registered after {max(took):.1f} s"
    (summary,) = server.heatmap().ListApps(pb.ListAppsRequest(), timeout=30).apps
    assert (summary.app, summary.keys) == ("big", MAX_KEYS_PER_APP)
    peak = _peak_rss_kb(server.proc.pid)
    print(f"\n{FLEET} workers x {MAX_KEYS_PER_APP} keys: all registered in {max(took):.2f} s,"
          f" collector peak RSS {peak // 1024} MB", end=" ")  # fmt: skip
    assert peak < MAX_RSS_KB


def test_identical_full_registers_are_converted_once_and_the_app_at_the_limits_is_fetched_whole(start_server, tls_env):
    full, _ = _big_app()
    server = start_server(env=tls_env)
    answers: list[pb.RegisterResponse] = []
    errors: list[BaseException] = []

    def old_tracer() -> None:  # sends the whole set without asking first
        try:
            answers.append(_raw_register(server.channel())(full, timeout=60))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=old_tracer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors[:3]
    added = sorted(a.added for a in answers)
    assert added == [0] * 7 + [MAX_KEYS_PER_APP], "one Register did the work, the others found it done"
    # What Register accepted, Fetch returns: streamed in parts well under the message cap.
    parts = list(server.heatmap().Fetch(pb.FetchRequest(app="big"), timeout=120))
    assert len(parts) > 1
    assert max(p.ByteSize() for p in parts) < MAX_MESSAGE_BYTES // 4
    merged = merge_fetch(parts)  # what `coldmod fetch`, `cold` and `rm --cold` do with them
    assert len(merged.entries) == MAX_KEYS_PER_APP
    assert len({e.key for e in merged.entries}) == MAX_KEYS_PER_APP
    peak = _peak_rss_kb(server.proc.pid)
    print(f"\n8 identical full Registers and a whole Fetch: collector peak RSS {peak // 1024} MB", end=" ")
    assert peak < MAX_RSS_KB


class _Context:
    """The part of a servicer context Fetch uses: the client is there until ``leave()``."""

    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active

    def abort(self, code, details):
        raise RuntimeError(f"{code.name}: {details}")


def test_fetch_holds_at_most_a_few_snapshots_at_once(tmp_path):
    from coldmod_cli.server import open_store
    from coldmod_cli.server.service import FETCH_WAITERS, FETCHES_AT_ONCE, HeatmapService
    from coldmod_cli.server.store import Source

    store = open_store(f"sqlite://{tmp_path}/s.db")
    try:
        store.register("shop", [Source(f"m.f{n}") for n in range(12_000)], 1000)  # three parts each
        service = HeatmapService(store, insecure=False, max_apps=10)
        slow = [service.Fetch(pb.FetchRequest(app="shop"), _Context()) for _ in range(FETCHES_AT_ONCE)]
        for stream in slow:  # each slow reader holds its snapshot after its first part
            assert len(next(stream).entries) == 5_000
        waiting = _Context()
        got: list[int] = []
        late = threading.Thread(target=lambda: got.extend(len(p.entries) for p in service.Fetch(
            pb.FetchRequest(app="shop"), waiting)))
        late.start()
        time.sleep(0.6)
        assert not got, "one Fetch more than FETCHES_AT_ONCE waits for a turn"
        gone = _Context()
        gone.active = False
        assert list(service.Fetch(pb.FetchRequest(app="shop"), gone)) == [], "a waiting client that left gives up"
        # Waiting is bounded too: readers never take the handler threads tracers need.
        queued = [_Context() for _ in range(FETCH_WAITERS - 1)]
        request = pb.FetchRequest(app="shop")
        queue = [threading.Thread(target=lambda c=c: list(service.Fetch(request, c))) for c in queued]
        for thread in queue:
            thread.start()
        time.sleep(0.3)
        with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED"):
            list(service.Fetch(pb.FetchRequest(app="shop"), _Context()))
        for context in queued:
            context.active = False
        for thread in queue:
            thread.join(5)
        slow[0].close()  # a reader finishes (or leaves): the waiting Fetch goes ahead
        late.join(10)
        assert got == [5_000, 5_000, 2_000]
        for stream in slow[1:]:
            stream.close()
    finally:
        store.close()

"""Collector benchmark: a fleet of simulated tracers against `coldmod serve` on SQLite and on Redis.

Several OS processes each simulate hundreds of tracer instances. Every
instance flushes one batch of 200-2,000 key deltas per interval (open loop,
like real tracers: a flush that comes while the previous batch is still
unacknowledged is merged into the next one, counted as "late"). The servers
are real `python -m coldmod_cli.server` processes on loopback ports: one on a
real SQLite file (with group commit, and committing each batch alone), and
1, 2 or 3 sharing one real redis-server (AOF, appendfsync everysec), the
tracers spread over them — at the same offered loads, side by side.

Reports sustained key-deltas/s and batches/s (acknowledged), p50/p99
acknowledgement latency, the CPU the collectors, Redis and the clients used
(share of one core), and the collectors' and Redis's CPU per delta — the
figures that do not depend on what else the machine runs, from which the
projection for a fleet is made. `python bench/server.py --quick` for a short run.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

APPS = 4
KEYS_PER_APP = 5000
BATCH_KEYS = (200, 2000)
INSECURE = {"COLDMOD_INSECURE": "on"}


@dataclass
class Config:
    """One benchmark run."""

    name: str
    group_commit: bool
    processes: int
    instances: int  # per process
    interval: float  # seconds between one instance's flushes
    store: str = "sqlite"  # or "redis"
    collectors: int = 1  # collectors sharing the store (Redis only)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


# ------------------------------------------------------------------ worker --


def worker(spec: dict) -> None:
    """One OS process: many tracer instances flushing on their own clocks."""
    import grpc

    from coldmod_proto.v1 import coldmod_pb2 as pb
    from coldmod_trace.config import client_channel, client_config

    rng = random.Random(spec["seed"])
    keys = [[f"app{a}.mod{k // 50}.f{k}" for k in range(KEYS_PER_APP)] for a in range(APPS)]
    now = time.time_ns() // 1_000_000
    channels, templates = [], []
    for n in range(spec["instances"]):
        app = rng.randrange(APPS)
        size = rng.randint(*BATCH_KEYS)
        request = pb.ReportRequest(
            app=f"app{app}",
            instance_id=f"{spec['seed']}-{n}-{os.getpid()}",
            window_start_ms=now - 10_000,
            window_end_ms=now,
            deltas=[pb.KeyDelta(key=k, calls=rng.randint(1, 10_000)) for k in rng.sample(keys[app], size)],
        )
        # Serialized once; a flush appends its sequence number (a later field wins in protobuf).
        templates.append((request.SerializeToString(), size))
        # Tracers spread over the collectors (one address each, as behind a balancer).
        target = spec["targets"][n % len(spec["targets"])]
        channels.append(client_channel(client_config(target, env=INSECURE)))
    calls = [c.unary_unary("/coldmod.v1.Tracing/Report") for c in channels]
    lock = threading.Lock()
    latencies: list[float] = []
    stats = {"batches": 0, "deltas": 0, "late": 0, "errors": 0}
    in_flight = [False] * spec["instances"]
    sequence = [0] * spec["instances"]

    def done(n: int, size: int, sent: float, future: grpc.Future) -> None:
        elapsed = time.perf_counter() - sent
        with lock:
            in_flight[n] = False
            if future.exception() is None:
                if measuring[0]:
                    latencies.append(elapsed)
                    stats["batches"] += 1
                    stats["deltas"] += size
            else:
                stats["errors"] += 1

    start = time.perf_counter() + 0.5
    warmup, duration = spec["warmup"], spec["duration"]
    measuring = [False]
    interval = spec["interval"]
    heap = [(start + rng.uniform(0, interval), n) for n in range(spec["instances"])]
    heapq.heapify(heap)
    stop_at = start + warmup + duration
    while True:
        due, n = heap[0]
        now_s = time.perf_counter()
        measuring[0] = start + warmup <= now_s < stop_at
        if now_s >= stop_at:
            break
        if due > now_s:
            time.sleep(min(due - now_s, 0.05))
            continue
        heapq.heapreplace(heap, (due + interval, n))
        with lock:
            if in_flight[n]:
                if measuring[0]:
                    stats["late"] += 1
                continue
            in_flight[n] = True
        sequence[n] += 1
        body, size = templates[n]
        sent = time.perf_counter()
        future = calls[n].future(body + b"\x18" + _varint(sequence[n]), timeout=30)
        future.add_done_callback(lambda f, n=n, size=size, sent=sent: done(n, size, sent, f))
    deadline = time.perf_counter() + 30
    while any(in_flight) and time.perf_counter() < deadline:
        time.sleep(0.05)
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({**stats, "latencies": latencies, "cpu": usage.ru_utime + usage.ru_stime}))
    for channel in channels:
        channel.close()


# ------------------------------------------------------------------ parent --


def _start_server(store: str, group_commit: bool) -> tuple[subprocess.Popen, str]:
    from coldmod_cli.server.process import collector_command

    args = collector_command(store)
    if not group_commit:
        args.append("--no-group-commit")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")} | INSECURE
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        match = re.search(r"gRPC listening on (\S+) ", line)
        if match:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, match.group(1)
    raise SystemExit(f"the server did not start (exit code {proc.wait()})")


def _register(target: str) -> None:
    from coldmod_proto.v1 import coldmod_pb2 as pb
    from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc
    from coldmod_trace.config import client_channel, client_config

    with client_channel(client_config(target, env=INSECURE)) as channel:
        stub = pb_grpc.TracingStub(channel)
        for a in range(APPS):
            keys = [f"app{a}.mod{k // 50}.f{k}" for k in range(KEYS_PER_APP)]
            sources = [pb.TraceSource(key=k, path=f"mod{k}.py", lines=[1]) for k in keys]
            stub.Register(pb.RegisterRequest(app=f"app{a}", sources=sources), timeout=60)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(config: Config, duration: float, warmup: float) -> dict:
    """Run one configuration; returns its figures."""
    with tempfile.TemporaryDirectory(prefix="coldmod-bench-") as tmp, contextlib.ExitStack() as stack:
        redis = None
        if config.store == "redis":
            from coldmod_cli.server.redis_process import RedisProcess

            redis = stack.enter_context(RedisProcess(Path(tmp) / "redis", appendonly=True))
            url = redis.url
        else:
            url = f"sqlite://{Path(tmp) / 'bench.db'}"
        servers = [_start_server(url, config.group_commit) for _ in range(config.collectors)]
        targets = [target for _, target in servers]
        try:
            _register(targets[0])
            cpu_before = [_cpu_seconds(server.pid) for server, _ in servers]
            redis_before = _cpu_seconds(redis.proc.pid) if redis and redis.proc else 0.0
            workers = [
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--worker",
                        json.dumps(
                            {
                                "targets": targets,
                                "instances": config.instances,
                                "interval": config.interval,
                                "seed": n,
                                "duration": duration,
                                "warmup": warmup,
                            }
                        ),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for n in range(config.processes)
            ]
            results = [json.loads(w.communicate()[0]) for w in workers]
            server_cpu = sum(_cpu_seconds(server.pid) - before for (server, _), before in zip(servers, cpu_before))
            redis_cpu = _cpu_seconds(redis.proc.pid) - redis_before if redis and redis.proc else 0.0
        finally:
            for server, _ in servers:
                server.terminate()
            for server, _ in servers:
                server.wait(30)
    latencies = sorted(x for r in results for x in r["latencies"])

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    instances = config.processes * config.instances
    acked_all = max(1, sum(r["deltas"] for r in results) * (duration + warmup) / duration)
    return {
        "config": config.name,
        "instances": instances,
        "offered_deltas": instances * sum(BATCH_KEYS) / 2 / config.interval,
        "deltas_s": sum(r["deltas"] for r in results) / duration,
        "batches_s": sum(r["batches"] for r in results) / duration,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "late": sum(r["late"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "server_cpu": server_cpu / (duration + warmup),
        # CPU the server spent per acknowledged delta: what it costs, whatever else runs on the machine.
        "server_us": server_cpu / acked_all * 1e6,
        "redis_cpu": redis_cpu / (duration + warmup),
        "redis_us": redis_cpu / acked_all * 1e6,
        "client_cpu": sum(r["cpu"] for r in results) / (duration + warmup),
    }


#: The fleet the projection is for: processes, seconds between one process's flushes.
FLEET = (10_000, 10.0)


def _configs(procs: int, load_interval: float, stores: list[str], collectors: list[int]) -> list[Config]:
    """Each offered load of the README's table, on SQLite and on 1-3 collectors sharing Redis."""
    loads = [
        ("150k/s", procs, 100, load_interval / 0.6),
        ("250k/s", procs, 100, load_interval),
        ("500k/s", procs, 100, load_interval / 2),
        ("1,000 procs every 10 s", procs, 1000 // procs, 10.0),
    ]
    configs = []
    for label, processes, per_proc, interval in loads:
        if "sqlite" in stores:
            configs.append(Config(f"{label}, SQLite group commit", True, processes, per_proc, interval))
            if label == "250k/s":
                configs.append(Config(f"{label}, SQLite commit per batch", False, processes, per_proc, interval))
        if "redis" in stores:
            for n in collectors:
                name = f"{label}, Redis, {n} collector{'s' if n > 1 else ''}"
                configs.append(Config(name, True, processes, per_proc, interval, "redis", n))
    return configs


def _projection(rows: list[dict]) -> str:
    """What the measured CPU per delta says a fleet of FLEET processes needs."""
    processes, every = FLEET
    rate = processes / every * sum(BATCH_KEYS) / 2
    lines = [f"# projection: {processes:,} processes flushing every {every:.0f} s offer {rate:,.0f} key-deltas/s"]
    for store in ("SQLite", "Redis"):
        measured = [r for r in rows if store in r["config"] and "per batch" not in r["config"] and r["deltas_s"]]
        if not measured:
            continue
        server_us = sorted(r["server_us"] for r in measured)[len(measured) // 2]
        line = f"#   {store}: collectors {server_us:.2f} us/delta -> {rate * server_us / 1e6:.1f} cores of collectors"
        if store == "Redis":
            redis_us = sorted(r["redis_us"] for r in measured)[len(measured) // 2]
            cores = rate * redis_us / 1e6
            verdict = "one Redis (single-threaded) suffices" if cores < 0.7 else "beyond one Redis: a Redis Cluster"
            line += f", Redis {redis_us:.2f} us/delta -> {cores:.1f} cores of Redis ({verdict})"
        else:
            best = max(r["deltas_s"] for r in measured)
            line += f"; one SQLite collector peaked at {best:,.0f} deltas/s here"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run every configuration and print one table and the fleet projection."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 s per configuration instead of 12")
    parser.add_argument("--duration", type=float, help="measured seconds per configuration")
    parser.add_argument("--processes", type=int, default=4, help="client OS processes")
    parser.add_argument("--rate", type=float, default=250_000, help="offered key-deltas/s of the middle load")
    parser.add_argument("--stores", default="sqlite,redis", help="stores to run: sqlite, redis or both")
    parser.add_argument("--collectors", default="1,2,3", help="collector counts on Redis")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return
    duration = args.duration or (4.0 if args.quick else 12.0)
    warmup = 1.0 if args.quick else 2.0
    procs = args.processes
    load_interval = procs * 100 * sum(BATCH_KEYS) / 2 / args.rate
    stores = [x.strip() for x in args.stores.split(",") if x.strip()]
    collectors = [int(x) for x in args.collectors.split(",") if x.strip()]
    print(
        f"# collector benchmark: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f},"
        f" {duration:.0f} s measured per row after {warmup:.0f} s warm-up,"
        f" batches of {BATCH_KEYS[0]}-{BATCH_KEYS[1]} keys; SQLite WAL synchronous=FULL;"
        " Redis AOF appendfsync everysec; clients, collectors and Redis share the machine"
    )
    header = (
        f"{'configuration':42} {'tracers':>7} {'offered/s':>10} {'deltas/s':>10} {'batches/s':>9}"
        f" {'p50 ms':>7} {'p99 ms':>7} {'late':>5} {'errors':>6} {'srv CPU':>7} {'redis CPU':>9} {'cli CPU':>7}"
        f" {'srv us/delta':>12} {'redis us/delta':>14}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for config in _configs(procs, load_interval, stores, collectors):
        r = run(config, duration, warmup)
        rows.append(r)
        print(
            f"{r['config']:42} {r['instances']:>7} {r['offered_deltas']:>10,.0f} {r['deltas_s']:>10,.0f}"
            f" {r['batches_s']:>9,.1f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['late']:>5} {r['errors']:>6}"
            f" {r['server_cpu']:>7.0%} {r['redis_cpu']:>9.0%} {r['client_cpu']:>7.0%} {r['server_us']:>12.2f}"
            f" {r['redis_us']:>14.2f}",
            flush=True,
        )
    print(_projection(rows))
    if "redis" in stores:  # the Redis store's versions and history beside the release: bench/redis_history.py
        import redis_history

        redis_history.main(["--quick"] if args.quick else [])


if __name__ == "__main__":
    main()

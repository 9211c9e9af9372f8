"""Collector benchmark: a fleet of simulated tracers against one `coldmod serve`.

Several OS processes each simulate hundreds of tracer instances. Every
instance flushes one batch of 200-2,000 key deltas per interval (open loop,
like real tracers: a flush that comes while the previous batch is still
unacknowledged is merged into the next one, counted as "late"). The server is
a real `python -m coldmod_cli.server` process on a loopback port with a real
SQLite file, once with group commit and once committing each batch alone.

Reports sustained key-deltas/s and batches/s (acknowledged), p50/p99
acknowledgement latency, the CPU the server and the clients used (share of one
core), and the server's CPU per delta — the figure that does not depend on
what else the machine runs. `python bench/server.py --quick` for a short run.
"""

from __future__ import annotations

import argparse
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
        channels.append(client_channel(client_config(spec["target"], env=INSECURE)))
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


def _start_server(store: Path, group_commit: bool) -> tuple[subprocess.Popen, str]:
    from coldmod_cli.server.process import collector_command

    args = collector_command(f"sqlite://{store}")
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
    with tempfile.TemporaryDirectory(prefix="coldmod-bench-") as tmp:
        server, target = _start_server(Path(tmp) / "bench.db", config.group_commit)
        try:
            _register(target)
            cpu_before = _cpu_seconds(server.pid)
            workers = [
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--worker",
                        json.dumps(
                            {
                                "target": target,
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
            server_cpu = _cpu_seconds(server.pid) - cpu_before
        finally:
            server.terminate()
            server.wait(30)
    latencies = sorted(x for r in results for x in r["latencies"])

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    instances = config.processes * config.instances
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
        "server_us": server_cpu / max(1, sum(r["deltas"] for r in results) * (duration + warmup) / duration) * 1e6,
        "client_cpu": sum(r["cpu"] for r in results) / (duration + warmup),
    }


def main(argv: list[str] | None = None) -> None:
    """Run every configuration and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 s per configuration instead of 12")
    parser.add_argument("--duration", type=float, help="measured seconds per configuration")
    parser.add_argument("--processes", type=int, default=4, help="client OS processes")
    parser.add_argument("--rate", type=float, default=250_000, help="offered key-deltas/s for the load runs")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return
    duration = args.duration or (4.0 if args.quick else 12.0)
    warmup = 1.0 if args.quick else 2.0
    procs = args.processes
    per_proc = 100
    mean_keys = sum(BATCH_KEYS) / 2
    load_interval = procs * per_proc * mean_keys / args.rate
    configs = [
        Config("0.6x load, group commit", True, procs, per_proc, load_interval / 0.6),
        Config("load, group commit", True, procs, per_proc, load_interval),
        Config("load, commit per batch", False, procs, per_proc, load_interval),
        Config("2x load, group commit", True, procs, per_proc, load_interval / 2),
        Config("1,000 procs every 10 s, group commit", True, procs, 1000 // procs, 10.0),
    ]
    print(
        f"# collector benchmark: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f},"
        f" {duration:.0f} s measured per row after {warmup:.0f} s warm-up,"
        f" batches of {BATCH_KEYS[0]}-{BATCH_KEYS[1]} keys, SQLite WAL synchronous=FULL"
    )
    header = (
        f"{'configuration':38} {'tracers':>7} {'offered/s':>10} {'deltas/s':>10} {'batches/s':>9}"
        f" {'p50 ms':>7} {'p99 ms':>7} {'late':>5} {'errors':>6} {'srv CPU':>7} {'cli CPU':>7}"
        f" {'srv us/delta':>12}"
    )
    print(header)
    print("-" * len(header))
    for config in configs:
        r = run(config, duration, warmup)
        print(
            f"{r['config']:38} {r['instances']:>7} {r['offered_deltas']:>10,.0f} {r['deltas_s']:>10,.0f}"
            f" {r['batches_s']:>9,.1f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['late']:>5} {r['errors']:>6}"
            f" {r['server_cpu']:>7.0%} {r['client_cpu']:>7.0%} {r['server_us']:>12.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

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

Today's store beside this one: every SQLite group-commit load also runs on
the collector of the release before versions and history (RELEASE, schema 2,
checked out of git into a temporary directory and put first on PYTHONPATH),
so the cost of history (one more upsert per delta, per UTC day) is measured
in the same run, at the same offered loads.

History budget (issue 17): an app of 100,000 keys, 10 % of them called every
day for 400 days, written through ``SqliteStore.report`` one day at a time
with ``retire`` moving the kept sums each day as the collector's timer does;
reported: bytes on disk (and the growth per day over the last days), and a
Fetch with the 7/30/90-day sums and the quiet keys' history (quiet_days=90)
in a fresh process (cold: nothing of the store in the process, and the OS
page cache dropped when this user may). ``--history-keys/--history-days``
make it smaller on a busy machine. Then the store's Report path alone (no
gRPC: the same batches submitted by 64 threads, group commit) on this tree
and on RELEASE, alternating twice, in CPU microseconds per delta: the figure
a busy machine inflates least. ``--only-history`` runs these two parts alone.
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
#: The release before versions and history (schema 2): today's store, measured beside this one.
RELEASE = "c90c6d9"


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
    release: str = ""  # a checkout of RELEASE to run the collector from ("": this tree)


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
    keys = [_app_keys(a) for a in range(APPS)]
    prints = [_app_fingerprint(a) for a in range(APPS)]
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
            fingerprint=prints[app],  # as tracers send it (a collector before versions ignores it)
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


def _app_keys(app: int) -> list[str]:
    return [f"app{app}.mod{k // 50}.f{k}" for k in range(KEYS_PER_APP)]


def _app_sources(app: int) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(k, f"mod{k}.py", (1,)) for k in _app_keys(app)]


def _app_fingerprint(app: int) -> str:
    from coldmod_trace.keys import sources_fingerprint

    return sources_fingerprint(_app_sources(app))


def _release_tree(directory: Path, commit: str = RELEASE) -> str:
    """PYTHONPATH running the collector of ``commit`` (its cli and tracer sources, from git)."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", commit, "packages/coldmod-cli/src", "packages/coldmod-trace/src"],
        capture_output=True,
        check=True,
    ).stdout
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return os.pathsep.join(str(directory / "packages" / p / "src") for p in ("coldmod-cli", "coldmod-trace"))


def _start_server(store: str, group_commit: bool, release: str = "") -> tuple[subprocess.Popen, str]:
    from coldmod_cli.server.process import collector_command

    args = collector_command(store)
    if not group_commit:
        args.append("--no-group-commit")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")} | INSECURE
    if release:
        env["PYTHONPATH"] = release
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
            sources = [pb.TraceSource(key=k, path=p, lines=lines) for k, p, lines in _app_sources(a)]
            stub.Register(
                pb.RegisterRequest(app=f"app{a}", sources=sources, fingerprint=_app_fingerprint(a)), timeout=60
            )


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
        release = _release_tree(Path(tmp), config.release) if config.release else ""
        servers = [_start_server(url, config.group_commit, release) for _ in range(config.collectors)]
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


# ----------------------------------------------------------------- history --

#: The budget app: keys, days of history, share of keys called every day (issue 17).
HISTORY = (100_000, 400, 0.1)
#: UTC day the budget app's history starts on (any day: only differences matter).
_FIRST_DAY = 20_000


def _logical_bytes(path: Path) -> int:
    """The database's size as SQLite sees it (WAL included, free pages excluded)."""
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        pages, free, size = (
            db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count", "page_size")
        )
    finally:
        db.close()
    return (pages - free) * size


def history_child(spec: dict) -> None:
    """In a child process (this tree's code, or RELEASE's on PYTHONPATH): fill the budget app, or Fetch it cold."""
    from coldmod_cli.server.sqlite_store import SqliteStore
    from coldmod_cli.server.store import Batch, Source

    day_ms = 86_400_000
    path, keys, days, hot = Path(spec["path"]), spec["keys"], spec["days"], spec["hot"]
    out: dict = {}
    opened = time.perf_counter()
    store = SqliteStore(path)
    out["open_s"] = time.perf_counter() - opened
    try:
        if spec["mode"] == "fill":
            names = [f"big.mod{k // 50}.f{k}" for k in range(keys)]
            sources = [Source(k, f"big/mod{i // 50}.py", (i % 50 + 1,)) for i, k in enumerate(names)]
            store.register("big", sources, _FIRST_DAY * day_ms, "fp-big")
            called = names[:: round(1 / hot)]
            rng = random.Random(7)
            retire = getattr(store, "retire", None)  # RELEASE has no history to move
            sizes = {}
            started = time.perf_counter()
            for d in range(days):
                start = (_FIRST_DAY + d) * day_ms + 3_600_000
                calls = [rng.randint(1, 1000) for _ in called]
                batch = Batch("big", "fill", d + 1, start, start + 60_000, called, calls, [False] * len(called))
                store.report(batch)
                if retire is not None:
                    retire(start + 120_000)
                if d in (days - 1 - max(1, min(50, days // 4)), days - 1):
                    sizes[d] = _logical_bytes(path)
            out["fill_s"] = time.perf_counter() - started
            (d0, b0), (d1, b1) = sorted(sizes.items())
            out["growth_per_day"] = (b1 - b0) / (d1 - d0)
        else:
            now = (_FIRST_DAY + days - 1) * day_ms + 12 * 3_600_000
            started, cpu = time.perf_counter(), time.process_time()
            try:
                heatmap = store.fetch("big", now_ms=now, quiet_days=90)
            except TypeError:  # RELEASE: no history, no sums
                heatmap = store.fetch("big")
            out["fetch_s"] = time.perf_counter() - started
            out["fetch_cpu_s"] = time.process_time() - cpu  # what a busy machine does not inflate
            out["entries"] = len(heatmap.entries)
            out["calls_90d"] = sum(getattr(e, "calls_90d", 0) for e in heatmap.entries)
    finally:
        store.close()
    print(json.dumps(out))


def report_child(spec: dict) -> None:
    """In a child process (this tree's code, or RELEASE's): the store's Report path alone, CPU per delta.

    The same batches (APPS apps of KEYS_PER_APP keys, BATCH_KEYS deltas each, fixed seed) are
    submitted by 64 threads, so the writer groups them as under a fleet; process CPU time (every
    thread) per delta is what a busy machine does not inflate much, beside wall-clock deltas/s.
    """
    from concurrent.futures import ThreadPoolExecutor

    from coldmod_cli.server.sqlite_store import SqliteStore
    from coldmod_cli.server.store import Batch, Source

    rng = random.Random(11)
    store = SqliteStore(Path(spec["path"]))
    try:
        now = time.time_ns() // 1_000_000
        for a in range(APPS):
            sources = [Source(k, p, lines) for k, p, lines in _app_sources(a)]
            store.register(f"app{a}", sources, now, _app_fingerprint(a))
        keys = [_app_keys(a) for a in range(APPS)]
        batches = []
        for n in range(spec["batches"]):
            a = rng.randrange(APPS)
            chosen = rng.sample(keys[a], rng.randint(*BATCH_KEYS))
            calls = [rng.randint(1, 10_000) for _ in chosen]
            fields = (f"app{a}", f"i{n % 400}", n // 400 + 1, now - 10_000, now, chosen, calls, [False] * len(chosen))
            batches.append(Batch(*fields, fingerprint=_app_fingerprint(a)) if spec["fingerprint"] else Batch(*fields))
        deltas = sum(len(b.keys) for b in batches)
        started, cpu = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(64) as pool:
            list(pool.map(store.report, batches))
        wall, used = time.perf_counter() - started, time.process_time() - cpu
    finally:
        store.close()
    print(json.dumps({"deltas_s": deltas / wall, "cpu_us": used / deltas * 1e6, "deltas": deltas}))


def report_cpu(batches: int) -> list[dict]:
    """The store's Report path on this tree and on RELEASE, the same batches, alternating twice."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="coldmod-bench-report-") as tmp:
        release = _release_tree(Path(tmp) / "release", RELEASE)
        for turn in range(2):
            for label, path in (("this tree (schema 3, history)", ""), (f"{RELEASE} (today, schema 2)", release)):
                env = dict(os.environ)
                if path:
                    env["PYTHONPATH"] = path
                spec = {"path": str(Path(tmp) / f"r{turn}{bool(path)}.db"), "batches": batches, "fingerprint": not path}
                done = subprocess.run(
                    [sys.executable, __file__, "--report-child", json.dumps(spec)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if done.returncode:
                    raise RuntimeError(f"the report child failed: {done.stderr.strip()[-500:]}")
                rows.append({"store": label, **json.loads(done.stdout)})
    return rows


def _print_report_cpu(rows: list[dict], batches: int) -> None:
    print(
        f"\n# store Report path alone: {batches:,} batches of {BATCH_KEYS[0]}-{BATCH_KEYS[1]} deltas over {APPS} apps"
        f" of {KEYS_PER_APP:,} keys, 64 threads, group commit; two alternating turns"
    )
    header = f"{'store':34} {'deltas/s':>10} {'CPU us/delta':>12}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['store']:34} {r['deltas_s']:>10,.0f} {r['cpu_us']:>12.2f}")


def _drop_page_cache() -> bool:
    """Ask Linux to drop its page cache (needs root); False when this user may not."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError:
        return False
    return True


def history_budget(keys: int, days: int, hot: float) -> list[dict]:
    """The budget app on this store and on RELEASE's: bytes on disk, growth per day, a cold Fetch."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="coldmod-bench-history-") as tmp:
        for label, release in (("this tree (schema 3, history)", ""), (f"{RELEASE} (today, schema 2)", RELEASE)):
            path = Path(tmp) / f"{release or 'this'}.db"
            env = dict(os.environ)
            if release:
                env["PYTHONPATH"] = _release_tree(Path(tmp) / "release", release)
            results = {}
            for mode in ("fill", "fetch"):
                if mode == "fetch":
                    results["cache_dropped"] = _drop_page_cache()
                spec = {"path": str(path), "keys": keys, "days": days, "hot": hot, "mode": mode}
                done = subprocess.run(
                    [sys.executable, __file__, "--history-child", json.dumps(spec)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if done.returncode:
                    raise RuntimeError(f"the history {mode} child failed: {done.stderr.strip()[-500:]}")
                results.update(json.loads(done.stdout))
            results["bytes"] = path.stat().st_size
            rows.append({"store": label, **results})
    return rows


def _print_history(rows: list[dict], keys: int, days: int, hot: float) -> None:
    print(
        f"\n# history budget: one app of {keys:,} keys, {hot:.0%} called every day for {days} days"
        f" ({int(keys * hot) * days:,} key-days), written one day at a time; Fetch with quiet_days=90 in a fresh"
        " process"
    )
    header = (
        f"{'store':34} {'MB on disk':>10} {'KB/day':>8} {'fill s':>7} {'open s':>7} {'Fetch s':>8}"
        f" {'Fetch CPU s':>11} {'cold':>5}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        cold = "yes" if r["cache_dropped"] else "proc"  # proc: a fresh process, the OS page cache as it was
        print(
            f"{r['store']:34} {r['bytes'] / 1e6:>10.1f} {r['growth_per_day'] / 1e3:>8.1f} {r['fill_s']:>7.1f}"
            f" {r['open_s']:>7.2f} {r['fetch_s']:>8.2f} {r['fetch_cpu_s']:>11.2f} {cold:>5}"
        )


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
            name = f"{label}, SQLite group commit, {RELEASE} (today)"
            configs.append(Config(name, True, processes, per_proc, interval, release=RELEASE))
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
        measured = [
            r
            for r in rows
            if store in r["config"] and "per batch" not in r["config"] and "today" not in r["config"] and r["deltas_s"]
        ]
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
    parser.add_argument("--history-keys", type=int, default=HISTORY[0], help="keys of the history budget app")
    parser.add_argument("--history-days", type=int, default=HISTORY[1], help="days of its history")
    parser.add_argument("--only-history", action="store_true", help="run the history budget alone")
    parser.add_argument("--no-history", action="store_true", help="skip the history budget")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--history-child", help=argparse.SUPPRESS)
    parser.add_argument("--report-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return
    if args.history_child:
        history_child(json.loads(args.history_child))
        return
    if args.report_child:
        report_child(json.loads(args.report_child))
        return
    if not args.no_history and "sqlite" in args.stores:
        keys, days = args.history_keys, args.history_days
        if args.quick:
            keys, days = min(keys, 20_000), min(days, 60)
        _print_history(history_budget(keys, days, HISTORY[2]), keys, days, HISTORY[2])
        batches = 500 if args.quick else 3000
        _print_report_cpu(report_cpu(batches), batches)
        if args.only_history:
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

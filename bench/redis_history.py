"""Redis store, versions and history (issue 17) beside the release before them, in the same run.

On one real redis-server (AOF, appendfsync everysec), in this process:

- Report throughput of today's RedisStore (c90c6d9, read from git) and of the
  new one, same app, same batches, same threads (group commit at work):
  key-deltas/s and Redis CPU per delta;
- Redis memory of one app's history: F functions of which 10 % are called
  every day for D days (INFO used_memory before and after the history, so
  the delta is the history alone), and the growth per day;
- Fetch of that app (with the 7/30/90-day sums) beside the old Fetch of the
  same app without history, and the quiet-entries Fetch ``coldmod cold`` asks;
- the daily pruning (retire) over that app.

``python bench/redis_history.py --functions 100000 --days 400`` is the
issue's budget (<= 400 MB); the defaults are smaller for a shared machine.
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

RELEASE = "c90c6d9"  # the release before versions and history
ROOT = Path(__file__).resolve().parent.parent
DAY_MS = 86_400_000
T0 = 20_000 * DAY_MS


def _old_store_module(tmp: Path) -> types.ModuleType:
    """Today's RedisStore, from git, importable beside the new one (its scripts module renamed)."""
    package = tmp / "coldmod_release_redis"
    package.mkdir()
    (package / "__init__.py").write_text("")
    base = "packages/coldmod-cli/src/coldmod_cli/server/"
    for name in ("redis_store.py", "redis_scripts.py"):
        text = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{RELEASE}:{base}{name}"], check=True, capture_output=True, text=True
        ).stdout
        text = text.replace(
            "from coldmod_cli.server import redis_scripts", "from coldmod_release_redis import redis_scripts"
        )
        (package / name).write_text(text)
    sys.path.insert(0, str(tmp))
    return importlib.import_module("coldmod_release_redis.redis_store")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _throughput(store, redis_pid: int, keys: list[str], batches: int, batch_keys: int, threads: int) -> dict:  # type: ignore[no-untyped-def]
    """Deltas/s of ``batches`` Reports of ``batch_keys`` keys from ``threads`` senders; Redis µs per delta."""
    from coldmod_cli.server.store import Batch

    rng = random.Random(7)
    plans = [
        [
            Batch(
                "bench",
                f"t{t}",
                n + 1,
                T0,
                T0 + 10_000,
                rng.sample(keys, batch_keys),
                [rng.randint(1, 9999)] * batch_keys,
                [False] * batch_keys,
            )
            for n in range(batches // threads)
        ]
        for t in range(threads)
    ]
    cpu = _cpu_seconds(redis_pid)
    started = time.perf_counter()
    workers = [threading.Thread(target=lambda plan=plan: [store.report(b) for b in plan]) for plan in plans]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    deltas = sum(len(b.keys) for plan in plans for b in plan)
    return {"deltas_s": deltas / elapsed, "redis_us": (_cpu_seconds(redis_pid) - cpu) / deltas * 1e6}


def _used(client) -> int:  # type: ignore[no-untyped-def]
    return int(client.info("memory")["used_memory"])


def main(argv: list[str] | None = None) -> None:
    """Run the four measurements; print one Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small app (a smoke test)")
    parser.add_argument("--functions", type=int, help="functions of the app (the budget: 100000)")
    parser.add_argument("--days", type=int, help="days of history (the budget: 400)")
    args = parser.parse_args(argv)
    functions = args.functions or (5_000 if args.quick else 100_000)
    days = args.days or (30 if args.quick else 100)
    called = functions // 10

    from coldmod_cli.server.redis_process import RedisProcess
    from coldmod_cli.server.redis_store import RedisStore
    from coldmod_cli.server.store import Batch, Source

    rows: list[tuple[str, str]] = []
    with (
        tempfile.TemporaryDirectory(prefix="coldmod-bench-") as tmp,
        RedisProcess(Path(tmp) / "redis", appendonly=True) as server,
    ):
        assert server.proc is not None
        old_mod = _old_store_module(Path(tmp))
        keys = [f"app.mod{k // 50}.f{k}" for k in range(functions)]
        sources = [Source(key, f"app/mod{n // 50}.py", (n % 50 * 10 + 1,)) for n, key in enumerate(keys)]
        tput_keys = keys[:20_000]
        tput_sources = sources[:20_000]
        batches, batch_keys, threads = (40, 1000, 4) if args.quick else (400, 1000, 8)

        # Report throughput, release vs new, on the same Redis (flushed between: their layouts differ).
        # Alternating rounds, the best of each kept: the machine is shared, the other load comes and goes.
        results: dict[str, dict[str, float]] = {}
        for label, factory in [("release", old_mod.RedisStore), ("new", RedisStore)] * (1 if args.quick else 3):
            store = factory(server.url)
            store._client.flushall()
            store.register("bench", tput_sources, T0, "fp-bench")
            store.report(Batch("bench", "warm", 1, T0, T0 + 1, tput_keys[:100], [1] * 100, [False] * 100))
            got = _throughput(store, server.proc.pid, tput_keys, batches, batch_keys, threads)
            best = results.setdefault(label, got)
            best["deltas_s"] = max(best["deltas_s"], got["deltas_s"])
            best["redis_us"] = min(best["redis_us"], got["redis_us"])
            store.close()
        old, new = results["release"], results["new"]
        rows.append(
            (
                f"Report, release (c90c6d9), {threads} senders x {batch_keys}-key batches",
                f"{old['deltas_s']:,.0f} deltas/s, Redis {old['redis_us']:.2f} µs/delta",
            )
        )
        rows.append(
            (
                "Report, versions + history",
                f"{new['deltas_s']:,.0f} deltas/s ({new['deltas_s'] / old['deltas_s'] - 1:+.0%}),"
                f" Redis {new['redis_us']:.2f} µs/delta ({new['redis_us'] / old['redis_us'] - 1:+.0%})",
            )
        )

        # Fetch of a big app without history, release code.
        store = old_mod.RedisStore(server.url)
        store._client.flushall()
        store.register("big", sources, T0, "fp-big")
        store.report(Batch("big", "w", 1, T0, T0 + 1, keys[:called], [5] * called, [False] * called))
        store.fetch("big")  # warm, as below
        started = time.perf_counter()
        store.fetch("big")
        old_fetch = time.perf_counter() - started
        store.close()

        # History: `called` functions called every day for `days` days.
        store = RedisStore(server.url)
        store._client.flushall()
        store.register("big", sources, T0, "fp-big")
        base = _used(store._client)
        daily = keys[:: functions // called][:called]
        started = time.perf_counter()
        day_before_last = 0
        for day in range(days):
            if day == days - 1:
                day_before_last = _used(store._client)
            start = T0 + day * DAY_MS
            store.report(
                Batch(
                    "big",
                    "w",
                    day + 1,
                    start,
                    start + 1000,
                    daily,
                    [random.randint(1, 500) for _ in daily],
                    [False] * called,
                    fingerprint="fp-big",
                )
            )
        fill = time.perf_counter() - started
        history = _used(store._client) - base
        last_day = _used(store._client) - day_before_last
        encodings = {
            store._client.object("encoding", k)
            for k in list(store._client.scan_iter("coldmod:{big}:h:*", count=1000))[:200]
        }
        rows.append(
            (
                f"history, {functions:,} functions, {called:,} called daily, {days} days",
                f"{history / 1e6:,.1f} MB ({history / (called * days):.1f} B per key-day;"
                f" buckets {', '.join(sorted(encodings))})",
            )
        )
        rows.append(
            ("growth per day (mean / the last day)", f"{history / days / 1e6:.2f} MB / {last_day / 1e6:.2f} MB")
        )
        if days < 400:
            rows.append(("projected to 400 days", f"{history / days * 400 / 1e6:,.0f} MB (budget 400 MB)"))
        rows.append(("filling it (one Report of every called key per day)", f"{fill:.1f} s"))
        now = T0 + (days - 1) * DAY_MS
        for label, kwargs in (
            ("Fetch with 7/30/90-day sums", {}),
            ("Fetch, quiet 90 days (coldmod cold)", {"quiet_days": 90}),
        ):
            store.fetch("big", now_ms=now, **kwargs)  # warm the connection and the script cache
            started = time.perf_counter()
            store.fetch("big", now_ms=now, **kwargs)
            rows.append(
                (label, f"{time.perf_counter() - started:.3f} s (release's Fetch without history {old_fetch:.3f} s)")
            )
        started = time.perf_counter()
        store.retire(now + 401 * DAY_MS, after_ms=10_000 * DAY_MS)  # every day older than 400 days goes
        rows.append(("retire: prune a day's worth and more", f"{time.perf_counter() - started:.3f} s"))
        store.close()

    print(f"\n# Redis store, versions + history: load average {os.getloadavg()[0]:.2f}, Redis AOF everysec")
    print(f"{'measurement':58} | figure")
    print(f"{'-' * 58}-|-------")
    for name, figure in rows:
        print(f"{name:58} | {figure}")


if __name__ == "__main__":
    main()

"""Tracer overhead on programs no one here wrote: pyperformance's benchmarks, side by side.

Each benchmark runs in a fresh process per variant, paired with a fresh untraced one:

- ``untraced``   the baseline
- ``sampled``    coldmod-trace, default mode
- ``exact``      coldmod-trace, every call counted (counters compiled in by the import hook)
- ``coverage``   coverage.py with its sys.monitoring core (``COVERAGE_CORE=sysmon``), line coverage
- ``slipcover``  SlipCover (``python -m slipcover``)
- ``settrace``   a naive counter: a ``sys.settrace`` function that puts one event per call
  on a queue, drained by a thread

Each benchmark module is copied under a temporary root with a ``coldmod.rootmarker``
(the benchmark is the "application"; Django and the stdlib are libraries). The
tracer reports to a real gRPC collector in this process. ``web`` is not
pyperformance's: a Flask shop (``WEB_APP``) served in-process through WSGI, timed after a
longer warm-up (``WARMUP``: a server's steady state, its start-up allowance spent).

**Pairs on one core.** A variant's process and an untraced one run at the same time, both
pinned to the same CPU, and the ratio is taken within the pair. On a shared 2-vCPU host an
untraced process's CPU time per iteration moves by ±30 % from one run to the next (the host's
other tenants, which of the two vCPUs it lands on), so ratios between runs taken one after the
other cannot resolve a few per cent; two untraced processes paired this way agree within ±1 %.
(Sharing a core means sharing its caches: if anything this overstates what a tracer costs.)

Printed: CPU time per iteration, slowdown ratios against ``untraced`` (medians over rounds),
their geometric mean, and peak RSS; then the tracer's own memory for 10,000 traced
functions; then sampled mode's reports on call shapes whose truth each shape counts itself
(``SHAPES``, the web app's paced requests among them), several runs each, as the machine
is and again under 2× CPU oversubscription (``_Contention``).

    python bench/tracer.py            # full
    python bench/tracer.py --quick    # a few minutes
    python bench/tracer.py --benchmarks "" --runs 3   # the error table only (with contention runs)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

BENCHMARKS = ["richards", "deltablue", "go", "raytrace", "django_template", "web"]
#: Not a pyperformance program: the web workload (``WEB_APP``), outside their geometric mean.
OWN = {"web"}
VARIANTS = ["untraced", "sampled", "exact", "coverage", "slipcover", "settrace"]
HERE = Path(__file__).resolve()


# ---------------------------------------------------------------- the child --


def _workload(name: str, module: Any) -> Any:
    """One iteration of the benchmark, as pyperformance's runner would call it."""
    if name == "richards":
        richards = module.Richards()
        return lambda: richards.run(1)
    if name == "deltablue":
        return lambda: module.delta_blue(100)
    if name == "go":
        return module.versus_cpu
    if name == "raytrace":
        return lambda: module.bench_raytrace(1, module.DEFAULT_WIDTH, module.DEFAULT_HEIGHT, None)
    if name == "web":
        return lambda: module.serve(60, 0.0)  # 60 requests back to back: a server under load
    if name == "django_template":
        import django.conf

        django.conf.settings.configure(
            TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}]
        )
        django.setup()

        class Capture:
            def bench_func(self, _name: str, func: Any, *args: Any) -> None:
                self.call = lambda: func(*args)

        capture = Capture()
        module.bench_django_template(capture, 100)
        return capture.call
    raise SystemExit(f"unknown benchmark {name}")


def _naive_settrace() -> Any:
    import queue
    import threading
    from collections import Counter

    events: queue.SimpleQueue[Any] = queue.SimpleQueue()
    counts: Counter[Any] = Counter()

    def drain() -> None:
        while (item := events.get()) is not None:
            counts[item] += 1

    def trace(frame: Any, event: str, arg: Any) -> None:
        code = frame.f_code
        events.put((code.co_filename, code.co_qualname))

    threading.Thread(target=drain, daemon=True).start()
    sys.settrace(trace)
    threading.settrace(trace)

    def stop() -> None:
        sys.settrace(None)
        threading.settrace(None)  # type: ignore[arg-type]
        events.put(None)

    return stop


#: Warm-up before timing (s of the process's CPU time, which a pair on one core gets half of):
#: the web workload's is long enough that what the tracer grants at start (its exact budget's
#: start allowance: ~150,000 calls counted by callback) is spent, as in a server under load.
WARMUP = {"web": 6.0}


def child(variant: str, name: str, root: str, budget: float) -> None:
    """Run one benchmark under one variant; print JSON with the per-iteration times."""
    import resource

    stop: Any = None
    if variant in ("sampled", "exact"):
        import coldmod_trace

        coldmod_trace.start(root, mode=variant)
    elif variant == "coverage":
        import coverage

        cov = coverage.Coverage(source=[root], data_file=None)
        cov.start()
        stop = cov.stop
    elif variant == "settrace":
        stop = _naive_settrace()
    sys.path.insert(0, root)
    module = __import__(f"bm_{name}")
    work = _workload(name, module)
    warm = time.process_time() + WARMUP.get(name, 0.5)
    work()  # warm-up: imports, first calls, the tracer's discovery of the app's sources
    while time.process_time() < warm:
        work()
    # CPU time of the whole process per iteration, averaged over the run: what the tracer's
    # threads and its slices cost counts too (a best iteration would pick one without a slice).
    n = 0
    deadline = time.perf_counter() + budget
    cpu_started = time.process_time()
    while n < 3 or time.perf_counter() < deadline:
        work()
        n += 1
    per_iteration = (time.process_time() - cpu_started) / n
    if stop is not None:
        stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"cpu": per_iteration, "n": n, "rss_mb": rss_mb}))
    sys.stdout.flush()
    if variant in ("sampled", "exact"):
        import coldmod_trace

        coldmod_trace.stop(2.0)


def memory_child(variant: str, root: str, measure: str) -> None:
    """Memory with 10,000 traced functions, each called: ``tracemalloc`` or peak ``rss``."""
    import resource
    import tracemalloc

    if measure == "tracemalloc":
        tracemalloc.start()
    if variant != "untraced":
        import coldmod_trace

        coldmod_trace.start(root, mode=variant, flush_interval=0.5)
    sys.path.insert(0, root)
    import many  # type: ignore[import-not-found]

    functions = [getattr(many, n) for n in dir(many) if n.startswith("f")]
    for _ in range(3):
        for function in functions:
            function()
    time.sleep(2.0)  # a couple of flushes: counts mapped to keys, batches sent
    tracer_bytes = 0
    if measure == "tracemalloc":
        snapshot = tracemalloc.take_snapshot()
        ours = snapshot.filter_traces([tracemalloc.Filter(True, "*coldmod_trace*")])
        tracer_bytes = sum(stat.size for stat in ours.statistics("filename"))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tracer_mb": tracer_bytes / 2**20, "rss_mb": rss_mb}))


# ------------------------------------------------------------ call shapes --

#: The application of the shape runs: each shape calls its own functions and counts the calls
#: itself (a local integer: it costs the same inside and outside the tracer's slices). The
#: functions do a little work (~0.3 µs) as application functions do, except ``burst`` and
#: ``steady``, trivial on purpose: there the callbacks cost most of a slice's time.
SHAPES_APP = '''
import threading
import time


def burst():
    pass


def steady():
    pass


def working():
    return sum(range(40))


def periodic():
    return sum(range(40))


def sleepy():
    return sum(range(40))


def ramp():
    return sum(range(40))


def left():
    return sum(range(40))


def right():
    return sum(range(40))


def short():
    return sum(range(40))


def moderate():
    return sum(range(40))


def handler():
    return sum(helper(i) for i in range(8))


def helper(i):
    return sum(range(40 + i))


def work(seconds):
    """CPU work that calls nothing of the application's."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        sum(range(200))


def run_startup_burst(seconds):
    for _ in range(8100):
        burst()
    work(seconds)
    return {"burst": 8100}


def run_steady(seconds):
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(100):
            steady()
        n += 100
        sum(range(100))
    return {"steady": n}


def run_steady_work(seconds):
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(100):
            working()
        n += 100
    return {"working": n}


def run_periodic_cpu(seconds):
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(20000):
            periodic()
        n += 20000
        work(0.2)
    return {"periodic": n}


def run_bursts_sleeps(seconds):
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(2000):
            sleepy()
        n += 2000
        time.sleep(0.02)
    return {"sleepy": n}


def run_ramp(seconds):
    n = 0
    start = time.monotonic()
    while (now := time.monotonic()) < start + seconds:
        k = int(1 + 2000 * (now - start) / seconds)
        for _ in range(k):
            ramp()
        n += k
        sum(range(2000))
    return {"ramp": n}


def run_two_threads(seconds):
    counts = {}

    def steady_left():
        n = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for _ in range(100):
                left()
            n += 100
        counts["left"] = n

    def bursty_right():
        n = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for _ in range(5000):
                right()
            n += 5000
            time.sleep(0.05)
        counts["right"] = n

    threads = [threading.Thread(target=steady_left), threading.Thread(target=bursty_right)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def run_moderate(seconds):
    """About a thousand calls a second among CPU work: a few times the old per-window cap."""
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        moderate()
        n += 1
        work(0.001)
    return {"moderate": n}


def run_paced_requests(seconds):
    """A server between requests: ~0.3 ms of work per request, 8 helper calls, 2 ms idle."""
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        handler()
        work(0.0003)
        n += 1
        time.sleep(0.002)
    return {"handler": n, "helper": 8 * n}


def run_short_process(seconds):
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(100):
            short()
        n += 100
    return {"short": n}


def rare():
    return sum(range(40))


def run_mid_burst(seconds):
    """One burst of 300,000 calls half-way, past what exact counting may spend, among CPU work."""
    work(seconds / 2)
    for _ in range(300_000):
        rare()
    work(seconds / 2)
    return {"rare": 300_000}


def run_many_hot(seconds):
    """Thirty functions called in turn, all past the budget: slices arm many at once."""
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for f in HOT:
            f()
        n += 1
    return {f"hot{i}": n for i in range(30)}
''' + "".join(f"\n\ndef hot{i}():\n    return sum(range(20))\n" for i in range(30)) + (
    '\n\nHOT = [globals()[f"hot{i}"] for i in range(30)]\n'
)

#: The web workload: a Flask shop, driven in-process through WSGI (no sockets: what is
#: measured is the request handling). Its functions count their own calls (``CALLS``).
WEB_APP = '''
import time
from collections import Counter

from flask import Flask

app = Flask(__name__)
CALLS = Counter()
PRODUCTS = {i: {"id": i, "name": f"product {i}", "cents": 1000 + 37 * i, "stock": i % 7} for i in range(200)}
CART = [3, 7, 11, 19, 23, 31, 37, 41]
# Compiled once, as render_template's loader caches a template file.
PAGE = app.jinja_env.from_string("<h1>{{ title }}</h1><ul>{% for r in rows %}<li>{{ r }}</li>{% endfor %}</ul>")


def money(cents):
    CALLS["money"] += 1
    return f"{cents // 100}.{cents % 100:02d}"


def price(product):
    CALLS["price"] += 1
    cents = product["cents"] * 120 // 100
    return cents - discount(product)


def discount(product):
    CALLS["discount"] += 1
    return 50 if product["stock"] == 0 else 0


def row(product):
    CALLS["row"] += 1
    return f"{product['name']}: {money(product['cents'])}"


@app.route("/")
def index():
    CALLS["index"] += 1
    return PAGE.render(title="shop", rows=[row(PRODUCTS[i]) for i in range(0, 200, 4)])


@app.route("/product/<int:pid>")
def product(pid):
    CALLS["product"] += 1
    return PAGE.render(title=PRODUCTS[pid]["name"], rows=[row(PRODUCTS[pid])])


@app.route("/cart")
def cart():
    CALLS["cart"] += 1
    total = sum(price(PRODUCTS[i]) for i in CART)  # the helper called 8 times per cart request
    return PAGE.render(title="cart", rows=[money(total)])


PATHS = ["/", "/product/5", "/cart", "/product/17", "/cart", "/product/99"]


def serve(requests, pause):
    """``requests`` requests through WSGI, ``pause`` seconds idle after each (0: back to back)."""
    client = app.test_client()
    for i in range(requests):
        response = client.get(PATHS[i % len(PATHS)])
        assert response.status_code == 200
        if pause:
            time.sleep(pause)


def run_web(seconds):
    """Paced requests, as a server between requests: 2 ms idle after each."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        serve(len(PATHS), 0.002)
    return dict(CALLS)
'''

#: (shape, seconds it runs, processes): what the README's error table lists, in its order.
SHAPES = [
    ("startup_burst", 6.0, 1),
    ("steady", 6.0, 1),
    ("steady_work", 6.0, 1),
    ("periodic_cpu", 6.0, 1),
    ("bursts_sleeps", 6.0, 1),
    ("ramp", 6.0, 1),
    ("two_threads", 6.0, 1),
    ("moderate", 6.0, 1),
    ("paced_requests", 6.0, 1),
    ("web", 6.0, 1),
    ("short_process", 1.5, 10),
    ("mid_burst", 6.0, 1),
    ("many_hot", 6.0, 1),
]
#: Shapes whose functions share one row (the run and function farthest from the truth).
GROUPS = {"many_hot": "`hot0`–`hot29`"}
#: A title per shape for the table.
TITLES = {
    "startup_burst": "burst of 8,100 calls at start-up, then CPU work",
    "steady": "steady, a trivial function in a tight loop",
    "steady_work": "steady",
    "periodic_cpu": "bursts of 20,000 calls between 0.2 s of CPU work",
    "bursts_sleeps": "bursts of 2,000 calls between 20 ms sleeps",
    "ramp": "ramp (pace rising from 1 to 2,000 calls per step)",
    "two_threads": "two threads: steady (`left`), bursts between 50 ms sleeps (`right`)",
    "moderate": "moderate: ~1,000 calls/s among CPU work",
    "paced_requests": "paced requests: 8 helper calls, 0.3 ms work, 2 ms idle",
    "web": "web: a Flask shop, paced requests through WSGI",
    "short_process": "short processes (1.5 s each)",
    "mid_burst": "one burst of 300,000 calls half-way, past the exact budget",
    "many_hot": "thirty functions called in turn",
}


def shape_child(shape: str, root: str, seconds: float, app: str) -> None:
    """Run one call shape in sampled mode (the default flush interval); print what it counted."""
    import coldmod_trace

    coldmod_trace.start(root, app=app)
    sys.path.insert(0, root)
    shapes = __import__("webapp" if shape == "web" else "shapes")
    truth = getattr(shapes, f"run_{shape}")(seconds)
    coldmod_trace.stop(5.0)
    print(json.dumps({f"{shapes.__name__}.{k}": v for k, v in truth.items()}))


class _Contention:
    """``2 × cores`` busy-looping processes for the duration (a machine at 2× oversubscription)."""

    def __enter__(self) -> _Contention:
        busy = [sys.executable, "-c", "while True: pass"]
        self.procs = [subprocess.Popen(busy) for _ in range(2 * (os.cpu_count() or 1))]
        # A bench stopped with SIGTERM still ends them (SIGINT already runs __exit__).
        self.previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:  # only the processes started here
            proc.kill()
            proc.wait()
        signal.signal(signal.SIGTERM, self.previous)


def _shapes(
    work: Path, env: dict[str, str], sink: Any, quick: bool, runs: int, contention: bool, only: set[str]
) -> None:
    """Sampled mode's reports against the truth, per call shape, ``runs`` runs each."""
    root = work / "shapes"
    root.mkdir()
    (root / "coldmod.rootmarker").write_text("")
    (root / "shapes.py").write_text(SHAPES_APP)
    (root / "webapp.py").write_text(WEB_APP)
    shapes = [s for s in SHAPES if not only or s[0] in only]
    try:
        import flask  # noqa: F401
    except ImportError:
        print("\n(flask is not installed: the web shape is skipped)")
        shapes = [s for s in shapes if s[0] != "web"]
    ratios: list[float] = []
    for loaded in ([False, True] if contention else [False]):
        where = f"under contention ({2 * (os.cpu_count() or 1)} busy processes on {os.cpu_count()} cores)" \
            if loaded else "on the machine as it is"
        print(f"\nSampled mode against the truth, {where}; default 10 s window; {runs} runs per shape; "
              "the row shows the run farthest from the truth:\n")
        print("| shape | function | truth | reported | worst ratio | median ratio | reported as |")
        print("|---|---|---:|---:|---:|---:|---|")
        with _Contention() if loaded else contextlib.nullcontext():
            for shape, seconds, processes in shapes:
                seconds = seconds / 3 if quick else seconds
                rows: dict[str, list[tuple[int, int, str]]] = {}  # key -> (truth, reported, kind) per run
                for run in range(runs):
                    truth: dict[str, int] = {}
                    apps = []
                    for i in range(processes):
                        app = f"shape-{shape}-{int(loaded)}-{run}-{i}"
                        apps.append(app)
                        row = _run_child(["--child", "shape", shape, str(root), str(seconds), app], env)
                        for key, calls in row.items():
                            truth[key] = truth.get(key, 0) + int(calls)
                    for key in sorted(truth):
                        calls, estimated, lower = sink.total(apps, key)
                        kind = "lower bound" if lower else "estimate" if estimated else "exact"
                        rows.setdefault(GROUPS.get(shape, f"`{key}`"), []).append((truth[key], calls, kind))
                for key, seen in rows.items():
                    each = [calls / truth if truth else float("inf") for truth, calls, _ in seen]
                    ratios.extend(each)
                    worst = max(range(len(each)), key=lambda i: abs(math.log(each[i])) if each[i] > 0 else math.inf)
                    truth, calls, kind = seen[worst]
                    kinds = ", ".join(f"{k} ×{n}" if len(seen) > 1 else k
                                      for k, n in _tally(k for _, _, k in seen).items())
                    name = TITLES.get(shape, shape) + (f" ×{processes}" if processes > 1 else "")
                    shown = f"≥ {calls:,}" if kind == "lower bound" else f"{calls:,}"
                    print(f"| {name} | {key} | {truth:,} | {shown} | {each[worst]:.2f}× "
                          f"| {statistics.median(each):.2f}× | {kinds} |")
    if ratios:
        inside = sum(0.5 <= r <= 2 for r in ratios)
        print(f"\nEvery run of every function: {inside} of {len(ratios)} reported counts within 0.5×–2× of the "
              f"truth, median ratio {statistics.median(ratios):.2f}×, worst {min(ratios):.2f}× and {max(ratios):.2f}×.")


def _tally(kinds: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for kind in kinds:
        out[kind] = out.get(kind, 0) + 1
    return out


# --------------------------------------------------------------- the parent --


def _collector() -> tuple[Any, int, Any]:
    import grpc

    from coldmod_proto.v1 import coldmod_pb2, coldmod_pb2_grpc

    class Sink(coldmod_pb2_grpc.TracingServicer):
        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.batches: dict[tuple[str, str, int], Any] = {}  # (app, instance, sequence): once each

        def Register(self, request: Any, context: Any) -> Any:
            return coldmod_pb2.RegisterResponse(added=len(request.sources))

        def Report(self, request: Any, context: Any) -> Any:
            if request.app.startswith("shape-"):
                with self.lock:
                    self.batches[(request.app, request.instance_id, request.sequence)] = list(request.deltas)
            return coldmod_pb2.ReportResponse(sequence=request.sequence)

        def total(self, apps: list[str], key: str) -> tuple[int, bool, bool]:
            """Calls of ``key`` over ``apps``, and whether any part was estimated or a lower bound."""
            calls, estimated, lower = 0, False, False
            with self.lock:
                for (app, _, _), deltas in self.batches.items():
                    for delta in deltas:
                        if app in apps and delta.key == key:
                            calls += delta.calls
                            estimated = estimated or delta.estimated
                            lower = lower or delta.lower_bound
            return calls, estimated, lower

    sink = Sink()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    coldmod_pb2_grpc.add_TracingServicer_to_server(sink, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port, sink


def _benchmarks_dir() -> Path:
    import pyperformance

    return Path(pyperformance.__file__).parent / "data-files" / "benchmarks"


def _command(args: list[str], slipcover_root: str | None = None) -> list[str]:
    command = [sys.executable]
    if slipcover_root is not None:
        command += ["-m", "slipcover", "--source", slipcover_root, "--out", os.devnull, "--json"]
    return [*command, str(HERE), *args]


def _result(args: list[str], returncode: int, stdout: str, stderr: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if returncode != 0 or not lines:
        raise SystemExit(f"bench child failed ({' '.join(args)}):\n{stderr[-2000:]}")
    return dict(json.loads(lines[0]))


def _run_child(args: list[str], env: dict[str, str], slipcover_root: str | None = None) -> dict[str, Any]:
    result = subprocess.run(_command(args, slipcover_root), env=env, capture_output=True, text=True, timeout=900)
    return _result(args, result.returncode, result.stdout, result.stderr)


def _run_pair(
    untraced: list[str], traced: list[str], env: dict[str, str], slipcover_root: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both children at once, pinned to one CPU (see the module's docstring); their results."""
    cpu = min(os.sched_getaffinity(0))
    procs = []
    for args, sc in ((untraced, None), (traced, slipcover_root)):
        proc = subprocess.Popen(_command(args, sc), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Pinned while it starts up, single-threaded: its threads and children inherit it. (Not a
        # preexec_fn: this process has gRPC's threads, and Python code between fork and exec may hang.)
        os.sched_setaffinity(proc.pid, {cpu})
        procs.append((args, proc))
    results = []
    for args, proc in procs:
        out, err = proc.communicate(timeout=900)
        results.append(_result(args, proc.returncode, out, err))
    return results[0], results[1]


def main(argv: list[str] | None = None) -> None:
    """Run every benchmark under every variant and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short timing budget per run")
    parser.add_argument("--benchmarks", default=",".join(BENCHMARKS), help="'' for the memory part only")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (medians kept)")
    parser.add_argument("--runs", type=int, default=None, help="runs per call shape (default 3; --quick 1)")
    parser.add_argument("--no-contention", action="store_true", help="skip the shapes' runs under contention")
    parser.add_argument("--no-shapes", action="store_true", help="skip sampled mode's error table")
    parser.add_argument("--shapes", default="", help="comma-separated shapes to run (default: all)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.child[0] == "memory":
            memory_child(args.child[1], args.child[2], args.child[3])
        elif args.child[0] == "shape":
            shape_child(args.child[1], args.child[2], float(args.child[3]), args.child[4])
        else:
            child(args.child[0], args.child[1], args.child[2], float(args.child[3]))
        return
    budget = 1.0 if args.quick else 4.0
    names = [n for n in args.benchmarks.split(",") if n]
    variants = ["untraced", *(v for v in args.variants.split(",") if v and v != "untraced")]
    server, port, sink = _collector()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLDMOD_", "COVERAGE_"))}
    env.update(COLDMOD_GRPC_HOST=f"127.0.0.1:{port}", COLDMOD_INSECURE="on", COVERAGE_CORE="sysmon")
    work = Path(tempfile.mkdtemp(prefix="coldmod-bench-"))
    try:
        root = work / "app"
        root.mkdir()
        (root / "coldmod.rootmarker").write_text('[app]\nname = "bench"\n')
        source = _benchmarks_dir() if set(names) - OWN else Path()
        for name in names:
            if name == "web":
                (root / "bm_web.py").write_text(WEB_APP)
            else:
                shutil.copy(source / f"bm_{name}" / "run_benchmark.py", root / f"bm_{name}.py")
        rounds = args.rounds or (2 if args.quick else 3)
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f} at start; {budget:g} s per run, {rounds} interleaved rounds; "
              "time = CPU time of the process per iteration, ratio = median over rounds of time / "
              "the untraced process's beside it (both on one core)")
        results: dict[str, dict[str, list[dict[str, Any]]]] = {name: {} for name in names}
        for round_ in range(rounds):
            for name in names:
                for variant in variants:
                    if variant == "untraced":
                        continue
                    sc = str(root) if variant == "slipcover" else None
                    base, row = _run_pair(
                        ["--child", "untraced", name, str(root), str(budget)],
                        ["--child", variant, name, str(root), str(budget)], env, slipcover_root=sc,
                    )
                    row["ratio"] = row["cpu"] / base["cpu"]
                    base["ratio"] = 1.0
                    results[name].setdefault("untraced", []).append(base)
                    results[name].setdefault(variant, []).append(row)
                    print(f"  round {round_ + 1} {name:16} {variant:10} {row['cpu'] * 1e3:9.2f} ms "
                          f"(untraced beside it {base['cpu'] * 1e3:.2f} ms): {row['ratio']:.3f}x",
                          file=sys.stderr)
        if names:
            _print_table(names, variants, results)
        print(f"(load average {os.getloadavg()[0]:.1f} at the end)")
        _memory(work, env)
        if not args.no_shapes:
            runs = args.runs or (1 if args.quick else 3)
            only = {x for x in args.shapes.split(",") if x}
            _shapes(work, env, sink, args.quick, runs, contention=not args.no_contention, only=only)
    finally:
        server.stop(None)
        shutil.rmtree(work, ignore_errors=True)


def _print_table(names: list[str], variants: list[str], results: dict[str, Any]) -> None:
    """A Markdown table: slowdown ratio, CPU time per iteration and peak RSS per cell (medians)."""
    print("| benchmark | " + " | ".join(variants) + " |")
    print("|---" * (len(variants) + 1) + "|")
    ratios: dict[str, list[float]] = {v: [] for v in variants}

    def row_of(name: str) -> str:
        cells = []
        for variant in variants:
            rows = results[name][variant]
            # Each pair's ratio: the traced process against the untraced one beside it.
            ratio = statistics.median(r["ratio"] for r in rows)
            if name not in OWN:
                ratios[variant].append(ratio)
            cpu = statistics.median(r["cpu"] for r in rows)
            rss = statistics.median(r["rss_mb"] for r in rows)
            cells.append(f"{ratio:.3f}x ({cpu * 1e3:.1f} ms, {rss:.0f} MB)")
        return f"| {name} | " + " | ".join(cells) + " |"

    lines = [row_of(name) for name in names]
    for name, line in zip(names, lines):
        if name not in OWN:
            print(line)
    if any(ratios.values()):
        geo = [math.exp(statistics.fmean(math.log(r) for r in ratios[v])) for v in variants]
        print("| **geometric mean** | " + " | ".join(f"**{g:.3f}x**" for g in geo) + " |")
    for name, line in zip(names, lines):
        if name in OWN:
            print(line)
    print("\nCells: slowdown against the untraced process run beside it on the same core (CPU time per "
          "iteration, peak RSS of the process), medians over the rounds; `web` (a Flask shop, 60 requests "
          "back to back through WSGI, timed in its steady state) is not in the mean.")


def _memory(work: Path, env: dict[str, str]) -> None:
    root = work / "memory"
    root.mkdir()
    (root / "coldmod.rootmarker").write_text("")
    (root / "many.py").write_text("".join(f"def f{i}():\n    return {i}\n\n\n" for i in range(10_000)))
    print("\nMemory with 10,000 traced functions, each called 3 times:\n")
    print("| variant | tracer structures (tracemalloc) | peak RSS | over untraced (discovery, tracer; not the relay) |")
    print("|---|---|---|---|")
    base = None
    for variant in ("untraced", "sampled", "exact"):
        traced = _run_child(["--child", "memory", variant, str(root), "tracemalloc"], env)
        row = _run_child(["--child", "memory", variant, str(root), "rss"], env)
        base = row["rss_mb"] if base is None else base
        print(f"| {variant} | {traced['tracer_mb']:.1f} MB | {row['rss_mb']:.1f} MB | +{row['rss_mb'] - base:.1f} MB |")


if __name__ == "__main__":
    main()

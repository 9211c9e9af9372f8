"""Precision and recall of `coldmod rm --cold` on real applications with injected dead code (issue 18 §6).

For each application of the corpus below (pinned sdists from PyPI, checked by
sha256, cached under $COLDMOD_BENCH_CACHE or ~/.cache/coldmod-bench, never
committed): unpack it, inject dead code of known classes
(bench/inject_dead_code.py), commit it to a git tree, run it under its real
server traced by `coldmod-trace run` (exact mode) against a `coldmod serve`
with TLS and an API key, drive its routes with HTTP requests, then on a fresh
clone per `--include` level (safe; test-only when `coldmod rm --help` offers
it; review) run `coldmod rm --cold` for real and measure:

- per injected class and level: injected, removed, kept, broke (the test that
  exercises it fails);
- per application and level: how many of its OWN cold functions went, whether
  its own test suite (the part of it that runs here, as listed) still passes,
  whether the injected tests still pass, and whether it still imports and
  serves every traced request with the same status.

Usage: python bench/removal_corpus.py [--quick] [--apps flaskr,httpbin,...]
(``--quick``: flaskr only, one injected module.) Prints Markdown tables;
docs/benchmarks-removal.md shows the latest. The cache's logs/ folder keeps
each level's `coldmod rm` and test output, and results.json every key.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent / "tests-integration")]

import inject_dead_code  # noqa: E402
from removal_fixtures import BIN, Browser, Collector, Process, git_commit, run, start_collector  # noqa: E402

PYTEST = ("python", "-m", "pytest", "-q", "-p", "no:cacheprovider")
NO_ASYNCIO = ("-p", "no:asyncio")  # pytest-asyncio is installed for datasette; the others' configs reject its warning
BENCH_TEST = f"tests/{inject_dead_code.TEST_MODULE}"


@dataclass(frozen=True)
class App:
    """One application of the corpus: where it comes from, how it runs, serves and is tested."""

    name: str  # a short name for the tables
    sdist: str  # the PyPI distribution, name==version
    sha256: str  # of the sdist archive
    framework: str
    subdir: str  # the application inside the unpacked sdist ("" for its root)
    inject: tuple[str, ...]  # the modules that get dead code (imported by the server)
    tests: str  # its test folder
    own_tests: tuple[str, ...]  # its own tests (the part of the suite that runs from the sdist here)
    bench_tests: tuple[str, ...]  # the injected test module alone
    server: tuple[str, ...]  # its real server; {port} is filled in
    traffic: tuple[tuple[str, dict[str, str] | None], ...]  # (path, form to POST or None)
    env: dict[str, str] = field(default_factory=dict)
    setup: tuple[tuple[str, ...], ...] = ()  # untraced commands before serving (a database, ...)
    prepare: Callable[[Path], None] | None = None  # files the app needs that a command cannot make
    ignore: tuple[str, ...] = ()  # .gitignore lines for what setup and serving create


def _datasette_db(root: Path) -> None:
    """A small SQLite database for datasette to serve."""
    with sqlite3.connect(root / "bench.db") as db:
        db.execute("create table if not exists books (id integer primary key, title text, year integer)")
        db.executemany("insert or replace into books values (?, ?, ?)", [(1, "Dune", 1965), (2, "Emma", 1815)])


def _pypiserver_packages(root: Path) -> None:
    """A package folder with one distribution for pypiserver to list and serve."""
    (root / "packages").mkdir(exist_ok=True)
    (root / "packages" / "coldmodbenchpkg-1.0.tar.gz").write_bytes(b"not really a tarball, only served")


def _django_tests(*labels: str) -> tuple[str, ...]:
    return ("python", "-m", "django", "test", "-v", "1", *labels)


# fmt: off
#: The corpus, pinned: every sdist is checked against its sha256 before use.
CORPUS: tuple[App, ...] = (
    App("flaskr", "flask==3.1.0", "5f873c5184c897c8d9d1b05df1e3d01b14910ce69607a117bd3277098a5836ac",
        "Flask (gunicorn)", "examples/tutorial", ("flaskr/blog.py", "flaskr/auth.py"), "tests",
        own_tests=(*PYTEST, *NO_ASYNCIO, "tests", f"--ignore={BENCH_TEST}"),
        bench_tests=(*PYTEST, *NO_ASYNCIO, BENCH_TEST),
        server=("gunicorn", "-w", "2", "-b", "127.0.0.1:{port}", "flaskr:create_app()"),
        setup=(("flask", "--app", "flaskr", "init-db"),), ignore=("instance/",),
        traffic=(("/", None), ("/auth/register", None), ("/auth/register", {"username": "ada", "password": "l"}),
                 ("/auth/login", None), ("/auth/login", {"username": "ada", "password": "l"}), ("/create", None),
                 ("/create", {"title": "t", "body": "b"}), ("/1/update", None),
                 ("/1/update", {"title": "t2", "body": "b2"}), ("/", None), ("/nope", None))),
    App("httpbin", "httpbin==0.10.2", "632148698261c8684ea2d2b624cdea845b402b1fe91736e89df886408c6317a9",
        "Flask (gunicorn)", "", ("httpbin/helpers.py", "httpbin/filters.py"), "tests",
        own_tests=(*PYTEST, *NO_ASYNCIO, "tests", f"--ignore={BENCH_TEST}"),
        bench_tests=(*PYTEST, *NO_ASYNCIO, BENCH_TEST),
        server=("gunicorn", "-w", "2", "-b", "127.0.0.1:{port}", "httpbin:app"),
        traffic=(*((p, None) for p in (
            "/", "/get", "/headers", "/ip", "/user-agent", "/uuid", "/json", "/html", "/xml", "/robots.txt",
            "/deny", "/gzip", "/deflate", "/brotli", "/encoding/utf8", "/status/418", "/status/204",
            "/response-headers?a=b", "/redirect/2", "/relative-redirect/1", "/absolute-redirect/1",
            "/cookies", "/cookies/set?k=v", "/cookies/delete?k", "/basic-auth/u/p", "/hidden-basic-auth/u/p",
            "/bearer", "/base64/aGVsbG8=", "/stream/3", "/stream-bytes/64", "/range/32",
            "/links/3/1", "/image/png", "/image/svg", "/cache", "/cache/60", "/etag/abc", "/anything/x",
            "/forms/post", "/delay/0", "/drip?duration=0&numbytes=4&delay=0", "/spec.json",
        )), ("/post", {"a": "1"}), ("/anything", {"b": "2"}))),
    App("datasette", "datasette==0.65.1", "d8be37ae6dafbfd8e510d49c0dc0fc6696081614d048a507eed86dd2ae433223",
        "ASGI + pluggy (uvicorn)", "", ("datasette/facets.py", "datasette/views/database.py"), "tests",
        # The sdist ships no tests/fixtures.py: these are the test modules that run without it.
        own_tests=(*PYTEST, "tests/test_internals_response.py", "tests/test_internals_urls.py",
                   "tests/test_routes.py", "tests/test_utils.py", "tests/test_internals_request.py",
                   "--deselect", "tests/test_utils.py::test_check_connection_spatialite_raises"),
        bench_tests=(*PYTEST, BENCH_TEST),
        server=("python", "-m", "datasette", "serve", "bench.db", "-h", "127.0.0.1", "-p", "{port}"),
        prepare=_datasette_db, ignore=("bench.db",),
        traffic=tuple((p, None) for p in (
            "/", "/bench", "/bench/books", "/bench/books.json", "/bench/books/1", "/bench/books/1.json",
            "/bench/books?_sort=year", "/bench/books?year__gt=1900", "/bench/books?_facet=year",
            "/bench/books.csv", "/bench.json", "/bench?sql=select+title+from+books", "/bench.db",
            "/-/versions.json", "/-/plugins.json", "/-/settings.json", "/-/databases.json", "/-/metadata.json",
            "/-/threads.json", "/-/actor.json", "/-/static/app.css", "/nope",
        ))),
    App("pypiserver", "pypiserver==2.3.2", "d2b16b12a667a9f356f1b022e039d5ad2c33a76986bb2fdb3f18633dbb1afca3",
        "Bottle (its own server, wsgiref)", "", ("pypiserver/core.py", "pypiserver/_app.py"), "tests",
        own_tests=(*PYTEST, *NO_ASYNCIO, "tests/test_app.py", "tests/test_core.py"),
        bench_tests=(*PYTEST, *NO_ASYNCIO, BENCH_TEST),
        server=("python", "-m", "pypiserver", "run", "-i", "127.0.0.1", "-p", "{port}", "-a", ".", "-P", ".",
                "--server", "wsgiref", "packages"),
        prepare=_pypiserver_packages, ignore=("packages/",),
        traffic=tuple((p, None) for p in (
            "/", "/simple/", "/simple/coldmodbenchpkg/", "/packages/", "/packages/coldmodbenchpkg-1.0.tar.gz",
            "/simple/nope/", "/health", "/favicon.ico", "/nope",
        ))),
    App("debug-toolbar", "django-debug-toolbar==4.4.6",
        "36e421cb908c2f0675e07f9f41e3d1d8618dc386392ec82d23bcfcd5d29c7044",
        "Django (gunicorn)", "", ("debug_toolbar/toolbar.py", "debug_toolbar/utils.py"), "tests",
        own_tests=_django_tests("--settings", "tests.settings", "tests.panels", "tests.commands", *(
            f"tests.test_{m}" for m in ("checks", "decorators", "forms", "integration", "toolbar", "utils"))),
        bench_tests=_django_tests("--settings", "tests.settings", "tests.test_coldmod_bench"),
        server=("gunicorn", "-w", "2", "-b", "127.0.0.1:{port}", "example.wsgi"),
        env={"DJANGO_SETTINGS_MODULE": "example.settings"},
        setup=(("python", "-m", "django", "migrate", "--noinput", "-v", "0"),), ignore=("example/db.sqlite3",),
        traffic=tuple((p, None) for p in (
            "/", "/jinja/", "/jquery/", "/mootools/", "/prototype/", "/htmx/boost/", "/turbo/",
            "/admin/login/", "/ajax/increment", "/ajax/increment", "/nope",
        ))),
)
# fmt: on

#: Trace every call (cold is exact in both modes; exact is simplest to reason about).
TRACE_ENV = {"COLDMOD_MODE": "exact", "COLDMOD_FLUSH_INTERVAL": "0.2"}
VERDICT_LINE = re.compile(r"^(safe|review|unsafe|forced|test-only)\s+(\S+)", re.M)


def cache_dir() -> Path:
    """Where sdists are kept between runs (never in the repository)."""
    return Path(os.environ.get("COLDMOD_BENCH_CACHE") or Path.home() / ".cache" / "coldmod-bench")


def fetch_sdist(app: App, into: Path) -> Path:
    """The app's folder, unpacked into ``into`` from the cached sdist (downloaded once, sha256 checked)."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    name, version = app.sdist.split("==")
    prefix = re.sub(r"[-_.]+", "_", f"{name}-{version}".lower())

    def cached() -> Path | None:
        return next((p for p in cache.iterdir() if re.sub(r"[-_.]+", "_", p.name.lower()).startswith(prefix)
                     and p.name.endswith((".tar.gz", ".zip"))), None)  # fmt: skip

    archive = cached()
    if archive is None:
        run(sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps", app.sdist,
            "-d", cache, check=True)  # fmt: skip
        archive = cached()
        assert archive is not None, f"pip downloaded no sdist of {app.sdist}"
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != app.sha256:
        raise RuntimeError(f"{archive.name}: sha256 {digest}, pinned {app.sha256}; remove it from {cache} to refetch")
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
        top = tar.getnames()[0].split("/")[0]
    return into / top / app.subdir if app.subdir else into / top


def logs_dir() -> Path:
    """Where each level's `coldmod rm` output and test output are kept for reading (the latest run)."""
    logs = cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return logs


def free_port() -> int:
    """A port free on loopback now (servers that cannot report the one they bound to port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(app: App, root: Path, env: dict[str, str], *, traced: bool) -> tuple[Process, str]:
    """Start the app's real server (under `coldmod-trace run` when ``traced``); returns it once it answers."""
    port = free_port()
    argv: list[str | Path] = [a.format(port=port) for a in app.server]
    argv[0] = BIN / str(argv[0])
    if traced:
        argv = [BIN / "coldmod-trace", "run", "--", *argv]
    process = Process(argv, cwd=root, env=env | app.env | (TRACE_ENV if traced else {}))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(base + "/", timeout=5).close()
            return process, base
        except urllib.error.HTTPError:
            return process, base  # it answers
        except OSError:
            if process.popen.poll() is not None or time.monotonic() > deadline:
                process.stop()
                raise RuntimeError(f"{app.name} did not serve: {''.join(process.lines)[-2000:]}") from None
            time.sleep(0.3)


def drive(app: App, base: str) -> list[tuple[str, str, int | str]]:
    """Every request of the app's traffic, once, in order; (method, path, status) of each."""
    visitor = Browser(base)
    for path, form in app.traffic:
        try:
            visitor.request(path, form)
        except (http.client.HTTPException, OSError) as exc:  # a broken answer is an outcome to compare too
            visitor.log.append(("POST" if form is not None else "GET", path, type(exc).__name__))
    return visitor.log


def prepare(app: App, root: Path, env: dict[str, str]) -> None:
    """The untraced setup a fresh checkout needs before it serves."""
    if app.prepare:
        app.prepare(root)
    for argv in app.setup:
        run(BIN / argv[0], *argv[1:], cwd=root, env=env | app.env, check=True)


def tests_pass(argv: tuple[str, ...], root: Path, env: dict[str, str]) -> tuple[bool, str]:
    """Run a test command; passed (pytest's "no tests collected" counts: removal may take a whole test away)."""
    done = run(BIN / argv[0], *argv[1:], cwd=root, env=env)
    return done.returncode in (0, 5), done.stdout + done.stderr


def coldmod(collector: Collector, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A `coldmod` command in ``root`` against the collector."""
    return collector.coldmod(*args, cwd=root)


def function_keys(collector: Collector, root: Path) -> set[str]:
    """Every function key in the tree, as `coldmod srcs` finds them."""
    found = coldmod(collector, root, "srcs", "--format", "json")
    assert found.returncode == 0, found.stderr
    return {f["key"] for f in json.loads(found.stdout)}


def include_levels(collector: Collector, root: Path) -> list[str]:
    """The `--include` levels `coldmod rm` offers, mildest first (test-only only where it exists yet)."""
    helped = coldmod(collector, root, "rm", "--help").stdout
    return ["safe", *(["test-only"] if "test-only" in helped else []), "review"]


@dataclass
class Level:
    """What one `coldmod rm --cold --include LEVEL` did to one app."""

    removed: set[str]
    own_tests: bool
    bench_tests: bool
    serves: bool
    failing_bench: set[str]  # the injected tests that failed
    rm_ok: bool
    note: str = ""


@dataclass
class AppResult:
    app: App
    functions: int
    injected: list[inject_dead_code.Injected]
    cold: set[str]
    verdicts: dict[str, str]
    announced: dict[str, int]  # how many functions the plain dry run says each level removes
    levels: dict[str, Level]
    seconds: float


def bench_app(app: App, work: Path, *, quick: bool = False, levels: list[str] | None = None) -> AppResult:
    """Inject, trace under real traffic, then remove at every level on a fresh clone; what happened."""
    started = time.perf_counter()
    source = fetch_sdist(app, work / "sdist")
    root = work / app.name
    shutil.copytree(source, root)
    injected = inject_dead_code.inject(root, list(app.inject[:1] if quick else app.inject), app.tests)
    (root / ".gitignore").write_text("\n".join([".coldmod-cache/", "__pycache__/", *app.ignore]) + "\n")
    (root / "coldmod.rootmarker").write_text(f'[app]\nname = "bench-{app.name}"\n')
    collector_dir = work / f"{app.name}-collector"
    collector_dir.mkdir()
    collector = start_collector(collector_dir)
    try:
        env = collector.env
        git_commit(root, f"{app.sdist} with injected dead code")
        keys = function_keys(collector, root)
        missing = [i.key for i in injected if i.key not in keys]
        assert not missing, f"injected keys coldmod does not find: {missing}"
        prepare(app, root, env)
        for argv in (app.own_tests, app.bench_tests):
            ok, output = tests_pass(argv, root, env)
            assert ok, f"{app.name}: tests fail before any removal: {output[-3000:]}"
        served = _trace(app, root, collector)
        cold = _cold(collector, root)
        dry = coldmod(collector, root, "rm", "--cold", "--dry-run", "--min-tracked", "0s")
        assert dry.returncode == 0, dry.stdout[-2000:] + dry.stderr
        verdicts = {key: word for word, key in VERDICT_LINE.findall(dry.stdout)}
        announced = announced_counts(dry.stdout + dry.stderr)
        (logs_dir() / f"{app.name}-dry-run.log").write_text(dry.stdout + dry.stderr)
        results = {}
        for level in levels or include_levels(collector, root):
            results[level] = _remove_at(app, root, work / f"{app.name}-{level}", level, collector, keys, served)
    finally:
        collector.process.stop()
    return AppResult(app, len(keys), injected, cold, verdicts, announced, results, time.perf_counter() - started)


def announced_counts(summary: str) -> dict[str, int]:
    """What a plain `rm --cold --dry-run` says each level removes: "would remove N function(s)" at safe (none said:
    0), and safe + M for each "--include LEVEL [would remove] M more" of its kept line (each counted from safe)."""
    would = re.search(r"would remove (\d+) functions? from", summary)
    counts = {"safe": int(would.group(1)) if would else 0}
    for level, more in re.findall(r"--include ([\w-]+) (?:would remove )?(\d+) more", summary):
        counts[level] = counts["safe"] + int(more)
    return counts


def _trace(app: App, root: Path, collector: Collector) -> list[tuple[str, str, int]]:
    """Serve the app traced and drive its traffic; the requests served, once the heatmap has them."""
    server, base = serve(app, root, collector.env, traced=True)
    try:
        served = drive(app, base)
    finally:
        server.stop()
    # A function every injected module runs at import: the heatmap is in once it shows calls.
    warm = inject_dead_code.warm_key(app.inject[0])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        fetched = coldmod(collector, root, "fetch", "--format", "json")
        calls = {f["key"]: f.get("calls") or 0 for f in json.loads(fetched.stdout)["functions"]}
        if calls.get(warm):
            return served
        time.sleep(0.3)
    raise RuntimeError(f"{app.name}: the heatmap never showed a call of {warm}: {''.join(server.lines)[-2000:]}")


def _cold(collector: Collector, root: Path) -> set[str]:
    cold = coldmod(collector, root, "cold", "--format", "json")
    assert cold.returncode == 0, cold.stderr
    return {c["key"] for c in json.loads(cold.stdout)["cold"]}


def _remove_at(
    app: App, root: Path, copy: Path, level: str, collector: Collector, keys: set[str], served: list
) -> Level:
    """`coldmod rm --cold` at ``level`` on a fresh clone, then its tests, imports and traffic."""
    env = collector.env
    run("git", "clone", "-q", root, copy, check=True)
    include = [] if level == "safe" else ["--include", level]
    removal = coldmod(collector, copy, "rm", "--cold", "--min-tracked", "0s", *include)
    removed = keys - function_keys(collector, copy)
    if removal.returncode != 0:
        return Level(removed, False, False, False, set(), False, removal.stderr.strip()[-300:])
    prepare(app, copy, env)
    own_ok, own_out = tests_pass(app.own_tests, copy, env)
    bench_ok, bench_out = tests_pass(app.bench_tests, copy, env)
    log = "\n\n".join([f"$ coldmod rm --cold {' '.join(include)}", removal.stdout, removal.stderr, own_out, bench_out])
    (logs_dir() / f"{app.name}-{level}.log").write_text(log)
    failing = set(re.findall(r"(test_\w+)", "\n".join(
        line for line in bench_out.splitlines() if re.search(r"FAILED|ERROR|FAIL:", line))))  # fmt: skip
    try:
        server, base = serve(app, copy, env, traced=False)
        try:
            serves = drive(app, base) == served
        finally:
            server.stop()
    except RuntimeError:
        serves = False
    return Level(removed, own_ok, bench_ok, serves, failing, True)


# ------------------------------------------------------------------ the report


def _broke(result: AppResult, level: Level, item: inject_dead_code.Injected) -> bool:
    """Whether removing ``item`` broke what its injected test checks (a test removed with it breaks nothing)."""
    return item.key in level.removed and bool(item.test) and item.test in level.failing_bench


def report(results: list[AppResult]) -> str:
    """The Markdown tables."""
    out = []
    levels = list(dict.fromkeys(level for r in results for level in r.levels))
    out.append("**Corpus** (pinned sdists; each traced under its real server, TLS + API key, exact mode)\n")
    out.append("| app | sdist | framework | functions | cold (own) | requests | own tests run |")
    out.append("|---|---|---|---:|---:|---:|---|")
    for r in results:
        injected = {i.key for i in r.injected}
        own_cold = r.cold - injected
        tests = " ".join(a for a in r.app.own_tests[2:] if a not in PYTEST and a not in NO_ASYNCIO)
        out.append(f"| {r.app.name} | {r.app.sdist} (sha256 {r.app.sha256[:12]}…) | {r.app.framework} | "
                   f"{r.functions} | {len(own_cold)} | {len(r.app.traffic)} | `{tests}` |")  # fmt: skip
    out.append("\n**Injected dead code, per class and `--include` level** (broke: the injected test of it fails)\n")
    out.append("| class | right outcome | dry-run verdicts | level | injected | removed | kept | broke |")
    out.append("|---|---|---|---|---:|---:|---:|---:|")
    for kind, dead in inject_dead_code.CLASSES.items():
        items = [(r, i) for r in results for i in r.injected if i.kind == kind]
        verdicts: dict[str, int] = {}
        for r, i in items:
            word = r.verdicts.get(i.key, "hot" if i.key not in r.cold else "?")
            verdicts[word] = verdicts.get(word, 0) + 1
        seen = ", ".join(f"{n} {w}" for w, n in sorted(verdicts.items()))
        for n, level in enumerate(levels):
            removed = sum(i.key in r.levels[level].removed for r, i in items if level in r.levels)
            broke = sum(_broke(r, r.levels[level], i) for r, i in items if level in r.levels)
            first = (kind, "removed" if dead else "kept (reached)", seen) if n == 0 else ("", "", "")
            out.append(
                f"| {' | '.join(first)} | {level} | {len(items)} | {removed} | {len(items) - removed} | {broke} |"
            )
    out.append(
        "\n**Per application and level** (dry run said: what the plain `--dry-run`'s summary announces for the "
        "level; removed: the keys gone after the real run, nested functions included; own: the app's functions "
        "that were cold, not injected)\n"
    )
    out.append(
        "| app | level | dry run said | removed | injected removed | own cold removed | own tests | injected tests "
        "| imports, serves the same |"
    )
    out.append("|---|---|---:|---:|---:|---:|---|---|---|")
    for r in results:
        injected = {i.key for i in r.injected}
        own_cold = r.cold - injected
        for level, result in r.levels.items():
            word = {True: "pass", False: "FAIL"}
            note = f" (rm failed: {result.note})" if not result.rm_ok else ""
            said = r.announced.get(level, "?")
            out.append(
                f"| {r.app.name} | {level} | {said} | {len(result.removed)} | "
                f"{len(result.removed & injected)}/{len(injected)} | "
                f"{len(result.removed & own_cold)}/{len(own_cold)} | {word[result.own_tests]}{note} | "
                f"{word[result.bench_tests]} | {'yes' if result.serves else 'NO'} |"
            )
    out.append("\n**Targets (issue 18)**\n")
    out.extend(_targets(results, levels))
    return "\n".join(out)


def _targets(results: list[AppResult], levels: list[str]) -> list[str]:
    """Each target of the issue, met or not, with the figure."""
    lines = []
    safe_broke = sum(
        (not r.levels["safe"].own_tests) + (not r.levels["safe"].serves)
        + sum(_broke(r, r.levels["safe"], i) for i in r.injected)
        for r in results if "safe" in r.levels
    )  # fmt: skip
    lines.append(f"- 0 broke at `safe`: {'met' if not safe_broke else 'NOT met'} ({safe_broke} broke)")
    unref = [(r, i) for r in results for i in r.injected if i.kind in ("unique", "cluster")]
    if "review" in levels:
        gone = sum(i.key in r.levels["review"].removed for r, i in unref)
        share = gone / len(unref) if unref else 0
        lines.append(f"- >= 90 % of injected unreferenced functions and clusters removed with `--include review`: "
                     f"{'met' if share >= 0.9 else 'NOT met'} ({gone}/{len(unref)}, {share:.0%})")  # fmt: skip
    common = [(r, i) for r in results for i in r.injected if i.kind == "common-name"]
    is_safe = sum(r.verdicts.get(i.key) == "safe" for r, i in common)
    share = is_safe / len(common) if common else 0
    lines.append(f"- >= 60 % of injected common-name methods `safe`: {'met' if share >= 0.6 else 'NOT met'} "
                 f"({is_safe}/{len(common)}, {share:.0%})")  # fmt: skip
    failing = [
        f"{r.app.name} at {level}" for r in results for level, result in r.levels.items() if not result.own_tests
    ]
    lines.append(f"- every app's own tests pass after each level: {'met' if not failing else 'NOT met'}"
                 + (f" (fail: {', '.join(failing)})" if failing else ""))  # fmt: skip
    return lines


def main(argv: list[str]) -> None:
    """Run the corpus and print the tables."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="flaskr only, one injected module")
    parser.add_argument("--apps", default="", help="comma-separated app names (default: all)")
    args = parser.parse_args(argv)
    names = [n for n in args.apps.split(",") if n] or (["flaskr"] if args.quick else [a.name for a in CORPUS])
    unknown = set(names) - {a.name for a in CORPUS}
    if unknown:
        parser.error(f"unknown app(s) {', '.join(sorted(unknown))}; choose from {', '.join(a.name for a in CORPUS)}")
    results = []
    with tempfile.TemporaryDirectory(prefix="coldmod-bench-corpus-") as tmp:
        for app in (a for a in CORPUS if a.name in names):
            work = Path(tmp) / app.name
            work.mkdir()
            result = bench_app(app, work, quick=args.quick)
            print(f"({app.name}: {result.seconds:.0f} s)", file=sys.stderr, flush=True)
            results.append(result)
    print(f"\n**Removal precision and recall** (`coldmod rm --cold`, Python {sys.version.split()[0]}; "
          f"each level's output in {logs_dir()})\n")  # fmt: skip
    print(report(results))
    (logs_dir() / "results.json").write_text(json.dumps([_as_json(r) for r in results], indent=1))


def _as_json(result: AppResult) -> dict:
    """One app's figures, every key named, for comparing two runs (logs/results.json)."""
    return {
        "app": result.app.name,
        "sdist": result.app.sdist,
        "functions": result.functions,
        "cold": sorted(result.cold),
        "injected": [{"key": i.key, "class": i.kind, "dead": i.dead} for i in result.injected],
        "verdicts": result.verdicts,
        "announced": result.announced,
        "levels": {
            level: {
                "removed": sorted(lv.removed),
                "own_tests": lv.own_tests,
                "injected_tests": lv.bench_tests,
                "serves": lv.serves,
                "rm_ok": lv.rm_ok,
                "note": lv.note,
            }
            for level, lv in result.levels.items()
        },
        "seconds": round(result.seconds),
    }


if __name__ == "__main__":
    main(sys.argv[1:])

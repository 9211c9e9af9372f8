"""The one entry point for developers and CI: `nox` runs every check CI runs.

Sessions: tests (per Python: every suite on 3.12, the tracer's and codemod's on
each, and the version-sensitive rest: VERSION_SENSITIVE), lint, types, protos
(regenerate; `-- --check` fails on stale code), bench, demo.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tempfile
import tomllib

import nox

ROOT = pathlib.Path(__file__).parent
PACKAGES = ["coldmod-trace", "coldmod-codemod", "coldmod-cli"]
PYTHONS = ["3.11", "3.12", "3.13"]
# Pinned: the generated code requires grpcio >= this version at run time, so
# raising it raises coldmod-trace's minimum grpcio too (see its pyproject).
GRPCIO_TOOLS = "grpcio-tools==1.68.1"
PROTO_OUT = ROOT / "packages" / "coldmod-trace" / "src"
PROTO_FILES = sorted(str(p.relative_to(ROOT / "protos")) for p in (ROOT / "protos").rglob("*.proto"))
TEST_DEPS = ["pytest>=8", "pytest-timeout", "hypothesis", "trustme", "playwright", "attrs"]
# The removal acceptance tests (tests-integration/test_removal_apps.py): real apps and a real library, pinned.
TEST_DEPS += ["flask==3.1.0", "gunicorn==23.0.0", "django==5.1.4", "freezegun==1.5.1", "mypy==1.13.0", "ruff==0.8.4"]
# Exact mode's import hook must leave coverage.py's results unchanged (test_tracer_rewrite.py).
TEST_DEPS += ["coverage==7.6.9"]
# Optional dependencies of the built wheels that the tests exercise (the Redis store), read
# from coldmod-cli's pyproject so the two never disagree.
EXTRAS = tomllib.loads((ROOT / "packages" / "coldmod-cli" / "pyproject.toml").read_text())["project"][
    "optional-dependencies"
]["redis"]

nox.options.sessions = ["tests", "lint", "types", "protos_check"]
nox.options.reuse_existing_virtualenvs = True
# A Python that is not installed fails the run: "Session demo skipped" with exit 0 read as success.
nox.options.error_on_missing_interpreters = True


def first_installed(versions: list[str]) -> str:
    """The first of ``versions`` whose ``pythonX.Y`` runs here (the last when none does, so nox names it missing)."""
    for version in versions:
        found = shutil.which(f"python{version}")
        if found and subprocess.run([found, "-c", ""], capture_output=True, check=False).returncode == 0:
            return version  # a pyenv shim exists for every version but runs only the enabled ones
    return versions[-1]


def build_wheels(session: nox.Session) -> pathlib.Path:
    """Build every distribution's wheel into a fresh folder and return it."""
    dist = pathlib.Path(tempfile.mkdtemp(prefix="coldmod-dist-"))
    session.install("build>=1.2", "hatchling>=1.24")
    for name in PACKAGES:
        session.run(
            "python", "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist),
            str(ROOT / "packages" / name), silent=True,
        )
    return dist


def install_wheels(session: nox.Session, dist: pathlib.Path) -> None:
    """Install the built wheels (not editable: packaging is tested too)."""
    wheels = sorted(str(w) for w in dist.glob("*.whl"))
    session.install("--force-reinstall", "--no-deps", *wheels)
    session.install("--find-links", str(dist), *wheels)


#: The Python on which every suite runs whole.
FULL_PYTHON = "3.12"
#: What the other Pythons run. The tracer's suite and the codemod's run whole on every Python:
#: the tracer's engines differ per version (sys.settrace on 3.11, sys.monitoring on 3.12+, and
#: each version's code objects, fork and exit hooks), and the codemod reads each version's
#: grammar. The CLI and the whole-system suites exercise the same Python-independent code on
#: every version (the collector, its stores, the web UI, the removal plans); of them, only what
#: differs between versions runs there too, named here with the reason:
VERSION_SENSITIVE = {
    "packages/coldmod-cli/tests": [
        # the installed console script and `python -m coldmod_cli` on this Python
        "test_cli_entry.py",
        # the strict command line reads every command's signature through inspect and typing
        # (Annotated, Literal, get_type_hints), whose results have changed between versions
        "test_cli_args.py",
        # init, files, srcs, cache: the checkout's functions found with this version's ast
        "test_cli_local.py",
        # status names the engine this version runs (sys.settrace or sys.monitoring)
        "test_cli_heatmap.py::test_status_text_and_json",
        # the stores on their own: this version's sqlite3 module (transactions, its SQLite)
        "test_server_store.py",
    ],
    "tests-integration": [
        # the tracer's keys, the codemod's and the running code's agree: qualnames and ast per version
        "test_key_agreement.py",
        # real traced processes (a pre-fork server, gunicorn, multiprocessing) against `coldmod serve`
        "test_prefork_serve.py",
    ],
}


def test_runs(python: str) -> list[list[str]]:
    """The pytest runs of the tests session on ``python``: one per test folder (each stands alone)."""
    folders = [f"packages/{name}/tests" for name in PACKAGES] + ["tests-integration"]
    if python == FULL_PYTHON:
        return [[folder] for folder in folders]
    return [[folder] if folder not in VERSION_SENSITIVE else [f"{folder}/{t}" for t in VERSION_SENSITIVE[folder]]
            for folder in folders]  # fmt: skip


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Unit tests of every package and the whole-system tests, from built wheels.

    Every suite runs whole on FULL_PYTHON; the others run the tracer's and the codemod's whole
    and the version-sensitive part of the rest (VERSION_SENSITIVE).
    """
    dist = build_wheels(session)
    install_wheels(session, dist)
    session.install(*TEST_DEPS, *EXTRAS)
    # One pytest run per test folder: each package's tests stand alone, as
    # they would in its sdist, and same-named helpers never collide. Arguments
    # after `--` replace the folders: `nox -s tests-3.12 -- packages/coldmod-trace/tests -k sampled`.
    runs = [session.posargs] if session.posargs else test_runs(str(session.python))
    try:
        for args in runs:
            session.run("pytest", "-p", "no:cacheprovider", *args, env={"COLDMOD_WHEELS": str(dist)})
    finally:
        shutil.rmtree(dist, ignore_errors=True)  # the integration tests read the wheels until here


@nox.session(python="3.12")
def lint(session: nox.Session) -> None:
    """ruff, and the versions of the three distributions kept in lockstep."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("python", "scripts/check_versions.py")


@nox.session(python="3.12")
def types(session: nox.Session) -> None:
    """mypy: strict for coldmod-trace, standard for the others."""
    dist = build_wheels(session)
    try:
        install_wheels(session, dist)
    finally:
        shutil.rmtree(dist, ignore_errors=True)
    session.install("mypy", "types-protobuf", "grpc-stubs", "pytest", *EXTRAS)
    session.run(
        "mypy",
        "packages/coldmod-trace/src/coldmod_trace",
        "packages/coldmod-codemod/src/coldmod_codemod",
        "packages/coldmod-cli/src/coldmod_cli",
    )


def _generate(session: nox.Session, out: pathlib.Path) -> None:
    session.run(
        "python", "-m", "grpc_tools.protoc", "-I", str(ROOT / "protos"),
        f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}",
        *PROTO_FILES,
    )


@nox.session(python="3.12")
def protos(session: nox.Session) -> None:
    """Regenerate coldmod_proto from protos/ with the pinned grpcio-tools."""
    session.install(GRPCIO_TOOLS)
    _generate(session, PROTO_OUT)


@nox.session(python="3.12")
def protos_check(session: nox.Session) -> None:
    """Fail when the committed generated code differs from what protos/ generates."""
    session.install(GRPCIO_TOOLS)
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp)
        _generate(session, out)
        stale = []
        for generated in sorted(out.rglob("*.py*")):
            committed = PROTO_OUT / generated.relative_to(out)
            if not committed.exists() or committed.read_bytes() != generated.read_bytes():
                stale.append(str(committed.relative_to(ROOT)))
        if stale:
            session.error(f"generated protocol code is stale: {', '.join(stale)}; run `nox -s protos`")


@nox.session(python=first_installed(PYTHONS))
def demo(session: nox.Session) -> None:
    """The main job end to end: `coldmod demo` from freshly built wheels (`-- --keep` leaves it up)."""
    dist = build_wheels(session)
    try:
        install_wheels(session, dist)
    finally:
        shutil.rmtree(dist, ignore_errors=True)
    # Run outside nox's PATH, which has the session's bin first: the demo prints commands for
    # the user's own shell, and there `coldmod` is only found by the full path it then prints.
    coldmod = pathlib.Path(session.bin) / "coldmod"
    done = subprocess.run([str(coldmod), "demo", *session.posargs], env=dict(os.environ), check=False)
    if done.returncode:
        session.error(f"coldmod demo exited with {done.returncode}")


@nox.session(python="3.12")
def screenshot(session: nox.Session) -> None:
    """Regenerate docs/heatmap.png from the demo's web UI in Debian's Chromium (Playwright, no browser download)."""
    dist = build_wheels(session)
    try:
        install_wheels(session, dist)
    finally:
        shutil.rmtree(dist, ignore_errors=True)
    session.install("playwright")
    session.run("python", "scripts/screenshot.py", *session.posargs)


# The removal benchmark's corpus (bench/removal_corpus.py): the apps are installed for their
# dependencies, then uninstalled (their sdists, with injected code, are what runs); the tools
# and the test dependencies of the parts of their suites that run.
BENCH_CORPUS_APPS = ["datasette==0.65.1", "httpbin==0.10.2", "pypiserver==2.3.2", "django-debug-toolbar==4.4.6"]
BENCH_CORPUS_DEPS = [
    "flask==3.1.0", "django==5.1.4", "gunicorn==23.0.0", "uvicorn", "setuptools<81", "trustme", "pytest",
    "pytest-asyncio", "beautifulsoup4", "webtest", "passlib", "html5lib",
]


@nox.session(python=["3.12", "3.13"])
def bench(session: nox.Session) -> None:
    """Benchmarks, baselines side by side in one run; prints tables with ratios."""
    dist = build_wheels(session)
    install_wheels(session, dist)
    session.install("libcst", "pyperformance", "coverage", "slipcover", "pyperf", "django", "playwright", *EXTRAS)
    session.install(*BENCH_CORPUS_APPS, *BENCH_CORPUS_DEPS)
    session.run("python", "-m", "pip", "uninstall", "-q", "-y", *(a.split("==")[0] for a in BENCH_CORPUS_APPS))
    session.run("python", "bench/run.py", *session.posargs)
    shutil.rmtree(dist, ignore_errors=True)

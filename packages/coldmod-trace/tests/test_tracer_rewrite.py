"""Exact mode's import hook: counts compiled into each def, and the program behaves as without it."""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import json
import sys
import traceback
from pathlib import Path
from types import CodeType, ModuleType

import pytest
from conftest import Collector, clean_env, make_app, run_py

pytestmark = pytest.mark.timeout(120)

# Definitions whose first statement is each kind of thing a line event can attach to.
SAMPLE = '''
"""A module docstring."""
from __future__ import annotations

import functools


def plain(x):
    y = x + 1
    return y


def documented(x):
    """Doc."""
    return x * 2


def only_a_docstring():
    """Nothing else."""


@functools.cache
def decorated_docstring():
    """Nothing else either."""


def one_liner(): return 3


@functools.lru_cache(maxsize=None)
def decorated(
    a,
    b=2,
):
    return a + b


def starts_with_try(x):
    try:
        return 1 / x
    except ZeroDivisionError:
        return None


def starts_with_loop(n):
    while n > 0:
        n -= 1
    return n


def raises(x):
    if x:
        raise ValueError(f"bad {x}")
    return x


def numbers(n):
    for i in range(n):
        yield i


async def later():
    return 5


class Shop:
    """A class."""

    def total(self, items):
        return sum(items)

    @property
    def name(self):
        return "shop"


def outer():
    def inner():
        return 1
    return inner() + (lambda: 2)()


def calls_everything():
    import asyncio

    plain(1)
    documented(2)
    only_a_docstring()
    decorated_docstring()
    one_liner()
    decorated(1)
    starts_with_try(0)
    starts_with_try(2)
    starts_with_loop(3)
    raises(0)
    list(numbers(3))
    asyncio.run(later())
    Shop().total([1, 2])
    Shop().name
    outer()
'''


def _functions(code: CodeType):
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield const
            yield from _functions(const)


def _load(path: Path, name: str, code: CodeType | None) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # inspect.getsource finds the module's file through it
    if code is None:
        spec.loader.exec_module(module)
    else:
        exec(code, module.__dict__)
    return module


@pytest.fixture
def pair(tmp_path: Path):
    """The sample module loaded plainly and rewritten, from the same file; and the counters."""
    from coldmod_trace._internal.appfilter import AppFilter
    from coldmod_trace._internal.rewrite import RewriteHook
    from coldmod_trace.rootmarker import load

    root = make_app(tmp_path / "app", {"sample.py": SAMPLE})
    path = root / "sample.py"
    counters: dict[str, itertools.count[int]] = {}
    excluded: list[CodeType] = []
    hook = RewriteHook(
        AppFilter(load(root), str(root)), lambda key: counters.setdefault(key, itertools.count()), excluded.append
    )
    code = hook.code_for(path.read_bytes(), str(path), "sample.py")
    plain = _load(path, "h4_plain_sample", None)
    rewritten = _load(path, "h4_rewritten_sample", code)
    yield plain, rewritten, counters, code, excluded, hook
    for name in ("h4_plain_sample", "h4_rewritten_sample"):
        sys.modules.pop(name, None)


def test_every_def_counts_once_per_call_and_nothing_else_does(pair):
    _, rewritten, counters, _, excluded, _ = pair
    rewritten.calls_everything()
    assert {k: next(v) for k, v in counters.items()} == {  # (next: the count so far)
        "sample.plain": 1,
        "sample.documented": 1,
        "sample.only_a_docstring": 1,
        "sample.decorated_docstring": 1,
        "sample.one_liner": 1,
        "sample.decorated": 1,
        "sample.starts_with_try": 2,
        "sample.starts_with_loop": 1,
        "sample.raises": 1,
        "sample.numbers": 1,  # a generator: once per call, not once per value
        "sample.later": 1,  # a coroutine likewise
        "sample.Shop.total": 1,
        "sample.Shop.name": 1,
        "sample.outer": 1,
        "sample.outer.<locals>.inner": 1,
        "sample.calls_everything": 1,
    }
    # The engine is told about every code object the hook compiled, so it never counts them twice.
    assert {c.co_qualname for c in excluded} >= {"plain", "Shop.total", "outer.<locals>.inner", "<module>"}


def test_line_numbers_docstrings_and_names_are_those_of_the_plain_module(pair):
    plain, rewritten, *_ = pair
    names = ("plain", "documented", "only_a_docstring", "decorated_docstring", "one_liner", "decorated",
             "starts_with_try", "numbers", "outer")
    for name in names:
        a, b = inspect.unwrap(getattr(plain, name)), inspect.unwrap(getattr(rewritten, name))
        assert a.__doc__ == b.__doc__
        assert a.__code__.co_firstlineno == b.__code__.co_firstlineno
        assert a.__code__.co_qualname == b.__code__.co_qualname
        assert {line for *_, line in a.__code__.co_lines()} == {line for *_, line in b.__code__.co_lines()}
    assert rewritten.__doc__ == "A module docstring."
    assert inspect.getsource(rewritten.documented) == inspect.getsource(plain.documented)


def _line_events(function) -> list[tuple[str, int]]:
    """What a debugger sees: every 'line' event of the call (sys.settrace, as pdb and bdb use)."""
    events: list[tuple[str, int]] = []

    def local(frame, event, arg):
        if event == "line":
            events.append((frame.f_code.co_name, frame.f_lineno))
        return local

    def global_(frame, event, arg):
        return local if frame.f_code.co_filename.endswith("sample.py") else None

    sys.settrace(global_)
    try:
        function()
    finally:
        sys.settrace(None)
    return events


def test_a_debugger_sees_the_same_lines(pair):
    plain, rewritten, *_ = pair
    assert _line_events(rewritten.calls_everything) == _line_events(plain.calls_everything)


def test_tracebacks_are_those_of_the_plain_module(pair):
    plain, rewritten, *_ = pair
    texts = []
    for module in (plain, rewritten):
        try:
            module.raises(7)
        except ValueError as exc:
            texts.append(traceback.format_exception(exc)[1:])  # the frames, past this test's own
    assert texts[0] == texts[1]
    assert 'raise ValueError(f"bad {x}")' in "".join(texts[1])


def test_a_file_with_a_syntax_error_fails_to_import_exactly_as_without_the_hook(tmp_path):
    from coldmod_trace._internal.appfilter import AppFilter
    from coldmod_trace._internal.rewrite import RewriteHook
    from coldmod_trace.rootmarker import load

    root = make_app(tmp_path / "app", {"broken.py": "def f(:\n    pass\n"})
    hook = RewriteHook(AppFilter(load(root), str(root)), lambda key: itertools.count(), lambda code: None)
    hook.install()
    sys.path.insert(0, str(root))
    try:
        with pytest.raises(SyntaxError) as raised:
            importlib.import_module("broken")
    finally:
        sys.path.remove(str(root))
        hook.uninstall()
        sys.modules.pop("broken", None)
    assert raised.value.filename == str(root / "broken.py")
    assert raised.value.lineno == 1


APP = """
import json
import sys
import threading

import early  # imported before start(): counted by the engine, not rewritten

import coldmod_trace
from coldmod_trace import tracer

coldmod_trace.start(mode="exact", flush_interval=0.1)

from pkg import late  # imported after start(): rewritten


def main_script():
    pass


def work():
    for _ in range(25_000):
        late.step()


threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for _ in range(3):
    list(late.numbers(4))
    early.before()
    main_script()
status = tracer.status()
print(json.dumps({"rewritten": status.get("rewritten"), "compiled": status.get("compiled")}))
"""


def test_exact_mode_rewrites_what_it_imports_and_counts_the_rest_with_the_engine(tmp_path, collector: Collector):
    root = make_app(
        tmp_path / "app",
        {
            "app.py": APP,
            "early.py": "def before():\n    pass\n",
            "pkg/__init__.py": "",
            "pkg/late.py": "def step():\n    pass\n\n\ndef numbers(n):\n    yield from range(n)\n",
        },
    )
    expected = {
        "pkg.late.step": 100_000,  # four threads: exact, not one increment lost
        "pkg.late.numbers": 3,
        "early.before": 3,
        "app.main_script": 3,
        "app.work": 4,
    }
    result = run_py(root, ["app.py"], clean_env(**collector.env))
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["rewritten"] == 2  # pkg and pkg.late
    assert facts["compiled"] == 2  # a cold start compiles them
    collector.wait_for(lambda r: {k: r.totals()[k] for k in expected} == expected)
    assert not list(root.rglob("__pycache__/late*.pyc"))  # rewritten code never lands in __pycache__
    assert collector.recorder.estimated() == set()

    warm = run_py(root, ["app.py"], clean_env(**collector.env))
    assert warm.returncode == 0, warm.stderr
    assert json.loads(warm.stdout)["compiled"] == 0  # a warm start compiles nothing

    (root / "pkg" / "late.py").write_text("def step():\n    return 1\n\n\ndef numbers(n):\n    yield from range(n)\n")
    changed = run_py(root, ["app.py"], clean_env(**collector.env))
    assert json.loads(changed.stdout)["compiled"] == 1  # the changed module only


COVERED = """
import sys

if sys.argv[1] == "traced":
    import coldmod_trace

    coldmod_trace.start(mode="exact", flush_interval=60)

import shapes

shapes.run()
"""

SHAPES = '''
def branchy(x):
    """Doc."""
    if x > 1:
        return "big"
    elif x < 0:
        return "negative"
    return "small"


def never():
    return 0


def loop(n):
    total = 0
    for i in range(n):
        if i % 2:
            total += i
    return total


def gen(n):
    yield from range(n)


def run():
    branchy(5)
    branchy(0)
    loop(4)
    list(gen(2))
'''


def _coverage(root: Path, env: dict[str, str], variant: str) -> dict[str, object]:
    out = root / f"{variant}.json"
    data = root / f".coverage-{variant}"
    env = {**env, "COVERAGE_FILE": str(data)}
    run = run_py(root, ["-m", "coverage", "run", "--branch", "--source", str(root), "covered.py", variant], env)
    assert run.returncode == 0, run.stderr
    report = run_py(root, ["-m", "coverage", "json", "-o", str(out)], env)
    assert report.returncode == 0, report.stderr
    files = json.loads(out.read_text())["files"]
    shapes = files["shapes.py"]
    return {k: shapes[k] for k in ("executed_lines", "missing_lines", "executed_branches", "missing_branches")}


@pytest.mark.parametrize("core", ["ctrace", "sysmon"])
def test_coverage_reports_the_same_lines_and_branches_with_the_tracer(tmp_path, collector: Collector, core):
    if core == "sysmon" and sys.version_info < (3, 12):
        pytest.skip("coverage's sys.monitoring core is 3.12+")
    marker = '[ignore]\nfiles = ["covered.py"]\n'
    root = make_app(tmp_path / "app", {"covered.py": COVERED, "shapes.py": SHAPES}, marker=marker)
    env = clean_env(**collector.env, COVERAGE_CORE=core)
    without = _coverage(root, env, "plain")
    with_tracer = _coverage(root, env, "traced")
    assert with_tracer == without
    assert without["missing_lines"] == [7, 12]  # the negative branch and never(): the comparison has teeth
    if sys.version_info >= (3, 12):  # (3.11: coverage's trace function keeps the tracer off, said once)
        collector.wait_for(lambda r: r.totals().get("shapes.branchy") == 2)
        assert "shapes.never" not in collector.recorder.totals()


def test_a_corrupt_or_unwritable_cache_only_costs_a_compile(tmp_path):
    from coldmod_trace._internal.appfilter import AppFilter
    from coldmod_trace._internal.rewrite import RewriteHook
    from coldmod_trace.rootmarker import load

    root = make_app(tmp_path / "app", {"m.py": "def f():\n    return 1\n"})
    source = (root / "m.py").read_bytes()
    hook = RewriteHook(AppFilter(load(root), str(root)), lambda key: itertools.count(), lambda code: None)
    hook.code_for(source, str(root / "m.py"), "m.py")
    hook.code_for(source, str(root / "m.py"), "m.py")
    assert hook.compiled == 1
    [cached] = (root / ".coldmod-cache").glob("rewrite*/*.marshal")
    cached.write_bytes(b"garbage")  # a corrupt entry is a miss, never an error
    hook.code_for(source, str(root / "m.py"), "m.py")
    assert hook.compiled == 2

    other = make_app(tmp_path / "ro", {"m.py": "def f():\n    return 1\n"})
    (other / ".coldmod-cache").write_text("a file where the cache directory would be")  # mkdir fails
    hook = RewriteHook(AppFilter(load(other), str(other)), lambda key: itertools.count(), lambda code: None)
    namespace: dict[str, object] = {}
    exec(hook.code_for(source, str(other / "m.py"), "m.py"), namespace)
    assert namespace["f"]() == 1

"""The removal benchmark's harness (bench/removal_corpus.py) on one app, so that CI runs it.

flaskr (Flask 3.1.0's sdist) with one module of injected dead code, one
function or two of every class, traced under gunicorn against a TLS + API key
collector and driven by real requests; then `coldmod rm --cold` at `safe` on a
fresh clone. Whatever the codemod's recall, `safe` must break nothing: the
app's own tests and the injected tests pass, and every request gets the same
status again. The benchmark's figures are in docs/benchmarks-removal.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import inject_dead_code
import removal_corpus

pytestmark = pytest.mark.timeout(600)


def test_flaskr_at_safe_breaks_nothing(tmp_path: Path) -> None:
    flaskr = next(app for app in removal_corpus.CORPUS if app.name == "flaskr")
    result = removal_corpus.bench_app(flaskr, tmp_path, quick=True, levels=["safe"])

    assert {i.kind for i in result.injected} == set(inject_dead_code.CLASSES)
    injected = {i.key for i in result.injected}
    # The traffic leaves every injected function cold and the live half of each block hot.
    assert injected <= result.cold
    assert inject_dead_code.warm_key(flaskr.inject[0]) not in result.cold
    safe = result.levels["safe"]
    assert safe.rm_ok, safe.note
    assert safe.own_tests
    assert safe.bench_tests
    assert safe.serves
    # The harness reads what the plain dry run's summary announces for every level.
    assert {"safe", "test-only", "review"} <= set(result.announced)
    # What dispatch reaches stays.
    reached = {i.key for i in result.injected if not i.dead}
    assert not reached & safe.removed
    table = removal_corpus.report([result])
    for kind in inject_dead_code.CLASSES:
        assert f"| {kind} |" in table
    assert "- 0 broke at `safe`: met" in table

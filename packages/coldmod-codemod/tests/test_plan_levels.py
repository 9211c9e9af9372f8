"""Include levels, test-only code and grouped reasons: before/after trees and what each level removes.

Every number a plan states about another level (``RemovalPlan.levels``) is
checked against a real plan at that level: what the dry run says is what the
run does.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from coldmod_codemod import plan_removal
from coldmod_codemod._rules import REVIEW, SAFE, TEST_ONLY, UNSAFE, VERDICTS

pytestmark = pytest.mark.timeout(60)

LADDER = {SAFE: (SAFE,), TEST_ONLY: (SAFE, TEST_ONLY), REVIEW: (SAFE, TEST_ONLY, REVIEW)}


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def tree(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "coldmod.rootmarker").write_text("")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(src(text).encode("utf-8"))
    return root


def after(plan) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {e.path: e.new.decode(e.encoding) for e in plan.edits}


# -- §1: a cold cluster, and what each level removes -----------------------------------

CLUSTER = {
    "app/__init__.py": "",
    "app/jobs.py": """
        import atexit


        def main():
            return "live"


        @atexit.register
        def first():
            return second()


        def second():
            return third()


        def third():
            return first()
    """,
}
CLUSTER_KEYS = ["app.jobs.first", "app.jobs.second", "app.jobs.third"]


def test_a_cold_cluster_with_a_review_member_goes_together_at_review_and_the_numbers_agree(tmp_path: Path) -> None:
    root = tree(tmp_path, CLUSTER)
    dry = plan_removal(root, CLUSTER_KEYS, levels=[LADDER[TEST_ONLY], LADDER[REVIEW]])
    assert dry.levels == {SAFE: (), TEST_ONLY: (), REVIEW: tuple(CLUSTER_KEYS)}
    first = dry.verdicts["app.jobs.first"]  # registered by a decorator, and called by third
    assert (first.verdict, [g.name for g in first.groups]) == (UNSAFE, ["cold", "definition"])
    for level, include in LADDER.items():
        real = plan_removal(root, CLUSTER_KEYS, include=include)
        assert tuple(real.removed) == dry.levels[level], level
    real = plan_removal(root, CLUSTER_KEYS, include=LADDER[REVIEW])
    assert after(real) == {"app/jobs.py": src('''
        def main():
            return "live"
    ''')}


def test_a_cycle_referenced_from_live_code_stays_whole(tmp_path: Path) -> None:
    files = dict(CLUSTER)
    files["app/views.py"] = """
        from app.jobs import third


        def index():
            return third()
    """
    root = tree(tmp_path, files)
    dry = plan_removal(root, CLUSTER_KEYS, levels=[LADDER[REVIEW]])
    assert dry.levels[REVIEW] == ()
    second = dry.verdicts["app.jobs.second"]
    assert [g.name for g in second.groups] == ["cold"]  # called only by first, itself cold
    third = dry.verdicts["app.jobs.third"]
    assert {g.name for g in third.groups} == {"live", "cold"}
    live = next(g for g in third.groups if g.name == "live")
    assert [p.referrer for p in live.places] == ["app.views.index"]


# -- §4: test-only -------------------------------------------------------------------

FLASKISH = {
    "app/__init__.py": "",
    "app/helpers.py": """
        def live():
            return 1


        def double(x):
            return 2 * x


        def triple(x):
            return 3 * x
    """,
    "app/views.py": """
        from app.helpers import live


        def index():
            return live()
    """,
    "tests/conftest.py": """
        import pytest

        from app.helpers import double


        @pytest.fixture
        def doubled():
            return double(2)
    """,
    "tests/test_helpers.py": """
        from app.helpers import double, live, triple
        from app.views import index


        def test_double(doubled):
            assert doubled == double(2) == 4


        def test_triple():
            assert triple(1) == 3
            assert index() == live()


        def test_index():
            assert index() == 1
    """,
}


def test_a_function_only_tests_use_is_test_only_and_its_reason_lists_the_tests(tmp_path: Path) -> None:
    root = tree(tmp_path, FLASKISH)
    plan = plan_removal(root, ["app.helpers.double"])
    found = plan.verdicts["app.helpers.double"]
    assert (found.verdict, found.removed) == (TEST_ONLY, False)
    assert [g.name for g in found.groups] == ["tests"]
    assert {p.referrer for p in found.groups[0].places} == {"tests.conftest.doubled", "tests.test_helpers.test_double"}
    assert all(r.endswith("(in a test)") for r in found.reasons)


def test_include_test_only_removes_the_function_with_its_tests_and_fixtures(tmp_path: Path) -> None:
    root = tree(tmp_path, FLASKISH)
    plan = plan_removal(root, ["app.helpers.double"], include=LADDER[TEST_ONLY])
    found = plan.verdicts["app.helpers.double"]
    assert (found.verdict, found.removed) == (TEST_ONLY, True)
    assert found.tests == ("tests.conftest.doubled", "tests.test_helpers.test_double")
    assert plan.tests == found.tests
    assert after(plan) == {
        "app/helpers.py": src('''
            def live():
                return 1


            def triple(x):
                return 3 * x
        '''),
        "tests/conftest.py": "",
        "tests/test_helpers.py": src('''
            from app.helpers import live, triple
            from app.views import index


            def test_triple():
                assert triple(1) == 3
                assert index() == live()


            def test_index():
                assert index() == 1
        '''),
    }


def test_a_test_that_also_exercises_live_code_keeps_the_key_with_the_reason(tmp_path: Path) -> None:
    root = tree(tmp_path, FLASKISH)
    plan = plan_removal(root, ["app.helpers.triple"], include=LADDER[REVIEW])
    found = plan.verdicts["app.helpers.triple"]
    assert (found.verdict, found.removed) == (TEST_ONLY, False)
    assert plan.edits == ()
    assert any(r.startswith("tests.test_helpers.test_triple stays: it also exercises app.") for r in found.reasons)


def test_a_fixture_another_test_asks_for_stays(tmp_path: Path) -> None:
    files = dict(FLASKISH)
    files["tests/test_more.py"] = """
        def test_uses_the_fixture(doubled):
            assert doubled
    """
    root = tree(tmp_path, files)
    plan = plan_removal(root, ["app.helpers.double"], include=LADDER[TEST_ONLY])
    found = plan.verdicts["app.helpers.double"]
    assert not found.removed
    why = "tests.conftest.doubled stays: tests.test_more.test_uses_the_fixture asks for it as a fixture"
    assert why in found.reasons


def test_a_module_level_use_in_a_test_file_keeps_it(tmp_path: Path) -> None:
    files = dict(FLASKISH)
    files["tests/test_more.py"] = """
        from app.helpers import double

        FOUR = double(2)
    """
    root = tree(tmp_path, files)
    plan = plan_removal(root, ["app.helpers.double"], include=LADDER[REVIEW])
    found = plan.verdicts["app.helpers.double"]
    assert (found.verdict, found.removed) == (UNSAFE, False)
    assert "tests/test_more.py:3 call" in found.reasons


def test_test_only_levels_agree_with_the_real_runs(tmp_path: Path) -> None:
    root = tree(tmp_path, FLASKISH)
    keys = ["app.helpers.double", "app.helpers.triple", "app.helpers.live"]
    dry = plan_removal(root, keys, levels=[LADDER[TEST_ONLY], LADDER[REVIEW]])
    assert dry.levels == {SAFE: (), TEST_ONLY: ("app.helpers.double",), REVIEW: ("app.helpers.double",)}
    for level, include in LADDER.items():
        assert tuple(plan_removal(root, keys, include=include).removed) == dry.levels[level]


def test_the_verdicts_are_ordered_best_to_worst() -> None:
    assert VERDICTS == (SAFE, TEST_ONLY, REVIEW, UNSAFE)


# -- §5: grouped reasons --------------------------------------------------------------


def test_reasons_are_grouped_by_where_they_come_from_one_site_each(tmp_path: Path) -> None:
    files = {
        "app/__init__.py": "",
        "app/core.py": """
            import atexit


            def target():
                return 1


            @atexit.register
            def cold_caller():
                return target() + target()


            def live_caller():
                return target()


            HANDLERS = {"t": "target"}
            X = target
        """,
        "app/templates/page.html": "{{ target }}\n",
        "tests/test_core.py": """
            from app.core import target


            def test_target():
                assert target() == 1
        """,
    }
    root = tree(tmp_path, files)
    plan = plan_removal(root, ["app.core.target", "app.core.cold_caller"])
    groups = {g.name: g for g in plan.verdicts["app.core.target"].groups}
    assert list(groups) == ["live", "cold", "tests", "strings"]
    assert [str(p) for p in groups["live"].places] == [
        "app/core.py:14 call in app.core.live_caller", "app/core.py:18 name"]
    assert [str(p) for p in groups["cold"].places] == ["app/core.py:10 call in app.core.cold_caller"]  # once a line
    assert groups["cold"].line() == "from cold code (goes if it goes) (1): app/core.py:10 call in app.core.cold_caller"
    assert [p.path for p in groups["strings"].places] == ["app/core.py", "app/templates/page.html"]


def test_a_name_in_a_tests_string_does_not_tie_the_test_to_that_function(tmp_path: Path) -> None:
    files = dict(FLASKISH)
    files["tests/test_more.py"] = """
        from app.helpers import double


        def test_double_again():
            assert double(1) == 2, "live is not what this tests"
    """
    root = tree(tmp_path, files)
    plan = plan_removal(root, ["app.helpers.double", "app.helpers.live"], include=LADDER[TEST_ONLY])
    assert plan.removed == ["app.helpers.double"]
    assert "tests.test_more.test_double_again" in plan.tests


@pytest.mark.parametrize("enabled", [True, False])
def test_the_cycle_collector_pauses_while_a_plan_runs_and_comes_back_as_it_was(tmp_path: Path, enabled: bool) -> None:
    import gc

    root = tree(tmp_path, {"app/__init__.py": "", "app/jobs.py": "def dead():\n    return 1\n"})
    seen = []
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        plan = plan_removal(root, ["app.jobs.dead"], progress=lambda done, total: seen.append(gc.isenabled()))
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
    assert plan.verdicts["app.jobs.dead"].verdict == SAFE
    assert seen
    assert not any(seen)  # paused for the whole plan

"""rm: verdicts, --dry-run, --force, --cold and its guard rails (minimum tracking, clean git, no test
code, --include review), through the real entry point."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import COLD, HOT, git, traced

pytestmark = pytest.mark.timeout(120)

VERDICTS = ("safe", "review", "unsafe", "forced")


def _tree(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*.py"))}


def test_dry_run_prints_verdicts_and_diff_and_changes_nothing(cli, shop):
    before = _tree(shop)

    result = cli("rm", "--dry-run", "shop.cart.Cart.merge", "shop.views.coupon")

    assert result.code == 1  # coupon is refused: it is in ROUTES
    lines = result.out.splitlines()
    assert lines[0] == "safe    shop.cart.Cart.merge"
    assert lines[1] == "unsafe  shop.views.coupon"
    assert lines[2] == "          from live code (1): shop/views.py:42 name"  # ROUTES, at module level
    assert "-    def merge(self, other: Cart) -> None:" in result.out
    assert "--- a/shop/cart.py" in result.out
    assert "would remove 1 function from 1 file (dry run: nothing changed)" in result.err
    assert "refused 1 key (shop.views.coupon)" in result.err
    assert "--force" in result.err
    assert _tree(shop) == before
    assert git(shop, "status", "--porcelain") == ""


def test_bool_flag_before_a_key_does_not_swallow_it(cli, shop):
    # Fire gives `--dry-run KEY` to the flag as its value; the key must still count.
    before = _tree(shop)
    result = cli("rm", "--dry-run", "shop.cart.Cart.merge")
    assert result.code == 0, result.err
    assert result.out.startswith("safe    shop.cart.Cart.merge")
    assert _tree(shop) == before


def test_rm_removes_safe_keys_and_the_app_still_works(cli, shop):
    result = cli("rm", "shop.cart.Cart.merge", "shop.catalog.import_legacy_csv")

    assert result.code == 0, result.err
    assert "removed 2 functions from 2 files" in result.err
    assert "def merge" not in (shop / "shop" / "cart.py").read_text()
    assert "shop.cart.Cart.merge" not in cli("srcs").out
    tests = subprocess.run([sys.executable, "-m", "unittest", "-q"], cwd=shop, capture_output=True, text=True)
    assert tests.returncode == 0, tests.stderr


def test_unsafe_key_is_refused_then_forced(cli, shop):
    refused = cli("rm", "shop.views.coupon")
    assert refused.code == 1
    assert "def coupon" in (shop / "shop" / "views.py").read_text()

    forced = cli("rm", "shop.views.coupon", "--force")
    assert forced.code == 0, forced.err
    assert forced.out.startswith("forced  shop.views.coupon")
    assert "def coupon" not in (shop / "shop" / "views.py").read_text()


def test_unknown_key_is_one_sentence_exit_1(cli, shop):
    result = cli("rm", "shop.cart.Cart.nope", "--dry-run")
    assert result.code == 1
    assert result.err.startswith("coldmod: unknown key 'shop.cart.Cart.nope'")
    assert result.out == ""


def test_refuses_to_write_on_a_dirty_tree_unless_allowed(cli, shop):
    views = shop / "shop" / "views.py"
    views.write_text(views.read_text() + "\n# a local edit\n")  # not a file the removal touches
    before = _tree(shop)

    refused = cli("rm", "shop.cart.Cart.merge")

    assert refused.code == 1
    assert refused.err.startswith("coldmod: uncommitted changes in shop/views.py;")
    assert "--allow-dirty" in refused.err
    assert refused.out == ""  # refused before planning: no verdicts either
    assert _tree(shop) == before

    dry = cli("rm", "--dry-run", "shop.cart.Cart.merge")  # a dry run writes nothing: allowed, with a note
    assert dry.code == 0, dry.err
    assert "without --dry-run, rm refuses" in dry.err

    allowed = cli("rm", "shop.cart.Cart.merge", "--allow-dirty")
    assert allowed.code == 0, allowed.err
    assert "def merge" not in (shop / "shop" / "cart.py").read_text()
    assert views.read_text().endswith("# a local edit\n")


def test_staged_changes_count_as_dirty(cli, shop):
    cart = shop / "shop" / "cart.py"
    cart.write_text(cart.read_text() + "\n# staged\n")
    git(shop, "add", "shop/cart.py")
    result = cli("rm", "shop.cart.Cart.merge")
    assert result.code == 1
    assert "uncommitted changes in shop/cart.py" in result.err


def test_untracked_files_do_not_make_the_tree_dirty(cli, shop):
    (shop / "notes.txt").write_text("scratch\n")
    result = cli("rm", "shop.cart.Cart.merge")
    assert result.code == 0, result.err


def test_refuses_outside_git_unless_allowed(cli, shop):
    import shutil

    shutil.rmtree(shop / ".git")
    before = _tree(shop)
    refused = cli("rm", "shop.cart.Cart.merge")
    assert refused.code == 1
    assert "is not in a git work tree" in refused.err
    assert _tree(shop) == before
    assert cli("rm", "shop.cart.Cart.merge", "--allow-dirty").code == 0


def test_test_code_is_refused_with_a_reason(cli, shop):
    # The shop's tests/ are excluded by default: never traced, never removed.
    before = _tree(shop)
    result = cli("rm", "tests.test_shop.ShopTest.test_cart_total")
    assert result.code == 1
    assert result.err.startswith("coldmod: tests.test_shop.ShopTest.test_cart_total (tests/test_shop.py) is test code")
    assert _tree(shop) == before


def test_rm_cold_refuses_a_heatmap_younger_than_the_minimum(cli, shop, insecure_env):
    traced(insecure_env.address, shop, HOT)
    before = _tree(shop)

    result = cli("rm", "--cold")

    assert result.code == 1
    assert "has been tracked for" in result.err
    assert "less than the minimum of 7d" in result.err
    assert "--min-tracked" in result.err
    assert result.out == ""
    assert _tree(shop) == before

    shorter = cli("rm", "--cold", "--min-tracked", "2h")
    assert shorter.code == 1
    assert "less than the minimum of 2h" in shorter.err


def test_rm_cold_dry_run_warns_about_short_tracking_and_shows_the_removal(cli, shop, insecure_env):
    # A dry run changes nothing: refusing it only hid what the removal would be.
    traced(insecure_env.address, shop, HOT)
    before = _tree(shop)

    result = cli("rm", "--cold", "--dry-run")

    assert result.code == 0, result.err
    short = r"warning: the heatmap of 'demo-shop' has been tracked for \d+s, less than the minimum of 7d"
    assert re.search(short, result.err)
    assert "this dry run shows what would be removed" in result.err
    assert "shop.views.coupon" in result.out
    assert "would remove" in result.err
    assert _tree(shop) == before


def test_rm_cold_prints_how_long_it_was_tracked(cli, shop, insecure_env):
    traced(insecure_env.address, shop, HOT)
    result = cli("rm", "--cold", "--dry-run", "--min-tracked", "0s")
    assert result.code == 0, result.err
    assert re.search(r"has been tracked for \d+s \(minimum 0s, --min-tracked\)", result.err), result.err


def test_dry_run_lists_every_cold_key_with_verdict_and_reasons(cli, shop, insecure_env):
    traced(insecure_env.address, shop, HOT)
    result = cli("rm", "--cold", "--dry-run", "--min-tracked", "0s")
    assert result.code == 0, result.err
    verdicts = {line.split()[1]: line for line in result.out.splitlines() if line.split(" ")[0] in VERDICTS}
    assert set(verdicts) == set(COLD)
    assert verdicts["shop.cart.Cart.merge"].split() == ["safe", "shop.cart.Cart.merge"]
    assert verdicts["shop.views.coupon"].split() == ["unsafe", "shop.views.coupon"]
    lines = result.out.splitlines()
    # ROUTES names coupon; apply_coupon is called only by coupon, itself cold: one line per group.
    assert lines[lines.index("unsafe  shop.views.coupon") + 1] == "          from live code (1): shop/views.py:42 name"
    apply = lines.index("unsafe  shop.cart.Cart.apply_coupon")
    assert lines[apply + 1] == (
        "          from cold code (goes if it goes) (1): shop/views.py:35 attribute in shop.views.coupon"
    )
    assert "kept 2 cold functions that may still be used (--include test-only would remove 0 more, " \
        "--include review 0 more)" in result.err


REVIEW_MODULE = """\
from shop.views import ROUTES


def route(path):
    def register(handler):
        ROUTES[path] = handler
        return handler

    return register


@route("/old-sale")
def old_sale(query):
    return 200, "sale"


def unused_helper():
    return 1
"""


def test_include_review_removes_review_verdicts_too(cli, shop, insecure_env):
    (shop / "shop" / "extra.py").write_text(REVIEW_MODULE)
    git(shop, "add", "shop/extra.py")
    git(shop, "commit", "-q", "-m", "extra")
    traced(insecure_env.address, shop, HOT | {"shop.extra.route": 1, "shop.extra.route.<locals>.register": 1})

    default = cli("rm", "--cold", "--dry-run", "--min-tracked", "0s")
    assert default.code == 0, default.err
    lines = {line.split()[1]: line.split()[0] for line in default.out.splitlines() if line.split(" ")[0] in VERDICTS}
    assert lines["shop.extra.old_sale"] == "review"
    assert lines["shop.extra.unused_helper"] == "safe"
    assert "-def old_sale" not in default.out  # review is not removed without --include review
    assert "-def unused_helper" in default.out

    removed = cli("rm", "--cold", "--min-tracked", "0s", "--include", "review")
    assert removed.code == 0, removed.err
    assert "(1 review among them)" in removed.err
    text = (shop / "shop" / "extra.py").read_text()
    assert "old_sale" not in text
    assert "unused_helper" not in text


def test_named_review_key_is_refused_without_include_review(cli, shop):
    (shop / "shop" / "extra.py").write_text(REVIEW_MODULE)
    git(shop, "add", "shop/extra.py")
    git(shop, "commit", "-q", "-m", "extra")
    refused = cli("rm", "shop.extra.old_sale")
    assert refused.code == 1
    assert "--include review" in refused.err
    assert "def old_sale" in (shop / "shop" / "extra.py").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rm", "--cold", "--include", "unsafe"], "--include"),
        (["rm", "--cold", "--force"], "--force applies to keys named one by one"),
        (["rm", "--cold", "--min-tracked", "soon"], "--min-tracked must be a duration"),
        (["rm", "shop.cart.Cart.merge", "--min-tracked", "1d"], "only apply with --cold"),
    ],
)
def test_bad_arguments_are_one_sentence_exit_2_and_nothing_done(cli, shop, argv, message):
    before = _tree(shop)
    result = cli(*argv)
    assert result.code == 2, result.err
    assert message in result.err
    assert "Traceback" not in result.err
    assert result.out == ""
    assert _tree(shop) == before


def test_no_progress_bar_when_stderr_is_not_a_terminal(cli, shop):
    result = cli("rm", "--dry-run", "shop.cart.Cart.merge")
    assert "planning" not in result.err
    assert "\r" not in result.err


def test_progress_bar_on_a_terminal(shop):
    import os
    import pty

    # A real terminal for stderr; stdout stays a pipe (data only).
    leader, follower = pty.openpty()
    done = subprocess.run(
        [sys.executable, "-m", "coldmod_cli", "rm", "--dry-run", "shop.cart.Cart.merge"],
        cwd=shop,
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
        timeout=60,
        check=False,
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert done.returncode == 0
    assert b"planning the removal" in seen
    assert "planning" not in done.stdout


def test_rm_cold_removes_every_safe_cold_function(cli, shop, insecure_env):
    traced(insecure_env.address, shop, HOT)

    result = cli("rm", "--cold", "--min-tracked", "0s")

    assert result.code == 0, result.err
    assert "removed 3 functions from 2 files" in result.err
    assert "kept 2 cold functions that may still be used" in result.err
    remaining = cli("srcs").out
    for gone in (
        "shop.cart.Cart.merge",
        "shop.catalog.import_legacy_csv",
        "shop.catalog.format_price_in_dollars",
    ):
        assert gone not in remaining
    for kept in ("shop.views.coupon", "shop.cart.Cart.apply_coupon"):
        assert kept in remaining
    tests = subprocess.run([sys.executable, "-m", "unittest", "-q"], cwd=shop, capture_output=True, text=True)
    assert tests.returncode == 0, tests.stderr


def test_rm_cold_since_widens_what_is_cold(cli, shop, insecure_env):
    traced(insecure_env.address, shop, HOT)
    before = _tree(shop)

    result = cli("rm", "--cold", "--since", "0s", "--dry-run", "--min-tracked", "0s")  # nothing ran in 0 seconds

    assert result.code == 0, result.err
    verdicts = [line for line in result.out.splitlines() if line.split(" ")[0] in VERDICTS]
    assert len(verdicts) == 20
    assert _tree(shop) == before


def test_init_writes_the_test_exclusions_and_srcs_leaves_tests_out(cli, tmp_path, monkeypatch):
    for relpath in ("polls/views.py", "polls/tests.py", "tests/test_app.py", "conftest.py", "pkg/io_test.py"):
        path = tmp_path / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("def f():\n    pass\n")
    monkeypatch.chdir(tmp_path)

    assert cli("init").code == 0

    text = (tmp_path / "coldmod.rootmarker").read_text()
    for glob in ("**/tests/**", "**/test_*.py", "**/*_test.py", "**/tests.py", "**/conftest.py"):
        assert f'"{glob}"' in text
    assert cli("srcs").out.split() == ["polls/views.py:1", "polls.views.f"]
    # The defaults hold even when the user deletes them from the file.
    (tmp_path / "coldmod.rootmarker").write_text("")
    assert cli("srcs").out.split() == ["polls/views.py:1", "polls.views.f"]


# -- issue 18: every number the dry run prints is the number the run acts on ----------

JOBS_MODULE = """\
import atexit


@atexit.register
def flush_all():
    return flush_one()


def flush_one():
    return retry_flush()


def retry_flush():
    return flush_all()


def double_price(cents):
    return 2 * cents
"""
JOBS_TEST = """\
import unittest

from shop.jobs import double_price


class JobsTest(unittest.TestCase):
    def test_double_price(self) -> None:
        assert double_price(2) == 4
"""
JOBS_COLD = ["shop.jobs.flush_all", "shop.jobs.flush_one", "shop.jobs.retry_flush", "shop.jobs.double_price"]


def _with_jobs(shop):
    (shop / "shop" / "jobs.py").write_text(JOBS_MODULE)
    (shop / "tests" / "test_jobs.py").write_text(JOBS_TEST)
    git(shop, "add", "shop/jobs.py", "tests/test_jobs.py")
    git(shop, "commit", "-q", "-m", "jobs")


def _removed(err: str) -> int:
    found = re.search(r"removed (\d+) functions?", err)
    return int(found.group(1)) if found else 0


def test_dry_run_says_how_many_more_each_level_removes_and_the_runs_agree(cli, shop, insecure_env):
    _with_jobs(shop)
    traced(insecure_env.address, shop, HOT)

    dry = cli("rm", "--cold", "--dry-run", "--min-tracked", "0s")

    assert dry.code == 0, dry.err
    assert "would remove 3 functions from 2 files" in dry.err
    # The cluster (one review, two called only from inside it) and the test-only helper.
    assert "(--include test-only would remove 1 more, --include review 4 more)" in dry.err
    lines = dry.out.splitlines()
    flush = lines.index("unsafe  shop.jobs.flush_all")
    assert lines[flush + 1 : flush + 3] == [
        "          from cold code (goes if it goes) (1): shop/jobs.py:14 call in shop.jobs.retry_flush",
        "          by its definition (1): shop/jobs.py:4 decorator",
    ]
    double = lines.index("test-only shop.jobs.double_price")
    assert lines[double + 1] == (
        "          from tests (1): tests/test_jobs.py:8 call in tests.test_jobs.JobsTest.test_double_price")
    for include, expected in (("safe", 3), ("test-only", 3 + 1), ("review", 3 + 4)):
        run = cli("rm", "--cold", "--min-tracked", "0s", "--include", include)
        assert run.code == 0, run.err
        assert _removed(run.err) == expected, (include, run.err)
        tests = subprocess.run([sys.executable, "-m", "unittest", "-q"], cwd=shop, capture_output=True, text=True)
        assert tests.returncode == 0, tests.stderr
        git(shop, "reset", "-q", "--hard")


def test_include_test_only_removes_the_helper_with_its_test(cli, shop, insecure_env):
    _with_jobs(shop)
    traced(insecure_env.address, shop, HOT)

    result = cli("rm", "--cold", "--min-tracked", "0s", "--include", "test-only")

    assert result.code == 0, result.err
    assert "removed 4 functions and 1 test function from 4 files (1 test-only among them)" in result.err
    assert "with the tests that exist only for it: tests.test_jobs.JobsTest.test_double_price" in result.out
    assert "double_price" not in (shop / "shop" / "jobs.py").read_text()
    assert "double_price" not in (shop / "tests" / "test_jobs.py").read_text()
    assert "def flush_all" in (shop / "shop" / "jobs.py").read_text()  # review: not at this level
    tests = subprocess.run([sys.executable, "-m", "unittest", "-q"], cwd=shop, capture_output=True, text=True)
    assert tests.returncode == 0, tests.stderr


def test_a_test_that_exercises_live_code_keeps_the_helper_with_the_reason(cli, shop, insecure_env):
    _with_jobs(shop)
    test = JOBS_TEST.replace("assert double_price(2) == 4", "assert double_price(format_price(2) and 2) == 4")
    test = test.replace("from shop.jobs", "from shop.catalog import format_price\nfrom shop.jobs")
    (shop / "tests" / "test_jobs.py").write_text(test)
    git(shop, "commit", "-q", "-am", "test uses live code")
    traced(insecure_env.address, shop, HOT)

    result = cli("rm", "--cold", "--min-tracked", "0s", "--include", "test-only", "--dry-run")

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    double = lines.index("test-only shop.jobs.double_price")
    assert lines[double + 2] == (
        "          tests.test_jobs.JobsTest.test_double_price stays: it also exercises shop.catalog.format_price "
        "(tests/test_jobs.py:9), which stays")


def test_live_referrers_say_their_production_calls(cli, shop, insecure_env):
    (shop / "shop" / "extra.py").write_text("def old_label():\n    return 'old'\n")
    views = (shop / "shop" / "views.py").read_text()
    (shop / "shop" / "views.py").write_text(views.replace(
        '    return 200, "\\n".join(product.label for product in list_products())',
        '    from shop.extra import old_label\n\n    if not query:\n        return 200, old_label()\n'
        '    return 200, "\\n".join(product.label for product in list_products())'))
    git(shop, "add", "-A")
    git(shop, "commit", "-q", "-m", "extra")
    traced(insecure_env.address, shop, HOT)

    result = cli("rm", "--cold", "--min-tracked", "0s", "--dry-run")

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    old = lines.index("unsafe  shop.extra.old_label")
    assert lines[old + 1] == "          from live code (1): shop/views.py:16 call in shop.views.index (10 calls)"


def test_format_json_has_the_same_groups_and_levels(cli, shop, insecure_env):
    _with_jobs(shop)
    traced(insecure_env.address, shop, HOT)

    result = cli("rm", "--cold", "--min-tracked", "0s", "--dry-run", "--format", "json")

    assert result.code == 0, result.err
    import json

    data = json.loads(result.out)
    assert data["dry_run"] is True
    assert len(data["levels"]["safe"]) == 3
    assert len(data["levels"]["test-only"]) == 4
    assert len(data["levels"]["review"]) == 7
    verdicts = {v["key"]: v for v in data["verdicts"]}
    flush = verdicts["shop.jobs.flush_all"]
    assert (flush["verdict"], flush["removed"]) == ("unsafe", False)
    assert [g["group"] for g in flush["groups"]] == ["cold", "definition"]
    assert flush["groups"][0] == {
        "group": "cold",
        "title": "from cold code (goes if it goes)",
        "count": 1,
        "sites": [
            {
                "path": "shop/jobs.py", "line": 14, "kind": "call", "detail": "", "in": "shop.jobs.retry_flush",
                "calls": 0,
            },
        ],
        "line": "from cold code (goes if it goes) (1): shop/jobs.py:14 call in shop.jobs.retry_flush",
    }
    assert "-    def merge" in data["diff"]


@pytest.mark.parametrize("path", [
    "tests/x.py", "a/tests/b/c.py", "tests/templates/t.html", "test_a.py", "pkg/test_a.py", "a_test.py",
    "app/tests.py", "conftest.py", "pkg/conftest.py", "app/views.py", "testing/x.py", "pkg/testsuite.py",
    "contest.py", "attest.py", "app/test.py",
])
def test_the_codemod_library_calls_test_files_what_the_tracer_does(path):
    # rm passes the tracer's predicate; the library's own default (used alone) must be the same table.
    from coldmod_codemod._conventions import is_test_file as library
    from coldmod_trace.rootmarker import is_test_file as tracer

    assert library(path) == tracer(path)

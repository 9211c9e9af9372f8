"""rm: verdicts, --dry-run, --force, --cold, the git warning, through the real entry point."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import HOT, git, traced

pytestmark = pytest.mark.timeout(120)


def _tree(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*.py"))}


def test_dry_run_prints_verdicts_and_diff_and_changes_nothing(cli, shop):
    before = _tree(shop)

    result = cli("rm", "--dry-run", "shop.cart.Cart.merge", "shop.views.coupon")

    assert result.code == 1  # coupon is refused: it is in ROUTES
    lines = result.out.splitlines()
    assert lines[0] == "safe    shop.cart.Cart.merge"
    assert lines[1].startswith("unsafe  shop.views.coupon  (shop/views.py:")
    assert "-    def merge(self, other: Cart) -> None:" in result.out
    assert "--- a/shop/cart.py" in result.out
    assert "would remove 1 functions from 1 file (dry run: nothing changed)" in result.err
    assert "refused 1 unsafe key (shop.views.coupon)" in result.err
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


def test_warns_about_uncommitted_changes_in_touched_files(cli, shop):
    cart = shop / "shop" / "cart.py"
    cart.write_text(cart.read_text() + "\n# local edit\n")
    (shop / "shop" / "views.py").write_text((shop / "shop" / "views.py").read_text() + "\n# untouched\n")

    result = cli("rm", "--dry-run", "shop.cart.Cart.merge")

    assert result.code == 0
    assert "warning: uncommitted changes in shop/cart.py;" in result.err
    assert "views.py" not in result.err  # only the files it would touch


def test_rm_cold_removes_every_safe_cold_function(cli, shop, insecure_env):
    traced(insecure_env.address, shop, HOT)

    result = cli("rm", "--cold")

    assert result.code == 0, result.err
    assert "removed 3 functions from 2 files" in result.err
    assert "left 2 cold functions that are still referenced" in result.err
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

    result = cli("rm", "--cold", "--since", "0s", "--dry-run")  # nothing ran in the last 0 seconds

    assert result.code == 0, result.err
    verdicts = [line for line in result.out.splitlines() if line.split(" ")[0] in ("safe", "unsafe")]
    assert len(verdicts) == 20
    assert _tree(shop) == before

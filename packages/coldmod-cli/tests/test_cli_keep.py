"""`# coldmod: keep`: kept out of `cold`, `rm --cold` and `rm KEY`, counted by `status` (real collector, real git)."""

from __future__ import annotations

import json
import re

import pytest
from conftest import COLD, HOT, git, traced

from coldmod_cli.keep import marked_lines

pytestmark = pytest.mark.timeout(120)


def mark(shop, relpath: str, line_text: str, comment: str = "  # coldmod: keep") -> None:
    """Append ``comment`` to the line of ``relpath`` that starts (after indentation) with ``line_text``; commit."""
    path = shop / relpath
    lines = path.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if line.strip().startswith(line_text))
    lines[index] = lines[index].rstrip("\n") + comment + "\n"
    path.write_text("".join(lines))
    git(shop, "commit", "-qam", "keep")


def test_markers_are_comments_on_the_def_or_first_decorator_line_not_strings():
    source = b'''import functools

@functools.cache  # coldmod: keep
def a():
    pass

def b():  # coldmod: keep - disaster recovery
    pass

def c():
    x = "# coldmod: keep"
    return x  #coldmod:keep

def d():  # coldmod: keeper
    pass
'''
    assert marked_lines(source) == {3, 7, 12}
    assert marked_lines(b"def f():\n    pass\n") == frozenset()
    assert marked_lines(b"def f(:  # coldmod: keep\n  '''") == frozenset()  # cannot tokenize: nothing marked
    assert marked_lines(b"def f():  # Coldmod: KEEP\n    pass\n") == {1}  # any case, as the pattern says


def test_a_kept_function_leaves_the_cold_list(cli, shop, insecure_env):
    mark(shop, "shop/views.py", "def coupon(")
    traced(insecure_env.address, shop, HOT)

    result = cli("cold", "--format", "json")

    data = json.loads(result.out)
    assert sorted(row["key"] for row in data["cold"]) == sorted(k for k in COLD if k != "shop.views.coupon")
    assert data["summary"]["kept"] == 1
    text = cli("cold")
    assert "shop.views.coupon" not in text.out
    assert "1 cold function marked `# coldmod: keep` left out" in text.err


def test_a_marker_on_the_first_decorator_line_keeps_the_function(cli, shop, insecure_env):
    views = shop / "shop" / "views.py"
    views.write_text(views.read_text() + "\n\nimport functools\n\n\n@functools.lru_cache  # coldmod: keep\n"
                     "@functools.wraps(print)\ndef cached():\n    pass\n")
    git(shop, "commit", "-qam", "decorated")
    traced(insecure_env.address, shop, HOT)

    keys = [row["key"] for row in json.loads(cli("cold", "--format", "json").out)["cold"]]

    assert "shop.views.cached" not in keys
    assert "shop.views.coupon" in keys


def test_a_marker_added_later_is_seen_though_the_file_was_cached(cli, shop, insecure_env):
    traced(insecure_env.address, shop, HOT)
    assert "shop.views.coupon" in cli("cold").out  # parses and caches views.py
    mark(shop, "shop/views.py", "def coupon(")
    assert "shop.views.coupon" not in cli("cold").out


def test_rm_cold_leaves_kept_functions_and_rm_key_refuses_them(cli, shop, insecure_env):
    mark(shop, "shop/views.py", "def coupon(")
    traced(insecure_env.address, shop, HOT)

    dry = cli("rm", "--cold", "--dry-run", "--min-tracked", "0s")
    assert dry.code == 0, dry.err
    # Not planned: no verdict line of its own (it may still be named as what keeps another function).
    assert not re.search(r"^\S+\s+shop\.views\.coupon\b", dry.out, re.MULTILINE)
    assert "left out 1 cold function marked `# coldmod: keep`" in dry.err

    named = cli("rm", "shop.views.coupon")
    assert named.code == 1
    assert named.err.strip().startswith("coldmod: shop.views.coupon (shop/views.py:")
    assert "marked `# coldmod: keep`; delete the marker first" in named.err
    assert "def coupon(" in (shop / "shop" / "views.py").read_text()


def test_status_counts_the_markers(cli, shop):
    mark(shop, "shop/views.py", "def coupon(")
    mark(shop, "shop/cart.py", "def merge(")

    text = cli("status")
    data = json.loads(cli("status", "--format", "json").out)

    assert data["kept_functions"] == 2
    assert "2 marked `# coldmod: keep`" in text.out

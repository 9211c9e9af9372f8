"""Conventions of the output: no nested root by accident, one sort order, unmatched ignores said, plurals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import COLD, HOT, traced

pytestmark = pytest.mark.timeout(120)


def coldmod(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m coldmod_cli ARGS`` as a subprocess, without COLDMOD_* variables unless given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")}
    return subprocess.run(
        [sys.executable, "-m", "coldmod_cli", *args], cwd=cwd, env=clean | (env or {}), capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip


def test_init_inside_a_root_says_so_and_writes_nothing(tmp_path):
    (tmp_path / "coldmod.rootmarker").write_text('[app]\nname = "outer"\n')
    inner = tmp_path / "services" / "billing"
    inner.mkdir(parents=True)

    refused = coldmod("init", cwd=inner)

    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert f"{inner} is already inside the root {tmp_path}" in refused.stderr
    assert "--nested" in refused.stderr
    assert not (inner / "coldmod.rootmarker").exists()

    nested = coldmod("init", "--nested", cwd=inner)

    assert nested.returncode == 0, nested.stderr
    assert (inner / "coldmod.rootmarker").exists()
    assert "separate root" in nested.stderr


def test_coldmod_srcs_and_coldmod_trace_srcs_list_in_the_same_order(shop):
    both = coldmod("srcs", cwd=shop)
    trace = subprocess.run(
        [sys.executable, "-m", "coldmod_trace", "srcs"], cwd=shop, capture_output=True, text=True, timeout=60
    )

    assert both.returncode == trace.returncode == 0, both.stderr + trace.stderr
    keys = [line.split()[-1] for line in both.stdout.splitlines()]
    assert keys == trace.stdout.splitlines()
    assert keys != sorted(keys)  # by file and line, not alphabetically: the test can tell them apart
    assert len(keys) == 20


def test_an_ignore_key_that_matches_no_function_is_warned_about(shop):
    marker = shop / "coldmod.rootmarker"
    typo = 'keys = ["shop.cart.Cart.merge", "shop.cart.Cart.mrege"]'
    marker.write_text(marker.read_text().replace("keys = []", typo))

    for argv in ([sys.executable, "-m", "coldmod_cli", "srcs"], [sys.executable, "-m", "coldmod_trace", "srcs"]):
        done = subprocess.run(argv, cwd=shop, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "shop.cart.Cart.merge" not in done.stdout  # the real key is still ignored
        warning = [line for line in done.stderr.splitlines() if "warning" in line]
        assert len(warning) == 1, done.stderr
        assert "1 [ignore] keys entry matches no function" in warning[0]
        assert "'shop.cart.Cart.mrege'" in warning[0]
        assert str(marker) in warning[0]
    marker.write_text(marker.read_text().replace(', "shop.cart.Cart.mrege"', ""))
    assert coldmod("srcs", cwd=shop).stderr == ""  # every entry matches: nothing to say


def test_counts_agree_with_their_nouns(tmp_path, collector):
    root = tmp_path / "one"
    root.mkdir()
    (root / "coldmod.rootmarker").write_text('[app]\nname = "one"\n')
    (root / "only.py").write_text("def lonely():\n    return 1\n")
    env = {"COLDMOD_INSECURE": "on", "COLDMOD_GRPC_HOST": collector.address}
    traced(collector.address, root, {})

    warm = coldmod("cache", "warm", cwd=root)
    cold = coldmod("cold", cwd=root, env=env)
    ignore = coldmod("ignore", "only.lonely", cwd=root)

    assert "cached 1 function from 1 file in" in warm.stderr, warm.stderr
    assert "1 of 1 tracked function is cold (2 of 2 lines in functions)" in cold.stderr, cold.stderr
    assert "added 1 key to [ignore] keys" in ignore.stderr, ignore.stderr


def test_plural_is_one_helper():
    from coldmod_cli._words import plural, span

    assert [plural(n, "call") for n in (0, 1, 2)] == ["0 calls", "1 call", "2 calls"]
    assert plural(1, "tracked function") == "1 tracked function"
    assert plural(3, "tracked function") == "3 tracked functions"
    assert plural(2, "process") == "2 processes"
    assert plural(1500, "call") == "1,500 calls"
    assert [span(s) for s in (40, 720, 3 * 3600, 7 * 86400, 36 * 3600)] == ["40s", "12m", "3h", "7d", "1.5d"]


def test_cold_min_tracked_says_how_many_were_left_out(shop, collector):
    env = {"COLDMOD_INSECURE": "on", "COLDMOD_GRPC_HOST": collector.address}
    traced(collector.address, shop, HOT)  # tracking began a moment ago

    everything = coldmod("cold", cwd=shop, env=env)
    week = coldmod("cold", "--min-tracked", "7d", cwd=shop, env=env)
    as_json = coldmod("cold", "--min-tracked", "7d", "--format", "json", cwd=shop, env=env)

    assert everything.returncode == week.returncode == 0, everything.stderr + week.stderr
    assert all(key in everything.stdout for key in COLD)
    assert "5 of 20 tracked functions are cold" in everything.stderr
    assert week.stdout == ""
    assert "0 of 20 tracked functions are cold" in week.stderr
    assert "5 cold functions left out for being tracked less than 7d" in week.stderr
    assert json.loads(as_json.stdout)["summary"]["tracked_too_briefly"] == 5
    assert "left out for being tracked" not in everything.stderr

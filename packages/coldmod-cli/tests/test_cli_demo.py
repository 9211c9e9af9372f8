"""demo: the whole job in one command, within a minute, without touching the installed sample."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import DEMO_APP

pytestmark = pytest.mark.timeout(180)


def _snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def test_demo_completes_within_a_minute(tmp_path):
    before = _snapshot(DEMO_APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")}
    env["TMPDIR"] = str(tmp_path)
    started = time.monotonic()

    done = subprocess.run(
        [sys.executable, "-m", "coldmod_cli", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert elapsed < 60
    out = done.stdout
    assert "== heatmap of demo-shop" in out
    assert "shop.views.product" in out
    cold_section = out.split("== cold functions")[1].split("== removing")[0]
    cold = [line.split()[-1] for line in cold_section.strip().splitlines()[2:]]
    assert cold == [
        "shop.cart.Cart.apply_coupon",
        "shop.cart.Cart.merge",
        "shop.catalog.import_legacy_csv",
        "shop.catalog.format_price_in_dollars",
        "shop.views.coupon",
    ]
    assert "5 of 20 tracked functions are cold" in done.stderr
    assert "-def import_legacy_csv(text: str) -> list[Product]:" in out
    assert "unsafe  shop.views.coupon" in out
    assert "would remove 3 functions from 2 files (dry run: nothing changed)" in done.stderr
    assert _snapshot(DEMO_APP) == before  # the installed sample is never run or edited
    assert not any(tmp_path.glob("coldmod-demo-*"))  # its temporary directory is gone

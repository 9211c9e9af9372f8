"""Conventions of the output: no nested root by accident, one sort order, unmatched ignores said, plurals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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

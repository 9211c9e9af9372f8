"""`coldmod-trace --help` reads as plain text on a terminal."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["srcs", "--help"]])
def test_help_is_plain_text(argv):
    done = subprocess.run(
        [sys.executable, "-m", "coldmod_trace", *argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "``" not in done.stdout
    assert ":func:" not in done.stdout
    assert ":mod:" not in done.stdout
    assert done.stdout.startswith("usage: coldmod-trace")

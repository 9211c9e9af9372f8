"""`coldmod-trace` on a terminal: plain-text help, and no SyntaxWarnings of the application it lists."""

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


def test_srcs_prints_none_of_the_applications_syntax_warnings(tmp_path):
    (tmp_path / "coldmod.rootmarker").write_text("")
    (tmp_path / "patterns.py").write_text('def digits(text):\n    return "\\d+" in text\n')
    done = subprocess.run(
        [sys.executable, "-m", "coldmod_trace", "srcs", str(tmp_path), "--no-cache"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.stdout == "patterns.digits\n", done.stderr
    assert "SyntaxWarning" not in done.stderr

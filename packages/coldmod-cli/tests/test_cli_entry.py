"""The installed entry points: `coldmod` and `python -m coldmod_cli`, as subprocesses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)


def _coldmod() -> list[str]:
    script = Path(sys.executable).with_name("coldmod")
    return [str(script)] if script.exists() else [shutil.which("coldmod") or "coldmod"]


@pytest.mark.parametrize("argv", [_coldmod(), [sys.executable, "-m", "coldmod_cli"]])
def test_entry_points_run_commands_and_exit_codes(argv, shop):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")}
    srcs = subprocess.run([*argv, "srcs"], cwd=shop, env=env, capture_output=True, text=True)
    assert srcs.returncode == 0, srcs.stderr
    assert "shop.cart.Cart.add" in srcs.stdout

    usage = subprocess.run([*argv, "srcs", "--format", "yaml"], cwd=shop, env=env, capture_output=True, text=True)
    assert usage.returncode == 2
    assert usage.stderr == "coldmod: --format must be text or json, not 'yaml'\n"

    failure = subprocess.run([*argv, "srcs"], cwd=shop.parent, env=env, capture_output=True, text=True)
    assert failure.returncode == 1
    assert failure.stderr.startswith("coldmod: no coldmod.rootmarker in")
    assert failure.stderr.count("\n") == 1


def test_help_never_pages_even_with_a_pager_set(shop):
    env = dict(os.environ, PAGER="false")  # a pager that would fail the command
    done = subprocess.run([*_coldmod(), "rm", "--help"], cwd=shop, env=env, capture_output=True, text=True)
    assert done.returncode == 0
    assert "coldmod rm" in done.stdout + done.stderr


def test_output_to_a_closed_pipe_is_not_an_error(tmp_path):
    # More output than a pipe buffers, so `head` really closes the pipe mid-write.
    (tmp_path / "coldmod.rootmarker").write_text("")
    (tmp_path / "big.py").write_text("".join(f"def function_number_{i}():\n    pass\n" for i in range(5000)))
    done = subprocess.run(
        f"'{_coldmod()[0]}' srcs | head -1",
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.stdout.count("\n") == 1
    assert "Traceback" not in done.stderr
    assert "BrokenPipe" not in done.stderr

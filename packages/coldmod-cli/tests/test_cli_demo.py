"""demo: the whole job in one command, within a minute, without touching the installed sample."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

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
    steps = out.split("== next")[1].splitlines()
    commands = [line.split("#")[0].rstrip() for line in steps]
    commands = [c for c in commands if c.endswith((" serve", " cold")) or "coldmod-trace run" in c]
    assert len(commands) == 3, steps
    for line in commands:  # without it serve refuses and the traced app runs untraced
        assert line.strip().startswith("COLDMOD_INSECURE=on "), line


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (the collector's store path names the demo's directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_demo_keep_hints_work_when_pasted_and_sigterm_cleans_up(tmp_path):
    # PATH without this installation's bin, as after `nox -s demo`: the hints must carry the full path.
    bin_dir = str(Path(sys.executable).parent.absolute())
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != Path(bin_dir).resolve()
    )
    env["TMPDIR"] = str(tmp_path)
    demo = subprocess.Popen(
        [sys.executable, "-m", "coldmod_cli", "demo", "--keep"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        err: list[str] = []
        out: list[str] = []
        for stream, into in ((demo.stderr, err), (demo.stdout, out)):
            threading.Thread(target=into.extend, args=(stream,), daemon=True).start()
        deadline = time.monotonic() + 90
        while not any("keeps running" in line for line in err) and time.monotonic() < deadline:
            assert demo.poll() is None, "".join(err)
            time.sleep(0.2)
        lines = "".join(out).split("paste these lines into a shell):\n")[1].splitlines()
        pasted = [line.strip() for line in itertools.takewhile(lambda line: line.startswith("  "), lines)]
        assert any(line.startswith(f"{bin_dir}/coldmod ") for line in pasted), pasted
        workdir = Path(pasted[0].split(" ", 1)[1]).parent
        assert workdir.parent == tmp_path
        assert _processes_mentioning(str(workdir))  # the collector runs

        shell = subprocess.run(
            ["bash", "-ec", "\n".join(pasted)], env=env, capture_output=True, text=True, timeout=60
        )

        assert shell.returncode == 0, shell.stdout + shell.stderr
        assert "removed 3 functions" in shell.stderr
        assert "def import_legacy_csv" not in (workdir / "demo-shop" / "shop" / "catalog.py").read_text()

        demo.send_signal(signal.SIGTERM)
        demo.wait(30)
    finally:
        if demo.poll() is None:  # a failed assertion above: stop it the way that stops its collector too
            demo.send_signal(signal.SIGTERM)
            try:
                demo.wait(30)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
    assert demo.returncode == 0, "".join(err)
    deadline = time.monotonic() + 10
    while _processes_mentioning(str(workdir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_mentioning(str(workdir))  # the collector was stopped, not orphaned
    assert not workdir.exists()  # and the temporary directory removed

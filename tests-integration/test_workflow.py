"""The whole workflow from built wheels in a fresh virtual environment, with real processes only.

Trace the sample shop under coldmod-trace against `coldmod serve`, then fetch,
list cold functions, remove them with `coldmod rm --cold`, and check that the
shop still serves its pages and its own tests still pass.

The wheels come from $COLDMOD_WHEELS (the noxfile builds them); without it the
test builds them itself with `pip wheel`. Our wheels are installed with
--no-index; their third-party dependencies come from the package index.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from removal_fixtures import Process

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).parents[1]
PACKAGES = ["coldmod-trace", "coldmod-codemod", "coldmod-cli"]
TRAFFIC = ["/", "/product?id=tea", "/product?id=pot", "/product?id=nope", "/cart/add?id=mug"]
COLD = {
    "shop.cart.Cart.apply_coupon",
    "shop.cart.Cart.merge",
    "shop.catalog.import_legacy_csv",
    "shop.catalog.format_price_in_dollars",
    "shop.views.coupon",
}


def _run(*argv: str | Path, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of built wheels: $COLDMOD_WHEELS, or built here."""
    given = os.environ.get("COLDMOD_WHEELS")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("wheels")
    for name in PACKAGES:
        built = _run(
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            out,
            ROOT / "packages" / name,
        )
        assert built.returncode == 0, built.stderr
    return out


@pytest.fixture(scope="module")
def venv(wheels: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with our wheels (never the editable sources) installed; its bin dir."""
    home = tmp_path_factory.mktemp("venv") / "env"
    made = _run(sys.executable, "-m", "venv", home)
    assert made.returncode == 0, made.stderr
    bin_dir = home / "bin"
    ours = sorted(str(w) for w in wheels.glob("*.whl") if w.name.split("-")[0].replace("_", "-") in PACKAGES)
    assert len(ours) == 3, ours
    pip = [bin_dir / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    step1 = _run(*pip, "--no-index", "--no-deps", *ours)
    assert step1.returncode == 0, step1.stderr
    step2 = _run(*pip, "--find-links", wheels, *ours)
    assert step2.returncode == 0, step2.stderr
    where = _run(bin_dir / "python", "-c", "import coldmod_cli; print(coldmod_cli.__file__)")
    assert str(ROOT) not in where.stdout, "the venv must use the wheel, not the checkout"
    return bin_dir


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_trace_fetch_cold_remove_and_the_app_still_works(venv: Path, tmp_path: Path) -> None:
    # The sample shop, as installed by the wheel, copied into a git checkout of its own.
    sample = _run(
        venv / "python",
        "-c",
        "import coldmod_cli, pathlib; print(pathlib.Path(coldmod_cli.__file__).parent / 'demo_app')",
    )
    app = tmp_path / "shop"
    shutil.copytree(sample.stdout.strip(), app, ignore=shutil.ignore_patterns("__pycache__"))
    assert (app / "coldmod.rootmarker").is_file(), "the wheel must ship the sample's rootmarker"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLDMOD_", "PYTHON"))}
    env["PATH"] = f"{venv}{os.pathsep}{env.get('PATH', '')}"

    collector = Process(
        [
            venv / "coldmod",
            "serve",
            "--grpc-host",
            "127.0.0.1:0",
            "--web-host",
            "127.0.0.1:0",
            "--store",
            f"sqlite:///{tmp_path / 'coldmod.db'}",
        ],
        cwd=tmp_path,
        env=env | {"COLDMOD_INSECURE": "on"},
    )
    try:
        address = collector.wait_for(r"gRPC listening on (\S+)").group(1)
        env |= {"COLDMOD_INSECURE": "on", "COLDMOD_GRPC_HOST": address}

        # Trace: the shop under coldmod-trace, with traffic through it.
        shop = Process(
            [venv / "coldmod-trace", "run", "--", venv / "python", "-m", "shop"],
            cwd=app,
            env=env | {"COLDMOD_FLUSH_INTERVAL": "0.2", "COLDMOD_MODE": "exact"},
        )
        try:
            base = shop.wait_for(r"listening on (http://\S+)").group(1)
            for _ in range(5):
                for path in TRAFFIC:
                    _get(base + path)
        finally:
            assert shop.stop() == 0, "".join(shop.lines)

        # Fetch: the counts arrive (the tracer flushes at exit).
        deadline = time.monotonic() + 20
        while True:
            fetched = _run(venv / "coldmod", "fetch", "--format", "json", cwd=app, env=env)
            assert fetched.returncode == 0, fetched.stderr + "collector: " + "".join(collector.lines)
            functions = {f["key"]: f for f in json.loads(fetched.stdout)["functions"]}
            if functions["shop.views.product"]["calls"] or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert functions["shop.views.product"]["calls"] == 15
        assert functions["shop.catalog.find_product"]["calls"] == 20

        # Cold: exactly the functions the traffic never reached.
        cold = _run(venv / "coldmod", "cold", "--format", "json", cwd=app, env=env)
        assert cold.returncode == 0, cold.stderr
        assert {c["key"] for c in json.loads(cold.stdout)["cold"]} == COLD

        # Remove: every safe cold function goes; the referenced ones stay.
        # A few seconds of traffic is far below rm's minimum tracking period (7 days): say so.
        removed = _run(venv / "coldmod", "rm", "--cold", "--min-tracked", "0s", "--allow-dirty", cwd=app, env=env)
        assert removed.returncode == 0, removed.stderr
        assert "removed 3 functions from 2 files" in removed.stderr
        srcs = _run(venv / "coldmod", "srcs", cwd=app, env=env).stdout
        assert "shop.cart.Cart.merge" not in srcs
        assert "shop.views.coupon" in srcs
    finally:
        collector.stop()

    # The shop still runs (untraced) and its own tests still pass.
    plain = Process([venv / "python", "-m", "shop"], cwd=app, env=env)
    try:
        base = plain.wait_for(r"listening on (http://\S+)").group(1)
        assert [_get(base + path) for path in TRAFFIC] == [200, 200, 200, 404, 200]
    finally:
        plain.stop()
    tests = _run(venv / "python", "-m", "unittest", cwd=app, env=env)
    assert tests.returncode == 0, tests.stderr
    assert "OK" in tests.stderr

"""COLDMOD_INSECURE: the usual spellings of on and off, anything else one sentence — never a silent guess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)

ON = ["on", "ON", "true", "True", "1", "yes", " Yes "]
OFF = ["off", "OFF", "false", "0", "no", ""]
BAD = ["maybe", "onn", "2", "enabled", "y"]


def _env(**extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")} | extra


def _status(shop, env):
    return subprocess.run(
        [sys.executable, "-m", "coldmod_cli", "status", "--format", "json"], cwd=shop, env=env,
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


@pytest.mark.parametrize("value", ON)
def test_on_spellings_mean_plaintext(collector, shop, value):
    done = _status(shop, _env(COLDMOD_INSECURE=value, COLDMOD_GRPC_HOST=collector.address))

    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)["collector"]
    assert state["reachable"]
    assert state["tls"] is False


@pytest.mark.parametrize("value", OFF)
def test_off_spellings_mean_tls_and_a_key(shop, value):
    done = _status(shop, _env(COLDMOD_INSECURE=value, COLDMOD_GRPC_HOST="127.0.0.1:9"))

    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("coldmod: COLDMOD_API_KEY is not set")


@pytest.mark.parametrize("value", BAD)
def test_anything_else_is_one_sentence_naming_the_variable(shop, tmp_path, value):
    store = tmp_path / "store.db"
    for argv in (["status"], ["serve", "--grpc-host", "127.0.0.1:0", "--store", f"sqlite:///{store}"], ["fetch"]):
        done = subprocess.run(
            [sys.executable, "-m", "coldmod_cli", *argv], cwd=shop, capture_output=True, text=True, timeout=30,
            env=_env(COLDMOD_INSECURE=value, COLDMOD_GRPC_HOST="127.0.0.1:9", COLDMOD_API_KEY="k" * 32),
        )  # fmt: skip
        assert done.returncode == 1, (argv, done.stderr)
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("coldmod")  # `coldmod:` or `coldmod serve:`
        assert last.split(": ", 1)[1] == (
            f"COLDMOD_INSECURE={value!r} is neither on nor off; use on (or true, yes, 1) for a plaintext "
            f"development collector, or off (or false, no, 0, or leave it unset) for TLS and an API key"
        ), argv
        assert "Traceback" not in done.stderr
    assert not store.exists()  # serve understood nothing, so it opened nothing


def test_the_traced_application_runs_untraced_and_says_why(shop):
    done = subprocess.run(
        [sys.executable, "-m", "coldmod_trace", "run", "--", sys.executable, "-c", "print('the app ran')"],
        cwd=shop, capture_output=True, text=True, timeout=60,
        env=_env(COLDMOD_INSECURE="maybe", COLDMOD_GRPC_HOST="127.0.0.1:9"),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert done.stdout == "the app ran\n"
    assert "tracing disabled" in done.stderr
    assert "COLDMOD_INSECURE='maybe' is neither on nor off" in done.stderr
    assert "Traceback" not in done.stderr

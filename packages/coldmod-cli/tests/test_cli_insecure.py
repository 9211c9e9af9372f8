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
REFUSAL = (
    "COLDMOD_INSECURE={value!r} is neither on nor off; use on (or true, yes, 1) for a plaintext "
    "development collector, or off (or false, no, 0, or leave it unset) for TLS and an API key"
)


def _env(**extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")} | extra


def _coldmod(*args: str, cwd, env) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coldmod_cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=30
    )


def _set(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name in [n for n in os.environ if n.startswith("COLDMOD_")]:
        monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_every_spelling_through_the_entry_point(collector, shop, cli, monkeypatch):
    for value in ON:  # plaintext: the insecure collector answers
        _set(monkeypatch, COLDMOD_INSECURE=value, COLDMOD_GRPC_HOST=collector.address)
        done = cli("status", "--format", "json")
        assert done.code == 0, (value, done.err)
        assert json.loads(done.out)["collector"]["tls"] is False, value
    for value in OFF:  # TLS and a key: without a key, the sentence says so
        _set(monkeypatch, COLDMOD_INSECURE=value, COLDMOD_GRPC_HOST=collector.address)
        done = cli("status")
        assert done.code == 1, value
        assert done.err.splitlines()[-1].startswith("coldmod: COLDMOD_API_KEY is not set"), (value, done.err)
    for value in BAD:
        _set(monkeypatch, COLDMOD_INSECURE=value, COLDMOD_GRPC_HOST=collector.address, COLDMOD_API_KEY="k" * 32)
        done = cli("fetch")
        assert done.code == 1, value
        assert done.err == f"coldmod: {REFUSAL.format(value=value)}\n", value


def test_in_real_processes_on_off_and_refused(collector, shop, tmp_path):
    on = _coldmod("status", "--format", "json", cwd=shop, env=_env(COLDMOD_INSECURE="yes",
                                                                   COLDMOD_GRPC_HOST=collector.address))
    assert on.returncode == 0, on.stderr
    assert json.loads(on.stdout)["collector"]["reachable"]
    off = _coldmod("status", cwd=shop, env=_env(COLDMOD_INSECURE="false", COLDMOD_GRPC_HOST=collector.address))
    assert off.returncode == 1
    assert off.stderr.splitlines()[-1].startswith("coldmod: COLDMOD_API_KEY is not set")

    store = tmp_path / "store.db"
    env = _env(COLDMOD_INSECURE="maybe", COLDMOD_GRPC_HOST="127.0.0.1:9", COLDMOD_API_KEY="k" * 32)
    for argv in (["status"], ["serve", "--grpc-host", "127.0.0.1:0", "--store", f"sqlite:///{store}"]):
        done = _coldmod(*argv, cwd=shop, env=env)
        assert done.returncode == 1, (argv, done.stderr)
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("coldmod")  # `coldmod:` or `coldmod serve:`
        assert last.split(": ", 1)[1] == REFUSAL.format(value="maybe"), argv
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

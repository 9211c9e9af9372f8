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


def test_both_entry_points_are_the_one_main():
    # `coldmod` and `python -m coldmod_cli` run the same function, so what holds for main() holds for both.
    from importlib import metadata

    scripts = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")}
    assert scripts["coldmod"] == "coldmod_cli.__main__:main"
    source = (Path(__import__("coldmod_cli").__file__).parent / "__main__.py").read_text()
    assert source.rstrip().endswith('if __name__ == "__main__":\n    main()')


@pytest.mark.parametrize("via", ["main", "fire.Fire", "python"])
def test_a_command_line_is_checked_once_whichever_way_it_arrives(via, monkeypatch, capsys):
    """The strict check (`_cmdline.check_call`) runs exactly once per command, in the @command wrapper."""
    import fire

    from coldmod_cli import _cmdline
    from coldmod_cli.__main__ import main
    from coldmod_cli.cli import Coldmod

    calls = []
    real = _cmdline.check_call

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(_cmdline, "check_call", counted)

    def run(*words: str, **flags: str) -> int:
        calls.clear()
        capsys.readouterr()
        try:
            if via == "main":
                main([*words, *(f"--{k}={v}" for k, v in flags.items())])
            elif via == "fire.Fire":
                fire.Fire(Coldmod(), command=[*words, *(f"--{k}={v}" for k, v in flags.items())], name="coldmod")
            else:
                getattr(Coldmod(), words[0])(*words[1:], **flags)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1
        return 0

    assert run("version") == 0
    assert capsys.readouterr().out.strip()
    assert len(calls) == 1
    assert run("version", format="yaml") == 2
    assert len(calls) == 1
    assert capsys.readouterr() == ("", "coldmod: --format must be text or json, not 'yaml'\n")
    assert run("version", colour="no") == 2
    assert len(calls) == 1
    assert capsys.readouterr().err == "coldmod: unknown flag --colour; `coldmod version` takes --format\n"


def test_words_reach_the_check_as_typed_not_as_fire_reads_them(shop):
    # Fire would take `-` as "call the result with the rest" and a boolean flag's next word as its value.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")}
    before = {p: p.read_bytes() for p in shop.rglob("*.py")}
    chained = subprocess.run(
        [*_coldmod(), "rm", "shop.cart.Cart.merge", "-", "srcs"], cwd=shop, env=env, capture_output=True, text=True
    )
    assert (chained.returncode, chained.stdout) == (2, "")
    assert chained.stderr == "coldmod: '-' is not a valid KEY\n"
    assert {p: p.read_bytes() for p in shop.rglob("*.py")} == before

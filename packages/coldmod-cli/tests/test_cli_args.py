"""The strict command line: nothing runs until every word is understood; help as people expect it.

Every check runs the installed ``coldmod`` as a subprocess, the way a user does.
The commands are walked from the CLI class itself, so a command or flag added
later is covered without touching this file.
"""

from __future__ import annotations

import inspect
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from coldmod_cli._cmdline import children, signature
from coldmod_cli._errors import is_command
from coldmod_cli.cli import Coldmod

pytestmark = pytest.mark.timeout(120)


class ConnectionRecorder:
    """A loopback port that counts the connections made to it (a collector that must not be asked)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.count = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def recorder():
    """Where COLDMOD_GRPC_HOST and COLDMOD_WEB_HOST point in these tests."""
    port = ConnectionRecorder()
    yield port
    port.close()


def _env(recorder: ConnectionRecorder, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")}
    tmp.mkdir(exist_ok=True)
    return env | {
        "COLDMOD_INSECURE": "on",
        "COLDMOD_GRPC_HOST": recorder.address,
        "COLDMOD_WEB_HOST": recorder.address,
        "TMPDIR": str(tmp),  # the demo's temporary directory would appear here
        "BROWSER": "false",
    }


def coldmod(*args: str, cwd: Path, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``python -m coldmod_cli ARGS`` as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "coldmod_cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def _walk(node: object, path: tuple[str, ...] = ()):
    """Every (path, command) and (path, group) under ``node``."""
    for name, child in children(node).items():
        if is_command(getattr(child, "__func__", None)):
            yield (*path, name), child
        else:
            yield (*path, name), child
            yield from _walk(child, (*path, name))


COMMANDS = [(path, child) for path, child in _walk(Coldmod()) if is_command(getattr(child, "__func__", None))]
GROUPS = [path for path, child in _walk(Coldmod()) if not is_command(getattr(child, "__func__", None))]


#: Commands also checked in a real process: they reach the collector, start one, or write the most.
IN_A_PROCESS = frozenset({"rm", "fetch", "serve", "demo", "store", "connect"})


def _misspelled(flag: str) -> str:
    """A typo of ``--flag``: one letter dropped (``--dry-run`` → ``--dry-rn``)."""
    body = flag[2:]
    cut = len(body) - 2 if len(body) > 2 else len(body) - 1
    return "--" + body[:cut] + body[cut + 1 :] if len(body) > 1 else flag + flag[-1] * 2


def _valid_words(path: tuple[str, ...], root: Path) -> list[str]:
    """Positional words that make the command otherwise valid: a real key, a store file that would appear."""
    spec = signature(dict(COMMANDS)[path], path)
    if path == ("help",):
        return ["rm"]
    words = [f"sqlite:///{root / p.name}.db" for p in spec.parameters if p.required]
    return words + (["shop.cart.Cart.merge"] if spec.varargs is not None else [])


def test_every_public_method_is_a_checked_command():
    # A method Fire could call but the strict layer does not know would skip the checks.
    for owner in [Coldmod, *(type(g) for _, g in _walk(Coldmod()) if not is_command(getattr(g, "__func__", None)))]:
        for name, value in vars(owner).items():
            if not name.startswith("_") and inspect.isfunction(value):
                pytest.fail(f"{owner.__name__}.{name} is public but not a @command")


def _use(recorder: ConnectionRecorder, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's environment as :func:`_env` (for the in-process runs of the entry point)."""
    for name in [n for n in os.environ if n.startswith("COLDMOD_")]:
        monkeypatch.delenv(name)
    for name, value in _env(recorder, tmp).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))


def test_a_misspelled_flag_on_every_command_does_nothing(shop, recorder, tmp_path, cli, monkeypatch):
    env = _env(recorder, tmp_path / "tmp")
    before = _snapshot(shop)
    checked = 0
    for path, command in COMMANDS:
        spec = signature(command, path)
        flags = [p.flag for p in spec.flags] or ["--verbose"]
        # Every flag misspelled through the entry point in this process; for the commands that would
        # reach the collector, start one or write the most, the last flag also in a real process.
        for index, flag in enumerate(flags):
            wrong = _misspelled(flag)
            argv = [*path, *_valid_words(path, shop), wrong]
            if index == len(flags) - 1 and path[0] in IN_A_PROCESS:
                ran = coldmod(*argv, cwd=shop, env=env)
                code, out, err = ran.returncode, ran.stdout, ran.stderr
            else:
                _use(recorder, tmp_path / "tmp", monkeypatch)
                result = cli(*argv)
                code, out, err = result.code, result.out, result.err
            assert code == 2, (argv, err)
            assert out == ""
            assert err.startswith(f"coldmod: unknown flag {wrong}"), err
            assert err.count("\n") == 1
            if spec.flags:
                assert f"did you mean {flag}?" in err, err
            checked += 1
    for index, group in enumerate(GROUPS):
        if index == 0:
            done = coldmod(*group, "--bogus", cwd=shop, env=env)
            assert (done.returncode, done.stderr.startswith("coldmod: unknown flag --bogus")) == (2, True), done.stderr
        _use(recorder, tmp_path / "tmp", monkeypatch)
        bogus = cli(*group, "--bogus")
        assert (bogus.code, bogus.err.startswith("coldmod: unknown flag --bogus")) == (2, True), bogus.err
        wrong = cli(*group, "wram")
        assert wrong.code == 2
        assert f"unknown command '{' '.join((*group, 'wram'))}'" in wrong.err
    assert checked >= len(COMMANDS)
    assert recorder.count == 0  # nothing asked the collector
    assert _snapshot(shop) == before  # nothing written: no cache, no store, no edit
    assert not any((tmp_path / "tmp").iterdir())  # the demo made no temporary directory
    # The two detectors detect: a valid fetch connects, a valid srcs writes the cache.
    coldmod("fetch", cwd=shop, env=env)
    assert recorder.count > 0
    coldmod("srcs", cwd=shop, env=env)
    assert _snapshot(shop) != before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rm", "--cold", "--dryrun"], "unknown flag --dryrun; did you mean --dry-run?"),
        (["rm", "--cold", "--dry"], "unknown flag --dry; did you mean --dry-run?"),
        (["rm", "--cold", "--dry-ru"], "unknown flag --dry-ru; did you mean --dry-run?"),
        (
            ["rm", "--cold", "--no-dry-run"],
            "unknown flag --no-dry-run; --dry-run is off unless given, so leave it out"
            " (Fire's negation is --nodry-run)",
        ),
        (["rm", "shop.cart.Cart.merge", "--dry-run-please"], "unknown flag --dry-run-please; did you mean --dry-run?"),
        (["rm", "shop.cart.Cart.merge", "-x"], "unknown flag -x; `coldmod rm` takes --dry-run, -n, --force"),
        (["rm", "shop.cart.Cart.merge", "--force=maybe"], "--force takes no value (or yes/no), not 'maybe'"),
        (["rm", "shop.cart.Cart.merge", "--since"], "--since needs a value"),
        (["rm", "shop.cart.Cart.merge", "-n", "--dry-run"], "--dry-run is given twice"),
        (["rm", "shop.cart.Cart.merge", "--", "--dry-run"], "'--dry-run' after --: only --help and --verbose"),
        (["cold", "--sinse", "30d"], "unknown flag --sinse; did you mean --since?"),
        (["srcs", "json"], "unexpected argument 'json': `coldmod srcs` takes no arguments"),
        (["demo", "keep"], "unexpected argument 'keep': `coldmod demo` takes no arguments; did you mean --keep?"),
        (["fetchh"], "unknown command 'fetchh'; did you mean `coldmod fetch`?"),
        (["cache", "wram"], "unknown command 'cache wram'; did you mean `coldmod cache warm`?"),
        (["--format", "json", "srcs"], "unknown flag --format before the command"),
        (["version", "--format", "yaml"], "--format must be text or json, not 'yaml'"),
        (["help", "rmm"], "unknown command 'rmm'; did you mean `coldmod help rm`?"),
    ],
)
def test_mistakes_are_one_line_exit_2_and_change_nothing(shop, recorder, tmp_path, args, message, cli, monkeypatch):
    _use(recorder, tmp_path / "tmp", monkeypatch)
    before = _snapshot(shop)

    done = cli(*args)  # the entry point in this process (the walk above runs real processes)

    assert done.code == 2, done.err
    assert done.out == ""
    assert done.err.startswith(f"coldmod: {message}"), done.err
    assert done.err.count("\n") == 1
    assert "Traceback" not in done.err
    assert recorder.count == 0
    assert _snapshot(shop) == before


def test_fire_conventions_are_understood(shop, recorder, tmp_path, cli, monkeypatch):
    env = _env(recorder, tmp_path / "tmp")
    _use(recorder, tmp_path / "tmp", monkeypatch)
    before = (shop / "shop" / "cart.py").read_bytes()
    # -n, --dry-run before the key (a boolean never swallows a key), --dry-run=yes, a yes/no word after it.
    for args in (
        ["rm", "-n", "shop.cart.Cart.merge"],
        ["rm", "--dry-run", "shop.cart.Cart.merge"],
        ["rm", "shop.cart.Cart.merge", "--dry-run=yes"],
        ["rm", "--dry_run", "yes", "shop.cart.Cart.merge"],
        ["rm", "shop.cart.Cart.merge", "--dry-run", "--nocold"],
    ):
        done = cli(*args)
        assert done.code == 0, (args, done.err)
        assert done.out.startswith("safe    shop.cart.Cart.merge"), args
        assert "dry run: nothing changed" in done.err, args
    assert (shop / "shop" / "cart.py").read_bytes() == before
    # --flag value and --flag=value are the same; `-- --help` is Fire's help flag.
    assert coldmod("srcs", "--format", "json", cwd=shop, env=env).stdout == coldmod(
        "srcs", "--format=json", cwd=shop, env=env
    ).stdout
    assert coldmod("rm", "shop.cart.Cart.merge", "--", "--help", cwd=shop, env=env).stdout.startswith(
        "usage: coldmod rm"
    )
    assert (shop / "shop" / "cart.py").read_bytes() == before
    # --dry-run=no really removes: the flag's value is read, not its presence.
    removed = coldmod("rm", "shop.cart.Cart.merge", "--dry-run=no", cwd=shop, env=env)
    assert removed.returncode == 0, removed.stderr
    assert b"def merge" not in (shop / "shop" / "cart.py").read_bytes()


HELP_FORMS = [[], ["--help"], ["-h"], ["help"]] + [[*path, "--help"] for path, _ in COMMANDS] + [
    [*group, "--help"] for group in GROUPS
]
#: These also as real processes: what a terminal shows, with PAGER set to a pager that would fail.
HELP_IN_A_PROCESS = [["--help"], ["rm", "--help"], ["rm", "-h"], ["cache", "--help"]]


@pytest.mark.parametrize("args", HELP_FORMS, ids=lambda args: " ".join(args) or "nothing")
def test_help_prints_to_stdout_as_flags_are_typed(args, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli(*args)
    if args in HELP_IN_A_PROCESS:
        ran = coldmod(*args, cwd=tmp_path, env=os.environ | {"PAGER": "false"})
        assert (ran.returncode, ran.stdout, ran.stderr) == (result.code, result.out, result.err)

    assert result.code == 0, result.err
    assert result.err == ""  # no "INFO: Showing help …"
    assert result.out.startswith("usage: coldmod")
    flags = "".join(w for w in result.out.split() if w.startswith("--"))
    assert "_" not in flags  # --dry-run, not --dry_run
    assert "=" not in flags  # not --dry_run=DRY_RUN
    path = tuple(a for a in args if not a.startswith("-") and a != "help")
    if path in dict(COMMANDS):
        for param in signature(dict(COMMANDS)[path], path).parameters:
            assert (param.metavar if param.positional else param.flag) in result.out
            assert param.help.split()[0] in result.out  # its description is shown
        assert cli("help", *path).out == result.out


def test_help_shows_short_flags_types_and_defaults(tmp_path):
    rm = coldmod("rm", "--help", cwd=tmp_path, env=os.environ.copy()).stdout
    assert "-n, --dry-run" in rm
    assert "--since DURATION" in coldmod("cold", "--help", cwd=tmp_path, env=os.environ.copy()).stdout
    assert "KEY ..." in rm
    srcs = coldmod("help", "srcs", cwd=tmp_path, env=os.environ.copy()).stdout
    assert "--format text|json" in srcs
    assert "(default: text)" in srcs
    top = coldmod("--help", cwd=tmp_path, env=os.environ.copy()).stdout
    for path, _ in COMMANDS:
        assert f"  {path[0]}" in top


def test_version_text_and_json(tmp_path):
    from coldmod_cli import __version__

    env = os.environ.copy()
    assert coldmod("version", cwd=tmp_path, env=env).stdout == f"{__version__}\n"
    assert coldmod("--version", cwd=tmp_path, env=env).stdout == f"{__version__}\n"
    assert coldmod("-V", "--format", "json", cwd=tmp_path, env=env).stdout.startswith("{")
    data = json.loads(coldmod("version", "--format", "json", cwd=tmp_path, env=env).stdout)
    assert data["version"] == __version__
    assert data["coldmod-trace"] == data["coldmod-codemod"] == __version__
    assert data["python"] == ".".join(map(str, sys.version_info[:3]))


def test_the_commands_are_strict_under_fire_alone_too(shop, recorder, tmp_path, monkeypatch, capsys):
    # python-fire's own test habit, without the entry point: fire.Fire(component, command=[...]).
    import fire

    _use(recorder, tmp_path / "tmp", monkeypatch)
    before = _snapshot(shop)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            fire.Fire(Coldmod(), command=list(args), name="coldmod")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    for args, message in [
        (["rm", "--cold", "--dryrun"], "unknown flag --dryrun; did you mean --dry-run?"),
        (
            ["rm", "--cold", "--no-dry-run"],
            "unknown flag --no-dry-run; --dry-run is off unless given, so leave it out"
            " (Fire's negation is --nodry-run)",
        ),
        (["rm", "shop.cart.Cart.merge", "--dry-run-please"], "unknown flag --dry-run-please; did you mean --dry-run?"),
        (["cold", "--sinse", "30d"], "unknown flag --sinse; did you mean --since?"),
        (["srcs", "json"], "unexpected argument 'json': `coldmod srcs` takes no arguments"),
        (["fetch", "--format", "yaml"], "--format must be text or json, not 'yaml'"),
    ]:
        code, out, err = run(*args)
        assert (code, out) == (2, ""), (args, err)
        assert err == f"coldmod: {message}\n", args
    assert recorder.count == 0
    assert _snapshot(shop) == before

    code, out, _ = run("rm", "-n", "shop.cart.Cart.merge")  # the conventions hold there too
    assert code == 0
    assert out.startswith("safe    shop.cart.Cart.merge")
    code, out, _ = run("rm", "--dry-run", "shop.cart.Cart.merge")
    assert code == 0
    assert out.startswith("safe    shop.cart.Cart.merge")
    assert run("srcs", "--help")[1].startswith("usage: coldmod srcs")
    assert {k: v for k, v in _snapshot(shop).items() if k.endswith(".py")} == {
        k: v for k, v in before.items() if k.endswith(".py")
    }  # dry runs: no source changed

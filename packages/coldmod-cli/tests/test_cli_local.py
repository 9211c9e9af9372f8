"""Commands that need only the checkout: init, files, srcs, cache, ignore; help and usage errors."""

from __future__ import annotations

import json
import textwrap

import pytest

pytestmark = pytest.mark.timeout(120)


def test_init_writes_a_rootmarker_ignoring_what_it_finds(cli, tmp_path, monkeypatch):
    (tmp_path / "app" / "tests").mkdir(parents=True)
    (tmp_path / "app" / "migrations").mkdir()
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    (tmp_path / "app" / "views.py").write_text("def index():\n    return 1\n")
    monkeypatch.chdir(tmp_path)

    result = cli("init")

    assert result.code == 0, result.err
    text = (tmp_path / "coldmod.rootmarker").read_text()
    for glob in ('"**/tests/**"', '"**/migrations/**"', '"venv/**"'):
        assert glob in text
    assert f'name = "{tmp_path.name}"' in text
    assert cli("srcs").out.split() == ["app/views.py:1", "app.views.index"]


def test_init_refuses_to_overwrite(cli, tmp_path, monkeypatch):
    (tmp_path / "coldmod.rootmarker").write_text("# mine\n")
    monkeypatch.chdir(tmp_path)

    result = cli("init")

    assert result.code == 1
    assert "already exists" in result.err
    assert (tmp_path / "coldmod.rootmarker").read_text() == "# mine\n"


def test_files_and_srcs_text_and_json(cli, shop):
    files = cli("files")
    assert files.code == 0
    assert files.out.splitlines() == [
        "shop/__init__.py",
        "shop/__main__.py",
        "shop/cart.py",
        "shop/catalog.py",
        "shop/views.py",
    ]  # tests/** is ignored by the shop's rootmarker
    assert json.loads(cli("files", "--format", "json").out) == files.out.splitlines()

    srcs = cli("srcs")
    assert srcs.code == 0
    lines = srcs.out.splitlines()
    assert lines[0].split() == ["shop/__main__.py:17", "shop.__main__.Handler.do_GET"]
    locations = [(line.split()[0].split(":")[0], int(line.split()[0].split(":")[1])) for line in lines]
    assert locations == sorted(locations)
    data = json.loads(cli("srcs", "--format=json").out)
    assert {"key": "shop.cart.Cart.add", "path": "shop/cart.py", "lines": [14]} in data


def test_cache_warm_then_clear(cli, shop):
    warm = cli("cache", "warm")
    assert warm.code == 0
    assert list((shop / ".coldmod-cache").glob("discovery-*.marshal"))
    assert "cached 20 functions from 5 files" in warm.err

    clear = cli("cache", "clear")
    assert clear.code == 0
    assert not (shop / ".coldmod-cache").exists()
    assert "nothing to clear" in cli("cache", "clear").err


def test_no_rootmarker_is_one_sentence_and_exit_1(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for command in (["files"], ["srcs"], ["cache", "warm"], ["ignore", "a.b"], ["fetch"], ["cold"]):
        result = cli(*command)
        assert result.code == 1, command
        assert result.err.count("\n") == 1, result.err
        assert "no coldmod.rootmarker" in result.err
        assert "coldmod init" in result.err
        assert "Traceback" not in result.err


def test_bad_rootmarker_names_file_and_line(cli, tmp_path, monkeypatch):
    (tmp_path / "coldmod.rootmarker").write_text('[app]\nname = "x"\n[ignore]\nfiles = "tests"\n')
    monkeypatch.chdir(tmp_path)

    result = cli("srcs")

    assert result.code == 1
    assert f"{tmp_path / 'coldmod.rootmarker'}:4:" in result.err
    assert "Traceback" not in result.err


def test_verbose_shows_the_traceback(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "Traceback" in cli("--verbose", "srcs").err
    assert "Traceback" in cli("srcs", "--verbose").err


def test_ignore_keeps_comments_and_layout(cli, shop):
    marker = shop / "coldmod.rootmarker"
    marker.write_text(
        textwrap.dedent("""\
        # The shop.   # a comment with its own spacing
        [app]
        name   =   "demo-shop"    # aligned on purpose

        [ignore]
        files = ["tests/**"]  # tests are not production
        keys = [
            # nothing yet
        ]
    """)
    )

    result = cli("ignore", "shop.cart.Cart.merge", "shop.catalog.import_legacy_csv")

    assert result.code == 0, result.err
    assert result.out.split() == ["shop.cart.Cart.merge", "shop.catalog.import_legacy_csv"]
    text = marker.read_text()
    for kept in (
        "# The shop.   # a comment with its own spacing",
        'name   =   "demo-shop"    # aligned on purpose',
        'files = ["tests/**"]  # tests are not production',
        "# nothing yet",
    ):
        assert kept in text
    assert "shop.cart.Cart.merge" not in cli("srcs").out

    again = cli("ignore", "shop.cart.Cart.merge")  # idempotent
    assert again.code == 0
    assert "already ignored" in again.err
    assert marker.read_text() == text


def test_ignore_unknown_key_changes_nothing(cli, shop):
    before = (shop / "coldmod.rootmarker").read_text()

    result = cli("ignore", "shop.cart.Cart.nope")

    assert result.code == 1
    assert "unknown key 'shop.cart.Cart.nope'" in result.err
    assert "coldmod srcs" in result.err
    assert (shop / "coldmod.rootmarker").read_text() == before


def test_keys_stay_strings_digits_commas_and_dates(cli, tmp_path, monkeypatch):
    # Fire would turn `1,2` into a tuple and `2024-01-01` into an int.
    (tmp_path / "coldmod.rootmarker").write_text("")
    (tmp_path / "v2024").mkdir()
    (tmp_path / "v2024" / "m1.py").write_text("def f1():\n    pass\n\ndef f2():\n    pass\n")
    monkeypatch.chdir(tmp_path)

    result = cli("ignore", "v2024.m1.f1,v2024.m1.f2")

    assert result.code == 0, result.err
    assert result.out.split() == ["v2024.m1.f1", "v2024.m1.f2"]
    assert '"v2024.m1.f1"' in (tmp_path / "coldmod.rootmarker").read_text()
    unknown = cli("ignore", "2024-01-01")
    assert unknown.code == 1
    assert "'2024-01-01'" in unknown.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["srcs", "--format", "xml"], "--format must be text or json"),
        (["cold", "--since", "30"], "--since must be a duration"),
        (["cold", "--min-tracked", "soon"], "--min-tracked must be a duration"),
        (["ignore"], "name at least one key"),
        (["rm"], "name at least one key, or --cold"),
        (["rm", "shop.cart.Cart.merge", "--since", "1d"], "--since and --min-tracked only apply with --cold"),
        (["rm", "--cold", "--since", "yesterday"], "--since must be a duration"),
    ],
)
def test_usage_errors_exit_2(cli, shop, args, message):
    result = cli(*args)
    assert result.code == 2
    assert message in result.err
    assert "Traceback" not in result.err


def test_unknown_command_and_flag_exit_2(cli, shop):
    assert cli("bogus").code == 2
    assert cli("srcs", "--bogus").code == 2


def test_version(cli):
    from coldmod_cli import __version__

    assert cli("version").out.strip() == __version__


def test_the_applications_syntax_warnings_are_not_printed(tmp_path):
    # Python warns about "\d" in a string literal while compiling it; that is the app's to fix, not
    # something every coldmod command should print. A subprocess: the warning goes to the real stderr.
    import subprocess
    import sys

    (tmp_path / "coldmod.rootmarker").write_text("")
    (tmp_path / "patterns.py").write_text('def digits(text):\n    return "\\d+" in text\n')
    for argv in (["srcs"], ["rm", "--dry-run", "--allow-dirty", "patterns.digits"]):
        done = subprocess.run(
            [sys.executable, "-m", "coldmod_cli", *argv],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        )
        assert "patterns.digits" in done.stdout, done.stderr
        assert "SyntaxWarning" not in done.stderr
        assert "invalid escape sequence" not in done.stderr
        for cache in tmp_path.glob(".coldmod-cache"):  # parse again for the next command
            import shutil

            shutil.rmtree(cache)

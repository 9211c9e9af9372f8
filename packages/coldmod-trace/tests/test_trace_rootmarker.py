"""The rootmarker: found upward, parsed strictly, every error one sentence with file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from coldmod_trace.rootmarker import MARKER, RootmarkerError, compile_globs, find_root, load


def write(root: Path, text: str) -> Path:
    path = root / MARKER
    path.write_text(textwrap.dedent(text))
    return path


def test_found_in_the_nearest_parent(tmp_path: Path) -> None:
    write(tmp_path, "")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_root(deep) == tmp_path.resolve()
    marker = load(deep)
    assert marker.root == tmp_path.resolve()
    assert marker.app == tmp_path.name  # default: the root directory's name
    assert marker.ignore_files == ()
    assert marker.ignore_keys == frozenset()


def test_full_configuration(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
        # comment
        [app]
        name = "shop"

        [ignore]
        files = ["**/migrations/**", "**/tests/**"]
        keys = ["shop.settings.debug_toolbar"]
        """,
    )
    marker = load(tmp_path)
    assert marker.app == "shop"
    assert marker.ignore_files == ("**/migrations/**", "**/tests/**")
    assert marker.ignore_keys == {"shop.settings.debug_toolbar"}


def test_missing_rootmarker_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(RootmarkerError) as info:
        load(tmp_path)
    message = str(info.value)
    assert f"no {MARKER} in {tmp_path.resolve()}" in message
    assert "coldmod init" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ('[app]\nname = "shop\n', 2, "invalid TOML"),
        ("[app]\nname = 3\n", 2, '[app] name must be a string, like name = "shop"'),
        ('[app]\nname = "x"\n[ignore]\nfiles = "**/tests/**"\n', 4, "[ignore] files must be a list of glob strings"),
        ('[ignore]\nkeys = ["a", 1]\n', 2, "[ignore] keys must be a list of function keys"),
        ('[app]\nname = "x"\n\n[server]\nhost = "x"\n', 4, "unknown table [server]; the tables are [app] and [ignore]"),
        ('[app]\nnmae = "x"\n', 2, "unknown key 'nmae' in [app]; the keys of [app] are name"),
        ('app = "x"\n', 1, "app must be a table"),
    ],
)
def test_invalid_rootmarker_names_file_line_and_form(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = tmp_path / MARKER
    path.write_text(text)
    with pytest.raises(RootmarkerError) as info:
        load(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message
    assert "\n" not in message


def test_undecodable_rootmarker(tmp_path: Path) -> None:
    (tmp_path / MARKER).write_bytes(b"[app]\nname = \"\xff\"\n")
    with pytest.raises(RootmarkerError, match="UTF-8 TOML"):
        load(tmp_path)


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("**/tests/**", ["tests/a.py", "x/tests/b.py", "x/y/tests/z/c.py"], ["testsx/a.py", "x/tests.py"]),
        ("**/migrations/**", ["app/migrations/0001.py"], ["app/migration.py"]),
        ("scripts/*.py", ["scripts/a.py"], ["scripts/sub/a.py", "a/scripts/a.py"]),
        ("**/conftest.py", ["conftest.py", "a/b/conftest.py"], ["a/conftest.pyc"]),
        ("gen_?.py", ["gen_a.py"], ["gen_ab.py", "x/gen_a.py"]),
        ("[!_]*.py", ["a.py"], ["_a.py"]),
        ("./build/**", ["build/x.py"], ["src/build.py"]),
    ],
)
def test_ignore_globs(pattern: str, matches: list[str], misses: list[str]) -> None:
    ignored = compile_globs([pattern])
    for path in matches:
        assert ignored(path), (pattern, path)
    for path in misses:
        assert not ignored(path), (pattern, path)


def test_globs_prune_whole_directories() -> None:
    ignored = compile_globs(["**/tests/**", "docs/*.py"])
    assert ignored.prunes("tests")
    assert ignored.prunes("a/b/tests")
    assert not ignored.prunes("a")
    assert not ignored.prunes("docs")  # only docs/*.py, not what is deeper

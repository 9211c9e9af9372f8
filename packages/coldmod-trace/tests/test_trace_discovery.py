"""Stdlib discovery: keys, exclusions, the cache's failure modes, and `python -m coldmod_trace srcs`."""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from coldmod_trace.discovery import CACHE_DIR, Skipped, discover
from coldmod_trace.rootmarker import MARKER, RootmarkerError


def make_tree(root: Path, files: dict[str, str], marker: str = "") -> Path:
    (root / MARKER).write_text(textwrap.dedent(marker))
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def keys(root: Path, **kwargs: object) -> list[str]:
    return sorted(discover(root, warn=lambda s: None, **kwargs).sources)  # type: ignore[arg-type]


def test_keys_follow_paths_and_qualnames(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            "app/__init__.py": "def init(): pass\n",
            "app/views.py": """
                class View:
                    def get(self):
                        def helper(): pass
                    @property
                    def x(self): return 1
                    @x.setter
                    def x(self, v): pass
                async def handler(): pass
            """,
            "main.py": "def main(): pass\nlam = lambda: 0\n",
        },
    )
    result = discover(tmp_path)
    assert sorted(result.sources) == [
        "app.init",
        "app.views.View.get",
        "app.views.View.get.<locals>.helper",
        "app.views.View.x",
        "app.views.handler",
        "main.main",
    ]
    # The getter and the setter share one key, with both locations.
    assert result.sources["app.views.View.x"].lines == (6, 8)
    assert result.sources["app.views.View.x"].path == "app/views.py"


def test_default_exclusions_and_ignores(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            "keep.py": "def keep(): pass\ndef drop(): pass\n",
            ".git/hook.py": "def hidden(): pass\n",
            "env/lib/x.py": "def venv(): pass\n",
            "env/pyvenv.cfg": "",
            "lib/site-packages/dep.py": "def dep(): pass\n",
            "__pycache__/x.py": "def cache(): pass\n",
            "node_modules/x.py": "def node(): pass\n",
            "app/migrations/m1.py": "def migrate(): pass\n",
            "app/tests/test_a.py": "def test_a(): pass\n",
        },
        marker='[ignore]\nfiles = ["**/migrations/**", "**/tests/**"]\nkeys = ["keep.drop"]\n',
    )
    assert keys(tmp_path) == ["keep.keep"]


def test_syntax_error_and_undecodable_files_are_skipped_with_one_warning(tmp_path: Path) -> None:
    make_tree(tmp_path, {"ok.py": "def ok(): pass\n", "bad.py": "def ok():\n    pass\ndef (\n"})
    (tmp_path / "latin.py").write_bytes(b"def f():\n    return '\xe9'\n")  # no coding line: not UTF-8
    warnings: list[Skipped] = []
    result = discover(tmp_path, warn=warnings.append)
    assert sorted(result.sources) == ["ok.ok"]
    assert [str(w).split(": skipped")[0] for w in warnings] == ["bad.py:3", "latin.py:2"]


def test_pep263_encoding_is_honoured(tmp_path: Path) -> None:
    (tmp_path / MARKER).write_text("")
    (tmp_path / "legacy.py").write_bytes(b"# -*- coding: latin-1 -*-\ndef caf\xe9():\n    return 1\n")
    assert keys(tmp_path) == ["legacy.café"]


def test_warm_cache_hits_and_follows_edits(tmp_path: Path) -> None:
    make_tree(tmp_path, {f"m{i}.py": f"def f{i}(): pass\n" for i in range(5)})
    cold = discover(tmp_path)
    assert cold.cache_hits == 0
    assert (tmp_path / CACHE_DIR).is_dir()
    warm = discover(tmp_path)
    assert warm.cache_hits == 5
    assert warm.sources == cold.sources
    # An edit that keeps size and mtime is still seen (content-keyed).
    path = tmp_path / "m0.py"
    before = path.stat()
    path.write_text("def g0(): pass\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert "m0.g0" in keys(tmp_path)
    assert "m0.f0" not in keys(tmp_path)


def test_the_parse_hook_sees_each_parsed_file_and_no_cached_one(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.py": "def f(): pass\n", "b.py": "def g(): pass\n", "bad.py": "def (\n"})
    seen: list[tuple[str, bytes, list[str]]] = []

    def hook(relpath: str, stat: os.stat_result, source: bytes, tree) -> None:  # type: ignore[no-untyped-def]
        assert stat.st_size == len(source)
        seen.append((relpath, source, [node.name for node in tree.body]))

    discover(tmp_path, on_parse=hook, warn=lambda skipped: None)
    assert sorted(seen) == [("a.py", b"def f(): pass\n", ["f"]), ("b.py", b"def g(): pass\n", ["g"])]
    seen.clear()
    (tmp_path / "b.py").write_text("def h(): pass\n")
    discover(tmp_path, on_parse=hook, warn=lambda skipped: None)
    assert seen == [("b.py", b"def h(): pass\n", ["h"])]  # a.py came from the cache


def test_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.py": "def a(): pass\n"})
    discover(tmp_path)
    (cache_file,) = (tmp_path / CACHE_DIR).glob("discovery-*.marshal")
    wrong_shape = {"version": "0.1.0", "files": {"a.py": {"stat": 1, "names": [1], "lines": ["x"]}}}
    for garbage in (b"{not marshal", marshal.dumps([]), marshal.dumps(wrong_shape), marshal.dumps(wrong_shape)[:-3]):
        cache_file.write_bytes(garbage)
        assert keys(tmp_path) == ["a.a"]


def test_poisoned_cache_entry_with_matching_stat_is_not_trusted_blindly(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.py": "def a(): pass\n"})
    discover(tmp_path)
    (cache_file,) = (tmp_path / CACHE_DIR).glob("discovery-*.marshal")
    data = marshal.loads(cache_file.read_bytes())
    for names, lines in (("not a list", [1]), (["a", "b"], [1]), ([1], [1]), (["a"], ["1"])):
        data["files"]["a.py"]["names"], data["files"]["a.py"]["lines"] = names, lines
        cache_file.write_bytes(marshal.dumps(data))
        assert keys(tmp_path) == ["a.a"]


def test_cache_that_cannot_be_written_is_skipped(tmp_path: Path) -> None:
    # A file where the cache directory should be: every write fails, as on a
    # read-only container filesystem, even for root.
    make_tree(tmp_path, {"a.py": "def a(): pass\n"})
    (tmp_path / CACHE_DIR).write_text("not a directory")
    assert keys(tmp_path) == ["a.a"]
    assert (tmp_path / CACHE_DIR).read_text() == "not a directory"


def test_cache_disabled_writes_nothing(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.py": "def a(): pass\n"})
    assert keys(tmp_path, cache=False) == ["a.a"]
    assert not (tmp_path / CACHE_DIR).exists()


def test_missing_rootmarker_raises_the_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(RootmarkerError, match=r"no coldmod\.rootmarker"):
        discover(tmp_path)


def srcs(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coldmod_trace", "srcs", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_srcs_command_prints_keys_in_file_order_and_warns_on_stderr(tmp_path: Path) -> None:
    make_tree(tmp_path, {"b.py": "def z(): pass\ndef a(): pass\n", "a.py": "def m(): pass\n", "bad.py": "def (\n"})
    done = srcs(str(tmp_path), cwd=tmp_path.parent)
    assert done.returncode == 0
    # By file, then line (as `coldmod srcs` lists them): b.z is defined above b.a.
    assert done.stdout.splitlines() == ["a.m", "b.z", "b.a"]
    assert done.stderr.strip() == "coldmod-trace: warning: bad.py:1: skipped: syntax error (invalid syntax)"


def test_srcs_command_without_rootmarker_fails_cleanly(tmp_path: Path) -> None:
    done = srcs(cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("coldmod-trace: no coldmod.rootmarker in ")
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1

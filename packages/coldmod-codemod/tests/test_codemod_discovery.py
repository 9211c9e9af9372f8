"""LibCST discovery: keys, spans (decorators included) and name positions, skipped files."""

from __future__ import annotations

import textwrap
from pathlib import Path

from coldmod_codemod import DiscoveryFailure, find_functions, iter_python_files, module_for


def tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def test_module_for() -> None:
    assert module_for("pkg/mod.py") == "pkg.mod"
    assert module_for("pkg/__init__.py") == "pkg"
    assert module_for("pkg/__main__.py") == "pkg.__main__"
    assert module_for("top.py") == "top"


def test_keys_spans_and_positions(tmp_path: Path) -> None:
    tree(
        tmp_path,
        {
            "pkg/mod.py": """
                import functools


                @functools.cache
                @staticmethod
                def decorated(x):
                    return x


                class A:
                    async def run(self):
                        def inner():
                            pass
            """,
        },
    )
    found = {f.key: f for f in find_functions(tmp_path)}
    assert sorted(found) == ["pkg.mod.A.run", "pkg.mod.A.run.<locals>.inner", "pkg.mod.decorated"]
    decorated = found["pkg.mod.decorated"]
    assert (decorated.start_line, decorated.line, decorated.end_line) == (4, 6, 7)
    assert (decorated.name_line, decorated.name_column) == (6, 4)
    run = found["pkg.mod.A.run"]
    assert (run.line, run.name_column, run.end_line) == (11, 14, 13)
    assert found["pkg.mod.A.run.<locals>.inner"].qualname == "A.run.<locals>.inner"


def test_shared_keys_and_global_declarations(tmp_path: Path) -> None:
    tree(
        tmp_path,
        {
            "m.py": """
                class C:
                    @property
                    def v(self): return 1
                    @v.setter
                    def v(self, x): pass

                def factory():
                    global made
                    def made(): pass
            """,
        },
    )
    found = find_functions(tmp_path)
    assert [(f.key, f.line) for f in found] == [("m.C.v", 3), ("m.C.v", 5), ("m.factory", 7), ("m.made", 9)]


def test_ignored_keys_files_and_failures(tmp_path: Path) -> None:
    tree(tmp_path, {"a.py": "def a(): pass\ndef b(): pass\n", "bad.py": "def (:\n", "sub/c.py": "def c(): pass\n"})
    failures: list[DiscoveryFailure] = []
    found = find_functions(tmp_path, files=["a.py", "bad.py"], ignore_keys=["a.b"], failures=failures)
    assert [f.key for f in found] == ["a.a"]
    assert [(f.path, f.line) for f in failures] == [("bad.py", 1)]
    assert str(failures[0]).startswith("bad.py:1: skipped: syntax error")


def test_walk_skips_tool_directories(tmp_path: Path) -> None:
    tree(
        tmp_path,
        {
            "a.py": "",
            ".venv/x.py": "",
            "env/pyvenv.cfg": "",
            "env/y.py": "",
            "__pycache__/z.py": "",
            "node_modules/n.py": "",
            "lib/site-packages/s.py": "",
            "pkg/b.py": "",
        },
    )
    assert list(iter_python_files(tmp_path)) == ["a.py", "pkg/b.py"]

"""find_references: every kind of site, and agreement with LibCST's qualified names and discovery."""

from __future__ import annotations

import textwrap
from pathlib import Path

import libcst as cst
import pytest
from libcst.metadata import FullyQualifiedNameProvider, MetadataWrapper, PositionProvider
from libcst.metadata.name_provider import ModuleNameAndPackage

from coldmod_codemod import find_functions, iter_python_files, module_for
from coldmod_codemod._references import CALL, METHOD, NAME, Tree, find_references

pytestmark = pytest.mark.timeout(60)


def tree(root: Path, files: dict[str, str]) -> Path:
    (root / "coldmod.rootmarker").write_text("")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def refs(root: Path, key: str) -> list[str]:
    return [f"{r.path}:{r.line} {r.kind}{'' if r.certain else '?'}" for r in find_references(root, key)]


PACKAGE = {
    "pkg/__init__.py": """
        from pkg.mod import cold as chilly
        __all__ = ["chilly"]
    """,
    "pkg/mod.py": """
        __all__ = ["cold", "Box"]


        def cold():
            return cold


        class Box:
            def m(self):
                return self.m()

            @classmethod
            def k(cls):
                return cls.m, Box.m


        def shadow(cold):
            return cold
    """,
    "pkg/imports.py": """
        from pkg.mod import cold
        from pkg.mod import cold as frozen
        from . import mod
        import pkg.mod
        import pkg.mod as alias

        cold()
        frozen
        mod.cold()
        pkg.mod.cold
        alias.cold()
    """,
    "pkg/reexport.py": """
        from pkg import chilly

        chilly()
    """,
    "pkg/possible.py": """
        import importlib

        def run(obj, thing):
            obj.cold()
            thing.m
            getattr(obj, "cold")
            "the cold war"  # prose, not a name
            importlib.import_module("pkg.mod").cold
            return "pkg.mod:cold"
    """,
    "pkg/star.py": """
        from pkg.mod import *

        cold()
    """,
}


def test_every_kind_of_reference_to_a_function(tmp_path: Path) -> None:
    root = tree(tmp_path, PACKAGE)
    assert refs(root, "pkg.mod.cold") == [
        "pkg/__init__.py:1 import",
        "pkg/__init__.py:2 __all__",
        "pkg/imports.py:1 import",
        "pkg/imports.py:2 import",
        "pkg/imports.py:7 call",
        "pkg/imports.py:8 name",
        "pkg/imports.py:9 call",
        "pkg/imports.py:10 name",
        "pkg/imports.py:11 call",
        "pkg/mod.py:1 __all__",
        "pkg/possible.py:4 attribute?",
        "pkg/possible.py:6 string?",
        "pkg/possible.py:7 mention?",
        "pkg/possible.py:8 attribute?",
        "pkg/possible.py:9 string?",
        "pkg/reexport.py:1 import",
        "pkg/reexport.py:3 call",
        "pkg/star.py:3 name?",
    ]


def test_method_references_through_self_cls_and_the_class(tmp_path: Path) -> None:
    root = tree(tmp_path, PACKAGE)
    assert refs(root, "pkg.mod.Box.m") == [
        "pkg/mod.py:14 method",
        "pkg/mod.py:14 method",
        "pkg/possible.py:5 attribute?",
    ]


def test_references_inside_the_function_itself_do_not_count(tmp_path: Path) -> None:
    root = tree(tmp_path, {"m.py": """
        def loop():
            return loop()
    """})
    assert refs(root, "m.loop") == []


def test_a_file_that_cannot_be_parsed_may_refer_to_it(tmp_path: Path) -> None:
    root = tree(tmp_path, {"m.py": "def f():\n    pass\n", "bad.py": "f(\n"})
    assert refs(root, "m.f") == ["bad.py:1 unparsed?"]


def test_a_star_reexport_makes_imports_through_the_package_references(tmp_path: Path) -> None:
    root = tree(tmp_path, {
        "pkg/__init__.py": "from .core import *\n",
        "pkg/core.py": "def cold():\n    pass\n",
        "app.py": "from pkg import cold\n\ncold()\n",
    })
    assert refs(root, "pkg.core.cold") == ["app.py:1 import", "app.py:3 call"]


def test_entry_points_in_config_files_are_possible_references(tmp_path: Path) -> None:
    root = tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/cli.py": "def main():\n    pass\n",
        "pyproject.toml": '[project.scripts]\nshop = "pkg.cli:main"\n',
    })
    assert refs(root, "pkg.cli.main") == ["pyproject.toml:2 entry-point?"]


def test_only_files_containing_the_name_are_parsed(tmp_path: Path) -> None:
    root = tree(tmp_path, {
        "m.py": "def needle():\n    pass\n",
        "a.py": "needle()\n",
        "b.py": "needles = 1\n",  # the name, but not as a word
        "c.py": "x = 1\n",
    })
    files = Tree(root)
    assert sorted(files.containing(["needle"])) == ["a.py", "m.py"]


# -- the ast resolution agrees with LibCST's ---------------------------------------

def _libcst_uses(root: Path) -> dict[str, set[tuple[str, int]]]:
    """For every fully qualified name, the (path, line) of its Name/Attribute loads, per LibCST."""
    uses: dict[str, set[tuple[str, int]]] = {}
    for path in iter_python_files(root):
        module = cst.parse_module((root / path).read_bytes())
        name = module_for(path)
        package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        wrapper = MetadataWrapper(module, cache={FullyQualifiedNameProvider: ModuleNameAndPackage(name, package)})
        fqns = wrapper.resolve(FullyQualifiedNameProvider)
        positions = wrapper.resolve(PositionProvider)
        for node, names in fqns.items():
            if isinstance(node, (cst.Name, cst.Attribute)):
                for q in names:
                    uses.setdefault(q.name, set()).add((path, positions[node].start.line))
    return uses


def test_resolution_agrees_with_libcst_qualified_names(tmp_path: Path) -> None:
    root = tree(tmp_path, PACKAGE)
    uses = _libcst_uses(root)
    for function in find_functions(root):
        ours = {
            (r.path, r.line) for r in find_references(root, function.key)
            if r.kind in (CALL, NAME, METHOD) and r.certain
        }
        # LibCST also names definitions and `self.m`-style locals; compare the uses it resolves to the key.
        theirs = {(p, line) for p, line in uses.get(function.key, set())}
        definitions = {(d.path, line) for d in find_functions(root) if d.key == function.key
                       for line in range(d.start_line, d.end_line + 1)}
        assert theirs - definitions <= ours, function.key


def test_definitions_found_with_ast_have_discoverys_keys(tmp_path: Path) -> None:
    root = tree(tmp_path, {**PACKAGE, "g.py": """
        def outer():
            global hoisted
            def hoisted():
                pass
            class Local:
                async def run(self):
                    pass
            return Local


        class A:
            class B:
                @property
                def p(self):
                    pass

                @p.setter
                def p(self, value):
                    pass
    """})
    files = Tree(root)
    ours = sorted(
        (d.key, d.path, d.line, d.start_line, d.end_line)
        for path in files.paths if (f := files.file(path)) is not None
        for d in f.bind().definitions
    )
    theirs = sorted((f.key, f.path, f.line, f.start_line, f.end_line) for f in find_functions(root))
    assert ours == theirs

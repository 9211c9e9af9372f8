"""plan_removal: before/after pairs for every removal rule, and the verdicts."""

from __future__ import annotations

import codecs
import textwrap
from pathlib import Path

import pytest

from coldmod_codemod._plan import RemovalPlan, plan_removal
from coldmod_codemod._rules import RULES

pytestmark = pytest.mark.timeout(60)


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def tree(root: Path, files: dict[str, str]) -> Path:
    (root / "coldmod.rootmarker").write_text("")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(src(text), encoding="utf-8")
    return root


def removed(
    root: Path, files: dict[str, str], keys: list[str], *, force: bool = False
) -> tuple[RemovalPlan, dict[str, str]]:
    """Plan on a fresh tree; the new content of each edited file."""
    tree(root, files)
    plan = plan_removal(root, keys, force=force)
    return plan, {e.path: e.new.decode(e.encoding) for e in plan.edits}


def assert_removal(
    root: Path, before: dict[str, str], keys: list[str], after: dict[str, str], *, force: bool = False
) -> RemovalPlan:
    plan, new = removed(root, before, keys, force=force)
    assert new == {path: src(text) for path, text in after.items()}
    for path, text in new.items():
        compile(text, path, "exec")
    return plan


def test_function_with_its_decorators_and_attached_comments(tmp_path: Path) -> None:
    assert_removal(
        tmp_path,
        {"m.py": """
            import functools

            # About the helpers below (detached: stays).

            # Attached to cold (goes with it).
            @functools.cache
            # between decorators
            @staticmethod
            def cold(x):  # trailing
                return x


            def hot():
                return functools.partial
        """},
        ["m.cold"],
        {"m.py": """
            import functools

            # About the helpers below (detached: stays).


            def hot():
                return functools.partial
        """},
    )


def test_outer_function_takes_nested_ones(tmp_path: Path) -> None:
    plan = assert_removal(
        tmp_path,
        {"m.py": """
            def outer():
                def inner():
                    return inner
                return inner()


            x = 1
        """},
        ["m.outer", "m.outer.<locals>.inner"],
        {"m.py": """
            x = 1
        """},
    )
    assert plan.verdicts["m.outer.<locals>.inner"].safe


def test_every_method_of_a_class_keeps_docstring_or_gets_pass(tmp_path: Path) -> None:
    assert_removal(
        tmp_path,
        {"m.py": """
            class Documented:
                \"\"\"Kept.\"\"\"

                def a(self):
                    pass


            class Bare:
                # comment about b
                def b(self):
                    pass

                async def c(self):
                    pass
        """},
        ["m.Documented.a", "m.Bare.b", "m.Bare.c"],
        {"m.py": """
            class Documented:
                \"\"\"Kept.\"\"\"


            class Bare:
                pass
        """},
    )


def test_all_definitions_sharing_a_key_go(tmp_path: Path) -> None:
    assert_removal(
        tmp_path,
        {"m.py": """
            import sys
            from typing import overload


            class C:
                @property
                def size(self):
                    return 1

                @size.setter
                def size(self, value):
                    pass

                def keep(self):
                    pass


            @overload
            def parse(x: int) -> int: ...
            @overload
            def parse(x: str) -> str: ...
            def parse(x):
                return x


            if sys.platform == "win32":
                def native():
                    return 1
            else:
                def native():
                    return 2
        """},
        ["m.C.size", "m.parse", "m.native"],
        {"m.py": """
            import sys


            class C:
                def keep(self):
                    pass


            if sys.platform == "win32":
                pass
            else:
                pass
        """},
    )


def test_empty_blocks_get_pass_and_an_empty_module_stays_valid(tmp_path: Path) -> None:
    assert_removal(
        tmp_path,
        {
            "m.py": """
                try:
                    def a():
                        pass
                except ImportError:
                    def a():
                        pass
                with open(__file__):
                    def b():
                        pass
            """,
            "only.py": """
                # header comment

                def solo():
                    pass
            """,
        },
        ["m.a", "m.b", "only.solo"],
        {
            "m.py": """
                try:
                    pass
                except ImportError:
                    pass
                with open(__file__):
                    pass
            """,
            "only.py": """
                # header comment
            """,
        },
    )


def test_imports_of_the_removed_function_go(tmp_path: Path) -> None:
    assert_removal(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/mod.py": """
                def cold():
                    pass


                def hot():
                    pass
            """,
            "pkg/a.py": """
                from pkg.mod import cold
                from pkg.mod import cold as frozen, hot
                from pkg.mod import (
                    hot as warm,
                    cold,
                )
                import os; from .mod import cold
                from . import mod

                print(hot, warm, mod.hot, os)
            """,
            "pkg/b.py": """
                from pkg import mod
                if True:
                    from pkg.mod import cold
                try: from pkg.mod import cold
                except ImportError: pass
            """,
        },
        ["pkg.mod.cold"],
        {
            "pkg/mod.py": """
                def hot():
                    pass
            """,
            "pkg/a.py": """
                from pkg.mod import hot
                from pkg.mod import (
                    hot as warm,
                )
                import os
                from . import mod

                print(hot, warm, mod.hot, os)
            """,
            "pkg/b.py": """
                from pkg import mod
                if True:
                    pass
                try: pass
                except ImportError: pass
            """,
        },
    )


def test_dropping_the_last_import_of_an_in_tree_module_is_review(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/signals.py": """
            def cold():
                pass


            REGISTRY = ["registered at import"]
        """,
        "pkg/app.py": """
            from pkg.signals import cold
        """,
    }
    plan, new = removed(tmp_path, files, ["pkg.signals.cold"])
    verdict = plan.verdicts["pkg.signals.cold"]
    assert (verdict.verdict, verdict.removed, new) == ("review", False, {})
    assert verdict.reasons == ("pkg/app.py:1 side-effects (" + RULES["side-effects"].reason + ")",)
    plan = plan_removal(tmp_path, ["pkg.signals.cold"], include=("safe", "review"))
    assert plan.verdicts["pkg.signals.cold"].removed
    assert {e.path: e.new.decode() for e in plan.edits}["pkg/app.py"] == ""


def test_all_entries_go_and_reexports_follow(tmp_path: Path) -> None:
    plan = assert_removal(
        tmp_path,
        {
            "pkg/__init__.py": """
                from pkg.mod import cold, hot

                __all__ = ["cold", "hot"]
            """,
            "pkg/mod.py": """
                __all__ = [
                    "hot",
                    "cold",
                ]
                __all__ += ("cold",)


                def cold():
                    pass


                def hot():
                    pass
            """,
            "pkg/user.py": """
                from pkg import cold, hot
            """,
            "other.py": """
                __all__ = ("cold",)


                def cold():
                    pass
            """,
        },
        ["pkg.mod.cold"],
        {
            "pkg/__init__.py": """
                from pkg.mod import hot

                __all__ = ["hot"]
            """,
            "pkg/mod.py": """
                __all__ = [
                    "hot",
                ]
                __all__ += ()


                def hot():
                    pass
            """,
            "pkg/user.py": """
                from pkg import hot
            """,
        },
    )
    assert plan.verdicts["pkg.mod.cold"].safe


def test_single_entry_tuple_without_parentheses_stays_a_tuple(tmp_path: Path) -> None:
    assert_removal(
        tmp_path,
        {"m.py": """
            __all__ = "a", "cold"
            __all__ = "cold",


            def a():
                pass


            def cold():
                pass
        """},
        ["m.cold"],
        {"m.py": """
            __all__ = "a",
            __all__ = ()


            def a():
                pass
        """},
    )


def test_references_make_a_key_unsafe_with_path_line_and_kind(tmp_path: Path) -> None:
    plan, new = removed(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/mod.py": """
                def cold():
                    pass


                class C:
                    def m(self):
                        return self.m
            """,
            "pkg/use.py": """
                from pkg.mod import cold, C

                cold()
                handler = getattr(C, "m")
            """,
        },
        ["pkg.mod.cold", "pkg.mod.C.m", "pkg.mod.missing"],
    )
    assert new == {}
    assert plan.removed == []
    assert plan.verdicts["pkg.mod.cold"].reasons == ("pkg/use.py:3 call",)
    assert plan.verdicts["pkg.mod.C.m"].reasons == ("pkg/use.py:4 string",)
    assert not plan.verdicts["pkg.mod.missing"].safe
    assert "no function" in plan.verdicts["pkg.mod.missing"].reasons[0]
    assert plan.unsafe == ["pkg.mod.cold", "pkg.mod.C.m", "pkg.mod.missing"]


def test_force_removes_and_marks_each_statement_still_referring(tmp_path: Path) -> None:
    plan = assert_removal(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/mod.py": """
                def cold():
                    pass


                def caller():
                    x = 1
                    return cold() + cold()


                @cold
                def decorated():
                    pass
            """,
            "pkg/use.py": """
                from pkg import mod
                from pkg.mod import cold

                if mod.cold():
                    pass
            """,
        },
        ["pkg.mod.cold"],
        {
            "pkg/mod.py": """
                def caller():
                    x = 1
                    # TODO: pkg.mod.cold was removed by coldmod.
                    return cold() + cold()


                # TODO: pkg.mod.cold was removed by coldmod.
                @cold
                def decorated():
                    pass
            """,
            "pkg/use.py": """
                from pkg import mod

                # TODO: pkg.mod.cold was removed by coldmod.
                if mod.cold():
                    pass
            """,
        },
        force=True,
    )
    verdict = plan.verdicts["pkg.mod.cold"]
    assert (verdict.safe, verdict.removed) == (False, True)


def test_a_reference_from_another_removed_function_does_not_count(tmp_path: Path) -> None:
    files = {
        "m.py": """
            def helper():
                pass


            def cold():
                return helper()


            def user():
                return cold()
        """,
    }
    plan, _ = removed(tmp_path, files, ["m.helper", "m.cold"])
    # cold is still used by user, so it stays, and helper with it.
    assert not plan.verdicts["m.cold"].removed
    assert plan.verdicts["m.helper"].reasons == ("m.py:6 call",)
    plan, new = removed(tmp_path, files, ["m.helper", "m.cold", "m.user"])
    assert plan.removed == ["m.helper", "m.cold", "m.user"]
    assert new == {"m.py": ""}


def test_a_local_of_the_same_name_is_not_a_reference(tmp_path: Path) -> None:
    plan, _ = removed(
        tmp_path,
        {
            "m.py": """
                def cold():
                    pass


                def other(cold=None):
                    return cold
            """,
            "n.py": """
                cold = 3
                print(cold)
            """,
        },
        ["m.cold"],
    )
    assert plan.verdicts["m.cold"].safe


def test_dunder_methods_are_called_implicitly(tmp_path: Path) -> None:
    plan, _ = removed(tmp_path, {"m.py": """
        class Bag:
            def __contains__(self, item):
                return False
    """}, ["m.Bag.__contains__"])
    assert plan.verdicts["m.Bag.__contains__"].reasons == ("m.py:2 implicit",)


def test_a_file_with_a_syntax_error_is_a_failure_not_an_exception(tmp_path: Path) -> None:
    plan, new = removed(
        tmp_path,
        {
            "m.py": """
                def cold():
                    pass
            """,
            "broken.py": """
                def (:
                    cold
            """,
        },
        ["m.cold"],
    )
    assert [f.path for f in plan.failures] == ["broken.py"]
    assert plan.verdicts["m.cold"].reasons == ("broken.py:1 unparsed",)
    assert new == {}


def test_encoding_and_newlines_are_kept(tmp_path: Path) -> None:
    (tmp_path / "coldmod.rootmarker").write_text("")
    source = (
        "# -*- coding: latin-1 -*-\r\nNAME = 'café'\r\n\r\n\r\n"
        "def cold():\r\n    pass\r\n\r\n\r\ndef hot():\r\n    pass\r\n"
    )
    (tmp_path / "m.py").write_bytes(source.encode("latin-1"))
    plan = plan_removal(tmp_path, ["m.cold"])
    [edit] = plan.edits
    expected = "# -*- coding: latin-1 -*-\r\nNAME = 'café'\r\n\r\n\r\ndef hot():\r\n    pass\r\n"
    assert edit.new == expected.encode("latin-1")
    assert codecs.lookup(edit.encoding) == codecs.lookup("latin-1")


def test_a_byte_order_mark_and_mixed_newlines_are_kept(tmp_path: Path) -> None:
    (tmp_path / "coldmod.rootmarker").write_text("")
    (tmp_path / "m.py").write_bytes(b"\xef\xbb\xbfx = 1\r\ny = 2\n\n\ndef cold():\r\n    pass\n\n\nz = 3\r\n")
    [edit] = plan_removal(tmp_path, ["m.cold"]).edits
    assert edit.new == b"\xef\xbb\xbfx = 1\r\ny = 2\n\n\nz = 3\r\n"


def test_a_key_in_a_file_that_cannot_be_parsed_says_so(tmp_path: Path) -> None:
    plan, _ = removed(tmp_path, {"m.py": "def cold(:\n    pass\n"}, ["m.cold"])
    [reason] = plan.verdicts["m.cold"].reasons
    assert reason.startswith("m.py:1: syntax error")


def test_diff_is_a_unified_diff_of_every_edit(tmp_path: Path) -> None:
    plan, _ = removed(tmp_path, {"m.py": """
        def cold():
            pass
        x = 1
    """}, ["m.cold"])
    assert plan.diff() == (
        "--- a/m.py\n+++ b/m.py\n@@ -1,3 +1 @@\n-def cold():\n-    pass\n x = 1\n"
    )
    assert str(plan.verdicts["m.cold"]) == "m.cold: safe"

"""The LibCST codemod command, as before/after pairs and through ``python -m libcst.tool``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from libcst.codemod import CodemodContext, CodemodTest

from coldmod_codemod.commands import RemoveFunction

pytestmark = pytest.mark.timeout(60)


def in_module(name: str, filename: str | None = None) -> CodemodContext:
    return CodemodContext(full_module_name=name, filename=filename or name.replace(".", "/") + ".py")


class TestRemoveFunction(CodemodTest):
    TRANSFORM = RemoveFunction

    def test_removes_the_definition_its_decorators_and_attached_comments(self) -> None:
        before = """
            import functools

            # Section comment (detached: stays).

            # Attached.
            @functools.cache
            def cold():
                pass


            def hot():
                return functools.partial
        """
        after = """
            import functools

            # Section comment (detached: stays).


            def hot():
                return functools.partial
        """
        self.assertCodemod(before, after, keys=["shop.util.cold"], context_override=in_module("shop.util"))

    def test_methods_and_empty_class_bodies(self) -> None:
        before = """
            class Cart:
                \"\"\"A cart.\"\"\"

                def merge(self, other):
                    pass


            class Empty:
                def only(self):
                    pass
        """
        after = """
            class Cart:
                \"\"\"A cart.\"\"\"


            class Empty:
                pass
        """
        self.assertCodemod(
            before, after, keys=["shop.cart.Cart.merge", "shop.cart.Empty.only"],
            context_override=in_module("shop.cart"),
        )

    def test_imports_and_all_entries_in_another_module(self) -> None:
        before = """
            from shop.util import cold, hot
            from .util import cold as frozen

            __all__ = ["cold", "hot"]

            hot()
        """
        after = """
            from shop.util import hot

            __all__ = ["hot"]

            hot()
        """
        self.assertCodemod(before, after, keys=["shop.util.cold"], context_override=in_module("shop.views"))

    def test_remaining_uses_get_a_todo(self) -> None:
        before = """
            from shop.util import cold

            def view():
                return cold()
        """
        after = """
            def view():
                # TODO: shop.util.cold was removed by coldmod.
                return cold()
        """
        self.assertCodemod(before, after, keys=["shop.util.cold"], context_override=in_module("shop.views"))

    def test_a_file_without_the_name_is_skipped(self) -> None:
        self.assertCodemod(
            "x = 1\n", "x = 1\n", keys=["shop.util.cold"], context_override=in_module("shop.other"),
            expected_skip=True,
        )


def test_libcst_tool_runs_the_command(tmp_path: Path) -> None:
    (tmp_path / "coldmod.rootmarker").write_text("")
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "util.py").write_text("def cold():\n    pass\n\n\ndef hot():\n    pass\n")
    (tmp_path / "shop" / "views.py").write_text("from shop.util import cold, hot\n")
    done = subprocess.run(
        [sys.executable, "-m", "libcst.tool", "codemod", "-x", "coldmod_codemod.commands.RemoveFunction",
         "--no-format", "--key", "shop.util.cold", "--root", ".", "shop"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "shop" / "util.py").read_text() == "def hot():\n    pass\n"
    assert (tmp_path / "shop" / "views.py").read_text() == "from shop.util import hot\n"

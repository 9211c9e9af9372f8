"""Verdicts: one before/after test per rule of ``_rules.RULES``, and each finder gap of issue 10.

``verdict(root, files, key)`` is the verdict and the kinds of its reasons;
``after(...)`` is what the tree looks like once the key is removed with
``include=("safe", "review")``: the review ones go, the unsafe ones stay.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from coldmod_codemod import RULES, plan_removal
from coldmod_codemod._rules import DEFINITION, GOES, REVIEW, SAFE, UNSAFE, USE

pytestmark = pytest.mark.timeout(60)


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def tree(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "coldmod.rootmarker").write_text("")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(src(text).encode("utf-8"))
    return root


def verdict(root: Path, files: dict[str, str], key: str) -> tuple[str, list[str]]:
    """The key's verdict and the kinds of its reasons (``path:line kind``), as the plan reports them."""
    plan = plan_removal(tree(root, files), [key])
    found = plan.verdicts[key]
    assert found.removed == (found.verdict == SAFE)
    return found.verdict, [f"{r.path}:{r.line} {r.kind}" for r in found.references]


def after(root: Path, files: dict[str, str], key: str) -> dict[str, str]:
    """Every edited file's new text when the key is removed with ``include=("safe", "review")``."""
    plan = plan_removal(tree(root, files), [key], include=(SAFE, REVIEW))
    return {e.path: e.new.decode(e.encoding) for e in plan.edits}


def test_the_rules_table_is_complete_and_readable() -> None:
    for name, rule in RULES.items():
        assert rule.name == name
        assert rule.verdict in (SAFE, REVIEW, UNSAFE)
        assert rule.site in (USE, DEFINITION, GOES)
        assert 0 < len(rule.reason) < 120
    assert {r.name for r in RULES.values() if r.verdict == SAFE} == {"import", "__all__"}


# -- review: registering decorators ---------------------------------------------------

APP = {
    "app.py": """
        from flask import Blueprint
        import functools
        from contextlib import contextmanager

        bp = Blueprint("blog", __name__)


        @bp.route("/delete")
        def delete_view():
            return "gone"


        @functools.lru_cache(maxsize=None)
        def cached():
            return 1


        @contextmanager
        def managed():
            yield


        class Box:
            @property
            def size(self):
                return 1

            @size.setter
            def size(self, value):
                pass

            @staticmethod
            def make():
                return Box()
    """,
}


def test_a_registering_decorator_is_review(tmp_path: Path) -> None:
    assert verdict(tmp_path, APP, "app.delete_view") == (REVIEW, ["app.py:8 decorator"])
    assert "def delete_view" not in after(tmp_path, APP, "app.delete_view")["app.py"]


@pytest.mark.parametrize("key", ["app.cached", "app.managed", "app.Box.size", "app.Box.make"])
def test_pure_wrappers_are_not_registrations(tmp_path: Path, key: str) -> None:
    assert verdict(tmp_path, APP, key) == (SAFE, [])


def test_a_django_receiver_is_registered_and_stays(tmp_path: Path) -> None:
    """A signal receiver is called whenever the signal is sent: unsafe, not review (``test_framework_uses``)."""
    files = {
        "polls/__init__.py": "",
        "polls/signals.py": """
            from django.db.models.signals import post_save
            from django.dispatch import receiver

            from polls.models import Question


            @receiver(post_save, sender=Question)
            def question_saved(sender, **kwargs):
                pass
        """,
        "polls/models.py": "class Question:\n    pass\n",
    }
    assert verdict(tmp_path, files, "polls.signals.question_saved") == (UNSAFE, ["polls/signals.py:7 registered"])
    assert after(tmp_path, files, "polls.signals.question_saved") == {}


# -- review: dispatch by name or convention -------------------------------------------

VIEWS = {
    "shop/__init__.py": "",
    "shop/views.py": """
        from django.views import View
        from django.core.management.base import BaseCommand


        class Remove(View):
            def delete(self, request):
                return None


        class Command(BaseCommand):
            def add_arguments(self, parser):
                pass

            def handle(self, *args, **options):
                pass


        class Shell:
            def do_quit(self, arg):
                return True

            def visit_Name(self, node):
                pass

            def helper(self):
                pass


        class Form:
            def clean_email(self):
                pass
    """,
}


@pytest.mark.parametrize(("key", "kinds"), [
    ("shop.views.Remove.delete", ["shop/views.py:6 http-method", "shop/views.py:6 override"]),
    ("shop.views.Command.handle", ["shop/views.py:14 command", "shop/views.py:14 override"]),
    ("shop.views.Command.add_arguments", ["shop/views.py:11 command", "shop/views.py:11 override"]),
    ("shop.views.Shell.do_quit", ["shop/views.py:19 dispatch"]),
    ("shop.views.Shell.visit_Name", ["shop/views.py:22 dispatch"]),
    ("shop.views.Form.clean_email", ["shop/views.py:30 dispatch"]),
])
def test_methods_frameworks_dispatch_by_name_are_review(tmp_path: Path, key: str, kinds: list[str]) -> None:
    assert verdict(tmp_path, VIEWS, key) == (REVIEW, kinds)


def test_a_plain_method_of_a_plain_class_is_safe(tmp_path: Path) -> None:
    assert verdict(tmp_path, VIEWS, "shop.views.Shell.helper") == (SAFE, [])


def test_a_verb_named_method_of_a_class_with_no_base_is_not_a_view(tmp_path: Path) -> None:
    # Frameworks dispatch verbs on view classes, and every framework's view has a base; a plain
    # class's `put` is reached by name only through a lookup of its own (the dynamic rule).
    files = {
        "shop/__init__.py": "",
        "shop/spool.py": """
            class Spool:
                def put(self, item):
                    pass


            class Handler(object):
                def delete(self):
                    pass


            class View(Base):
                def put(self):
                    pass
        """,
    }
    assert verdict(tmp_path, files, "shop.spool.Spool.put") == (SAFE, [])
    assert verdict(tmp_path, files, "shop.spool.Handler.delete") == (SAFE, [])
    assert verdict(tmp_path, files, "shop.spool.View.put")[0] == REVIEW


def test_tests_and_fixtures_are_review(tmp_path: Path) -> None:
    files = {
        "tests/test_cart.py": """
            import pytest


            @pytest.fixture
            def cart():
                return []


            def test_empty(cart):
                assert cart == []


            def build():
                return 1
        """,
        "polls/tests.py": "def check():\n    pass\n",
    }
    assert verdict(tmp_path, files, "tests.test_cart.cart") == (
        REVIEW, ["tests/test_cart.py:4 test", "tests/test_cart.py:5 test"])
    assert verdict(tmp_path, files, "tests.test_cart.test_empty")[0] == REVIEW
    assert verdict(tmp_path, files, "tests.test_cart.build") == (REVIEW, ["tests/test_cart.py:13 test"])
    assert verdict(tmp_path, files, "polls.tests.check") == (REVIEW, ["polls/tests.py:1 test"])


# -- review: overrides ------------------------------------------------------------------

BASES = {
    "zoo/__init__.py": "",
    "zoo/base.py": """
        import abc


        class Animal(abc.ABC):
            @abc.abstractmethod
            def speak(self):
                pass
    """,
    "zoo/pets.py": """
        from zoo.base import Animal


        class Dog(Animal):
            def speak(self):
                return "woof"

            def fetch(self):
                return "ball"


        class Puppy(Dog):
            def fetch(self):
                return "slipper"


        class Registry(dict):
            def get(self, key, default=None):
                return 1

            def lookup(self, key):
                return 2
    """,
}


@pytest.mark.parametrize(("key", "expected"), [
    ("zoo.pets.Dog.speak", (REVIEW, ["zoo/pets.py:5 override"])),  # an @abstractmethod implementation
    ("zoo.pets.Puppy.fetch", (REVIEW, ["zoo/pets.py:13 override"])),  # through an in-tree base
    ("zoo.pets.Registry.get", (REVIEW, ["zoo/pets.py:18 http-method", "zoo/pets.py:18 override"])),  # dict.get
    ("zoo.pets.Registry.lookup", (SAFE, [])),
])
def test_overrides_of_base_class_methods_are_review(tmp_path: Path, key: str, expected: tuple[str, list[str]]) -> None:
    assert verdict(tmp_path, BASES, key) == expected


def test_dog_fetch_is_overridden_not_overriding(tmp_path: Path) -> None:
    assert verdict(tmp_path, BASES, "zoo.pets.Dog.fetch") == (SAFE, [])


# -- review: dynamic lookups, mentions in strings and text files --------------------------


def test_dynamic_getattr_or_globals_in_the_module_is_review(tmp_path: Path) -> None:
    files = {
        "disp.py": """
            def handler_a():
                pass


            def run(name):
                return globals()["handler_" + name]()
        """,
        "other.py": """
            def quiet():
                pass


            def lookup(obj, name):
                return getattr(obj, name)
        """,
    }
    assert verdict(tmp_path, files, "disp.handler_a") == (REVIEW, ["disp.py:6 dynamic"])
    assert verdict(tmp_path, files, "other.quiet") == (REVIEW, ["other.py:6 dynamic"])


def test_doctests_and_python_c_strings_are_review(tmp_path: Path) -> None:
    files = {
        "calc.py": '''
            def double(x):
                return 2 * x


            def documented():
                """Use it like this.

                >>> double(2)
                4
                """
        ''',
        "run.py": """
            import subprocess
            subprocess.run(["python", "-c", "import calc; print(calc.double(1))"])
        """,
    }
    # The doctest names it as a word (review); the `python -c` string by its full path (a definite reference).
    assert verdict(tmp_path, files, "calc.double") == (UNSAFE, ["run.py:2 entry-point", "calc.py:6 mention"])
    (tmp_path / "run.py").unlink()
    assert verdict(tmp_path, files | {"run.py": "CMD = 'python -c \"from calc import *; double(1)\"'\n"},
                   "calc.double") == (REVIEW, ["calc.py:6 mention", "run.py:1 mention"])


def test_templates_are_review(tmp_path: Path) -> None:
    files = {
        "flaskr/__init__.py": "",
        "flaskr/blog.py": """
            def delete(id):
                return id


            def page():
                return 1
        """,
        "flaskr/templates/blog/update.html": """
            <form action="{{ url_for('blog.delete', id=post['id']) }}" method="post">
            {% load page %}{{ obj.page }}
        """,
    }
    assert verdict(tmp_path, files, "flaskr.blog.delete") == (REVIEW, ["flaskr/templates/blog/update.html:1 text"])
    assert verdict(tmp_path, files, "flaskr.blog.page") == (REVIEW, ["flaskr/templates/blog/update.html:2 text"])
    assert after(tmp_path, files, "flaskr.blog.delete") == {"flaskr/blog.py": "def page():\n    return 1\n"}


def test_entry_points_and_dict_configs_in_any_config_file_are_unsafe(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/cli.py": """
            def main():
                pass


            class Tool:
                def run(self):
                    pass


            def make_handler():
                pass
        """,
        "tools/sub/pyproject.toml": '[project.scripts]\nshop = "pkg.cli:main"\n',
        "setup.cfg": "[options.entry_points]\nconsole_scripts =\n    tool = pkg.cli:Tool.run\n",
        "logging.json": '{"handlers": {"h": {"()": "pkg.cli.make_handler"}}}\n',
    }
    assert verdict(tmp_path, files, "pkg.cli.main") == (UNSAFE, ["tools/sub/pyproject.toml:2 entry-point"])
    assert verdict(tmp_path, files, "pkg.cli.Tool.run") == (UNSAFE, ["setup.cfg:3 entry-point"])
    assert verdict(tmp_path, files, "pkg.cli.make_handler") == (UNSAFE, ["logging.json:1 entry-point"])


def test_setup_py_entry_points_are_unsafe(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/cli.py": "def main():\n    pass\n",
        "setup.py": 'setup(entry_points={"console_scripts": ["shop = pkg.cli:main"]})\n',
    }
    assert verdict(tmp_path, files, "pkg.cli.main")[0] == UNSAFE


def test_coldmods_own_rootmarker_is_not_a_reference(tmp_path: Path) -> None:
    files = {"m.py": "def cold():\n    pass\n"}
    root = tree(tmp_path, files)
    (root / "coldmod.rootmarker").write_text('[ignore]\nkeys = ["m.cold"]\n')
    assert plan_removal(root, ["m.cold"]).verdicts["m.cold"].verdict == SAFE


# -- unsafe: the finder gaps of issue 10 ----------------------------------------------------


def test_an_aliased_import_inside_a_function_body_is_a_reference(tmp_path: Path) -> None:
    files = {
        "click/__init__.py": "",
        "click/_termui_impl.py": "def getchar(echo):\n    return echo\n",
        "click/termui.py": """
            def getchar(echo=False):
                from ._termui_impl import getchar as f

                return f(echo)
        """,
    }
    assert verdict(tmp_path, files, "click._termui_impl.getchar") == (
        UNSAFE, ["click/termui.py:4 call"])


def test_imports_in_class_bodies_conditionals_and_globals_are_followed(tmp_path: Path) -> None:
    files = {
        "lib.py": "def helper():\n    pass\n",
        "a.py": """
            class C:
                from lib import helper as h

                def run(self):
                    return self.h()
        """,
        "b.py": """
            try:
                from lib import helper as fast
            except ImportError:
                fast = None

            fast()
        """,
        "c.py": """
            def setup():
                global g
                from lib import helper as g


            def use():
                return g()
        """,
    }
    assert verdict(tmp_path, files, "lib.helper") == (
        UNSAFE, ["a.py:5 attribute", "b.py:6 call", "c.py:7 call"])


def test_class_body_lookup_falls_back_to_module_globals(tmp_path: Path) -> None:
    files = {
        "m.py": """
            def x():
                pass


            class C:
                x = staticmethod(x)
        """,
    }
    assert verdict(tmp_path, files, "m.x") == (UNSAFE, ["m.py:6 name"])


def test_src_layouts_and_rootdir_insertion_spell_modules_differently(tmp_path: Path) -> None:
    files = {
        "src/pkg/__init__.py": "",
        "src/pkg/mod.py": "def f():\n    pass\n",
        "src/pkg/other.py": "from pkg.mod import f\n\nf()\n",
        "tests/helpers.py": "def make():\n    pass\n",
        "tests/test_a.py": "from helpers import make\n\nmake()\n",
    }
    assert verdict(tmp_path, files, "src.pkg.mod.f") == (UNSAFE, ["src/pkg/other.py:3 call"])
    assert verdict(tmp_path, files, "tests.helpers.make") == (UNSAFE, ["tests/test_a.py:3 call", *[
        "tests/helpers.py:1 test"]])


def test_a_root_that_is_itself_a_package(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    files = {
        "__init__.py": "",
        "mod.py": "def f():\n    pass\n",
        "sub/__init__.py": "",
        "sub/a.py": "from ..mod import f\n\nf()\n",
        "b.py": "from shop.mod import f as g\n\ng()\n",
    }
    assert verdict(root, files, "mod.f") == (UNSAFE, ["b.py:3 call", "sub/a.py:3 call"])


def test_a_relative_import_that_cannot_be_resolved_counts(tmp_path: Path) -> None:
    files = {"mod.py": "def f():\n    pass\n", "a.py": "from ..mod import f\n"}
    assert verdict(tmp_path, files, "mod.f") == (UNSAFE, ["a.py:1 unresolved"])


def test_star_imports_export_private_names_listed_in_all(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "import os; from pkg.impl import *\n",
        "pkg/impl.py": '__all__ = ["_private"]\n\n\ndef _private():\n    pass\n',
        "app.py": "import pkg\n\npkg._private()\n",
    }
    assert verdict(tmp_path, files, "pkg.impl._private") == (UNSAFE, ["app.py:3 call", "pkg/impl.py:1 __all__"][:1])


def test_a_module_getattr_may_hand_out_anything(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": """
            from pkg import _impl


            def __getattr__(name):
                return getattr(_impl, name)
        """,
        "pkg/_impl.py": "def helper():\n    pass\n",
        "app.py": "from pkg import helper\n",
    }
    assert verdict(tmp_path, files, "pkg._impl.helper") == (UNSAFE, ["app.py:1 export"])


def test_shebang_scripts_and_hidden_directories_are_read(tmp_path: Path) -> None:
    files = {
        "lib.py": "def f():\n    pass\n\n\ndef g():\n    pass\n",
        "bin/tool": "#!/usr/bin/env python3\nfrom lib import f\n\nf()\n",
        ".github/scripts/check.py": "import lib\n\nlib.g()\n",
    }
    assert verdict(tmp_path, files, "lib.f") == (UNSAFE, ["bin/tool:4 call"])
    assert verdict(tmp_path, files, "lib.g") == (UNSAFE, [".github/scripts/check.py:3 call"])


def test_identifiers_compare_after_nfkc(tmp_path: Path) -> None:
    files = {"lib.py": "def ﬁnd():\n    pass\n", "a.py": "from lib import ﬁnd\n\nfind()\n"}
    assert verdict(tmp_path, files, "lib.find") == (UNSAFE, ["a.py:3 call"])


# -- apply: imports left behind, bytes kept ---------------------------------------------------


def test_imports_only_the_removed_code_used_go_and_no_others(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/util.py": "def helper():\n    pass\n\n\ndef other():\n    pass\n",
        "pkg/views.py": """
            import json
            import os  # unused before: stays
            import re, sys
            from pkg.util import helper, other
            from typing import TYPE_CHECKING

            if TYPE_CHECKING:
                from collections import OrderedDict

            __all__ = ["hot", "sys"]


            def cold(x: "OrderedDict"):
                return json.dumps(x), re.sub, helper()


            def hot():
                return other()
        """,
    }
    assert after(tmp_path, files, "pkg.views.cold") == {"pkg/views.py": src("""
        import os  # unused before: stays
        import sys
        from pkg.util import other
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            pass

        __all__ = ["hot", "sys"]


        def hot():
            return other()
    """)}


def test_a_module_level_import_another_module_reuses_stays(tmp_path: Path) -> None:
    files = {
        "a.py": "import json\n\n\ndef cold():\n    return json\n",
        "b.py": "from a import json\n\njson.dumps(1)\n",
    }
    assert after(tmp_path, files, "a.cold") == {"a.py": "import json\n"}


def test_the_last_entry_of_a_multiline_import_or_all_keeps_the_comments_around_it(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/mod.py": "def hot():\n    pass\n\n\ndef cold():\n    pass\n",
        "pkg/a.py": """
            from pkg.mod import (
                hot,  # the hot one
                cold,  # the cold one
            )

            __all__ = [
                "hot",  # exported
                "cold",  # going
            ]
            hot()
        """,
    }
    new = after(tmp_path, files, "pkg.mod.cold")
    assert new["pkg/a.py"] == src("""
        from pkg.mod import (
            hot,  # the hot one
        )

        __all__ = [
            "hot",  # exported
        ]
        hot()
    """)


@pytest.mark.parametrize("newline", [b"\r", b"\x0c"])
def test_a_file_libcst_cannot_print_back_exactly_is_refused(tmp_path: Path, newline: bytes) -> None:
    (tmp_path / "coldmod.rootmarker").write_text("")
    body = b"def cold():" + b"\r    pass\r" if newline == b"\r" else b"x = 1\n\x0cdef cold():\n    pass\n"
    (tmp_path / "m.py").write_bytes(body)
    plan = plan_removal(tmp_path, ["m.cold"])
    found = plan.verdicts["m.cold"]
    assert (found.verdict, found.removed, plan.edits) == (UNSAFE, False, ())
    assert "byte for byte" in found.reasons[-1]
    assert (tmp_path / "m.py").read_bytes() == body


def test_progress_counts_up_to_its_total(tmp_path: Path) -> None:
    files = {f"m{i}.py": f"def f{i}():\n    pass\n" for i in range(5)}
    calls: list[tuple[int, int]] = []
    keys = [f"m{i}.f{i}" for i in range(5)]
    plan = plan_removal(tree(tmp_path, files), keys, progress=lambda done, total: calls.append((done, total)))
    assert len(plan.removed) == 5
    assert calls[-1][0] == calls[-1][1] >= 5 + 5 + 5  # files read, keys judged, files edited
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_a_review_mention_gets_no_todo_and_a_docstring_stays_first(tmp_path: Path) -> None:
    files = {
        "m.py": '''
            def cold():
                pass


            def hot():
                """Unlike cold, this one runs."""
                return 1
        ''',
    }
    assert after(tmp_path, files, "m.cold") == {"m.py": src('''
        def hot():
            """Unlike cold, this one runs."""
            return 1
    ''')}


def test_orphaned_imports_go_but_string_annotations_keep_theirs_and_the_blank_line_stays(tmp_path: Path) -> None:
    files = {
        "m.py": '''
            """The module."""

            import re
            import sys
            from typing import TYPE_CHECKING

            from caches import caches

            if TYPE_CHECKING:
                from decimal import Decimal

            E001 = "caches.E001"


            def cold(x):
                return re.sub("a", "b", x), caches


            def hot(x: "Decimal"):
                return sys, x
        ''',
    }
    assert after(tmp_path, files, "m.cold") == {"m.py": src('''
        """The module."""

        import sys
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from decimal import Decimal

        E001 = "caches.E001"


        def hot(x: "Decimal"):
            return sys, x
    ''')}

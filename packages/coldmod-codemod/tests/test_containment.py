"""Contained classes: an unknown receiver's ``.get`` cannot reach ``Spool.get`` when no Spool can get there.

Every case starts from the same tree: ``pkg/spool.py`` defines ``Spool``
(``label`` in use, ``get`` cold) and ``pkg/use.py`` makes one and reads its
label, beside ``.get`` on receivers nobody can type (``request.args``, a
parameter, a dict). Each case adds lines to one or more files; ``Spool.get``
is then ``safe`` (the class stays contained) or keeps its ``attribute``
references (the row of ``CONTAINMENT`` named by the case let it escape).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from coldmod_codemod import plan_removal
from coldmod_codemod._containment import CONTAINMENT, contained
from coldmod_codemod._rules import SAFE, UNSAFE
from coldmod_codemod._tree import Tree

pytestmark = pytest.mark.timeout(60)

KEY = "pkg.spool.Spool.get"

SPOOL = """
    class Spool:
        \"\"\"Spools things; its label is read, the rest is cold.\"\"\"

        KIND = "spool"

        def label(self):
            return "spool"

        def get(self, *args):
            return (len(args), self.label())
"""

USE = """
    from flask import request

    from pkg.spool import Spool


    def view(d, obj):
        d.get("k")
        obj.get("k")
        return request.args.get("a")


    LABEL = Spool().label()
"""


def write(root: Path, extra: dict[str, str]) -> Path:
    """The base tree with ``extra`` appended to its files (or as new files)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "coldmod.rootmarker").write_text("")
    files = {"pkg/__init__.py": "", "pkg/spool.py": SPOOL, "pkg/use.py": USE}
    for rel, text in extra.items():
        files[rel] = textwrap.dedent(files.get(rel, "")) + "\n\n" + textwrap.dedent(text)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def verdict(root: Path, extra: dict[str, str]) -> tuple[str, list[str]]:
    """``Spool.get``'s verdict and its reasons' kinds, and (for the failure message) why Spool escapes."""
    plan = plan_removal(write(root, extra), [KEY])
    found = plan.verdicts[KEY]
    return found.verdict, sorted({r.kind for r in found.references})


def escape(root: Path) -> str:
    return contained(Tree(root), "pkg.spool.Spool").escape


def test_the_containment_table_is_a_table() -> None:
    assert len({row.name for row in CONTAINMENT}) == len(CONTAINMENT)
    assert CONTAINMENT[-1].name == "other use"
    assert not CONTAINMENT[-1].keeps


# -- contained: each row that keeps the class contained ------------------------------------------

KEEPS = {
    "receiver": {"pkg/use.py": "Spool().label()\n"},
    "bound": {"pkg/use.py": """
        def f():
            spool = Spool()
            spool.label()
            return spool.KIND
    """},
    "bound module-level": {"pkg/spool.py": "SPOOL = Spool()\nSPOOL.label()\n"},
    "discarded": {"pkg/use.py": "Spool()\n"},
    "class attribute": {"pkg/use.py": "KIND = Spool.KIND\n"},
    "type test": {"pkg/use.py": """
        def g(x):
            if isinstance(x, Spool) or issubclass(type(x), (int, Spool)):
                return 1
            try:
                return 2
            except Spool:
                return 3
    """},
    "annotation": {"pkg/use.py": "def h(s: 'Spool', t: Spool | None = None) -> Spool:\n    raise ValueError\n"},
    "subclass": {"pkg/use.py": "class Sub(Spool):\n    def tag(self):\n        return self.label()\n\n\nSub().tag()\n"},
    "import": {"pkg/other.py": "import pkg.spool\n\npkg.spool.Spool().label()\n"},
    "classmethod": {"pkg/spool.py": """
        class Made(Spool):
            @classmethod
            def make(cls):
                return cls().label()
    """},
    "computed getattr on an object": {"pkg/other.py": "def load(obj, name):\n    return getattr(obj, name)\n"},
    "an object's namespace": {"pkg/spool.py": "def fields(obj):\n    return vars(obj), dir(obj), obj.__dict__\n"},
    "a loader elsewhere whose module is data": {"pkg/other.py": """
        import importlib


        def load(path, attr):
            return getattr(importlib.import_module(path), attr)
    """},
    "a module's names": {"pkg/other.py": "import pkg.spool\n\nNAMES = [n for n in dir(pkg.spool) if n.isupper()]\n"},
    "known receivers that are no channel": {"pkg/use.py": """
        import flask.views


        class Page(flask.views.MethodView):
            def dispatch_request(self):
                return self.get()


        def typed(s: Spool, t: "Spool | None"):
            return s.get(), t.get()
    """},
    "class channels": {"pkg/use.py": """
        class Sub(Spool):
            @classmethod
            def kind(cls):
                return cls.KIND, Sub.KIND
    """},
    "prose": {"README.md": "Spool spools: `Spool().label()`.\n", "docs/index.rst": "pkg.spool.Spool\n"},
}


@pytest.mark.parametrize("case", sorted(KEEPS))
def test_a_contained_class_method_is_safe_beside_unknown_receivers(tmp_path: Path, case: str) -> None:
    assert verdict(tmp_path, KEEPS[case]) == (SAFE, []), escape(tmp_path)
    assert escape(tmp_path) == ""


def test_cls_and_a_subclass_name_are_channels(tmp_path: Path) -> None:
    found = verdict(tmp_path, {"pkg/use.py": """
        class Sub(Spool):
            @classmethod
            def fetch(cls):
                return cls.get, Sub.get
    """})
    assert found == (UNSAFE, ["attribute"])
    assert escape(tmp_path) == ""


def test_super_in_a_subclass_is_a_channel(tmp_path: Path) -> None:
    found = verdict(tmp_path, {"pkg/use.py": """
        class Sub(Spool):
            def label(self):
                return super().get()


        Sub().label()
    """})
    assert found == (UNSAFE, ["attribute"])
    assert escape(tmp_path) == ""


def test_the_unknown_receivers_count_once_the_class_escapes(tmp_path: Path) -> None:
    """The other side of every case below: the same three .get() are references again."""
    assert verdict(tmp_path, {"pkg/use.py": "print(Spool())\n"}) == (UNSAFE, ["attribute"])


# -- escapes: every way an instance or the class may get where the tree cannot follow ----------

ESCAPES = {
    "argument": ({"pkg/use.py": "print(Spool())\n"}, "other use"),
    "return": ({"pkg/use.py": "def make():\n    return Spool()\n"}, "other use"),
    "yield": ({"pkg/use.py": "def make():\n    yield Spool()\n"}, "other use"),
    "attribute store": ({"pkg/use.py": "def keep(o):\n    o.spool = Spool()\n"}, "other use"),
    "container": ({"pkg/use.py": "SPOOLS = [Spool()]\n"}, "other use"),
    "for": ({"pkg/use.py": "for s in [Spool()]:\n    s.label()\n"}, "other use"),
    "with": ({"pkg/use.py": "with Spool() as s:\n    pass\n"}, "other use"),
    "f-string": ({"pkg/use.py": "TEXT = f'{Spool()}'\n"}, "other use"),
    "compared": ({"pkg/use.py": "SAME = Spool() == 1\n"}, "other use"),
    "called": ({"pkg/use.py": "Spool()()\n"}, "other use"),
    "bound then passed": ({"pkg/use.py": "def f():\n    s = Spool()\n    print(s)\n"}, "other use"),
    "tuple unpacking": ({"pkg/use.py": "a, b = Spool(), 1\n"}, "other use"),
    "self returned": ({"pkg/spool.py": "class Sub(Spool):\n    def me(self):\n        return self\n"}, "other use"),
    "self stored": ({"pkg/spool.py": """
        REGISTRY = []


        class Sub(Spool):
            def __init__(self):
                REGISTRY.append(self)
    """}, "other use"),
    "self in a base escapes": ({"pkg/spool.py": """
        class Base:
            def register(self):
                print(self)


        class Spool(Base):
            def get(self):
                return 1
    """}, "other use"),
    "dunder": ({"pkg/use.py": "def again(s):\n    return Spool().__class__()\n"}, "dunder"),
    "class dunder": ({"pkg/use.py": "OBJ = Spool.__new__(Spool)\n"}, "dunder"),
    "class passed on": ({"pkg/use.py": "print(Spool)\n"}, "other use"),
    "class passed on elsewhere": ({"pkg/other.py": "from pkg.use import Spool\n\nprint(Spool)\n"}, "other use"),
    "subclass escapes": ({"pkg/other.py": "from pkg.spool import Spool\n\n\nclass Sub(Spool):\n    pass\n\n\n"
                                          "print(Sub())\n"}, "other use"),
    "alias": ({"pkg/use.py": "from pkg.spool import Spool as Reel\n"}, "alias"),
    "walrus": ({"pkg/use.py": "if (s := Spool()):\n    s.label()\n"}, "rebound"),
    "global": ({"pkg/use.py": "def f():\n    global S\n    S = Spool()\n    S.label()\n"}, "rebound"),
    "module instance imported": ({"pkg/spool.py": "SPOOL = Spool()\nSPOOL.label()\n",
                                  "pkg/other.py": "from pkg.spool import SPOOL\n"}, "exported"),
    "module instance in __all__": ({"pkg/spool.py": "__all__ = ['SPOOL']\nSPOOL = Spool()\nSPOOL.label()\n"},
                                   "exported"),
    "external base": ({"pkg/spool.py": "class Spool(dict):\n    def get(self, *args):\n        return 1\n"},
                      "external base"),
    "third-party base": ({"pkg/spool.py": "import flask\n\n\nclass Spool(flask.Flask):\n    def get(self):\n"
                                          "        return 1\n"}, "external base"),
    "class decorator": ({"pkg/spool.py": "import functools\n\n\n@functools.total_ordering\nclass Spool:\n"
                                         "    def get(self):\n        return 1\n"}, "class hook"),
    "metaclass": ({"pkg/spool.py": "import abc\n\n\nclass Spool(metaclass=abc.ABCMeta):\n    def get(self):\n"
                                   "        return 1\n"}, "class hook"),
    "__init_subclass__ in a base": ({"pkg/spool.py": """
        class Base:
            def __init_subclass__(cls, **kwargs):
                pass


        class Spool(Base):
            def get(self):
                return 1
    """}, "class hook"),
    "class body call": ({"pkg/spool.py": "import threading\n\n\nclass Spool:\n    lock = threading.Lock()\n\n"
                                         "    def get(self):\n        return 1\n"}, "class body"),
    "method wrapper": ({"pkg/spool.py": "import functools\n\n\nclass Spool:\n    @functools.lru_cache\n"
                                        "    def get(self):\n        return 1\n"}, "method wrapper"),
    "globals()": ({"pkg/use.py": "NAMES = globals()\n"}, "by name"),
    "getattr of the module": ({"pkg/other.py": "import pkg.spool\n\nCLS = getattr(pkg.spool, 'Spool')\n"},
                              "by name"),
    "computed getattr of the module": ({"pkg/other.py": "import pkg.spool\n\n\ndef load(name):\n"
                                                       "    return getattr(pkg.spool, name)\n"}, "by name"),
    "computed getattr of import_module in its module": ({"pkg/spool.py": """
        import importlib


        def load(name):
            return getattr(importlib.import_module("pkg.x"), name)
    """}, "by name"),
    "a module's namespace read whole": ({"pkg/other.py": "import inspect\n\nimport pkg.spool\n\n"
                                                        "MEMBERS = inspect.getmembers(pkg.spool)\n"}, "by name"),
    "locals()": ({"pkg/use.py": "def f():\n    s = Spool()\n    s.label()\n    return locals()\n"}, "by name"),
    "dotted path in Python": ({"pkg/settings.py": "HANDLER = 'pkg.spool.Spool'\n"}, "by name"),
    "dotted path in a config file": ({"settings.toml": "handler = 'pkg.spool:Spool'\n"}, "by name"),
    "__subclasses__": ({"pkg/other.py": "ALL = object.__subclasses__()\n"}, "by name"),
    "star import": ({"pkg/other.py": "from pkg.spool import *\n\nSpool().label()\n"}, "unknown"),
}


@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_an_escaping_class_keeps_unknown_receivers_as_references(tmp_path: Path, case: str) -> None:
    extra, row = ESCAPES[case]
    found = verdict(tmp_path, extra)
    assert found[0] == UNSAFE, found
    assert "attribute" in found[1], found
    assert escape(tmp_path) == row


def test_every_escaping_row_is_tested() -> None:
    tested = {row for _, row in ESCAPES.values()}
    assert tested == {row.name for row in CONTAINMENT if not row.keeps}


# -- by its bare name: strings, templates, lookups cannot hold a contained class's instance -------

BY_NAME = {
    "pkg/use.py": """
        def lookup(obj, name):
            return getattr(obj, "get"), getattr(obj, name), {"get": print}
    """,
    "pkg/spool.py": """
        def dispatch(obj, verb):
            return getattr(obj, verb.lower())()


        MESSAGE = "get the spool"
    """,
    "pkg/templates/page.html": "{{ row.get('x') }}\n",
}


def test_strings_and_lookups_do_not_reach_a_contained_class(tmp_path: Path) -> None:
    assert verdict(tmp_path, BY_NAME) == (SAFE, [])


def test_strings_and_lookups_count_once_it_escapes(tmp_path: Path) -> None:
    extra = {**BY_NAME, "pkg/other.py": "from pkg.spool import Spool\n\nprint(Spool())\n"}
    assert verdict(tmp_path, extra) == (UNSAFE, ["attribute", "dynamic", "mention", "string", "template"])


def test_an_entry_point_naming_the_class_lets_it_escape(tmp_path: Path) -> None:
    extra = {"pkg.egg-info/entry_points.txt": "[spools]\nmain = pkg.spool:Spool.get\n"}
    assert verdict(tmp_path, extra) == (UNSAFE, ["attribute", "entry-point"])
    assert escape(tmp_path) == "by name"

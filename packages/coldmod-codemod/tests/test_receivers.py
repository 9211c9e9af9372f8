"""Receiver-aware attribute references and narrowed string lookups: one pair per rule.

Each test puts the same use beside a method once where the receiver is known
NOT to be its class (the use no longer counts) and once where it may be (it
still counts). ``uses(...)`` lists the lines of ``use.py`` that refer to the key.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from coldmod_codemod import find_references, plan_removal
from coldmod_codemod._receivers import RECEIVERS

pytestmark = pytest.mark.timeout(60)

STORE = """
    class Store:
        def put(self, item):
            return item


    def helper():
        return 1


    def make():
        return Store()  # a Store escapes (see test_containment.py): an unknown receiver may be one
"""


def write(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "coldmod.rootmarker").write_text("")
    for rel, text in {"pkg/__init__.py": "", "pkg/store.py": STORE, **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def uses(root: Path, use: str, key: str = "pkg.store.Store.put", **more: str) -> list[str]:
    """``line kind`` of every reference to ``key`` in ``pkg/use.py`` (written from ``use``)."""
    tree = write(root, {"pkg/use.py": use, **more})
    return [f"{r.line} {r.kind}" for r in find_references(tree, key) if r.path == "pkg/use.py"]


def both(tmp_path: Path, known_not: str, may_be: str, key: str = "pkg.store.Store.put", **more: str) -> None:
    """The use in ``known_not`` is no reference; the one in ``may_be`` still is (an ``attribute``)."""
    assert uses(tmp_path / "not", known_not, key, **more) == []
    assert [u.split()[1] for u in uses(tmp_path / "may", may_be, key, **more)] == ["attribute"]


def test_the_receiver_table_is_a_table() -> None:
    assert [row.name for row in RECEIVERS] == [
        "self", "cls", "super", "constructed", "literal", "class", "annotated", "returned", "variable"]


def test_an_instance_constructed_in_scope(tmp_path: Path) -> None:
    both(tmp_path, """
        import asyncio

        def f():
            q = asyncio.Queue()
            q.put(1)
    """, """
        import asyncio

        def f(make):
            q = asyncio.Queue()
            q = make()  # reassigned: now unknown
            q.put(1)
    """)


def test_a_subclass_instance_reaches_the_method_an_unrelated_one_does_not(tmp_path: Path) -> None:
    both(tmp_path, """
        class Other:
            def put(self, item):
                pass

        Other().put(1)
    """, """
        from pkg.store import Store

        class Sub(Store):
            pass

        Sub().put(1)
    """)


def test_self_in_a_base_may_be_an_instance_of_the_subclass(tmp_path: Path) -> None:
    both(tmp_path, """
        class Unrelated:
            def run(self):
                self.put(1)
    """, """
        from pkg.store import Store

        class Base:
            def run(self):
                self.put(1)

        class Leaf(Base, Store):  # Base's self may be a Leaf, whose put is Store.put
            pass
    """)


def test_a_mixin_is_reached_through_the_other_base(tmp_path: Path) -> None:
    both(tmp_path, """
        class View:
            def dispatch(self):
                return self.put(1)

        class Page(View):
            pass
    """, """
        from pkg.store import Store

        class View:
            def dispatch(self):
                return self.put(1)

        class Page(View, Store):
            pass
    """)


def test_an_annotated_parameter_and_an_unknown_one(tmp_path: Path) -> None:
    both(tmp_path, """
        import asyncio

        def f(q: asyncio.Queue):
            q.put(1)
    """, """
        def f(q):
            q.put(1)
    """)


def test_optional_union_string_and_any_annotations(tmp_path: Path) -> None:
    both(tmp_path, """
        from typing import Optional
        import asyncio

        def f(q: Optional[asyncio.Queue], r: "asyncio.Queue | None"):
            q.put(1)
            r.put(2)
    """, """
        from typing import Union
        import asyncio
        from pkg.store import Store

        def f(q: Union[asyncio.Queue, Store]):
            q.put(1)
    """)
    both(tmp_path / "any", """
        def f(q: "list[int]"):
            q.put(1)
    """, """
        from typing import Any

        def f(q: Any):
            q.put(1)
    """)


def test_an_attribute_of_an_unknown_object_and_super_still_count(tmp_path: Path) -> None:
    both(tmp_path, """
        class Holder:
            def run(self):
                "text".put
    """, """
        from pkg.store import Store

        class Sub(Store):
            def put(self, item):
                return super().put(item)
    """)
    assert [u.split()[1] for u in uses(tmp_path / "attr", """
        class Holder:
            def run(self):
                self.store.put(1)
    """)] == ["attribute"]


def test_super_reaches_only_the_classes_after_its_own_in_an_mro(tmp_path: Path) -> None:
    both(tmp_path, """
        class Unrelated:
            def put(self, item):
                return super().put(item)  # object comes after Unrelated, and nothing else does
    """, """
        from pkg.store import Store

        class Mixin:
            def put(self, item):
                return super().put(item)  # in Both, Store comes after Mixin

        class Both(Mixin, Store):
            pass
    """)
    tree = write(tmp_path / "chain", {"pkg/chain.py": """
        from pkg.store import Store

        class Middle(Store):
            def put(self, item):
                return super().put(item)

        class Leaf(Middle):
            def put(self, item):
                return super(Leaf, self).put(item)
    """})
    assert [str(r) for r in find_references(tree, "pkg.store.Store.put")] == [
        "pkg/chain.py:5 attribute", "pkg/chain.py:9 attribute"]
    assert [str(r) for r in find_references(tree, "pkg.chain.Middle.put")] == ["pkg/chain.py:9 attribute"]
    assert [str(r) for r in find_references(tree, "pkg.chain.Leaf.put")] == []  # a subclass is never after


def test_super_init_counts_only_against_the_inits_after_it(tmp_path: Path) -> None:
    tree = write(tmp_path, {"pkg/inits.py": """
        class Base:
            def __init__(self):
                self.ready = True

        class Child(Base):
            def __init__(self):
                super().__init__()

        class Alone:
            def __init__(self):
                super().__init__()
    """})
    assert [str(r) for r in find_references(tree, "pkg.inits.Base.__init__")] == ["pkg/inits.py:7 attribute"]
    assert [str(r) for r in find_references(tree, "pkg.inits.Child.__init__")] == []


def test_a_class_with_getattr_may_answer_any_name(tmp_path: Path) -> None:
    both(tmp_path, """
        class Plain:
            pass

        Plain().put(1)
    """, """
        class Proxy:
            def __getattr__(self, name):
                return getattr(self._target, name)

        Proxy().put(1)
    """)


def test_classmethods_through_cls(tmp_path: Path) -> None:
    both(tmp_path, """
        class Other:
            @classmethod
            def make(cls):
                return cls.put
    """, """
        from pkg.store import Store

        class Sub(Store):
            @classmethod
            def make(cls):
                return cls.put
    """)


def test_a_staticmethods_first_parameter_is_not_self(tmp_path: Path) -> None:
    both(tmp_path, """
        class Other:
            def run(self):
                self.put(1)
    """, """
        class Other:
            @staticmethod
            def run(store):
                store.put(1)
    """)


def test_a_module_level_instance(tmp_path: Path) -> None:
    both(tmp_path, """
        import asyncio

        QUEUE = asyncio.Queue()

        def f():
            QUEUE.put(1)
    """, """
        import asyncio

        QUEUE = asyncio.Queue()

        def reset(make):
            global QUEUE
            QUEUE = make()

        def f():
            QUEUE.put(1)
    """)


def test_an_external_class_that_is_a_base_of_a_tree_class(tmp_path: Path) -> None:
    queue = {"pkg/queue.py": """
        import asyncio

        class MyQueue(asyncio.Queue):
            def put(self, item):
                return item
    """}
    # An asyncio.Queue() is exactly that, never a MyQueue; a parameter annotated asyncio.Queue may be one.
    both(tmp_path, """
        import asyncio

        asyncio.Queue().put(1)
    """, """
        import asyncio

        def f(q: asyncio.Queue):
            q.put(1)
    """, key="pkg.queue.MyQueue.put", **queue)


def test_a_third_party_base_may_bring_anything(tmp_path: Path) -> None:
    both(tmp_path, """
        class Mine:
            def run(self):
                self.put(1)
    """, """
        from flask.views import MethodView

        class Mine(MethodView):
            def run(self):
                self.put(1)
    """)


def test_return_annotations_of_tree_functions(tmp_path: Path) -> None:
    both(tmp_path, """
        import asyncio

        def make() -> asyncio.Queue:
            return asyncio.Queue()

        make().put(1)
    """, """
        from pkg.store import Store

        def make() -> Store:
            return Store()

        make().put(1)
    """)


def test_literals_are_their_builtin_classes(tmp_path: Path) -> None:
    both(tmp_path, """
        [].put
        f"{1}".put
    """, """
        ([] or unknown).put
    """)


def test_a_function_is_no_attribute_of_a_known_instance(tmp_path: Path) -> None:
    both(tmp_path, """
        import asyncio

        asyncio.Queue().helper()
    """, """
        import importlib

        importlib.import_module("pkg.store").helper()
    """, key="pkg.store.helper")


# -- strings -------------------------------------------------------------------------------


def kinds(root: Path, use: str, key: str = "pkg.store.Store.put", **more: str) -> list[str]:
    return [u.split()[1] for u in uses(root, use, key, **more)]


def test_gettext_catalogs_are_not_read_other_text_is(tmp_path: Path) -> None:
    catalog = '#: pkg/store.py:7\nmsgid "helper"\nmsgstr "assistant"\n'
    root = write(tmp_path / "po", {"locale/fr/LC_MESSAGES/django.po": catalog, "locale/django.pot": catalog})
    assert plan_removal(root, ["pkg.store.helper"]).verdicts["pkg.store.helper"].verdict == "safe"
    root = write(tmp_path / "txt", {"docs/notes.txt": catalog})
    assert [str(r) for r in plan_removal(root, ["pkg.store.helper"]).verdicts["pkg.store.helper"].references] == [
        "docs/notes.txt:2 text"]


def test_a_bare_string_is_a_mention_unless_it_becomes_a_name(tmp_path: Path) -> None:
    assert kinds(tmp_path / "client", """
        def call(client):
            return client.request("put", "/items")
    """) == ["mention"]
    assert kinds(tmp_path / "word", """
        METHODS = ["put", "get"]
    """) == ["mention"]
    assert kinds(tmp_path / "getattr", """
        def f(o):
            return getattr(o, "put")
    """) == ["string"]
    assert kinds(tmp_path / "attrgetter", """
        import operator
        GET = operator.attrgetter("put")
        CALL = operator.methodcaller("put", 1)
    """) == ["string", "string"]
    assert kinds(tmp_path / "dispatch", """
        def handle():
            pass
        HANDLERS = {"put": handle}
    """) == ["string"]
    assert kinds(tmp_path / "globals", """
        FN = globals()["put"]
        GOT = vars(object).get("put")
    """) == ["string", "string"]
    # A lookup whose name can be anything makes every string of its module one that may become a name.
    assert kinds(tmp_path / "anything", """
        METHODS = ["put", "get"]

        def f(o, name):
            return getattr(o, name)
    """) == ["string"]
    # A path stays a path (import strings, settings, mock.patch targets).
    assert kinds(tmp_path / "path", """
        TARGET = "pkg.store.Store.put"
    """) == ["string"]


def test_a_string_mention_is_review_not_unsafe(tmp_path: Path) -> None:
    root = write(tmp_path, {"pkg/use.py": """
        def call(client):
            return client.request("helper", "/items")
    """})
    found = plan_removal(root, ["pkg.store.helper"]).verdicts["pkg.store.helper"]
    assert (found.verdict, [r.kind for r in found.references]) == ("review", ["mention"])


def test_minified_and_vendored_assets_are_mentions(tmp_path: Path) -> None:
    long_line = "var a=" + ",".join(f"x{i}" for i in range(300)) + ";pkg.store:helper;\n"
    root = write(tmp_path, {
        "static/app.min.js": "pkg.store:helper\n",
        "static/vendor/lib.js": "call('pkg.store:helper')\n",
        "static/bundle.js": long_line,
        "setup.cfg": "[options.entry_points]\nconsole_scripts =\n    h = pkg.store:helper\n",
    })
    found = {r.path: r.kind for r in find_references(root, "pkg.store.helper")}
    assert found == {
        "static/app.min.js": "mention", "static/vendor/lib.js": "mention", "static/bundle.js": "mention",
        "setup.cfg": "entry-point",
    }


# -- computed getattr: only the names it can produce, on what its receiver may be -----------

SHELL = """
    class Shell:
        def run(self, command):
            return getattr(self, "do_" + command)()

        def do_list(self):
            pass

        def helper(self):
            pass


    class Other:
        def do_list(self):
            pass


    def do_quit():
        pass


    class View:
        def dispatch(self, request):
            return getattr(self, request.method.lower(), None)()

        def put(self):
            pass

        def render(self):
            pass


    def lookup(obj, name):
        return 1
"""


def reasons(root: Path, key: str, source: str = SHELL) -> list[str]:
    tree = write(root, {"pkg/shell.py": source})
    return [r.kind for r in plan_removal(tree, [key]).verdicts[key].references]


def test_a_computed_getattr_reaches_only_what_it_can_produce(tmp_path: Path) -> None:
    assert "dynamic" in reasons(tmp_path / "a", "pkg.shell.Shell.do_list")
    assert "dynamic" not in reasons(tmp_path / "b", "pkg.shell.Shell.helper")  # not do_*
    assert "dynamic" not in reasons(tmp_path / "c", "pkg.shell.Other.do_list")  # not a Shell
    assert "dynamic" not in reasons(tmp_path / "d", "pkg.shell.do_quit")  # not an attribute of self
    assert "dynamic" in reasons(tmp_path / "e", "pkg.shell.View.put")  # an HTTP verb
    assert reasons(tmp_path / "f", "pkg.shell.View.render") == []  # not one
    assert reasons(tmp_path / "g", "pkg.shell.lookup") == []


def test_a_getattr_of_any_name_on_anything_keeps_the_module_rule(tmp_path: Path) -> None:
    source = SHELL.replace("return 1", "return getattr(obj, name)")
    assert "dynamic" in reasons(tmp_path / "a", "pkg.shell.do_quit", source)
    assert "dynamic" in reasons(tmp_path / "b", "pkg.shell.View.render", source)


def test_a_getattr_with_a_named_prefix_reaches_unknown_receivers_methods_in_every_module(tmp_path: Path) -> None:
    compiler = """
        def compile(node, vendor):
            return getattr(node, "as_" + vendor)()
    """
    funcs = """
        class Cast:
            def as_oracle(self):
                return "CAST"

            def render(self):
                return "x"

        class Now:
            def as_mysql(self):
                return f"{self}_now"

        def nodes():
            return [Cast(), Now()]  # they escape: an unknown receiver may be one
    """
    visitor = """
        def visit(node, kind):
            return getattr(node, f"{kind}_mysql")()
    """
    root = write(tmp_path, {"pkg/compiler.py": compiler, "pkg/funcs.py": funcs})
    plan = plan_removal(root, ["pkg.funcs.Cast.as_oracle", "pkg.funcs.Cast.render"])
    assert [str(r) for r in plan.verdicts["pkg.funcs.Cast.as_oracle"].references] == ["pkg/compiler.py:2 dynamic"]
    assert plan.verdicts["pkg.funcs.Cast.as_oracle"].verdict == "review"
    assert plan.verdicts["pkg.funcs.Cast.render"].verdict == "safe"  # no lookup can produce it
    root = write(tmp_path / "suffix", {"pkg/visitor.py": visitor, "pkg/funcs.py": funcs})
    plan = plan_removal(root, ["pkg.funcs.Now.as_mysql", "pkg.funcs.Cast.as_oracle"])
    assert [str(r) for r in plan.verdicts["pkg.funcs.Now.as_mysql"].references] == ["pkg/visitor.py:2 dynamic"]
    assert plan.verdicts["pkg.funcs.Cast.as_oracle"].verdict == "safe"


def test_an_imported_module_level_instance(tmp_path: Path) -> None:
    queues = {"pkg/queues.py": """
        import asyncio
        from pkg.store import Store

        JOBS = asyncio.Queue()
        STORE = Store()
    """}
    both(tmp_path, """
        from pkg.queues import JOBS

        JOBS.put(1)
    """, """
        from pkg.queues import STORE

        STORE.put(1)
    """, **queues)


def test_a_decorated_factory_may_return_anything(tmp_path: Path) -> None:
    both(tmp_path, """
        import asyncio
        import functools

        @functools.lru_cache(maxsize=None)
        def make() -> asyncio.Queue:
            return asyncio.Queue()

        make().put(1)
    """, """
        import asyncio

        def wrap(f):
            return f

        @wrap
        def make() -> asyncio.Queue:
            return asyncio.Queue()

        make().put(1)
    """)


def test_self_in_a_metaclass_is_any_class(tmp_path: Path) -> None:
    both(tmp_path, """
        class Plain:
            def __call__(self, *args):
                return self.put(*args)
    """, """
        class Meta(type):
            def __call__(cls, *args):
                return cls.put(*args)
    """)


def test_a_getattr_on_self_in_a_base_reaches_subclasses_in_other_modules(tmp_path: Path) -> None:
    base = """
        class Handler:
            def handle(self, event):
                return getattr(self, "on_" + event)()
    """
    leaf = """
        from pkg.base import Handler

        class Leaf(Handler):
            def on_save(self):
                pass

        class Elsewhere:
            def on_save(self):
                pass
    """
    root = write(tmp_path, {"pkg/base.py": base, "pkg/leaf.py": leaf})
    plan = plan_removal(root, ["pkg.leaf.Leaf.on_save", "pkg.leaf.Elsewhere.on_save"])
    assert [str(r) for r in plan.verdicts["pkg.leaf.Leaf.on_save"].references] == ["pkg/base.py:3 dynamic"]
    assert plan.verdicts["pkg.leaf.Elsewhere.on_save"].verdict == "safe"


def test_a_getattr_on_an_object_that_forwards_keeps_only_its_module_rule(tmp_path: Path) -> None:
    settings = """
        class Holder:
            def __getattr__(self, name):
                return 1

        def configure(options):
            holder = Holder()
            for name, value in options.items():
                setattr(holder, name, value)
    """
    root = write(tmp_path, {"pkg/settings.py": settings})
    assert plan_removal(root, ["pkg.store.helper"]).verdicts["pkg.store.helper"].verdict == "safe"
    assert plan_removal(root, ["pkg.settings.configure"]).verdicts["pkg.settings.configure"].verdict == "review"

"""Property: removing any subset of a corpus's functions, forced, leaves every file compiling."""

from __future__ import annotations

import dataclasses
import shutil
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coldmod_codemod import find_functions
from coldmod_codemod._apply import apply
from coldmod_codemod._plan import plan_removal

pytestmark = pytest.mark.timeout(120)

# Every construct the removal rules touch, in as many combinations as fit.
CORPUS = {
    "app/__init__.py": """
        from app.util import helper, twice as double
        from .models import Model

        __all__ = ["helper", "double", "Model"]
    """,
    "app/util.py": '''
        """Utilities."""
        import functools
        import sys
        from typing import overload

        __all__ = (
            "helper",  # the helper
            "twice",
        )

        # Section: helpers


        # Attached to helper.
        @functools.cache
        def helper(x):
            return twice(x) + 1


        def twice(x):
            def inner(y):
                def innermost():
                    return y
                return innermost()
            return inner(x) * 2


        @overload
        def parse(x: int) -> int: ...
        @overload
        def parse(x: str) -> str: ...
        def parse(x):
            return x


        if sys.version_info >= (3, 12):
            def compat():
                return 12
        else:
            def compat():
                return 11

        try:
            def optional():
                return helper
        except ImportError:  # pragma: no cover
            def optional():
                return None
        finally:
            def cleanup(): pass

        with open(__file__) as _f:
            def reader(): return _f


        def recursive(n):
            return recursive(n - 1) if n else 0
    ''',
    "app/models.py": '''
        from __future__ import annotations

        from app import util
        from app.util import helper as h, twice


        class Model:
            """A model."""

            name = "model"

            def __init__(self):
                self.value = h(1)

            @property
            def size(self):
                return twice(2)

            @size.setter
            def size(self, value):
                self.value = value

            @classmethod
            def build(cls):
                return cls().size

            @staticmethod
            def static():
                return util.parse(1)

            async def fetch(self):
                async def inner():
                    return self.build()
                return await inner()

            class Meta:
                def option(self):
                    return "Model.option"


        class Only:
            def lonely(self):
                pass


        def uses_everything(m: Model):
            if m.size: return util.compat()
            for _ in range(2): util.optional()
            while False: util.reader()
            return [util.recursive(i) for i in range(3)], lambda: util.cleanup()
    ''',
    "app/views.py": """
        import app.util
        from app import models
        from app.util import (
            helper,
            parse,
        )

        ROUTES = {"helper": "app.util:helper"}


        def index(request=helper):
            return parse(request), app.util.twice(1); models.Model.static()


        class View:
            handler = staticmethod(helper)

            def get(self):
                return self.handler()

            def post(self):
                return self.get()
    """,
    "scripts/run.py": """
        from app import *

        if __name__ == "__main__":
            print(helper(1), double(2))
    """,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    (root / "coldmod.rootmarker").write_text("")
    for rel, text in CORPUS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def _keys(root: Path) -> list[str]:
    return sorted({f.key for f in find_functions(root)})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_forced_removal_leaves_every_file_compiling(
    corpus: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    every = _keys(corpus)
    keys = data.draw(st.lists(st.sampled_from(every), unique=True, max_size=12), label="keys")
    plan = plan_removal(corpus, keys, force=True)
    assert plan.failures == ()
    assert sorted(plan.removed) == sorted(keys)
    new = {e.path: e.new for e in plan.edits}
    for path in CORPUS:
        source = new.get(path, (corpus / path).read_bytes())
        compile(source, path, "exec", dont_inherit=True)
    # Applied to a copy: exactly the keys asked for (and what they contain) are gone.
    copy = tmp_path_factory.mktemp("applied")
    shutil.copytree(corpus, copy, dirs_exist_ok=True)
    assert apply(dataclasses.replace(plan, root=str(copy))).ok
    gone = {k for k in every if any(k == r or k.startswith(r + ".<locals>.") for r in keys)}
    assert {f.key for f in find_functions(copy)} == set(every) - gone


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_safe_removal_changes_only_what_it_removes(corpus: Path, data: st.DataObject) -> None:
    keys = data.draw(st.lists(st.sampled_from(_keys(corpus)), unique=True, max_size=12), label="keys")
    plan = plan_removal(corpus, keys)
    for edit in plan.edits:
        new = edit.new.decode(edit.encoding)
        compile(new, edit.path, "exec", dont_inherit=True)
        assert "TODO" not in new  # without force nothing is left referring to a removed key
    for key, verdict in plan.verdicts.items():
        assert verdict.removed == verdict.safe, key

"""Inject dead code of known classes into an application: what the removal benchmark counts.

Deterministic: the same application and modules always get the same code, and
every injected function is recorded with its class, so the benchmark knows the
answer before it asks the codemod. The classes (issue 18 §6):

| class         | what is injected                                                          | right outcome           |
|---------------|---------------------------------------------------------------------------|-------------------------|
| `unique`      | a module-level function with a name found nowhere else                     | removed (`safe`)        |
| `common-name` | methods `get`/`put`/`delete`/`update`/`close`/`run` of a class in use,     | removed (`safe`)        |
|               | beside a live class whose same-named methods are called through `self`,    |                         |
|               | a constructed instance, an annotated parameter and a module-level instance |                         |
| `cluster`     | 2-3 functions calling only each other (one cluster is a cycle)             | removed, all together   |
| `test-only`   | a helper that only a new test of the app's own test folder calls           | removed with its test   |
|               |                                                                            | (`--include test-only`) |
| `dispatch`    | verb handlers of a view class reached by `getattr(self, request.method     | kept: a test sends the  |
|               | .lower())`, never requested while tracing                                  | verb                    |

The live half of each module's block runs at import (the traced server
imports it), so only the injected dead code is cold. The new test module
exercises the test-only helpers and the dispatched verbs; it is written as a
``unittest.TestCase`` so that pytest and Django's runner both collect it.

Usage: python bench/inject_dead_code.py ROOT MODULE.py [MODULE.py] --tests TESTS_DIR  (prints the manifest)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

#: The classes, in report order, and whether the right outcome is to remove the function.
CLASSES = {"unique": True, "common-name": True, "cluster": True, "test-only": True, "dispatch": False}
#: The common method names; each module's dead class takes three, in this order.
COMMON = ("get", "put", "delete", "update", "close", "run")
#: The verbs each module's view leaves to dispatch (never requested while tracing).
VERBS = (("patch", "options"), ("put", "delete"))
#: The test module written into the app's test folder.
TEST_MODULE = "test_coldmod_bench.py"
#: The module of the dispatching views, written beside the first module that gets dead code.
VIEWS_MODULE = "legacy_verb_views.py"
MARK = "# --- injected by bench/inject_dead_code.py (coldmod removal benchmark) ---"


@dataclass(frozen=True)
class Injected:
    """One injected function: its key (as coldmod names it), its class, and whether it should go."""

    key: str
    kind: str
    dead: bool
    test: str = ""  # the injected test that fails if it goes wrongly ("" when none exercises it)


def _stem(relpath: str) -> str:
    """A word for names made from a module: ``flaskr/blog.py`` -> ``blog``, ``pkg/__init__.py`` -> ``pkg``."""
    path = Path(relpath)
    word = path.parent.name if path.stem == "__init__" else path.stem
    return re.sub(r"\W", "", word).lower() or "mod"


def _block(stem: str, index: int) -> tuple[str, dict[str, tuple[str, str]]]:
    """The code appended to one module, and its injected functions by qualified name: (class, test of it)."""
    cap = stem.title().replace("_", "")
    live, dead = f"{cap}LedgerCache", f"Retired{cap}Spool"
    methods = COMMON[3 * index : 3 * index + 3]
    names = {
        "unique": f"retired_{stem}_checksum_v{index + 1}",
        "c1": f"retired_{stem}_walk_rows",
        "c2": f"retired_{stem}_walk_row",
        "c3": f"retired_{stem}_clean_cell",
        "test": f"format_{stem}_bench_receipt",
    }
    dead_methods = "\n".join(
        f"    def {m}(self, *args):\n        return ({m!r}, len(args), self.spool_label())\n" for m in methods
    )
    # The cluster: module 0's is a three-function cycle, module 1's a two-function chain.
    if index == 0:
        cluster = f"""
def {names["c1"]}(rows):
    return [{names["c2"]}(row) for row in rows]


def {names["c2"]}(row):
    if isinstance(row, (list, tuple)):
        return {names["c1"]}(row)
    return {names["c3"]}(row)


def {names["c3"]}(value):
    if isinstance(value, dict):
        return {names["c1"]}(list(value.values()))
    return str(value).strip()
"""
        cluster_keys = [names["c1"], names["c2"], names["c3"]]
    else:
        cluster = f"""
def {names["c1"]}(rows):
    return [{names["c2"]}(row) for row in rows]


def {names["c2"]}(row):
    return str(row).strip()
"""
        cluster_keys = [names["c1"], names["c2"]]
    code = f'''

{MARK}


def {names["unique"]}(payload):
    import zlib

    return zlib.crc32(repr(payload).encode()) & 0xFFFFFFFF


class {live}:
    """Live: every method runs at import, through self, a constructed instance, a parameter and a global."""

    def __init__(self):
        self._items = {{}}

    def get(self, key, default=None):
        return self._items.get(key, default)

    def put(self, key, value):
        self._items[key] = value

    def delete(self, key):
        self._items.pop(key, None)

    def update(self, **values):
        for key, value in values.items():
            self.put(key, value)

    def close(self):
        self._items.clear()

    def run(self):
        self.update(ran=self.get("ran", 0) + 1)
        return self


class {dead}:
    """In use (spool_label runs at import); its common-name methods are dead."""

    def spool_label(self):
        return "{stem}-spool"

{dead_methods}

def {stem}_ledger_warm(cache: {live}) -> int:
    cache.put("boot", 1)
    cache.update(warm=True)
    cache.delete("warm")
    return len(cache.run()._items)


_{stem.upper()}_LEDGER = {live}()
_{stem.upper()}_LEDGER.put("ledger", {stem}_ledger_warm({live}()))
_{stem.upper()}_LEDGER.get("ledger")
_{stem.upper()}_LEDGER.close()
_{stem.upper()}_SPOOL_LABEL = {dead}().spool_label()

{cluster}

def {names["test"]}(amount):
    return f"{{amount:.2f}} {stem}"


'''
    kinds = {names["unique"]: ("unique", ""), names["test"]: ("test-only", f"test_{stem}_receipt")}
    kinds |= {f"{dead}.{m}": ("common-name", "") for m in methods}
    kinds |= {name: ("cluster", "") for name in cluster_keys}
    return code, kinds


def _views(stem: str, index: int) -> tuple[str, dict[str, tuple[str, str]]]:
    """A view class whose verb handlers only dispatch reaches, for the views module; its handlers' classes.

    They live in a module of their own: a ``getattr`` in a module colours every function of it for
    today's codemod, and the other classes must be measured on their own.
    """
    cap = stem.title().replace("_", "")
    view, req = f"{cap}VerbView", f"{cap}BenchRequest"
    handlers = "\n".join(f"    def {v}(self, request):\n        return {204 + i}\n" for i, v in enumerate(VERBS[index]))
    code = f'''

class {req}:
    def __init__(self, method):
        self.method = method


class {view}:
    """A class-based view: dispatches on the request's verb."""

    def dispatch(self, request):
        handler = getattr(self, request.method.lower(), None)
        if handler is None:
            return 405
        return handler(request)

    def get(self, request):
        return 200

{handlers}

{stem.upper()}_VIEW_STATUS = {view}().dispatch({req}("GET"))
'''
    return code, {f"{view}.{v}": ("dispatch", f"test_{stem}_dispatched_verbs") for v in VERBS[index]}


def _test_module(imports: list[tuple[str, str, int]], views: str) -> str:
    """The new test module: one test per test-only helper, one per view's dispatched verbs.

    Each test imports what it uses itself, so that a removal fails only the tests it concerns.
    """
    lines = [MARK, "import unittest", "", "", "class ColdmodBenchTests(unittest.TestCase):"]
    for module, stem, index in imports:
        cap = stem.title().replace("_", "")
        lines += [
            f"    def test_{stem}_receipt(self):",
            f"        from {module} import format_{stem}_bench_receipt",
            "",
            f"        self.assertEqual(format_{stem}_bench_receipt(2), '2.00 {stem}')",
            "",
            f"    def test_{stem}_dispatched_verbs(self):",
            f"        from {views} import {cap}BenchRequest, {cap}VerbView",
            "",
        ]
        for i, verb in enumerate(VERBS[index]):
            lines.append(
                f"        self.assertEqual({cap}VerbView().dispatch({cap}BenchRequest({verb.upper()!r})), {204 + i})"
            )
        lines.append("")
    return "\n".join(lines)


def _module_name(relpath: str) -> str:
    """The import path of a module file relative to the app's root (where the tests run)."""
    parts = list(Path(relpath).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _key(relpath: str, qualname: str) -> str:
    """Coldmod's key: the module's path from the root, dotted, then the qualified name."""
    return ".".join(Path(relpath).with_suffix("").parts) + "." + qualname


def warm_key(relpath: str) -> str:
    """The key of a function that the injected block of ``relpath`` calls at import (live once imported)."""
    return _key(relpath, f"{_stem(relpath)}_ledger_warm")


def inject(root: Path, modules: list[str], tests: str) -> list[Injected]:
    """Append one block per module (at most two), write the views module and the test module; what was injected.

    The views module sits beside the first module, which imports it (so that its views dispatch at import).
    """
    assert 1 <= len(modules) <= len(VERBS), f"one or two modules, not {len(modules)}"
    views = str(Path(modules[0]).with_name(VIEWS_MODULE))
    if (root / views).exists():
        raise ValueError(f"{views} already exists")
    text = "\n".join(p.read_text(errors="replace") for p in root.rglob("*.py"))
    injected: list[Injected] = []
    stems = []
    views_code = [MARK]
    for index, relpath in enumerate(modules):
        stem = _stem(relpath)
        code, kinds = _block(stem, index)
        view_code, view_kinds = _views(stem, index)
        for qualname in [*kinds, *view_kinds]:
            name = qualname.split(".")[0]
            if re.search(rf"\b{re.escape(name)}\b", text):
                raise ValueError(f"{name} already occurs in {root}: the injected names must be new")
        if index == 0:
            package = _module_name(str(Path(views).parent / "__init__.py"))
            code += f"\n\nfrom {package} import {Path(views).stem} as _{Path(views).stem}  # noqa: E402, F401\n"
        path = root / relpath
        source = path.read_text()
        if MARK in source:
            raise ValueError(f"{relpath} already has injected code")
        path.write_text(source.rstrip("\n") + "\n" + code)
        views_code.append(view_code)
        injected += [Injected(_key(relpath, q), kind, CLASSES[kind], test) for q, (kind, test) in kinds.items()]
        injected += [Injected(_key(views, q), kind, CLASSES[kind], test) for q, (kind, test) in view_kinds.items()]
        stems.append((_module_name(relpath), stem, index))
    (root / views).write_text("\n".join(views_code))
    (root / tests / TEST_MODULE).write_text(_test_module(stems, _module_name(views)) + "\n")
    return injected


def main(argv: list[str]) -> int:
    """Inject into ROOT and print the manifest as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("modules", nargs="+", help="module files relative to ROOT (one or two)")
    parser.add_argument("--tests", required=True, help="the app's test folder relative to ROOT")
    args = parser.parse_args(argv)
    print(json.dumps([asdict(i) for i in inject(args.root, args.modules, args.tests)], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

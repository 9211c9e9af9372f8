"""On a real package from PyPI (attrs): whenever the plan says safe, the package still imports."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coldmod_codemod import find_functions
from coldmod_codemod._apply import apply
from coldmod_codemod._plan import plan_removal

pytestmark = pytest.mark.timeout(180)

PACKAGES = ("attr", "attrs")
SAMPLE = 150

# Imports both packages and prints every public name that resolves, as a
# user's `from attrs import X` would need (attrs lists a few names in __all__
# that do not resolve even unmodified, so the comparison is with before).
CHECK = """
import importlib, json
names = {}
for name in ("attr", "attrs"):
    module = importlib.import_module(name)
    public = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    names[name] = sorted(n for n in public if hasattr(module, n))
print(json.dumps(names))
"""


@pytest.fixture(scope="module")
def attrs_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("attrs")
    (root / "coldmod.rootmarker").write_text("")
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec is not None, f"{name} is a test dependency"
        assert spec.origin is not None
        shutil.copytree(Path(spec.origin).parent, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    # attr's module __getattr__ serves __version__ & co. from the distribution's metadata.
    dist = importlib.metadata.distribution("attrs")
    info = Path(str(dist.locate_file(f"attrs-{dist.version}.dist-info")))
    shutil.copytree(info, root / info.name)
    return root


def public_names(root: Path) -> dict[str, list[str]] | str:
    """The public names of attr and attrs imported from ``root``, or the error importing them."""
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(root)!r})\n{CHECK}"],
        capture_output=True, text=True, timeout=60,
    )
    return json.loads(done.stdout) if done.returncode == 0 else done.stderr


def test_safe_removals_keep_attrs_importable(attrs_copy: Path) -> None:
    before = public_names(attrs_copy)
    assert isinstance(before, dict), before
    assert len(before["attrs"]) > 20
    keys = sorted({f.key for f in find_functions(attrs_copy)})
    sample = random.Random(5).sample(keys, SAMPLE)
    safe = 0
    for key in sample:
        plan = plan_removal(attrs_copy, [key])
        assert plan.failures == (), key
        verdict = plan.verdicts[key]
        assert verdict.safe == verdict.removed, key
        if not verdict.safe:
            assert verdict.reasons, key
            continue
        safe += 1
        assert apply(plan).ok, key
        try:
            after = public_names(attrs_copy)
            assert isinstance(after, dict), f"removing {key} broke attrs:\n{plan.diff()}\n{after}"
            # A public name may go only with the function: its import and __all__ entry were removed.
            dropped = [line for line in plan.diff().splitlines() if line.startswith("-")]
            for package, names in before.items():
                assert set(after[package]) <= set(names), key
                for gone in set(names) - set(after[package]):
                    assert any(re.search(rf"\b{gone}\b", line) for line in dropped), (key, gone)
        finally:
            for edit in plan.edits:
                (attrs_copy / edit.path).write_bytes(edit.old)
    # The sample must exercise removal, not only refusals.
    assert safe >= 3, f"only {safe} of {SAMPLE} sampled functions were safe to remove"


def test_forced_removal_of_everything_in_a_module_still_compiles(attrs_copy: Path) -> None:
    keys = [f.key for f in find_functions(attrs_copy, files=["attr/_funcs.py", "attr/validators.py"])]
    plan = plan_removal(attrs_copy, keys, force=True)
    assert sorted(plan.removed) == sorted(keys)
    for edit in plan.edits:
        compile(edit.new, edit.path, "exec", dont_inherit=True)

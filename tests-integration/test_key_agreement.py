"""One key, found three ways: stdlib discovery, LibCST discovery, and the running code.

Any difference between them is a bug: the tracer reports keys the codemods
must find, and the runtime must produce keys discovery registered.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import _pytest
import pytest

from coldmod_codemod import find_functions
from coldmod_trace import MARKER, discover

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
EXPECTED = set((CORPUS / "expected_keys.txt").read_text(encoding="utf-8").split())


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    shutil.copytree(CORPUS, root)
    # Directories git does not keep but discovery must skip.
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "stale.py").write_text("def cached(): pass\n")
    (root / "venv" / "lib").mkdir(parents=True)
    (root / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    (root / "venv" / "lib" / "vendored.py").write_text("def vendored(): pass\n")
    (root / "lib" / "site-packages").mkdir(parents=True)
    (root / "lib" / "site-packages" / "dep.py").write_text("def dependency(): pass\n")
    return root


def both(root: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """Keys with their definition lines, from each discoverer over the same files."""
    stdlib = discover(root, cache=False, warn=lambda s: None)
    lines: dict[str, list[int]] = defaultdict(list)
    for f in find_functions(root, files=stdlib.files, ignore_keys=stdlib.marker.ignore_keys):
        lines[f.key].append(f.line)
    libcst = {key: tuple(sorted(v)) for key, v in lines.items()}
    return {key: s.lines for key, s in stdlib.sources.items()}, libcst


def test_corpus_keys_are_the_expected_ones_both_ways(corpus: Path) -> None:
    stdlib, libcst = both(corpus)
    assert set(stdlib) == EXPECTED
    assert set(libcst) == EXPECTED
    assert stdlib == libcst  # the same lines for every key, shared keys included
    assert stdlib["shop.models.Cart.total"] == (25, 29, 33)  # getter, setter, deleter
    assert len(stdlib["shop.models.parse"]) == 3  # two overload stubs and the implementation


def test_corpus_skips_the_file_with_a_syntax_error(corpus: Path) -> None:
    warnings: list[str] = []
    discover(corpus, cache=False, warn=lambda s: warnings.append(str(s)))
    assert warnings == ["broken.py:5: skipped: syntax error (invalid syntax)"]


def test_a_large_real_package_gives_identical_keys(tmp_path: Path) -> None:
    # pytest's own source: ~40,000 lines and ~2,000 functions, installed from PyPI.
    shutil.copytree(Path(_pytest.__file__).parent, tmp_path / "_pytest")
    (tmp_path / MARKER).write_text("")
    stdlib, libcst = both(tmp_path)
    assert len(stdlib) > 1500
    assert set(stdlib) ^ set(libcst) == set()
    assert stdlib == libcst


def test_runtime_code_objects_map_to_discovered_keys(corpus: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(HERE / "corpus_driver.py"), str(corpus)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        encoding="utf-8",
    )
    assert done.returncode == 0, done.stderr
    executed = set(done.stdout.split())
    ignored = {"shop.util.ignored_fn", "shop.models.Cart.ignored_method"}
    never_defined = {"shop.control.in_while_loop"}  # inside `while False:`
    assert ignored <= executed  # they ran; discovery leaves them out on purpose
    assert executed - ignored == EXPECTED - never_defined

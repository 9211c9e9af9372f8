"""Discovery benchmark: stdlib discoverer (cold and warm cache) vs LibCST, same tree, same run.

Trees: the source of the installed `libcst` package (a real tree of ~100k
lines) for the three-way comparison, and the first 1,000 modules of this
Python's standard library for the warm-start target.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from coldmod_codemod import find_functions
from coldmod_trace import MARKER, discover


def _copy_package(name: str, dest: Path) -> Path:
    module = __import__(name)
    shutil.copytree(Path(module.__file__).parent, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    (dest / MARKER).write_text("")
    return dest


def _stdlib_tree(dest: Path, limit: int) -> Path:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts and "__pycache__" not in p.parts
    )[:limit]
    for path in files:
        target = dest / path.relative_to(stdlib)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    (dest / MARKER).write_text("")
    return dest


def _lines(root: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in root.rglob("*.py"))


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    """Print the discovery table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one repetition, smaller trees")
    args = parser.parse_args(argv)
    repeat = 1 if args.quick else 3
    quiet = lambda skipped: None  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        big = _copy_package("libcst", Path(tmp) / "big")
        files = list(discover(big, cache=False, warn=quiet).files)
        lines = _lines(big)

        def cold() -> None:
            shutil.rmtree(big / ".coldmod-cache", ignore_errors=True)
            discover(big, warn=quiet)

        stdlib_cold = _best(lambda: discover(big, cache=False, warn=quiet), repeat)
        cold()
        stdlib_warm = _best(lambda: discover(big, warn=quiet), repeat * 3)
        libcst_cold = _best(lambda: find_functions(big, files=files), 1)
        n_keys = len(discover(big, warn=quiet).sources)

        small = _stdlib_tree(Path(tmp) / "stdlib", 300 if args.quick else 1000)
        small_files = len(discover(small, warn=quiet).files)
        small_warm = _best(lambda: discover(small, warn=quiet), repeat * 3)

    py = f"{sys.implementation.name} {sys.version.split()[0]}"
    print(f"\n## Discovery ({py}; libcst's source: {len(files)} files, {lines:,} lines, {n_keys:,} keys)\n")
    print("| discoverer | time | vs stdlib cold |")
    print("|---|---:|---:|")
    print(f"| stdlib (coldmod-trace), cold | {stdlib_cold * 1000:.0f} ms | 1.0× |")
    print(f"| stdlib (coldmod-trace), warm cache | {stdlib_warm * 1000:.0f} ms | {stdlib_warm / stdlib_cold:.2f}× |")
    print(f"| LibCST (coldmod-codemod), cold | {libcst_cold * 1000:.0f} ms | {libcst_cold / stdlib_cold:.1f}× |")
    print(
        f"\nLibCST / stdlib cold: **{libcst_cold / stdlib_cold:.1f}×** (target ≥ 20×). "
        f"Warm start on {small_files} stdlib files: **{small_warm * 1000:.0f} ms** (target < 100 ms)."
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()

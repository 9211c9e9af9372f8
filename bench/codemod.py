"""Codemod benchmark: plan_removal for 1 and 100 keys vs LibCST's full-repo metadata, same tree.

Tree: the source of the installed `libcst` package (~100k lines), copied to a
temporary root with a rootmarker (`--tree django` uses Django's instead, when
installed). Keys are drawn at random (seeded) from every function in the tree,
so most are methods with common names: the hard case for the prefilter.
The baseline is what a LibCST codemod over the tree must pay before looking at
a single reference: FullRepoManager building FullyQualifiedNameProvider
metadata for every file.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from libcst.metadata import FullRepoManager, FullyQualifiedNameProvider

from coldmod_codemod import iter_python_files
from coldmod_codemod._plan import plan_removal
from coldmod_codemod._references import Tree


def _copy_package(name: str, dest: Path, subdir: str | None = None) -> Path:
    module = __import__(name)
    source = Path(module.__file__).parent
    if subdir:
        source = source / subdir
    shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    (dest / "coldmod.rootmarker").write_text("")
    return dest


def _keys(root: Path) -> list[str]:
    files = Tree(root)
    keys = set()
    for path in files.paths:
        scanned = files.file(path)
        if scanned is not None:
            keys.update(d.key for d in scanned.bind().definitions)
    return sorted(keys)


def _time(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _full_repo_metadata(root: Path) -> float:
    paths = [str(root / p) for p in iter_python_files(root)]

    def build() -> None:
        manager = FullRepoManager(str(root), paths, {FullyQualifiedNameProvider})
        manager.resolve_cache()
        for path in paths:
            manager.get_metadata_wrapper_for_path(path).resolve(FullyQualifiedNameProvider)

    return _time(build)


def main(argv: list[str] | None = None) -> None:
    """Print the codemod table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a ~15k-line subtree, 20 keys instead of 100")
    parser.add_argument("--tree", default="libcst", choices=["libcst", "django"], help="the package to copy")
    args = parser.parse_args(argv)
    many = 20 if args.quick else 100
    rng = random.Random(20261127)
    with tempfile.TemporaryDirectory() as tmp:
        root = _copy_package(args.tree, Path(tmp), "codemod" if args.quick and args.tree == "libcst" else None)
        files = list(iter_python_files(root))
        lines = sum((root / p).read_bytes().count(b"\n") for p in files)
        keys = _keys(root)
        singles = [_time(lambda k=k: plan_removal(root, [k])) for k in rng.sample(keys, 3 if args.quick else 7)]
        sample = rng.sample(keys, many)
        plan = None

        def plan_many() -> None:
            nonlocal plan
            plan = plan_removal(root, sample)

        batch = _time(plan_many)
        assert plan is not None
        safe = sum(v.safe for v in plan.verdicts.values())
        baseline = _full_repo_metadata(root)

    py = f"{sys.implementation.name} {sys.version.split()[0]}"
    print(f"\n## Codemod ({py}; {args.tree}'s source: {len(files)} files, {lines:,} lines, {len(keys):,} keys)\n")
    print("| work | time | target | vs full-repo metadata |")
    print("|---|---:|---:|---:|")
    print(f"| plan_removal, 1 key (median of {len(singles)}) | {statistics.median(singles):.2f} s | < 3 s "
          f"| {statistics.median(singles) / baseline:.3f}× |")
    print(f"| plan_removal, 1 key (slowest of {len(singles)}) | {max(singles):.2f} s | < 3 s "
          f"| {max(singles) / baseline:.3f}× |")
    print(f"| plan_removal, {many} keys ({safe} safe, {len(plan.edits)} files edited) | {batch:.2f} s "
          f"| < {20 if many == 100 else 20 * many // 100} s | {batch / baseline:.3f}× |")
    print(f"| LibCST FullRepoManager + FullyQualifiedNameProvider, every file | {baseline:.2f} s | — | 1.0× |")


if __name__ == "__main__":
    main()

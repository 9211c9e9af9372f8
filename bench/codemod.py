"""Codemod benchmark: plan_removal over every function of Django's source, baselines side by side.

Tree: the installed `django` package (~900 files, ~9,500 functions) copied to
a temporary root with a rootmarker (`--tree libcst` uses LibCST's own source;
`--quick`: django/utils only). Rows, all in the same run:

- plan_removal for every function at once (what `coldmod rm --cold --dry-run`
  asks when everything is cold), 100 keys drawn at random (seeded), and one
  key (median of 7);
- the previous release's codemod (`--old-rev`, default the commit that first
  shipped it) planning every function, run from `git archive` in a subprocess
  (skipped with `--quick` or `--old-rev ""`; capped by `--old-timeout`);
- what a LibCST codemod must pay before looking at a single reference:
  FullRepoManager building FullyQualifiedNameProvider metadata for every file.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from libcst.metadata import FullRepoManager, FullyQualifiedNameProvider

from coldmod_codemod import iter_python_files
from coldmod_codemod._plan import plan_removal
from coldmod_codemod._references import Tree

REPO = Path(__file__).resolve().parent.parent
#: The commit that shipped the codemod library first (issue 5): the "before" of issue 10.
OLD_REV = "89a1c5d"
_OLD_SCRIPT = """
import json, sys, time
from coldmod_codemod._plan import plan_removal
keys = json.loads(open(sys.argv[2]).read())
started = time.perf_counter()
plan = plan_removal(sys.argv[1], keys)
print(json.dumps({"seconds": time.perf_counter() - started, "safe": sum(v.safe for v in plan.verdicts.values())}))
"""


def _copy_package(name: str, dest: Path, subdir: str | None = None) -> Path:
    module = __import__(name)
    source = Path(module.__file__).parent
    target = dest / name
    if subdir:
        source, target = source / subdir, target / subdir
        (dest / name).mkdir(parents=True)
        (dest / name / "__init__.py").write_text("")
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
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


#: CPU seconds of each timed call, beside its wall time: on a loaded machine the wall time says little.
CPU: dict[str, float] = {}


def _time(fn, name: str = "") -> float:  # type: ignore[no-untyped-def]
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    if name:
        CPU[name] = time.process_time() - cpu
    return time.perf_counter() - start


def _full_repo_metadata(root: Path) -> float:
    paths = [str(root / p) for p in iter_python_files(root)]

    def build() -> None:
        manager = FullRepoManager(str(root), paths, {FullyQualifiedNameProvider})
        manager.resolve_cache()
        for path in paths:
            manager.get_metadata_wrapper_for_path(path).resolve(FullyQualifiedNameProvider)

    return _time(build, "baseline")


def _old_release(root: Path, keys: list[str], rev: str, timeout: float) -> tuple[float | None, str]:
    """The previous release planning ``keys``, in a subprocess from ``git archive``: (seconds or None, note)."""
    with tempfile.TemporaryDirectory(prefix="coldmod-old-codemod-") as tmp:
        try:
            archive = subprocess.run(
                ["git", "-C", str(REPO), "archive", rev, "packages/coldmod-codemod/src"],
                capture_output=True, check=True, timeout=60,
            )
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            return None, f"could not check out {rev} ({exc})"
        keys_file = Path(tmp) / "keys.json"
        keys_file.write_text(json.dumps(keys))
        env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "packages/coldmod-codemod/src")}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            done = subprocess.run(
                [sys.executable, "-c", _OLD_SCRIPT, str(root), str(keys_file)],
                capture_output=True, text=True, env=env, timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return None, f"more than {timeout:.0f} s (stopped)"
        if done.returncode != 0:
            return None, f"failed: {done.stderr.strip().splitlines()[-1:]}"
        result = json.loads(done.stdout.strip().splitlines()[-1])
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        CPU["old"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return float(result["seconds"]), f"{result['safe']} safe"


def main(argv: list[str] | None = None) -> None:
    """Print the codemod table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="django/utils only, 20 keys instead of 100, no old run")
    parser.add_argument("--tree", default="django", choices=["django", "libcst"], help="the package to copy")
    parser.add_argument("--old-rev", default=OLD_REV, help="the previous release to compare with ('' to skip)")
    parser.add_argument("--old-timeout", type=float, default=900.0, help="seconds before the old run is stopped")
    args = parser.parse_args(argv)
    many = 20 if args.quick else 100
    rng = random.Random(20261127)
    subdir = ("utils" if args.tree == "django" else "codemod") if args.quick else None
    with tempfile.TemporaryDirectory() as tmp:
        root = _copy_package(args.tree, Path(tmp), subdir)
        files = list(iter_python_files(root))
        lines = sum((root / p).read_bytes().count(b"\n") for p in files)
        keys = _keys(root)
        plan = None

        def plan_all() -> None:
            nonlocal plan
            plan = plan_removal(root, keys)

        every = _time(plan_all, "every")
        assert plan is not None
        verdicts = Counter(v.verdict for v in plan.verdicts.values())
        edited = len(plan.edits)
        batch = _time(lambda: plan_removal(root, rng.sample(keys, many)), "batch")
        singles = [_time(lambda k=k: plan_removal(root, [k])) for k in rng.sample(keys, 3 if args.quick else 7)]
        old, old_note = (None, "skipped")
        if args.old_rev and not args.quick:
            old, old_note = _old_release(root, keys, args.old_rev, args.old_timeout)
        baseline = _full_repo_metadata(root)

    py = f"{sys.implementation.name} {sys.version.split()[0]}"
    print(f"\n## Codemod ({py}; {args.tree}{'/' + subdir if subdir else ''}'s source: {len(files)} files, "
          f"{lines:,} lines, {len(keys):,} functions)\n")  # fmt: skip
    print("| work | time | CPU | vs this release, every function | vs full-repo metadata |")
    print("|---|---:|---:|---:|---:|")

    def row(name: str, seconds: float, cpu: str = "") -> None:
        cpu_text = f"{CPU[cpu]:.2f} s" if cpu in CPU else "—"
        print(f"| {name} | {seconds:.2f} s | {cpu_text} | {seconds / every:.2f}× | {seconds / baseline:.3f}× |")

    counts = ", ".join(f"{verdicts[v]} {v}" for v in ("safe", "review", "unsafe"))
    row(f"plan_removal, every function ({counts}; {edited} files edited)", every, "every")
    row(f"plan_removal, {many} keys", batch, "batch")
    row(f"plan_removal, 1 key (median of {len(singles)})", statistics.median(singles))
    if old is not None:
        row(f"previous release ({args.old_rev}), every function ({old_note})", old, "old")
    else:
        print(f"| previous release ({args.old_rev or '—'}), every function | {old_note} | — | — | — |")
    row("LibCST FullRepoManager + FullyQualifiedNameProvider, every file", baseline, "baseline")


if __name__ == "__main__":
    main()

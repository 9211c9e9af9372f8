"""`coldmod cold` and `coldmod rm --cold --dry-run` on Django's own source as the application.

Django's installed package is copied into a temporary root with a rootmarker;
every function counts as tracked and never called (all cold), which is the
worst case for both commands. `cold` is timed in its parts that depend on the
tree (discovery with a warm cache, reconciliation, line counts) with the line
counts done two ways side by side: stdlib ``ast`` (what `cold` does) and
LibCST's ``find_functions`` per file (what it did). `rm --cold --dry-run` is
``coldmod_cli.removal.plan`` over every cold key (what the command runs after
fetching), best of one run (it is long). ``--quick``: the first 150 files.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _django_root(dest: Path, limit: int | None) -> Path:
    import django

    source = Path(django.__file__).parent
    root = dest / "app"
    shutil.copytree(source, root / "django", ignore=shutil.ignore_patterns("__pycache__"))
    if limit is not None:
        files = sorted(root.rglob("*.py"))
        for path in files[limit:]:
            path.unlink()
    (root / "coldmod.rootmarker").write_text('[app]\nname = "django-bench"\n')
    return root


def _old_line_counts(root: Path, rows, cold: set[str]) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """The previous way: LibCST parses every file for its functions' extents."""
    from coldmod_cli.heatmap import _covered
    from coldmod_codemod import find_functions

    cold_lines = total_lines = 0
    for relpath in sorted({row.path for row in rows}):
        found = find_functions(root, files=[relpath])
        total_lines += _covered([(f.start_line, f.end_line, f.line) for f in found])
        cold_lines += _covered([(f.start_line, f.end_line, f.line) for f in found if f.key in cold])
    return cold_lines, total_lines


def main(argv: list[str]) -> None:
    """Print the Markdown table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    from coldmod_cli import heatmap, local, removal

    with tempfile.TemporaryDirectory(prefix="coldmod-bench-removal-") as tmp:
        root = _django_root(Path(tmp), 150 if args.quick else None)
        local.checkout(root)  # fills the discovery cache, as a developer's checkout has it
        started = time.perf_counter()
        found = local.checkout(root)
        rows = [
            heatmap.Row(s.key, s.path, s.lines[0], tracked=True, tracked_since_ms=1, lines=tuple(s.lines))
            for s in found.sources.values()
        ]
        cold = {row.key for row in heatmap.cold(rows, now=heatmap.now_ms())}
        new = heatmap.line_counts(str(root), rows, cold, progress=lambda files: files)
        cold_s = time.perf_counter() - started
        started = time.perf_counter()
        old = _old_line_counts(root, rows, cold)
        old_s = time.perf_counter() - started
        started = time.perf_counter()
        plan = removal.plan(found, sorted(cold))
        plan_s = time.perf_counter() - started
    print(f"\n**Removal commands** (Django {_django_version()}'s source as the app: {len(found.files)} files, "
          f"{len(found.sources)} functions, all cold; Python {sys.version.split()[0]})\n")  # fmt: skip
    print("| work | time | ratio |")
    print("|---|---:|---:|")
    print(f"| `coldmod cold` tree work (warm discovery, stdlib ast line counts) | {cold_s:.2f} s | 1.0× |")
    print(f"| line counts with LibCST `find_functions` (before) | {old_s:.2f} s | {old_s / cold_s:.1f}× |")
    print(f"| `rm --cold --dry-run`: plan every cold key ({len(plan.removed)} safe) | {plan_s:.1f} s | "
          f"{plan_s / cold_s:.1f}× |")  # fmt: skip
    assert new[1] == old[1], f"line counts disagree: ast {new} vs LibCST {old}"


def _django_version() -> str:
    import django

    return django.get_version()


if __name__ == "__main__":
    main(sys.argv[1:])

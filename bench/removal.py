"""`coldmod cold` and `coldmod rm --cold --dry-run` on Django's own source as the application.

Django's installed package is copied into a temporary root with a rootmarker;
every function counts as tracked and never called (all cold), which is the
worst case for both commands. `cold` is timed in what it does after Fetch (discovery,
reconciliation, line counts), first with nothing cached and again, with the
line counts of the previous release side by side (LibCST's ``find_functions``
per file). `rm --cold --dry-run` is
``coldmod_cli.removal.plan`` over every cold key (what the command runs after
fetching), best of one run (it is long), then again with the wider ``--include`` levels a
plain dry run counts on the same index (issue 18). ``--quick``: django/utils only.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _django_root(dest: Path, quick: bool) -> Path:
    """Django's installed package (``--quick``: only django/utils) under a fresh rootmarker."""
    import django

    source = Path(django.__file__).parent
    root = dest / "app"
    if quick:
        shutil.copytree(source / "utils", root / "django" / "utils", ignore=shutil.ignore_patterns("__pycache__"))
        (root / "django" / "__init__.py").write_text("")
    else:
        shutil.copytree(source, root / "django", ignore=shutil.ignore_patterns("__pycache__"))
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


def _cold_tree_work(root: Path) -> tuple[float, tuple[int, int], int, int]:
    """What `coldmod cold` does after Fetch: discovery, reconcile, line counts; (seconds, counts, ...)."""
    from coldmod_cli import heatmap, local
    from coldmod_proto.v1 import coldmod_pb2 as pb

    started = time.perf_counter()
    found = local.checkout(root)
    # Every function tracked for a week and never called: all cold, the worst case.
    week_ago = heatmap.now_ms() - 7 * 86400 * 1000
    response = pb.FetchResponse(entries=[pb.HeatmapEntry(key=k, tracked_since_ms=week_ago) for k in found.sources])
    result = heatmap.reconcile(response, found)
    rows = heatmap.cold(result.rows, now=heatmap.now_ms())
    tracked = [row for row in result.rows if row.tracked]
    counts = heatmap.line_counts(str(root), tracked, {row.key for row in rows}, progress=lambda files: files)
    return time.perf_counter() - started, counts, len(found.files), len(found.sources)


def main(argv: list[str]) -> None:
    """Print the Markdown table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    from coldmod_cli import heatmap, local, removal
    from coldmod_proto.v1 import coldmod_pb2  # noqa: F401 - imported before the clock starts, as in the CLI

    with tempfile.TemporaryDirectory(prefix="coldmod-bench-removal-") as tmp:
        root = _django_root(Path(tmp), args.quick)
        first_s, counts, files, functions = _cold_tree_work(root)
        warm_s, warm_counts, _, _ = _cold_tree_work(root)
        assert warm_counts == counts
        found = local.checkout(root)
        rows = [
            heatmap.Row(s.key, s.path, s.lines[0], tracked=True, lines=tuple(s.lines)) for s in found.sources.values()
        ]
        started = time.perf_counter()
        old = _old_line_counts(root, rows, set(found.sources))
        old_s = time.perf_counter() - started
        assert old[1] == counts[1], f"line counts disagree: ast {counts} vs LibCST {old}"
        started = time.perf_counter()
        plan = removal.plan(found, sorted(found.sources))
        plan_s = time.perf_counter() - started
        started = time.perf_counter()
        wider = removal.wider_levels(removal.INCLUDE["safe"])
        levels = removal.plan(found, sorted(found.sources), levels=wider)  # what a plain dry run plans
        levels_s = time.perf_counter() - started
        assert levels.removed == plan.removed
    print(f"\n**Removal commands** (Django {_django_version()}'s source as the app: {files} files, "
          f"{functions} functions, all cold; Python {sys.version.split()[0]})\n")  # fmt: skip
    print("| work | time | ratio |")
    print("|---|---:|---:|")
    print(f"| `coldmod cold` after Fetch, first run (nothing cached: one parse per file) | {first_s:.2f} s | 1.0× |")
    print(f"| `coldmod cold`, again (functions and extents cached) | {warm_s:.2f} s | {warm_s / first_s:.2f}× |")
    print(f"| line counts with LibCST `find_functions` (before) | {old_s:.2f} s | {old_s / first_s:.1f}× |")
    print(f"| `rm --cold --dry-run`: plan every cold function ({len(plan.removed)} safe) | {plan_s:.1f} s | "
          f"{plan_s / first_s:.1f}× |")  # fmt: skip
    more = ", ".join(f"{w} {len(levels.levels[w])}" for w in wider)
    print(f"| the same, with the wider `--include` levels a dry run also counts ({more}) | {levels_s:.1f} s | "
          f"{levels_s / first_s:.1f}× |")  # fmt: skip


def _django_version() -> str:
    import django

    return django.get_version()


if __name__ == "__main__":
    main(sys.argv[1:])

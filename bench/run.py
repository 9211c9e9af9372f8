"""`nox -s bench`: every benchmark, baselines side by side in the same run.

Usage: python bench/run.py [--quick] [--only discovery,tracer,server,codemod,removal,web,removal-corpus]
Each part prints a Markdown table; the README shows the latest ones (removal-corpus's:
docs/benchmarks-removal.md).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

# The tracer part runs first: its children inherit the peak RSS of the process
# that starts them (Linux keeps it across fork and exec), so it must start
# them before the other parts have grown this process.
# removal-corpus (bench/removal_corpus.py) runs last: real apps, real servers, their test suites (~20 min).
PARTS = ["tracer", "discovery", "server", "codemod", "removal", "web", "removal-corpus"]


def main() -> int:
    """Run the selected parts in order; a part that fails is reported and the rest still run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test of the benchmarks)")
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts: " + ", ".join(PARTS))
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    failed = []
    for part in [p.strip() for p in args.only.split(",") if p.strip()]:
        if part not in PARTS:
            parser.error(f"unknown part {part!r}; choose from {', '.join(PARTS)}")
        started = time.perf_counter()
        try:
            importlib.import_module(part.replace("-", "_")).main(["--quick"] if args.quick else [])
        except Exception as exc:  # report and go on: one broken part must not hide the others
            failed.append(part)
            print(f"\n{part}: FAILED ({type(exc).__name__}: {exc})", file=sys.stderr)
        print(f"\n({part}: {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Fail unless the three distributions carry one version and pin each other to it."""

from __future__ import annotations

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
VERSION_FILES = {
    "coldmod-trace": "packages/coldmod-trace/src/coldmod_trace/_version.py",
    "coldmod-codemod": "packages/coldmod-codemod/src/coldmod_codemod/_version.py",
    "coldmod-cli": "packages/coldmod-cli/src/coldmod_cli/_version.py",
}


def main() -> int:
    """Compare every _version.py and the CLI's pins; print what differs."""
    versions = {}
    for name, rel in VERSION_FILES.items():
        match = re.search(r'__version__ = "([^"]+)"', (ROOT / rel).read_text())
        if not match:
            print(f"{rel}: no __version__ = \"X.Y.Z\" line", file=sys.stderr)
            return 1
        versions[name] = match.group(1)
    problems = []
    if len(set(versions.values())) != 1:
        problems.append(f"versions differ: {versions}")
    cli = (ROOT / "packages/coldmod-cli/pyproject.toml").read_text()
    for dep in ("coldmod-trace", "coldmod-codemod"):
        pin = re.search(rf'"{dep}==([^"]+)"', cli)
        if not pin or pin.group(1) != versions["coldmod-cli"]:
            problems.append(f"coldmod-cli must pin {dep}=={versions['coldmod-cli']}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

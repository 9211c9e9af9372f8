"""Regenerate docs/heatmap.png from the demo: `nox -s screenshot` (or run with a Python that has coldmod-cli).

Runs `coldmod demo --keep`, opens its web UI in Debian's Chromium through
Playwright (never a downloaded browser), waits for the heatmap's rows, saves
one screen of it, then stops the demo with SIGTERM (which removes everything it
started).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def main() -> int:
    """Take the screenshot; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "heatmap.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")}
    with tempfile.TemporaryDirectory(prefix="coldmod-screenshot-") as tmp:
        env["TMPDIR"] = tmp
        demo = subprocess.Popen(
            [sys.executable, "-m", "coldmod_cli", "demo", "--keep"],
            cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        try:
            url = _web_url(demo)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": args.width, "height": args.height})
                page.goto(url)
                page.wait_for_selector("tr[data-key]", timeout=20_000)
                page.wait_for_timeout(1000)  # the picture is drawn after the rows arrive
                page.screenshot(path=str(args.out))
                browser.close()
        finally:
            demo.send_signal(signal.SIGTERM)
            demo.wait(30)
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


def _web_url(demo: subprocess.Popen[str]) -> str:
    """The web UI address the demo prints in its next steps."""
    found: list[str] = []

    def read() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            match = re.match(r"web UI: (http://\S+)", line)
            if match:
                found.append(match.group(1))

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 120
    while not found:
        if demo.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the demo did not print its web UI address")
        time.sleep(0.2)
    return found[0]


if __name__ == "__main__":
    sys.exit(main())

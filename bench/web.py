"""Web UI benchmark: the page at 1,000, 10,000 and 100,000 functions in Debian's Chromium.

A real collector process (`python -m coldmod_cli.server`, SQLite file, loopback,
insecure mode: TLS adds nothing that grows with the app) holds one app per size,
registered and reported over gRPC like tracers do. Headless Chromium opens the
page for each and measures, side by side, with the 1,000-function app as the
baseline of the ratios:

- first paint: navigation until the counts and the table are drawn ("table"),
  and until the treemap is too ("all"); cold (the collector encodes the
  heatmap), then warm (a reload: the encoded heatmap is reused until the app
  changes);
- filter: typing a filter until the table and the treemap show its matches;
- scroll: one jump of the table to its middle until the rows there are drawn;
- what stays bounded: page height, table rows in the DOM, heatmap JSON size.

`python bench/web.py --quick` skips the 100,000-function size.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 860}
SIZES = [1_000, 10_000, 100_000]
ROUNDS = 3


def app_of(size: int) -> tuple[list[tuple[str, str, int]], dict[str, int]]:
    """(key, path, line) of ``size`` functions, 50 per module and 40 modules per package; 60% called."""
    sources, calls = [], {}
    for i in range(size):
        package, module, function = i // 2000, (i // 50) % 40, i % 50
        key = f"pkg{package:02d}.mod{module:02d}.func{function:02d}"
        sources.append((key, f"pkg{package:02d}/mod{module:02d}.py", 1 + function * (3 + function % 11)))
        if i % 5 >= 2:
            calls[key] = 1 + (i * 7919) % 50_000
    return sources, calls


@contextlib.contextmanager
def collector(directory: Path) -> Iterator[tuple[str, int]]:
    """A collector subprocess: (gRPC address, web port); stopped with SIGTERM."""
    from coldmod_cli.server.process import collector_command

    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")} | {"COLDMOD_INSECURE": "on"}
    process = subprocess.Popen(
        collector_command(f"sqlite:///{directory / 'coldmod.db'}"),
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    assert process.stderr is not None
    grpc_address = web_port = None
    deadline = time.monotonic() + 60
    while web_port is None and time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        if found := re.search(r"gRPC listening on (\S+)", line):
            grpc_address = found.group(1)
        if found := re.search(r"web UI on 127\.0\.0\.1:(\d+)", line):
            web_port = int(found.group(1))
    if grpc_address is None or web_port is None:
        process.kill()
        raise RuntimeError("the collector did not start")
    threading.Thread(target=process.stderr.read, daemon=True).start()
    try:
        yield grpc_address, web_port
    finally:
        process.terminate()
        process.wait(30)


def load(grpc_address: str, app: str, size: int) -> None:
    """Register ``size`` functions as ``app`` and report their calls, as a tracer does."""
    import grpc

    from coldmod_proto.v1 import coldmod_pb2 as pb
    from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc

    sources, calls = app_of(size)
    instance = uuid.uuid4().hex
    options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    with grpc.insecure_channel(grpc_address, options=options) as channel:
        stub = pb_grpc.TracingStub(channel)
        stub.Register(
            pb.RegisterRequest(
                app=app,
                process=pb.ProcessIdentity(instance_id=instance, pid=os.getpid(), mode="sampled"),
                sources=[pb.TraceSource(key=k, path=p, lines=[n]) for k, p, n in sources],
            ),
            timeout=120,
        )
        items = list(calls.items())
        now = int(time.time() * 1000)
        for sequence, start in enumerate(range(0, len(items), 20_000), 1):
            stub.Report(
                pb.ReportRequest(
                    app=app, instance_id=instance, sequence=sequence, window_start_ms=now - 1000, window_end_ms=now,
                    deltas=[pb.KeyDelta(key=k, calls=n) for k, n in items[start:start + 20_000]],
                ),
                timeout=120,
            )


def measure(browser: object, url: str, app: str, size: int) -> dict[str, float]:
    """One round of every figure for one app (a fresh page)."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[attr-defined]
    page = context.new_page()
    table = f"() => document.body.dataset.painted === '{size}'"
    picture = f"() => document.querySelector('#treemap-canvas').dataset.cells === '{size}'"
    figures: dict[str, float] = {}
    for name in ("cold", "warm"):
        started = time.perf_counter()
        if name == "cold":
            page.goto(f"{url}/#app={app}")
        else:
            page.reload()
        page.wait_for_function(table, timeout=120_000, polling="raf")
        figures[f"{name}_table_ms"] = (time.perf_counter() - started) * 1000
        page.wait_for_function(picture, timeout=120_000, polling="raf")
        figures[f"{name}_paint_ms"] = (time.perf_counter() - started) * 1000
    text = "mod0"  # modules 00 to 09 of every package: a quarter of the functions
    expected = sum(1 for i in range(size) if (i // 50) % 40 < 10)
    started = time.perf_counter()
    page.fill("#search", text)
    page.wait_for_function(f"() => document.querySelector('#rows').dataset.rows === '{expected}'", timeout=60_000)
    page.wait_for_function(f"() => document.querySelector('#treemap-canvas').dataset.cells === '{expected}'")
    figures["filter_ms"] = (time.perf_counter() - started) * 1000
    page.fill("#search", "")
    page.wait_for_function(f"() => document.querySelector('#rows').dataset.rows === '{size}'", timeout=60_000)
    figures["scroll_ms"] = page.evaluate(
        """async () => {
            const box = document.querySelector("#table-scroll");
            const t0 = performance.now();
            box.scrollTop = box.scrollHeight / 2;
            box.dispatchEvent(new Event("scroll"));
            await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
            return performance.now() - t0;
        }"""
    )
    bounded = page.evaluate(
        """async () => ({
            height: document.documentElement.scrollHeight,
            rows: document.querySelectorAll("#rows tbody tr[data-key]").length,
            bytes: (await (await fetch("/api/heatmap?app=" + coldmod.state.app)).arrayBuffer()).byteLength,
        })"""
    )
    figures.update(page_px=bounded["height"], dom_rows=bounded["rows"], json_mb=bounded["bytes"] / 1e6)
    context.close()
    return figures


def main(argv: list[str] | None = None) -> None:
    """Run every size, best of ROUNDS, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000 functions, one round")
    args = parser.parse_args(argv)
    sizes = SIZES[:2] if args.quick else SIZES
    rounds = 1 if args.quick else ROUNDS
    from playwright.sync_api import sync_playwright

    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="coldmod-bench-web-") as directory, collector(Path(directory)) as (
        grpc_address, port,
    ), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        url = f"http://127.0.0.1:{port}"
        for size in sizes:
            load(grpc_address, f"app{size}", size)
        for _ in range(rounds):  # interleaved: every size sees the same machine
            for size in sizes:
                # A change to the app drops the encoded copy, so each round's first paint is cold.
                load(grpc_address, f"app{size}", size)
                figures = measure(browser, url, f"app{size}", size)
                best = results.setdefault(size, figures)
                for name, value in figures.items():
                    best[name] = min(best[name], value)
        browser.close()
    base = results[sizes[0]]
    print(f"\n**Web UI** (Chromium {CHROMIUM}, viewport {VIEWPORT['width']}×{VIEWPORT['height']}, best of {rounds};"
          " ratios against 1,000 functions)\n")
    print(
        "| functions | first paint, cold: table / all | warm: table / all | filter | scroll frame "
        "| page height | rows in DOM | heatmap JSON |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        r = results[size]

        def cell(name: str, r: dict[str, float] = r) -> str:
            ratio = r[name] / base[name] if base[name] else 0.0
            return f"{r[name]:,.0f} ms ({ratio:.1f}×)"

        print(
            f"| {size:,} | {cell('cold_table_ms')} / {cell('cold_paint_ms')} | {cell('warm_table_ms')} / "
            f"{cell('warm_paint_ms')} | {cell('filter_ms')} | {cell('scroll_ms')} | {r['page_px']:,.0f} px | "
            f"{r['dom_rows']:.0f} | {r['json_mb']:.1f} MB |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])

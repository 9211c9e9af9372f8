"""`coldmod report --html DIR`: the web UI as static files, opened from file:// in Chromium with the network cut."""

from __future__ import annotations

import json
import os

import pytest
from conftest import COLD, HOT, traced
from playwright.sync_api import Browser, expect
from web_fixtures import browser  # noqa: F401 - a fixture, found by name

pytestmark = pytest.mark.timeout(180)


def open_offline(browser, index, **context):
    """The report's page from file://, every request that is not a local file refused; returns (page, asked, errors)."""
    ctx = browser.new_context(**context)
    asked: list[str] = []
    errors: list[str] = []

    def route(request_route):
        asked.append(request_route.request.url)
        if request_route.request.url.startswith("file://"):
            request_route.continue_()
        else:
            request_route.abort()

    ctx.route("**/*", route)
    page = ctx.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(index.as_uri())
    return page, asked, errors


@pytest.fixture
def report_dir(cli, shop, insecure_env, tmp_path):
    """A report written from a snapshot, after the collector is gone and the credentials unset."""
    traced(insecure_env.address, shop, HOT)
    snap = tmp_path / "heatmap.json"
    assert cli("fetch", "--save", str(snap)).code == 0
    insecure_env.stop()
    for name in list(os.environ):
        if name.startswith("COLDMOD_"):
            os.environ.pop(name)  # monkeypatch (insecure_env) restores them
    folder = tmp_path / "report"
    result = cli("report", "--html", str(folder), "--from", str(snap))
    assert result.code == 0, result.err
    assert f"to {folder / 'index.html'}" in result.err
    return folder


def test_the_report_folder_holds_the_uis_own_files(report_dir):
    from importlib import resources

    static = resources.files("coldmod_cli.web") / "static"
    assert sorted(p.name for p in report_dir.iterdir()) == ["app.js", "data.js", "index.html", "style.css"]
    assert (report_dir / "app.js").read_bytes() == (static / "app.js").read_bytes()  # one UI, not a copy to maintain
    assert (report_dir / "style.css").read_bytes() == (static / "style.css").read_bytes()
    html = (report_dir / "index.html").read_text()
    assert "/static/" not in html
    assert html.index('src="data.js"') < html.index('src="app.js"')
    data = (report_dir / "data.js").read_text()
    assert data.startswith("window.COLDMOD_REPORT = ")
    report = json.loads(data[len("window.COLDMOD_REPORT = "):].rstrip().rstrip(";"))
    assert report["heatmap"]["count"] == 20
    assert report["apps"]["apps"][0] == report["apps"]["apps"][0] | {"app": "demo-shop", "keys": 20, "cold_keys": 5}


def test_the_report_opens_from_file_with_no_network(report_dir, browser: Browser):
    page, asked, errors = open_offline(browser, report_dir / "index.html", viewport={"width": 1280, "height": 860})
    expect(page.locator("#rows tbody tr[data-key]")).to_have_count(20)
    expect(page.locator('[data-count="cold"] b')).to_have_text(str(len(COLD)))
    expect(page.locator("#live")).to_contain_text("report of 20")
    expect(page.locator("#connect-new")).to_be_hidden()
    # The treemap is drawn: its canvas has pixels.
    painted = page.evaluate(
        """() => { const c = document.getElementById("treemap-canvas");
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"""
    )
    assert painted > 1000
    # The table's filter and a function's details.
    page.click('[data-filter="cold"]')
    expect(page.locator("#rows tbody tr[data-key]")).to_have_count(len(COLD))
    page.locator('tr[data-key="shop.views.coupon"]').click()
    expect(page.locator("#details")).to_be_visible()
    expect(page.locator("#details-key")).to_have_text("shop.views.coupon")
    expect(page.locator("#details")).to_contain_text("shop/views.py:")
    expect(page.locator("#details")).to_contain_text("never")
    expect(page.locator("#details-spark")).to_be_hidden()  # data.js has no per-day history, and nothing is fetched
    assert all(url.startswith("file://") for url in asked), asked
    assert errors == []


def test_report_needs_a_folder_and_refuses_a_file(cli, shop, tmp_path):
    assert cli("report").code == 2
    (tmp_path / "f").write_text("")
    snap = tmp_path / "s.json"
    snap.write_text('{"format": "coldmod-heatmap", "version": 1, "app": "demo-shop", "fetch": {}}')
    refused = cli("report", "--html", str(tmp_path / "f"), "--from", str(snap))
    assert refused.code == 1
    assert "is a file; name a directory" in refused.err


def test_report_from_the_collector(cli, shop, insecure_env, tmp_path):
    traced(insecure_env.address, shop, HOT)
    result = cli("report", "--html", str(tmp_path / "r"))
    assert result.code == 0, result.err
    data = (tmp_path / "r" / "data.js").read_text()
    assert '"count":20' in data

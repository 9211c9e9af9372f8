"""The web UI in Debian's Chromium: auth, the treemap and the table, live updates, filters, a phone, text only."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from web_fixtures import (  # noqa: F401 - `browser` is a fixture: pytest finds it by name
    ARTIFACTS,
    CALLS,
    Stack,
    browser,
    checkout_sources,
    running_stack,
    wait_for,
    write_checkout,
)

pytestmark = pytest.mark.timeout(120)

COLD = {"shop.cart.clear", "shop.cart.total", "shop.views.legacy"}
WARM = {"shop.cart.summary", "shop.views.receipt"}
HOT = {"shop.cart.add", "shop.views.index"}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """An insecure collector with the checkout's app registered and one flush reported."""
    root = write_checkout(tmp_path / "checkout")
    with running_stack(tmp_path) as running:
        running.register("webshop", checkout_sources(root))
        running.report("webshop", CALLS, estimated=frozenset({"shop.cart.add"}))
        yield running


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page that fails the test on any JavaScript error or dialog."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    yield page
    context.close()
    assert problems == []


ROWS = "#rows tbody tr[data-key]"
CANVAS = "#treemap-canvas"


def expect_keys(page: Page, expected: set[str]) -> None:
    """Wait until the table shows exactly ``expected`` (rendering is asynchronous)."""
    expect(page.locator(ROWS)).to_have_count(len(expected))
    for key in expected:
        expect(page.locator(f'#rows tbody tr[data-key="{key}"]')).to_have_count(1)


def test_page_and_api_need_basic_auth_over_https(tmp_path: Path, browser: Browser) -> None:
    import trustme

    api_key = "the-api-key-for-tests"
    with running_stack(tmp_path, api_key=api_key, tls=trustme.CA()) as secured:
        assert secured.url.startswith("https://")
        status, headers, _ = secured.get("/")
        assert status == 401
        assert headers["WWW-Authenticate"].startswith('Basic realm="coldmod"')
        assert secured.get("/api/apps")[0] == 401
        assert secured.get("/api/events")[0] == 401
        assert secured.get("/", auth=("coldmod", "wrong"))[0] == 401
        assert secured.get("/", auth=("admin", api_key))[0] == 401
        status, headers, body = secured.get("/", auth=("coldmod", api_key))
        assert status == 200
        assert b"<title>Coldmod</title>" in body
        assert "script-src 'self'" in headers["Content-Security-Policy"]

        wrong = browser.new_context(
            ignore_https_errors=True, http_credentials={"username": "coldmod", "password": "wrong"}
        )
        response = wrong.new_page().goto(secured.url + "/")
        assert response is not None
        assert response.status == 401
        wrong.close()

        context = browser.new_context(
            ignore_https_errors=True, http_credentials={"username": "coldmod", "password": api_key}
        )
        page = context.new_page()
        assert page.goto(secured.url + "/").status == 200
        expect(page.locator("#empty")).to_contain_text("No heatmaps yet")
        expect(page.locator("#live")).to_have_text("live")  # the event stream passed auth too
        context.close()


def test_rows_treemap_counts_legend_and_a_flush_appear_live(stack: Stack, page: Page) -> None:
    page.goto(stack.url + "/")
    expect_keys(page, COLD | WARM | HOT)
    # The picture: one cell per function on a canvas, cold ones counted apart.
    expect(page.locator(CANVAS)).to_have_attribute("data-cells", "7")
    expect(page.locator(CANVAS)).to_have_attribute("data-cold", "3")
    expect(page.locator('[data-count="cold"] b')).to_have_text("3")
    expect(page.locator('[data-count="hot"] b')).to_have_text("2")
    # The thresholds are stated with this heatmap's numbers: hot is the top third of log(1 … 1500).
    expect(page.locator("#legend-thresholds")).to_contain_text("Warm: 1–130 calls; hot: 131 calls or more")
    expect(page.locator("#legend-thresholds")).to_contain_text("1,500 calls")
    add = page.locator('tr[data-key="shop.cart.add"]')
    expect(add.locator("td").nth(2)).to_have_text("~1.5k")  # estimated, compact
    expect(page.locator('tr[data-key="shop.views.legacy"] td').nth(4)).to_have_text("never")
    expect(page.locator("#live")).to_have_text("live")

    page.evaluate("window.notReloaded = true")
    flushed = time.monotonic()
    stack.report("webshop", {"shop.cart.clear": 7})
    clear = page.locator('tr[data-key="shop.cart.clear"]')
    expect(clear.locator("td").nth(2)).to_have_text("7", timeout=2000)
    elapsed = time.monotonic() - flushed
    assert elapsed < 2.0
    expect(clear.locator(".state")).to_have_text("warm")
    expect(page.locator(CANVAS)).to_have_attribute("data-cold", "2")
    assert page.evaluate("window.notReloaded") is True
    print(f"flush to screen: {elapsed * 1000:.0f} ms")


def test_a_lower_bound_count_shows_as_at_least(stack: Stack, page: Page) -> None:
    stack.report("webshop", {"shop.cart.total": 40}, lower_bound=frozenset({"shop.cart.total"}))
    page.goto(stack.url + "/")
    total = page.locator('tr[data-key="shop.cart.total"] td').nth(2)
    expect(total).to_have_text("≥ 40")
    expect(total).to_have_attribute("title", re.compile("at least 40 calls"))


def test_clicking_a_cell_goes_to_its_row_and_the_filter_narrows_the_picture(stack: Stack, page: Page) -> None:
    page.goto(stack.url + "/")
    expect(page.locator(CANVAS)).to_have_attribute("data-cells", "7")
    where = page.evaluate("coldmod.cellCenter('shop.views.legacy')")
    assert where["w"] >= 10, where
    assert where["h"] >= 10, where
    page.mouse.click(where["x"], where["y"])
    row = page.locator('tr[data-key="shop.views.legacy"]')
    expect(row).to_have_class(re.compile("selected"))
    expect(row).to_be_in_viewport()

    page.fill("#search", "views")
    expect(page.locator(CANVAS)).to_have_attribute("data-cells", "3")
    page.click('[data-filter="cold"]')
    expect(page.locator(CANVAS)).to_have_attribute("data-cells", "1")
    expect(page.locator(CANVAS)).to_have_attribute("data-cold", "1")
    page.fill("#search", "")
    page.click('[data-filter="all"]')
    expect(page.locator(CANVAS)).to_have_attribute("data-cells", "7")


def test_a_phone_390_px_wide_has_no_overflow(stack: Stack, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(stack.url + "/")
    expect(page.locator(ROWS)).to_have_count(7)
    sizes = page.evaluate(
        """() => ({
            page: document.documentElement.scrollWidth,
            header: document.querySelector("header").getBoundingClientRect().width,
            table: document.querySelector("#rows").scrollWidth,
            box: document.querySelector("#table-scroll").clientWidth,
            canvas: document.querySelector("#treemap-canvas").getBoundingClientRect().width,
            keyVisible: getComputedStyle(document.querySelector("td.key")).display !== "none",
            keyWidth: document.querySelector("td.key").getBoundingClientRect().width,
            whereHidden: getComputedStyle(document.querySelector("td.where")).display === "none",
        })"""
    )
    context.close()
    assert sizes["page"] <= 390, sizes
    assert sizes["header"] == 390, sizes
    assert sizes["table"] <= sizes["box"], sizes
    assert 300 < sizes["canvas"] <= 390, sizes
    assert sizes["keyVisible"], sizes
    assert sizes["keyWidth"] >= 0.45 * 390, sizes  # hidden columns gave their width to the function's name
    assert sizes["whereHidden"], sizes


def test_filters_sorting_and_the_app_picker(stack: Stack, page: Page) -> None:
    stack.register("other", [("other.only", "other.py", 1)])
    page.goto(stack.url + "/#app=webshop")
    expect(page.locator(ROWS)).to_have_count(7)
    for name, expected in (("cold", COLD), ("warm", WARM), ("hot", HOT), ("all", COLD | WARM | HOT)):
        page.click(f'[data-filter="{name}"]')
        expect_keys(page, expected)
    page.fill("#search", "views")
    expect_keys(page, {"shop.views.index", "shop.views.legacy", "shop.views.receipt"})
    page.click('[data-filter="cold"]')
    expect(page.locator(ROWS)).to_have_count(1)
    page.fill("#search", "")
    page.click('[data-filter="all"]')

    page.click('th[data-sort="calls"]')  # already by calls ascending: now descending
    expect(page.locator(ROWS).first).to_have_attribute("data-key", "shop.cart.add")
    page.click('th[data-sort="key"]')
    expect(page.locator(ROWS).last).to_have_attribute("data-key", "shop.views.receipt")
    keys = page.locator(ROWS).evaluate_all("rows => rows.map(r => r.dataset.key)")
    assert keys == sorted(keys)

    page.select_option("#app", "other")
    expect_keys(page, {"other.only"})
    assert "app=other" in page.url


def test_keys_from_the_network_render_as_text(stack: Stack, page: Page) -> None:
    script = "shop.<script>alert(1)</script>"
    image = "shop.<img src=x onerror=alert(2)>"
    stack.register("<b>xss</b>", [(script, "<i>x</i>.py", 1), (image, "y.py", 2)])
    stack.report("<b>xss</b>", {image: 5})
    page.goto(stack.url + "/#app=" + "%3Cb%3Exss%3C%2Fb%3E")
    expect(page.locator(ROWS)).to_have_count(2)
    expect(page.get_by_text(script, exact=True)).to_be_visible()
    expect(page.get_by_text(image, exact=True)).to_be_visible()
    expect(page.get_by_text("<i>x</i>.py:1", exact=True)).to_be_visible()
    expect(page.locator("#app option:checked")).to_contain_text("<b>xss</b>")
    assert page.locator("script").count() == 1  # our own app.js, nothing injected
    assert page.locator("img").count() == 0
    assert page.locator("#rows b, #rows i, #treemap b, #treemap i").count() == 0
    page.wait_for_timeout(300)  # an injected handler would have fired by now; the fixture checks dialogs


def test_screenshot_for_the_readme(tmp_path: Path, browser: Browser) -> None:
    """A larger heatmap, kept as ``artifacts/heatmap.png`` (docs/heatmap.png is a copy of a good one)."""
    files = {
        "shop/cart.py": ["Cart.__init__", "Cart.add", "Cart.remove", "Cart.total", "Cart.apply_coupon",
                         "Cart.merge", "Cart.export_csv", "checkout"],
        "shop/catalog.py": ["Product.label", "list_products", "find_product", "format_price", "legacy_import",
                            "search", "bulk_discount"],
        "shop/views.py": ["index", "product", "add_to_cart", "coupon_page", "admin_report", "healthz"],
        "shop/payments.py": ["charge", "refund", "retry_failed", "paypal_legacy", "webhook"],
        "shop/emails.py": ["send_receipt", "send_newsletter", "render_template", "unsubscribe"],
    }
    calls = {
        "shop.cart.Cart.__init__": 41_000, "shop.cart.Cart.add": 38_500, "shop.cart.Cart.total": 12_000,
        "shop.cart.checkout": 2_100, "shop.cart.Cart.remove": 310, "shop.catalog.Product.label": 220_000,
        "shop.catalog.list_products": 9_400, "shop.catalog.find_product": 61_000,
        "shop.catalog.format_price": 180_000, "shop.catalog.search": 4_200, "shop.views.index": 9_400,
        "shop.views.product": 51_000, "shop.views.add_to_cart": 38_500, "shop.views.healthz": 86_000,
        "shop.payments.charge": 2_100, "shop.payments.refund": 14, "shop.payments.webhook": 1_900,
        "shop.emails.send_receipt": 2_100, "shop.emails.render_template": 2_150, "shop.emails.unsubscribe": 3,
    }
    sources = [
        (f"{path[:-3].replace('/', '.')}.{name}", path, 1 + 8 * i)
        for path, names in files.items()
        for i, name in enumerate(names)
    ]
    with running_stack(tmp_path) as running:
        running.register("shop", sources)
        running.report("shop", calls, estimated=frozenset({"shop.catalog.Product.label", "shop.catalog.format_price"}))
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        page = context.new_page()
        page.goto(running.url + "/")
        expect(page.locator(CANVAS)).to_have_attribute("data-cells", str(len(sources)))
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "heatmap.png"
        page.screenshot(path=str(shot))
        context.close()
    assert shot.stat().st_size > 10_000


def test_the_heatmap_api_is_columns_gzipped_on_request_and_never_stale(stack: Stack) -> None:
    import gzip
    import json
    import urllib.request

    def heatmap(accept: str | None) -> tuple[dict[str, str], bytes]:
        request = urllib.request.Request(stack.url + "/api/heatmap?app=webshop")
        if accept:
            request.add_header("Accept-Encoding", accept)
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(response.headers), response.read()

    headers, plain = heatmap(None)
    assert "Content-Encoding" not in headers
    data = json.loads(plain)
    calls = dict(zip(data["key"], data["calls"], strict=True))
    assert calls["shop.cart.add"] == 1500
    assert data["paths"][data["path"][data["key"].index("shop.cart.add")]] == "shop/cart.py"
    assert int(headers["X-Coldmod-Now-Ms"]) > 0
    headers, packed = heatmap("gzip, deflate")
    assert headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(packed)) == data
    # A flush changes the app: the encoded copy is dropped when the store announces the change
    # (just after the ack; pages are told after the drop, so they never refetch a stale copy).
    stack.report("webshop", {"shop.cart.add": 1})

    def fresh() -> bool:
        again = json.loads(gzip.decompress(heatmap("gzip")[1]))
        return dict(zip(again["key"], again["calls"], strict=True))["shop.cart.add"] == 1501

    wait_for(fresh, timeout=5, what="the heatmap API to show the flush")

"""The web UI and time, in Debian's Chromium: 7/30/90-day calls, a function's details and sparkline, versions,
and the filter "no call in the last N days" — on a clock the test sets (2026-12-07 10:00 UTC), nothing sleeps.

The history is written through the store's own interface (Register, then Report batches whose windows lie
on the days stated), as the collector writes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from web_fixtures import Stack, browser, running_stack  # noqa: F401 - `browser` is a fixture

from coldmod_cli import heatmap
from coldmod_cli.server.store import Batch, Source

pytestmark = pytest.mark.timeout(120)

ROWS = "#rows tbody tr[data-key]"
CANVAS = "#treemap-canvas"
DAY_MS = 86_400_000


def ms(text: str) -> int:
    """Epoch milliseconds of an ISO UTC time."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def every_day(first: str, last: str) -> list[date]:
    """Every date from ``first`` to ``last``, both included."""
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


NOW = ms("2026-12-07T10:00")
TRACKED_SINCE = ms("2025-11-01T00:00")
KEYS = ["books.close.close_quarter", "books.close.old_report", "books.close.daily", "books.close.busy"]
#: Call days per key (one call each): a quarter-end job, code that stopped 100 days ago, code in use now.
CALL_DAYS = {
    "books.close.close_quarter": [date(2026, 3, 31)],
    "books.close.daily": every_day("2026-06-01", "2026-08-29"),
    "books.close.busy": every_day("2026-09-01", "2026-12-06"),
}
OLD, NEW = "a" * 64, "b" * 64


def write_history(stack: Stack) -> None:
    """Two versions of app ``books`` (the new one without ``daily``) and :data:`CALL_DAYS`, one batch per day."""
    store = stack.store
    sources = [Source(key, "books/close.py", (1 + 4 * i,)) for i, key in enumerate(KEYS)]
    store.register("books", sources, TRACKED_SINCE, OLD, version="2026.11", instance_id="old-1")
    store.register("books", [s for s in sources if s.key != "books.close.daily"], NOW - DAY_MS, NEW,
                   version="2026.12", instance_id="new-1")
    by_day: dict[date, list[str]] = {}
    for key, days in CALL_DAYS.items():
        for day in days:
            by_day.setdefault(day, []).append(key)
    for sequence, (day, keys) in enumerate(sorted(by_day.items()), start=1):
        start = ms(f"{day.isoformat()}T12:00")
        store.report(Batch("books", "old-1", sequence, start, start + 1000, keys, [1] * len(keys),
                           [False] * len(keys), fingerprint=OLD))


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A collector whose web UI's clock reads 2026-12-07 10:00 UTC, with the history above."""
    with running_stack(tmp_path, now_ms=lambda: NOW) as running:
        write_history(running)
        yield running


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page that fails the test on any JavaScript error or dialog."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    yield page
    context.close()
    assert problems == []


def shown(page: Page) -> set[str]:
    """The keys the table shows."""
    return set(page.locator(ROWS).evaluate_all("rows => rows.map(r => r.dataset.key)"))


def test_rows_show_calls_in_the_last_7_30_90_days(stack: Stack, page: Page) -> None:
    page.goto(stack.url + "/#app=books")
    expect(page.locator(ROWS)).to_have_count(4)
    recent = page.locator('tr[data-key="books.close.busy"] td.c-recent')
    # Called once a day from 09-01 to 12-06; today is 12-07: 12-01..06, 11-08..12-06, 09-09..12-06.
    expect(recent).to_have_text("6 / 29 / 89")
    expect(page.locator('tr[data-key="books.close.close_quarter"] td.c-recent')).to_have_text("0 / 0 / 0")
    page.click('th[data-sort="recent"]')  # by calls in the last 90 days, fewest first
    expect(page.locator(ROWS).last).to_have_attribute("data-key", "books.close.busy")
    page.click('th[data-sort="recent"]')
    expect(page.locator(ROWS).first).to_have_attribute("data-key", "books.close.busy")


def test_no_call_in_the_last_n_days_is_cold_since_on_the_collectors_clock(stack: Stack, page: Page) -> None:
    page.goto(stack.url + "/#app=books")
    expect(page.locator(ROWS)).to_have_count(4)

    page.fill("#quiet-days", "90")
    quiet = {"books.close.close_quarter", "books.close.old_report", "books.close.daily"}
    expect(page.locator(ROWS)).to_have_count(3)
    assert shown(page) == quiet
    expect(page.locator(CANVAS)).to_have_attribute("data-cells", "3")  # the picture follows the filter
    # The CLI's definition, on the same heatmap and clock: the same functions.
    fetched = stack.store.fetch("books", now_ms=NOW)
    rows = [heatmap.Row(e.key, e.path, 1, True, e.calls, last_seen_ms=e.last_seen_ms,
                        tracked_since_ms=e.tracked_since_ms) for e in fetched.entries]
    assert {r.key for r in heatmap.cold(rows, now=NOW, since=90 * 86400.0)} == quiet

    page.fill("#quiet-days", "100")  # daily's last call, 08-29 12:00, is 99 days 22 hours before now
    expect(page.locator(ROWS)).to_have_count(2)
    assert shown(page) == {"books.close.close_quarter", "books.close.old_report"}
    page.fill("#quiet-days", "401")  # tracked since 2025-11-01: 401 days and 10 hours
    expect(page.locator(ROWS)).to_have_count(1)
    assert shown(page) == {"books.close.old_report"}
    page.fill("#quiet-days", "402")  # nothing has been tracked that long: none is known to be quiet for it
    expect(page.locator(ROWS)).to_have_count(0)
    page.fill("#quiet-days", "")
    expect(page.locator(ROWS)).to_have_count(4)
    page.click('[data-filter="cold"]')
    page.fill("#quiet-days", "90")
    expect(page.locator(ROWS)).to_have_count(1)  # cold (never called) and quiet: old_report
    assert shown(page) == {"books.close.old_report"}


def test_a_functions_details_show_its_calls_in_time_versions_and_a_sparkline(stack: Stack, page: Page) -> None:
    page.goto(stack.url + "/#app=books")
    expect(page.locator(ROWS)).to_have_count(4)
    expect(page.locator("#details")).to_be_hidden()

    page.click('tr[data-key="books.close.close_quarter"] td.key')
    details = page.locator("#details")
    expect(details).to_be_visible()
    expect(page.locator("#details-key")).to_have_text("books.close.close_quarter")
    # The batch's window was 12:00:00 to 12:00:01: its first call at the start, its last at the end.
    expect(details.locator('[data-fact="last-call"]')).to_contain_text("2026-03-31 12:00:01 UTC")
    expect(details.locator('[data-fact="first-call"]')).to_contain_text("2026-03-31 12:00:00 UTC")
    expect(details.locator('[data-fact="versions"]')).to_have_text("2026.11, 2026.12 (every live version)")
    spark = page.locator("#details-spark")
    expect(spark).to_have_attribute("data-bars", "1")
    expect(page.locator("#details-spark-note")).to_have_text("1 call on 1 day of the last 400; busiest day 1")
    # The bar is drawn where 2026-03-31 falls on the 400-day axis ending today (and nothing elsewhere).
    painted = page.evaluate(
        """(day) => {
            const canvas = document.getElementById("details-spark");
            const ctx = canvas.getContext("2d");
            const first = Number(canvas.dataset.first);
            const x = Math.floor(((day - first) + 0.5) * canvas.width / 400);
            const column = (px) => ctx.getImageData(px, canvas.height - 2, 1, 1).data[3];
            return {bar: column(x), elsewhere: column(Math.floor(canvas.width / 2))};
        }""",
        (date(2026, 3, 31) - date(1970, 1, 1)).days,
    )
    assert painted["bar"] > 0, painted
    assert painted["elsewhere"] == 0, painted

    expect(details.locator('[data-fact="seasonal"]')).to_have_count(0)  # no window asked: nothing is quiet
    page.fill("#quiet-days", "90")
    expect(details.locator('[data-fact="seasonal"]')).to_have_text(
        "last called 2026-03-31, a quarter-end: review before removing"
    )

    page.click('tr[data-key="books.close.daily"] td.key')
    expect(page.locator("#details-key")).to_have_text("books.close.daily")
    expect(spark).to_have_attribute("data-bars", "90")  # 06-01 .. 08-29
    expect(details.locator('[data-fact="versions"]')).to_have_text("2026.11")  # the new version dropped it
    expect(details.locator('[data-fact="seasonal"]')).to_have_count(0)  # daily until it stopped: not seasonal
    page.fill("#quiet-days", "")

    page.click('tr[data-key="books.close.old_report"] td.key')
    expect(spark).to_have_attribute("data-bars", "0")
    expect(page.locator("#details-spark-note")).to_have_text("no call in the last 400 days")
    expect(details.locator('[data-fact="last-call"]')).to_have_text("never")
    page.click("#details-close")
    expect(details).to_be_hidden()


def test_the_history_api_answers_for_the_keys_asked_only(stack: Stack) -> None:
    status, _, body = stack.get("/api/history?app=books&key=books.close.close_quarter&key=nope")
    assert status == 200
    data = json.loads(body)
    assert data["now_ms"] == NOW
    day = (date(2026, 3, 31) - date(1970, 1, 1)).days
    assert data["history"] == {
        "books.close.close_quarter": {"days": [day], "calls": [1], "seasonal": "last called 2026-03-31, a quarter-end"}
    }
    assert stack.get("/api/history?app=books")[0] == 400
    many = "&".join(f"key=k{i}" for i in range(101))
    assert stack.get(f"/api/history?app=books&{many}")[0] == 400


def test_the_heatmap_columns_carry_versions_and_the_clock(stack: Stack) -> None:
    status, headers, body = stack.get("/api/heatmap?app=books")
    assert status == 200
    data = json.loads(body)
    assert int(headers["X-Coldmod-Now-Ms"]) == NOW
    assert data["now_ms"] == NOW
    names = [v["name"] for v in data["versions"]]
    assert sorted(names) == ["2026.11", "2026.12"]
    daily = data["key"].index("books.close.daily")
    assert [names[i] for i in data["version_sets"][data["version_set"][daily]]] == ["2026.11"]
    busy = data["key"].index("books.close.busy")
    assert (data["calls_7d"][busy], data["calls_30d"][busy], data["calls_90d"][busy]) == (6, 29, 89)

"""Cold as a statement about time, the seasonal rule, and what fetch says of versions and history.

Time is injected: FetchResponse.now_ms (the collector's clock) or an explicit
``now``; dates are stated, nothing sleeps.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from coldmod_cli import heatmap, seasonal
from coldmod_cli.heatmap import DAY_MS, Row

pytestmark = pytest.mark.timeout(60)

HOUR_MS = 3_600_000


def ms(text: str) -> int:
    """Epoch milliseconds of an ISO UTC time like ``2026-03-31T12:00``."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def days(*texts: str) -> list[date]:
    """Dates from ISO days."""
    return [date.fromisoformat(t) for t in texts]


def every_day(first: str, last: str) -> list[date]:
    """Every date from ``first`` to ``last``, both included."""
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def day_number(day: date) -> int:
    """The collector's UTC day number of a date."""
    return (day - date(1970, 1, 1)).days


def row(key: str = "app.f", *, last: int = 0, tracked_since: int, calls: int | None = None, history=()) -> Row:
    """A tracked row; ``history`` are call dates (they become its sparse days)."""
    history = sorted(history)
    return Row(
        key,
        "app.py",
        1,
        tracked=True,
        calls=len(history) if calls is None else calls,
        first_seen_ms=ms(f"{history[0].isoformat()}T12:00") if history else 0,
        last_seen_ms=last,
        tracked_since_ms=tracked_since,
        days=tuple(day_number(d) for d in history),
        day_calls=tuple(1 for _ in history),
    )


# ------------------------------------------------------------------ cold --since N


NOW = ms("2026-12-07T10:00")
NINETY_D = 90 * 86400.0


def test_since_is_no_call_in_the_window_and_the_window_edge_is_a_call_within_it():
    tracked = NOW - 200 * DAY_MS
    at_edge = row("at_edge", last=NOW - 90 * DAY_MS, tracked_since=tracked, calls=1)
    just_before = row("just_before", last=NOW - 90 * DAY_MS - 1, tracked_since=tracked, calls=1)
    recent = row("recent", last=NOW - HOUR_MS, tracked_since=tracked, calls=1)
    never = row("never", tracked_since=tracked, calls=0)

    cold = heatmap.cold([at_edge, just_before, recent, never], now=NOW, since=NINETY_D)

    assert [r.key for r in cold] == ["just_before", "never"]


def test_since_leaves_out_functions_tracked_for_less_than_the_window():
    exactly = row("exactly", tracked_since=NOW - 90 * DAY_MS, calls=0)
    a_moment_less = row("a_moment_less", tracked_since=NOW - 90 * DAY_MS + 1, calls=0)
    rows = [exactly, a_moment_less]

    assert [r.key for r in heatmap.cold(rows, now=NOW, since=NINETY_D)] == ["exactly"]
    assert [r.key for r in heatmap.too_briefly_tracked(rows, now=NOW, since=NINETY_D)] == ["a_moment_less"]
    # Without a window, never called is cold however young (unless --min-tracked says otherwise).
    assert [r.key for r in heatmap.cold(rows, now=NOW)] == ["exactly", "a_moment_less"]
    assert heatmap.cold(rows, now=NOW, min_tracked=100 * 86400.0) == []
    # --min-tracked longer than the window wins.
    assert heatmap.cold(rows, now=NOW, since=NINETY_D, min_tracked=91 * 86400.0) == []


def test_untracked_rows_are_never_cold():
    untracked = Row("app.new", "app.py", 1, tracked=False)
    assert heatmap.cold([untracked], now=NOW, since=0.0) == []
    assert heatmap.too_briefly_tracked([untracked], now=NOW, since=0.0) == []


@pytest.mark.parametrize(
    ("since", "expected"),
    [(None, 0), (0.0, 1), (12 * 3600.0, 1), (86400.0, 1), (NINETY_D, 90), (NINETY_D + 3600, 90)],
)
def test_quiet_days_asked_cover_the_window(since, expected):
    assert heatmap.quiet_days(since) == expected


# ------------------------------------------------------------------ seasonal

TODAY = date(2026, 12, 7)


@pytest.mark.parametrize(
    ("called", "expected"),
    [
        (days("2026-03-31"), "last called 2026-03-31, a quarter-end"),
        (days("2026-04-30"), "last called 2026-04-30, a month-end"),
        (days("2025-12-31"), "last called 2025-12-31, a year-end"),
        (days("2024-02-29"), "last called 2024-02-29, a month-end"),  # a leap-year February
        (days("2025-12-31", "2026-02-10"), "called 2025-12-31, a year-end (last called 2026-02-10)"),
        (days("2025-12-15"), "called in December 2025; December again now"),
        (days("2026-06-30", "2026-07-03"), "called 2026-06-30, a quarter-end (last called 2026-07-03)"),
    ],
)
def test_each_seasonal_rule_gives_its_sentence(called, expected):
    assert seasonal.reason(called, TODAY) == expected


@pytest.mark.parametrize(
    ("called", "why"),
    [
        (days("2026-03-30"), "the day before a quarter-end"),
        (days("2026-04-01"), "the day after a month-end"),
        (every_day("2025-12-01", "2026-08-29"), "called daily until 100 days ago: its month-ends do not stand apart"),
        (every_day("2025-11-01", "2026-08-29")[::7], "called weekly until it stopped"),
        (days("2025-11-15"), "a year ago, but not this calendar month"),
        (days("2024-12-15"), "this calendar month, but two years ago"),
        (days("2025-11-20", "2025-12-15"), "a year ago, but the month before had calls too"),
        (days("2025-12-15", "2026-01-05"), "a year ago, but the month after had calls too"),
        ([], "never called"),
    ],
)
def test_what_is_not_seasonal(called, why):
    assert seasonal.reason(called, TODAY) is None, why


def test_a_period_end_call_stands_apart_only_after_a_week_without_calls():
    assert seasonal.reason(days("2026-03-24", "2026-03-31"), TODAY) is None  # 7 days before: not apart
    assert seasonal.reason(days("2026-03-23", "2026-03-31"), TODAY) == "last called 2026-03-31, a quarter-end"


def test_the_same_month_rule_follows_today():
    called = days("2025-12-15")
    assert seasonal.reason(called, date(2026, 12, 1)) == "called in December 2025; December again now"
    assert seasonal.reason(called, date(2026, 11, 30)) is None
    assert seasonal.reason(called, date(2027, 1, 1)) is None


def test_every_rule_is_in_the_table_most_specific_first():
    assert [rule.period for rule in seasonal.RULES] == ["year-end", "quarter-end", "month-end", "a year ago"]


def test_reasons_read_rows_history_and_fall_back_on_the_last_call():
    now = ms("2026-12-07T10:00")
    quarter = row("quarter", last=ms("2026-03-31T23:59"), tracked_since=ms("2025-11-01T00:00"),
                  history=days("2026-03-31"))
    daily = row("daily", last=ms("2026-08-29T18:00"), tracked_since=ms("2025-11-01T00:00"),
                history=every_day("2025-11-01", "2026-08-29"))
    # No history carried (an older collector, a window under a day): the last call still counts.
    no_history = Row("no_history", "app.py", 2, tracked=True, calls=4, last_seen_ms=ms("2026-06-30T08:00"),
                     tracked_since_ms=ms("2025-11-01T00:00"))
    never = row("never", tracked_since=ms("2025-11-01T00:00"), calls=0)

    found = seasonal.reasons([quarter, daily, no_history, never], now)

    assert found == {
        "quarter": "last called 2026-03-31, a quarter-end",
        "no_history": "last called 2026-06-30, a quarter-end",
    }


def test_utc_days_decide_a_call_late_on_the_31st_in_utc_is_the_31st():
    just_before_midnight = row("f", last=ms("2026-03-31T23:59:59"), tracked_since=ms("2025-01-01T00:00"), calls=1)
    just_after = row("g", last=ms("2026-04-01T00:00:00"), tracked_since=ms("2025-01-01T00:00"), calls=1)
    assert seasonal.reasons([just_before_midnight, just_after], NOW) == {
        "f": "last called 2026-03-31, a quarter-end"
    }


# ------------------------------------------------------- what fetch, cold and rm print (hand-made Fetch)

BOOKS = {
    "coldmod.rootmarker": '[app]\nname = "books"\n',
    "books/__init__.py": "",
    "books/close.py": (
        "def close_quarter():\n    return 1\n\n\n"
        "def old_report():\n    return 2\n\n\n"
        "def daily():\n    return 3\n\n\n"
        "def busy():\n    return 4\n"
    ),
}
TRACKED_SINCE = ms("2025-11-01T00:00")


@pytest.fixture
def books(tmp_path):
    """A checkout whose four functions the hand-made heatmap below describes."""
    for name, text in BOOKS.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def entry(key, history, *, versions=(0, 1), recent=(0, 0, 0)):
    """A HeatmapEntry as the collector sends it: ``history`` are call dates, one call each."""
    from coldmod_proto.v1 import coldmod_pb2 as pb

    history = sorted(history)
    return pb.HeatmapEntry(
        key=key,
        calls=len(history),
        first_seen_ms=ms(f"{history[0]}T12:00") if history else 0,
        last_seen_ms=ms(f"{history[-1]}T12:00") if history else 0,
        tracked_since_ms=TRACKED_SINCE,
        path="books/close.py",
        versions=list(versions),
        calls_7d=recent[0],
        calls_30d=recent[1],
        calls_90d=recent[2],
        days=[day_number(d) for d in history],
        day_calls=[1] * len(history),
    )


def books_heatmap(root):
    """The checkout reconciled with a Fetch of two versions, at 2026-12-07 10:00 on the collector's clock."""
    from coldmod_proto.v1 import coldmod_pb2 as pb
    from coldmod_trace.discovery import discover

    response = pb.FetchResponse(
        app="books",
        now_ms=NOW,
        retire_after_ms=30 * DAY_MS,
        versions=[
            pb.Version(fingerprint="f" * 64, label="2026.12.1", first_seen_ms=NOW - 3 * DAY_MS,
                       last_seen_ms=NOW - 60_000, keys=4),
            pb.Version(fingerprint="0123456789abcdef" * 4, label="", first_seen_ms=TRACKED_SINCE,
                       last_seen_ms=NOW - 2 * DAY_MS, keys=3),
        ],
        entries=[
            entry("books.close.close_quarter", days("2026-03-31")),
            entry("books.close.old_report", []),
            entry("books.close.daily", every_day("2025-11-01", "2026-08-29")),
            entry("books.close.busy", every_day("2026-09-01", "2026-12-06"), versions=(0,), recent=(6, 29, 89)),
        ],
    )
    return heatmap.reconcile(response, discover(root, cache=False))


def test_fetch_text_lists_versions_and_per_function_history(books, capsys):
    from coldmod_cli import report

    report.fetch(books_heatmap(books), "text")

    versions, header, *lines = capsys.readouterr().out.splitlines()
    assert versions == (
        "2 live versions: 2026.12.1 (4 functions, last seen 1m ago), 01234567 (3 functions, last seen 2d ago); "
        "a version silent for 30d is retired"
    )
    assert header.split() == ["CALLS", "7D", "30D", "90D", "LAST", "CALL", "FIRST", "CALL", "VERSIONS", "LOCATION",
                              "KEY"]
    rows = {line.split()[-1]: line.split()[:-2] for line in lines}
    assert rows["books.close.busy"] == ["97", "6", "29", "89", "22h", "ago", "96d", "ago", "2026.12.1"]
    assert rows["books.close.close_quarter"] == ["1", "0", "0", "0", "250d", "ago", "250d", "ago", "all"]
    assert rows["books.close.old_report"] == ["0", "0", "0", "0", "never", "never", "all"]


def test_fetch_json_names_versions_and_carries_recent_calls(books, capsys):
    import json

    from coldmod_cli import report

    report.fetch(books_heatmap(books), "json")

    data = json.loads(capsys.readouterr().out)
    assert data["now"] == "2026-12-07T10:00:00.000Z"
    assert data["retire_after_seconds"] == 30 * 86400
    assert data["versions"] == [
        {"name": "2026.12.1", "label": "2026.12.1", "fingerprint": "f" * 64, "functions": 4,
         "first_seen": "2026-12-04T10:00:00.000Z", "last_seen": "2026-12-07T09:59:00.000Z"},
        {"name": "01234567", "label": None, "fingerprint": "0123456789abcdef" * 4, "functions": 3,
         "first_seen": "2025-11-01T00:00:00.000Z", "last_seen": "2026-12-05T10:00:00.000Z"},
    ]
    busy = next(f for f in data["functions"] if f["key"] == "books.close.busy")
    assert (busy["calls_7d"], busy["calls_30d"], busy["calls_90d"], busy["versions"]) == (6, 29, 89, ["2026.12.1"])
    assert (busy["first_seen"], busy["last_seen"]) == ("2026-09-01T12:00:00.000Z", "2026-12-06T12:00:00.000Z")
    quarter = next(f for f in data["functions"] if f["key"] == "books.close.close_quarter")
    assert quarter["versions"] == ["2026.12.1", "01234567"]


def test_versions_sharing_a_label_are_told_apart_by_their_fingerprint():
    from coldmod_proto.v1 import coldmod_pb2 as pb

    named = heatmap.version_names(
        [pb.Version(fingerprint="aaaa" * 16, label="main"), pb.Version(fingerprint="bbbb" * 16, label="main"),
         pb.Version(fingerprint="cccc" * 16, label="")]
    )
    assert [v.name for v in named] == ["main@aaaaaaaa", "main@bbbbbbbb", "cccccccc"]


def test_cold_since_90d_shows_the_seasonal_reason(books, capsys):
    import json

    from coldmod_cli import report

    report.cold(books_heatmap(books), "text", since=NINETY_D)
    captured = capsys.readouterr()
    lines = captured.out.splitlines()[1:]
    rows = {next(w for w in line.split() if w.startswith("books.close.")): line for line in lines}
    assert set(rows) == {"books.close.close_quarter", "books.close.old_report", "books.close.daily"}
    assert rows["books.close.close_quarter"].endswith(
        "books.close.close_quarter  (seasonal: last called 2026-03-31, a quarter-end)"
    )
    assert rows["books.close.daily"].endswith("books.close.daily")  # daily until 100 days ago: not seasonal
    assert "3 of 4 tracked functions are cold" in captured.err
    assert "1 of them seasonal (review: rm --cold keeps them unless --include review)" in captured.err

    report.cold(books_heatmap(books), "json", since=NINETY_D)
    data = json.loads(capsys.readouterr().out)
    seasonal_of = {f["key"]: f["seasonal"] for f in data["cold"]}
    assert seasonal_of == {
        "books.close.close_quarter": "last called 2026-03-31, a quarter-end",
        "books.close.old_report": None,
        "books.close.daily": None,
    }
    assert data["summary"]["seasonal_functions"] == 1


def test_rm_cold_keeps_a_seasonal_function_unless_include_review(books, capsys):
    from coldmod_cli import removal
    from coldmod_trace.discovery import discover

    result = books_heatmap(books)
    found = discover(books, cache=False)
    cold = removal.cold_keys(result, since=NINETY_D, min_tracked=None)
    held = removal.seasonal_held(result, cold)
    assert sorted(cold) == ["books.close.close_quarter", "books.close.daily", "books.close.old_report"]
    assert held == {"books.close.close_quarter": "last called 2026-03-31, a quarter-end"}
    before = (books / "books" / "close.py").read_text()

    removal.remove(found, [], cold, dry_run=True, allow_dirty=True, seasonal=held)
    captured = capsys.readouterr()
    assert captured.out.splitlines()[:3] == [
        "review  books.close.close_quarter  (seasonal: last called 2026-03-31, a quarter-end)",
        "safe    books.close.old_report",
        "safe    books.close.daily",
    ]
    assert "-def old_report():" in captured.out
    assert "-def daily():" in captured.out
    assert "-def close_quarter():" not in captured.out
    assert "would remove 2 functions from 1 file" in captured.err
    assert "kept 1 seasonal cold function (review: --include review removes them)" in captured.err

    removal.remove(found, [], cold, dry_run=False, allow_dirty=True, seasonal=held, include=removal.INCLUDE["review"])
    captured = capsys.readouterr()
    assert "planning 1 seasonal cold function as --include review asks: books.close.close_quarter " \
        "(last called 2026-03-31, a quarter-end)" in captured.err
    assert "safe    books.close.close_quarter" in captured.out.splitlines()  # its references: none
    assert "removed 3 functions from 1 file" in captured.err
    after = (books / "books" / "close.py").read_text()
    assert after != before
    assert "def close_quarter" not in after
    assert "def busy" in after


# ------------------------------------------------ end to end: a real collector (TLS + API key), its clock set


def test_cold_since_rm_and_fetch_through_a_collector_whose_clock_is_set(cli, tmp_path, monkeypatch):
    """The history written through the store, read by `coldmod` over gRPC with TLS and the API key."""
    import json

    import trustme
    from conftest import git
    from test_web_history import NOW as WEB_NOW
    from test_web_history import write_history
    from web_fixtures import running_stack

    from coldmod_cli.server.store import Batch

    assert WEB_NOW == NOW
    root = tmp_path / "books"
    for name, text in BOOKS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "books")
    monkeypatch.chdir(root)
    api_key = "an-api-key-for-the-history-tests"
    (tmp_path / "collector").mkdir()
    with running_stack(tmp_path / "collector", api_key=api_key, tls=trustme.CA(), now_ms=lambda: NOW) as stack:
        write_history(stack)
        # One call of daily's at the last year-end, before its daily run: only its history shows it (the CLI
        # must ask Fetch for the quiet functions' days), and it makes daily seasonal.
        year_end = ms("2025-12-31T12:00")
        stack.store.report(Batch("books", "old-1", 10_000, year_end, year_end + 1000, ["books.close.daily"], [1],
                                 [False], fingerprint="a" * 64))
        ca = tmp_path / "ca.pem"
        ca.write_bytes(stack.ca_pem or b"")
        for name in ("COLDMOD_INSECURE",):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("COLDMOD_GRPC_HOST", stack.grpc_target)
        monkeypatch.setenv("COLDMOD_API_KEY", api_key)
        monkeypatch.setenv("COLDMOD_TLS_CA", str(ca))

        cold = cli("cold", "--since", "90d")
        assert cold.code == 0, cold.err
        keys = {next(w for w in line.split() if w.startswith("books.")): line for line in cold.out.splitlines()[1:]}
        assert set(keys) == {"books.close.close_quarter", "books.close.old_report", "books.close.daily"}
        assert keys["books.close.close_quarter"].endswith("(seasonal: last called 2026-03-31, a quarter-end)")
        assert keys["books.close.daily"].endswith("(seasonal: called 2025-12-31, a year-end (last called 2026-08-29))")
        assert keys["books.close.old_report"].endswith("books.close.old_report")
        assert "3 of 4 tracked functions are cold" in cold.err
        assert "2 of them seasonal" in cold.err

        # Tracked since 2025-11-01 (401 days): never-called old_report is cold for 401 days, not known to be for 402.
        assert [f["key"] for f in json.loads(cli("cold", "--since", "401d", "--format", "json").out)["cold"]] == [
            "books.close.old_report"
        ]
        longer = json.loads(cli("cold", "--since", "402d", "--format", "json").out)
        assert longer["cold"] == []
        assert longer["summary"]["tracked_too_briefly"] == 1

        dry = cli("rm", "--cold", "--since", "90d", "--dry-run")
        assert dry.code == 0, dry.err
        assert "review  books.close.close_quarter  (seasonal: last called 2026-03-31, a quarter-end)" in dry.out
        held_daily = "review  books.close.daily  (seasonal: called 2025-12-31, a year-end (last called 2026-08-29))"
        assert held_daily in dry.out
        assert "-def close_quarter():" not in dry.out
        assert "-def daily():" not in dry.out
        assert "-def old_report():" in dry.out
        assert "kept 2 seasonal cold functions (review: --include review removes them)" in dry.err

        fetched = json.loads(cli("fetch", "--format", "json").out)
        assert fetched["now"] == "2026-12-07T10:00:00.000Z"
        assert sorted(v["name"] for v in fetched["versions"]) == ["2026.11", "2026.12"]
        busy = next(f for f in fetched["functions"] if f["key"] == "books.close.busy")
        assert (busy["calls_7d"], busy["calls_30d"], busy["calls_90d"]) == (6, 29, 89)
        daily = next(f for f in fetched["functions"] if f["key"] == "books.close.daily")
        assert daily["versions"] == ["2026.11"]

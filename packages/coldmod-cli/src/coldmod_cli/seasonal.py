"""Seasonal code: quiet now, but called before when a month, a quarter or a year closed, or in this month a year ago.

Code that closes the books runs a few times a year, so "no call in the last 90
days" is not "never needed". A cold function whose history shows such a call
gets a ``seasonal`` review reason: ``coldmod cold`` shows it, and ``rm --cold``
keeps it unless ``--include review``.

The rule is the table :data:`RULES`, read top to bottom for each call day,
latest first; the first rule a day passes gives the reason. Days are UTC days
(the collector's history counts calls per UTC day). A period-end call counts
only when it *stands apart*, with no call in the :data:`APART_DAYS` days
before it, and a call a year ago only when neither neighbouring month had one:
code that ran every day, or every week, until it stopped is not seasonal
because one of its days was the 31st.

Everything here is a pure function of dates, so the tests state dates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from coldmod_cli.server.store import utc_day

if TYPE_CHECKING:
    from coldmod_cli.heatmap import Row

__all__ = ["APART_DAYS", "RULES", "Rule", "reason", "reasons"]

#: Days before a period-end call that must hold no call for it to count (daily and weekly code has one).
APART_DAYS = 7
#: Month names, English whatever the locale (the sentences are).
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
_EPOCH = date(1970, 1, 1).toordinal()


def day_of(number: int) -> date:
    """The date of a UTC day number (days since 1970-01-01, the collector's history unit)."""
    return date.fromordinal(_EPOCH + number)


def month_end(day: date) -> bool:
    """The last day of its month."""
    return (day + timedelta(days=1)).day == 1


def quarter_end(day: date) -> bool:
    """The last day of March, June, September or December."""
    return month_end(day) and day.month % 3 == 0


def year_end(day: date) -> bool:
    """December 31."""
    return day.month == 12 and day.day == 31


def apart(day: date, called: frozenset[date]) -> bool:
    """No call in the :data:`APART_DAYS` days before ``day``."""
    return not any(day - timedelta(days=n) in called for n in range(1, APART_DAYS + 1))


def _shift_month(year: int, month: int, by: int) -> tuple[int, int]:
    """(year, month) ``by`` months later (earlier when negative)."""
    index = year * 12 + month - 1 + by
    return index // 12, index % 12 + 1


def a_year_ago(day: date, called: frozenset[date], today: date) -> bool:
    """``day`` is in today's calendar month of last year, and neither neighbouring month had a call."""
    if (day.year, day.month) != (today.year - 1, today.month):
        return False
    months = {(d.year, d.month) for d in called}
    return not months & {_shift_month(day.year, day.month, -1), _shift_month(day.year, day.month, 1)}


@dataclass(frozen=True)
class Rule:
    """One line of the table: the period, its test on a call day, and the sentence it gives."""

    period: str
    #: (a call day, every call day, today) -> does this day make the function seasonal?
    test: Callable[[date, frozenset[date], date], bool]
    #: Formatted with ``called`` ("last called" or "called"), ``day`` (ISO), ``month``, ``year``.
    sentence: str


#: The seasonal rule, most specific period first.
RULES: tuple[Rule, ...] = (
    # period          test on a call day (c: every call day, t: today)        sentence
    Rule("year-end", lambda d, c, t: year_end(d) and apart(d, c), "{called} {day}, a year-end"),
    Rule("quarter-end", lambda d, c, t: quarter_end(d) and apart(d, c), "{called} {day}, a quarter-end"),
    Rule("month-end", lambda d, c, t: month_end(d) and apart(d, c), "{called} {day}, a month-end"),
    Rule("a year ago", a_year_ago, "called in {month} {year}; {month} again now"),
)


def reason(call_days: Iterable[date], today: date) -> str | None:
    """The seasonal reason of a function with no recent call that was called on ``call_days``; None if not seasonal."""
    days = sorted({day for day in call_days if day <= today}, reverse=True)
    called = frozenset(days)
    for day in days:
        for rule in RULES:
            if rule.test(day, called, today):
                last = day == days[0]
                text = rule.sentence.format(
                    called="last called" if last else "called",
                    day=day.isoformat(),
                    month=MONTHS[day.month - 1],
                    year=day.year,
                )
                return text if last or "{called}" not in rule.sentence else f"{text} (last called {days[0]})"
    return None


def call_days(row: Row) -> set[date]:
    """The days a row was called on, as far as the Fetch told: its history, and its last call in any case."""
    days = {day_of(n) for n in row.days}
    if row.last_seen_ms and row.calls:
        days.add(day_of(utc_day(row.last_seen_ms)))
    return days


def reasons(rows: Iterable[Row], now_ms: int) -> Mapping[str, str]:
    """The seasonal reason of each of ``rows`` (cold ones: no recent call) that has one, by key."""
    today = day_of(utc_day(now_ms))
    found = {}
    for row in rows:
        text = reason(call_days(row), today)
        if text is not None:
            found[row.key] = text
    return found

"""Validates and does arithmetic on periods: a month ``YYYY-MM`` or a day ``YYYY-MM-DD``."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from chargeback.domain.errors import InvalidRequestError

_MONTH = re.compile(r"\A([0-9]{4})-([0-9]{2})\Z")
_DAY = re.compile(r"\A([0-9]{4})-([0-9]{2})-([0-9]{2})\Z")
FIRST_YEAR, LAST_YEAR = 2000, 9998
"""Years a period may name: the next month and the month after the grace period must exist too."""


def parse_month(text: str) -> str:
    """Return ``text`` if it is a real month ``YYYY-MM``; else raise ``InvalidRequestError``."""
    match = _MONTH.match(text)
    if not match or not 1 <= int(match.group(2)) <= 12 or not FIRST_YEAR <= int(match.group(1)) <= LAST_YEAR:
        raise InvalidRequestError(f"period must be a month YYYY-MM, got {text[:40]!r}", field="period")
    return text


def parse_period(text: str) -> str:
    """Return ``text`` if it is a month ``YYYY-MM`` or a real day ``YYYY-MM-DD``."""
    if _DAY.match(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            pass
        else:
            if FIRST_YEAR <= day.year <= LAST_YEAR:
                return text
        raise InvalidRequestError(f"period {text[:40]!r} is not a real day", field="period")
    if _MONTH.match(text):
        return parse_month(text)
    raise InvalidRequestError(f"period must be YYYY-MM or YYYY-MM-DD, got {text[:40]!r}", field="period")


def month_bounds(period: str) -> tuple[datetime, datetime]:
    """The month ``YYYY-MM`` as [first instant, first instant of the next month), in UTC."""
    parse_month(period)
    return month_start(period), month_end(period)


def month_start(period: str) -> datetime:
    year, month = int(period[:4]), int(period[5:7])
    return datetime(year, month, 1, tzinfo=UTC)


def month_end(period: str) -> datetime:
    """The first instant of the following month (periods are half-open)."""
    year, month = int(period[:4]), int(period[5:7])
    return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)


def month_of(moment: datetime | date) -> str:
    return f"{moment.year:04d}-{moment.month:02d}"


def previous_month(period: str) -> str:
    year, month = int(period[:4]), int(period[5:7])
    return f"{year - 1:04d}-12" if month == 1 else f"{year:04d}-{month - 1:02d}"


def next_month(period: str) -> str:
    return month_of(month_end(period))


def period_bounds(period: str) -> tuple[date, date]:
    """The first day of ``period`` (``YYYY-MM``) and the first day after it."""
    start, end = month_bounds(period)
    return start.date(), end.date()

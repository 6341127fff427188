"""``Retry-After``: seconds or an HTTP date, and nothing when it says neither."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from chargeback.adapters.retry_after import retry_after


def test_a_number_is_the_seconds_to_wait() -> None:
    assert retry_after(" 17 ") == 17.0


def test_an_http_date_is_the_seconds_until_it() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = retry_after(later)
    assert seconds is not None and 25 <= seconds <= 30


def test_a_date_already_past_asks_for_no_wait() -> None:
    assert retry_after(format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5"])
def test_anything_else_asks_for_nothing(value: str | None) -> None:
    assert retry_after(value) is None

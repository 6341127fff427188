"""Reconciliation judges each subscription's ledger total against Azure Monitor's."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from chargeback.domain.errors import InvalidRequestError, PartialResultError
from chargeback.domain.usage import Counters, UsageKey, UsageRow
from chargeback.reconciliation.monitor import CsvExportSource, MonitorTotals
from chargeback.reconciliation.reconcile import (
    LEDGER_SHORT,
    MATCHED,
    MONITOR_SHORT,
    ONLY_IN_LEDGER,
    ONLY_IN_MONITOR,
    ReconciliationLine,
    delta_percent,
    judge,
    judged_window,
    ledger_totals,
    period_bounds,
    periods_to_reconcile,
    reconcile,
    reconcile_period,
)
from tests.support import APPMETRICS_EXPORT

EXPORT = APPMETRICS_EXPORT
NOW = datetime(2024, 5, 20, 9, 0, tzinfo=UTC)
ONE_PERCENT = Decimal("1.0")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def row(day: date, subscription: str, total: int) -> UsageRow:
    return UsageRow(UsageKey(day, subscription, "gpt-4o", "gpt-4o", "chat"), Counters(total_tokens=total))


def one_line(ledger: int | None, monitor: int | None, tolerance: Decimal = ONE_PERCENT) -> ReconciliationLine:
    lines = reconcile(
        "2024-05",
        NOW,
        lag_hours=6,
        tolerance_percent=tolerance,
        ledger={} if ledger is None else {"sub": ledger},
        monitor={} if monitor is None else {"sub": MonitorTotals(total_tokens=monitor)},
    )
    assert len(lines) == 1
    return lines[0]


class FailingSource:
    """A monitor source whose answer was partial."""

    def token_totals(self, start: datetime, end: datetime) -> dict[str, MonitorTotals]:
        raise PartialResultError("Log Analytics returned a partial result")


class RecordingSource:
    """A monitor source that remembers the windows it was asked for."""

    def __init__(self, totals: dict[str, MonitorTotals]) -> None:
        self.totals = totals
        self.windows: list[tuple[datetime, datetime]] = []

    def token_totals(self, start: datetime, end: datetime) -> dict[str, MonitorTotals]:
        self.windows.append((start, end))
        return self.totals


@pytest.mark.parametrize(
    ("ledger", "monitor", "status"),
    [
        pytest.param(1000, 1000, MATCHED, id="equal totals match"),
        pytest.param(980, 1000, LEDGER_SHORT, id="ledger below monitor beyond tolerance"),
        pytest.param(1020, 1000, MONITOR_SHORT, id="ledger above monitor beyond tolerance"),
        pytest.param(500, None, ONLY_IN_LEDGER, id="monitor without the subscription"),
        pytest.param(500, 0, ONLY_IN_LEDGER, id="monitor with zero tokens"),
        pytest.param(None, 500, ONLY_IN_MONITOR, id="ledger without the subscription"),
        pytest.param(0, 500, ONLY_IN_MONITOR, id="ledger with zero tokens"),
    ],
)
def test_each_pair_of_totals_gets_its_status(ledger: int | None, monitor: int | None, status: str) -> None:
    assert one_line(ledger, monitor).status == status


@pytest.mark.parametrize(
    ("ledger", "monitor", "tolerance", "status"),
    [
        pytest.param(990, 1000, Decimal("1.0"), MATCHED, id="ledger exactly 1% short matches"),
        pytest.param(989, 1000, Decimal("1.0"), LEDGER_SHORT, id="one token past 1% short is ledger_short"),
        pytest.param(1010, 1000, Decimal("1.0"), MATCHED, id="ledger exactly 1% over matches"),
        pytest.param(1011, 1000, Decimal("1.0"), MONITOR_SHORT, id="one token past 1% over is monitor_short"),
        pytest.param(999, 1000, Decimal("0"), LEDGER_SHORT, id="zero tolerance takes one token as short"),
        pytest.param(1000, 1000, Decimal("0"), MATCHED, id="zero tolerance still matches equal totals"),
        pytest.param(9975, 10000, Decimal("0.25"), MATCHED, id="fractional tolerance is exact"),
        pytest.param(9974, 10000, Decimal("0.25"), LEDGER_SHORT, id="fractional tolerance has no slack"),
        pytest.param(10**40 - 10**38, 10**40, Decimal("1.0"), MATCHED, id="huge totals at tolerance match"),
        pytest.param(10**40 - 10**38 - 1, 10**40, Decimal("1.0"), LEDGER_SHORT, id="huge totals past it do not"),
    ],
)
def test_a_delta_exactly_at_tolerance_is_matched_and_one_token_more_is_not(
    ledger: int, monitor: int, tolerance: Decimal, status: str
) -> None:
    assert judge(ledger, monitor, tolerance) == status


def test_a_line_carries_both_totals_and_the_delta_from_the_monitors_side() -> None:
    assert one_line(900, 1000) == ReconciliationLine(
        period="2024-05",
        subscription_id="sub",
        ledger_tokens=900,
        monitor_tokens=1000,
        delta_tokens=100,
        delta_percent=Decimal("10.00"),
        status=LEDGER_SHORT,
    )


@pytest.mark.parametrize(
    ("ledger", "monitor", "percent"),
    [
        pytest.param(2, 3, Decimal("33.33"), id="a third"),
        pytest.param(1, 3, Decimal("66.67"), id="two thirds rounds up"),
        pytest.param(4, 3, Decimal("-33.33"), id="ledger over monitor is negative"),
        pytest.param(7, 8, Decimal("12.50"), id="two places even when exact"),
        pytest.param(5, 0, None, id="none when the monitor saw nothing"),
        pytest.param(10**30, 1, Decimal(-(10**32) + 100), id="huge deltas keep their precision"),
    ],
)
def test_delta_percent_is_relative_to_the_monitor_and_quantized_to_hundredths(
    ledger: int, monitor: int, percent: Decimal | None
) -> None:
    assert delta_percent(ledger, monitor) == percent


def test_lines_are_sorted_by_subscription_and_cover_both_sides() -> None:
    lines = reconcile(
        "2024-05",
        NOW,
        lag_hours=6,
        tolerance_percent=ONE_PERCENT,
        ledger={"charlie": 10, "alpha": 10},
        monitor={"bravo": MonitorTotals(10), "alpha": MonitorTotals(10)},
    )
    assert [(line.subscription_id, line.status) for line in lines] == [
        ("alpha", MATCHED),
        ("bravo", ONLY_IN_MONITOR),
        ("charlie", ONLY_IN_LEDGER),
    ]


def test_a_subscription_neither_side_counted_gets_no_line() -> None:
    lines = reconcile(
        "2024-05",
        NOW,
        lag_hours=6,
        tolerance_percent=ONE_PERCENT,
        ledger={"idle": 0},
        monitor={"idle": MonitorTotals(0, 0, 0)},
    )
    assert lines == []


def test_only_the_monitors_total_tokens_are_judged_not_the_split() -> None:
    line = reconcile(
        "2024-05",
        NOW,
        lag_hours=6,
        tolerance_percent=ONE_PERCENT,
        ledger={"sub": 100},
        monitor={"sub": MonitorTotals(total_tokens=100, prompt_tokens=7, completion_tokens=3)},
    )[0]
    assert line.status == MATCHED


def test_a_negative_tolerance_is_refused() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        reconcile("2024-05", NOW, lag_hours=6, tolerance_percent=Decimal(-1), ledger={}, monitor={})


@pytest.mark.parametrize(
    ("period", "bounds"),
    [
        pytest.param("2024-05", (utc(2024, 5, 1), utc(2024, 6, 1)), id="a month"),
        pytest.param("2024-12", (utc(2024, 12, 1), utc(2025, 1, 1)), id="december ends in the next year"),
        pytest.param("2024-02", (utc(2024, 2, 1), utc(2024, 3, 1)), id="a leap february"),
    ],
)
def test_a_period_is_a_half_open_utc_month(period: str, bounds: tuple[datetime, datetime]) -> None:
    assert period_bounds(period) == bounds


@pytest.mark.parametrize("period", ["2024-5", "2024-13", "2024-00", "24-05", "2024-05-01", ""])
def test_a_malformed_period_is_an_invalid_request(period: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        period_bounds(period)
    assert caught.value.field == "period"


@pytest.mark.parametrize(
    ("period", "now", "lag_hours", "window"),
    [
        pytest.param(
            "2024-05", utc(2024, 5, 20, 9), 6, (utc(2024, 5, 1), utc(2024, 5, 20)), id="whole days before now-lag"
        ),
        pytest.param(
            "2024-05", utc(2024, 5, 20, 5), 6, (utc(2024, 5, 1), utc(2024, 5, 19)), id="lag reaching back a day"
        ),
        pytest.param(
            "2024-05", utc(2024, 5, 20, 6), 6, (utc(2024, 5, 1), utc(2024, 5, 20)), id="lag ending on midnight"
        ),
        pytest.param(
            "2024-05",
            utc(2024, 5, 20, 5, 59, 59),
            6,
            (utc(2024, 5, 1), utc(2024, 5, 19)),
            id="a second before the day settles",
        ),
        pytest.param(
            "2024-05", utc(2024, 5, 20, 9), 0, (utc(2024, 5, 1), utc(2024, 5, 20)), id="no lag still stops at today"
        ),
        pytest.param("2024-05", utc(2024, 6, 3, 9), 6, (utc(2024, 5, 1), utc(2024, 6, 1)), id="a past month is whole"),
        pytest.param(
            "2024-05", utc(2024, 6, 1, 3), 6, (utc(2024, 5, 1), utc(2024, 5, 31)), id="its last day waits for the lag"
        ),
        pytest.param("2024-06", utc(2024, 6, 1, 3), 6, None, id="the first hours of a month judge nothing"),
        pytest.param("2024-06", utc(2024, 6, 1, 23), 6, None, id="nor does the rest of its first day"),
        pytest.param("2024-07", utc(2024, 6, 10), 6, None, id="a future month judges nothing"),
        pytest.param("2024-05", utc(2024, 5, 4, 1), 48, (utc(2024, 5, 1), utc(2024, 5, 2)), id="a lag of days"),
    ],
)
def test_the_judged_window_ends_at_the_midnight_before_now_minus_lag(
    period: str, now: datetime, lag_hours: int, window: tuple[datetime, datetime] | None
) -> None:
    assert judged_window(period, now, lag_hours) == window


def test_the_judged_window_reads_now_in_utc_whatever_its_offset() -> None:
    paris_summer = timezone(timedelta(hours=2))
    now = datetime(2024, 5, 20, 10, 0, tzinfo=paris_summer)  # 08:00 UTC
    assert judged_window("2024-05", now, 6) == (utc(2024, 5, 1), utc(2024, 5, 20))


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        judged_window("2024-05", datetime(2024, 5, 20), 6)


def test_an_empty_window_yields_no_lines_whatever_the_totals() -> None:
    lines = reconcile(
        "2024-06",
        utc(2024, 6, 1, 3),
        lag_hours=6,
        tolerance_percent=ONE_PERCENT,
        ledger={"sub": 5},
        monitor={"sub": MonitorTotals(500)},
    )
    assert lines == []


def test_ledger_totals_count_only_the_days_inside_the_window() -> None:
    rows = [
        row(date(2024, 4, 30), "sub", 1),
        row(date(2024, 5, 1), "sub", 10),
        row(date(2024, 5, 19), "sub", 100),
        row(date(2024, 5, 19), "other", 7),
        row(date(2024, 5, 20), "sub", 1000),
    ]
    assert ledger_totals(rows, (utc(2024, 5, 1), utc(2024, 5, 20))) == {"sub": 110, "other": 7}


@pytest.mark.parametrize(
    ("now", "grace_days", "periods"),
    [
        pytest.param(utc(2024, 5, 20, 2), 5, ["2024-05"], id="mid-month only the current month"),
        pytest.param(utc(2024, 6, 1, 2), 5, ["2024-05", "2024-06"], id="first day adds the previous month"),
        pytest.param(utc(2024, 6, 5, 23, 59), 5, ["2024-05", "2024-06"], id="the last grace day still does"),
        pytest.param(utc(2024, 6, 6, 0, 0), 5, ["2024-06"], id="the day after the grace does not"),
        pytest.param(utc(2025, 1, 2, 2), 5, ["2024-12", "2025-01"], id="january reaches back to december"),
        pytest.param(utc(2024, 3, 1, 2), 0, ["2024-03"], id="no grace days never reach back"),
    ],
)
def test_the_previous_month_is_reconciled_during_the_first_grace_days(
    now: datetime, grace_days: int, periods: list[str]
) -> None:
    assert periods_to_reconcile(now, grace_days) == periods


def test_reconciling_a_period_judges_the_ledger_days_of_the_monitors_window() -> None:
    source = RecordingSource({"sub": MonitorTotals(110)})
    rows = [row(date(2024, 5, 1), "sub", 10), row(date(2024, 5, 19), "sub", 100), row(date(2024, 5, 20), "sub", 5)]

    lines = reconcile_period(
        "2024-05", NOW, lag_hours=6, tolerance_percent=ONE_PERCENT, ledger_rows=rows, source=source
    )

    assert source.windows == [(utc(2024, 5, 1), utc(2024, 5, 20))]
    assert [(line.ledger_tokens, line.status) for line in lines] == [(110, MATCHED)]


def test_usage_in_the_last_hours_before_now_is_not_judged() -> None:
    source = RecordingSource({"sub": MonitorTotals(100)})
    today = row(date(2024, 5, 20), "sub", 5000)  # still arriving: the lag has not passed
    lines = reconcile_period(
        "2024-05",
        NOW,
        lag_hours=6,
        tolerance_percent=ONE_PERCENT,
        ledger_rows=[row(date(2024, 5, 19), "sub", 100), today],
        source=source,
    )
    assert [line.status for line in lines] == [MATCHED]


def test_a_period_with_no_judged_window_does_not_ask_the_monitor() -> None:
    source = RecordingSource({})
    lines = reconcile_period(
        "2024-06", utc(2024, 6, 1, 1), lag_hours=6, tolerance_percent=ONE_PERCENT, ledger_rows=[], source=source
    )
    assert (lines, source.windows) == ([], [])


def test_a_partial_monitor_result_fails_the_reconciliation_instead_of_being_judged() -> None:
    with pytest.raises(PartialResultError):
        reconcile_period(
            "2024-05",
            NOW,
            lag_hours=6,
            tolerance_percent=ONE_PERCENT,
            ledger_rows=[row(date(2024, 5, 1), "sub", 10)],
            source=FailingSource(),
        )


def test_a_csv_export_reconciles_like_log_analytics() -> None:
    source = CsvExportSource(EXPORT, namespace="openai", dimension="Subscription ID")
    rows = [
        row(date(2024, 5, 1), "aoai-product-subscription-one", 1500),
        row(date(2024, 5, 10), "aoai-product-subscription-one", 250),
        row(date(2024, 5, 15), "aoai-product-subscription-two", 3000),
        row(date(2024, 5, 18), "aoai-product-subscription-three", 42),
    ]

    lines = reconcile_period(
        "2024-05", NOW, lag_hours=6, tolerance_percent=ONE_PERCENT, ledger_rows=rows, source=source
    )

    assert [(line.subscription_id, line.ledger_tokens, line.monitor_tokens, line.status) for line in lines] == [
        ("aoai-product-subscription-one", 1750, 1750, MATCHED),
        ("aoai-product-subscription-three", 42, 0, ONLY_IN_LEDGER),
        ("aoai-product-subscription-two", 3000, 4010, LEDGER_SHORT),
    ]

"""Compares the ledger's token totals with Azure Monitor's, per subscription, and judges each."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from chargeback.domain import periods
from chargeback.domain.usage import UsageRow
from chargeback.reconciliation.monitor import MonitorSource, MonitorTotals

MATCHED = "matched"
LEDGER_SHORT = "ledger_short"
MONITOR_SHORT = "monitor_short"
ONLY_IN_LEDGER = "only_in_ledger"
ONLY_IN_MONITOR = "only_in_monitor"
STATUSES = (MATCHED, LEDGER_SHORT, MONITOR_SHORT, ONLY_IN_LEDGER, ONLY_IN_MONITOR)

_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class ReconciliationLine:
    """One subscription's ledger and monitor totals for the judged part of a period."""

    period: str
    subscription_id: str
    ledger_tokens: int
    monitor_tokens: int
    delta_tokens: int
    """monitor_tokens - ledger_tokens: positive when the event path lost usage."""
    delta_percent: Decimal | None
    """delta relative to the monitor total, None when the monitor saw nothing."""
    status: str


period_bounds = periods.month_bounds
"""The month ``YYYY-MM`` as [first instant, first instant of the next month), in UTC."""


def judged_window(period: str, now: datetime, lag_hours: int) -> tuple[datetime, datetime] | None:
    """The part of ``period`` that can be judged at ``now``, or None when there is none yet.

    The ledger is kept per UTC day, so the window ends at a midnight: the start of the day
    holding ``now - lag``. Usage in the last ``lag_hours`` may still be on its way through the
    event path (or into Log Analytics), so the day it falls in waits for a later run.
    """
    _require_aware(now)
    if lag_hours < 0:
        raise ValueError(f"the lag cannot be negative, got {lag_hours}")
    start, end = period_bounds(period)
    settled = (now.astimezone(UTC) - timedelta(hours=lag_hours)).replace(hour=0, minute=0, second=0, microsecond=0)
    end = min(end, settled)
    return (start, end) if start < end else None


def periods_to_reconcile(now: datetime, final_grace_days: int) -> list[str]:
    """The months a run at ``now`` reconciles, oldest first.

    Always the current month to date; during its first ``final_grace_days`` days also the
    previous month, whose last days only become judgeable after it has ended.
    """
    _require_aware(now)
    if final_grace_days < 0:
        raise ValueError(f"the grace days cannot be negative, got {final_grace_days}")
    today = now.astimezone(UTC)
    current = f"{today.year:04d}-{today.month:02d}"
    if today.day > final_grace_days:
        return [current]
    previous = today.replace(day=1) - timedelta(days=1)
    return [f"{previous.year:04d}-{previous.month:02d}", current]


def ledger_totals(rows: Iterable[UsageRow], window: tuple[datetime, datetime]) -> dict[str, int]:
    """Total tokens per subscription of the ledger rows whose UTC day lies in ``window``."""
    first, stop = window[0].astimezone(UTC).date(), window[1].astimezone(UTC).date()
    totals: dict[str, int] = {}
    for row in rows:
        if first <= row.key.day < stop:
            subscription = row.key.subscription_id
            totals[subscription] = totals.get(subscription, 0) + row.counters.total_tokens
    return totals


def judge(ledger_tokens: int, monitor_tokens: int, tolerance_percent: Decimal) -> str:
    """The status of one subscription's pair of totals; a delta exactly at tolerance matches."""
    if monitor_tokens == 0:
        return MATCHED if ledger_tokens == 0 else ONLY_IN_LEDGER
    if ledger_tokens == 0:
        return ONLY_IN_MONITOR
    delta = monitor_tokens - ledger_tokens
    with localcontext() as context:
        context.prec = len(str(monitor_tokens)) + len(str(tolerance_percent)) + 4  # the product is exact
        allowed = tolerance_percent * monitor_tokens
    if abs(delta) * 100 <= allowed:
        return MATCHED
    return LEDGER_SHORT if delta > 0 else MONITOR_SHORT


def delta_percent(ledger_tokens: int, monitor_tokens: int) -> Decimal | None:
    """(monitor - ledger) / monitor x 100, to the hundredth (half to even); None when monitor is 0."""
    if monitor_tokens == 0:
        return None
    with localcontext() as context:
        context.prec = max(28, len(str(abs(monitor_tokens - ledger_tokens))) + 6)
        ratio = Decimal(monitor_tokens - ledger_tokens) * 100 / Decimal(monitor_tokens)
        return ratio.quantize(_CENT, rounding=ROUND_HALF_EVEN)


def reconcile(
    period: str,
    now: datetime,
    *,
    lag_hours: int,
    tolerance_percent: Decimal,
    ledger: Mapping[str, int],
    monitor: Mapping[str, MonitorTotals],
) -> list[ReconciliationLine]:
    """Judge every subscription either side saw in the judged window of ``period``.

    ``ledger`` and ``monitor`` are the totals for ``judged_window(period, now, lag_hours)``;
    when that window is empty there is nothing to judge and no line. A subscription neither
    side counted a token for gets no line. Lines come sorted by subscription.
    """
    if tolerance_percent < 0 or not tolerance_percent.is_finite():
        raise ValueError(f"the tolerance must be a non-negative number, got {tolerance_percent}")
    if judged_window(period, now, lag_hours) is None:
        return []
    lines = []
    for subscription in sorted(set(ledger) | set(monitor)):
        ledger_tokens = ledger.get(subscription, 0)
        totals = monitor.get(subscription)
        monitor_tokens = totals.total_tokens if totals is not None else 0
        if ledger_tokens == 0 and monitor_tokens == 0:
            continue
        lines.append(
            ReconciliationLine(
                period=period,
                subscription_id=subscription,
                ledger_tokens=ledger_tokens,
                monitor_tokens=monitor_tokens,
                delta_tokens=monitor_tokens - ledger_tokens,
                delta_percent=delta_percent(ledger_tokens, monitor_tokens),
                status=judge(ledger_tokens, monitor_tokens, tolerance_percent),
            )
        )
    return lines


def reconcile_period(
    period: str,
    now: datetime,
    *,
    lag_hours: int,
    tolerance_percent: Decimal,
    ledger_rows: Iterable[UsageRow] | Callable[[tuple[datetime, datetime]], Mapping[str, int]],
    source: MonitorSource,
) -> list[ReconciliationLine]:
    """Reconcile ``period`` as of ``now``: read both sides for the judged window and judge them.

    ``ledger_rows`` is the ledger's side: its rows, or a function giving the window's totals per subscription.

    The monitor is not asked when there is no window yet. A ``MonitorError`` (a partial
    result included) propagates: an incomplete answer is never judged as if it were data.
    """
    window = judged_window(period, now, lag_hours)
    if window is None:
        return []
    monitor = source.token_totals(*window)
    return reconcile(
        period,
        now,
        lag_hours=lag_hours,
        tolerance_percent=tolerance_percent,
        ledger=ledger_rows(window) if callable(ledger_rows) else ledger_totals(ledger_rows, window),
        monitor=monitor,
    )


def _require_aware(moment: datetime) -> None:
    if moment.tzinfo is None:
        raise ValueError("now must be timezone-aware")

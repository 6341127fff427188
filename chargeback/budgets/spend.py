"""Month-to-date spend and its forecast, per subscription and cost center, priced by the report's engine.

Spend is :func:`chargeback.billing.pricing.price_usage` applied to the month's usage frame, summed
per subscription exactly as the report sums its lines, so a closed month's spend equals the final
report's usage cost of the same scope to the cent. Month to date, provisioned capacity is shared
out as far as it has accrued (its cost up to now), not the whole month's cost on the first day.

The forecast, for an open month, is::

    spent + metered spend of the last 7 days (at least one day's worth of time) per second
          × the seconds left in the month
          + each capacity share grown to the whole month's capacity cost

and, for a closed month, the spend itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np
import pandas as pd

from chargeback.billing.cost_centers import CostCenterMap
from chargeback.billing.prices import PriceSheet
from chargeback.billing.pricing import price_usage
from chargeback.domain import periods

FORECAST_WINDOW = timedelta(days=7)
"""How far back the forecast's daily rate looks."""
MIN_WINDOW = timedelta(days=1)
"""The shortest stretch of time the rate is taken over, so the first hour of a month is no guide."""


@dataclass(frozen=True, slots=True)
class Spend:
    """Spent so far and the forecast for the whole month, in the currency's minor units."""

    spent: int
    forecast: int


NOTHING = Spend(0, 0)


@dataclass(frozen=True)
class MonthSpend:
    """A month's spend at one moment, per subscription and per cost center."""

    period: str
    currency: str
    minor_units: int
    closed: bool
    by_subscription: Mapping[str, Spend]
    by_cost_center: Mapping[str, Spend]

    def subscription(self, subscription_id: str) -> Spend:
        return self.by_subscription.get(subscription_id, NOTHING)

    def cost_center(self, cost_center: str) -> Spend:
        return self.by_cost_center.get(cost_center, NOTHING)

    def money(self, minor: int) -> Decimal:
        return Decimal(minor).scaleb(-self.minor_units)


def month_spend(
    usage: pd.DataFrame | Iterable[pd.DataFrame],
    sheet: PriceSheet,
    cost_centers: CostCenterMap,
    period: str,
    now: datetime,
) -> MonthSpend:
    """Price ``period``'s usage (a frame, or a frame per day) as of ``now``; sum it per subscription and cost center."""
    end = periods.month_end(period)
    closed = now >= end
    priced = price_usage(usage, sheet, period, accrue_until=None if closed else now)
    lines = priced.lines
    spent = _sum_by(lines["subscription_id"], lines["cost_minor"])
    if closed:
        forecast = dict(spent)
    else:
        metered = _recent_metered(priced.daily, period, now)
        capacity = _capacity_growth(lines, sheet, period, now)
        seconds_left = Decimal(int((end - now).total_seconds()))
        forecast = {
            subscription: total
            + _round(metered.get(subscription, Decimal(0)) * seconds_left)
            + capacity.get(subscription, 0)
            for subscription, total in spent.items()
        }
    by_subscription = {name: Spend(spent[name], forecast[name]) for name in spent}
    return MonthSpend(
        period=period,
        currency=sheet.currency,
        minor_units=sheet.minor_units,
        closed=closed,
        by_subscription=by_subscription,
        by_cost_center=_by_cost_center(by_subscription, cost_centers),
    )


def _sum_by(names: pd.Series[str], values: pd.Series[int]) -> dict[str, int]:
    grouped = pd.Series(values.to_numpy(dtype=np.int64), index=names.astype(str).to_numpy()).groupby(level=0).sum()
    return {str(name): int(total) for name, total in grouped.items()}


def _recent_metered(daily: pd.DataFrame, period: str, now: datetime) -> dict[str, Decimal]:
    """Each subscription's metered spend per second over the last days (capacity shares aside)."""
    start = max(periods.month_start(period), _midnight(now) - FORECAST_WINDOW + timedelta(days=1))
    seconds = Decimal(int(max(now - start, MIN_WINDOW).total_seconds()))
    recent = daily[pd.to_datetime(daily["day"]) >= pd.Timestamp(start.replace(tzinfo=None))]
    totals = _sum_by(recent["subscription_id"], recent["metered_cost_minor"])
    return {subscription: Decimal(total) / seconds for subscription, total in totals.items()}


def _capacity_growth(lines: pd.DataFrame, sheet: PriceSheet, period: str, now: datetime) -> dict[str, int]:
    """What each subscription's capacity shares add by the month's end, at the shares' proportions so far."""
    shared = lines[lines["capacity_minor"] > 0]
    growth: dict[str, int] = {}
    for deployment, rows in shared.groupby("deployment", sort=True):
        accrued = sheet.provisioned_cost(str(deployment), period, until=now)
        whole = sheet.provisioned_cost(str(deployment), period)
        if accrued <= 0:
            continue
        for subscription, share in _sum_by(rows["subscription_id"], rows["capacity_minor"]).items():
            more = _round(Decimal(share) * whole / accrued) - share
            growth[subscription] = growth.get(subscription, 0) + more
    return growth


def _by_cost_center(by_subscription: Mapping[str, Spend], cost_centers: CostCenterMap) -> dict[str, Spend]:
    totals: dict[str, list[int]] = {}
    for subscription, spend in by_subscription.items():
        sums = totals.setdefault(cost_centers.lookup(subscription).cost_center, [0, 0])
        sums[0] += spend.spent
        sums[1] += spend.forecast
    return {center: Spend(spent, forecast) for center, (spent, forecast) in totals.items()}


def subscriptions_of(cost_center: str, cost_centers: CostCenterMap) -> list[str]:
    """The subscriptions the map puts in ``cost_center``, sorted."""
    return sorted(name for name, center in cost_centers.entries.items() if center.cost_center == cost_center)


def spend_of(spend: MonthSpend, scope: str, scope_id: str) -> Spend:
    """The spend of a budget's scope: one subscription or one cost center."""
    return spend.subscription(scope_id) if scope == "subscription" else spend.cost_center(scope_id)


def percent(spent: int, amount_minor: int) -> Decimal:
    """``spent`` as a percent of ``amount_minor``, two places, rounded down (100.00 only once reached)."""
    return (Decimal(spent) * 100 / Decimal(amount_minor)).quantize(Decimal("0.01"), rounding="ROUND_FLOOR")


def crossed(spent: int, amount_minor: int, thresholds: Iterable[int]) -> list[int]:
    """The thresholds (percents) ``spent`` has reached, exactly: spent × 100 ≥ threshold × amount."""
    return [threshold for threshold in thresholds if spent * 100 >= threshold * amount_minor]


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _midnight(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)

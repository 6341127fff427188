"""Builds a period's chargeback report: priced lines, roll-ups, reconciliation and totals."""

from __future__ import annotations

import io
import itertools
import json
import zipfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from chargeback.billing.allocation import money_column
from chargeback.billing.cost_centers import UNALLOCATED, CostCenterMap
from chargeback.billing.frames import LINE_KEYS, concat_usage_frames, normalise_usage_frame, usage_frame
from chargeback.billing.prices import PriceSheet
from chargeback.billing.pricing import price_usage
from chargeback.domain.periods import period_bounds
from chargeback.domain.usage import UsageRow
from chargeback.reconciliation.reconcile import ReconciliationLine
from chargeback.reports.model import BUDGET_COLUMNS, DEFAULT_INVOICE_ISSUER, Report, no_budgets

USAGE = "usage"
ADJUSTMENT = "adjustment"
CHARGE_CATEGORIES = (USAGE, ADJUSTMENT)

LINE_VIEW_COLUMNS = (
    "period",
    "charge_category",
    "adjusted_period",
    "subscription_id",
    "cost_center",
    "business_unit",
    "owner",
    "model",
    "deployment",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "unsplit_tokens",
    "total_tokens",
    "event_tokens",
    "llm_log_tokens",
    "input_price_per_1m",
    "cached_input_price_per_1m",
    "output_price_per_1m",
    "blended_price_per_1m",
    "cost",
    "currency",
    "pricing",
    "monitor_total_tokens",
    "delta_tokens",
    "reconciliation_status",
)
TOKEN_COLUMNS = (
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "unsplit_tokens",
    "total_tokens",
    "event_tokens",
    "llm_log_tokens",
)
"""Token counts of a line; ``event_tokens`` came as usage events, ``llm_log_tokens`` from the LLM logs."""
RECONCILIATION_COLUMNS = tuple(f.name for f in fields(ReconciliationLine))

LedgerInput = pd.DataFrame | Iterable[UsageRow] | Iterable[pd.DataFrame]
"""A period's usage: a usage frame, frames built in chunks, or ledger rows one by one."""


def ledger_frame(ledger: LedgerInput) -> pd.DataFrame:
    """A normalised usage frame from any :data:`LedgerInput`."""
    if isinstance(ledger, pd.DataFrame):
        return normalise_usage_frame(ledger)
    iterator = iter(ledger)
    first = next(iterator, None)
    if first is None:
        return concat_usage_frames([])
    if isinstance(first, pd.DataFrame):
        frames = itertools.chain([first], iterator)
        return concat_usage_frames(f for f in frames if isinstance(f, pd.DataFrame))
    if isinstance(first, UsageRow):
        rows = itertools.chain([first], iterator)
        return usage_frame(r for r in rows if isinstance(r, UsageRow))
    raise TypeError(f"ledger items must be UsageRow or DataFrame, got {type(first).__name__}")


def build_report(
    period: str,
    ledger: LedgerInput,
    price_sheet: PriceSheet,
    cost_centers: CostCenterMap,
    *,
    reconciliation: Sequence[ReconciliationLine] = (),
    adjustments: Iterable[tuple[str, UsageRow]] = (),
    generated_at: datetime | None = None,
    invoice_issuer: str = DEFAULT_INVOICE_ISSUER,
) -> Report:
    """Price ``period``'s usage, and late usage of earlier periods, into a :class:`Report`.

    ``adjustments`` are ``(original period, row)`` pairs counted after their period closed;
    they become ``adjustment`` lines priced at their own day's rates. Capacity of provisioned
    deployments was shared out when their period closed, so late tokens on them add nothing.
    """
    period_bounds(period)
    sheet = price_sheet
    priced = price_usage(ledger_frame(ledger), sheet, period)
    parts = [_tag(priced.lines, period, USAGE, None)]
    for original, rows in _by_period(adjustments, period).items():
        late = price_usage(usage_frame(rows), sheet, original, allocate_provisioned=False)
        parts.append(_tag(late.lines, period, ADJUSTMENT, original))
    detail = pd.concat(parts, ignore_index=True)
    detail["event_tokens"] = detail["total_tokens"] - detail["llm_log_tokens"]
    recon = _reconciliation_view(reconciliation, period)
    detail = _attach(detail, cost_centers, recon)
    order = detail["charge_category"].map({USAGE: 0, ADJUSTMENT: 1})
    detail = (
        detail.assign(_order=order)
        .sort_values(["_order", "adjusted_period", *LINE_KEYS], kind="stable", na_position="first")
        .drop(columns="_order")
        .reset_index(drop=True)
    )
    return _assemble(
        period,
        detail,
        priced.daily.drop(columns="metered_cost_minor"),
        recon,
        currency=sheet.currency,
        minor_units=sheet.minor_units,
        generated_at=(generated_at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0),
        invoice_issuer=invoice_issuer,
    )


def _assemble(
    period: str,
    detail: pd.DataFrame,
    daily: pd.DataFrame,
    recon: pd.DataFrame,
    *,
    currency: str,
    minor_units: int,
    generated_at: datetime,
    invoice_issuer: str,
) -> Report:
    """The report's views and totals, all derived from its priced lines (``detail``)."""
    lines = detail.loc[:, list(LINE_VIEW_COLUMNS)]
    details = detail.loc[:, ["rates_applied", "cost_minor", "mapped"]]
    money = _Money(minor_units)
    by_subscription = _by_subscription(detail, recon, money)
    unmapped = set(detail.loc[~detail["mapped"].astype(bool), "subscription_id"].astype(str))
    unallocated = by_subscription.loc[
        by_subscription["subscription_id"].isin(sorted(unmapped)),
        ["subscription_id", "requests", "total_tokens", "cost"],
    ].reset_index(drop=True)
    usage_minor = int(detail.loc[detail["charge_category"] == USAGE, "cost_minor"].sum())
    adjustment_minor = int(detail.loc[detail["charge_category"] == ADJUSTMENT, "cost_minor"].sum())
    unallocated_minor = int(detail.loc[~detail["mapped"].astype(bool), "cost_minor"].sum())
    totals: dict[str, Any] = {
        "lines": len(lines),
        "subscriptions": int(lines["subscription_id"].nunique()),
        "unallocated_subscriptions": len(unallocated),
        "requests": int(lines["requests"].sum()),
        **{name: int(lines[name].sum()) for name in TOKEN_COLUMNS},
        "usage_cost": money(usage_minor),
        "adjustment_cost": money(adjustment_minor),
        "unallocated_cost": money(unallocated_minor),
        "cost": money(usage_minor + adjustment_minor),
    }
    return Report(
        period=period,
        currency=currency,
        minor_units=minor_units,
        generated_at=generated_at,
        lines=lines,
        by_cost_center=_by_cost_center(detail, money),
        by_subscription=by_subscription,
        daily=daily,
        reconciliation=recon,
        unallocated=unallocated,
        totals=totals,
        line_details=details,
        invoice_issuer=invoice_issuer,
    )


def filtered(
    report: Report,
    *,
    subscription: str | None = None,
    cost_center: str | None = None,
    cost_centers: Collection[str] | None = None,
) -> Report:
    """The same report narrowed to one subscription, one cost center and/or a set of them, every view recomputed.

    Lines keep the cost they were priced at for the whole period (a PTU share stays the share
    of the whole deployment), so a filtered report's lines are exactly the full report's.
    """
    keep = pd.Series(True, index=report.lines.index)
    if subscription is not None:
        keep &= report.lines["subscription_id"] == subscription
    if cost_center is not None:
        keep &= report.lines["cost_center"] == cost_center
    if cost_centers is not None:
        keep &= report.lines["cost_center"].isin(sorted(cost_centers))
    detail = pd.concat([report.lines[keep], report.line_details[keep]], axis=1).reset_index(drop=True)
    subscriptions = set(detail["subscription_id"].astype(str))
    narrowed = _assemble(
        report.period,
        detail,
        report.daily[report.daily["subscription_id"].isin(sorted(subscriptions))].reset_index(drop=True),
        report.reconciliation[report.reconciliation["subscription_id"].isin(sorted(subscriptions))].reset_index(
            drop=True
        ),
        currency=report.currency,
        minor_units=report.minor_units,
        generated_at=report.generated_at,
        invoice_issuer=report.invoice_issuer,
    )
    return replace(
        narrowed,
        budgets=_budgets_of(
            report.budgets, subscription=subscription, cost_center=cost_center, cost_centers=cost_centers
        ),
    )


def _budgets_of(
    budgets: pd.DataFrame, *, subscription: str | None, cost_center: str | None, cost_centers: Collection[str] | None
) -> pd.DataFrame:
    """The budgets a narrowed report shows: its subscription's, or its cost centers' and their subscriptions'."""
    keep = pd.Series(True, index=budgets.index)
    if subscription is not None:
        keep &= (budgets["scope"] == "subscription") & (budgets["id"] == subscription)
    if cost_center is not None:
        keep &= budgets["cost_center"] == cost_center
    if cost_centers is not None:
        keep &= budgets["cost_center"].isin(sorted(cost_centers))
    return budgets[keep].reset_index(drop=True)


_BUNDLE_FRAMES = ("lines", "line_details", "daily", "reconciliation")


def to_bundle(report: Report) -> bytes:
    """The report's source frames in one zip (Parquet + JSON), to reload it exactly later."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name in _BUNDLE_FRAMES:
            frame_buffer = io.BytesIO()
            getattr(report, name).to_parquet(frame_buffer, index=False)
            bundle.writestr(f"{name}.parquet", frame_buffer.getvalue())
        if len(report.budgets):
            bundle.writestr("budgets.json", report.budgets.to_json(orient="records"))
        meta = {
            "period": report.period,
            "currency": report.currency,
            "minor_units": report.minor_units,
            "generated_at": report.generated_at.isoformat(),
            "invoice_issuer": report.invoice_issuer,
        }
        bundle.writestr("report.json", json.dumps(meta))
    return buffer.getvalue()


def from_bundle(data: bytes) -> Report:
    """Reload a report written by :func:`to_bundle`."""
    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        frames = {name: pd.read_parquet(io.BytesIO(bundle.read(f"{name}.parquet"))) for name in _BUNDLE_FRAMES}
        meta = json.loads(bundle.read("report.json"))
        budgets = json.loads(bundle.read("budgets.json")) if "budgets.json" in bundle.namelist() else []
    detail = pd.concat([frames["lines"], frames["line_details"]], axis=1)
    if "llm_log_tokens" not in detail.columns:
        # A bundle written before the LLM logs were a usage source: every token came as an event.
        detail = detail.assign(event_tokens=detail["total_tokens"], llm_log_tokens=0)
    report = _assemble(
        str(meta["period"]),
        detail,
        frames["daily"],
        frames["reconciliation"],
        currency=str(meta["currency"]),
        minor_units=int(meta["minor_units"]),
        generated_at=datetime.fromisoformat(meta["generated_at"]),
        invoice_issuer=str(meta["invoice_issuer"]),
    )
    return replace(report, budgets=budget_frame(budgets))


def budget_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Budget rows as the report keeps them (:data:`BUDGET_COLUMNS`, text throughout)."""
    if not rows:
        return no_budgets()
    return pd.DataFrame(
        {name: [None if row.get(name) is None else str(row[name]) for row in rows] for name in BUDGET_COLUMNS}
    )


@dataclass(frozen=True, slots=True)
class _Money:
    minor_units: int

    def __call__(self, minor: int) -> Decimal:
        return Decimal(int(minor)).scaleb(-self.minor_units)

    def column(self, minor: pd.Series[Any]) -> pd.Series[Any]:
        return money_column(minor, self.minor_units)


def _by_period(adjustments: Iterable[tuple[str, UsageRow]], period: str) -> dict[str, list[UsageRow]]:
    grouped: dict[str, list[UsageRow]] = {}
    for original, row in adjustments:
        period_bounds(original)
        if original >= period:
            raise ValueError(f"an adjustment's period {original} must be before the report's {period}")
        grouped.setdefault(original, []).append(row)
    return dict(sorted(grouped.items()))


def _tag(lines: pd.DataFrame, period: str, category: str, adjusted: str | None) -> pd.DataFrame:
    tagged = lines.copy()
    tagged.insert(0, "period", period)
    tagged.insert(1, "charge_category", category)
    tagged.insert(2, "adjusted_period", pd.Series([adjusted] * len(lines), dtype=object))
    return tagged


def _reconciliation_view(lines: Sequence[ReconciliationLine], period: str) -> pd.DataFrame:
    mine = [line for line in lines if line.period == period]
    seen: set[str] = set()
    for line in mine:
        if line.subscription_id in seen:
            raise ValueError(f"two reconciliation lines for subscription {line.subscription_id!r}")
        seen.add(line.subscription_id)
    mine.sort(key=lambda line: line.subscription_id)
    view = pd.DataFrame(
        {
            "period": pd.Series([line.period for line in mine], dtype="str"),
            "subscription_id": pd.Series([line.subscription_id for line in mine], dtype="str"),
            "ledger_tokens": pd.Series([line.ledger_tokens for line in mine], dtype=np.int64),
            "monitor_tokens": pd.Series([line.monitor_tokens for line in mine], dtype=np.int64),
            "delta_tokens": pd.Series([line.delta_tokens for line in mine], dtype=np.int64),
            "delta_percent": pd.Series([line.delta_percent for line in mine], dtype=object),
            "status": pd.Series([line.status for line in mine], dtype="str"),
        }
    )
    return view.loc[:, list(RECONCILIATION_COLUMNS)]


def _attach(detail: pd.DataFrame, cost_centers: CostCenterMap, recon: pd.DataFrame) -> pd.DataFrame:
    assigned = cost_centers.assign(detail["subscription_id"])
    detail = detail.assign(
        cost_center=assigned["cost_center"],
        business_unit=assigned["business_unit"],
        owner=assigned["owner"],
        mapped=assigned["mapped"],
    )
    usage = detail["charge_category"] == USAGE
    by_id = recon.set_index("subscription_id")
    monitor = detail["subscription_id"].map(by_id["monitor_tokens"]).where(usage)
    delta = detail["subscription_id"].map(by_id["delta_tokens"]).where(usage)
    status = detail["subscription_id"].map(by_id["status"]).where(usage)
    return detail.assign(
        monitor_total_tokens=monitor.astype("Int64"),
        delta_tokens=delta.astype("Int64"),
        reconciliation_status=pd.Series(
            [value if isinstance(value, str) else None for value in status], index=detail.index, dtype=object
        ),
    )


def _by_subscription(detail: pd.DataFrame, recon: pd.DataFrame, money: _Money) -> pd.DataFrame:
    adjustment_minor = detail["cost_minor"].where(detail["charge_category"] == ADJUSTMENT, 0)
    grouped = (
        detail.assign(adjustment_minor=adjustment_minor)
        .groupby("subscription_id", sort=True)
        .agg(
            cost_center=("cost_center", "first"),
            business_unit=("business_unit", "first"),
            owner=("owner", "first"),
            requests=("requests", "sum"),
            **{name: (name, "sum") for name in TOKEN_COLUMNS},
            adjustment_minor=("adjustment_minor", "sum"),
            cost_minor=("cost_minor", "sum"),
        )
        .reset_index()
    )
    by_id = recon.set_index("subscription_id")
    grouped["adjustment_cost"] = money.column(grouped["adjustment_minor"])
    grouped["cost"] = money.column(grouped["cost_minor"])
    grouped["ledger_tokens"] = grouped["subscription_id"].map(by_id["ledger_tokens"]).astype("Int64")
    grouped["monitor_total_tokens"] = grouped["subscription_id"].map(by_id["monitor_tokens"]).astype("Int64")
    grouped["delta_tokens"] = grouped["subscription_id"].map(by_id["delta_tokens"]).astype("Int64")
    status = grouped["subscription_id"].map(by_id["status"])
    grouped["reconciliation_status"] = pd.Series(
        [value if isinstance(value, str) else None for value in status], dtype=object
    )
    return grouped.drop(columns=["adjustment_minor", "cost_minor"])


def _by_cost_center(detail: pd.DataFrame, money: _Money) -> pd.DataFrame:
    grouped = (
        detail.groupby(["cost_center", "business_unit"], sort=True)
        .agg(
            subscriptions=("subscription_id", "nunique"),
            requests=("requests", "sum"),
            total_tokens=("total_tokens", "sum"),
            cost_minor=("cost_minor", "sum"),
        )
        .reset_index()
    )
    grouped["cost"] = money.column(grouped["cost_minor"])
    unallocated_last = (grouped["cost_center"] == UNALLOCATED).astype(int)
    return (
        grouped.assign(_last=unallocated_last)
        .sort_values(["_last", "cost_center", "business_unit"], kind="stable")
        .drop(columns=["_last", "cost_minor"])
        .reset_index(drop=True)
    )

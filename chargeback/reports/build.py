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
from chargeback.billing.frames import (
    LEDGER_COUNTERS,
    LINE_KEYS,
    concat_usage_frames,
    normalise_usage_frame,
    usage_frame,
)
from chargeback.billing.prices import TOKENS_PER_UNIT, PriceSheet
from chargeback.billing.pricing import LINE_COLUMNS, PROVISIONED_COLUMNS, price_usage
from chargeback.domain.periods import period_bounds
from chargeback.domain.usage import UsageRow
from chargeback.reconciliation.reconcile import ReconciliationLine
from chargeback.reports.model import BUDGET_COLUMNS, DEFAULT_INVOICE_ISSUER, Report, no_budgets

USAGE = "usage"
ADJUSTMENT = "adjustment"
"""Late usage of a month whose report is final, billed in a later report at its own days' prices."""
CORRECTION = "correction"
"""The difference made by re-pricing or re-mapping a final month, billed in a later report."""
CHARGE_CATEGORIES = (USAGE, ADJUSTMENT, CORRECTION)

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
CORRECTION_COLUMNS = (
    *LINE_KEYS,
    "cost_center",
    "business_unit",
    "owner",
    "pricing",
    *LEDGER_COUNTERS,
    "cost_minor",
)
"""A correction's lines as stored: what changed per line and cost center, tokens and cost in minor units."""
_ASSIGNED = ("cost_center", "business_unit", "owner")

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
    corrections: Iterable[tuple[str, pd.DataFrame]] = (),
    generated_at: datetime | None = None,
    invoice_issuer: str = DEFAULT_INVOICE_ISSUER,
) -> Report:
    """Price ``period``'s usage, and late usage of earlier periods, into a :class:`Report`.

    ``adjustments`` are ``(original period, row)`` pairs counted after their period closed;
    they become ``adjustment`` lines priced at their own day's rates. Capacity of provisioned
    deployments was shared out when their period closed, so late tokens on them add nothing.
    ``corrections`` are ``(original period, lines)`` in :data:`CORRECTION_COLUMNS`, priced
    already: they become ``correction`` lines with the cost centers they carry. Provisioned
    capacity accrues to ``generated_at``: a month to date bills the hours it has had.
    """
    period_bounds(period)
    sheet = price_sheet
    moment = (generated_at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    priced = price_usage(ledger_frame(ledger), sheet, period, accrue_until=moment)
    parts = [_tag(priced.lines, period, USAGE, None)]
    for original, rows in _by_period(adjustments, period).items():
        late = price_usage(usage_frame(rows), sheet, original, allocate_provisioned=False)
        parts.append(_tag(late.lines, period, ADJUSTMENT, original))
    detail = _attach(pd.concat(parts, ignore_index=True), cost_centers)
    fixes = [_correction_lines(lines, period, original, sheet) for original, lines in _checked(corrections, period)]
    detail = pd.concat([detail, *fixes], ignore_index=True) if fixes else detail
    detail["event_tokens"] = detail["total_tokens"] - detail["llm_log_tokens"]
    recon = _reconciliation_view(reconciliation, period)
    detail = _with_reconciliation(detail, recon)
    return _assemble(
        period,
        _ordered(detail),
        priced.daily.drop(columns="metered_cost_minor"),
        recon,
        priced.provisioned,
        currency=sheet.currency,
        minor_units=sheet.minor_units,
        generated_at=moment,
        invoice_issuer=invoice_issuer,
    )


def _ordered(detail: pd.DataFrame) -> pd.DataFrame:
    """Usage lines first, then adjustments, then corrections; each by period, line and cost center."""
    order = detail["charge_category"].map({USAGE: 0, ADJUSTMENT: 1, CORRECTION: 2})
    return (
        detail.assign(_order=order)
        .sort_values(["_order", "adjusted_period", *LINE_KEYS, "cost_center"], kind="stable", na_position="first")
        .drop(columns="_order")
        .reset_index(drop=True)
    )


def _checked(corrections: Iterable[tuple[str, pd.DataFrame]], period: str) -> list[tuple[str, pd.DataFrame]]:
    checked = []
    for original, lines in corrections:
        period_bounds(original)
        if original >= period:
            raise ValueError(f"a correction's period {original} must be before the report's {period}")
        checked.append((original, lines))
    return sorted(checked, key=lambda pair: pair[0])


def _correction_lines(lines: pd.DataFrame, period: str, original: str, sheet: PriceSheet) -> pd.DataFrame:
    """Stored correction lines as report lines: no unit prices (their cost is a difference)."""
    frame = lines.loc[:, list(CORRECTION_COLUMNS)].reset_index(drop=True)
    for name in (*LEDGER_COUNTERS, "cost_minor"):
        frame[name] = frame[name].to_numpy().astype(np.int64)
    for name in ("input_price_per_1m", "cached_input_price_per_1m", "output_price_per_1m", "blended_price_per_1m"):
        frame[name] = pd.Series([None] * len(frame), dtype=object)
    frame["rates_applied"] = np.zeros(len(frame), dtype=np.int64)
    frame["capacity_minor"] = np.zeros(len(frame), dtype=np.int64)  # a difference is not a capacity share
    frame["cost"] = money_column(frame["cost_minor"], sheet.minor_units)
    frame["currency"] = sheet.currency
    assigned = frame.loc[:, list(_ASSIGNED)].astype(str)
    tagged = _tag(frame.loc[:, list(LINE_COLUMNS)], period, CORRECTION, original)
    return tagged.assign(**{name: assigned[name] for name in _ASSIGNED}, mapped=assigned["cost_center"] != UNALLOCATED)


def _assemble(
    period: str,
    detail: pd.DataFrame,
    daily: pd.DataFrame,
    recon: pd.DataFrame,
    provisioned: pd.DataFrame,
    *,
    currency: str,
    minor_units: int,
    generated_at: datetime,
    invoice_issuer: str,
) -> Report:
    """The report's views and totals, all derived from its priced lines (``detail``)."""
    lines = detail.loc[:, list(LINE_VIEW_COLUMNS)]
    money = _Money(minor_units)
    unallocated = _unallocated(detail, money)
    return Report(
        period=period,
        currency=currency,
        minor_units=minor_units,
        generated_at=generated_at,
        lines=lines,
        by_cost_center=_by_cost_center(detail, money),
        by_subscription=_by_subscription(detail, recon, money),
        daily=daily,
        reconciliation=recon,
        unallocated=unallocated,
        totals=_totals(detail, daily, len(unallocated), money),
        line_details=detail.loc[:, ["rates_applied", "cost_minor", "mapped"]],
        invoice_issuer=invoice_issuer,
        provisioned=_provisioned_view(provisioned, money),
    )


def _totals(detail: pd.DataFrame, daily: pd.DataFrame, unallocated: int, money: _Money) -> dict[str, Any]:
    """Counts, tokens and cost of the report; cost apart per charge category and for unallocated lines.

    ``usage_cost`` = ``metered_cost`` (per-token and blended: the daily view's days add up to
    it) + ``provisioned_cost`` (the shares of provisioned capacity, idle capacity included).
    """
    minor = {
        category: int(detail.loc[detail["charge_category"] == category, "cost_minor"].sum())
        for category in CHARGE_CATEGORIES
    }
    metered = sum((Decimal(value) for value in daily["metered_cost"]), Decimal(0)) if len(daily) else Decimal(0)
    metered_minor = int(metered.scaleb(money.minor_units))
    return {
        "lines": len(detail),
        "subscriptions": int(detail["subscription_id"].nunique()),
        "unallocated_subscriptions": unallocated,
        "requests": int(detail["requests"].sum()),
        **{name: int(detail[name].sum()) for name in TOKEN_COLUMNS},
        "usage_cost": money(minor[USAGE]),
        "metered_cost": money(metered_minor),
        "provisioned_cost": money(minor[USAGE] - metered_minor),
        "adjustment_cost": money(minor[ADJUSTMENT]),
        "correction_cost": money(minor[CORRECTION]),
        "unallocated_cost": money(int(detail.loc[~detail["mapped"].astype(bool), "cost_minor"].sum())),
        "cost": money(sum(minor.values())),
    }


def _unallocated(detail: pd.DataFrame, money: _Money) -> pd.DataFrame:
    """The lines nobody's cost center pays, per subscription (a correction may move cost out: negative)."""
    unmapped = detail[~detail["mapped"].astype(bool)]
    grouped = (
        unmapped.groupby("subscription_id", sort=True)[["requests", "total_tokens", "cost_minor"]].sum().reset_index()
    )
    grouped["subscription_id"] = grouped["subscription_id"].astype(str)
    grouped["cost"] = money.column(grouped["cost_minor"])
    return grouped.loc[:, ["subscription_id", "requests", "total_tokens", "cost"]]


def _provisioned_view(provisioned: pd.DataFrame, money: _Money) -> pd.DataFrame:
    """Per provisioned deployment, its terms and money as Decimals (minor units kept for exact sums)."""
    view = provisioned.loc[:, list(PROVISIONED_COLUMNS)].reset_index(drop=True)
    for name in ("cost", "shared", "idle"):
        view[name] = money.column(view[f"{name}_minor"].astype(np.int64))
    view["effective_price_per_1m"] = pd.Series(
        [
            (cost * TOKENS_PER_UNIT / tokens).quantize(Decimal("0.0001")) if tokens else None
            for cost, tokens in zip(view["cost"], view["total_tokens"], strict=True)
        ],
        dtype=object,
    )
    return view


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
    # the days and reconciliation of the subscriptions whose usage is shown (a correction line alone
    # may show a subscription whose usage another cost center pays now)
    subscriptions = set(detail.loc[detail["charge_category"] == USAGE, "subscription_id"].astype(str))
    narrowed = _assemble(
        report.period,
        detail,
        report.daily[report.daily["subscription_id"].isin(sorted(subscriptions))].reset_index(drop=True),
        report.reconciliation[report.reconciliation["subscription_id"].isin(sorted(subscriptions))].reset_index(
            drop=True
        ),
        report.provisioned,
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


_BUNDLE_FRAMES = ("lines", "line_details", "daily", "reconciliation", "provisioned")


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
        stored = set(bundle.namelist())
        frames = {
            name: pd.read_parquet(io.BytesIO(bundle.read(f"{name}.parquet")))
            for name in _BUNDLE_FRAMES
            if f"{name}.parquet" in stored
        }
        meta = json.loads(bundle.read("report.json"))
        budgets = json.loads(bundle.read("budgets.json")) if "budgets.json" in bundle.namelist() else []
    detail = pd.concat([frames["lines"], frames["line_details"]], axis=1)
    if "llm_log_tokens" not in detail.columns:
        # A bundle written before the LLM logs were a usage source: every token came as an event.
        detail = detail.assign(event_tokens=detail["total_tokens"], llm_log_tokens=0)
    # A bundle written before the provisioned view: nothing to show of it.
    provisioned = frames.get("provisioned", pd.DataFrame(columns=list(PROVISIONED_COLUMNS)))
    report = _assemble(
        str(meta["period"]),
        detail.drop(columns=["monitor_total_tokens", "delta_tokens"], errors="ignore"),
        frames["daily"],
        frames["reconciliation"],
        _typed_provisioned(provisioned),
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


def _typed_provisioned(frame: pd.DataFrame) -> pd.DataFrame:
    """The provisioned frame as a bundle read it back: money as Decimals again, minor units as ints."""
    out = frame.loc[:, list(PROVISIONED_COLUMNS)].copy()
    for name in ("hours", "provisioned_hours", "cost_minor", "shared_minor", "idle_minor", "requests"):
        out[name] = out[name].astype(np.int64)
    for name in ("total_tokens", "subscriptions"):
        out[name] = out[name].astype(np.int64)
    out["units"] = out["units"].astype("Int64")
    for name in ("hourly_cost", "monthly_cost"):
        out[name] = pd.Series([_decimal(v) for v in out[name]], index=out.index, dtype=object)
    out["deployment"] = out["deployment"].astype(object)
    return out


def _decimal(value: Any) -> Decimal | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return Decimal(str(value))


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


def _attach(detail: pd.DataFrame, cost_centers: CostCenterMap) -> pd.DataFrame:
    """Each line's cost center, business unit and owner from the map, and whether it was mapped."""
    assigned = cost_centers.assign(detail["subscription_id"])
    return detail.assign(
        cost_center=assigned["cost_center"],
        business_unit=assigned["business_unit"],
        owner=assigned["owner"],
        mapped=assigned["mapped"],
    )


def _with_reconciliation(detail: pd.DataFrame, recon: pd.DataFrame) -> pd.DataFrame:
    """The reconciliation status of its subscription on each usage line; the figures stay per subscription."""
    usage = detail["charge_category"] == USAGE
    status = detail["subscription_id"].map(recon.set_index("subscription_id")["status"]).where(usage)
    return detail.assign(
        reconciliation_status=pd.Series(
            [value if isinstance(value, str) else None for value in status], index=detail.index, dtype=object
        ),
    )


def _by_subscription(detail: pd.DataFrame, recon: pd.DataFrame, money: _Money) -> pd.DataFrame:
    adjustment_minor = detail["cost_minor"].where(detail["charge_category"] == ADJUSTMENT, 0)
    correction_minor = detail["cost_minor"].where(detail["charge_category"] == CORRECTION, 0)
    grouped = (
        detail.assign(adjustment_minor=adjustment_minor, correction_minor=correction_minor)
        .groupby("subscription_id", sort=True)
        .agg(
            cost_center=("cost_center", "first"),
            business_unit=("business_unit", "first"),
            owner=("owner", "first"),
            requests=("requests", "sum"),
            **{name: (name, "sum") for name in TOKEN_COLUMNS},
            adjustment_minor=("adjustment_minor", "sum"),
            correction_minor=("correction_minor", "sum"),
            cost_minor=("cost_minor", "sum"),
        )
        .reset_index()
    )
    by_id = recon.set_index("subscription_id")
    grouped["adjustment_cost"] = money.column(grouped["adjustment_minor"])
    grouped["correction_cost"] = money.column(grouped["correction_minor"])
    grouped["cost"] = money.column(grouped["cost_minor"])
    grouped["ledger_tokens"] = grouped["subscription_id"].map(by_id["ledger_tokens"]).astype("Int64")
    grouped["monitor_total_tokens"] = grouped["subscription_id"].map(by_id["monitor_tokens"]).astype("Int64")
    grouped["delta_tokens"] = grouped["subscription_id"].map(by_id["delta_tokens"]).astype("Int64")
    status = grouped["subscription_id"].map(by_id["status"])
    grouped["reconciliation_status"] = pd.Series(
        [value if isinstance(value, str) else None for value in status], dtype=object
    )
    return grouped.drop(columns=["adjustment_minor", "correction_minor", "cost_minor"])


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

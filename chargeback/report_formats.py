"""Renders a report to bytes: CSV, JSON, XLSX, Parquet and a FOCUS 1.2 cost-and-usage CSV."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from chargeback.pricing import MAX_PRICE_PLACES, PTU_ALLOCATION, TOKENS_PER_UNIT, period_bounds

if TYPE_CHECKING:
    from chargeback.reports import Report

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet treat a text cell as something to execute."""

MONEY_COLUMNS = frozenset({"cost", "adjustment_cost", "metered_cost"})
PRICE_COLUMNS = frozenset(
    {"input_price_per_1m", "cached_input_price_per_1m", "output_price_per_1m", "blended_price_per_1m"}
)

FOCUS_COLUMNS = (
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "BillingCurrency",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "PricingQuantity",
    "PricingUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ServiceName",
    "ServiceCategory",
    "ProviderName",
    "PublisherName",
    "InvoiceIssuerName",
    "BillingAccountId",
    "BillingAccountName",
    "SubAccountId",
    "SubAccountName",
    "ResourceId",
    "ResourceName",
    "SkuId",
    "Tags",
    "x_CostCenter",
    "x_BusinessUnit",
    "x_Owner",
    "x_Model",
    "x_Deployment",
    "x_PricingMethod",
    "x_RatesApplied",
    "x_ChargeCategory",
    "x_AdjustedPeriod",
    "x_Requests",
    "x_PromptTokens",
    "x_CompletionTokens",
    "x_CachedTokens",
    "x_UnsplitTokens",
    "x_ReconciliationStatus",
)
FOCUS_SERVICE_NAME = "Azure OpenAI"
FOCUS_SERVICE_CATEGORY = "AI and Machine Learning"
FOCUS_PROVIDER = "Microsoft"


def neutralise(value: str) -> str:
    """``value`` made inert for spreadsheets: a leading ``'`` when it starts like a formula."""
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every text cell neutralised; numbers and Decimals are untouched."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if isinstance(column.dtype, pd.StringDtype):
            risky = column.str.startswith(FORMULA_TRIGGERS).fillna(value=False).astype(bool)
        elif column.dtype == object and pd.api.types.infer_dtype(column, skipna=True) in ("string", "mixed"):
            risky = column.map(lambda v: isinstance(v, str) and v.startswith(FORMULA_TRIGGERS)).astype(bool)
        else:
            continue
        if bool(risky.any()):
            fixed = column.astype(object).copy()
            fixed[risky] = ["'" + str(v) for v in column[risky]]
            out[name] = fixed
    return out


# --------------------------------------------------------------------------------------------
# CSV and JSON


def _text_cell(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


def _to_csv(frame: pd.DataFrame) -> str:
    """CSV text with exact cells: Decimals by ``str``, dates ISO 8601, missing values empty."""
    return frame.to_csv(index=False, lineterminator="\r\n", na_rep="")


def render_csv(report: Report) -> bytes:
    """The lines view as CSV, UTF-8 with a byte-order mark so Excel reads it as UTF-8.

    No total row: a file of lines stays safe to sum or pivot; the totals are in the JSON and
    XLSX renderings.
    """
    text = _to_csv(neutralise_frame(report.lines))
    return text.encode("utf-8-sig")


def _json_value(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, float):
        return None if np.isnan(value) else value
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value


def _json_column(column: pd.Series[Any]) -> list[Any]:
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iub":
        return list(column.tolist())
    return [_json_value(v) for v in column.to_numpy(dtype=object)]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    columns = list(frame.columns)
    values = [_json_column(frame[name]) for name in columns]
    return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]


def render_json(report: Report) -> bytes:
    """The report as one JSON document; money and prices are strings, so nothing is rounded."""
    document = {
        "period": report.period,
        "currency": report.currency,
        "minor_unit_digits": report.minor_units,
        "generated_at": _utc(report.generated_at),
        "totals": {name: _json_value(value) for name, value in report.totals.items()},
        "lines": _records(report.lines),
        "by_cost_center": _records(report.by_cost_center),
        "by_subscription": _records(report.by_subscription),
        "reconciliation": _records(report.reconciliation),
        "unallocated": _records(report.unallocated),
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------
# XLSX


def money_format(currency: str, minor_units: int) -> str:
    """An Excel number format showing the currency code and its minor-unit digits."""
    decimals = "." + "0" * minor_units if minor_units else ""
    return f'#,##0{decimals} "{currency}"'


PRICE_FORMAT = "0.00" + "#" * (MAX_PRICE_PLACES - 2)


def render_xlsx(report: Report) -> bytes:
    """A workbook with a sheet per view: bold frozen header, sized columns, money formatted."""
    workbook = Workbook(write_only=True)
    money = money_format(report.currency, report.minor_units)
    totals = pd.DataFrame({"measure": list(report.totals), "value": [_xlsx_value(v) for v in report.totals.values()]})
    sheets = (
        ("lines", report.lines),
        ("by cost center", report.by_cost_center),
        ("by subscription", report.by_subscription),
        ("daily", report.daily),
        ("reconciliation", report.reconciliation),
        ("unallocated", report.unallocated),
        ("totals", totals),
    )
    for title, frame in sheets:
        _write_sheet(workbook, title, neutralise_frame(frame), money)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _xlsx_value(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _write_sheet(workbook: Workbook, title: str, frame: pd.DataFrame, money: str) -> None:
    sheet = workbook.create_sheet(title)
    sheet.freeze_panes = "A2"
    columns = list(frame.columns)
    for index, name in enumerate(columns, start=1):
        sample = frame[name].head(200).to_numpy(dtype=object)
        width = max([len(name), *(len(_text_cell(v)) for v in sample)]) + 2
        sheet.column_dimensions[get_column_letter(index)].width = min(max(width, 8), 60)
    bold = Font(bold=True)
    header = []
    for name in columns:
        cell = WriteOnlyCell(sheet, value=name)
        cell.font = bold
        header.append(cell)
    sheet.append(header)
    formats: list[str | None] = [
        money
        if name in MONEY_COLUMNS or (title == "totals" and name == "value")
        else PRICE_FORMAT
        if name in PRICE_COLUMNS
        else "yyyy-mm-dd"
        if name == "day"
        else None
        for name in columns
    ]
    values = [frame[name].to_numpy(dtype=object) for name in columns]
    for row in zip(*values, strict=True):
        out: list[Any] = []
        for cell_value, number_format in zip(row, formats, strict=True):
            value = _xlsx_value(cell_value)
            if number_format is not None and value is not None and not isinstance(value, str):
                if title == "totals" and not isinstance(value, Decimal):
                    out.append(value)
                    continue
                cell = WriteOnlyCell(sheet, value=value)
                cell.number_format = number_format
                out.append(cell)
            else:
                out.append(value)
        sheet.append(out)


# --------------------------------------------------------------------------------------------
# Parquet


def render_parquet(report: Report) -> bytes:
    """The lines view as typed Parquet: int64 counters, decimal128 money and prices.

    The pandas schema is stored alongside, so ``pandas.read_parquet`` gives back nullable
    integers for the reconciliation columns and Decimals for money.
    """
    lines = report.lines
    money_type = pa.decimal128(18, report.minor_units)
    price_type = pa.decimal128(18, MAX_PRICE_PLACES)
    schema_fields: list[pa.Field] = []
    for name in lines.columns:
        column = lines[name]
        if name == "cost":
            kind = money_type
        elif name in PRICE_COLUMNS:
            kind = price_type
        elif column.dtype.kind in "iu" or isinstance(column.dtype, pd.Int64Dtype):
            kind = pa.int64()
        else:
            kind = pa.string()
        schema_fields.append(pa.field(name, kind, nullable=True))
    table = pa.Table.from_pandas(lines, schema=pa.schema(schema_fields), preserve_index=False)
    metadata = {
        **(table.schema.metadata or {}),
        b"period": report.period.encode(),
        b"currency": report.currency.encode(),
    }
    table = table.replace_schema_metadata(metadata)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# FOCUS 1.2


def render_focus(report: Report) -> bytes:
    """The lines as a FOCUS 1.2 cost-and-usage CSV (UTF-8, no byte-order mark).

    Usage lines are ``ChargeCategory`` Usage: tokens are consumption, and a subscription's
    share of provisioned throughput is its use of capacity the platform bought (the purchase
    itself belongs to the platform's own bill, not to a chargeback line), so those lines are
    Usage with ``ChargeFrequency`` Recurring and ``x_PricingMethod`` ptu_allocation. Late usage
    of a closed, already invoiced period is ``ChargeCategory`` Adjustment with ``ChargeClass``
    Correction, the charge period being the original month while the billing period is this
    one. Dates are ISO 8601 UTC and every end is exclusive.
    """
    frame = focus_frame(report)
    text = _to_csv(neutralise_frame(frame))
    return text.encode("utf-8")


def focus_frame(report: Report) -> pd.DataFrame:
    """The FOCUS rows of ``report`` with typed cells (Decimal money, int quantities)."""
    lines = report.lines
    details = report.line_details
    billing_start, billing_end = _period_iso(report.period)
    adjusted = lines["adjusted_period"].to_numpy(dtype=object)
    charge_periods = [_period_iso(p) if isinstance(p, str) else (billing_start, billing_end) for p in adjusted]
    pricing = lines["pricing"].astype(str)
    correction = lines["charge_category"] == "adjustment"
    costs = lines["cost"].to_numpy(dtype=object)
    totals = lines["total_tokens"].to_numpy()
    frame = pd.DataFrame(
        {
            "BilledCost": costs,
            "EffectiveCost": costs,
            "ListCost": costs,
            "ContractedCost": costs,
            "BillingCurrency": lines["currency"].astype(str),
            "BillingPeriodStart": billing_start,
            "BillingPeriodEnd": billing_end,
            "ChargePeriodStart": [start for start, _ in charge_periods],
            "ChargePeriodEnd": [end for _, end in charge_periods],
            "ChargeCategory": np.where(correction, "Adjustment", "Usage"),
            "ChargeClass": [("Correction" if flag else None) for flag in correction],
            "ChargeDescription": [
                _describe(*row)
                for row in zip(
                    lines["model"], lines["deployment"], totals, pricing, details["rates_applied"], strict=True
                )
            ],
            "ChargeFrequency": np.where(pricing == PTU_ALLOCATION, "Recurring", "Usage-Based"),
            "PricingQuantity": [Decimal(int(t)).scaleb(-6) for t in totals],
            "PricingUnit": f"{TOKENS_PER_UNIT // 1_000_000}M Tokens",
            "ConsumedQuantity": totals,
            "ConsumedUnit": "Tokens",
            "ServiceName": FOCUS_SERVICE_NAME,
            "ServiceCategory": FOCUS_SERVICE_CATEGORY,
            "ProviderName": FOCUS_PROVIDER,
            "PublisherName": FOCUS_PROVIDER,
            "InvoiceIssuerName": report.invoice_issuer,
            "BillingAccountId": lines["cost_center"].astype(str),
            "BillingAccountName": lines["business_unit"].astype(str),
            "SubAccountId": lines["subscription_id"].astype(str),
            "SubAccountName": lines["subscription_id"].astype(str),
            "ResourceId": lines["deployment"].astype(str),
            "ResourceName": lines["deployment"].astype(str),
            "SkuId": lines["model"].astype(str),
            "Tags": [
                json.dumps({"CostCenter": c, "BusinessUnit": b, "Owner": o}, ensure_ascii=False)
                for c, b, o in zip(lines["cost_center"], lines["business_unit"], lines["owner"], strict=True)
            ],
            "x_CostCenter": lines["cost_center"].astype(str),
            "x_BusinessUnit": lines["business_unit"].astype(str),
            "x_Owner": lines["owner"].astype(str),
            "x_Model": lines["model"].astype(str),
            "x_Deployment": lines["deployment"].astype(str),
            "x_PricingMethod": pricing,
            "x_RatesApplied": details["rates_applied"].to_numpy(),
            "x_ChargeCategory": lines["charge_category"].astype(str),
            "x_AdjustedPeriod": adjusted,
            "x_Requests": lines["requests"].to_numpy(),
            "x_PromptTokens": lines["prompt_tokens"].to_numpy(),
            "x_CompletionTokens": lines["completion_tokens"].to_numpy(),
            "x_CachedTokens": lines["cached_tokens"].to_numpy(),
            "x_UnsplitTokens": lines["unsplit_tokens"].to_numpy(),
            "x_ReconciliationStatus": lines["reconciliation_status"].to_numpy(dtype=object),
        },
        index=lines.index,
    )
    return frame.loc[:, list(FOCUS_COLUMNS)]


def _period_iso(period: str) -> tuple[str, str]:
    start, end = period_bounds(period)
    return f"{start.isoformat()}T00:00:00Z", f"{end.isoformat()}T00:00:00Z"


def _describe(model: str, deployment: str, tokens: int, pricing: str, rates: int) -> str:
    how: dict[str, Callable[[], str]] = {
        PTU_ALLOCATION: lambda: "share of provisioned throughput by tokens used",
        "per_token": lambda: "per-token prices" + (f" ({rates} rates)" if rates > 1 else ""),
        "blended": lambda: "blended price per 1M tokens" + (f" ({rates} rates)" if rates > 1 else ""),
    }
    return f"{tokens:,} {model} tokens on deployment {deployment}, {how.get(pricing, lambda: pricing)()}"

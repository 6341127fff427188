"""The registry of report formats: CSV, JSON, XLSX, Parquet, FOCUS 1.2 as CSV and Parquet, and the HTML page."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import xlsxwriter
from xlsxwriter.utility import xl_col_to_name

from chargeback.billing.prices import MAX_PRICE_PLACES, PTU_ALLOCATION, TOKENS_PER_UNIT
from chargeback.domain.periods import period_bounds
from chargeback.reports.model import Manifest, Report
from chargeback.reports.page import render_page

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet treat a text cell as something to execute."""

MONEY_COLUMNS = frozenset({"cost", "adjustment_cost", "metered_cost"})
PRICE_COLUMNS = frozenset(
    {"input_price_per_1m", "cached_input_price_per_1m", "output_price_per_1m", "blended_price_per_1m"}
)


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


def json_value(value: Any) -> Any:
    """A cell as plain JSON: Decimals as exact strings, numpy numbers as Python ones, missing as None."""
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
    return [json_value(v) for v in column.to_numpy(dtype=object)]


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
        "totals": {name: json_value(value) for name, value in report.totals.items()},
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


DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd h:mm:ss"
XLSX_MAX_ROWS = 1_048_576
XLSX_MAX_COLUMNS = 16_384
XLSX_ROWS_PER_BLOCK = 10_000
"""Rows rendered at a time, which bounds the memory a large sheet takes while it is written."""

_WORKBOOK_OPTIONS = {
    "constant_memory": True,
    "strings_to_formulas": False,
    "strings_to_numbers": False,
    "strings_to_urls": False,
}
_ONE_KIND = frozenset({"string", "decimal", "integer", "floating", "boolean", "date", "datetime", "empty"})
"""Kinds of object column whose equal values are written alike, so that they may be factorized."""
_EXCEL_EPOCH = date(1899, 12, 30)
_ESCAPED_ESCAPE = re.compile(r"(_x[0-9a-fA-F]{4}_)")
_CONTROL_CHARACTER = re.compile(r"([\x00-\x08\x0b-\x1f\ufffe\uffff])")

_Cells = Callable[[list[str], int], list[str]]
"""Gives a column's cells in the rows numbered as given, the first holding row ``start`` of the frame."""


@dataclass(frozen=True)
class _Styles:
    """The cell styles the sheets use, as the workbook's style indices (0 is the default style)."""

    header: int
    money: int
    price: int
    day: int
    timestamp: int


def render_xlsx(report: Report) -> bytes:
    """A workbook with a sheet per view: bold frozen header, sized columns, money formatted.

    Text is always written as text: never as a formula, a number or a link.
    """
    totals = pd.DataFrame({"measure": list(report.totals), "value": list(report.totals.values())})
    sheets = (
        ("lines", report.lines),
        ("by cost center", report.by_cost_center),
        ("by subscription", report.by_subscription),
        ("daily", report.daily),
        ("reconciliation", report.reconciliation),
        ("unallocated", report.unallocated),
        ("totals", totals),
    )
    buffer = io.BytesIO()
    # closing the workbook, even on an error, removes the temporary files its sheets' rows go to
    with xlsxwriter.Workbook(buffer, _WORKBOOK_OPTIONS) as workbook:
        styles = _Styles(
            header=_style(workbook, {"bold": True}),
            money=_style(workbook, {"num_format": money_format(report.currency, report.minor_units)}),
            price=_style(workbook, {"num_format": PRICE_FORMAT}),
            day=_style(workbook, {"num_format": DATE_FORMAT}),
            timestamp=_style(workbook, {"num_format": DATETIME_FORMAT}),
        )
        for title, frame in sheets:
            _write_sheet(workbook, title, neutralise_frame(frame), styles)
    return buffer.getvalue()


def _style(workbook: Any, properties: dict[str, Any]) -> int:
    # XlsxWriter numbers a format when a cell first uses it; the cells are not written through
    # its cell methods (see _write_sheet), so each format is numbered up front.
    return int(workbook.add_format(properties)._get_xf_index())


def _write_sheet(workbook: Any, title: str, frame: pd.DataFrame, styles: _Styles) -> None:
    """Add sheet ``title`` holding ``frame`` under a bold frozen header.

    Through XlsxWriter's cell methods, the 7.8 million cells of a month of 10,000 subscriptions
    and 20 models take some 30 s. So the rows are rendered here, a block of rows and a column at
    a time, as the XML those methods write, and appended to the sheet's row data: the file to
    which XlsxWriter streams rows in constant-memory mode and which it copies into the sheet
    when the workbook closes. XlsxWriter is pinned, as this relies on its inner workings.
    """
    rows, width = frame.shape
    if rows + 1 > XLSX_MAX_ROWS or width > XLSX_MAX_COLUMNS:
        raise ValueError(f"sheet {title!r} of {rows} rows and {width} columns is larger than Excel allows")
    sheet = workbook.add_worksheet(title)
    if not sheet.constant_memory:
        raise RuntimeError("the XLSX sheets must be written in XlsxWriter's constant-memory mode")
    # the used range, which XlsxWriter's cell methods would record; recorded first, as the row
    # data of a sheet with none is left behind when the workbook closes
    sheet._check_dimensions(0, 0)
    sheet._check_dimensions(rows, width - 1)
    sheet.freeze_panes(1, 0)
    names = [str(name) for name in frame.columns]
    for index, name in enumerate(names):
        sample = frame.iloc[:, index].head(200).to_numpy(dtype=object)
        size = max([len(name), *(len(_text_cell(v)) for v in sample)]) + 2
        # set_column would add Excel's cell padding; a width in pixels (7 to a character) is
        # stored exactly as given
        sheet.set_column_pixels(index, index, min(max(size, 8), 60) * sheet.max_digit_width)
    letters = [xl_col_to_name(index) for index in range(width)]
    row_data = sheet.row_data_fh
    header = [
        f'<c r="{letter}1"{_string_body(name, styles.header)}' for letter, name in zip(letters, names, strict=True)
    ]
    row_data.write(_rows_xml(["1"], [[cell] for cell in header]))
    columns = [
        _column_cells(frame.iloc[:, index], letter, *_column_style(title, name, styles), styles)
        for index, (letter, name) in enumerate(zip(letters, names, strict=True))
    ]
    for start in range(0, rows, XLSX_ROWS_PER_BLOCK):
        numbers = [str(number) for number in range(start + 2, min(start + XLSX_ROWS_PER_BLOCK, rows) + 2)]
        row_data.write(_rows_xml(numbers, [cells(numbers, start) for cells in columns]))


def _column_style(title: str, name: str, styles: _Styles) -> tuple[int, bool]:
    """The style of a column's numbers and dates, and whether only its Decimals take it."""
    if title == "totals" and name == "value":
        return styles.money, True
    if name in MONEY_COLUMNS:
        return styles.money, False
    if name in PRICE_COLUMNS:
        return styles.price, False
    if name == "day":
        return styles.day, False
    return 0, False


def _rows_xml(numbers: list[str], columns: list[list[str]]) -> str:
    """The ``<row>`` elements of rows ``numbers``, given each column's cells (``""`` when empty)."""
    stride = len(columns) + 2
    parts = [""] * (len(numbers) * stride)
    parts[0::stride] = [f'<row r="{number}">' for number in numbers]
    for index, cells in enumerate(columns, start=1):
        parts[index::stride] = cells
    parts[stride - 1 :: stride] = ["</row>"] * len(numbers)
    return "".join(parts)


def _column_cells(column: pd.Series[Any], letter: str, style: int, decimals_only: bool, styles: _Styles) -> _Cells:
    """The cells of ``column``, in column ``letter``, as XML; ``""`` for an empty cell.

    An integer column is formatted a block at a time. Any other column is factorized: its
    distinct values are formatted once, and each block picks its cells from them by code.
    """
    head = f'<c r="{letter}'
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iu" and not decimals_only:
        numbers = column.to_numpy()
        tail = f'"{_style_attribute(style)}><v>'
        return lambda rows, start: [
            f"{head}{row}{tail}{value}</v></c>"
            for row, value in zip(rows, numbers[start : start + len(rows)].tolist(), strict=True)
        ]
    if column.dtype != object or pd.api.types.infer_dtype(column, skipna=True) in _ONE_KIND:
        codes, distinct = pd.factorize(column)
        values = list(distinct)
    else:
        # mixed kinds, where equal values such as 1, 1.0 and True are still written differently
        codes, values = np.arange(len(column)), list(column.to_numpy(dtype=object))
    bodies = (_cell_body(value, style, styles, decimals_only=decimals_only) for value in values)
    # the last entry, the empty cell, is the one a missing value's code of -1 picks
    table = np.array([*(f'"{body}' if body else "" for body in bodies), ""], dtype=object)
    return lambda rows, start: [
        f"{head}{row}{body}" if body else ""
        for row, body in zip(rows, table[codes[start : start + len(rows)]].tolist(), strict=True)
    ]


def _cell_body(value: Any, style: int, styles: _Styles, *, decimals_only: bool) -> str:
    """The XML of a cell holding ``value`` after its reference, or ``""`` when it is empty.

    A Decimal or float is written to 16 significant digits (an integral one reads back as an
    int), an empty text is an empty cell, and a date or time outside a column of dates is
    formatted as one.
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, str):
        return _string_body(value, 0) if value else ""
    if decimals_only and not isinstance(value, Decimal):
        style = 0
    if isinstance(value, bool | np.bool_):
        return f'{_style_attribute(style)} t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int | np.integer):
        return f"{_style_attribute(style)}><v>{int(value)}</v></c>"
    if isinstance(value, Decimal | float | np.floating):
        return _number_body(value, style)
    if isinstance(value, datetime):
        return f"{_style_attribute(style or styles.timestamp)}><v>{_excel_time(value):.16g}</v></c>"
    if isinstance(value, date):
        return f"{_style_attribute(style or styles.day)}><v>{_excel_day(value)}</v></c>"
    raise TypeError(f"a {type(value).__name__} cannot be written to a spreadsheet cell")


def _number_body(value: Decimal | float | np.floating[Any], style: int) -> str:
    """A number to 16 significant digits; NaN is an empty cell, infinity is refused."""
    number = float(value)
    if np.isnan(number):
        return ""
    if np.isinf(number):
        raise ValueError(f"{value} cannot be written to a spreadsheet cell")
    return f"{_style_attribute(style)}><v>{number:.16g}</v></c>"


def _style_attribute(style: int) -> str:
    return f' s="{style}"' if style else ""


def _string_body(text: str, style: int) -> str:
    """An inline text cell, XML-escaped, with control characters as ``_xHHHH_`` as Excel has them."""
    text = _ESCAPED_ESCAPE.sub(r"_x005F\1", text)
    text = _CONTROL_CHARACTER.sub(lambda match: f"_x{ord(match.group(1)):04X}_", text)
    space = ' xml:space="preserve"' if text[:1].isspace() or text[-1:].isspace() else ""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f'{_style_attribute(style)} t="inlineStr"><is><t{space}>{text}</t></is></c>'


def _excel_day(day: date) -> int:
    """Excel's serial number of ``day``, which counts a 29 February 1900 before March 1900."""
    days = (day - _EXCEL_EPOCH).days
    return days - 1 if 0 < days <= 60 else days


def _excel_time(moment: datetime) -> float:
    if moment.tzinfo is not None:
        raise TypeError("spreadsheet cells have no time zone: convert the time to a naive one first")
    midnight = datetime.combine(moment.date(), datetime.min.time())
    return _excel_day(moment.date()) + (moment - midnight).total_seconds() / 86_400


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
#
# The chargeback is an internal invoice in FOCUS terms: the platform team that runs the gateway
# provides the service and issues the invoice (the report's ``invoice_issuer``), the model's
# maker publishes it, a cost center is the billing account and an APIM subscription its sub
# account. The README's FOCUS section maps every column to its source.

FOCUS_VERSION = "1.2"
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
    "CommitmentDiscountStatus",
    "ServiceName",
    "ServiceCategory",
    "ServiceSubcategory",
    "ProviderName",
    "PublisherName",
    "InvoiceIssuerName",
    "InvoiceId",
    "BillingAccountId",
    "BillingAccountName",
    "SubAccountId",
    "SubAccountName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "SkuId",
    "Tags",
    "x_CostCenter",
    "x_BusinessUnit",
    "x_Owner",
    "x_Model",
    "x_Deployment",
    "x_PricingMethod",
    "x_InputUnitPrice",
    "x_CachedInputUnitPrice",
    "x_OutputUnitPrice",
    "x_BlendedUnitPrice",
    "x_RatesApplied",
    "x_ChargeCategory",
    "x_AdjustedPeriod",
    "x_Requests",
    "x_PromptTokens",
    "x_CompletionTokens",
    "x_CachedTokens",
    "x_UnsplitTokens",
    "x_EventTokens",
    "x_LlmLogTokens",
    "x_ReconciliationStatus",
)
FOCUS_APPLICABILITY_CRITERIA = (
    "ACCOUNT_NAMING_SUPPORTED",
    "BILLING_BASED_ON_PROVISIONED_RESOURCES_SUPPORTED",
    "SUB_ACCOUNT_SUPPORTED",
    "TAGGING_SUPPORTED",
    "USAGE_MEASUREMENT_SUPPORTED",
)
"""What the export supports, named as the FOCUS validator names it: cost centers (billing
accounts) have names, APIM subscriptions are sub accounts, lines carry tags, tokens are measured,
and each line is billed for a model deployment. It supports no public price list, commitment
discount, region or availability zone, so the columns those would require are absent."""
FOCUS_SERVICE_NAME = "Azure OpenAI"
FOCUS_SERVICE_CATEGORY = "AI and Machine Learning"
FOCUS_SERVICE_SUBCATEGORY = "Generative AI"
FOCUS_RESOURCE_TYPE = "Model deployment"
FOCUS_PRICING_UNIT = f"{TOKENS_PER_UNIT} Tokens"
"""The unit the price sheet prices in, in FOCUS UnitFormat (a whole number and a plural unit)."""
FOCUS_CONSUMED_UNIT = "Tokens"
INVOICE_ID_PREFIX = "CB"
MODEL_PUBLISHERS = (
    (("gpt-", "o1", "o3", "o4", "text-embedding-", "dall-e", "whisper", "tts", "sora", "davinci", "babbage"), "OpenAI"),
    (("phi-", "mai-"), "Microsoft"),
    (("llama", "meta-llama"), "Meta"),
    (("mistral", "ministral", "codestral"), "Mistral AI"),
    (("deepseek",), "DeepSeek"),
    (("cohere",), "Cohere"),
    (("grok",), "xAI"),
)
"""Model-name prefixes (lower case) → the model's publisher."""
DEFAULT_PUBLISHER = "Microsoft"
"""The publisher of a model not listed above: Microsoft, whose Azure OpenAI service serves it."""

_FOCUS_MONEY = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost")
_FOCUS_PRICES = ("x_InputUnitPrice", "x_CachedInputUnitPrice", "x_OutputUnitPrice", "x_BlendedUnitPrice")
_FOCUS_DECIMALS = (*_FOCUS_MONEY, "PricingQuantity", "ConsumedQuantity", *_FOCUS_PRICES)
_FOCUS_TIMES = ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd")
_FOCUS_COUNTERS = (
    "x_RatesApplied",
    "x_Requests",
    "x_PromptTokens",
    "x_CompletionTokens",
    "x_CachedTokens",
    "x_UnsplitTokens",
    "x_EventTokens",
    "x_LlmLogTokens",
)
_QUANTITY_PLACES = len(str(TOKENS_PER_UNIT)) - 1


def render_focus(report: Report) -> bytes:
    """The lines as a FOCUS 1.2 cost-and-usage CSV (UTF-8, no byte-order mark).

    Every line is ``ChargeCategory`` Usage: tokens are consumption, and a subscription's share
    of provisioned throughput is its use of capacity the platform bought (the purchase itself
    belongs to the platform's own bill, not to a chargeback line), so those lines are Usage with
    ``ChargeFrequency`` Recurring and ``x_PricingMethod`` ptu_allocation. Late usage of a
    closed, already invoiced period is Usage with ``ChargeClass`` Correction, the charge period
    being the original month while the billing period is this one. Dates are ISO 8601 UTC and
    every end is exclusive. Decimal columns always carry a decimal point, so that a whole
    number is read as a decimal and not as an integer.
    """
    frame = neutralise_frame(focus_frame(report))
    money = _decimal_texts(frame["BilledCost"])
    for name in _FOCUS_DECIMALS:
        # the four costs are one amount
        frame[name] = money if name in _FOCUS_MONEY else _decimal_texts(frame[name])
    return _to_csv(frame).encode("utf-8")


def render_focus_parquet(report: Report) -> bytes:
    """The same FOCUS rows as typed Parquet, the form FinOps hubs and Fabric load.

    Money, quantities and unit prices are decimal128, the four period columns UTC timestamps,
    counters int64. The schema's metadata names the FOCUS version and the applicability
    criteria the export supports (:data:`FOCUS_APPLICABILITY_CRITERIA`).
    """
    return focus_parquet(report, focus_frame(report))


def focus_parquet(report: Report, frame: pd.DataFrame) -> bytes:
    """FOCUS rows of ``report`` as Parquet, typed as :func:`render_focus_parquet` types the export's
    columns; ``frame`` may leave some out or add others (text), as a delivery to a FinOps hub does."""
    times = {name: pd.to_datetime(frame[name], utc=True) for name in _FOCUS_TIMES if name in frame.columns}
    frame = frame.assign(**times)
    schema = _focus_schema(report.minor_units, [str(name) for name in frame.columns])
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    metadata = {
        b"focus_version": FOCUS_VERSION.encode(),
        b"focus_applicability_criteria": ",".join(FOCUS_APPLICABILITY_CRITERIA).encode(),
        b"period": report.period.encode(),
        b"currency": report.currency.encode(),
    }
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata), buffer)
    return buffer.getvalue()


def _focus_schema(minor_units: int, columns: Sequence[str] = FOCUS_COLUMNS) -> pa.Schema:
    kinds: dict[str, pa.DataType] = {
        **dict.fromkeys(_FOCUS_MONEY, pa.decimal128(18, minor_units)),
        **dict.fromkeys(_FOCUS_PRICES, pa.decimal128(18, MAX_PRICE_PLACES)),
        "PricingQuantity": pa.decimal128(19 + _QUANTITY_PLACES, _QUANTITY_PLACES),
        "ConsumedQuantity": pa.decimal128(20, 0),
        **dict.fromkeys(_FOCUS_TIMES, pa.timestamp("s", tz="UTC")),
        **dict.fromkeys(_FOCUS_COUNTERS, pa.int64()),
    }
    return pa.schema([pa.field(name, kinds.get(name, pa.string()), nullable=True) for name in columns])


def focus_frame(report: Report) -> pd.DataFrame:
    """The FOCUS rows of ``report`` with typed cells: Decimal money and quantities, int counters."""
    columns = {**_charges(report), **_parties(report), **_custom(report)}
    frame = pd.DataFrame(columns, index=report.lines.index)
    # an empty report's lists would otherwise make float columns
    return frame.loc[:, list(FOCUS_COLUMNS)].astype(dict.fromkeys(_FOCUS_DECIMALS, object))


def _charges(report: Report) -> dict[str, Any]:
    """What each line charges, for when, and how much of what it measures and prices."""
    lines = report.lines
    billing_start, billing_end = _period_iso(report.period)
    adjusted = lines["adjusted_period"].to_numpy(dtype=object)
    charge_periods = [_period_iso(p) if isinstance(p, str) else (billing_start, billing_end) for p in adjusted]
    pricing = lines["pricing"].astype(str)
    costs = lines["cost"].to_numpy(dtype=object)
    totals = lines["total_tokens"].to_numpy()
    tokens = [Decimal(t) for t in totals.tolist()]
    described = zip(
        lines["model"].to_numpy(dtype=object),
        lines["deployment"].to_numpy(dtype=object),
        totals,
        pricing.to_numpy(dtype=object),
        report.line_details["rates_applied"].to_numpy(),
        strict=True,
    )
    return {
        **dict.fromkeys(_FOCUS_MONEY, costs),
        "BillingCurrency": lines["currency"].astype(str),
        "BillingPeriodStart": billing_start,
        "BillingPeriodEnd": billing_end,
        "ChargePeriodStart": [start for start, _ in charge_periods],
        "ChargePeriodEnd": [end for _, end in charge_periods],
        "ChargeCategory": "Usage",
        "ChargeClass": [("Correction" if late else None) for late in lines["charge_category"] == "adjustment"],
        "ChargeDescription": [_describe(*row) for row in described],
        "ChargeFrequency": np.where(pricing == PTU_ALLOCATION, "Recurring", "Usage-Based"),
        "PricingQuantity": [t.scaleb(-_QUANTITY_PLACES) for t in tokens],
        "PricingUnit": FOCUS_PRICING_UNIT,
        "ConsumedQuantity": tokens,
        "ConsumedUnit": FOCUS_CONSUMED_UNIT,
        "CommitmentDiscountStatus": None,
    }


def _parties(report: Report) -> dict[str, Any]:
    """Who provides, publishes and invoices each line, to which account, for which resource."""
    lines = report.lines
    centers = lines["cost_center"].astype(str)
    return {
        "ServiceName": FOCUS_SERVICE_NAME,
        "ServiceCategory": FOCUS_SERVICE_CATEGORY,
        "ServiceSubcategory": FOCUS_SERVICE_SUBCATEGORY,
        "ProviderName": report.invoice_issuer,
        "PublisherName": _per_distinct(lines["model"], model_publisher),
        "InvoiceIssuerName": report.invoice_issuer,
        "InvoiceId": _per_distinct(centers, lambda center: invoice_id(report.period, center)),
        "BillingAccountId": centers,
        "BillingAccountName": lines["business_unit"].astype(str),
        "SubAccountId": lines["subscription_id"].astype(str),
        "SubAccountName": lines["subscription_id"].astype(str),
        "ResourceId": lines["deployment"].astype(str),
        "ResourceName": lines["deployment"].astype(str),
        "ResourceType": FOCUS_RESOURCE_TYPE,
        "SkuId": lines["model"].astype(str),
        "Tags": _tags(lines),
    }


def _custom(report: Report) -> dict[str, Any]:
    """The ``x_`` columns: the line's own detail, and the sheet's prices per pricing unit."""
    lines = report.lines
    return {
        "x_CostCenter": lines["cost_center"].astype(str),
        "x_BusinessUnit": lines["business_unit"].astype(str),
        "x_Owner": lines["owner"].astype(str),
        "x_Model": lines["model"].astype(str),
        "x_Deployment": lines["deployment"].astype(str),
        "x_PricingMethod": lines["pricing"].astype(str),
        "x_InputUnitPrice": _prices(lines["input_price_per_1m"]),
        "x_CachedInputUnitPrice": _prices(lines["cached_input_price_per_1m"]),
        "x_OutputUnitPrice": _prices(lines["output_price_per_1m"]),
        "x_BlendedUnitPrice": _prices(lines["blended_price_per_1m"]),
        "x_RatesApplied": report.line_details["rates_applied"].to_numpy(),
        "x_ChargeCategory": lines["charge_category"].astype(str),
        "x_AdjustedPeriod": lines["adjusted_period"].to_numpy(dtype=object),
        "x_Requests": lines["requests"].to_numpy(),
        "x_PromptTokens": lines["prompt_tokens"].to_numpy(),
        "x_CompletionTokens": lines["completion_tokens"].to_numpy(),
        "x_CachedTokens": lines["cached_tokens"].to_numpy(),
        "x_UnsplitTokens": lines["unsplit_tokens"].to_numpy(),
        "x_EventTokens": lines["event_tokens"].to_numpy(),
        "x_LlmLogTokens": lines["llm_log_tokens"].to_numpy(),
        "x_ReconciliationStatus": lines["reconciliation_status"].to_numpy(dtype=object),
    }


def invoice_id(period: str, cost_center: str) -> str:
    """The chargeback invoice of ``cost_center`` for ``period``: the same on every generation."""
    return f"{INVOICE_ID_PREFIX}-{period}-{cost_center}"


def model_publisher(model: str) -> str:
    """Who made ``model``, from its name (see :data:`MODEL_PUBLISHERS`)."""
    name = model.lower()
    return next((who for prefixes, who in MODEL_PUBLISHERS if name.startswith(prefixes)), DEFAULT_PUBLISHER)


def _per_distinct(values: pd.Series[Any], derive: Callable[[str], str]) -> npt.NDArray[np.object_]:
    """``derive`` of each value, computed once per distinct value."""
    codes, distinct = pd.factorize(values)
    return np.array([derive(str(value)) for value in distinct], dtype=object)[codes]


def _prices(prices: pd.Series[Any]) -> list[Decimal | None]:
    """A line's prices per 1M tokens, which is its :data:`FOCUS_PRICING_UNIT`; None where none is one price."""
    return [value if isinstance(value, Decimal) else None for value in prices.to_numpy(dtype=object)]


def _decimal_texts(values: pd.Series[Any]) -> list[str | None]:
    """Decimals in fixed-point notation, each with a decimal point even when it is whole."""
    texts: list[str | None] = []
    for value in values.to_numpy(dtype=object):
        if value is None:
            texts.append(None)
            continue
        text = str(value)
        if "E" in text:
            text = f"{value:f}"
        texts.append(text if "." in text else text + ".0")
    return texts


def _tags(lines: pd.DataFrame) -> list[str]:
    """FOCUS Tags per line as JSON; computed once per distinct (cost center, unit, owner)."""
    owners = zip(
        lines["cost_center"].to_numpy(dtype=object),
        lines["business_unit"].to_numpy(dtype=object),
        lines["owner"].to_numpy(dtype=object),
        strict=True,
    )
    cache: dict[tuple[Any, Any, Any], str] = {}
    tags = []
    for triple in owners:
        text = cache.get(triple)
        if text is None:
            center, unit, owner = triple
            text = cache[triple] = json.dumps(
                {"CostCenter": center, "BusinessUnit": unit, "Owner": owner}, ensure_ascii=False
            )
        tags.append(text)
    return tags


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


# --------------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True, slots=True)
class ReportFormat:
    """A way to render a report: its content type, file-name suffix and renderer."""

    name: str
    content_type: str
    suffix: str
    render: Callable[[Report, Manifest | None], bytes]

    def filename(self, period: str) -> str:
        return f"chargeback-{period}{self.suffix}"


def _plain(render: Callable[[Report], bytes]) -> Callable[[Report, Manifest | None], bytes]:
    """A renderer that needs only the report, not the generation's manifest."""
    return lambda report, _manifest: render(report)


FORMATS: dict[str, ReportFormat] = {
    spec.name: spec
    for spec in (
        ReportFormat("csv", "text/csv", ".csv", _plain(render_csv)),
        ReportFormat("json", "application/json", ".json", _plain(render_json)),
        ReportFormat(
            "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ".xlsx", _plain(render_xlsx)
        ),
        ReportFormat("parquet", "application/vnd.apache.parquet", ".parquet", _plain(render_parquet)),
        ReportFormat("focus", "text/csv", "-focus.csv", _plain(render_focus)),
        ReportFormat("focus-parquet", "application/vnd.apache.parquet", "-focus.parquet", _plain(render_focus_parquet)),
        ReportFormat("html", "text/html", ".html", lambda report, manifest: render_page(report, manifest or {})),
    )
}
"""Every format a report is stored and served in, in the order a generation writes them.

The page comes last: it links to the other files, which it reads from the manifest so far.
"""


def report_format(name: str) -> ReportFormat:
    """The registered format ``name``; ``ValueError`` for an unknown one."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown report format {name!r}; choose one of {sorted(FORMATS)}") from None


def render(report: Report, name: str, manifest: Manifest | None = None) -> bytes:
    """The report as a file in the registered format ``name``."""
    return report_format(name).render(report, manifest)

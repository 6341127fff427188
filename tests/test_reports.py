"""Reports: the views of a period, their totals, and each rendering read back by its own reader."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest
from openpyxl.utils import get_column_letter

from benchmarks.reports import ledger_frame
from chargeback.billing.cost_centers import UNALLOCATED, CostCenterMap, parse_cost_centers_csv
from chargeback.billing.frames import usage_frame
from chargeback.billing.prices import PTU_ALLOCATION, PriceSheet, parse_price_sheet
from chargeback.domain.usage import Counters, UsageKey, UsageRow
from chargeback.reconciliation.reconcile import LEDGER_SHORT, MONITOR_SHORT, ReconciliationLine
from chargeback.reports import build as reports
from chargeback.reports import formats as report_formats
from chargeback.reports.build import ADJUSTMENT, CORRECTION, LINE_VIEW_COLUMNS, USAGE, build_report
from chargeback.reports.formats import FORMATS, neutralise, render
from chargeback.reports.model import Report

PERIOD = "2026-11"
ONE = "aoai-product-subscription-one"
THREE = "aoai-product-subscription-three"
HR = "hr-chatbot-dev"
FORMULA = '=HYPERLINK("http://x","y")'

SHEET = {
    "currency": "USD",
    "models": [{"model": "gpt-4o", "input": "2.50", "cached_input": "1.25", "output": "10.00"}],
    "default": {"blended": "5.00"},
    "provisioned": [{"deployment": "gpt-4o-ptu", "monthly_cost": "100.00"}],
}
CENTERS = f"""subscription_id,cost_center,business_unit,owner
{ONE},CC-1001,Digital Products,one@contoso.com
{HR},CC-2001,Human Resources,hr@contoso.com
"""


def usage(
    day: date,
    subscription: str,
    model: str = "gpt-4o",
    deployment: str = "chat",
    *,
    prompt: int = 0,
    completion: int = 0,
    cached: int = 0,
    unsplit: int = 0,
) -> UsageRow:
    counters = Counters(
        requests=1,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        total_tokens=prompt + completion + unsplit,
        unsplit_requests=1 if unsplit else 0,
        unsplit_tokens=unsplit,
    )
    return UsageRow(UsageKey(day, subscription, model, deployment, "chat"), counters)


ROWS = [
    # 600,000 × 2.50 + 400,000 × 1.25 + 100,000 × 10.00 per 1M = 3.00
    usage(date(2026, 11, 3), ONE, prompt=1_000_000, cached=400_000, completion=100_000),
    # 100.00 of capacity split 100 : 100 : 100 → 33.34 (lowest id, ONE) / 33.33 / 33.33
    usage(date(2026, 11, 4), ONE, deployment="gpt-4o-ptu", prompt=60, completion=40),
    usage(date(2026, 11, 4), THREE, deployment="gpt-4o-ptu", prompt=60, completion=40),
    usage(date(2026, 11, 5), HR, deployment="gpt-4o-ptu", prompt=60, completion=40),
    # 2,000,000 unsplit × 5.00 per 1M = 10.00
    usage(date(2026, 11, 6), HR, "unknown", "unknown", unsplit=2_000_000),
    # 10,000 × 2.50 per 1M = 0.025 → 0.02 (half to even)
    usage(date(2026, 11, 7), FORMULA, prompt=10_000),
]
# late October usage: 1,000,000 × 2.50 per 1M = 2.50
ADJUSTMENTS = [("2026-10", usage(date(2026, 10, 31), ONE, prompt=1_000_000))]
RECONCILIATION = [
    ReconciliationLine(PERIOD, ONE, 1_100_100, 1_100_600, 500, Decimal("0.05"), LEDGER_SHORT),
    ReconciliationLine(PERIOD, HR, 2_000_100, 1_999_600, -500, Decimal("-0.03"), MONITOR_SHORT),
]
# a correction of September that moved 400,000 tokens (1.00) of three from unallocated to CC-1003
CORRECTED = (
    "2026-09",
    pd.DataFrame(
        {
            "subscription_id": [THREE, THREE],
            "model": ["gpt-4o", "gpt-4o"],
            "deployment": ["chat", "chat"],
            "cost_center": [UNALLOCATED, "CC-1003"],
            "business_unit": [UNALLOCATED, "Digital Products"],
            "owner": ["", "three@contoso.com"],
            "pricing": ["per_token", "per_token"],
            **{name: [0, 0] for name in ("requests", "completion_tokens", "cached_tokens", "unsplit_tokens")},
            **{name: [-400_000, 400_000] for name in ("prompt_tokens", "total_tokens")},
            "llm_log_tokens": [0, 0],
            "cost_minor": [-100, 100],
        }
    ),
)
GRAND_TOTAL = Decimal("115.52")  # 3.00 + 33.34 + 33.33 + 33.33 + 10.00 + 0.02 + 2.50


@pytest.fixture(name="sheet")
def fixture_sheet() -> PriceSheet:
    return parse_price_sheet(SHEET)


@pytest.fixture(name="centers")
def fixture_centers() -> CostCenterMap:
    return parse_cost_centers_csv(CENTERS)


@pytest.fixture(name="report")
def fixture_report(sheet: PriceSheet, centers: CostCenterMap) -> Report:
    return build_report(
        PERIOD,
        ROWS,
        sheet,
        centers,
        reconciliation=RECONCILIATION,
        adjustments=ADJUSTMENTS,
        generated_at=datetime(2026, 12, 2, 3, 4, 5, tzinfo=UTC),
    )


def line(report: Report, subscription: str, category: str = USAGE, deployment: str | None = None) -> pd.Series[Any]:
    lines = report.lines
    mine = lines[(lines["subscription_id"] == subscription) & (lines["charge_category"] == category)]
    if deployment is not None:
        mine = mine[mine["deployment"] == deployment]
    assert len(mine) == 1, mine
    return mine.iloc[0]


# --------------------------------------------------------------------------------------------
# Views


def test_lines_have_exactly_the_documented_columns(report: Report) -> None:
    assert tuple(report.lines.columns) == LINE_VIEW_COLUMNS


def test_the_grand_total_equals_the_sum_of_line_costs_exactly(report: Report) -> None:
    assert report.grand_total == sum(report.lines["cost"], Decimal(0)) == GRAND_TOTAL
    assert isinstance(report.grand_total, Decimal)


def test_cost_center_and_subscription_roll_ups_sum_to_the_grand_total(report: Report) -> None:
    assert sum(report.by_cost_center["cost"], Decimal(0)) == report.grand_total
    assert sum(report.by_subscription["cost"], Decimal(0)) == report.grand_total


def test_lines_carry_the_cost_center_of_their_subscription(report: Report) -> None:
    hr = line(report, HR, deployment="unknown")
    assert (hr["cost_center"], hr["business_unit"], hr["owner"]) == ("CC-2001", "Human Resources", "hr@contoso.com")


def test_provisioned_capacity_is_split_to_the_cent_among_its_users(report: Report) -> None:
    shares = {s: line(report, s, deployment="gpt-4o-ptu")["cost"] for s in (ONE, THREE, HR)}
    assert shares == {ONE: Decimal("33.34"), THREE: Decimal("33.33"), HR: Decimal("33.33")}
    assert line(report, ONE, deployment="gpt-4o-ptu")["pricing"] == PTU_ALLOCATION


def test_unmapped_subscriptions_are_listed_as_unallocated(report: Report) -> None:
    assert sorted(report.unallocated["subscription_id"]) == sorted([THREE, FORMULA])
    assert line(report, THREE)["cost_center"] == UNALLOCATED
    assert report.totals["unallocated_cost"] == Decimal("33.35")  # 33.33 + 0.02
    assert report.by_cost_center["cost_center"].iloc[-1] == UNALLOCATED


def test_late_usage_becomes_an_adjustment_line_for_its_original_period(report: Report) -> None:
    late = line(report, ONE, ADJUSTMENT)
    assert (late["period"], late["adjusted_period"], late["cost"]) == (PERIOD, "2026-10", Decimal("2.50"))
    assert line(report, ONE, deployment="chat")["adjusted_period"] is None
    assert report.totals["adjustment_cost"] == Decimal("2.50")


@pytest.fixture(name="corrected")
def fixture_corrected(sheet: PriceSheet, centers: CostCenterMap) -> Report:
    return build_report(
        PERIOD, ROWS, sheet, centers, reconciliation=RECONCILIATION, adjustments=ADJUSTMENTS, corrections=[CORRECTED]
    )


def test_a_correction_becomes_lines_with_the_cost_centers_it_carries(corrected: Report) -> None:
    fixes = corrected.lines[corrected.lines["charge_category"] == CORRECTION]
    assert fixes[["adjusted_period", "cost_center", "total_tokens", "cost"]].values.tolist() == [
        ["2026-09", "CC-1003", 400_000, Decimal("1.00")],
        ["2026-09", UNALLOCATED, -400_000, Decimal("-1.00")],
    ]
    assert list(corrected.lines["charge_category"].drop_duplicates()) == [USAGE, ADJUSTMENT, CORRECTION]
    assert fixes["input_price_per_1m"].isna().all()


def test_corrections_are_totalled_apart_and_in_the_grand_total(corrected: Report) -> None:
    assert corrected.totals["correction_cost"] == Decimal("0.00")
    assert corrected.grand_total == GRAND_TOTAL
    three = corrected.by_subscription.set_index("subscription_id").loc[THREE]
    assert (three["correction_cost"], three["cost"]) == (Decimal("0.00"), Decimal("33.33"))


def test_a_correction_moving_cost_out_of_unallocated_shows_there_as_negative(corrected: Report) -> None:
    unallocated = corrected.unallocated.set_index("subscription_id")
    assert unallocated.loc[THREE, "cost"] == Decimal("33.33") - Decimal("1.00")
    assert corrected.totals["unallocated_cost"] == Decimal("32.35")
    centers = corrected.by_cost_center.set_index("cost_center")
    assert centers.loc["CC-1003", "cost"] == Decimal("1.00")


@pytest.mark.parametrize(
    ("generated_at", "hours", "cost"),
    [
        (datetime(2026, 11, 7, 0, 0, tzinfo=UTC), 144, Decimal("20.00")),  # 144 of 720 hours of 100.00
        (datetime(2026, 11, 7, 0, 59, tzinfo=UTC), 144, Decimal("20.00")),  # an hour counts once it has ended
        (datetime(2026, 11, 16, 0, 0, tzinfo=UTC), 360, Decimal("50.00")),
        (datetime(2026, 12, 2, 0, 0, tzinfo=UTC), 720, Decimal("100.00")),  # the month has ended: all of it
    ],
)
def test_provisioned_capacity_accrues_hour_by_hour_until_the_month_ends(
    sheet: PriceSheet, centers: CostCenterMap, generated_at: datetime, hours: int, cost: Decimal
) -> None:
    rows = [usage(date(2026, 11, 3), ONE, deployment="gpt-4o-ptu", prompt=60)]
    report = build_report(PERIOD, rows, sheet, centers, generated_at=generated_at)
    assert line(report, ONE, deployment="gpt-4o-ptu")["cost"] == cost
    [capacity] = report.provisioned.to_dict("records")
    assert (capacity["cost"], capacity["hours"], capacity["provisioned_hours"]) == (cost, hours, 720)


def test_an_idle_deployment_accrues_to_unallocated_only_what_has_elapsed(
    sheet: PriceSheet, centers: CostCenterMap
) -> None:
    report = build_report(PERIOD, [], sheet, centers, generated_at=datetime(2026, 11, 7, tzinfo=UTC))
    assert line(report, "unallocated", deployment="gpt-4o-ptu")["cost"] == Decimal("20.00")
    [capacity] = report.provisioned.to_dict("records")
    assert (capacity["idle"], capacity["shared"], capacity["hours"]) == (Decimal("20.00"), Decimal("0.00"), 144)


def test_the_provisioned_view_says_what_the_capacity_cost_and_how_it_was_shared(report: Report) -> None:
    [capacity] = report.provisioned.to_dict("records")
    assert capacity["deployment"] == "gpt-4o-ptu"
    assert (capacity["monthly_cost"], capacity["hours"], capacity["provisioned_hours"]) == (Decimal("100.00"), 720, 720)
    assert (capacity["cost"], capacity["shared"], capacity["idle"]) == (
        Decimal("100.00"),
        Decimal("100.00"),
        Decimal("0.00"),
    )
    assert (capacity["subscriptions"], capacity["requests"], capacity["total_tokens"]) == (3, 3, 300)


def test_a_usage_line_carries_its_subscriptions_reconciliation_status(report: Report) -> None:
    assert line(report, ONE, deployment="chat")["reconciliation_status"] == LEDGER_SHORT


def test_subscription_level_reconciliation_figures_are_not_repeated_on_lines(report: Report) -> None:
    assert not {"monitor_total_tokens", "delta_tokens", "ledger_tokens"} & set(report.lines.columns)
    one = report.by_subscription.set_index("subscription_id").loc[ONE]
    assert (one["monitor_total_tokens"], one["delta_tokens"], one["reconciliation_status"]) == (
        1_100_600,
        500,
        LEDGER_SHORT,
    )


def test_the_reconciliation_status_is_empty_without_a_reconciliation_line(report: Report) -> None:
    assert line(report, THREE)["reconciliation_status"] is None


def test_the_reconciliation_view_has_the_reconciliation_line_fields(report: Report) -> None:
    assert list(report.reconciliation.columns) == [
        "period",
        "subscription_id",
        "ledger_tokens",
        "monitor_tokens",
        "delta_tokens",
        "delta_percent",
        "status",
    ]
    assert list(report.reconciliation["status"]) == [LEDGER_SHORT, MONITOR_SHORT]


def test_the_daily_view_has_tokens_per_day_per_subscription(report: Report) -> None:
    hr = report.daily[report.daily["subscription_id"] == HR]
    assert list(zip(hr["day"], hr["total_tokens"], strict=True)) == [
        (date(2026, 11, 5), 100),
        (date(2026, 11, 6), 2_000_000),
    ]


def test_row_counts_cover_every_view(report: Report) -> None:
    assert report.row_counts() == {
        "lines": 7,
        "by_cost_center": 3,
        "by_subscription": 4,
        "daily": 6,
        "reconciliation": 2,
        "unallocated": 2,
        "provisioned": 1,
    }


@pytest.mark.parametrize("shape", ["rows", "frame", "chunks"])
def test_the_ledger_may_be_rows_a_frame_or_frames_built_in_chunks(
    report: Report, sheet: PriceSheet, centers: CostCenterMap, shape: str
) -> None:
    ledger: Any = {
        "rows": iter(ROWS),
        "frame": usage_frame(ROWS),
        "chunks": (usage_frame(ROWS[i : i + 2]) for i in range(0, len(ROWS), 2)),
    }[shape]
    again = build_report(PERIOD, ledger, sheet, centers, reconciliation=RECONCILIATION, adjustments=ADJUSTMENTS)
    pd.testing.assert_frame_equal(again.lines, report.lines)


def test_an_adjustment_must_belong_to_an_earlier_period(sheet: PriceSheet, centers: CostCenterMap) -> None:
    with pytest.raises(ValueError, match="before"):
        build_report(PERIOD, [], sheet, centers, adjustments=[(PERIOD, ROWS[0])])


# --------------------------------------------------------------------------------------------
# Renderings


@pytest.mark.parametrize(
    ("fmt", "content_type", "filename"),
    [
        ("csv", "text/csv", "chargeback-2026-11.csv"),
        ("json", "application/json", "chargeback-2026-11.json"),
        ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "chargeback-2026-11.xlsx"),
        ("parquet", "application/vnd.apache.parquet", "chargeback-2026-11.parquet"),
        ("focus", "text/csv", "chargeback-2026-11-focus.csv"),
        ("html", "text/html", "chargeback-2026-11.html"),
        ("focus-parquet", "application/vnd.apache.parquet", "chargeback-2026-11-focus.parquet"),
    ],
)
def test_each_format_has_a_content_type_and_file_name(
    report: Report, fmt: str, content_type: str, filename: str
) -> None:
    spec = FORMATS[fmt]
    assert (spec.content_type, spec.filename(report.period)) == (content_type, filename)
    assert render(report, fmt)


def test_an_unknown_format_is_refused(report: Report) -> None:
    with pytest.raises(ValueError, match="unknown report format"):
        render(report, "pdf")


def test_the_csv_is_utf8_with_a_byte_order_mark_and_loads_with_pandas(report: Report) -> None:
    data = render(report, "csv")
    assert data.startswith(b"\xef\xbb\xbf")
    frame = pd.read_csv(io.BytesIO(data), encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert tuple(frame.columns) == LINE_VIEW_COLUMNS
    assert sum(Decimal(c) for c in frame["cost"]) == GRAND_TOTAL


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        (FORMULA, "'" + FORMULA),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("plain", "plain"),
        ("", ""),
    ],
)
def test_text_that_starts_like_a_formula_is_neutralised(text: str, safe: str) -> None:
    assert neutralise(text) == safe


def test_the_csv_neutralises_formula_text_but_not_negative_numbers(sheet: PriceSheet, centers: CostCenterMap) -> None:
    report = build_report(PERIOD, ROWS, sheet, centers, reconciliation=RECONCILIATION, corrections=[CORRECTED])
    frame = pd.read_csv(io.BytesIO(render(report, "csv")), encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert "'" + FORMULA in set(frame["subscription_id"])
    assert FORMULA not in set(frame["subscription_id"])
    assert {"-1.00", "-400000"} <= set(frame["cost"]) | set(frame["total_tokens"])


def test_the_json_is_structured_with_decimals_as_strings(report: Report) -> None:
    document = json.loads(render(report, "json"))
    assert set(document) >= {
        "period",
        "currency",
        "generated_at",
        "lines",
        "by_cost_center",
        "by_subscription",
        "totals",
        "reconciliation",
        "unallocated",
    }
    assert (document["period"], document["currency"]) == (PERIOD, "USD")
    assert document["generated_at"] == "2026-12-02T03:04:05Z"
    assert document["totals"]["cost"] == "115.52"
    assert {entry["cost"] for entry in document["lines"]} >= {"3.00", "33.34", "0.02"}
    assert all(isinstance(entry["total_tokens"], int) for entry in document["lines"])
    assert document["reconciliation"][1]["delta_percent"] == "-0.03"


def test_the_xlsx_has_a_sheet_per_view_with_numeric_money_in_currency_format(report: Report) -> None:
    workbook = openpyxl.load_workbook(io.BytesIO(render(report, "xlsx")))
    assert workbook.sheetnames[:5] == ["lines", "by cost center", "by subscription", "provisioned", "daily"]
    sheet = workbook["lines"]
    header = [cell.value for cell in sheet[1]]
    assert tuple(header) == LINE_VIEW_COLUMNS
    assert all(cell.font.bold for cell in sheet[1])
    assert sheet.freeze_panes == "A2"
    assert sheet.column_dimensions["D"].width > 10
    cost = sheet.cell(row=2, column=header.index("cost") + 1)
    assert isinstance(cost.value, int | float)
    assert "USD" in cost.number_format
    assert isinstance(sheet.cell(row=2, column=header.index("total_tokens") + 1).value, int)


@pytest.fixture(name="workbook")
def fixture_workbook(corrected: Report) -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(render(corrected, "xlsx")))


def test_every_sheet_has_a_frozen_header_and_an_autofilter_over_its_rows(workbook: openpyxl.Workbook) -> None:
    for sheet in workbook.worksheets:
        assert sheet.freeze_panes == "A2", sheet.title
        assert sheet.auto_filter.ref == f"A1:{get_column_letter(sheet.max_column)}{sheet.max_row}", sheet.title


def test_counts_have_thousands_separators_and_money_its_currency(workbook: openpyxl.Workbook) -> None:
    lines = workbook["lines"]
    header = [cell.value for cell in lines[1]]
    first = {name: lines.cell(row=2, column=index + 1) for index, name in enumerate(header)}
    assert first["total_tokens"].number_format == first["requests"].number_format == "#,##0"
    assert first["cost"].number_format == '#,##0.00 "USD"'
    recon = workbook["reconciliation"]
    percent = [cell.value for cell in recon[1]].index("delta_percent") + 1
    assert recon.cell(row=2, column=percent).number_format == '0.00" %"'


def test_subscription_level_reconciliation_figures_are_on_the_subscription_sheet_only(
    workbook: openpyxl.Workbook,
) -> None:
    figures = {"ledger_tokens", "monitor_total_tokens", "delta_tokens"}
    assert figures <= {cell.value for cell in workbook["by subscription"][1]}
    assert not figures & {cell.value for cell in workbook["lines"][1]}


def test_the_daily_sheet_adds_up_to_the_metered_cost_the_totals_state(workbook: openpyxl.Workbook) -> None:
    daily = workbook["daily"]
    column = [cell.value for cell in daily[1]].index("metered_cost") + 1
    days = sum(Decimal(str(daily.cell(row=row, column=column).value)) for row in range(2, daily.max_row + 1))
    totals = {row[0].value: row for row in workbook["totals"].iter_rows(min_row=2)}
    assert days == Decimal(str(totals["metered_cost"][1].value))
    assert "daily sheet" in totals["metered_cost"][2].value


def test_the_provisioned_sheet_says_what_the_capacity_cost_and_who_shared_it(workbook: openpyxl.Workbook) -> None:
    sheet = workbook["provisioned"]
    header = [cell.value for cell in sheet[1]]
    row = {name: sheet.cell(row=2, column=index + 1).value for index, name in enumerate(header)}
    assert (row["deployment"], row["monthly_cost"], row["hours"], row["cost"], row["idle"]) == (
        "gpt-4o-ptu",
        100,
        720,
        100,
        0,
    )
    assert not [name for name in header if name.endswith("_minor")]


def test_the_about_sheet_explains_every_column_of_every_sheet(workbook: openpyxl.Workbook) -> None:
    about = {(row[0].value, row[1].value): row[2].value for row in workbook["about"].iter_rows(min_row=2)}
    for sheet in workbook.worksheets:
        for cell in sheet[1]:
            assert about.get((sheet.title, cell.value)), (sheet.title, cell.value)
    jargon = ("unsplit_tokens", "event_tokens", "llm_log_tokens", "blended_price_per_1m")
    assert all(about[("lines", name)] for name in jargon)
    assert "ptu_allocation" in about[("lines", "pricing")]


def test_the_xlsx_neutralises_formula_text(report: Report) -> None:
    workbook = openpyxl.load_workbook(io.BytesIO(render(report, "xlsx")))
    sheet = workbook["lines"]
    texts = [cell.value for row in sheet.iter_rows(min_row=2) for cell in row if isinstance(cell.value, str)]
    assert "'" + FORMULA in texts
    assert not any(text.startswith("=") for text in texts)
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)


def test_the_xlsx_writes_text_starting_with_equals_as_a_text_cell_not_a_formula(
    report: Report, monkeypatch: pytest.MonkeyPatch
) -> None:
    # without the neutralising quote, the formula-like text reaches the workbook as it is
    monkeypatch.setattr(report_formats, "neutralise_frame", lambda frame: frame)
    workbook = openpyxl.load_workbook(io.BytesIO(render(report, "xlsx")))
    sheet = workbook["lines"]
    cells = [cell for row in sheet.iter_rows(min_row=2) for cell in row if cell.value == FORMULA]
    assert cells
    assert all(cell.data_type == "s" for cell in cells)
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)


def test_the_xlsx_keeps_text_that_looks_like_a_number_or_a_link_as_text(
    sheet: PriceSheet, centers: CostCenterMap
) -> None:
    odd = ["00123", "1e5", "https://contoso.example/x", " padded ", "R&D <lab>"]
    report = build_report(PERIOD, [usage(date(2026, 11, 3), name, prompt=1_000) for name in odd], sheet, centers)
    lines = openpyxl.load_workbook(io.BytesIO(render(report, "xlsx")))["lines"]
    column = [cell.value for cell in lines[1]].index("subscription_id") + 1
    cells = [lines.cell(row=row, column=column) for row in range(2, lines.max_row + 1)]
    kinds = {cell.value: cell.data_type for cell in cells}
    assert {name: kinds.get(name) for name in odd} == dict.fromkeys(odd, "s")


def test_the_xlsx_has_real_dates_formatted_totals_and_empty_missing_values(report: Report) -> None:
    workbook = openpyxl.load_workbook(io.BytesIO(render(report, "xlsx")))
    assert workbook.sheetnames == [
        "lines",
        "by cost center",
        "by subscription",
        "provisioned",
        "daily",
        "reconciliation",
        "unallocated",
        "totals",
        "about",
    ]
    daily = workbook["daily"]
    assert daily["A1"].value == "day"
    assert daily["A2"].value == datetime.combine(report.daily["day"].iloc[0], datetime.min.time())
    assert daily["A2"].number_format == "yyyy-mm-dd"
    totals = {row[0].value: row[1] for row in workbook["totals"].iter_rows(min_row=2)}
    assert totals["cost"].value == float(GRAND_TOTAL)
    assert totals["cost"].number_format == '#,##0.00 "USD"'
    assert totals["lines"].value == len(report.lines)
    assert totals["lines"].number_format == "#,##0"
    lines = workbook["lines"]
    header = [cell.value for cell in lines[1]]
    usage_row = list(report.lines["charge_category"]).index(USAGE) + 2
    assert lines.cell(row=usage_row, column=header.index("adjusted_period") + 1).value is None
    price = lines.cell(row=usage_row, column=header.index("input_price_per_1m") + 1)
    assert (price.value, price.number_format) == (2.5, "#,##0.00####")


def xlsx_cells(data: bytes) -> dict[str, list[list[tuple[Any, str, str]]]]:
    """Every cell of every sheet: value, type and number format."""
    workbook = openpyxl.load_workbook(io.BytesIO(data))
    return {
        sheet.title: [[(cell.value, cell.data_type, cell.number_format) for cell in row] for row in sheet.iter_rows()]
        for sheet in workbook.worksheets
    }


def test_the_xlsx_is_the_same_whatever_block_of_rows_it_is_written_in(
    report: Report, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = xlsx_cells(render(report, "xlsx"))
    monkeypatch.setattr(report_formats, "XLSX_ROWS_PER_BLOCK", 2)
    assert xlsx_cells(render(report, "xlsx")) == whole
    assert len(whole["lines"]) == len(report.lines) + 1


def test_the_parquet_reads_back_with_pandas_typed(report: Report) -> None:
    data = render(report, "parquet")
    schema = pq.read_schema(io.BytesIO(data))
    assert str(schema.field("cost").type) == "decimal128(18, 2)"
    assert str(schema.field("total_tokens").type) == "int64"
    frame = pd.read_parquet(io.BytesIO(data))
    assert tuple(frame.columns) == LINE_VIEW_COLUMNS
    assert frame["total_tokens"].dtype == np.int64
    assert sum(frame["cost"], Decimal(0)) == GRAND_TOTAL
    assert list(frame["subscription_id"]) == list(report.lines["subscription_id"])


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_an_empty_period_renders_in_every_format(sheet: PriceSheet, centers: CostCenterMap, fmt: str) -> None:
    quiet = parse_price_sheet({key: value for key, value in SHEET.items() if key != "provisioned"})
    report = build_report(PERIOD, [], quiet, centers)
    assert report.grand_total == Decimal("0.00")
    assert render(report, fmt)


# --------------------------------------------------------------------------------------------
# Scale


@pytest.mark.slow
def test_a_month_of_ten_thousand_subscriptions_and_twenty_models_prices_and_renders_whole(
    sheet: PriceSheet, centers: CostCenterMap
) -> None:
    subscriptions, models, days = 10_000, 20, 31
    report = build_report("2026-12", ledger_frame(subscriptions, models, days), sheet, centers)
    assert len(report.lines) >= subscriptions * models
    assert report.grand_total == sum(report.lines["cost"], Decimal(0))
    workbook = openpyxl.load_workbook(io.BytesIO(render(report, "xlsx")), read_only=True)
    assert len(report.daily) == subscriptions * days
    last_column = get_column_letter(len(LINE_VIEW_COLUMNS))
    assert workbook["lines"].calculate_dimension() == f"A1:{last_column}{len(report.lines) + 1}"
    assert workbook["daily"].calculate_dimension() == f"A1:J{len(report.daily) + 1}"
    last = next(workbook["daily"].iter_rows(min_row=len(report.daily) + 1, values_only=True))
    assert last[:2] == (datetime(2026, 12, 31), report.daily["subscription_id"].iloc[-1])


@pytest.mark.parametrize("fmt", ["csv", "json", "focus", "html"])
def test_a_report_reloaded_from_its_bundle_renders_the_same_file(report: Report, corrected: Report, fmt: str) -> None:
    for original in (report, corrected):
        assert render(reports.from_bundle(reports.to_bundle(original)), fmt) == render(original, fmt)


def test_a_report_reloaded_from_its_bundle_renders_the_same_workbook(report: Report, corrected: Report) -> None:
    for original in (report, corrected):
        reloaded = reports.from_bundle(reports.to_bundle(original))
        assert xlsx_cells(render(reloaded, "xlsx")) == xlsx_cells(render(original, "xlsx"))


def test_filtering_by_subscription_keeps_its_lines_and_recomputes_every_total(report: Report) -> None:
    subscription = str(report.lines["subscription_id"].iloc[0])
    narrowed = reports.filtered(report, subscription=subscription)
    mine = report.lines[report.lines["subscription_id"] == subscription]
    assert set(narrowed.lines["subscription_id"]) == {subscription}
    assert narrowed.grand_total == sum(mine["cost"], Decimal(0))
    assert set(narrowed.by_subscription["subscription_id"]) == {subscription}
    assert set(narrowed.daily["subscription_id"]) <= {subscription}
    assert int(narrowed.by_cost_center["total_tokens"].sum()) == int(mine["total_tokens"].sum())


def test_usage_cost_is_metered_plus_provisioned_and_the_days_add_up_to_the_metered(report: Report) -> None:
    totals = report.totals
    assert totals["usage_cost"] == totals["metered_cost"] + totals["provisioned_cost"]
    assert totals["provisioned_cost"] == Decimal("100.00")
    assert sum(report.daily["metered_cost"], Decimal(0)) == totals["metered_cost"] == Decimal("13.02")


def test_a_cost_center_that_a_correction_alone_reaches_sees_that_line_and_no_days(corrected: Report) -> None:
    narrowed = reports.filtered(corrected, cost_center="CC-1003")
    assert narrowed.lines[["charge_category", "cost"]].values.tolist() == [[CORRECTION, Decimal("1.00")]]
    assert narrowed.daily.empty
    assert (narrowed.totals["metered_cost"], narrowed.totals["provisioned_cost"]) == (Decimal(0), Decimal(0))


def test_filtering_by_an_unknown_cost_center_leaves_an_empty_report(report: Report) -> None:
    narrowed = reports.filtered(report, cost_center="no-such-center")
    assert narrowed.lines.empty
    assert narrowed.grand_total == Decimal(0)
    assert render(narrowed, "csv")

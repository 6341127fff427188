"""FOCUS 1.2: the chargeback in FOCUS terms, as CSV and Parquet, and the FinOps Foundation's validator's verdict."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest

from chargeback.app.settings import Settings
from chargeback.billing.cost_centers import UNALLOCATED, CostCenterMap, parse_cost_centers_csv
from chargeback.billing.prices import PTU_ALLOCATION, PriceSheet, parse_price_sheet
from chargeback.reports import build as reports
from chargeback.reports.build import ADJUSTMENT, CORRECTION, USAGE, build_report
from chargeback.reports.formats import (
    FOCUS_APPLICABILITY_CRITERIA,
    FOCUS_COLUMNS,
    FOCUS_PRICING_UNIT,
    FORMATS,
    model_publisher,
    render,
)
from chargeback.reports.model import DEFAULT_INVOICE_ISSUER, Report
from tests import focus_validator
from tests.test_reports import (
    ADJUSTMENTS,
    CENTERS,
    CORRECTED,
    FORMULA,
    GRAND_TOTAL,
    PERIOD,
    RECONCILIATION,
    ROWS,
    SHEET,
    usage,
)

PROVIDER = "Contoso AI Platform"
PHI = usage(date(2026, 11, 8), "hr-chatbot-dev", "Phi-4-mini", "phi", prompt=300_000, completion=100_000)
# 400,000 tokens of a model the sheet does not list, at the blended 5.00 per 1M = 2.00
FOCUS_TOTAL = GRAND_TOTAL + Decimal("2.00")
ISO_UTC = r"^\d{4}-\d{2}-\d{2}T00:00:00Z$"
UNSATISFIABLE = {"InvoiceId-C-004-C"}
"""Rules of the validator that no non-empty file carrying InvoiceId passes (see the test below)."""


@pytest.fixture(name="sheet")
def fixture_sheet() -> PriceSheet:
    return parse_price_sheet(SHEET)


@pytest.fixture(name="centers")
def fixture_centers() -> CostCenterMap:
    return parse_cost_centers_csv(CENTERS)


def make_report() -> Report:
    """Per-token, blended and PTU lines, late usage of October, a correction of September that moves
    cost out of unallocated, an unmapped and a hostile subscription."""
    return build_report(
        PERIOD,
        [*ROWS, PHI],
        parse_price_sheet(SHEET),
        parse_cost_centers_csv(CENTERS),
        reconciliation=RECONCILIATION,
        adjustments=ADJUSTMENTS,
        corrections=[CORRECTED],
        generated_at=datetime(2026, 12, 2, 3, 4, 5, tzinfo=UTC),
        invoice_issuer=PROVIDER,
    )


@pytest.fixture(name="report")
def fixture_report() -> Report:
    return make_report()


Judge = Callable[[str, str], focus_validator.Verdict]


@pytest.fixture(name="judge", scope="module")
def fixture_judge(tmp_path_factory: pytest.TempPathFactory) -> Judge:
    """The validator's verdict on the report in a format, with ``default`` or ``declared`` criteria.

    Each verdict is taken once per module: a run of the validator takes seconds.
    """
    report = make_report()
    verdicts: dict[tuple[str, str], focus_validator.Verdict] = {}

    def judge(fmt: str, criteria: str) -> focus_validator.Verdict:
        if (fmt, criteria) not in verdicts:
            workdir = tmp_path_factory.mktemp(f"{fmt}-{criteria}")
            data = workdir / FORMATS[fmt].filename(report.period)
            data.write_bytes(render(report, fmt))
            chosen = declared_criteria(report) if criteria == "declared" else ()
            verdicts[fmt, criteria] = focus_validator.validate(data, workdir, chosen)
        return verdicts[fmt, criteria]

    return judge


@pytest.fixture(name="focus")
def fixture_focus(report: Report) -> pd.DataFrame:
    """The FOCUS CSV as text cells, exactly as written."""
    return pd.read_csv(io.BytesIO(render(report, "focus")), dtype=str, keep_default_na=False)


@pytest.fixture(name="focus_parquet")
def fixture_focus_parquet(report: Report) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(render(report, "focus-parquet")))


def declared_criteria(report: Report) -> tuple[str, ...]:
    """The applicability criteria the export declares, read from its Parquet rendering."""
    metadata = pq.read_schema(io.BytesIO(render(report, "focus-parquet"))).metadata
    return tuple(metadata[b"focus_applicability_criteria"].decode().split(","))


def money(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


# --------------------------------------------------------------------------------------------
# The official validator


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["focus", "focus-parquet"])
@pytest.mark.parametrize("criteria", ["default", "declared"])
def test_the_focus_validator_fails_no_rule_of_the_export(judge: Judge, fmt: str, criteria: str) -> None:
    verdict = judge(fmt, criteria)
    assert set(verdict.failed) == UNSATISFIABLE, verdict.failed
    assert column_and_dataset_rules() <= verdict.passed | verdict.skipped | set(verdict.failed)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["focus", "focus-parquet"])
def test_the_declared_criteria_bring_in_the_columns_they_require_and_each_passes(judge: Judge, fmt: str) -> None:
    verdict = judge(fmt, "declared")
    rules = focus_validator.model()["ModelRules"]
    presence = {
        rule_id
        for rule_id, rule in rules.items()
        if rule_id.startswith("CostAndUsage-D-")
        and rule["ApplicabilityCriteria"]
        and set(rule["ApplicabilityCriteria"]) <= set(FOCUS_APPLICABILITY_CRITERIA)
    }
    assert {"CostAndUsage-D-011-C", "CostAndUsage-D-019-C", "CostAndUsage-D-043-C", "CostAndUsage-D-064-C"} <= presence
    assert presence <= verdict.passed
    assert presence <= judge(fmt, "default").skipped


def test_the_validator_asks_invoice_id_to_be_null_and_not_null_so_a_file_with_rows_fails_one_of_the_two() -> None:
    """Both rules are encoded without the condition the specification gives them in words.

    InvoiceId-C-004-C requires every InvoiceId to be null and InvoiceId-C-005-C every one to be
    set; their parent passes when either does. So every non-empty file fails one of the two, and
    the export, which carries InvoiceId as recommended, fails C-004.
    """
    rules = focus_validator.model()["ModelRules"]
    null = rules["InvoiceId-C-004-C"]["ValidationCriteria"]
    not_null = rules["InvoiceId-C-005-C"]["ValidationCriteria"]
    assert null["Requirement"] == {"CheckFunction": "CheckValue", "ColumnName": "InvoiceId", "Value": None}
    assert not_null["Requirement"] == {"CheckFunction": "CheckNotValue", "ColumnName": "InvoiceId", "Value": None}
    assert null["Condition"] == not_null["Condition"] == {}
    parent = rules["InvoiceId-C-003-C"]["ValidationCriteria"]["Requirement"]
    assert parent["CheckFunction"] == "OR"


def column_and_dataset_rules() -> set[str]:
    """Every rule of the dataset and its columns: the verdict judges each, nothing was left out."""
    rules = focus_validator.model()["ModelRules"]
    return {rule_id for rule_id, rule in rules.items() if rule["EntityType"] in ("Dataset", "Column")}


def test_the_parquet_declares_the_focus_version_and_the_criteria_the_export_supports(report: Report) -> None:
    metadata = pq.read_schema(io.BytesIO(render(report, "focus-parquet"))).metadata
    assert metadata[b"focus_version"] == b"1.2"
    assert declared_criteria(report) == FOCUS_APPLICABILITY_CRITERIA


# --------------------------------------------------------------------------------------------
# Who is who: an internal chargeback in FOCUS terms


def test_the_platform_running_the_gateway_is_both_provider_and_invoice_issuer(focus: pd.DataFrame) -> None:
    assert set(focus["ProviderName"]) == set(focus["InvoiceIssuerName"]) == {PROVIDER}


def test_the_provider_is_a_setting_whose_default_is_the_reports_default() -> None:
    assert Settings.from_env({"ChargebackStorage": "UseDevelopmentStorage=true"}).provider_name == (
        DEFAULT_INVOICE_ISSUER
    )
    named = Settings.from_env({"ChargebackStorage": "UseDevelopmentStorage=true", "CHARGEBACK_PROVIDER_NAME": PROVIDER})
    assert named.provider_name == PROVIDER


@pytest.mark.parametrize(
    ("model", "publisher"),
    [
        ("gpt-4o", "OpenAI"),
        ("gpt-4.1-mini-2025-04-14", "OpenAI"),
        ("o3-mini", "OpenAI"),
        ("text-embedding-3-large", "OpenAI"),
        ("Phi-4-mini", "Microsoft"),
        ("Meta-Llama-3.1-8B-Instruct", "Meta"),
        ("Mistral-Large-2411", "Mistral AI"),
        ("DeepSeek-R1", "DeepSeek"),
        ("unknown", "Microsoft"),
    ],
)
def test_the_publisher_is_the_models_maker(model: str, publisher: str) -> None:
    assert model_publisher(model) == publisher


def test_each_line_names_its_models_publisher(focus: pd.DataFrame) -> None:
    publishers = dict(zip(focus["x_Model"], focus["PublisherName"], strict=True))
    assert publishers == {"gpt-4o": "OpenAI", "unknown": "Microsoft", "Phi-4-mini": "Microsoft"}


def test_the_billing_account_is_the_cost_center_and_the_sub_account_the_apim_subscription(
    report: Report, focus: pd.DataFrame
) -> None:
    lines = report.lines
    assert list(focus["BillingAccountId"]) == list(lines["cost_center"])
    assert list(focus["BillingAccountName"]) == list(lines["business_unit"])
    assert list(focus["SubAccountId"]) == ["'" + s if s == FORMULA else s for s in lines["subscription_id"]]
    assert UNALLOCATED in set(focus["BillingAccountId"])


def test_each_billing_account_has_one_invoice_per_period(focus: pd.DataFrame) -> None:
    invoices = focus.groupby("BillingAccountId")["InvoiceId"].agg(set).to_dict()
    assert invoices == {center: {f"CB-{PERIOD}-{center}"} for center in invoices}
    assert focus["InvoiceId"].nunique() == focus["BillingAccountId"].nunique() == 4


def test_an_invoice_bills_what_the_report_charges_its_cost_center(report: Report, focus: pd.DataFrame) -> None:
    billed = {
        invoice: sum(map(Decimal, costs), Decimal(0)) for invoice, costs in focus.groupby("InvoiceId")["BilledCost"]
    }
    charged = dict(zip(report.by_cost_center["cost_center"], report.by_cost_center["cost"], strict=True))
    assert billed == {f"CB-{PERIOD}-{center}": cost for center, cost in charged.items()}


def test_the_invoice_ids_stay_the_same_when_the_report_is_generated_again_or_reloaded(
    report: Report, sheet: PriceSheet, centers: CostCenterMap, focus: pd.DataFrame
) -> None:
    later = build_report(
        PERIOD,
        [*ROWS, PHI],
        sheet,
        centers,
        adjustments=ADJUSTMENTS,
        corrections=[CORRECTED],
        invoice_issuer=PROVIDER,
    )
    again = pd.read_csv(io.BytesIO(render(later, "focus")), dtype=str, keep_default_na=False)
    reloaded = reports.from_bundle(reports.to_bundle(report))
    assert list(again["InvoiceId"]) == list(focus["InvoiceId"])
    assert render(reloaded, "focus") == render(report, "focus")
    assert render(reloaded, "focus-parquet") == render(report, "focus-parquet")


def test_the_service_is_generative_ai_under_ai_and_machine_learning(focus: pd.DataFrame) -> None:
    assert set(zip(focus["ServiceName"], focus["ServiceCategory"], focus["ServiceSubcategory"], strict=True)) == {
        ("Azure OpenAI", "AI and Machine Learning", "Generative AI")
    }


def test_each_line_is_billed_for_a_model_deployment(report: Report, focus: pd.DataFrame) -> None:
    assert list(focus["ResourceId"]) == list(report.lines["deployment"])
    assert set(focus["ResourceType"]) == {"Model deployment"}


# --------------------------------------------------------------------------------------------
# Charges, quantities and prices


def test_every_line_is_usage_and_late_usage_is_a_correction_charged_in_its_own_month(focus: pd.DataFrame) -> None:
    assert set(focus["ChargeCategory"]) == {"Usage"}
    late = focus[focus["x_ChargeCategory"] == ADJUSTMENT]
    assert len(late) == 1
    assert list(late.iloc[0][["ChargeClass", "ChargePeriodStart", "ChargePeriodEnd", "BillingPeriodStart"]]) == [
        "Correction",
        "2026-10-01T00:00:00Z",
        "2026-11-01T00:00:00Z",
        "2026-11-01T00:00:00Z",
    ]
    assert set(focus.loc[focus["x_ChargeCategory"] == USAGE, "ChargeClass"]) == {""}


def test_a_correction_of_a_final_month_is_a_correction_charged_in_that_month(focus: pd.DataFrame) -> None:
    fixes = focus[focus["x_ChargeCategory"] == CORRECTION]
    assert set(fixes["ChargeClass"]) == {"Correction"}
    assert set(zip(fixes["ChargePeriodStart"], fixes["x_AdjustedPeriod"], strict=True)) == {
        ("2026-09-01T00:00:00Z", "2026-09")
    }
    assert sorted(fixes["BilledCost"]) == ["-1.00", "1.00"]
    assert sorted(fixes["ConsumedQuantity"]) == ["-400000.0", "400000.0"]
    assert all(text.startswith("correction of 2026-09: ") for text in fixes["ChargeDescription"])


def test_periods_are_iso_8601_utc_with_exclusive_ends(focus: pd.DataFrame) -> None:
    for column in ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"):
        assert focus[column].str.fullmatch(ISO_UTC).all(), column
    assert set(focus["BillingPeriodEnd"]) == {"2026-12-01T00:00:00Z"}


def test_quantities_are_tokens_consumed_and_millions_of_tokens_priced(report: Report, focus: pd.DataFrame) -> None:
    tokens = [Decimal(int(t)) for t in report.lines["total_tokens"]]
    assert set(focus["PricingUnit"]) == {FOCUS_PRICING_UNIT} == {"1000000 Tokens"}
    assert set(focus["ConsumedUnit"]) == {"Tokens"}
    assert [Decimal(q) for q in focus["ConsumedQuantity"]] == tokens
    assert [Decimal(q) * 1_000_000 for q in focus["PricingQuantity"]] == tokens


@pytest.mark.parametrize("column", ["BilledCost", "PricingQuantity", "ConsumedQuantity", "x_InputUnitPrice"])
def test_decimal_columns_are_written_with_a_decimal_point_so_whole_numbers_read_as_decimals(
    focus: pd.DataFrame, column: str
) -> None:
    written = [value for value in focus[column] if value]
    assert written
    assert all("." in value and "E" not in value.upper() for value in written)
    assert pd.read_csv(io.StringIO("\n".join([column, *written])))[column].dtype.kind == "f"


def test_a_per_token_lines_unit_prices_times_its_token_quantities_give_its_cost(focus: pd.DataFrame) -> None:
    per_token = focus[(focus["x_PricingMethod"] == "per_token") & (focus["x_RatesApplied"] == "1")]
    assert len(per_token) >= 2
    for _, row in per_token.iterrows():
        cached, prompt, completion = (int(row[c]) for c in ("x_CachedTokens", "x_PromptTokens", "x_CompletionTokens"))
        exact = (
            Decimal(prompt - cached) * Decimal(row["x_InputUnitPrice"])
            + Decimal(cached) * Decimal(row["x_CachedInputUnitPrice"])
            + Decimal(completion) * Decimal(row["x_OutputUnitPrice"])
        ) / 1_000_000
        assert money(exact) == Decimal(row["BilledCost"])


def test_a_blended_lines_unit_price_times_its_pricing_quantity_gives_its_cost(focus: pd.DataFrame) -> None:
    blended = focus[focus["x_PricingMethod"] == "blended"]
    assert len(blended) == 2
    for _, row in blended.iterrows():
        assert money(Decimal(row["PricingQuantity"]) * Decimal(row["x_BlendedUnitPrice"])) == Decimal(row["BilledCost"])
        assert row["x_InputUnitPrice"] == ""


def test_a_ptu_share_is_recurring_and_has_no_unit_price(focus: pd.DataFrame) -> None:
    shares = focus[focus["x_PricingMethod"] == PTU_ALLOCATION]
    assert len(shares) == 3
    assert set(shares["ChargeFrequency"]) == {"Recurring"}
    assert set(shares[["x_InputUnitPrice", "x_BlendedUnitPrice"]].to_numpy().ravel()) == {""}


def test_no_commitment_discount_applies_to_any_line(focus: pd.DataFrame) -> None:
    assert set(focus["CommitmentDiscountStatus"]) == {""}


def test_tags_are_the_cost_center_maps_columns_as_json(focus: pd.DataFrame) -> None:
    tags = [json.loads(text) for text in focus["Tags"]]
    assert tags[1] == {"CostCenter": "CC-1001", "BusinessUnit": "Digital Products", "Owner": "one@contoso.com"}
    assert all(set(tag) == {"CostCenter", "BusinessUnit", "Owner"} for tag in tags)


def test_the_csv_has_the_focus_columns_in_order(focus: pd.DataFrame) -> None:
    assert tuple(focus.columns) == FOCUS_COLUMNS


def test_the_csv_neutralises_formula_text(focus: pd.DataFrame) -> None:
    assert "'" + FORMULA in set(focus["SubAccountId"])
    assert not any(value.startswith("=") for value in focus.to_numpy().ravel())


# --------------------------------------------------------------------------------------------
# Parquet


def test_the_parquet_is_typed_as_focus_types_its_columns(report: Report) -> None:
    schema = pq.read_schema(io.BytesIO(render(report, "focus-parquet")))
    types = {name: str(schema.field(name).type) for name in schema.names}
    assert tuple(schema.names) == FOCUS_COLUMNS
    assert types["BilledCost"] == "decimal128(18, 2)"
    assert types["PricingQuantity"] == "decimal128(25, 6)"
    assert types["ConsumedQuantity"] == "decimal128(20, 0)"
    assert types["BillingPeriodStart"].startswith("timestamp[") and types["BillingPeriodStart"].endswith("tz=UTC]")
    assert types["x_PromptTokens"] == "int64"
    assert types["ProviderName"] == types["InvoiceId"] == "string"


def test_the_parquet_carries_the_same_rows_as_the_csv(focus: pd.DataFrame, focus_parquet: pd.DataFrame) -> None:
    texts = ("InvoiceId", "BillingAccountId", "PublisherName", "ChargeClass", "PricingUnit", "x_ChargeCategory")
    for column in texts:
        assert list(focus_parquet[column].fillna("")) == list(focus[column]), column
    assert list(focus_parquet["BilledCost"]) == [Decimal(c) for c in focus["BilledCost"]]
    assert list(focus_parquet["PricingQuantity"]) == [Decimal(q) for q in focus["PricingQuantity"]]
    starts = [moment.isoformat().replace("+00:00", "Z") for moment in focus_parquet["ChargePeriodStart"]]
    assert starts == list(focus["ChargePeriodStart"])


def test_the_parquet_keeps_formula_text_as_it_is(focus_parquet: pd.DataFrame) -> None:
    assert FORMULA in set(focus_parquet["SubAccountId"])


# --------------------------------------------------------------------------------------------
# Reconciliation with the other renderings


def test_the_focus_billed_cost_sums_to_the_cent_to_the_csv_and_xlsx_lines(
    report: Report, focus: pd.DataFrame, focus_parquet: pd.DataFrame
) -> None:
    csv_lines = pd.read_csv(io.BytesIO(render(report, "csv")), dtype=str, encoding="utf-8-sig")
    workbook = openpyxl.load_workbook(io.BytesIO(render(report, "xlsx")), read_only=True)
    rows: list[tuple[Any, ...]] = list(workbook["lines"].iter_rows(values_only=True))
    cost = rows[0].index("cost")
    xlsx_total = sum((money(Decimal(str(row[cost]))) for row in rows[1:]), Decimal(0))
    assert sum(map(Decimal, focus["BilledCost"]), Decimal(0)) == FOCUS_TOTAL
    assert sum(focus_parquet["BilledCost"], Decimal(0)) == FOCUS_TOTAL
    assert sum(map(Decimal, csv_lines["cost"]), Decimal(0)) == FOCUS_TOTAL
    assert xlsx_total == FOCUS_TOTAL == report.grand_total


def test_an_empty_period_renders_an_empty_focus_file_of_every_column(sheet: PriceSheet, centers: CostCenterMap) -> None:
    report = build_report(PERIOD, [], parse_price_sheet({"currency": "USD", "default": {"blended": "5.00"}}), centers)
    assert tuple(pd.read_csv(io.BytesIO(render(report, "focus"))).columns) == FOCUS_COLUMNS
    assert pd.read_parquet(io.BytesIO(render(report, "focus-parquet"))).shape == (0, len(FOCUS_COLUMNS))

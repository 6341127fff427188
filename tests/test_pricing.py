"""Pricing: per-token, cached, blended and provisioned rates, rounded once per line, exactly."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargeback.billing.allocation import allocate, allocate_cost
from chargeback.billing.frames import usage_frame
from chargeback.billing.prices import (
    BLENDED,
    PER_TOKEN,
    PTU_ALLOCATION,
    UNALLOCATED_SUBSCRIPTION,
    PriceSheet,
    load_price_sheet,
    metered_cost,
    parse_price_sheet,
)
from chargeback.billing.pricing import price_rows, price_usage
from chargeback.domain.errors import ConfigurationError, InvalidRequestError
from chargeback.domain.usage import Counters, UsageKey, UsageRow
from tests.support import ROOT

PERIOD = "2026-11"

SHEET: dict[str, Any] = {
    "currency": "USD",
    "models": [
        {"model": "gpt-4o", "effective_from": "2024-10-01", "input": "2.50", "cached_input": "1.25", "output": "10.00"},
        {"model": "gpt-4o-mini", "input": "0.15", "cached_input": "0.075", "output": "0.60"},
        {"model": "gpt-4", "input": "30.00", "output": "60.00"},
        {"model": "gpt-4.1", "input": "2.00", "cached_input": "0.50", "output": "8.00"},
    ],
    "default": {"blended": "5.00"},
}
PTU = [{"deployment": "gpt-4o-ptu", "hourly_cost": "1.00"}]


def sheet_with(**changes: Any) -> PriceSheet:
    return parse_price_sheet({**SHEET, **changes})


@pytest.fixture(name="sheet")
def fixture_sheet() -> PriceSheet:
    return parse_price_sheet(SHEET)


@pytest.fixture(name="ptu_sheet")
def fixture_ptu_sheet() -> PriceSheet:
    """The sheet with deployment gpt-4o-ptu on provisioned throughput at 1.00 an hour."""
    return sheet_with(provisioned=PTU)


def usage(
    day: int,
    subscription: str = "sub-a",
    model: str = "gpt-4o",
    deployment: str = "chat",
    *,
    prompt: int = 0,
    completion: int = 0,
    cached: int = 0,
    unsplit: int = 0,
    requests: int = 1,
    period: str = PERIOD,
) -> UsageRow:
    year, month = int(period[:4]), int(period[5:])
    counters = Counters(
        requests=requests,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        total_tokens=prompt + completion + unsplit,
        unsplit_requests=requests if unsplit and not prompt else 0,
        unsplit_tokens=unsplit,
    )
    return UsageRow(UsageKey(date(year, month, day), subscription, model, deployment, "chat"), counters)


def line(lines: pd.DataFrame, subscription: str = "sub-a", model: str | None = None) -> pd.Series[Any]:
    mine = lines[lines["subscription_id"] == subscription]
    if model is not None:
        mine = mine[mine["model"] == model]
    assert len(mine) == 1, mine
    return mine.iloc[0]


# --------------------------------------------------------------------------------------------
# Per-token prices


def test_cached_tokens_are_priced_at_the_cached_rate(sheet: PriceSheet) -> None:
    # (1,000,000 - 400,000) × 2.50 + 400,000 × 1.25 + 100,000 × 10.00 = 1.50 + 0.50 + 1.00 = 3.00
    rows = [usage(3, prompt=1_000_000, cached=400_000, completion=100_000)]
    result = line(price_rows(rows, sheet, PERIOD).lines)
    assert result["cost"] == Decimal("3.00")
    assert result["pricing"] == PER_TOKEN
    assert (result["input_price_per_1m"], result["cached_input_price_per_1m"], result["output_price_per_1m"]) == (
        Decimal("2.50"),
        Decimal("1.25"),
        Decimal("10.00"),
    )


def test_a_mid_month_price_change_prices_each_day_at_its_own_rate() -> None:
    sheet = sheet_with(
        models=[
            {"model": "gpt-4o", "effective_from": "2026-01-01", "input": "2.50", "output": "10.00"},
            {"model": "gpt-4o", "effective_from": "2026-11-16", "input": "2.00", "output": "8.00"},
        ]
    )
    # 15 Nov: 1M prompt × 2.50 = 2.50; 16 Nov: 1M prompt × 2.00 = 2.00; line = 4.50
    rows = [usage(15, prompt=1_000_000), usage(16, prompt=1_000_000)]
    result = line(price_rows(rows, sheet, PERIOD).lines)
    assert result["cost"] == Decimal("4.50")
    assert result["rates_applied"] == 2
    assert result["input_price_per_1m"] is None
    assert result["output_price_per_1m"] is None


def test_a_line_priced_at_one_rate_names_that_rate_once(sheet: PriceSheet) -> None:
    rows = [usage(day, prompt=10) for day in (1, 2, 3)]
    result = line(price_rows(rows, sheet, PERIOD).lines)
    assert result["rates_applied"] == 1
    assert result["input_price_per_1m"] == Decimal("2.50")


def test_unsplit_tokens_of_an_unknown_model_are_priced_at_the_blended_rate(sheet: PriceSheet) -> None:
    # 2,000,000 × 5.00 / 1M = 10.00
    rows = [usage(5, model="unknown", deployment="unknown", unsplit=2_000_000)]
    result = line(price_rows(rows, sheet, PERIOD).lines)
    assert result["cost"] == Decimal("10.00")
    assert result["pricing"] == BLENDED
    assert result["blended_price_per_1m"] == Decimal("5.00")
    assert result["input_price_per_1m"] is None


def test_a_model_missing_from_the_sheet_is_priced_blended_on_all_its_tokens(sheet: PriceSheet) -> None:
    # (1,000,000 prompt + 1,000,000 completion) × 5.00 / 1M = 10.00
    rows = [usage(5, model="llama-3-70b", prompt=1_000_000, completion=1_000_000)]
    result = line(price_rows(rows, sheet, PERIOD).lines)
    assert result["cost"] == Decimal("10.00")
    assert result["pricing"] == BLENDED


def test_a_line_with_split_and_unsplit_tokens_is_priced_with_both_rates(sheet: PriceSheet) -> None:
    # split: 1,000,000 prompt × 2.50 = 2.50; unsplit: 1,000,000 × 5.00 = 5.00; line = 7.50
    rows = [usage(5, prompt=1_000_000), usage(6, unsplit=1_000_000)]
    result = line(price_rows(rows, sheet, PERIOD).lines)
    assert result["cost"] == Decimal("7.50")
    assert result["pricing"] == PER_TOKEN
    assert result["input_price_per_1m"] == Decimal("2.50")
    assert result["blended_price_per_1m"] == Decimal("5.00")
    assert result["rates_applied"] == 2


@pytest.mark.parametrize(
    ("model", "priced_as"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("GPT-4o-Mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4-turbo", "gpt-4"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("gpt-4.5-preview", None),
        ("gpt-4omni", None),
        ("unknown", None),
    ],
)
def test_models_match_by_exact_name_then_by_the_longest_prefix(
    sheet: PriceSheet, model: str, priced_as: str | None
) -> None:
    assert sheet.match_model(model) == priced_as


def test_a_versioned_mini_model_is_priced_as_mini_not_as_its_shorter_prefix(sheet: PriceSheet) -> None:
    # 1,000,000 prompt × 0.15 = 0.15 (gpt-4o's 2.50 would give 2.50)
    rows = [usage(1, model="gpt-4o-mini-2024-07-18", prompt=1_000_000)]
    assert line(price_rows(rows, sheet, PERIOD).lines)["cost"] == Decimal("0.15")


def test_usage_before_a_models_first_price_falls_back_to_the_blended_rate(sheet: PriceSheet) -> None:
    # gpt-4o's price starts 2024-10-01; September 2024 is blended: 1,000,000 × 5.00 = 5.00
    rows = [usage(30, prompt=1_000_000, period="2024-09")]
    result = line(price_rows(rows, sheet, "2024-09").lines)
    assert (result["cost"], result["pricing"]) == (Decimal("5.00"), BLENDED)


# --------------------------------------------------------------------------------------------
# Rounding


def test_cost_is_rounded_once_per_line_not_per_day(sheet: PriceSheet) -> None:
    # each day 1,600 × 2.50 / 1M = 0.004 (0.00 if rounded per day); line 3 × 0.004 = 0.012 → 0.01
    rows = [usage(day, prompt=1_600) for day in (1, 2, 3)]
    assert line(price_rows(rows, sheet, PERIOD).lines)["cost"] == Decimal("0.01")


@pytest.mark.parametrize(
    ("prompt", "cost"),
    [
        (50_000, "0.12"),  # 50,000 × 2.50 / 1M = 0.125 → half to even 0.12
        (54_000, "0.14"),  # 54,000 × 2.50 / 1M = 0.135 → half to even 0.14
        (50_400, "0.13"),  # 50,400 × 2.50 / 1M = 0.126 → 0.13
        (1_999, "0.00"),  # 1,999 × 2.50 / 1M = 0.0049975 → 0.00
    ],
)
def test_line_cost_rounds_half_to_even(sheet: PriceSheet, prompt: int, cost: str) -> None:
    rows = [usage(1, prompt=prompt)]
    assert str(line(price_rows(rows, sheet, PERIOD).lines)["cost"]) == cost


def test_a_currency_without_minor_units_rounds_to_whole_units() -> None:
    sheet = sheet_with(currency="JPY", models=[{"model": "gpt-4o", "input": "375", "output": "1500"}])
    # 1,000 × 375 / 1M = 0.375 → 0; 3,000 × 375 / 1M = 1.125 → 1 (JPY has no minor unit)
    lines = price_rows([usage(1, "a", prompt=1_000), usage(1, "b", prompt=3_000)], sheet, PERIOD).lines
    assert [str(c) for c in lines["cost"]] == ["0", "1"]
    assert set(lines["currency"]) == {"JPY"}


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 30),
            st.sampled_from(["s1", "s2"]),
            st.sampled_from(["gpt-4o", "gpt-4o-mini-2024-07-18", "unknown"]),
            st.integers(0, 3_000_000),
            st.integers(0, 100),
            st.integers(0, 3_000_000),
            st.integers(0, 3_000_000),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_vectorised_line_costs_equal_the_single_row_reference(
    cases: list[tuple[int, str, str, int, int, int, int]],
) -> None:
    sheet = sheet_with(
        models=[
            {
                "model": "gpt-4o",
                "effective_from": "2026-01-01",
                "input": "2.50",
                "cached_input": "1.25",
                "output": "10",
            },
            {"model": "gpt-4o", "effective_from": "2026-11-10", "input": "2.20", "cached_input": "1.10", "output": "9"},
            {"model": "gpt-4o-mini", "input": "0.15", "cached_input": "0.075", "output": "0.60"},
        ]
    )
    rows = [
        usage(day, sub, model, prompt=prompt, cached=prompt * share // 100, completion=completion, unsplit=unsplit)
        for day, sub, model, prompt, share, completion, unsplit in cases
    ]
    expected: dict[tuple[str, str], Decimal] = {}
    for row in rows:
        key = (row.key.subscription_id, row.key.model)
        expected[key] = expected.get(key, Decimal(0)) + metered_cost(sheet, row.key.model, row.key.day, row.counters)
    lines = price_rows(rows, sheet, PERIOD).lines
    actual = {(s, m): c for s, m, c in zip(lines["subscription_id"], lines["model"], lines["cost"], strict=True)}
    assert actual == {key: sheet.round(value) for key, value in expected.items()}


# --------------------------------------------------------------------------------------------
# Provisioned throughput


@pytest.mark.parametrize(
    ("weights", "total", "shares"),
    [
        ({"a": 1, "b": 1, "c": 1}, 10_000, {"a": 3_334, "b": 3_333, "c": 3_333}),
        ({"c": 1, "b": 1, "a": 1}, 10_000, {"a": 3_334, "b": 3_333, "c": 3_333}),
        ({"a": 1, "b": 2}, 7, {"a": 2, "b": 5}),  # exact 2.33 / 4.67: the larger remainder (b) gets the unit
        ({"b": 5, "a": 5}, 1, {"a": 1, "b": 0}),  # a tie goes to the lower key
        ({"a": 3, "b": 0}, 100, {"a": 100, "b": 0}),
    ],
)
def test_allocation_splits_by_largest_remainder_and_sums_exactly(
    weights: dict[str, int], total: int, shares: dict[str, int]
) -> None:
    assert allocate(total, weights) == shares
    assert sum(allocate(total, weights).values()) == total


def test_a_three_way_split_of_100_gives_the_remainder_cent_to_the_lowest_subscription_id() -> None:
    # 100.00 / 3 = 33.333…: floors 33.33 each, the 0.01 left goes to "sub-a" (ties break by id)
    parts = allocate_cost(Decimal("100.00"), {"sub-c": 7, "sub-a": 7, "sub-b": 7}, 2)
    assert parts == {"sub-a": Decimal("33.34"), "sub-b": Decimal("33.33"), "sub-c": Decimal("33.33")}
    assert sum(parts.values()) == Decimal("100.00")


def test_provisioned_cost_is_shared_in_proportion_to_tokens_on_the_deployment() -> None:
    sheet = sheet_with(provisioned=[{"deployment": "gpt-4o-ptu", "monthly_cost": "100.00"}])
    # 100.00 split by tokens 100 : 100 : 100 → 33.34 (sub-a) / 33.33 / 33.33
    rows = [usage(2, sub, deployment="gpt-4o-ptu", prompt=60, completion=40) for sub in ("sub-c", "sub-a", "sub-b")]
    lines = price_rows(rows, sheet, PERIOD).lines
    assert dict(zip(lines["subscription_id"], lines["cost"], strict=True)) == {
        "sub-a": Decimal("33.34"),
        "sub-b": Decimal("33.33"),
        "sub-c": Decimal("33.33"),
    }
    assert set(lines["pricing"]) == {PTU_ALLOCATION}


def test_hourly_provisioned_cost_counts_the_hours_in_the_month(ptu_sheet: PriceSheet) -> None:
    # November: 30 days × 24 h × 1.00 = 720.00, split 1 : 2 by tokens → 240.00 / 480.00
    rows = [usage(1, "sub-a", deployment="gpt-4o-ptu", prompt=1), usage(9, "sub-b", deployment="gpt-4o-ptu", prompt=2)]
    lines = price_rows(rows, ptu_sheet, PERIOD).lines
    assert list(lines["cost"]) == [Decimal("240.00"), Decimal("480.00")]


@pytest.mark.parametrize(
    ("entry", "period", "cost"),
    [
        ({"hourly_cost": "2.00"}, "2026-02", "1344.00"),  # 28 × 24 × 2.00
        ({"hourly_cost": "1.00", "effective_from": "2026-11-16"}, "2026-11", "360.00"),  # 15 × 24
        ({"monthly_cost": "3000.00", "effective_from": "2026-11-11"}, "2026-11", "2000.00"),  # 20/30 of it
        ({"monthly_cost": "1000.00", "effective_to": "2026-11-01"}, "2026-11", "0.00"),
    ],
)
def test_provisioned_cost_covers_only_the_provisioned_part_of_the_month(
    entry: dict[str, str], period: str, cost: str
) -> None:
    sheet = sheet_with(provisioned=[{"deployment": "ptu", **entry}])
    assert str(sheet.provisioned_cost("ptu", period)) == cost


def test_tokens_on_a_provisioned_deployment_are_not_also_charged_per_token(ptu_sheet: PriceSheet) -> None:
    # only the share of 720.00; the 1,000,000 prompt tokens would have cost 2.50 more
    rows = [usage(4, deployment="gpt-4o-ptu", prompt=1_000_000)]
    result = line(price_rows(rows, ptu_sheet, PERIOD).lines)
    assert result["cost"] == Decimal("720.00")
    assert result["input_price_per_1m"] is None
    assert result["rates_applied"] == 0


def test_idle_provisioned_capacity_is_charged_to_an_unallocated_line(ptu_sheet: PriceSheet) -> None:
    rows = [usage(4, prompt=1_000_000)]
    lines = price_rows(rows, ptu_sheet, PERIOD).lines
    idle = line(lines, UNALLOCATED_SUBSCRIPTION)
    assert (idle["deployment"], idle["cost"], idle["pricing"]) == ("gpt-4o-ptu", Decimal("720.00"), PTU_ALLOCATION)
    assert idle["total_tokens"] == 0


def test_late_usage_on_a_provisioned_deployment_adds_no_cost(ptu_sheet: PriceSheet) -> None:
    frame = usage_frame([usage(4, deployment="gpt-4o-ptu", prompt=1_000_000)])
    lines = price_usage(frame, ptu_sheet, PERIOD, allocate_provisioned=False).lines
    assert list(lines["cost"]) == [Decimal("0.00")]


# --------------------------------------------------------------------------------------------
# Frames, periods and the daily view


def test_rows_folded_in_chunks_price_like_rows_folded_at_once(sheet: PriceSheet) -> None:
    rows = [usage(day, sub, prompt=day * 1_000) for day in range(1, 11) for sub in ("a", "b", "c")]
    at_once = price_usage(usage_frame(rows), sheet, PERIOD).lines
    chunked = price_usage(usage_frame(rows, chunk_rows=4), sheet, PERIOD).lines
    pd.testing.assert_frame_equal(at_once, chunked)


def test_usage_outside_the_period_is_refused(sheet: PriceSheet) -> None:
    with pytest.raises(ValueError, match="not all inside period"):
        price_rows([usage(1, period="2026-12")], sheet, PERIOD)


def test_a_malformed_period_is_an_invalid_request(sheet: PriceSheet) -> None:
    with pytest.raises(InvalidRequestError):
        price_rows([], sheet, "2026-13")


def test_daily_totals_carry_tokens_and_metered_cost_per_subscription(sheet: PriceSheet) -> None:
    # 2 Nov, sub-a: 400,000 × 2.50 + 600,000 × 2.50 = 2.50
    rows = [usage(2, prompt=400_000), usage(2, model="gpt-4o-2024-08-06", prompt=600_000), usage(3, prompt=1)]
    daily = price_rows(rows, sheet, PERIOD).daily
    first = daily.iloc[0]
    assert (first["day"], first["subscription_id"], first["total_tokens"]) == (date(2026, 11, 2), "sub-a", 1_000_000)
    assert first["metered_cost"] == Decimal("2.50")
    assert len(daily) == 2


# --------------------------------------------------------------------------------------------
# The sheet itself


def test_the_sample_price_sheet_loads_with_real_models() -> None:
    sheet = load_price_sheet(ROOT / "config" / "price-sheet.json")
    assert (sheet.currency, sheet.minor_units) == ("USD", 2)
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3-mini", "text-embedding-3-large", "text-embedding-3-small"):
        assert sheet.match_model(model) == model
    assert sheet.provisioned_deployments() == ("gpt-4o-ptu",)


def test_json_numbers_are_read_as_exact_decimals() -> None:
    text = json.dumps({**SHEET, "default": {"blended": "5"}}).replace('"0.075"', "0.075")
    sheet = parse_price_sheet(text)
    mini = next(rate for rate in sheet.token_rates if rate.model == "gpt-4o-mini")
    assert mini.cached_input == Decimal("0.075")


def test_cached_input_defaults_to_the_input_price() -> None:
    sheet = sheet_with(models=[{"model": "m", "input": "1.00", "output": "2.00"}])
    assert sheet.token_rates[0].cached_input == Decimal("1.00")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"models": [{"model": "gpt-4o", "input": "-1", "output": "1"}]}, "must not be negative"),
        ({"models": [{"model": "gpt-4o", "input": "1", "output": "1", "effective_from": "2026-02-30"}]}, "date"),
        ({"models": [{"model": "gpt-4o", "input": "abc", "output": "1"}]}, "not a number"),
        ({"models": [{"model": "gpt-4o", "input": "1"}]}, "output price is missing"),
        ({"models": [{"model": "gpt-4o", "input": "0.0000001", "output": "1"}]}, "decimal places"),
        ({"models": [{"model": "gpt-4o", "input": "Infinity", "output": "1"}]}, "finite"),
        ({"models": [{"input": "1", "output": "1"}]}, "model must be"),
        ({"models": [{"model": "m", "input": "1", "output": "1"}, {"model": "M", "input": "2", "output": "2"}]}, "two"),
        ({"currency": "XTS"}, "minor-unit digits"),
        ({"currency": "dollars"}, "ISO 4217"),
        ({"minor_unit_digits": 9}, "minor_unit_digits"),
        ({"default": None}, "default blended price is required"),
        ({"default": {"blended": "-5"}}, "must not be negative"),
        ({"provisioned": [{"deployment": "ptu"}]}, "exactly one of monthly_cost and hourly_cost"),
        ({"provisioned": [{"deployment": "ptu", "hourly_cost": "1", "monthly_cost": "1"}]}, "exactly one"),
        (
            {
                "provisioned": [
                    {
                        "deployment": "ptu",
                        "hourly_cost": "1",
                        "effective_from": "2026-11-05",
                        "effective_to": "2026-11-01",
                    }
                ]
            },
            "not after",
        ),
        ({"models": {"gpt-4o": {}}}, "must be a list"),
        ({"provisioned": [{"deployment": "ptu", "hourly_cost": "15", "units": 0}]}, "units must be a whole number"),
        ({"provisioned": [{"deployment": "ptu", "hourly_cost": "15", "units": "15"}]}, "units must be a whole number"),
        ({"provisioned": [{"deployment": "ptu", "hourly_cost": "15", "units": True}]}, "units must be a whole number"),
    ],
)
def test_a_malformed_price_sheet_is_a_configuration_error(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        sheet_with(**changes)


def test_a_price_sheet_without_a_default_is_refused() -> None:
    data = {key: value for key, value in SHEET.items() if key != "default"}
    with pytest.raises(ConfigurationError, match="default"):
        parse_price_sheet(data)


def test_a_currency_outside_the_table_needs_its_digits_stated() -> None:
    assert sheet_with(currency="XTS", minor_unit_digits=3).minor_units == 3


def test_an_unreadable_price_sheet_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_price_sheet(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        load_price_sheet(broken)


def test_the_days_of_a_subscription_add_up_to_its_metered_cost_exactly() -> None:
    sheet = sheet_with()
    # 10,000 gpt-4o input tokens a day at 2.50 per 1M: 0.025 a day, 0.075 → 0.08 for the line;
    # rounding each day alone would give 0.02 + 0.02 + 0.02 = 0.06
    rows = [usage(day, "sub-a", prompt=10_000) for day in (3, 4, 5)]
    priced = price_rows(rows, sheet, PERIOD)
    assert line(priced.lines)["cost"] == Decimal("0.08")
    assert list(priced.daily["metered_cost"]) == [Decimal("0.03"), Decimal("0.03"), Decimal("0.02")]


def test_a_provisioned_entrys_units_and_rate_are_its_terms() -> None:
    sheet = sheet_with(provisioned=[{"deployment": "ptu", "units": 15, "monthly_cost": "3900.00"}])
    terms = sheet.provisioned_terms("ptu", PERIOD, until=datetime(2026, 11, 11, tzinfo=UTC))
    assert (terms.units, terms.monthly_cost, terms.hourly_cost) == (15, Decimal("3900.00"), None)
    assert (terms.hours, terms.provisioned_hours, terms.cost) == (240, 720, Decimal("1300.00"))


@pytest.mark.parametrize("scale", [1, 10**6])
def test_every_subscriptions_days_add_up_to_its_lines_whatever_the_sizes(scale: int) -> None:
    sheet = sheet_with()
    rng = random.Random(scale)
    rows = [
        usage(day, f"sub-{sub}", model, prompt=rng.randrange(0, 50_000) * scale, completion=rng.randrange(0, 9_000))
        for sub in range(12)
        for day in range(1, 31)
        for model in ("gpt-4o", "gpt-4o-mini", "mystery")
    ]
    priced = price_rows(rows, sheet, PERIOD)
    lines = priced.lines.groupby("subscription_id")["cost_minor"].sum()
    days = priced.daily.groupby("subscription_id")["metered_cost_minor"].sum()
    assert days.to_dict() == lines.to_dict()
    assert (priced.daily["metered_cost_minor"] >= 0).all()

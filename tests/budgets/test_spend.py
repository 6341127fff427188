"""Budget spend is the report's pricing of the same month: to the cent once closed, accrued while open."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import azure.functions as func
import pandas as pd
import pytest

from chargeback.billing.cost_centers import parse_cost_centers_csv
from chargeback.billing.frames import usage_frame
from chargeback.billing.prices import PriceSheet, parse_price_sheet
from chargeback.billing.pricing import price_usage
from chargeback.budgets.spend import crossed, month_spend, percent
from chargeback.domain.usage import Counters, UsageKey, UsageRow
from tests.budgets.support import PRICE_SHEET, BudgetApp, budget_row, usage_event, write_llm_export
from tests.functions import followed, post_report, registered, run_queue

SHEET: dict[str, Any] = {
    **PRICE_SHEET,
    "provisioned": [{"deployment": "gpt-4o-ptu", "effective_from": "2026-01-01", "hourly_cost": "1.00"}],
}
CENTERS = parse_cost_centers_csv("subscription_id,cost_center\nteam-a,CC-A\nteam-a-dev,CC-A\nteam-b,CC-B\n")


def sheet() -> PriceSheet:
    return parse_price_sheet(json.dumps(SHEET))


def row(day: date, subscription: str, prompt: int, completion: int, deployment: str = "gpt-4o") -> UsageRow:
    counters = Counters(
        requests=1, prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )
    return UsageRow(UsageKey(day, subscription, "gpt-4o", deployment, "chat"), counters)


PTU_ROWS = [
    row(date(2026, 11, 2), "team-a", 300, 0, "gpt-4o-ptu"),
    row(date(2026, 11, 2), "team-b", 100, 0, "gpt-4o-ptu"),
]
"""Three quarters of the provisioned deployment's tokens are team-a's, a quarter team-b's."""


def test_a_month_priced_a_day_at_a_time_gives_the_lines_of_the_month_priced_whole() -> None:
    rows = [
        row(date(2026, 11, day), subscription, 1_000 * day + 7, 333 * day, deployment)
        for day in range(1, 31)
        for subscription in ("team-a", "team-b")
        for deployment in ("gpt-4o", "gpt-4o-ptu")
    ]
    by_day = [usage_frame([r for r in rows if r.key.day == date(2026, 11, day)]) for day in range(1, 31)]
    whole = price_usage(usage_frame(rows), sheet(), "2026-11")
    parts = price_usage(iter(by_day), sheet(), "2026-11")
    pd.testing.assert_frame_equal(parts.lines, whole.lines)
    pd.testing.assert_frame_equal(parts.daily, whole.daily)


def test_no_usage_at_all_prices_to_nothing_but_idle_capacity() -> None:
    priced = price_usage(iter(()), sheet(), "2026-11")
    assert list(priced.lines["subscription_id"]) == ["unallocated"]


def test_spend_per_subscription_is_the_sum_of_its_priced_lines() -> None:
    rows = [row(date(2026, 11, 3), "team-a", 1_000_000, 100_000), row(date(2026, 11, 4), "team-a", 0, 100_000)]
    spend = month_spend(usage_frame(rows), sheet(), CENTERS, "2026-11", datetime(2026, 12, 2, tzinfo=UTC))
    assert spend.subscription("team-a").spent == 350 + 100


def test_a_cost_center_spends_what_its_subscriptions_spend() -> None:
    rows = [row(date(2026, 11, 3), "team-a", 1_000_000, 0), row(date(2026, 11, 3), "team-a-dev", 0, 100_000)]
    spend = month_spend(usage_frame(rows), sheet(), CENTERS, "2026-11", datetime(2026, 12, 2, tzinfo=UTC))
    assert spend.cost_center("CC-A").spent == 250 + 100
    assert spend.cost_center("CC-B").spent == 0


def test_a_closed_months_forecast_is_its_spend() -> None:
    rows = [row(date(2026, 11, day), "team-a", 1_000_000, 0) for day in range(1, 31)]
    spend = month_spend(usage_frame(rows), sheet(), CENTERS, "2026-11", datetime(2026, 12, 1, tzinfo=UTC))
    assert spend.closed
    assert spend.subscription("team-a").forecast == spend.subscription("team-a").spent == 30 * 250


def test_an_open_month_is_forecast_from_the_last_seven_days_rate() -> None:
    # 2.50 a day from the 1st; at noon on the 15th, 14.5 days of 2.50 spent... but only whole days
    # carry usage here: days 1-14 are spent, the 15th has none yet.
    rows = [row(date(2026, 11, day), "team-a", 1_000_000, 0) for day in range(1, 15)]
    now = datetime(2026, 11, 15, 12, tzinfo=UTC)
    spend = month_spend(usage_frame(rows), sheet(), CENTERS, "2026-11", now)
    # the window: Nov 9 00:00 to now (6.5 days) holds 6 days' spend (9th-14th) = 15.00
    rate = Decimal(1500) / Decimal(int(timedelta(days=6.5).total_seconds()))
    left = Decimal(int((datetime(2026, 12, 1, tzinfo=UTC) - now).total_seconds()))
    expected = 14 * 250 + int((rate * left).quantize(Decimal(1), rounding="ROUND_HALF_EVEN"))
    assert spend.subscription("team-a").forecast == expected


def test_provisioned_capacity_is_charged_only_as_far_as_it_has_accrued() -> None:
    rows = [
        row(date(2026, 11, 2), "team-a", 300, 0, "gpt-4o-ptu"),
        row(date(2026, 11, 2), "team-b", 100, 0, "gpt-4o-ptu"),
    ]
    now = datetime(2026, 11, 11, tzinfo=UTC)  # 240 of the month's 720 hours at 1.00 an hour
    spend = month_spend(usage_frame(rows), sheet(), CENTERS, "2026-11", now)
    assert (spend.subscription("team-a").spent, spend.subscription("team-b").spent) == (18_000, 6_000)


def test_a_capacity_share_is_forecast_at_the_whole_months_capacity_cost() -> None:
    rows = [
        row(date(2026, 11, 2), "team-a", 300, 0, "gpt-4o-ptu"),
        row(date(2026, 11, 2), "team-b", 100, 0, "gpt-4o-ptu"),
    ]
    spend = month_spend(usage_frame(rows), sheet(), CENTERS, "2026-11", datetime(2026, 11, 11, tzinfo=UTC))
    assert (spend.subscription("team-a").forecast, spend.subscription("team-b").forecast) == (54_000, 18_000)


def test_a_closed_month_shares_out_the_whole_capacity_cost_as_the_report_does() -> None:
    rows = [
        row(date(2026, 11, 2), "team-a", 300, 0, "gpt-4o-ptu"),
        row(date(2026, 11, 2), "team-b", 100, 0, "gpt-4o-ptu"),
    ]
    spend = month_spend(usage_frame(rows), sheet(), CENTERS, "2026-11", datetime(2026, 12, 1, tzinfo=UTC))
    assert spend.subscription("team-a").spent + spend.subscription("team-b").spent == 72_000


@pytest.mark.parametrize(
    ("spent", "amount", "thresholds", "expected"),
    [(79_99, 100_00, (50, 80, 100), [50]), (80_00, 100_00, (50, 80, 100), [50, 80]), (100_00, 100_00, (100,), [100])],
    ids=["a cent short of 80 %", "exactly 80 %", "exactly the amount"],
)
def test_a_threshold_is_crossed_exactly_when_the_spend_reaches_it(
    spent: int, amount: int, thresholds: tuple[int, ...], expected: list[int]
) -> None:
    assert crossed(spent, amount, thresholds) == expected


def test_the_percent_shown_rounds_down_so_100_means_reached() -> None:
    assert (str(percent(99_999, 100_000)), str(percent(100_000, 100_000))) == ("99.99", "100.00")


# --------------------------------------------------------------------------------------------
# Through the registered functions: a closed month's budget spend equals its final report.

OCTOBER_DAYS = [datetime(2026, 10, day, 12, tzinfo=UTC) for day in (1, 9, 17, 30, 31)]
DURING_GRACE = datetime(2026, 11, 3, 2, tzinfo=UTC)
AFTER_GRACE = datetime(2026, 11, 6, 2, tzinfo=UTC)
"""The report is final from November 6 (five grace days); the month before is evaluated until the 7th."""
EQUALITY_BUDGETS = (
    "scope,id,monthly_amount,currency,thresholds,action\n"
    "subscription,team-a,10,USD,,alert\nsubscription,team-a-dev,10,USD,,alert\nsubscription,team-b,10,USD,,alert\n"
    "cost_center,CC-A,10,USD,,alert\ncost_center,CC-B,10,USD,,alert\n"
)


def _streamed_export(path: Path) -> Path:
    """Streamed calls billed from the LLM logs, so both usage sources are in the month."""
    return write_llm_export(
        path,
        [
            ("s-1", "team-a", 123_457, 6_789, "2026-10-09T08:00:00Z"),
            ("s-2", "team-b", 55_555, 44_444, "2026-10-31T23:00:00Z"),
            ("s-3", "team-a-dev", 1_001, 1, "2026-10-17T01:00:00Z"),
        ],
    )


@pytest.fixture(name="october")
def fixture_october(budget_app: BudgetApp, tmp_path: Path) -> BudgetApp:
    """October through both usage sources: per-token, cached, blended, provisioned, on its first and last days."""
    (tmp_path / "price-sheet.json").write_text(json.dumps(SHEET))
    export = _streamed_export(tmp_path / "llm-log-export.csv")
    budget_app.configure(budgets=EQUALITY_BUDGETS, enforcement=False, CHARGEBACK_LLM_LOG_EXPORT=str(export))
    for index, when in enumerate(OCTOBER_DAYS):
        budget_app.send(
            [
                usage_event("team-a", 1_234_567 + index, 98_765, when),
                usage_event("team-a-dev", 333_333, 1, when, deployment="gpt-4o-ptu"),
                usage_event("team-b", 7_777 * (index + 1), 12_345, when, deployment="gpt-4o-ptu"),
                usage_event("team-b", 4_321, 1_234, when, deployment="phi", model="phi-4"),
            ],
            when,
            partition=str(index % 2),
        )
    return budget_app


def _final_report() -> dict[str, Any]:
    assert post_report("2026-10").status_code == 202
    assert run_queue() == [None]
    request = func.HttpRequest(
        "GET", "/api/reports/2026-10", params={"format": "json"}, route_params={"period": "2026-10"}, body=b""
    )
    document: dict[str, Any] = json.loads(followed(registered("report").get_user_function()(request)).get_body())
    listing = registered("list_reports").get_user_function()(func.HttpRequest("GET", "/api/reports", body=b""))
    assert [entry["status"] for entry in json.loads(listing.get_body())["reports"]] == ["final"]
    return document


@pytest.mark.azurite
def test_a_closed_months_budget_spend_equals_its_final_reports_cost_to_the_cent(october: BudgetApp) -> None:
    october.evaluate(DURING_GRACE)
    status, budgets = october.budgets("2026-10")
    october.services().clock = lambda: AFTER_GRACE
    report = _final_report()
    assert status == 200 and budgets["closed"] and budgets["llm_logs"] == "collected"
    by_subscription = {line["subscription_id"]: Decimal(line["cost"]) for line in report["by_subscription"]}
    by_center = {line["cost_center"]: Decimal(line["cost"]) for line in report["by_cost_center"]}
    for subscription in ("team-a", "team-a-dev", "team-b"):
        assert Decimal(budget_row(budgets, "subscription", subscription)["spent"]) == by_subscription[subscription]
    for center in ("CC-A", "CC-B"):
        assert Decimal(budget_row(budgets, "cost_center", center)["spent"]) == by_center[center]
    assert sum(by_subscription.values()) == Decimal(report["totals"]["cost"])
    assert {row["forecast"] for row in budgets["budgets"]} == {row["spent"] for row in budgets["budgets"]}


@pytest.mark.azurite
def test_a_month_whose_final_report_exists_is_no_longer_evaluated(october: BudgetApp) -> None:
    october.evaluate(DURING_GRACE)
    october.services().clock = lambda: AFTER_GRACE
    _final_report()
    before = october.budgets("2026-10")[1]["evaluated_at"]
    october.evaluate(AFTER_GRACE + timedelta(hours=10))
    assert october.budgets("2026-10")[1]["evaluated_at"] == before

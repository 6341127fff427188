"""The report page shows each budget of its month (spent, forecast, amount), cut to what its reader may see."""

from __future__ import annotations

import re

import azure.functions as func
import pytest

from chargeback.app import runtime
from tests.budgets.support import MID_NOVEMBER, TEAM_A_GROUP, BudgetApp
from tests.functions import followed, post_report, registered, run_queue
from tests.principals import client_principal


@pytest.fixture(name="page_of")
def fixture_page_of(november: BudgetApp) -> BudgetApp:
    """November evaluated, then its report generated (a draft, as the timer makes one mid-month)."""
    november.evaluate(MID_NOVEMBER)
    assert post_report("2026-11").status_code == 202
    assert run_queue() == [None]
    return november


def page(headers: dict[str, str] | None = None) -> str:
    request = func.HttpRequest(
        "GET",
        "/api/reports/2026-11",
        params={"format": "html"},
        route_params={"period": "2026-11"},
        headers=headers or {},
        body=b"",
    )
    response = followed(registered("report").get_user_function()(request))
    assert response.status_code == 200
    return response.get_body().decode()


def budget_rows(html: str) -> dict[str, list[str]]:
    section = html.split("<h2>Budgets</h2>", 1)[1].split("</section>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", section, re.S)[1:]
    cells = [re.findall(r"<td[^>]*>(?:<span[^>]*>)?(.*?)(?:</span>)?</td>", row) for row in rows]
    return {cell[0]: cell[1:] for cell in cells}


def test_the_page_shows_each_budget_with_spent_forecast_and_amount(page_of: BudgetApp) -> None:
    rows = budget_rows(page())
    assert rows["subscription team-b"] == [
        "CC-B",
        "3.50 USD",
        "3.50 USD",
        "3.00 USD",
        "116.66 %",
        "exceeded",
        "suspended",
    ]
    assert rows["subscription team-a"][1:4] == ["3.50 USD", "3.50 USD", "4.00 USD"]
    assert set(rows) == {"subscription team-a", "subscription team-b", "cost center CC-A"}


def test_the_page_says_when_the_budgets_were_evaluated(page_of: BudgetApp) -> None:
    assert "As evaluated at 2026-11-20T12:00:00.000000Z." in page()


def test_a_teams_page_shows_only_its_budgets(page_of: BudgetApp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    runtime.reset()
    rows = budget_rows(page({"X-MS-CLIENT-PRINCIPAL": client_principal(groups=[TEAM_A_GROUP])}))
    assert set(rows) == {"subscription team-a", "cost center CC-A"}


def test_a_month_without_budgets_has_no_budget_section(budget_app: BudgetApp) -> None:
    assert post_report("2026-11").status_code == 202
    assert run_queue() == [None]
    assert "<h2>Budgets</h2>" not in page()

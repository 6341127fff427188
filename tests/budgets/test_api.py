"""GET /api/budgets/{period} answers each caller the budgets of its scope, or the budget file's error."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from chargeback.app import runtime
from chargeback.domain.errors import MonitorError
from tests.budgets.support import (
    MID_NOVEMBER,
    TEAM_A_GROUP,
    TEAM_B_GROUP,
    BudgetApp,
    alert_lines,
    budget_row,
)
from tests.functions import get, registered
from tests.principals import client_principal

ADMIN = client_principal(roles=["Chargeback.Admin"])
FINANCE = client_principal(roles=["Chargeback.FinanceReader"])
TEAM_A = client_principal(groups=[TEAM_A_GROUP])
TEAM_B = client_principal(groups=[TEAM_B_GROUP])
STRANGER = client_principal(groups=["3d7a3c2a-9f5c-4c77-9f7a-2f8b3b9a2c03"])
EVERY_BUDGET = {("subscription", "team-a"), ("subscription", "team-b"), ("cost_center", "CC-A")}
DECIMAL = re.compile(r"\A-?\d+\.\d{2}\Z")


@pytest.fixture(name="evaluated")
def fixture_evaluated(november: BudgetApp) -> BudgetApp:
    november.evaluate(MID_NOVEMBER)
    return november


@pytest.fixture(name="signed_in")
def fixture_signed_in(evaluated: BudgetApp, monkeypatch: pytest.MonkeyPatch) -> BudgetApp:
    """App Service Authentication on: the platform vouches for the principal header."""
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    runtime.reset()
    evaluated.services()
    return evaluated


def names(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(row["scope"], row["id"]) for row in document["budgets"]}


def test_the_answer_has_the_period_the_currency_and_every_budget(evaluated: BudgetApp) -> None:
    status, document = evaluated.budgets("2026-11")
    assert status == 200
    assert (document["period"], document["currency"]) == ("2026-11", "USD")
    assert names(document) == EVERY_BUDGET
    assert (document["evaluated_at"], document["enforcement"], document["closed"]) == (
        "2026-11-20T12:00:00.000000Z",
        "on",
        False,
    )


def test_each_budget_carries_the_fields_the_api_promises_with_money_as_decimal_strings(evaluated: BudgetApp) -> None:
    row = budget_row(evaluated.budgets("2026-11")[1], "subscription", "team-a")
    assert {"scope", "id", "amount", "spent", "forecast", "percent", "status", "thresholds_crossed", "action"} <= set(
        row
    )
    assert all(DECIMAL.match(row[name]) for name in ("amount", "spent", "forecast", "percent"))
    assert (row["amount"], row["spent"], row["status"], row["action"]) == ("4.00", "3.50", "warning", "alerted")


def test_a_budget_nothing_was_spent_against_is_ok_with_nothing_done(evaluated: BudgetApp) -> None:
    row = budget_row(evaluated.budgets("2026-11")[1], "cost_center", "CC-A")
    assert (row["spent"], row["status"], row["action"], row["thresholds_crossed"]) == ("3.50", "ok", "none", [])


@pytest.mark.parametrize("principal", [ADMIN, FINANCE], ids=["admin", "finance reader"])
def test_admins_and_finance_readers_see_every_budget(signed_in: BudgetApp, principal: str) -> None:
    status, document = signed_in.budgets("2026-11", principal)
    assert (status, names(document)) == (200, EVERY_BUDGET)


def test_a_team_sees_the_budgets_of_its_cost_centers_and_of_their_subscriptions_only(signed_in: BudgetApp) -> None:
    status, document = signed_in.budgets("2026-11", TEAM_A)
    assert (status, names(document)) == (200, {("subscription", "team-a"), ("cost_center", "CC-A")})
    assert document["scope"] == {"cost_centers": ["CC-A"]}
    assert "breaker" not in document


def test_another_team_sees_only_its_own(signed_in: BudgetApp) -> None:
    assert names(signed_in.budgets("2026-11", TEAM_B)[1]) == {("subscription", "team-b")}


def test_a_caller_without_role_or_mapped_group_gets_403(signed_in: BudgetApp) -> None:
    status, document = signed_in.budgets("2026-11", STRANGER)
    assert (status, document["error"]["code"]) == (403, "forbidden")


def test_without_sign_in_where_sign_in_is_on_the_answer_is_401(signed_in: BudgetApp) -> None:
    assert signed_in.budgets("2026-11")[0] == 401


@pytest.mark.parametrize("period", ["2026-13", "2026-11-20", "26-11", "../x"])
def test_a_malformed_period_gets_a_400_naming_the_period(evaluated: BudgetApp, period: str) -> None:
    status, document = evaluated.budgets(period)
    assert (status, document["error"]["field"]) == (400, "period")


def test_a_month_not_evaluated_yet_gets_a_404(evaluated: BudgetApp) -> None:
    status, document = evaluated.budgets("2026-09")
    assert (status, document["error"]["code"]) == (404, "not_found")


def test_the_route_is_left_to_sign_in_like_the_other_reads() -> None:
    [trigger] = [
        b for b in json.loads(registered("get_budgets").get_function_json())["bindings"] if b["type"] == "httpTrigger"
    ]
    assert (trigger["route"], trigger["methods"], trigger["authLevel"]) == ("budgets/{period}", ["GET"], "ANONYMOUS")


def test_the_timer_runs_on_the_budget_schedule_setting() -> None:
    [timer] = [b for b in json.loads(registered("evaluate_budgets").get_function_json())["bindings"]]
    assert (timer["type"], timer["schedule"]) == ("timerTrigger", "%BUDGET_SCHEDULE%")


# --------------------------------------------------------------------------------------------
# A budget file that cannot be used: no action at all, the error logged and answered

BAD = "scope,id,monthly_amount,currency,thresholds,action\nsubscription,team-b,-3.00,USD,,suspend\n"


@pytest.fixture(name="bad_file")
def fixture_bad_file(november: BudgetApp) -> BudgetApp:
    november.configure(budgets=BAD)
    return november


def test_an_evaluation_with_a_bad_file_takes_no_action_at_all(
    bad_file: BudgetApp, caplog: pytest.LogCaptureFixture
) -> None:
    bad_file.evaluate(MID_NOVEMBER)
    services = bad_file.services()
    table = services.storage.table(services.settings.storage.budget_table)
    assert list(table.list_entities()) == []
    assert (bad_file.arm.requests, alert_lines(caplog)) == ([], [])
    assert bad_file.budgets("2026-11")[0] != 200


def test_an_evaluation_with_a_bad_file_logs_the_file_the_row_and_the_problem(
    bad_file: BudgetApp, caplog: pytest.LogCaptureFixture
) -> None:
    bad_file.evaluate(MID_NOVEMBER)
    [record] = [r for r in caplog.records if r.getMessage().startswith("chargeback.budget.invalid ")]
    line = json.loads(record.getMessage().removeprefix("chargeback.budget.invalid "))
    assert (line["file"], line["row"], line["acted"]) == ("budgets.csv", "row 2", False)
    assert "greater than zero" in line["problem"]
    assert record.levelno == logging.ERROR


def test_the_api_answers_with_the_budget_files_error_naming_no_path(bad_file: BudgetApp) -> None:
    status, document = bad_file.budgets("2026-11")
    assert (status, document["error"]["code"]) == (500, "invalid_budget_file")
    assert (
        document["error"]["message"]
        == "budget file budgets.csv, row 2: monthly_amount must be greater than zero, got -3.00"
    )
    assert str(bad_file.folder) not in json.dumps(document)


def test_a_budget_file_fixed_after_an_error_is_evaluated_again(bad_file: BudgetApp) -> None:
    bad_file.evaluate(MID_NOVEMBER)
    bad_file.configure()
    bad_file.evaluate(MID_NOVEMBER)
    assert bad_file.budgets("2026-11")[0] == 200


def test_a_bad_budget_file_affects_nothing_else_in_the_app(bad_file: BudgetApp) -> None:
    bad_file.evaluate(MID_NOVEMBER)
    response = get("get_usage", "/api/usage/2026-11", {"period": "2026-11"})
    assert response.status_code == 200
    assert json.loads(response.get_body())["totals"]["requests"] == 3


# --------------------------------------------------------------------------------------------
# The LLM logs first, and their failure is not the evaluation's


def test_the_evaluation_brings_the_months_llm_logs_up_to_date_first(
    november: BudgetApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[datetime, list[str] | None]] = []
    services = november.services()
    monkeypatch.setattr(services, "collect_llm_logs", lambda now, months=None: asked.append((now, months)))
    november.evaluate(MID_NOVEMBER)
    assert asked == [(MID_NOVEMBER, ["2026-11"])]


def test_in_the_grace_days_the_closed_months_llm_logs_are_brought_up_to_date_too(
    november: BudgetApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[list[str] | None] = []
    monkeypatch.setattr(november.services(), "collect_llm_logs", lambda now, months=None: asked.append(months))
    november.evaluate(datetime(2026, 12, 2, 3, tzinfo=UTC))
    assert asked == [["2026-11", "2026-12"]]


def test_a_failed_llm_log_collection_is_logged_flagged_and_the_evaluation_goes_on(
    november: BudgetApp, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(now: datetime, months: list[str] | None = None) -> None:
        raise MonitorError("Log Analytics gave a partial answer")

    monkeypatch.setattr(november.services(), "collect_llm_logs", fail)
    november.evaluate(MID_NOVEMBER)
    document = november.budgets("2026-11")[1]
    assert document["llm_logs"] == "failed"
    assert budget_row(document, "subscription", "team-b")["action"] == "suspended"
    assert any('"llm_logs": "failed"' in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_without_an_llm_log_source_the_snapshot_says_so(november: BudgetApp) -> None:
    november.evaluate(MID_NOVEMBER)
    assert november.budgets("2026-11")[1]["llm_logs"] == "not_configured"


def test_the_evaluations_in_the_next_months_first_days_evaluate_the_closed_month(november: BudgetApp) -> None:
    november.evaluate(datetime(2026, 12, 2, 3, tzinfo=UTC))
    closed = november.budgets("2026-11")[1]
    assert closed["closed"] is True
    assert {row["forecast"] for row in closed["budgets"]} == {row["spent"] for row in closed["budgets"]}


def test_without_budgets_nothing_is_priced_and_the_month_has_none(
    budget_app: BudgetApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget_app.configure(CHARGEBACK_BUDGETS="")
    services = budget_app.services()
    monkeypatch.setattr(services.budgets.reader, "days", lambda *_: pytest.fail("the month was read"))
    budget_app.evaluate(MID_NOVEMBER)
    status, document = budget_app.budgets("2026-11")
    assert (status, document["budgets"]) == (200, [])

"""The budget file is read whole or refused whole, with its name, the row and the problem."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from chargeback.budgets.definitions import (
    ALERT,
    COST_CENTER,
    DEFAULT_THRESHOLDS,
    SUBSCRIPTION,
    SUSPEND,
    Budget,
    load_budgets,
    parse_budgets,
)
from chargeback.domain.errors import BudgetFileError, ConfigurationError
from tests.support import ROOT

HEADER = "scope,id,monthly_amount,currency,thresholds,action\n"
GOOD = HEADER + "subscription,team-a,4.00,USD,50;80;100,alert\ncost_center,CC-B,1200,USD,,suspend\n"


def parsed(text: str, name: str = "budgets.csv") -> list[Budget]:
    return parse_budgets(text, name, "USD", 2)


def refusal(text: str, name: str = "budgets.csv") -> BudgetFileError:
    with pytest.raises(BudgetFileError) as caught:
        parsed(text, name)
    return caught.value


def test_a_csv_file_gives_one_budget_per_row() -> None:
    assert parsed(GOOD) == [
        Budget(SUBSCRIPTION, "team-a", Decimal("4.00"), "USD", (50, 80, 100), ALERT),
        Budget(COST_CENTER, "CC-B", Decimal("1200"), "USD", DEFAULT_THRESHOLDS, SUSPEND),
    ]


def test_a_json_file_gives_the_same_budgets() -> None:
    text = (
        '{"budgets": [{"scope": "subscription", "id": "team-a", "monthly_amount": "4.00", "currency": "USD",'
        ' "thresholds": [50, 80, 100], "action": "alert"},'
        ' {"scope": "cost_center", "id": "CC-B", "monthly_amount": 1200, "currency": "USD", "action": "suspend"}]}'
    )
    assert parsed(text, "budgets.json") == parsed(GOOD)


def test_blank_thresholds_and_action_mean_50_80_100_and_alert() -> None:
    [budget] = parsed("scope,id,monthly_amount,currency\nsubscription,a,10,USD\n")
    assert (budget.thresholds, budget.action) == ((50, 80, 100), ALERT)


def test_blank_rows_comment_rows_and_notes_are_not_budgets() -> None:
    text = HEADER.rstrip("\n") + ",note\n# a comment,,,,,,\n,,,,,,\nsubscription,a,10,USD,,alert,for people\n"
    assert [budget.id for budget in parsed(text)] == ["a"]


def test_the_sample_budget_file_reads_against_the_sample_price_sheet() -> None:
    budgets = load_budgets(ROOT / "config" / "budgets.csv", "USD", 2)
    assert {budget.action for budget in budgets} == {ALERT, SUSPEND}


@pytest.mark.parametrize(
    ("text", "row", "problem"),
    [
        (HEADER + "subscription,a,4.00,USD,,alert\nsubscription,a,5.00,USD,,alert\n", "row 3", "a second budget"),
        (HEADER + "subscription,a,-4.00,USD,,alert\n", "row 2", "greater than zero"),
        (HEADER + "subscription,a,0,USD,,alert\n", "row 2", "greater than zero"),
        (HEADER + "subscription,a,four,USD,,alert\n", "row 2", "is not a number"),
        (HEADER + "subscription,a,NaN,USD,,alert\n", "row 2", "is not a number"),
        (HEADER + "subscription,a,,USD,,alert\n", "row 2", "monthly_amount is required"),
        (HEADER + "subscription,a,4.001,USD,,alert\n", "row 2", "more decimal places than USD"),
        (HEADER + "subscription,a,4.00,EUR,,alert\n", "row 2", "not the price sheet's USD"),
        (HEADER + "subscription,a,4.00,,,alert\n", "row 2", "currency is required"),
        (HEADER + "subscription,a,4.00,USD,,notify\n", "row 2", "action must be alert or suspend"),
        (HEADER + "team,a,4.00,USD,,alert\n", "row 2", "scope must be subscription or cost_center"),
        (HEADER + "subscription,,4.00,USD,,alert\n", "row 2", "id is required"),
        (HEADER + "subscription,a,4.00,USD,50;eighty,alert\n", "row 2", "is not a whole percent"),
        (HEADER + "subscription,a,4.00,USD,0,alert\n", "row 2", "is not a whole percent"),
        (HEADER + "subscription,a,4.00,USD,5000,alert\n", "row 2", "is not a whole percent"),
        (HEADER + "subscription,a,4.00,USD,,alert,extra\n", "row 2", "fields where the header names 6"),
        ("scope,id,ammount,currency\nsubscription,a,4,USD\n", "row 1", "unknown column 'ammount'"),
        ("scope,id,currency\nsubscription,a,USD\n", "row 1", "must name monthly_amount"),
        ("", "row 1", "the header must name"),
        (HEADER + 'subscription,"a,4.00,USD,,alert\n', "row 2", "not valid CSV"),
    ],
    ids=[
        "duplicate budget",
        "negative amount",
        "zero amount",
        "non-numeric amount",
        "NaN amount",
        "missing amount",
        "a fraction of a cent",
        "foreign currency",
        "no currency",
        "unknown action",
        "unknown scope",
        "no id",
        "non-numeric threshold",
        "zero threshold",
        "absurd threshold",
        "a field too many",
        "misspelt column",
        "missing column",
        "empty file",
        "unclosed quote",
    ],
)
def test_each_bad_csv_file_is_refused_naming_the_file_the_row_and_the_problem(
    text: str, row: str, problem: str
) -> None:
    error = refusal(text)
    assert (error.file, error.row) == ("budgets.csv", row)
    assert problem in error.problem
    assert str(error).startswith(f"budget file budgets.csv, {row}: ")


@pytest.mark.parametrize(
    ("text", "row", "problem"),
    [
        ('[{"scope": "subscription", "id": "a", "monthly_amount": "4", "currency": "USD"', "line 1", "not valid JSON"),
        ('{"scope": "subscription"}', None, "must be a list of budgets"),
        ('["subscription"]', "entry 0", "must be an object"),
        ('[{"scope": "subscription", "id": "a", "monthly_amount": true, "currency": "USD"}]', "entry 0", "a number"),
        ('[{"scope": "subscription", "id": 7, "monthly_amount": 4, "currency": "USD"}]', "entry 0", "id must be text"),
        ('[{"scope": "subscription", "id": "a", "amount": 4, "currency": "USD"}]', "entry 0", "unknown field"),
        ('[{"scope": "subscription", "id": "a", "monthly_amount": 4, "currency": "USD", "thresholds": 80}]',
         "entry 0", "thresholds"),
    ],
    ids=["truncated", "not a list", "not an object", "boolean amount", "numeric id", "misspelt field", "one threshold"],
)  # fmt: skip
def test_each_bad_json_file_is_refused_naming_the_file_the_entry_and_the_problem(
    text: str, row: str | None, problem: str
) -> None:
    error = refusal(text, "budgets.json")
    assert (error.file, error.row) == ("budgets.json", row)
    assert problem in error.problem


def test_a_missing_file_is_refused_by_its_name_without_its_folder(tmp_path: Path) -> None:
    with pytest.raises(BudgetFileError) as caught:
        load_budgets(tmp_path / "nowhere" / "budgets.csv", "USD", 2)
    assert caught.value.file == "budgets.csv"
    assert str(tmp_path) not in str(caught.value)


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "budgets.csv"
    path.write_bytes(HEADER.encode() + "subscription,caf\xe9,4,USD,,alert\n".encode("latin-1"))
    with pytest.raises(BudgetFileError, match="is not UTF-8 text"):
        load_budgets(path, "USD", 2)


def test_a_budget_file_error_is_a_configuration_error() -> None:
    assert issubclass(BudgetFileError, ConfigurationError)


def test_a_currency_without_minor_units_takes_whole_amounts_only() -> None:
    with pytest.raises(BudgetFileError, match="more decimal places than JPY"):
        parse_budgets(HEADER + "subscription,a,400.5,JPY,,alert\n", "budgets.csv", "JPY", 0)
    [budget] = parse_budgets(HEADER + "subscription,a,400,jpy,,alert\n", "budgets.csv", "JPY", 0)
    assert (budget.amount, budget.currency) == (Decimal(400), "JPY")

"""The budget benchmark runs its real path at a small size, and its evaluations read only what was written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import budgets

pytestmark = [pytest.mark.slow]


@pytest.fixture(name="result", scope="module")
def fixture_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return budgets.run(100, 5, 500, 100, tmp_path_factory.mktemp("budget-bench"))


def test_each_evaluation_reads_from_the_ledger_table_only_the_rows_written_since_the_last_fence(
    result: dict[str, Any],
) -> None:
    evaluate = result["evaluate"]
    read = [evaluate[name]["ledger_rows_read"] for name in ("cold", "warm", "after_writes")]
    assert read == [500, 0, evaluate["after_writes"]["rows_written"]] == [500, 0, 100]


def test_the_evaluation_alerts_and_suspends_what_the_benchmark_set_up(result: dict[str, Any]) -> None:
    evaluate = result["evaluate"]
    assert (evaluate["answer"], evaluate["budgets"]) == (200, 100 + 100)
    assert (evaluate["suspended"], evaluate["subscription_changes"]) == (budgets.SUSPENDED, budgets.SUSPENDED)


def test_the_usage_api_answers_every_subscription_in_both_processes(result: dict[str, Any]) -> None:
    for phase in ("usage", "usage_new_process"):
        for request in ("month_first", "month_again", "day"):
            assert (result[phase][request]["status"], result[phase][request]["subscriptions"]) == (200, 100)


def test_the_benchmark_writes_into_a_folder_it_is_given(tmp_path: Path) -> None:
    centers, file = budgets._budget_files(tmp_path, 10)
    assert file.read_text().count("\n") == 1 + 10 + 100
    assert centers.read_text().count("\n") == 1 + 10

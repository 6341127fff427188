"""Fixtures of the budget tests: the ARM stand-in, the app configured for budgets, a month of usage."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.apim_standin import ApimStandIn
from tests.budgets.support import COST_CENTERS, NOVEMBER_10, PRICE_SHEET, BudgetApp, usage_event


@pytest.fixture(name="arm")
def fixture_arm() -> Iterator[ApimStandIn]:
    """The ARM stand-in with the teams' APIM subscriptions, all active."""
    with ApimStandIn() as stand_in:
        for sid in ("team-a", "team-a-dev", "team-b", "team-c"):
            stand_in.add(sid)
        yield stand_in


@pytest.fixture(name="budget_app")
def fixture_budget_app(
    app_settings: dict[str, str],
    arm: ApimStandIn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> BudgetApp:
    """The app with the test price sheet, cost centers and budgets, enforcement on against the stand-in."""
    (tmp_path / "price-sheet.json").write_text(json.dumps(PRICE_SHEET))
    (tmp_path / "cost-centers.csv").write_text(COST_CENTERS)
    monkeypatch.setenv("CHARGEBACK_PRICE_SHEET", str(tmp_path / "price-sheet.json"))
    monkeypatch.setenv("CHARGEBACK_COST_CENTERS", str(tmp_path / "cost-centers.csv"))
    caplog.set_level(logging.INFO, logger="chargeback")
    app = BudgetApp(arm, tmp_path, monkeypatch)
    app.configure()
    return app


@pytest.fixture(name="november")
def fixture_november(budget_app: BudgetApp) -> BudgetApp:
    """team-a and team-b each spend 3.50 on November 10; team-c 0.35 (tokens, not budgets)."""
    budget_app.send(
        [
            usage_event("team-a", 1_000_000, 100_000, NOVEMBER_10),
            usage_event("team-b", 1_000_000, 100_000, NOVEMBER_10),
            usage_event("team-c", 100_000, 10_000, NOVEMBER_10),
        ],
        NOVEMBER_10,
    )
    return budget_app

"""Shared fixtures: one Azurite per test session, clean settings and services per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from chargeback.app import runtime
from devtools.emulator import Azurite
from tests.support import ROOT


@pytest.fixture(name="azurite", scope="session")
def fixture_azurite() -> Iterator[Azurite]:
    """A real Azurite, in memory on free loopback ports, for the whole session."""
    with Azurite(ROOT) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no chargeback settings and no cached services."""
    for name in list(os.environ):
        if name.startswith(("CHARGEBACK_", "ChargebackStorage", "EVENTHUB_", "LOG_ANALYTICS")):
            monkeypatch.delenv(name)
    runtime.reset()
    yield
    runtime.reset()


@pytest.fixture(name="app_settings")
def fixture_app_settings(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Settings pointing the app at Azurite, with tables and containers of this test's own."""
    values = azurite.app_settings(uuid.uuid4().hex[:10])
    values["CHARGEBACK_PRICE_SHEET"] = str(ROOT / "config" / "price-sheet.json")
    values["CHARGEBACK_COST_CENTERS"] = str(ROOT / "config" / "cost-centers.csv")
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values

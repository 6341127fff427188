"""Shared fixtures: one Azurite per test session, clean settings and services per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from chargeback.app import runtime
from chargeback.ingestion.llm_log_rows import EXPORT_COLUMNS
from devtools.emulator import Azurite
from tests.support import ROOT

Writer = Callable[[list[dict[str, object]]], Path]


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


@pytest.fixture(name="write_export")
def fixture_write_export(app_settings: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Writer:
    """Writes the LLM-log export the app reads (replacing it, as a new export would)."""
    path = tmp_path / "llm-log-export.csv"
    monkeypatch.setenv("CHARGEBACK_LLM_LOG_EXPORT", str(path))
    runtime.reset()

    def write(rows: list[dict[str, object]]) -> Path:
        lines = [",".join(EXPORT_COLUMNS)] + [",".join(str(r[c]) for c in EXPORT_COLUMNS) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return write


@pytest.fixture(name="clock")
def fixture_clock(app_settings: dict[str, str]) -> Callable[[datetime], None]:
    """Set the app's clock (the services' clock, which the timer and the report jobs read)."""

    def set_now(moment: datetime) -> None:
        runtime.services().clock = lambda: moment

    return set_now

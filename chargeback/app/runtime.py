"""Wires the core to its Azure adapters from the app settings, once per worker process."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from chargeback.access import gate
from chargeback.access.scope import Scope
from chargeback.adapters import storage
from chargeback.adapters.blobs import BlobReportStore
from chargeback.adapters.monitor import monitor_source
from chargeback.adapters.reconciliation_store import TableReconciliationStore
from chargeback.adapters.tables import TableDeadLetterStore, TableLedgerStore
from chargeback.app.settings import Settings
from chargeback.billing.cost_centers import CostCenterMap, load_cost_centers
from chargeback.billing.prices import PriceSheet, load_price_sheet
from chargeback.ingestion.ledger import Ledger
from chargeback.reconciliation.monitor import MonitorSource
from chargeback.reports import page as report_page
from chargeback.reports import service as report_service

APP_ROOT = Path(__file__).resolve().parents[2]
"""Where function_app.py lives; relative paths in settings are read from here."""


def app_path(setting: str) -> Path:
    path = Path(setting)
    return path if path.is_absolute() else APP_ROOT / path


@dataclass
class Services:
    """The app's long-lived objects; clients are built on first use and reused."""

    settings: Settings

    @cached_property
    def storage(self) -> storage.StorageAccount:
        return storage.StorageAccount(self.settings.storage)

    @cached_property
    def ledger(self) -> Ledger:
        names = self.settings.storage
        return Ledger(
            TableLedgerStore(self.storage.table(names.ledger_table)),
            TableDeadLetterStore(
                self.storage.table(names.dead_letter_table), self.storage.container(names.dead_letter_container)
            ),
        )

    @cached_property
    def reports(self) -> report_service.ReportContext:
        settings = self.settings
        return report_service.ReportContext(
            usage=self.ledger,
            reports=BlobReportStore(self.storage.container(settings.storage.reports_container)),
            reconciliations=TableReconciliationStore(self.storage.table(settings.storage.reconciliation_table)),
            monitor=self.monitor,
            price_sheet=self.price_sheet,
            cost_centers=self.cost_centers,
            lag_hours=settings.lag_hours,
            tolerance_percent=settings.tolerance_percent,
            grace_days=settings.final_grace_days,
            render_extra={"html": report_page.render_page},
            provider_name=settings.provider_name,
        )

    def monitor(self) -> MonitorSource:
        export = self.settings.monitor_export
        if export:
            return monitor_source(dataclasses.replace(self.settings, monitor_export=str(app_path(export))))
        return monitor_source(self.settings)

    def price_sheet(self) -> PriceSheet:
        """Read on every use, so a price change needs no restart."""
        return load_price_sheet(app_path(self.settings.price_sheet))

    def cost_centers(self) -> CostCenterMap:
        return load_cost_centers(app_path(self.settings.cost_centers))

    def caller(self, headers: Mapping[str, str], *, master_key: bool = False) -> Scope:
        """Who sent a request with ``headers``, as a scope; see :mod:`chargeback.access.gate`."""
        return gate.caller_scope(self.settings.access, headers, self.cost_centers(), master_key=master_key)


_lock = threading.Lock()
_services: Services | None = None


def services() -> Services:
    """The process's services, built from the environment on first call."""
    global _services  # noqa: PLW0603 - one set of clients per worker process
    with _lock:
        if _services is None:
            _services = Services(Settings.from_env())
        return _services


def reset() -> None:
    """Forget the process's services, e.g. after the settings changed (tests)."""
    global _services  # noqa: PLW0603
    with _lock:
        _services = None

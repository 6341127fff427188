"""Wires the core to its Azure adapters from the app settings, once per worker process."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

from chargeback.adapters import storage
from chargeback.adapters.blobs import BlobJobStore, BlobReportStore
from chargeback.adapters.monitor import monitor_source
from chargeback.adapters.queues import StorageJobQueue
from chargeback.adapters.reconciliation_store import TableReconciliationStore
from chargeback.adapters.tables import TableDeadLetterStore, TableLedgerStore
from chargeback.app.settings import Settings
from chargeback.billing.cost_centers import CostCenterMap, load_cost_centers
from chargeback.billing.prices import PriceSheet, load_price_sheet
from chargeback.ingestion.ledger import Ledger
from chargeback.reconciliation.monitor import MonitorSource
from chargeback.reports import jobs as report_jobs
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
    clock: Callable[[], datetime] = field(default=report_service.utc_now)
    """The reports' clock; the demo and tests pass their own."""

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
    def _report_store(self) -> BlobReportStore:
        return BlobReportStore(self.storage.container(self.settings.storage.reports_container))

    @cached_property
    def _reconciliation_store(self) -> TableReconciliationStore:
        return TableReconciliationStore(self.storage.table(self.settings.storage.reconciliation_table))

    @property
    def reports(self) -> report_service.ReportContext:
        settings = self.settings
        return report_service.ReportContext(
            usage=self.ledger,
            reports=self._report_store,
            reconciliations=self._reconciliation_store,
            monitor=self.monitor,
            price_sheet=self.price_sheet,
            cost_centers=self.cost_centers,
            lag_hours=settings.lag_hours,
            tolerance_percent=settings.tolerance_percent,
            grace_days=settings.final_grace_days,
            clock=self.clock,
            provider_name=settings.provider_name,
        )

    @cached_property
    def _job_queue(self) -> StorageJobQueue:
        return StorageJobQueue(self.storage.report_queue())

    @property
    def report_jobs(self) -> report_jobs.JobContext:
        """Report generation jobs: kept beside the reports, queued on the report queue."""
        return report_jobs.JobContext(
            reports=self.reports, store=BlobJobStore(self._report_store.container), queue=self._job_queue
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

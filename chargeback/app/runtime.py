"""Wires the core to its Azure adapters from the app settings, once per worker process."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from chargeback.access import gate
from chargeback.access.scope import Scope
from chargeback.adapters import apim, storage
from chargeback.adapters.apim import ArmGatewaySubscriptions, arm_credential
from chargeback.adapters.blobs import (
    BlobCompactDays,
    BlobCompactTotals,
    BlobCorrectionStore,
    BlobJobStore,
    BlobReportStore,
)
from chargeback.adapters.budget_store import BlobBudgetSnapshots, TableBudgetStore
from chargeback.adapters.finops_hub import BlobHubStore, hub_store
from chargeback.adapters.links import BlobLinks
from chargeback.adapters.llm_log_store import TableLlmLogStore
from chargeback.adapters.llm_logs import llm_log_source
from chargeback.adapters.log_ingestion import BlobPublishedStore, line_sink
from chargeback.adapters.monitor import monitor_source
from chargeback.adapters.queues import StorageJobQueue
from chargeback.adapters.reconciliation_store import TableReconciliationStore
from chargeback.adapters.tables import TableDeadLetterStore, TableLedgerStore
from chargeback.app.settings import Settings
from chargeback.billing.cost_centers import CostCenterMap, load_cost_centers
from chargeback.billing.prices import PriceSheet, load_price_sheet
from chargeback.budgets import evaluate as budget_evaluation
from chargeback.budgets.definitions import Budget, load_budgets
from chargeback.budgets.document import report_rows
from chargeback.budgets.evaluate import BudgetContext
from chargeback.budgets.gateway import GatewaySubscriptions, RetryPolicy
from chargeback.budgets.reader import MonthReader
from chargeback.domain import periods
from chargeback.domain.errors import ChargebackError, CollectionError, ConfigurationError, ReportScheduleError
from chargeback.domain.logs import LLM_LOGS, log_event
from chargeback.ingestion import llm_logs
from chargeback.ingestion.ledger import Ledger
from chargeback.ingestion.llm_log_calls import LlmLogSource
from chargeback.ingestion.llm_log_rows import SCOPE_ALL, SCOPE_OFF
from chargeback.reconciliation.monitor import MonitorSource
from chargeback.reports import finops_hub, published_lines
from chargeback.reports import jobs as report_jobs
from chargeback.reports import service as report_service
from chargeback.reports.build import budget_frame
from chargeback.reports.live_days import LiveDays
from chargeback.reports.model import FINAL, Manifest
from chargeback.reports.month_totals import MonthTotals
from chargeback.reports.month_view import MonthView

logger = logging.getLogger(__name__)

APP_ROOT = Path(__file__).resolve().parents[2]
"""Where function_app.py lives; relative paths in settings are read from here."""


def app_path(setting: str) -> Path:
    path = Path(setting)
    return path if path.is_absolute() else APP_ROOT / path


def _each_tried(*steps: Callable[[], object] | None) -> ChargebackError | None:
    """Run every step there is, whatever the others did; the first failure, if any."""
    failure: ChargebackError | None = None
    for step in steps:
        try:
            if step is not None:
                step()
        except ChargebackError as exc:
            failure = failure or exc
    return failure


@dataclass
class Services:
    """The app's long-lived objects; clients are built on first use and reused."""

    settings: Settings
    clock: Callable[[], datetime] = field(default=report_service.utc_now)
    """The reports' (and budgets') clock; the demo and tests pass their own."""
    gateway_credential: Any = None
    """What signs in to Azure Resource Manager; None: the app's managed identity (the demo and tests
    pass a token for the local stand-in)."""
    budget_retries: RetryPolicy = field(default_factory=RetryPolicy)
    """How hard an evaluation retries a change to an APIM subscription before leaving it to the next."""
    gateway_read_seconds: float = apim.READ_SECONDS
    """How long a call to Azure Resource Manager may take to answer before it is a timeout."""

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
    def llm_log_store(self) -> TableLlmLogStore:
        """LLM-log usage lives in the ledger's own table, in slices of its own."""
        return TableLlmLogStore(self.storage.table(self.settings.storage.ledger_table))

    @property
    def events_billed(self) -> bool:
        """False when the LLM logs bill every call: the usage events are then set aside."""
        return self.settings.llm_log_scope != SCOPE_ALL

    def llm_log_source(self) -> LlmLogSource:
        export = self.settings.llm_log_export
        if export:
            return llm_log_source(dataclasses.replace(self.settings, llm_log_export=str(app_path(export))))
        return llm_log_source(self.settings)

    def collect_llm_logs(self, now: datetime, months: Sequence[str] | None = None) -> llm_logs.CollectOutcome | None:
        """Set the due days' LLM-log usage (of ``months``, else the collection window), each day on
        its own: what failed is in the outcome's ``failed``, never raised.

        None (and a warning) when no LLM-log source is configured.
        """
        scope = self.settings.llm_log_scope
        if scope == SCOPE_OFF:
            return None
        try:
            source = self.llm_log_source()
        except ConfigurationError as exc:
            log_event(logger, LLM_LOGS, logging.WARNING, collected=False, reason=str(exc))
            return None
        return llm_logs.collect(
            source, self.llm_log_store, scope=scope, now=now, lag_hours=self.settings.lag_hours, months=months
        )

    def streamed_usage(self, period: str, now: datetime) -> dict[str, Any]:
        """Whether ``period``'s streamed usage is all in the ledger, for its report to say."""
        settings = self.settings
        if settings.llm_log_scope == SCOPE_OFF:
            return {"status": "off", "incomplete_days": []}
        if not (settings.llm_log_export or settings.workspace_id):
            return {"status": "not_configured", "incomplete_days": []}
        return llm_logs.month_status(self.llm_log_store, period, now, settings.lag_hours).as_dict()

    def run_report_message(self, body: str, *, delivery: int) -> None:
        """One message of the report queue, its ``delivery``-th: a FinOps hub delivery, a publication
        of a committed report's lines, or a report job, which brings its own month's LLM-log usage
        up to date first (the timer collects the other months)."""
        if finops_hub.is_delivery(body):
            finops_hub.run(self.finops_hub, body)
        elif published_lines.is_publication(body):
            published_lines.run(self.line_publication, body)
        else:
            report_jobs.run(
                self.report_jobs,
                body,
                prepare=lambda period: self.collect_llm_logs(self.clock(), [period]),
                delivery=delivery,
            )

    def give_up_report_message(self, body: str) -> None:
        """A message the host gave up on: a job is failed, if it has not ended; a hub delivery or a
        publication is left to the timer, which queues again what is missing."""
        if not (finops_hub.is_delivery(body) or published_lines.is_publication(body)):
            report_jobs.give_up(self.report_jobs, body)

    def evaluate_budgets(self) -> None:
        """The budget timer's work: the usage API's kept sum of the month's settled days brought up
        to date (so that no request sums a month of days; done first, while the process is small),
        the evaluated months' LLM logs (a day that fails is not fatal: the evaluation goes on with
        what the ledger holds, and says so), then the budgets. A failure to keep the sum never
        stands in the budgets' way: it is raised once they are evaluated."""
        now = self.clock()

        def prepare(months: list[str]) -> llm_logs.CollectOutcome | None:
            outcome = self.collect_llm_logs(now, months)
            if outcome is not None and outcome.failed:
                raise CollectionError(outcome.failed)
            return outcome

        kept: ChargebackError | None = None
        try:
            self.month_totals.keep(periods.month_of(now), now)
        except ChargebackError as exc:
            kept = exc
        budget_evaluation.run(self.budgets, now, prepare=prepare)
        if kept is not None:
            raise kept

    def run_schedule(self) -> list[report_jobs.ReportJob]:
        """The timer's work: queue every due month's report, bring the LLM logs of the other months
        of the window up to date (each queued job brings its own month), and queue the FinOps hub
        deliveries a commit could not.

        None of these stops another; what failed is raised once all are done.
        """
        now = self.clock()
        failure: ChargebackError | None = None
        try:
            jobs = report_jobs.schedule(self.report_jobs)
            queued = [job["period"] for job in jobs]
        except ReportScheduleError as exc:
            jobs, queued, failure = [], exc.queued, exc
        others = [month for month in llm_logs.collection_months(now) if month not in queued]
        outcome = self.collect_llm_logs(now, others)
        if failure is None and outcome is not None and outcome.failed:
            failure = CollectionError(outcome.failed)
        failure = failure or self._schedule_follow_ups(now)
        if failure is not None:
            raise failure
        return jobs

    def _schedule_follow_ups(self, now: datetime) -> ChargebackError | None:
        """Queue the hub deliveries and line publications a commit could not; the first failure, if any."""
        hub, lines = self.finops_hub, self.line_publication
        return _each_tried(
            None if hub is None else lambda: finops_hub.schedule(hub, now),
            None if lines is None else lambda: published_lines.schedule(lines, now),
        )

    @cached_property
    def _report_store(self) -> BlobReportStore:
        container = self.storage.container(self.settings.storage.reports_container)
        return BlobReportStore(container, BlobLinks(self.storage.blobs()))

    @cached_property
    def month_view(self) -> MonthView:
        """The ledger read through compacted days, kept beside the reports."""
        return MonthView(
            TableLedgerStore(self.storage.table(self.settings.storage.ledger_table)),
            BlobCompactDays(self._report_store.container),
            self.settings.lag_hours,
        )

    @cached_property
    def live_days(self) -> LiveDays:
        """The days not yet settled, kept fenced in memory between evaluations and requests."""
        return LiveDays(self.month_view)

    @cached_property
    def month_totals(self) -> MonthTotals:
        """The usage API's reader: the month's settled days summed once and kept, corrected, plus the live days."""
        return MonthTotals(self.month_view, self.live_days, BlobCompactTotals(self._report_store.container))

    @cached_property
    def _budget_reader(self) -> MonthReader:
        return MonthReader(self.month_view, self.live_days)

    @cached_property
    def _budget_store(self) -> TableBudgetStore:
        return TableBudgetStore(self.storage.table(self.settings.storage.budget_table))

    def budget_definitions(self, sheet: PriceSheet) -> list[Budget]:
        """The budget file, read on every use (a change needs no restart); none when the setting is empty."""
        file = self.settings.budgets.file
        if file is None:
            return []
        return load_budgets(app_path(file), sheet.currency, sheet.minor_units)

    @cached_property
    def gateway(self) -> GatewaySubscriptions:
        """The configured API Management instance's subscriptions, through Azure Resource Manager."""
        budgets = self.settings.budgets
        if budgets.apim_resource_id is None:
            raise ConfigurationError("no API Management instance is configured")
        credential = self.gateway_credential
        if credential is None:
            credential = arm_credential(budgets.arm_client_id)
        return ArmGatewaySubscriptions(
            budgets.arm_endpoint, budgets.apim_resource_id, credential, read_seconds=self.gateway_read_seconds
        )

    @property
    def budgets(self) -> BudgetContext:
        budgets = self.settings.budgets
        return BudgetContext(
            reader=self._budget_reader,
            store=self._budget_store,
            snapshots=BlobBudgetSnapshots(self._report_store.container),
            budgets=self.budget_definitions,
            price_sheet=self.price_sheet,
            cost_centers=self.cost_centers,
            gateway=(lambda: self.gateway) if budgets.apim_resource_id is not None else None,
            enforcement=budgets.enforcement,
            max_suspensions=budgets.max_suspensions,
            grace_days=self.settings.final_grace_days,
            is_final=lambda period: self._report_store.pointer(period, FINAL) is not None,
            policy=self.budget_retries,
        )

    @cached_property
    def _reconciliation_store(self) -> TableReconciliationStore:
        return TableReconciliationStore(self.storage.table(self.settings.storage.reconciliation_table))

    @property
    def reports(self) -> report_service.ReportContext:
        settings = self.settings
        return report_service.ReportContext(
            usage=self.ledger,
            view=self.month_view,
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
            links=settings.downloads == "redirect",
            streamed_usage=self.streamed_usage,
            corrections=BlobCorrectionStore(self._report_store.container),
            budgets=self._budget_view,
        )

    def _budget_view(self, period: str) -> pd.DataFrame:
        """The month's budgets as last evaluated, for its report page; none when there is no evaluation."""
        found = BlobBudgetSnapshots(self._report_store.container).get(period)
        return budget_frame(report_rows(None if found is None else found[0], self.cost_centers()))

    @cached_property
    def _job_queue(self) -> StorageJobQueue:
        return StorageJobQueue(self.storage.report_queue())

    @property
    def report_jobs(self) -> report_jobs.JobContext:
        """Report generation jobs: kept beside the reports, queued on the report queue.

        With a FinOps hub named, each committed generation that wants a delivery queues one.
        """
        return report_jobs.JobContext(
            reports=self.reports,
            store=BlobJobStore(self._report_store.container),
            queue=self._job_queue,
            after_commit=self._after_commit,
        )

    def _after_commit(self, manifest: Manifest) -> None:
        """Queue what follows a commit: the hub delivery and the lines' publication, each tried;
        the first failure is raised once both were (the timer queues what was not)."""
        hub, lines = self.finops_hub, self.line_publication
        failure = _each_tried(
            None if hub is None else lambda: finops_hub.request(hub, manifest),
            None if lines is None else lambda: published_lines.request(lines, manifest),
        )
        if failure is not None:
            raise failure

    @property
    def line_publication(self) -> published_lines.PublishContext | None:
        """Publishing committed lines where ``CHARGEBACK_LINES_*`` name a destination, queued on the report queue."""
        lines = self.settings.lines
        if lines is None:
            return None
        return published_lines.PublishContext(
            reports=self.reports,
            sink=line_sink(lines, self.settings.storage.client_id, APP_ROOT),
            published=BlobPublishedStore(self._report_store.container),
            queue=self._job_queue,
        )

    @cached_property
    def _hub_store(self) -> BlobHubStore | None:
        hub = self.settings.finops_hub
        if hub is None:
            return None
        return hub_store(hub, self.settings.storage.client_id)

    @property
    def finops_hub(self) -> finops_hub.HubContext | None:
        """Deliveries to the FinOps hub ``CHARGEBACK_FINOPS_HUB_STORAGE`` names, queued on the report queue."""
        hub, store = self.settings.finops_hub, self._hub_store
        if hub is None or store is None:
            return None
        return finops_hub.HubContext(reports=self.reports, hub=store, queue=self._job_queue, scope=hub.scope)

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

    def caller(self, headers: Mapping[str, str]) -> Scope:
        """Who sent a request with ``headers``, as a scope; see :mod:`chargeback.access.gate`."""
        return gate.caller_scope(self.settings.access, headers, self.cost_centers())


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

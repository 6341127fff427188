"""The app's metrics, recorded through the vendor-neutral OpenTelemetry API only.

No exporter is set up here: the edge does that once (``chargeback.adapters.telemetry`` in Azure,
the demo and the tests with a reader of their own). Until then every instrument is the API's
proxy, which records nothing, so the core runs the same with and without telemetry.

Dimensions are of low cardinality by rule: hub, partition, reason, outcome, status, source,
scope, threshold, action. A subscription id, a period or a generation never appears on a metric:
those belong in the ledger, the reports, the published lines and the log lines. Every metric's
name, unit and dimensions are listed in docs/operations.md, which says what to do when it moves.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from opentelemetry import metrics

METER_NAME = "chargeback"

_meter = metrics.get_meter(METER_NAME)

# Ingestion (chargeback.ingestion.ingest): every batch; received = applied + skipped + dead-lettered.
EVENTS_RECEIVED = _meter.create_counter(
    "chargeback.events.received", unit="{event}", description="Usage events delivered to ingest_usage"
)
EVENTS_APPLIED = _meter.create_counter(
    "chargeback.events.applied", unit="{event}", description="Usage events counted in the ledger"
)
EVENTS_SKIPPED = _meter.create_counter(
    "chargeback.events.skipped", unit="{event}", description="Usage events skipped as already applied (redelivery)"
)
EVENTS_DEAD_LETTERED = _meter.create_counter(
    "chargeback.events.dead_lettered", unit="{event}", description="Usage events set aside, by reason"
)
INGEST_LAG = _meter.create_histogram(
    "chargeback.ingest.lag",
    unit="s",
    description="Seconds from the enqueued time of a batch's newest event to its ingestion",
)
LEDGER_TRANSACTIONS = _meter.create_counter(
    "chargeback.ledger.transactions", unit="{transaction}", description="Entity-group transactions written"
)
LEDGER_CONFLICTS = _meter.create_counter(
    "chargeback.ledger.conflicts", unit="{conflict}", description="Transactions that lost an ETag race"
)

# LLM-log collection (chargeback.ingestion.llm_logs): every run of the timer or a report job.
LLM_LOG_ROWS = _meter.create_counter(
    "chargeback.llm_logs.rows", unit="{row}", description="LLM-log rows read from the workspace or an export"
)
LLM_LOG_CALLS = _meter.create_counter(
    "chargeback.llm_logs.calls",
    unit="{call}",
    description="Calls counted in the days collected; a day read again counts again",
)
LLM_LOG_REJECTED = _meter.create_counter(
    "chargeback.llm_logs.rejected", unit="{row}", description="LLM-log rows that cannot be billed, by reason"
)
LLM_LOG_DAYS = _meter.create_counter(
    "chargeback.llm_logs.days", unit="{day}", description="Days collected, by outcome (collected, failed)"
)
LLM_LOG_UNATTRIBUTED = _meter.create_gauge(
    "chargeback.llm_logs.unattributed_tokens",
    unit="{token}",
    description="Tokens of the days just collected whose subscription is not known yet",
)

# Reports (chargeback.reports.service and jobs).
REPORT_GENERATIONS = _meter.create_counter(
    "chargeback.report.generations", unit="{generation}", description="Report generations, by outcome and status"
)
REPORT_DURATION = _meter.create_histogram(
    "chargeback.report.duration", unit="s", description="Seconds a report generation took, by outcome and status"
)
REPORT_JOBS = _meter.create_counter(
    "chargeback.report.jobs", unit="{job}", description="Report jobs that ended or could not be queued, by outcome"
)
LINES_PUBLISHED = _meter.create_counter(
    "chargeback.lines.publications", unit="{generation}", description="Publications of report lines, by outcome"
)
LINE_ROWS = _meter.create_counter(
    "chargeback.lines.rows", unit="{row}", description="Report lines sent to Log Analytics (or the local file)"
)

# Budgets: evaluations, thresholds crossed, subscriptions suspended or re-activated.
BUDGET_EVALUATIONS = _meter.create_counter(
    "chargeback.budget.evaluations", unit="{evaluation}", description="Budget evaluations, by outcome"
)
BUDGET_THRESHOLDS = _meter.create_counter(
    "chargeback.budget.thresholds", unit="{crossing}", description="Budget thresholds crossed, by threshold"
)
BUDGET_ACTIONS = _meter.create_counter(
    "chargeback.budget.actions", unit="{action}", description="Subscriptions suspended or re-activated"
)


def _add(counter: metrics.Counter, amount: int, attributes: Mapping[str, str]) -> None:
    if amount:
        counter.add(amount, attributes)


def batch_ingested(
    hub: str,
    partition: str,
    *,
    received: int,
    applied: int,
    skipped: int,
    dead_letters: Mapping[str, int],
    transactions: int,
    conflicts: int,
) -> None:
    """One ingest batch: its counts, dead letters by reason, and the ledger work it took."""
    where = {"hub": hub, "partition": partition}
    _add(EVENTS_RECEIVED, received, where)
    _add(EVENTS_APPLIED, applied, where)
    _add(EVENTS_SKIPPED, skipped, where)
    for reason, count in dead_letters.items():
        _add(EVENTS_DEAD_LETTERED, count, {**where, "reason": reason})
    _add(LEDGER_TRANSACTIONS, transactions, {"source": "events"})
    _add(LEDGER_CONFLICTS, conflicts, {"source": "events"})


def ingest_lag(hub: str, partition: str, newest_enqueued: datetime, now: datetime) -> None:
    """How far behind the partition's reader is: ``now`` minus the enqueued time of the newest event
    of the batch (UTC when it names no zone), in seconds, never negative (the clocks differ).

    One value per batch, not per event: the SDK takes ~20 µs to record a histogram value
    (benchmarks/README.md §10), as much as ingesting the event itself.
    """
    moment = newest_enqueued if newest_enqueued.tzinfo is not None else newest_enqueued.replace(tzinfo=UTC)
    INGEST_LAG.record(max((now - moment).total_seconds(), 0.0), {"hub": hub, "partition": partition})


def llm_logs_collected(
    scope: str,
    *,
    rows: int,
    calls: int,
    rejected: Mapping[str, int],
    collected_days: int,
    failed_days: int,
    unattributed_tokens: int,
    transactions: int,
    conflicts: int,
) -> None:
    """One LLM-log collection: what it read and billed, and how many days failed."""
    where = {"scope": scope}
    _add(LLM_LOG_ROWS, rows, where)
    _add(LLM_LOG_CALLS, calls, where)
    for reason, count in rejected.items():
        _add(LLM_LOG_REJECTED, count, {**where, "reason": reason})
    _add(LLM_LOG_DAYS, collected_days, {**where, "outcome": "collected"})
    _add(LLM_LOG_DAYS, failed_days, {**where, "outcome": "failed"})
    LLM_LOG_UNATTRIBUTED.set(unattributed_tokens, where)
    _add(LEDGER_TRANSACTIONS, transactions, {"source": "llm_logs"})
    _add(LEDGER_CONFLICTS, conflicts, {"source": "llm_logs"})


def report_generated(outcome: str, status: str, seconds: float) -> None:
    """A report generation ended: ``committed``, ``conflict`` (lost its commit race) or ``failed``."""
    where = {"outcome": outcome, "status": status}
    REPORT_GENERATIONS.add(1, where)
    REPORT_DURATION.record(seconds, where)


def report_job_ended(outcome: str) -> None:
    """A report job ended (``done``, ``failed``), went back to the queue (``requeued``), or a
    month due could not be queued (``not_queued``)."""
    REPORT_JOBS.add(1, {"outcome": outcome})


def lines_published(outcome: str, status: str, rows: int) -> None:
    """A generation's lines were published (``published``), found published (``already``), or not (``failed``)."""
    LINES_PUBLISHED.add(1, {"outcome": outcome, "status": status})
    _add(LINE_ROWS, rows, {"status": status})


def budget_evaluated(outcome: str) -> None:
    """A budget evaluation ended: ``done``, ``invalid`` (the budget file) or ``failed``.

    Budgets call the three ``budget_*`` functions where they log the same facts.
    """
    BUDGET_EVALUATIONS.add(1, {"outcome": outcome})


def budget_threshold_crossed(threshold: str) -> None:
    """A budget crossed ``threshold`` (e.g. ``80``, ``100``, ``forecast``) for the first time this month."""
    BUDGET_THRESHOLDS.add(1, {"threshold": threshold})


def budget_action(action: str, outcome: str) -> None:
    """A subscription ``suspend``-ed or ``reactivate``-d (``done``, ``failed``), or the breaker
    (``breaker``, ``tripped``) refused to suspend many at once."""
    BUDGET_ACTIONS.add(1, {"action": action, "outcome": outcome})

"""Applies one trigger invocation's batch to the ledger and logs one line an operator can query."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from chargeback.domain.logs import INGEST, log_event
from chargeback.ingestion.ledger import Batch, BatchOutcome, Ledger
from chargeback.observability import metrics

logger = logging.getLogger(__name__)


BILLED_BY_LLM_LOGS = "billed_by_llm_logs"
"""The dead-letter reason of usage events received while the LLM logs bill every call."""
BILLED_BY_LLM_LOGS_DETAIL = "the LLM logs bill every call (CHARGEBACK_LLM_LOG_SCOPE=all)"


def _now() -> datetime:
    return datetime.now(UTC)


def ingest(
    ledger: Ledger, batch: Batch, *, events_billed: bool = True, clock: Callable[[], datetime] = _now
) -> BatchOutcome:
    """Apply ``batch``; storage failures propagate so the host's retry policy holds the partition.

    The log line is ``chargeback.ingest {json}``: hub, partition, sequence range, counts and
    duration. It never carries a body, a key or a connection string. With ``events_billed``
    false (the LLM logs bill every call), the batch is dead-lettered instead, so no call is
    billed by both sources. The batch's counts and its lag (``clock()`` minus its newest
    event's enqueued time) are recorded as metrics.
    """
    started = time.perf_counter()
    if events_billed:
        outcome = ledger.apply(batch)
    else:
        outcome = ledger.set_aside(batch, BILLED_BY_LLM_LOGS, BILLED_BY_LLM_LOGS_DETAIL)
    record = outcome.as_log()
    record["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    level = logging.WARNING if outcome.dead_lettered else logging.INFO
    log_event(logger, INGEST, level, **record)
    _record_metrics(batch, outcome, clock())
    return outcome


def _record_metrics(batch: Batch, outcome: BatchOutcome, now: datetime) -> None:
    metrics.batch_ingested(
        batch.hub,
        batch.partition_id,
        received=outcome.received,
        applied=outcome.applied,
        skipped=outcome.skipped,
        dead_letters=outcome.reasons,
        transactions=outcome.transactions,
        conflicts=outcome.conflicts,
    )
    if batch.events:
        newest = max(event.enqueued_time for event in batch.events)
        metrics.ingest_lag(batch.hub, batch.partition_id, newest, now)

"""Applies one trigger invocation's batch to the ledger and logs one line an operator can query."""

from __future__ import annotations

import logging
import time

from chargeback.domain.logs import INGEST, log_event
from chargeback.ingestion.ledger import Batch, BatchOutcome, Ledger

logger = logging.getLogger(__name__)


def ingest(ledger: Ledger, batch: Batch) -> BatchOutcome:
    """Apply ``batch``; storage failures propagate so the host's retry policy holds the partition.

    The log line is ``chargeback.ingest {json}``: hub, partition, sequence range, counts and
    duration. It never carries a body, a key or a connection string.
    """
    started = time.perf_counter()
    outcome = ledger.apply(batch)
    record = outcome.as_log()
    record["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    level = logging.WARNING if outcome.dead_lettered else logging.INFO
    log_event(logger, INGEST, level, **record)
    return outcome

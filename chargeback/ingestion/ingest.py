"""Applies one trigger invocation's batch to the ledger and logs one line an operator can query."""

from __future__ import annotations

import json
import logging
import time

from chargeback.ingestion.ledger import Batch, BatchOutcome, Ledger

LOG_PREFIX = "chargeback.ingestion.ingest"
logger = logging.getLogger("chargeback.ingestion.ingest")


def ingest(ledger: Ledger, batch: Batch) -> BatchOutcome:
    """Apply ``batch``; storage failures propagate so the host's retry policy holds the partition.

    The log line is ``chargeback.ingestion.ingest {json}``: hub, partition, sequence range, counts and
    duration. It never carries a body, a key or a connection string.
    """
    started = time.perf_counter()
    outcome = ledger.apply(batch)
    record = outcome.as_log()
    record["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    level = logging.WARNING if outcome.dead_lettered else logging.INFO
    logger.log(level, "%s %s", LOG_PREFIX, json.dumps(record, sort_keys=True))
    return outcome

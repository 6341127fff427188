"""Scenario 1: parse, and parse + fold into the ledger, with no I/O (in-memory store), one core."""

from __future__ import annotations

from typing import Any

from benchmarks.measure import best_rate
from benchmarks.workload import Workload
from chargeback.domain.events import Rejection, parse_event
from chargeback.ingestion.ledger import Batch, Ledger
from devtools.memory import InMemoryDeadLetterStore, InMemoryLedgerStore
from devtools.shapes import SHAPES

MIXED = "mixed"


def _parse_all(batches: list[Batch]) -> int:
    rejected = 0
    for batch in batches:
        for event in batch.events:
            if isinstance(parse_event(event.body, event.enqueued_time), Rejection):
                rejected += 1
    return rejected


def _fold_all(batches: list[Batch]) -> tuple[Ledger, InMemoryLedgerStore, dict[str, int]]:
    store = InMemoryLedgerStore()
    ledger = Ledger(store, InMemoryDeadLetterStore())
    counts = dict.fromkeys(("received", "applied", "skipped", "dead_lettered", "transactions", "reads"), 0)
    for batch in batches:
        outcome = ledger.apply(batch)
        counts["received"] += outcome.received
        counts["applied"] += outcome.applied
        counts["skipped"] += outcome.skipped
        counts["dead_lettered"] += outcome.dead_lettered
        counts["transactions"] += outcome.transactions
        counts["reads"] += outcome.reads
    return ledger, store, counts


def parse_and_fold(shape: str, events: int, *, batch_size: int = 1000, rounds: int = 3) -> dict[str, Any]:
    """Rates of ``parse_event`` alone and of ``Ledger.apply`` (parse + fold + in-memory commit).

    The events are generated before the clock starts; each fold round starts from an empty
    ledger. The counts come from the ledger's own ``BatchOutcome``s and its stored rows.
    """
    workload = Workload(shapes=SHAPES if shape == MIXED else (shape,))
    batches = list(workload.core_batches(events, batch_size))
    generated = sum(len(batch.events) for batch in batches)
    body_bytes = [len(event.body) for batch in batches for event in batch.events]

    rejected = _parse_all(batches)
    parse_rate = best_rate(generated, lambda: _parse_all(batches), rounds)
    fold_rate = best_rate(generated, lambda: _fold_all(batches), rounds)

    ledger, store, counts = _fold_all(batches)
    months = sorted({key.split("|", 1)[0] for key in store.slices})
    requests = sum(row.counters.requests for month in months for row in ledger.period_rows(month))
    return {
        "shape": shape,
        "generated": generated,
        "batch_size": batch_size,
        "body_bytes_min": min(body_bytes),
        "body_bytes_mean": round(sum(body_bytes) / len(body_bytes)),
        "body_bytes_max": max(body_bytes),
        "parse_rejected": rejected,
        "parse_events_per_s": round(parse_rate),
        "parse_fold_events_per_s": round(fold_rate),
        **counts,
        "requests_in_ledger": requests,
    }


def run(events: int, *, rounds: int = 3) -> list[dict[str, Any]]:
    """Every shape on its own, then all four interleaved."""
    return [parse_and_fold(shape, events, rounds=rounds) for shape in (*SHAPES, MIXED)]

"""A deterministic event stream with a known ground truth, and a host that retries like the real one."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import orjson

from chargeback.app import runtime
from chargeback.domain.errors import StorageError
from devtools.hostshape import HostEvent
from tests.functions import deliver

ENQUEUED = datetime(2026, 11, 3, 6, 0, tzinfo=UTC)
"""Near the month boundary, so a late event dated in October keeps its own month (a second slice)."""
SUBSCRIPTIONS = 250
MAX_HOST_ATTEMPTS = 20


def body(partition: str, sequence: int, *, subscriptions: int = SUBSCRIPTIONS, late_every: int = 0) -> bytes:
    """Event ``sequence`` of ``partition``; every ``late_every``-th one is dated last month (another slice)."""
    document: dict[str, object] = {
        "SubscriptionId": f"sub-{(sequence * 7 + len(partition)) % subscriptions:03d}",
        "model": "gpt-4o",
        "usage": {"prompt_tokens": sequence % 1000, "completion_tokens": 1 + sequence % 7},
    }
    if late_every and sequence % late_every == 0:
        document["EventTime"] = "2026-10-31T23:00:00Z"
    return orjson.dumps(document)


def tokens(sequence: int) -> int:
    return sequence % 1000 + 1 + sequence % 7


def events(partition: str, sequences: Iterable[int], **shape: int) -> list[HostEvent]:
    return [HostEvent(body(partition, n, **shape), n, ENQUEUED + timedelta(milliseconds=n)) for n in sequences]


def truth(counts: dict[str, int]) -> tuple[int, int]:
    """(requests, total tokens) of the first ``counts[p]`` events of every partition ``p``."""
    return sum(counts.values()), sum(tokens(n) for count in counts.values() for n in range(count))


def ledger_totals() -> tuple[int, int]:
    """(requests, total tokens) in the ledger, over the months the stream touches."""
    ledger = runtime.services().ledger
    rows = [*ledger.period_rows("2026-10"), *ledger.period_rows("2026-11")]
    return sum(row.counters.requests for row in rows), sum(row.counters.total_tokens for row in rows)


def host_delivers(batch: Sequence[HostEvent], partition: str, *, between_attempts: object = None) -> int:
    """Deliver like the host with an unbounded retry policy: re-invoke the same batch until it
    returns. Return how many invocations failed first."""
    for failures in range(MAX_HOST_ATTEMPTS):
        try:
            deliver(batch, partition_id=partition)
        except StorageError:
            if callable(between_attempts):
                between_attempts()
            continue
        return failures
    raise AssertionError(f"the batch never went through in {MAX_HOST_ATTEMPTS} invocations")

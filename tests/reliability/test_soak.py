"""Soaks: a million events with random redeliveries in flat memory, and fifty thousand against Azurite."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from chargeback.app import runtime
from chargeback.ingestion.ledger import Ledger
from devtools.hostshape import HostEvent
from devtools.memory import InMemoryDeadLetterStore, InMemoryLedgerStore
from tests.functions import deliver

START = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)
PARTITIONS = ("0", "1", "2", "3")
MAX_RSS_GROWTH_KB = 50 * 1024


@dataclass
class Soak:
    """Generates each partition's stream, delivers it with random redeliveries, keeps the ground truth."""

    events_per_partition: int
    batch_size: int
    seed: int = 7
    requests: int = 0
    total_tokens: int = 0
    rejected: int = 0
    delivered: int = 0
    lines: list[dict[str, int]] = field(default_factory=list)

    def event(self, partition: str, sequence: int) -> HostEvent:
        enqueued = START + timedelta(milliseconds=800 * sequence)
        if sequence % 997 == 13:
            return HostEvent(b'{"SubscriptionId": "x", "TotalTokens": "lots"}', sequence, enqueued)
        prompt, completion = sequence % 501, sequence % 37
        body = orjson.dumps(
            {
                "schema": "chargeback.usage/v1",
                "subscriptionId": f"team-{(sequence * 31 + int(partition)) % 50}",
                "model": "gpt-4o" if sequence % 3 else "gpt-4o-mini",
                "deployment": "prod",
                "operationId": "chat",
                "eventTime": enqueued.isoformat(),
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
            }
        )
        return HostEvent(body, sequence, enqueued)

    def truth_of(self, sequence: int) -> None:
        if sequence % 997 == 13:
            self.rejected += 1
        else:
            self.requests += 1
            self.total_tokens += sequence % 501 + sequence % 37

    def batches(self) -> Iterator[tuple[str, list[HostEvent]]]:
        """Every partition's stream in batches; one in ten is redelivered, reaching back up to half a batch."""
        chooser = random.Random(self.seed)
        for start in range(0, self.events_per_partition, self.batch_size):
            end = min(start + self.batch_size, self.events_per_partition)
            for partition in PARTITIONS:
                for sequence in range(start, end):
                    self.truth_of(sequence)
                batch = [self.event(partition, n) for n in range(start, end)]
                yield partition, batch
                if chooser.random() < 1 / 10:
                    back = chooser.randrange(self.batch_size // 2)
                    yield partition, [self.event(partition, n) for n in range(max(0, start - back), end)]

    def run(self, checkpoint: int = 0) -> int:
        """Deliver everything; return VmRSS (kB) once ``checkpoint`` events went through."""
        rss = 0
        for partition, batch in self.batches():
            deliver(batch, partition_id=partition)
            self.delivered += len(batch)
            if not rss and self.delivered >= checkpoint:
                rss = vm_rss_kb()
        return rss


def vm_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


class _Lines(logging.Handler):
    """Keeps the counts of each ``chargeback.ingestion.ingest`` line (not the records: they would grow the heap)."""

    def __init__(self, soak: Soak) -> None:
        super().__init__(logging.INFO)
        self.soak = soak

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not message.startswith("chargeback.ingest "):
            return
        line = json.loads(message.removeprefix("chargeback.ingest "))
        keep = ("received", "applied", "skipped_already_applied", "dead_lettered")
        totals = self.soak.lines[0] if self.soak.lines else {}
        if not self.soak.lines:
            self.soak.lines.append(totals)
        for name in keep:
            totals[name] = totals.get(name, 0) + int(line[name])


@pytest.fixture(name="ingest_counts")
def fixture_ingest_counts(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Lines]:
    """Routes the ingest log lines to a counter only, so the soak's memory is the pipeline's own."""
    logger = logging.getLogger("chargeback.ingestion.ingest")
    handler = _Lines(Soak(0, 1))
    monkeypatch.setattr(logger, "propagate", False)
    previous = logger.level
    logger.setLevel(logging.INFO)  # setLevel, not the attribute: it clears the logger's level cache
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


def assert_accounted(soak: Soak, rows_requests: int, rows_tokens: int, dead_letters: int) -> None:
    [totals] = soak.lines
    assert totals["received"] == soak.delivered
    assert totals["received"] == totals["applied"] + totals["skipped_already_applied"] + totals["dead_lettered"]
    assert totals["applied"] == soak.requests
    assert (rows_requests, rows_tokens, dead_letters) == (soak.requests, soak.total_tokens, soak.rejected)


@pytest.mark.slow
def test_a_million_events_with_redeliveries_are_counted_exactly_in_flat_memory(
    monkeypatch: pytest.MonkeyPatch, ingest_counts: _Lines
) -> None:
    dead_letters = InMemoryDeadLetterStore()
    ledger = Ledger(InMemoryLedgerStore(), dead_letters)
    services = SimpleNamespace(ledger=ledger, settings=SimpleNamespace(eventhub_name="aoai-usage"), events_billed=True)
    monkeypatch.setattr(runtime, "services", lambda: services)
    soak = ingest_counts.soak = Soak(events_per_partition=250_000, batch_size=1_000)
    warm = soak.run(checkpoint=100_000)
    grown = vm_rss_kb() - warm
    rows = [*ledger.period_rows("2026-11"), *ledger.period_rows("2026-12")]
    assert soak.requests + soak.rejected == 1_000_000
    assert_accounted(
        soak,
        sum(r.counters.requests for r in rows),
        sum(r.counters.total_tokens for r in rows),
        len(dead_letters.letters),
    )
    print(f"soak: {soak.delivered} events delivered, VmRSS {warm} kB after warm-up, grew {grown} kB")
    assert grown < MAX_RSS_GROWTH_KB, f"RSS grew {grown} kB after warm-up"


@pytest.mark.azurite
def test_fifty_thousand_events_with_redeliveries_against_azurite_are_counted_exactly(
    app_settings: dict[str, str], ingest_counts: _Lines
) -> None:
    soak = ingest_counts.soak = Soak(events_per_partition=12_500, batch_size=1_000)
    soak.run()
    ledger = runtime.services().ledger
    rows = [*ledger.period_rows("2026-11"), *ledger.period_rows("2026-12")]
    assert soak.requests + soak.rejected == 50_000
    assert_accounted(
        soak,
        sum(r.counters.requests for r in rows),
        sum(r.counters.total_tokens for r in rows),
        ledger.dead_letter_count("2026-11") + ledger.dead_letter_count("2026-12"),
    )

"""Entry points of the owner processes the racing and crash tests start (spawned, not forked)."""

from __future__ import annotations

import json
import logging
import os
import random
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier

from chargeback.app import runtime
from chargeback.domain.errors import StorageError
from tests.functions import deliver
from tests.reliability.stream import events

MAX_HOST_ATTEMPTS = 50


def _configure(settings: dict[str, str]) -> None:
    os.environ.update(settings)
    runtime.reset()


def race(
    settings: dict[str, str], seed: int, rounds: int, per_round: int, barrier: Barrier, failed: Queue[int]
) -> None:
    """Deliver overlapping ranges of partitions 0 and 1, in step with a rival; report lost races."""
    _configure(settings)
    conflicts = _ConflictCounter()
    logging.getLogger("chargeback.ingestion.ingest").addHandler(conflicts)
    logging.getLogger("chargeback.ingestion.ingest").setLevel(logging.INFO)
    chooser = random.Random(seed)
    failures = 0
    for round_number in range(rounds):
        barrier.wait()
        for partition in chooser.sample(["0", "1"], 2):
            end = (round_number + 1) * per_round
            start = max(0, end - per_round - chooser.randrange(per_round))
            batch = events(partition, range(start, end), subscriptions=40)
            for _attempt in range(MAX_HOST_ATTEMPTS):
                try:
                    deliver(batch, partition_id=partition)
                    break
                except StorageError:  # a lost race past the ledger's re-reads: the host retries
                    failures += 1
            else:
                raise RuntimeError("a batch never went through")
    failed.put(failures + conflicts.total)


class _ConflictCounter(logging.Handler):
    """Sums the ``conflicts`` (lost races) of every ``chargeback.ingestion.ingest`` line."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("chargeback.ingest "):
            self.total += int(json.loads(message.removeprefix("chargeback.ingest "))["conflicts"])


def apply_until_killed(settings: dict[str, str], batches: int, size: int, checkpoint: Synchronized[int]) -> None:
    """Deliver batches of partition 0 in order, checkpointing after each, as the host would."""
    _configure(settings)
    for index in range(batches):
        deliver(events("0", range(index * size, (index + 1) * size)), partition_id="0")
        checkpoint.value = index

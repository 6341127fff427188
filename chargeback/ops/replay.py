"""``python -m chargeback replay``: applies Event Hubs Capture files through the ledger, counting nothing twice.

Capture files carry each event's partition (in the blob path), sequence number, enqueued time
and raw body, so replaying them through ``Ledger.apply`` lands on the same slices and watermarks
as live ingestion: what was counted is skipped, what was missed fills the gap. Events that are
dead letters (still waiting for ``redrive``) or were already re-applied by ``redrive`` are left
alone, so a fixed parser cannot count them twice through two doors. While the LLM logs bill every
call (``CHARGEBACK_LLM_LOG_SCOPE=all``) there is nothing for usage events to fill, and replay refuses.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TextIO

from chargeback.adapters.capture_blobs import CaptureBlobs
from chargeback.adapters.tables import TableDeadLetterStore, TableLedgerStore
from chargeback.app.runtime import Services
from chargeback.app.settings import LLM_LOG_SCOPE
from chargeback.domain import keys
from chargeback.domain.errors import ConfigurationError
from chargeback.domain.events import Rejection, parse_event
from chargeback.ingestion.capture import DEFAULT_LAYOUT, CaptureFile, path_pattern, read_events
from chargeback.ingestion.ledger import Batch, Ledger, ReceivedEvent, usage_key
from chargeback.ops import settings_file
from chargeback.ops.redrive import RedriveLedgerStore

DEFAULT_BATCH_SIZE = 500


class DeadLetterIdentities(Protocol):
    def identities(self, day: str) -> set[tuple[str, str, int]]: ...


@dataclass(slots=True)
class ReplayOutcome:
    """What a replay did; ``received == applied + already_present + dead_lettered``."""

    files: int = 0
    received: int = 0
    applied: int = 0
    already_present: int = 0
    dead_lettered: int = 0
    left_for_redrive: int = 0
    """Of ``dead_lettered``: events already in the dead-letter store, left there for ``redrive``."""


class Replayer:
    """Feeds each partition's captured events, in sequence order, to ``Ledger.apply`` in batches."""

    def __init__(
        self,
        ledger: Ledger,
        store: RedriveLedgerStore,
        dead_letters: DeadLetterIdentities,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self._ledger = ledger
        self._store = store
        self._dead_letters = dead_letters
        self._batch_size = batch_size
        self._dead_by_day: dict[str, set[tuple[str, str, int]]] = {}
        self._markers: dict[str, set[int]] = {}
        self.outcome = ReplayOutcome()

    def replay(self, hub: str, partition_id: str, events: Iterable[ReceivedEvent]) -> None:
        """Apply one partition's events; they must come in sequence order (repeats are fine)."""
        pending: list[ReceivedEvent] = []
        last = -1
        for event in events:
            if event.sequence_number < last:
                raise ConfigurationError(
                    f"captured events of {hub}/{partition_id} go back from {last} to {event.sequence_number}"
                )
            last = event.sequence_number
            pending.append(event)
            if len(pending) == self._batch_size:
                self._apply(hub, partition_id, pending)
                pending = []
        if pending:
            self._apply(hub, partition_id, pending)

    def _apply(self, hub: str, partition_id: str, events: Sequence[ReceivedEvent]) -> None:
        self.outcome.received += len(events)
        kept: list[ReceivedEvent] = []
        for event in events:
            enqueued = _utc(event.enqueued_time)
            if (hub, partition_id, event.sequence_number) in self._dead_letters_of(enqueued.date().isoformat()):
                self.outcome.dead_lettered += 1
                self.outcome.left_for_redrive += 1
                continue
            parsed = parse_event(event.body, enqueued)
            if not isinstance(parsed, Rejection):
                slice_key = keys.slice_key(usage_key(parsed).day.strftime("%Y-%m"), hub, partition_id)
                if event.sequence_number in self._markers_of(slice_key):
                    self.outcome.already_present += 1
                    continue
            kept.append(event)
        if not kept:
            return
        result = self._ledger.apply(Batch(hub=hub, partition_id=partition_id, events=kept))
        self.outcome.applied += result.applied
        self.outcome.already_present += result.skipped
        self.outcome.dead_lettered += result.dead_lettered

    def _dead_letters_of(self, day: str) -> set[tuple[str, str, int]]:
        found = self._dead_by_day.get(day)
        if found is None:
            found = self._dead_by_day[day] = self._dead_letters.identities(day)
        return found

    def _markers_of(self, slice_key: str) -> set[int]:
        found = self._markers.get(slice_key)
        if found is None:
            found = self._markers[slice_key] = self._store.redriven(slice_key)
        return found


def replay_capture(
    replayer: Replayer,
    blobs: CaptureBlobs,
    files: Sequence[CaptureFile],
    default_hub: str,
    progress: Callable[[CaptureFile, ReplayOutcome], None] | None = None,
) -> ReplayOutcome:
    """Replay Capture files partition by partition, each partition's files in name (time) order."""
    by_partition: dict[tuple[str, str], list[CaptureFile]] = {}
    for file in files:
        by_partition.setdefault((file.hub or default_hub, file.partition_id), []).append(file)
    for (hub, partition_id), group in sorted(by_partition.items()):

        def events(group: list[CaptureFile] = group) -> Iterable[ReceivedEvent]:
            for file in group:
                yield from sorted(read_events(blobs.download(file.name)), key=_sequence)
                replayer.outcome.files += 1
                if progress is not None:
                    progress(file, replayer.outcome)

        replayer.replay(hub, partition_id, events())
    return replayer.outcome


def _sequence(event: ReceivedEvent) -> int:
    return event.sequence_number


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# Command line ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--capture", required=True, metavar="CONTAINER[/PREFIX]", help="where the Capture files are, in blob storage"
    )
    parser.add_argument(
        "--layout", default=DEFAULT_LAYOUT, help=f"the Capture blob name format (default: {DEFAULT_LAYOUT})"
    )
    parser.add_argument("--hub", help="the Event Hub name, when the layout has no {EventHub} (default: EVENTHUB_NAME)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="events per ledger batch")


def run(args: argparse.Namespace) -> int:
    """Replay from the ChargebackStorage settings; progress on stderr, counts on stdout."""
    services = Services(settings_file.settings(args))
    if not services.events_billed:
        raise ConfigurationError(
            f"{LLM_LOG_SCOPE} is {services.settings.llm_log_scope}: the LLM logs bill every call, so replaying "
            "usage events would bill calls twice; nothing was replayed"
        )
    names = services.settings.storage
    blobs = CaptureBlobs(names, args.capture)
    files = blobs.files(path_pattern(args.layout))
    ledger_store = TableLedgerStore(services.storage.table(names.ledger_table))
    dead_letters = TableDeadLetterStore(
        services.storage.table(names.dead_letter_table), services.storage.container(names.dead_letter_container)
    )
    replayer = Replayer(Ledger(ledger_store, dead_letters), ledger_store, dead_letters, batch_size=args.batch_size)
    outcome = replay_capture(
        replayer, blobs, files, args.hub or services.settings.eventhub_name, _Progress(sys.stderr, len(files))
    )
    report(outcome, sys.stdout)
    return 0


class _Progress:
    def __init__(self, stream: TextIO, total: int) -> None:
        self._stream = stream
        self._total = total

    def __call__(self, file: CaptureFile, outcome: ReplayOutcome) -> None:
        self._stream.write(
            f"replay: {outcome.files}/{self._total} files ({file.name}): {outcome.received} events, "
            f"{outcome.applied} applied, {outcome.already_present} already present, "
            f"{outcome.dead_lettered} dead-lettered\n"
        )
        self._stream.flush()


def report(outcome: ReplayOutcome, stream: TextIO) -> None:
    stream.write(
        f"files: {outcome.files}\n"
        f"events: {outcome.received}\n"
        f"applied: {outcome.applied}\n"
        f"already present: {outcome.already_present}\n"
        f"dead-lettered: {outcome.dead_lettered} ({outcome.left_for_redrive} already waiting for redrive)\n"
    )

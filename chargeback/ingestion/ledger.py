"""Folds Event Hub batches into the usage ledger exactly once, on an at-least-once stream.

The ledger is cut into slices, one per (month, hub, Event Hub partition). Each slice has a
watermark row, and each aggregate row records its progress: the last sequence number applied
to it. An event of row r is counted iff its sequence number is at most max(watermark, progress
of r). A batch is split by slice; each slice's part is committed as one transaction per at most
``MAX_ROWS_PER_COMMIT`` rows (chunks cut by row, so a row is written once per batch), each
writing its rows' new totals and progress together with the watermark row, conditioned on the
watermark's ETag. The last chunk moves the watermark to the part's last event; earlier chunks
rewrite it unchanged, only to move its ETag. So redelivery changes nothing, a crash between two
chunks leaves every row either wholly applied (progress moved) or untouched, and a racing owner
loses on the ETag, re-reads and skips what the winner applied. docs/reliability.md argues it.

Assumption: within a partition the host delivers events in sequence order, and a redelivery
starts at or before the first event not yet applied (Event Hubs checkpoints guarantee this).
"""

from __future__ import annotations

import operator
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Protocol

from chargeback.domain import keys
from chargeback.domain.errors import ConcurrencyError
from chargeback.domain.events import EventFields, Rejection, UsageEvent, parse_event_fields
from chargeback.domain.usage import ZERO, Counters, Delta, UsageKey, UsageRow, event_delta, sum_deltas

MAX_ROWS_PER_COMMIT = 99
"""A transaction holds at most 100 entities: 99 aggregates and the watermark."""

MAX_COMMIT_BYTES = 3 * 1024 * 1024
"""A transaction's body may not pass 4 MiB; chunks are cut well before, by a pessimistic estimate."""

MAX_CONFLICT_RETRIES = 8
"""How often a slice is re-read after losing a race before the batch is handed back to the host."""

NO_WATERMARK = -1


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """An event as the trigger delivered it."""

    body: bytes
    sequence_number: int
    enqueued_time: datetime


@dataclass(frozen=True, slots=True)
class Batch:
    """The events of one invocation: one Event Hub partition, in sequence order."""

    hub: str
    partition_id: str
    events: Sequence[ReceivedEvent]
    namespace: str = ""
    consumer_group: str = ""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event that can never be applied, kept with its raw body and the reason."""

    hub: str
    partition_id: str
    sequence_number: int
    enqueued_time: datetime
    body: bytes
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class SliceSnapshot:
    """A slice as read from the store: watermark first, then the rows of the requested days."""

    watermark: int
    etag: str | None
    rows: Mapping[str, Counters]
    progress: Mapping[str, int] = field(default_factory=dict)
    """Per row, the last sequence number applied to it; absent for rows that never recorded one."""


@dataclass(frozen=True, slots=True)
class RowWrite:
    """The new absolute totals of one aggregate row and, from live ingestion, its new progress."""

    row_key: str
    key: UsageKey
    counters: Counters
    progress: int | None = None
    """The last sequence number now applied to the row; ``None`` keeps the stored one (redrive)."""


class LedgerStore(Protocol):
    """Where slices live. The Table adapter implements it; tests use an in-memory fake."""

    def read_slice(self, slice_key: str, days: Collection[str]) -> SliceSnapshot:
        """Read the watermark (and its ETag), *then* the aggregate rows of ``days``."""
        ...

    def commit(self, slice_key: str, etag: str | None, writes: Sequence[RowWrite], watermark: int) -> str:
        """Write rows (with their progress, where given) and watermark in one transaction if the
        watermark's ETag is still ``etag`` (``None``: the watermark must not exist yet). Return the
        new ETag; raise ``ConcurrencyError`` when the condition fails."""
        ...

    def period_rows(self, period: str) -> Iterator[tuple[UsageKey, Counters]]:
        """Every aggregate of a month (``YYYY-MM``) or a day (``YYYY-MM-DD``), per slice."""
        ...


class DeadLetterStore(Protocol):
    """Where rejected events go, idempotently keyed by hub, partition and sequence number."""

    def put(self, letters: Sequence[DeadLetter]) -> None: ...

    def count(self, period: str) -> int: ...


@dataclass(slots=True)
class BatchOutcome:
    """What one invocation did; ``received == applied + skipped + dead_lettered`` always."""

    hub: str
    partition_id: str
    received: int = 0
    applied: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    time_fallbacks: int = 0
    transactions: int = 0
    reads: int = 0
    conflicts: int = 0
    slices: int = 0
    first_sequence: int | None = None
    last_sequence: int | None = None
    reasons: dict[str, int] = field(default_factory=dict)

    def as_log(self) -> dict[str, object]:
        return {
            "hub": self.hub,
            "partition": self.partition_id,
            "first_sequence": self.first_sequence,
            "last_sequence": self.last_sequence,
            "received": self.received,
            "applied": self.applied,
            "skipped_already_applied": self.skipped,
            "dead_lettered": self.dead_lettered,
            "dead_letter_reasons": dict(self.reasons),
            "time_fallbacks": self.time_fallbacks,
            "slices": self.slices,
            "transactions": self.transactions,
            "reads": self.reads,
            "conflicts": self.conflicts,
        }


_Key = tuple[date, str, str, str, str]
"""A ``UsageKey`` as a plain tuple (same fields, same order): hashed in C, built per event."""

_Parsed = tuple[int, _Key, Delta]
"""An accepted event: sequence number, aggregate key, delta. Tuples, since a batch builds thousands."""


@dataclass(slots=True)
class _Row:
    """One aggregate's events in a slice's part, in sequence order."""

    key: UsageKey
    row_key: str
    sequences: list[int]
    deltas: list[Delta]


@dataclass(slots=True)
class _CachedSlice:
    watermark: int
    etag: str | None
    rows: dict[str, Counters]
    progress: dict[str, int]
    days: OrderedDict[str, None]
    """Days whose rows are all in ``rows``; ``None`` in place of the dict means every day."""
    complete: bool


def usage_delta(event: UsageEvent) -> Counters:
    """The counters one event adds to its aggregate (see ``event_delta``)."""
    delta = event_delta(
        event.prompt_tokens, event.completion_tokens, event.cached_tokens, event.total_tokens, event.time_from_event
    )
    return sum_deltas([delta])


def usage_key(event: UsageEvent) -> UsageKey:
    return UsageKey(
        day=event.event_time.date(),
        subscription_id=event.subscription_id,
        model=event.model,
        deployment=event.deployment,
        operation=event.operation,
    )


class Ledger:
    """Applies batches to a ``LedgerStore`` exactly once and reads periods back.

    Keeps, per slice, the rows it last wrote and the watermark's ETag, so that in steady state
    a batch costs one transaction per touched slice and no reads: the ETag condition on the
    commit proves the cache is still the truth.
    """

    def __init__(
        self,
        store: LedgerStore,
        dead_letters: DeadLetterStore,
        *,
        max_cached_slices: int = 64,
        max_cached_days: int = 3,
    ) -> None:
        self._store = store
        self._dead_letters = dead_letters
        self._cache: OrderedDict[str, _CachedSlice] = OrderedDict()
        # The worker runs invocations of different partitions on threads; they share the cache
        # (never a slice: a slice belongs to one partition, which the host hands one batch at a time).
        self._cache_lock = threading.Lock()
        self._max_cached_slices = max_cached_slices
        self._max_cached_days = max_cached_days

    def apply(self, batch: Batch) -> BatchOutcome:
        """Apply a batch; raise only what the host must retry (storage trouble, lost races)."""
        outcome = BatchOutcome(hub=batch.hub, partition_id=batch.partition_id, received=len(batch.events))
        routed = _route(batch, outcome)
        for slice_key, part in routed.parts.items():
            self._apply_slice(slice_key, routed.days[slice_key], part, outcome)
        if routed.letters:
            self._dead_letters.put(routed.letters)
        outcome.dead_lettered = len(routed.letters)
        return outcome

    def set_aside(self, batch: Batch, reason: str, detail: str) -> BatchOutcome:
        """Dead-letter a whole batch without counting it: another source bills these calls.

        The letters keep their raw bodies, so a redrive counts them once the setting changes.
        """
        outcome = BatchOutcome(hub=batch.hub, partition_id=batch.partition_id, received=len(batch.events))
        letters = [
            _dead_letter(batch, received, _utc(received.enqueued_time), Rejection(reason, detail))
            for received in batch.events
        ]
        if letters:
            self._dead_letters.put(letters)
            outcome.first_sequence = min(map(_sequence, batch.events))
            outcome.last_sequence = max(map(_sequence, batch.events))
            outcome.reasons[reason] = len(letters)
        outcome.dead_lettered = len(letters)
        return outcome

    def _apply_slice(self, slice_key: str, days: set[str], part: list[_Parsed], outcome: BatchOutcome) -> None:
        rows = _rows(part)
        last = part[-1][0]
        applied = 0
        for _attempt in range(MAX_CONFLICT_RETRIES):
            state = self._slice(slice_key, days, outcome)
            pending = _pending(rows, state)
            try:
                chunks = _chunks(pending)
                for number, chunk in enumerate(chunks, start=1):
                    writes, events, fallbacks = _writes(chunk, state.rows)
                    # Only the last chunk moves the watermark: until then some rows are behind it.
                    watermark = last if number == len(chunks) else state.watermark
                    etag = self._store.commit(slice_key, state.etag, writes, watermark)
                    outcome.transactions += 1
                    for write, row in zip(writes, chunk, strict=True):
                        state.rows[write.row_key] = write.counters
                        state.progress[write.row_key] = row.sequences[-1]
                    state.watermark, state.etag = watermark, etag
                    applied += events
                    outcome.time_fallbacks += fallbacks
            except ConcurrencyError:
                outcome.conflicts += 1
                self._forget(slice_key)
                continue
            except BaseException:
                # The commit may or may not have landed: forget what we think the slice holds.
                self._forget(slice_key)
                raise
            outcome.applied += applied
            outcome.skipped += len(part) - applied
            return
        raise ConcurrencyError(f"slice {slice_key} kept moving after {MAX_CONFLICT_RETRIES} re-reads")

    def _forget(self, slice_key: str) -> None:
        with self._cache_lock:
            self._cache.pop(slice_key, None)

    def _remember(self, slice_key: str, state: _CachedSlice) -> None:
        with self._cache_lock:
            self._cache[slice_key] = state
            self._cache.move_to_end(slice_key)
            while len(self._cache) > self._max_cached_slices:
                self._cache.popitem(last=False)

    def _slice(self, slice_key: str, days: set[str], outcome: BatchOutcome) -> _CachedSlice:
        with self._cache_lock:
            state = self._cache.get(slice_key)
        if state is None:
            missing = days
        elif state.complete:
            missing = set()
        else:
            missing = days - state.days.keys()
        if state is not None and not missing:
            self._touch(state, days)
            self._remember(slice_key, state)
            return state
        snapshot = self._store.read_slice(slice_key, sorted(missing))
        outcome.reads += 1 + len(missing)
        if state is None or snapshot.etag != state.etag:
            if snapshot.etag is not None and missing != days:
                # Our cached days are stale; read every day this part needs.
                snapshot = self._store.read_slice(slice_key, sorted(days))
                outcome.reads += 1 + len(days)
            state = _CachedSlice(
                watermark=snapshot.watermark,
                etag=snapshot.etag,
                rows=dict(snapshot.rows),
                progress=dict(snapshot.progress),
                days=OrderedDict(),
                complete=snapshot.etag is None,
            )
        else:
            state.rows.update(snapshot.rows)
            state.progress.update(snapshot.progress)
        self._touch(state, days)
        self._remember(slice_key, state)
        return state

    def _touch(self, state: _CachedSlice, days: Collection[str]) -> None:
        """Mark days as loaded and most recent; forget the rows of older days beyond the cap."""
        for day in sorted(days):
            state.days[day] = None
            state.days.move_to_end(day)
        evictable = [day for day in state.days if day not in days]
        excess = len(state.days) - max(self._max_cached_days, len(days))
        for old in evictable[: max(excess, 0)]:
            del state.days[old]
            prefix = f"{old}|"
            for row_key in [k for k in state.rows if k.startswith(prefix)]:
                del state.rows[row_key]
                state.progress.pop(row_key, None)
            state.complete = False

    def period_rows(self, period: str) -> list[UsageRow]:
        """A month's or a day's aggregates, summed over every slice."""
        totals: dict[UsageKey, Counters] = {}
        for key, counters in self._store.period_rows(period):
            totals[key] = totals.get(key, ZERO) + counters
        return [UsageRow(key, counters) for key, counters in sorted(totals.items(), key=_row_order)]

    def dead_letter_count(self, period: str) -> int:
        return self._dead_letters.count(period)


_sequence: Callable[[ReceivedEvent], int] = operator.attrgetter("sequence_number")


@dataclass(slots=True)
class _Routed:
    """A batch's accepted events cut by slice, the days each slice touches, and its dead letters."""

    parts: dict[str, list[_Parsed]] = field(default_factory=dict)
    days: dict[str, set[str]] = field(default_factory=dict)
    letters: list[DeadLetter] = field(default_factory=list)
    slice_of_day: dict[date, str] = field(default_factory=dict)

    def add(self, batch: Batch, sequence_number: int, event: EventFields) -> None:
        subscription, _, operation, model, deployment, event_time, from_event, prompt, completion, cached, total, _ = (
            event
        )
        day = event_time.date()
        slice_key = self.slice_of_day.get(day)
        if slice_key is None:
            slice_key = self.slice_of_day[day] = keys.slice_key(day.strftime("%Y-%m"), batch.hub, batch.partition_id)
            self.days.setdefault(slice_key, set()).add(day.isoformat())
            self.parts.setdefault(slice_key, [])
        delta = event_delta(prompt, completion, cached, total, from_event)
        self.parts[slice_key].append((sequence_number, (day, subscription, model, deployment, operation), delta))


def _route(batch: Batch, outcome: BatchOutcome) -> _Routed:
    """Drop repeated sequence numbers, parse each event, and cut the accepted ones by slice."""
    routed = _Routed()
    previous: int | None = None
    for received in sorted(batch.events, key=_sequence):
        sequence_number = received.sequence_number
        if sequence_number == previous:
            # Sorted, a repeated sequence number sits next to its first occurrence.
            outcome.skipped += 1
            continue
        previous = sequence_number
        enqueued = received.enqueued_time
        if enqueued.tzinfo is not UTC:
            enqueued = _utc(enqueued)
        parsed = parse_event_fields(received.body, enqueued)
        if isinstance(parsed, Rejection):
            routed.letters.append(_dead_letter(batch, received, enqueued, parsed))
            outcome.reasons[parsed.reason] = outcome.reasons.get(parsed.reason, 0) + 1
            continue
        routed.add(batch, sequence_number, parsed)
    if batch.events:
        outcome.first_sequence = min(map(_sequence, batch.events))
        outcome.last_sequence = max(map(_sequence, batch.events))
    outcome.slices = len(routed.parts)
    return routed


def _row_order(item: tuple[UsageKey, Counters]) -> tuple[date, str, str, str, str]:
    key = item[0]
    return (key.day, key.subscription_id, key.model, key.deployment, key.operation)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _dead_letter(batch: Batch, received: ReceivedEvent, enqueued: datetime, rejection: Rejection) -> DeadLetter:
    return DeadLetter(
        hub=batch.hub,
        partition_id=batch.partition_id,
        sequence_number=received.sequence_number,
        enqueued_time=enqueued,
        body=received.body,
        reason=rejection.reason,
        detail=rejection.detail,
    )


def _rows(part: list[_Parsed]) -> list[_Row]:
    """A slice's events grouped by aggregate row, rows in first-touched order, events in sequence order."""
    grouped: dict[_Key, _Row] = {}
    for sequence, key, delta in part:
        row = grouped.get(key)
        if row is None:
            usage_key = UsageKey(*key)
            grouped[key] = _Row(usage_key, keys.aggregate_row_key(usage_key), [sequence], [delta])
        else:
            row.sequences.append(sequence)
            row.deltas.append(delta)
    return list(grouped.values())


def _pending(rows: list[_Row], state: _CachedSlice) -> list[_Row]:
    """Each row's events not yet applied: above both the watermark and the row's own progress."""
    pending = []
    for row in rows:
        applied_through = max(state.watermark, state.progress.get(row.row_key, NO_WATERMARK))
        if row.sequences[0] > applied_through:
            pending.append(row)
        elif row.sequences[-1] > applied_through:
            kept = [i for i, sequence in enumerate(row.sequences) if sequence > applied_through]
            pending.append(_Row(row.key, row.row_key, [row.sequences[i] for i in kept], [row.deltas[i] for i in kept]))
    return pending


def _chunks(pending: list[_Row]) -> list[list[_Row]]:
    """Cut rows into runs that fit one transaction: at most MAX_ROWS_PER_COMMIT rows and MAX_COMMIT_BYTES."""
    chunks: list[list[_Row]] = []
    chunk: list[_Row] = []
    size = 0
    for row in pending:
        row_bytes = _row_bytes(row.key)
        if chunk and (len(chunk) == MAX_ROWS_PER_COMMIT or size + row_bytes > MAX_COMMIT_BYTES):
            chunks.append(chunk)
            chunk, size = [], 0
        chunk.append(row)
        size += row_bytes
    if chunk:
        chunks.append(chunk)
    return chunks


def _row_bytes(key: UsageKey) -> int:
    """An upper bound on one aggregate's share of a transaction body.

    Each identifier appears in the entity and, escaped, in its row key and URL; a character may
    take up to 12 bytes as a JSON escape pair. 2 KiB covers the counters and the envelope.
    """
    return 2048 + 36 * (len(key.subscription_id) + len(key.model) + len(key.deployment) + len(key.operation))


def _writes(chunk: list[_Row], current: Mapping[str, Counters]) -> tuple[list[RowWrite], int, int]:
    """The new totals and progress of a chunk's rows, how many events they apply, and their time fallbacks."""
    writes = []
    events = fallbacks = 0
    for row in chunk:
        added = sum_deltas(row.deltas)
        fallbacks += added.time_fallbacks
        events += len(row.deltas)
        writes.append(RowWrite(row.row_key, row.key, current.get(row.row_key, ZERO) + added, row.sequences[-1]))
    return writes, events, fallbacks

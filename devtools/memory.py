"""In-memory ledger, dead-letter and budget stores with the same ETag semantics as Table Storage."""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from chargeback.budgets.evaluate import BudgetSnapshot
from chargeback.budgets.records import Stored
from chargeback.domain import keys
from chargeback.domain.errors import ConcurrencyError
from chargeback.domain.usage import Counters, UsageKey
from chargeback.ingestion.ledger import NO_WATERMARK, DeadLetter, RowWrite, SliceSnapshot


class InMemoryLedgerStore:
    """A ``LedgerStore`` in a dict: for fast tests of the exactly-once logic and for dry runs."""

    def __init__(self) -> None:
        self.slices: dict[str, dict[str, tuple[UsageKey, Counters]]] = {}
        self.watermarks: dict[str, tuple[int, str]] = {}
        self.progress: dict[str, dict[str, int]] = {}
        """Per slice and row, the last sequence number applied to the row."""
        self.reads = 0
        self.commits = 0
        self.markers: dict[str, set[int]] = {}
        """Redrive markers per slice: sequence numbers of dead letters re-applied into it."""
        self._etags = itertools.count(1)

    def read_slice(self, slice_key: str, days: Collection[str]) -> SliceSnapshot:
        self.reads += 1
        watermark, etag = self.watermarks.get(slice_key, (NO_WATERMARK, None))
        rows = self.slices.get(slice_key, {})
        wanted = tuple(f"{day}|" for day in days)
        progress = self.progress.get(slice_key, {})
        return SliceSnapshot(
            watermark=watermark,
            etag=etag,
            rows={row_key: counters for row_key, (_, counters) in rows.items() if row_key.startswith(wanted)},
            progress={row_key: last for row_key, last in progress.items() if row_key.startswith(wanted)},
        )

    def commit(self, slice_key: str, etag: str | None, writes: Sequence[RowWrite], watermark: int) -> str:
        current = self.watermarks.get(slice_key)
        if (current[1] if current else None) != etag:
            raise ConcurrencyError(f"watermark of {slice_key} moved")
        rows = self.slices.setdefault(slice_key, {})
        progress = self.progress.setdefault(slice_key, {})
        for write in writes:
            rows[write.row_key] = (write.key, write.counters)
            if write.progress is not None:
                progress[write.row_key] = write.progress
        new_etag = f"W/{next(self._etags)}"
        self.watermarks[slice_key] = (watermark, new_etag)
        self.commits += 1
        return new_etag

    def redriven(self, slice_key: str) -> set[int]:
        return set(self.markers.get(slice_key, ()))

    def commit_redriven(
        self, slice_key: str, etag: str | None, writes: Sequence[RowWrite], watermark: int, sequence_number: int
    ) -> str:
        if sequence_number in self.markers.get(slice_key, ()):
            raise ConcurrencyError(f"redrive marker {sequence_number} of {slice_key} exists")
        new_etag = self.commit(slice_key, etag, writes, watermark)
        self.markers.setdefault(slice_key, set()).add(sequence_number)
        return new_etag

    def period_rows(self, period: str) -> Iterator[tuple[UsageKey, Counters]]:
        month = period[:7]
        low, high = keys.period_range(month)
        for slice_key, rows in self.slices.items():
            if low <= slice_key < high:
                for key, counters in rows.values():
                    if key.day.isoformat().startswith(period):
                        yield key, counters


class InMemoryDeadLetterStore:
    """A ``DeadLetterStore`` in a dict keyed like the Table one: idempotent per event."""

    def __init__(self) -> None:
        self.letters: dict[tuple[str, str, int], DeadLetter] = {}

    def put(self, letters: Sequence[DeadLetter]) -> None:
        for letter in letters:
            self.letters[(letter.hub, letter.partition_id, letter.sequence_number)] = letter

    def count(self, period: str) -> int:
        return sum(1 for letter in self.letters.values() if letter.enqueued_time.isoformat().startswith(period))

    def find(self, period: str | None = None, reason: str | None = None) -> Iterator[DeadLetter]:
        for letter in list(self.letters.values()):
            if period is not None and not letter.enqueued_time.date().isoformat().startswith(period):
                continue
            if reason is None or letter.reason == reason:
                yield letter

    def remove(self, letters: Sequence[DeadLetter]) -> None:
        for letter in letters:
            self.letters.pop((letter.hub, letter.partition_id, letter.sequence_number), None)

    def identities(self, day: str) -> set[tuple[str, str, int]]:
        return {key for key, letter in self.letters.items() if letter.enqueued_time.date().isoformat() == day}


class InMemoryBudgetStore:
    """A ``BudgetStore`` in a dict, with Table Storage's conditions: create if absent, replace if unmoved."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        self._etags = itertools.count(1)
        self._lock = threading.Lock()

    def read_period(self, period: str) -> dict[str, Stored]:
        with self._lock:
            return {
                key: Stored(copy.deepcopy(document), etag)
                for (month, key), (document, etag) in self.records.items()
                if month == period
            }

    def read(self, period: str, key: str) -> Stored | None:
        with self._lock:
            found = self.records.get((period, key))
            return None if found is None else Stored(copy.deepcopy(found[0]), found[1])

    def create(self, period: str, key: str, document: Mapping[str, Any]) -> str | None:
        with self._lock:
            if (period, key) in self.records:
                return None
            return self._put(period, key, document)

    def replace(self, period: str, key: str, document: Mapping[str, Any], etag: str) -> str | None:
        with self._lock:
            found = self.records.get((period, key))
            if found is None or found[1] != etag:
                return None
            return self._put(period, key, document)

    def _put(self, period: str, key: str, document: Mapping[str, Any]) -> str:
        etag = f"W/{next(self._etags)}"
        self.records[(period, key)] = (copy.deepcopy(dict(document)), etag)
        return etag


class InMemorySnapshots:
    """A ``SnapshotStore`` in a dict, ETag-conditioned like the blob one."""

    def __init__(self) -> None:
        self.snapshots: dict[str, tuple[BudgetSnapshot, str]] = {}
        self._etags = itertools.count(1)
        self._lock = threading.Lock()

    def get(self, period: str) -> tuple[BudgetSnapshot, str] | None:
        with self._lock:
            return self.snapshots.get(period)

    def put(self, snapshot: BudgetSnapshot, etag: str | None) -> bool:
        with self._lock:
            found = self.snapshots.get(snapshot["period"])
            if (found[1] if found else None) != etag:
                return False
            self.snapshots[snapshot["period"]] = (copy.deepcopy(snapshot), f"W/{next(self._etags)}")
            return True

"""The usage ledger and the dead letters on Azure Table Storage."""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any

from azure.data.tables import EdmType, EntityProperty, TableClient, UpdateMode
from azure.storage.blob import ContainerClient

from chargeback.adapters import table_batch
from chargeback.adapters.storage import translated
from chargeback.adapters.table_batch import Operation, Value
from chargeback.domain import keys
from chargeback.domain.usage import COUNTER_FIELDS, Counters, UsageKey
from chargeback.ingestion.ledger import NO_WATERMARK, DeadLetter, RowWrite, SliceSnapshot
from chargeback.reports.month_view import LedgerEntry, SliceState

_IDENTITY_FIELDS = ("subscription_id", "model", "deployment", "operation")
_ROW_SELECT = ["RowKey", "day", *_IDENTITY_FIELDS, *COUNTER_FIELDS]
_ENTRY_SELECT = ["PartitionKey", *_ROW_SELECT]

PROGRESS_FIELD = "last_sequence"
"""An aggregate row's progress: the last sequence number of its slice applied to it."""

MAX_INLINE_BODY = 16 * 1024
"""Bodies larger than this go to a blob: an entity property holds at most 64 KiB of UTF-16."""

_PRINTABLE_CONTROLS = frozenset("\t\n\r")

REDRIVEN_ROW_PREFIX = "!redriven|"
"""Row keys of redrive markers: one per dead letter re-applied into a slice (see chargeback.ops.redrive)."""


def _int64(value: int) -> EntityProperty:
    return EntityProperty(value, EdmType.INT64)


def _as_int(value: Any) -> int:
    return int(value.value) if isinstance(value, EntityProperty) else int(value)


def _aggregate(write: RowWrite) -> dict[str, Value]:
    properties: dict[str, Value] = {
        "day": write.key.day.isoformat(),
        "subscription_id": write.key.subscription_id,
        "model": write.key.model,
        "deployment": write.key.deployment,
        "operation": write.key.operation,
    }
    for name in COUNTER_FIELDS:
        properties[name] = getattr(write.counters, name)
    if write.progress is not None:
        properties[PROGRESS_FIELD] = write.progress
    return properties


def _counters(entity: Any) -> Counters:
    return Counters(*(_as_int(entity.get(name, 0)) for name in COUNTER_FIELDS))


class TableLedgerStore:
    """``LedgerStore`` on one table: a partition per slice, a watermark row in each."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def read_slice(self, slice_key: str, days: Collection[str]) -> SliceSnapshot:
        with translated(f"read watermark of {slice_key}"):
            watermark = self._table.query_entities(
                "PartitionKey eq @pk and RowKey eq @rk",
                parameters={"pk": slice_key, "rk": keys.WATERMARK_ROW},
            )
            found = next(iter(watermark), None)
        rows: dict[str, Counters] = {}
        progress: dict[str, int] = {}
        for day in days:
            low, high = keys.day_range(day)
            with translated(f"read {day} of {slice_key}"):
                for entity in self._table.query_entities(
                    "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
                    parameters={"pk": slice_key, "low": low, "high": high},
                    select=["RowKey", PROGRESS_FIELD, *COUNTER_FIELDS],
                ):
                    rows[entity["RowKey"]] = _counters(entity)
                    if entity.get(PROGRESS_FIELD) is not None:
                        progress[entity["RowKey"]] = _as_int(entity[PROGRESS_FIELD])
        if found is None:
            return SliceSnapshot(NO_WATERMARK, None, rows, progress)
        return SliceSnapshot(_as_int(found["sequence_number"]), found.metadata["etag"], rows, progress)

    def commit(self, slice_key: str, etag: str | None, writes: Sequence[RowWrite], watermark: int) -> str:
        return self._transact(slice_key, etag, writes, watermark, extra=[], what="watermark")

    def redriven(self, slice_key: str) -> set[int]:
        """Sequence numbers of the dead letters already re-applied into this slice."""
        with translated(f"read redrive markers of {slice_key}"):
            return {
                _as_int(entity["sequence_number"])
                for entity in self._table.query_entities(
                    "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
                    parameters={"pk": slice_key, "low": REDRIVEN_ROW_PREFIX, "high": REDRIVEN_ROW_PREFIX[:-1] + "}"},
                    select=["sequence_number"],
                )
            }

    def commit_redriven(
        self, slice_key: str, etag: str | None, writes: Sequence[RowWrite], watermark: int, sequence_number: int
    ) -> str:
        """Like ``commit``, plus a marker row for ``sequence_number`` that must not exist yet:
        a re-applied dead letter is counted once even if redrive runs twice or races itself."""
        marker = Operation(
            "insert",
            slice_key,
            f"{REDRIVEN_ROW_PREFIX}{sequence_number:020d}",
            {"sequence_number": sequence_number, "redriven_at": datetime.now(UTC)},
        )
        return self._transact(slice_key, etag, writes, watermark, extra=[marker], what="redrive marker")

    def _transact(
        self,
        slice_key: str,
        etag: str | None,
        writes: Sequence[RowWrite],
        watermark: int,
        *,
        extra: Sequence[Operation],
        what: str,
    ) -> str:
        """One entity-group transaction: the aggregates, ``extra`` rows, then the watermark under its ETag
        (created when ``etag`` is None). A lost condition is a ``ConcurrencyError``."""
        # A write without progress (a redrive) merges, so the row keeps the progress it has.
        operations = [
            Operation("upsert" if write.progress is not None else "merge", slice_key, write.row_key, _aggregate(write))
            for write in writes
        ]
        operations += extra
        marker: dict[str, Value] = {"sequence_number": watermark, "updated_at": datetime.now(UTC)}
        if etag is None:
            operations.append(Operation("insert", slice_key, keys.WATERMARK_ROW, marker))
        else:
            operations.append(Operation("update", slice_key, keys.WATERMARK_ROW, marker, etag=etag))
        etags = table_batch.submit(self._table, operations, f"commit {what} to {slice_key}")
        return etags[-1]

    def period_rows(self, period: str) -> Iterator[tuple[UsageKey, Counters]]:
        low, high = keys.period_range(period[:7])
        query = "PartitionKey ge @low and PartitionKey lt @high"
        parameters = {"low": low, "high": high}
        if len(period) == 10:
            query += " and RowKey ge @rlow and RowKey lt @rhigh"
            parameters["rlow"], parameters["rhigh"] = keys.day_range(period)
        with translated(f"read ledger for {period}"):
            for entity in self._table.query_entities(query, parameters=parameters, select=_ROW_SELECT):
                if entity["RowKey"].startswith("!"):  # the watermark and redrive markers
                    continue
                key = UsageKey(
                    date.fromisoformat(entity["day"]),
                    *(str(entity[name]) for name in _IDENTITY_FIELDS),
                )
                yield key, _counters(entity)

    def slice_states(self, month: str) -> dict[str, SliceState]:
        """``LedgerDays``: each event slice of the month with its watermark, its ETag and its redrive count."""
        low, high = keys.period_range(month)
        bounds = {"low": low, "high": high}
        states: dict[str, SliceState] = {}
        with translated(f"read the watermarks of {month}"):
            for entity in self._table.query_entities(
                "PartitionKey ge @low and PartitionKey lt @high and RowKey eq @rk",
                parameters={**bounds, "rk": keys.WATERMARK_ROW},
                select=["PartitionKey", "sequence_number"],
            ):
                states[entity["PartitionKey"]] = SliceState(
                    _as_int(entity["sequence_number"]), str(entity.metadata["etag"]), 0
                )
            for entity in self._table.query_entities(
                "PartitionKey ge @low and PartitionKey lt @high and RowKey ge @rlow and RowKey lt @rhigh",
                parameters={**bounds, "rlow": REDRIVEN_ROW_PREFIX, "rhigh": REDRIVEN_ROW_PREFIX[:-1] + "}"},
                select=["PartitionKey"],
            ):
                state = states.get(entity["PartitionKey"])
                if state is not None:
                    states[entity["PartitionKey"]] = state._replace(redriven=state.redriven + 1)
        return states

    def day_entries(
        self, day: date, *, slice_key: str | None = None, after: int | None = None
    ) -> Iterator[LedgerEntry]:
        """``LedgerDays``: one day's aggregates in the month's slices (or one), those with progress above ``after``."""
        text = day.isoformat()
        rlow, rhigh = keys.day_range(text)
        parameters: dict[str, Any] = {"rlow": rlow, "rhigh": rhigh}
        if slice_key is None:
            query = "PartitionKey ge @low and PartitionKey lt @high"
            parameters["low"], parameters["high"] = keys.period_range(text[:7])
        else:
            query = "PartitionKey eq @pk"
            parameters["pk"] = slice_key
        query += " and RowKey ge @rlow and RowKey lt @rhigh"
        if after is not None:
            # Progress is an Edm.Int64, so the literal must be one too (the L suffix).
            query += f" and {PROGRESS_FIELD} gt {int(after)}L"
        with translated(f"read ledger rows of {text}"):
            for entity in self._table.query_entities(query, parameters=parameters, select=_ENTRY_SELECT):
                key = UsageKey(date.fromisoformat(entity["day"]), *(str(entity[name]) for name in _IDENTITY_FIELDS))
                yield LedgerEntry(entity["PartitionKey"], entity["RowKey"], key, _counters(entity))

    def llm_marker(self, day: date) -> str | None:
        """``LedgerDays``: the ETag of the day's LLM-log marker, None when it has none."""
        text = day.isoformat()
        with translated(f"read the LLM-log marker of {text}"):
            found = self._table.query_entities(
                "PartitionKey eq @pk and RowKey eq @rk",
                parameters={"pk": keys.llm_slice_key(text[:7]), "rk": keys.day_marker_row(text)},
                select=["RowKey"],
            )
            marker = next(iter(found), None)
        return None if marker is None else str(marker.metadata["etag"])


class TableDeadLetterStore:
    """``DeadLetterStore`` on a table, partitioned by enqueued day; large bodies go to blobs."""

    def __init__(self, table: TableClient, bodies: ContainerClient) -> None:
        self._table = table
        self._bodies = bodies

    @staticmethod
    def row_key(letter: DeadLetter) -> str:
        return keys.table_key(letter.hub, letter.partition_id, f"{letter.sequence_number:020d}")

    def put(self, letters: Sequence[DeadLetter]) -> None:
        by_day: dict[str, list[dict[str, Any]]] = {}
        for letter in letters:
            entity = self._entity(letter)
            by_day.setdefault(entity["PartitionKey"], []).append(entity)
        for day, entities in by_day.items():
            for chunk in _transactions(entities):
                with translated(f"write dead letters for {day}"):
                    self._table.submit_transaction(
                        [("upsert", entity, {"mode": UpdateMode.REPLACE}) for entity in chunk]
                    )

    def _entity(self, letter: DeadLetter) -> dict[str, Any]:
        day = letter.enqueued_time.date().isoformat()
        row_key = self.row_key(letter)
        entity: dict[str, Any] = {
            "PartitionKey": day,
            "RowKey": row_key,
            "hub": letter.hub,
            "partition_id": letter.partition_id,
            "sequence_number": _int64(letter.sequence_number),
            "enqueued_time": letter.enqueued_time,
            "reason": letter.reason,
            "detail": letter.detail,
            "body_bytes": len(letter.body),
            "dead_lettered_at": datetime.now(UTC),
        }
        if len(letter.body) > MAX_INLINE_BODY:
            blob_name = f"{day}/{row_key.replace('|', '/')}.bin"
            with translated(f"write dead-letter body {blob_name}"):
                self._bodies.upload_blob(blob_name, letter.body, overwrite=True)
            entity["body_encoding"] = "blob"
            entity["body_blob"] = f"{self._bodies.container_name}/{blob_name}"
            return entity
        text = _readable(letter.body)
        if text is None:
            entity["body_encoding"] = "base64"
            entity["body"] = base64.b64encode(letter.body).decode("ascii")
        else:
            entity["body_encoding"] = "utf-8"
            entity["body"] = text
        return entity

    def count(self, period: str) -> int:
        if len(period) == 10:
            query, parameters = "PartitionKey eq @day", {"day": period}
        else:
            query = "PartitionKey ge @low and PartitionKey lt @high"
            parameters = {"low": f"{period}-", "high": f"{period}-~"}
        with translated(f"count dead letters for {period}"):
            return sum(1 for _ in self._table.query_entities(query, parameters=parameters, select=["RowKey"]))

    def find(self, period: str | None = None, reason: str | None = None) -> Iterator[DeadLetter]:
        """The dead letters of an enqueued month or day (all when ``None``), optionally of one reason."""
        clauses: list[str] = []
        parameters: dict[str, str] = {}
        if period is not None and len(period) == 10:
            clauses.append("PartitionKey eq @day")
            parameters["day"] = period
        elif period is not None:
            clauses.append("PartitionKey ge @low and PartitionKey lt @high")
            parameters.update(low=f"{period}-", high=f"{period}-~")
        if reason is not None:
            clauses.append("reason eq @reason")
            parameters["reason"] = reason
        with translated(f"list dead letters for {period or 'every period'}"):
            entities = (
                self._table.query_entities(" and ".join(clauses), parameters=parameters)
                if clauses
                else self._table.list_entities()
            )
            for entity in entities:
                yield DeadLetter(
                    hub=str(entity["hub"]),
                    partition_id=str(entity["partition_id"]),
                    sequence_number=_as_int(entity["sequence_number"]),
                    enqueued_time=_aware(entity["enqueued_time"]),
                    body=self._body(entity),
                    reason=str(entity["reason"]),
                    detail=str(entity.get("detail") or ""),
                )

    def identities(self, day: str) -> set[tuple[str, str, int]]:
        """(hub, partition, sequence number) of every dead letter enqueued on ``day``."""
        with translated(f"list dead letters of {day}"):
            return {
                (str(entity["hub"]), str(entity["partition_id"]), _as_int(entity["sequence_number"]))
                for entity in self._table.query_entities(
                    "PartitionKey eq @day",
                    parameters={"day": day},
                    select=["hub", "partition_id", "sequence_number"],
                )
            }

    def _body(self, entity: Any) -> bytes:
        encoding = entity.get("body_encoding")
        if encoding == "blob":
            name = str(entity["body_blob"]).split("/", 1)[1]
            with translated(f"read dead-letter body {name}"):
                return bytes(self._bodies.download_blob(name).readall())
        if encoding == "base64":
            return base64.b64decode(entity["body"])
        return str(entity.get("body") or "").encode("utf-8")

    def remove(self, letters: Sequence[DeadLetter]) -> None:
        """Delete dead letters (and their body blobs); deleting one already gone is not an error."""
        for letter in letters:
            day = letter.enqueued_time.date().isoformat()
            row_key = self.row_key(letter)
            with translated(f"delete dead letter {row_key}"):
                if len(letter.body) > MAX_INLINE_BODY:
                    blob = self._bodies.get_blob_client(f"{day}/{row_key.replace('|', '/')}.bin")
                    if blob.exists():
                        blob.delete_blob()
                self._table.delete_entity(partition_key=day, row_key=row_key)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


MAX_TRANSACTION_BYTES = 3 * 1024 * 1024
"""A transaction's body may not pass 4 MiB; dead-letter bodies can be large, so cut by size too."""


def _transactions(entities: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Runs of at most 100 entities whose bodies, JSON-escaped, stay under MAX_TRANSACTION_BYTES."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for entity in entities:
        entity_bytes = 1024 + sum(len(json.dumps(value)) for value in entity.values() if isinstance(value, str))
        if chunk and (len(chunk) == 100 or size + entity_bytes > MAX_TRANSACTION_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(entity)
        size += entity_bytes
    if chunk:
        yield chunk


def _readable(body: bytes) -> str | None:
    """The body as text when it is UTF-8 without control characters, else None (store base64)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ch < " " and ch not in _PRINTABLE_CONTROLS for ch in text):
        return None
    return text

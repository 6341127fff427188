"""LLM-log usage on Azure Table Storage: a slice per month in the ledger table, with a marker per day."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any

from azure.core import MatchConditions
from azure.data.tables import EdmType, EntityProperty, TableClient, TableTransactionError, UpdateMode

from chargeback.adapters.storage import translated
from chargeback.domain import keys, periods
from chargeback.domain.errors import ConcurrencyError
from chargeback.domain.usage import COUNTER_FIELDS, Counters, UsageKey, UsageRow
from chargeback.ingestion.llm_logs import UNKNOWN_SCOPE, DayMarker, DayState, RowChange

_IDENTITY_FIELDS = ("subscription_id", "model", "deployment", "operation")
_MARKER_FIELDS = ("calls", "tokens", "unattributed_tokens")


def _int64(value: int) -> EntityProperty:
    return EntityProperty(value, EdmType.INT64)


def _as_int(value: Any) -> int:
    if value is None:
        return 0
    return int(value.value) if isinstance(value, EntityProperty) else int(value)


def _key(entity: Any) -> UsageKey:
    return UsageKey(date.fromisoformat(str(entity["day"])), *(str(entity.get(name) or "") for name in _IDENTITY_FIELDS))


def _counters(entity: Any) -> Counters:
    return Counters(*(_as_int(entity.get(name)) for name in COUNTER_FIELDS))


def _between(low: str, high: str) -> tuple[str, dict[str, str]]:
    return "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high", {"low": low, "high": high}


class TableLlmLogStore:
    """``LlmLogStore`` in the ledger's table, so every reader of a month's rows sums both sources."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def markers(self, period: str) -> dict[date, DayMarker]:
        query, parameters = _between(keys.DAY_MARKER_PREFIX, keys.DAY_MARKER_PREFIX[:-1] + "}")
        with translated(f"read LLM-log day markers of {period}"):
            return {
                date.fromisoformat(str(entity["RowKey"])[len(keys.DAY_MARKER_PREFIX) :]): _marker(entity)
                for entity in self._table.query_entities(
                    query, parameters={"pk": keys.llm_slice_key(period), **parameters}
                )
            }

    def read_day(self, day: date) -> DayState:
        slice_key = keys.llm_slice_key(periods.month_of(day))
        text = day.isoformat()
        with translated(f"read LLM-log marker of {text}"):
            found = next(
                iter(
                    self._table.query_entities(
                        "PartitionKey eq @pk and RowKey eq @rk",
                        parameters={"pk": slice_key, "rk": keys.day_marker_row(text)},
                    )
                ),
                None,
            )
        rows: dict[str, tuple[UsageKey, Counters]] = {}
        low, high = keys.day_range(text)
        for prefix in ("", keys.UNATTRIBUTED_ROW_PREFIX):
            query, parameters = _between(prefix + low, prefix + high)
            with translated(f"read LLM-log rows of {text}"):
                for entity in self._table.query_entities(query, parameters={"pk": slice_key, **parameters}):
                    rows[str(entity["RowKey"])] = (_key(entity), _counters(entity))
        if found is None:
            return DayState(None, None, rows)
        return DayState(str(found.metadata["etag"]), _marker(found), rows)

    def replace(self, day: date, etag: str | None, changes: Sequence[RowChange], marker: DayMarker) -> str:
        slice_key = keys.llm_slice_key(periods.month_of(day))
        operations: list[Any] = [_operation(slice_key, change) for change in changes]
        entity = {
            "PartitionKey": slice_key,
            "RowKey": keys.day_marker_row(day.isoformat()),
            "settled": marker.settled,
            "complete": marker.complete,
            "scope": marker.scope,
            **{name: _int64(getattr(marker, name)) for name in _MARKER_FIELDS},
            "collected_at": datetime.now(UTC),
        }
        if etag is None:
            operations.append(("create", entity))
        else:
            condition = {"mode": UpdateMode.REPLACE, "etag": etag, "match_condition": MatchConditions.IfNotModified}
            operations.append(("update", entity, condition))
        with translated(f"replace LLM-log usage of {day.isoformat()}"):
            try:
                results = self._table.submit_transaction(operations)
            except TableTransactionError as exc:
                if exc.status_code in (404, 409, 412):
                    raise ConcurrencyError(f"the LLM-log usage of {day.isoformat()} moved") from exc
                raise
        return str(results[-1]["etag"])

    def event_usage_on(self, day: date) -> bool:
        """Whether an Event Hub slice of the day's month holds a row of the day: one short read per slice."""
        month = periods.month_of(day)
        low, high = keys.period_range(month)
        with translated(f"look for usage events of {day.isoformat()}"):
            slices = [
                str(entity["PartitionKey"])
                for entity in self._table.query_entities(
                    "PartitionKey ge @low and PartitionKey lt @high and RowKey eq @rk",
                    parameters={"low": low, "high": high, "rk": keys.WATERMARK_ROW},
                    select=["PartitionKey"],
                )
            ]
            query, parameters = _between(*keys.day_range(day.isoformat()))
            for slice_key in slices:
                rows = self._table.query_entities(
                    query, parameters={"pk": slice_key, **parameters}, select=["RowKey"], results_per_page=1
                )
                if next(iter(rows), None) is not None:
                    return True
        return False

    def unattributed(self, period: str) -> Iterator[UsageRow]:
        prefix = keys.UNATTRIBUTED_ROW_PREFIX
        low, high = (f"{prefix}{period}", f"{prefix}{period}}}") if len(period) == 10 else (prefix, prefix[:-1] + "}")
        query, parameters = _between(low, high)
        with translated(f"read unattributed LLM-log usage of {period}"):
            for entity in self._table.query_entities(
                query, parameters={"pk": keys.llm_slice_key(period[:7]), **parameters}
            ):
                yield UsageRow(_key(entity), _counters(entity))


def _marker(entity: Any) -> DayMarker:
    """A stored marker; one written before ``complete`` and ``scope`` existed was written whole, in one go."""
    calls, tokens, unattributed = (_as_int(entity.get(name)) for name in _MARKER_FIELDS)
    return DayMarker(
        settled=bool(entity.get("settled")),
        calls=calls,
        tokens=tokens,
        unattributed_tokens=unattributed,
        complete=bool(entity.get("complete", True)),
        scope=str(entity.get("scope") or UNKNOWN_SCOPE),
    )


def _operation(slice_key: str, change: RowChange) -> Any:
    if change.counters is None:
        return ("delete", {"PartitionKey": slice_key, "RowKey": change.row_key})
    entity: dict[str, Any] = {
        "PartitionKey": slice_key,
        "RowKey": change.row_key,
        "day": change.key.day.isoformat(),
        **{name: getattr(change.key, name) for name in _IDENTITY_FIELDS},
    }
    for name in COUNTER_FIELDS:
        entity[name] = _int64(getattr(change.counters, name))
    return ("upsert", entity, {"mode": UpdateMode.REPLACE})

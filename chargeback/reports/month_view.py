"""A compact view of a month's ledger: settled days kept as Parquet, with what changed since folded in.

Reading a month from Table Storage means millions of rows; a report reads it again and again
(every draft, the final, each later month's adjustments). So once a day has settled (its end
plus the lag), its rows, in every slice, are written once to an immutable file together with a
*fence*: what each slice's watermark was (value and ETag) and how many redrive markers it held,
and the ETag of the day's LLM-log marker, all read *before* the rows. A later reader takes the
file and folds in what moved past the fence, without any clock:

- a slice whose watermark ETag is unchanged has not been written since;
- otherwise every row a commit wrote since carries progress (``last_sequence``) above the
  fenced watermark (a commit is conditioned on the watermark, and applies only later events),
  so only those rows are read; a slice that gained redrive markers (which keep progress) or did
  not exist at the fence has its day read whole;
- an LLM-log day whose marker moved has its LLM-log rows read whole (a replacement can delete).

Rows hold absolute totals, so a row read twice (written while the file's rows were read) is
simply replaced by its newer totals.

The file is created only if absent (``If-None-Match: *``): two readers compacting a day at
once both hold a correct view, one file is kept, and the loser reads the winner's.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple, Protocol, TypedDict

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from chargeback.billing.frames import LEDGER_COUNTERS, LEDGER_KEYS, LINE_KEYS, normalise_usage_frame
from chargeback.domain import keys, periods
from chargeback.domain.usage import COUNTER_FIELDS, Counters, UsageKey, UsageRow

ENTRY_KEYS = ("slice", "row")
IDENTITY = ("subscription_id", "model", "deployment", "operation")
ENTRY_COLUMNS = (*ENTRY_KEYS, "day", *IDENTITY, *COUNTER_FIELDS)
"""One ledger row as it is stored: its slice and row key, its identity and its absolute counters."""

_FENCE = b"chargeback.fence"


class SliceState(NamedTuple):
    """What a slice's watermark row says, and how many dead letters were redriven into it."""

    watermark: int
    etag: str
    redriven: int


@dataclass(frozen=True, slots=True)
class Fence:
    """What the ledger looked like just before a day's rows were compacted."""

    as_of: datetime
    slices: Mapping[str, SliceState]
    llm_marker: str | None
    """The ETag of the day's LLM-log marker; None when the day had none."""


class LedgerEntry(NamedTuple):
    """One aggregate row of the ledger table, with where it lives."""

    slice_key: str
    row_key: str
    key: UsageKey
    counters: Counters


class LedgerDays(Protocol):
    """The ledger table read a day at a time; the Table adapter implements it."""

    def slice_states(self, month: str) -> dict[str, SliceState]:
        """Every event slice of ``month`` (``YYYY-MM``) with its watermark and redrive count."""
        ...

    def day_entries(
        self, day: date, *, slice_key: str | None = None, after: int | None = None
    ) -> Iterator[LedgerEntry]:
        """The day's aggregate rows in every slice of its month (or in ``slice_key``); with
        ``after``, only rows whose progress is above it."""
        ...

    def llm_marker(self, day: date) -> str | None:
        """The ETag of the day's LLM-log marker, None when there is none."""
        ...


class CompactDays(Protocol):
    """Where compacted days live; the Blob adapter implements it."""

    def get(self, day: date) -> bytes | None: ...

    def create(self, day: date, data: bytes) -> bool:
        """Write the day's file if none exists; False (and nothing written) when one does."""
        ...


class DayRecord(TypedDict):
    """How a report read one day: from its compacted file (as of when) or live."""

    day: str
    as_of: str | None
    llm_reread: bool


@dataclass(frozen=True, slots=True)
class DayRead:
    entries: pd.DataFrame
    """The day's rows now, in :data:`ENTRY_COLUMNS`."""
    changes: pd.DataFrame
    """What was read from the table beside the file: every row when the day was read live."""
    record: DayRecord


@dataclass(frozen=True, slots=True)
class MonthRead:
    usage: pd.DataFrame
    """The month's usage frame (one row per day, subscription, model and deployment)."""
    changes: pd.DataFrame
    """Every row read from the table rather than from a compacted file, in :data:`ENTRY_COLUMNS`."""
    records: list[DayRecord]


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class MonthView:
    """Reads months of the ledger through compacted days."""

    ledger: LedgerDays
    compact: CompactDays
    lag_hours: int
    wall: Callable[[], datetime] = wall_clock
    """When a day was compacted, recorded in its fence to name the file (the report's clock may be
    a test's or the demo's); nothing is compared with it."""

    def read(self, period: str, now: datetime) -> MonthRead:
        """``period``'s usage up to ``now``; settled days are compacted first when they are not yet."""
        usage, changes, records = [], [], []
        states = self.ledger.slice_states(period)
        for day in month_days(period, now):
            day_usage, day_changes, record = self.day_usage(day, now, states)
            usage.append(day_usage)
            changes.append(day_changes)
            records.append(record)
        return MonthRead(join_usage(usage), concat_entries(changes), records)  # join_usage empties `usage`

    def day(self, day: date, now: datetime, states: Mapping[str, SliceState]) -> DayRead:
        """One day now: its compacted rows plus what moved past the fence, or read live if unsettled."""
        if not settled(day, now, self.lag_hours):
            live = entries_frame(self.ledger.day_entries(day))
            return DayRead(live, live, DayRecord(day=day.isoformat(), as_of=None, llm_reread=False))
        base, fence = self.compacted(day)
        changes, llm = self.changes_since(day, fence, states)
        record = DayRecord(day=day.isoformat(), as_of=_iso(fence.as_of), llm_reread=llm)
        return DayRead(overlay(base, changes, drop_llm=llm), changes, record)

    def day_usage(
        self, day: date, now: datetime, states: Mapping[str, SliceState]
    ) -> tuple[pd.DataFrame, pd.DataFrame, DayRecord]:
        """One day as a usage frame, with what was read from the table and how. A compacted day
        nothing moved in is folded straight from its Arrow table: no row becomes a Python object."""
        if not settled(day, now, self.lag_hours):
            read = self.day(day, now, states)
            return usage_of(read.entries), read.changes, read.record
        table, fence = decode_table(self._compacted_bytes(day))
        changes, llm = self.changes_since(day, fence, states)
        record = DayRecord(day=day.isoformat(), as_of=_iso(fence.as_of), llm_reread=llm)
        if not len(changes) and not llm:
            return usage_of_table(table), changes, record
        entries = overlay(_typed(table.to_pandas()), changes, drop_llm=llm)
        return usage_of(entries), changes, record

    def compacted(self, day: date) -> tuple[pd.DataFrame, Fence]:
        """The day's compacted rows and their fence; compacts the day when no file exists."""
        return decode(self._compacted_bytes(day))

    def compacted_table(self, day: date) -> tuple[pa.Table, Fence]:
        """:meth:`compacted` as an Arrow table: no row becomes a Python object."""
        return decode_table(self._compacted_bytes(day))

    def _compacted_bytes(self, day: date) -> bytes:
        data = self.compact.get(day)
        if data is None:
            fence = Fence(self.wall(), self.ledger.slice_states(periods.month_of(day)), self.ledger.llm_marker(day))
            data = encode(entries_frame(self.ledger.day_entries(day)), fence)
            if not self.compact.create(day, data):
                data = self.compact.get(day)
                if data is None:
                    raise RuntimeError(f"the compacted file of {day} vanished after another reader wrote it")
        return data

    def changes_since(self, day: date, fence: Fence, states: Mapping[str, SliceState]) -> tuple[pd.DataFrame, bool]:
        """The day's rows written past ``fence`` (slices now as ``states``), and whether its
        LLM-log rows were read whole."""
        parts = [
            entries_frame(self.ledger.day_entries(day, slice_key=slice_key, after=after))
            for slice_key, after in moved_slices(fence.slices, states)
        ]
        llm = self.ledger.llm_marker(day) != fence.llm_marker
        if llm:
            llm_slice = keys.llm_slice_key(periods.month_of(day))
            parts.append(entries_frame(self.ledger.day_entries(day, slice_key=llm_slice)))
        return concat_entries(parts), llm


def moved_slices(before: Mapping[str, SliceState], now: Mapping[str, SliceState]) -> list[tuple[str, int | None]]:
    """The slices written since ``before``, each with the progress above which its rows moved
    (None: read the slice's day whole)."""
    moved: list[tuple[str, int | None]] = []
    for slice_key, state in sorted(now.items()):
        fenced = before.get(slice_key)
        if fenced is None or state.redriven != fenced.redriven:
            moved.append((slice_key, None))
        elif state.etag != fenced.etag:
            moved.append((slice_key, fenced.watermark))
    return moved


def month_days(period: str, now: datetime) -> list[date]:
    """The days of ``period`` that have begun by ``now``."""
    start, end = periods.period_bounds(period)
    last = min(end - timedelta(days=1), now.astimezone(UTC).date())
    return [start + timedelta(days=offset) for offset in range((last - start).days + 1)]


def settled(day: date, now: datetime, lag_hours: int) -> bool:
    """Whether ``day`` ended at least ``lag_hours`` before ``now``: its rows rarely change after."""
    end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1, hours=lag_hours)
    return now >= end


def entries_frame(entries: Iterable[LedgerEntry]) -> pd.DataFrame:
    """Ledger rows as a frame in :data:`ENTRY_COLUMNS`, counters as int64."""
    columns: dict[str, list[Any]] = {name: [] for name in ENTRY_COLUMNS}
    for entry in entries:
        columns["slice"].append(entry.slice_key)
        columns["row"].append(entry.row_key)
        columns["day"].append(entry.key.day.isoformat())
        for name in IDENTITY:
            columns[name].append(getattr(entry.key, name))
        for name in COUNTER_FIELDS:
            columns[name].append(getattr(entry.counters, name))
    if not columns["slice"]:
        return _no_entries().copy()  # most reads past a fence find nothing: skip building an empty frame
    return _typed(pd.DataFrame(columns))


@functools.cache
def _no_entries() -> pd.DataFrame:
    return _typed(pd.DataFrame({name: [] for name in ENTRY_COLUMNS}))


def concat_entries(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    parts = [frame for frame in frames if len(frame)]
    if not parts:
        return entries_frame(())
    return _typed(pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0])


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.loc[:, list(ENTRY_COLUMNS)]
    for name in ENTRY_COLUMNS[: -len(COUNTER_FIELDS)]:
        frame[name] = frame[name].astype(object)
    for name in COUNTER_FIELDS:
        frame[name] = frame[name].to_numpy().astype(np.int64, copy=False)
    return frame.reset_index(drop=True)


def overlay(base: pd.DataFrame, changes: pd.DataFrame, *, drop_llm: bool) -> pd.DataFrame:
    """``base`` with each changed row replaced by its new totals (and, with ``drop_llm``, without
    the LLM-log rows, which ``changes`` then holds whole)."""
    if drop_llm:
        base = base[base["slice"].map(_is_llm_slice) == False]  # noqa: E712 - elementwise
    if not len(changes):
        return base.reset_index(drop=True)
    changed = pd.MultiIndex.from_frame(changes.loc[:, list(ENTRY_KEYS)])
    kept = ~pd.MultiIndex.from_frame(base.loc[:, list(ENTRY_KEYS)]).isin(changed)
    return concat_entries([base[kept], changes])


def _is_llm_slice(slice_key: str) -> bool:
    return slice_key.endswith(f"|{keys.LLM_LOG_SLICE}")


def difference(now: pd.DataFrame, before: pd.DataFrame) -> pd.DataFrame:
    """Per ledger row, ``now`` minus ``before`` (absent rows count zero); rows that differ only."""
    now_ix, before_ix = now.set_index(list(ENTRY_KEYS)), before.set_index(list(ENTRY_KEYS))
    union = now_ix.index.union(before_ix.index)
    counters = list(COUNTER_FIELDS)
    delta = now_ix[counters].reindex(union, fill_value=0) - before_ix[counters].reindex(union, fill_value=0)
    moved = (delta != 0).any(axis=1).to_numpy()
    identity = ["day", *IDENTITY]
    names = now_ix[identity].reindex(union[moved]).combine_first(before_ix[identity].reindex(union[moved]))
    out = pd.concat([names, delta[moved]], axis=1).reset_index()
    return _typed(out) if len(out) else entries_frame(())


def add_deltas(base: pd.DataFrame, deltas: pd.DataFrame) -> pd.DataFrame:
    """``base`` with ``deltas`` (rows keyed like it) added to its counters; new rows appended."""
    if not len(deltas):
        return base
    summed = concat_entries([base, deltas])
    grouped = summed.groupby(list(ENTRY_KEYS), sort=False)
    counters = grouped[list(COUNTER_FIELDS)].sum()
    names = grouped[["day", *IDENTITY]].first()
    return _typed(pd.concat([names, counters], axis=1).reset_index())


def usage_of(entries: pd.DataFrame) -> pd.DataFrame:
    """A day's rows folded into a usage frame: summed over slices and operations."""
    if not len(entries):
        return normalise_usage_frame(pd.DataFrame({name: [] for name in (*LEDGER_KEYS, *LEDGER_COUNTERS)}))
    folded = entries.groupby(list(LEDGER_KEYS), sort=False)[list(LEDGER_COUNTERS)].sum().reset_index()
    folded["day"] = pd.to_datetime(folded["day"])
    return normalise_usage_frame(folded)


def join_usage(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Days' usage frames as one month, emptying ``frames`` as it goes.

    A month at 10,000 subscriptions is 6.2 million rows; concatenating would hold it twice. The
    month's columns are allocated first (their pages become resident only as they are filled),
    each day is copied in and let go at once, and keys are recoded to the month's categories.
    """
    parts = [frame for frame in frames if len(frame)]
    frames.clear()
    if not parts:
        return usage_of(entries_frame(()))
    if len(parts) == 1:
        return parts[0]
    total = sum(len(part) for part in parts)
    categories = {name: _union([part[name].cat.categories for part in parts]) for name in LINE_KEYS}
    days = np.empty(total, dtype="datetime64[s]")
    codes = {name: np.empty(total, dtype=np.int32) for name in LINE_KEYS}
    counters = {name: np.empty(total, dtype=np.int64) for name in LEDGER_COUNTERS}
    start = 0
    parts.reverse()
    while parts:
        part = parts.pop()  # the list lets go of the day; `part` does at the next one
        stop = start + len(part)
        days[start:stop] = part["day"].to_numpy()
        for name in LINE_KEYS:
            codes[name][start:stop] = part[name].cat.set_categories(categories[name]).cat.codes.to_numpy()
        for name in LEDGER_COUNTERS:
            counters[name][start:stop] = part[name].to_numpy()
        start = stop
    del part
    columns: dict[str, Any] = {"day": days}
    for name in LINE_KEYS:
        columns[name] = pd.Categorical.from_codes(codes.pop(name), categories=categories[name])
    columns.update(counters)
    return normalise_usage_frame(pd.DataFrame(columns, copy=False))


def _union(indexes: list[pd.Index]) -> pd.Index:
    union = indexes[0]
    for index in indexes[1:]:
        union = union.union(index)
    return union


def usage_rows(entries: pd.DataFrame) -> list[UsageRow]:
    """Ledger rows (e.g. late usage) summed per usage key."""
    if not len(entries):
        return []
    grouped = entries.groupby(["day", *IDENTITY], sort=True)[list(COUNTER_FIELDS)].sum().reset_index()
    return [
        UsageRow(UsageKey(date.fromisoformat(values[0]), *values[1:5]), Counters(*(int(v) for v in values[5:])))
        for values in grouped.itertuples(index=False, name=None)
    ]


def window_totals(usage: pd.DataFrame, window: tuple[datetime, datetime]) -> dict[str, int]:
    """Total tokens per subscription of the usage frame's days inside ``window``."""
    first, stop = (np.datetime64(moment.astimezone(UTC).replace(tzinfo=None), "s") for moment in window)
    inside = usage[(usage["day"] >= first) & (usage["day"] < stop)]
    totals = inside.groupby("subscription_id", observed=True)["total_tokens"].sum()
    return {str(subscription): int(tokens) for subscription, tokens in totals.items()}


def encode(entries: pd.DataFrame, fence: Fence) -> bytes:
    """A compacted day as Parquet, with its fence in the file's metadata."""
    table = pa.Table.from_pandas(entries, preserve_index=False)
    document = fence_document(fence)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _FENCE: json.dumps(document).encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def decode(data: bytes) -> tuple[pd.DataFrame, Fence]:
    table, fence = decode_table(data)
    return entries_of_table(table), fence


def entries_of_table(table: pa.Table) -> pd.DataFrame:
    """A compacted day's Arrow table as a frame in :data:`ENTRY_COLUMNS`."""
    return _typed(table.to_pandas())


def decode_table(data: bytes) -> tuple[pa.Table, Fence]:
    """A compacted day as an Arrow table, and its fence."""
    table = pq.read_table(io.BytesIO(data))
    return table, fence_from(json.loads((table.schema.metadata or {})[_FENCE]))


def fence_document(fence: Fence) -> dict[str, Any]:
    """A fence as JSON: how compacted files (and files built from them) keep it."""
    return {
        "as_of": _iso(fence.as_of),
        "slices": {name: list(state) for name, state in fence.slices.items()},
        "llm_marker": fence.llm_marker,
    }


def fence_from(document: Mapping[str, Any]) -> Fence:
    return Fence(
        datetime.fromisoformat(document["as_of"]),
        {name: SliceState(int(w), str(etag), int(n)) for name, (w, etag, n) in document["slices"].items()},
        document["llm_marker"],
    )


def usage_of_table(table: pa.Table) -> pd.DataFrame:
    """:func:`usage_of` done in Arrow: summed over slices and operations before anything reaches pandas."""
    if table.num_rows == 0:
        return usage_of(entries_frame(()))
    grouped = table.group_by(list(LEDGER_KEYS)).aggregate([(name, "sum") for name in LEDGER_COUNTERS])
    grouped = grouped.rename_columns([name.removesuffix("_sum") for name in grouped.column_names])
    folded = grouped.to_pandas(strings_to_categorical=True)
    days = folded["day"].cat  # a day's file holds one day: convert the category, not every row
    folded["day"] = np.asarray(pd.to_datetime(days.categories.astype(str)).astype("datetime64[s]"))[days.codes]
    return normalise_usage_frame(folded.loc[:, [*LEDGER_KEYS, *LEDGER_COUNTERS]])


def entries_bytes(entries: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    entries.to_parquet(buffer, index=False, compression="zstd")
    return buffer.getvalue()


def entries_from(data: bytes) -> pd.DataFrame:
    """Ledger rows written by :func:`entries_bytes`, extra columns kept; files from before a column
    existed read it as empty (keys) or zero (counters)."""
    frame = pd.read_parquet(io.BytesIO(data))
    for name in ENTRY_KEYS:
        if name not in frame:
            frame[name] = ""
    for name in COUNTER_FIELDS:
        if name not in frame:
            frame[name] = 0
    return frame


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")

"""A month's ledger totals per line, for the usage API: its settled days summed once and kept, then corrected.

The compacted file of a settled day never changes, so the sum of a month's settled days, as their
files hold them, never changes either once those days are known. It is kept in memory and in a
file of its own beside the days (``ledger-days/<month>/totals-through-<day>.parquet``, created
once, with each day's fence in its metadata), and extended by one day's file when another day
settles. An answer is then that sum, plus for each settled day a small *correction* when rows
moved past its fence (the moved rows' totals minus the rows they replace in the file), plus the
days not yet settled from the live days: one file read instead of a month of them, and the
fences checked in parallel.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from chargeback.domain import keys
from chargeback.domain.usage import COUNTER_FIELDS
from chargeback.reports.live_days import LiveDays
from chargeback.reports.month_view import (
    ENTRY_KEYS,
    Fence,
    MonthView,
    SliceState,
    entries_of_table,
    fence_document,
    fence_from,
    settled,
)
from chargeback.reports.usage_totals import LINE, SCHEMA, fold, fold_entries, period_days, usage_totals

FOLD_DAYS = 4
"""Days added to the running sum at a time when the settled totals are built: a month is never held by day."""
WORKERS = 8
"""Days checked against their fences at once: each check is a few small queries."""
_FENCES = b"chargeback.fences"


class CompactTotals(Protocol):
    """Where a month's settled totals are kept; the Blob adapter implements it beside the compacted days."""

    def totals_through(self, month: str) -> list[date]:
        """The last days of the month's kept totals files."""
        ...

    def get_totals(self, month: str, through: date) -> bytes | None: ...

    def create_totals(self, month: str, through: date, data: bytes) -> bool:
        """Write the file if none exists; False (nothing written) when one does."""
        ...


@dataclass(frozen=True)
class Settled:
    """The month's days up to ``through`` as their compacted files hold them, summed per line, with each day's fence."""

    through: date | None
    table: pa.Table
    fences: Mapping[date, Fence]


def _nothing() -> Settled:
    return Settled(None, SCHEMA.empty_table(), {})


@dataclass
class MonthTotals:
    """The usage API's reader: kept settled totals, corrections, and the live days."""

    view: MonthView
    live: LiveDays
    store: CompactTotals
    _kept: dict[str, Settled] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def totals(self, period: str, now: datetime) -> pa.Table:
        """Per (subscription, model, deployment), every counter of ``period`` (a month or a day)."""
        if len(period) == 10:
            return usage_totals(self.view, self.live, period, now)
        days = period_days(period)
        done = self._settled_days(period, now)
        base = self._settled(period, done[-1] if done else None)
        states = self.view.ledger.slice_states(period)
        with ThreadPoolExecutor(WORKERS) as pool:
            corrections = list(pool.map(lambda day: self._correction(day, base.fences[day], states), done))
            live = list(pool.map(lambda day: fold_entries(self.live.entries(day, now, states)[0]), days[len(done) :]))
        self.live.forget_settled(now)
        parts = [base.table, *(part for part in [*corrections, *live] if part is not None and part.num_rows)]
        return parts[0] if len(parts) == 1 else fold(pa.concat_tables(parts))

    def keep(self, month: str, now: datetime) -> date | None:
        """Add the month's newly settled days to its kept sum now, so that no request has to; the last day in it."""
        done = self._settled_days(month, now)
        return self._settled(month, done[-1] if done else None).through

    def _settled_days(self, month: str, now: datetime) -> list[date]:
        return [day for day in period_days(month) if settled(day, now, self.view.lag_hours)]

    def _settled(self, month: str, through: date | None) -> Settled:
        with self._lock:
            kept = self._kept.get(month)
            if kept is not None and kept.through == through:
                return kept
            if kept is None or through is None or (kept.through is not None and kept.through > through):
                kept = self._load(month, through)
            kept = self._extend(month, kept, through)
            self._kept[month] = kept
            return kept

    def _load(self, month: str, through: date | None) -> Settled:
        """The month's kept totals file that covers most of the days up to ``through``; none: nothing."""
        if through is None:
            return _nothing()
        candidates = [day for day in self.store.totals_through(month) if day <= through]
        for day in sorted(candidates, reverse=True):
            data = self.store.get_totals(month, day)
            if data is not None:
                return decode(data)
        return _nothing()

    def _extend(self, month: str, kept: Settled, through: date | None) -> Settled:
        """``kept`` with each settled day after it added from its compacted file, kept as a file of its own."""
        if through is None or kept.through == through:
            return kept
        days = [day for day in period_days(month) if (kept.through is None or day > kept.through) and day <= through]
        total, fences = kept.table, dict(kept.fences)
        for start in range(0, len(days), FOLD_DAYS):
            tables = [total]
            for day in days[start : start + FOLD_DAYS]:
                table, fence = self.view.compacted_table(day)
                tables.append(fold(table.select([*LINE, *COUNTER_FIELDS])))
                fences[day] = fence
            total = fold(pa.concat_tables(tables))
        extended = Settled(through, total, fences)
        self.store.create_totals(month, through, encode(extended))
        return extended

    def _correction(self, day: date, fence: Fence, states: Mapping[str, SliceState]) -> pa.Table | None:
        """What moved past the day's fence, as per-line differences from the file; None when nothing did."""
        changes, llm = self.view.changes_since(day, fence, states)
        if not len(changes) and not llm:
            return None
        table, _ = self.view.compacted_table(day)
        replaced = _replaced(entries_of_table(table), changes, drop_llm=llm)
        return fold(pa.concat_tables([fold_entries(changes), _negated(fold_entries(replaced))]))


def _replaced(base: pd.DataFrame, changes: pd.DataFrame, *, drop_llm: bool) -> pd.DataFrame:
    """The file's rows the changes take the place of (and, with ``drop_llm``, every LLM-log row of it)."""
    gone = np.zeros(len(base), dtype=bool)
    if len(changes):
        moved = pd.MultiIndex.from_frame(changes.loc[:, list(ENTRY_KEYS)])
        gone |= pd.MultiIndex.from_frame(base.loc[:, list(ENTRY_KEYS)]).isin(moved)
    if drop_llm:
        gone |= np.array([str(name).endswith(f"|{keys.LLM_LOG_SLICE}") for name in base["slice"]], dtype=bool)
    return base[gone]


def _negated(table: pa.Table) -> pa.Table:
    columns = [table.column(name) for name in LINE] + [pc.negate(table.column(name)) for name in COUNTER_FIELDS]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def encode(settled_totals: Settled) -> bytes:
    fences = {
        "through": None if settled_totals.through is None else settled_totals.through.isoformat(),
        "days": {day.isoformat(): fence_document(fence) for day, fence in settled_totals.fences.items()},
    }
    table = settled_totals.table.replace_schema_metadata({_FENCES: json.dumps(fences).encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def decode(data: bytes) -> Settled:
    table = pq.read_table(io.BytesIO(data))
    document = json.loads((table.schema.metadata or {})[_FENCES])
    fences = {date.fromisoformat(day): fence_from(fence) for day, fence in document["days"].items()}
    through = None if document["through"] is None else date.fromisoformat(document["through"])
    return Settled(through, table.replace_schema_metadata(None).cast(SCHEMA), fences)

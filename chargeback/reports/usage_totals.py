"""A month's (or a day's) ledger totals per subscription, model and deployment, read through the month view.

``GET /api/usage/{period}`` answers from this: settled days from their compacted files (summed in
Arrow, so no row becomes a Python object) plus what moved past their fences, days not yet settled
from the process's live days. Every counter is kept (requests, tokens, the unsplit and
LLM-log shares, time fallbacks), so the answer is the one the ledger read row by row would give.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta

import pandas as pd
import pyarrow as pa

from chargeback.domain import periods
from chargeback.domain.usage import COUNTER_FIELDS
from chargeback.reports.live_days import LiveDays
from chargeback.reports.month_view import MonthView, SliceState, entries_of_table, overlay, settled

LINE = ("subscription_id", "model", "deployment")
"""What the totals are kept by."""
SCHEMA = pa.schema([*((name, pa.string()) for name in LINE), *((name, pa.int64()) for name in COUNTER_FIELDS)])
"""The totals' columns, one type each whichever way a day was read (a compacted file or a frame)."""


def period_days(period: str) -> list[date]:
    """Every day of a month ``YYYY-MM``, or the one day ``YYYY-MM-DD``."""
    if len(period) == 10:
        return [date.fromisoformat(period)]
    start, end = periods.period_bounds(period)
    return [start + timedelta(days=offset) for offset in range((end - start).days)]


def usage_totals(view: MonthView, live: LiveDays, period: str, now: datetime) -> pa.Table:
    """Per (subscription, model, deployment), the sum of every counter over ``period``'s days."""
    states = view.ledger.slice_states(period[:7])
    totals: pa.Table | None = None
    for day in period_days(period):
        if settled(day, now, view.lag_hours):
            day_totals = _settled(view, day, states)
        else:
            entries, _ = live.entries(day, now, states)
            day_totals = fold_entries(entries)
        if day_totals.num_rows:
            totals = day_totals if totals is None else fold(pa.concat_tables([totals, day_totals]))
    live.forget_settled(now)
    return totals if totals is not None else fold_entries(pd.DataFrame({name: [] for name in (*LINE, *COUNTER_FIELDS)}))


def _settled(view: MonthView, day: date, states: Mapping[str, SliceState]) -> pa.Table:
    table, fence = view.compacted_table(day)
    changes, llm = view.changes_since(day, fence, states)
    if not len(changes) and not llm:
        return fold(table.select([*LINE, *COUNTER_FIELDS]))
    return fold_entries(overlay(entries_of_table(table), changes, drop_llm=llm))


def fold(table: pa.Table) -> pa.Table:
    """Rows summed per line, in :data:`SCHEMA`."""
    grouped = table.group_by(list(LINE)).aggregate([(name, "sum") for name in COUNTER_FIELDS])
    renamed = grouped.rename_columns([name.removesuffix("_sum") for name in grouped.column_names])
    return renamed.select([*LINE, *COUNTER_FIELDS]).cast(SCHEMA)


def fold_entries(entries: pd.DataFrame) -> pa.Table:
    """Ledger rows (the month view's entry columns) summed per line, in :data:`SCHEMA`."""
    frame = entries.loc[:, [*LINE, *COUNTER_FIELDS]].astype(dict.fromkeys(LINE, str))
    for name in COUNTER_FIELDS:
        frame[name] = frame[name].astype("int64")
    return fold(pa.Table.from_pandas(frame, preserve_index=False))


def frame(totals: pa.Table) -> pd.DataFrame:
    """The totals as a pandas frame (keys as text, counters as int64)."""
    converted: pd.DataFrame = totals.to_pandas()
    return converted

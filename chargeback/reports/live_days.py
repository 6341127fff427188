"""Days not yet settled, kept in memory under a fence, so each later read costs only what moved since.

A settled day is read from its compacted file (chargeback.reports.month_view). A day that has not
settled has no file, and reading it whole from the ledger at every evaluation or request would
cost a day of rows each time. The first read of such a day keeps its rows under a fence taken
*before* the rows were read (each slice's watermark and ETag, the day's LLM-log marker); every
later read folds in only what moved past that fence, by the month view's own rule: a slice whose
ETag has not changed was not written since, a written slice's new rows carry progress above the
fenced watermark, a slice that is new or gained redrive markers is read whole for the day, an
LLM-log day whose marker moved is read again whole. The fence then moves to what was read first.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

import pandas as pd

from chargeback.reports.month_view import Fence, MonthView, SliceState, entries_frame, overlay, settled


@dataclass(frozen=True)
class FencedDay:
    entries: pd.DataFrame
    fence: Fence


@dataclass
class LiveDays:
    """The unsettled days read so far in this process, each with the fence its rows are current to."""

    view: MonthView
    kept: dict[date, FencedDay] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def entries(self, day: date, now: datetime, states: Mapping[str, SliceState]) -> tuple[pd.DataFrame, int]:
        """The day's ledger rows now (in the month view's entry columns), and how many were read from the table.

        ``states`` are the month's slices as read before this call: they become the new fence.
        """
        ledger = self.view.ledger
        marker = ledger.llm_marker(day)  # before the rows, like every fence
        fence = Fence(now, dict(states), marker)
        with self._lock:
            kept = self.kept.get(day)
        if kept is None:
            entries = entries_frame(ledger.day_entries(day))
            read = len(entries)
        else:
            changes, llm = self.view.changes_since(day, kept.fence, states)
            entries = overlay(kept.entries, changes, drop_llm=llm)
            read = len(changes)
        with self._lock:
            current = self.kept.get(day)
            if current is None or current.fence.as_of <= now:
                self.kept[day] = FencedDay(entries, fence)
        return entries, read

    def forget_settled(self, now: datetime) -> None:
        """Let go of the days that have settled by ``now``: their compacted files take over."""
        with self._lock:
            for day in [day for day in self.kept if settled(day, now, self.view.lag_hours)]:
                del self.kept[day]

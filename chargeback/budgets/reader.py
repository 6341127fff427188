"""Reads a month to date as a usage frame: settled days from the compact month view, the others from live days.

Settled days come from their compacted files and what moved past each file's fence, as the
report reads them; days not yet settled from :class:`~chargeback.reports.live_days.LiveDays`,
which keeps them fenced in memory between evaluations. An evaluation then reads from the ledger
only the rows written since the last one (after a cold start: the unsettled days once).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from chargeback.reports.live_days import LiveDays
from chargeback.reports.month_view import MonthView, join_usage, month_days, settled, usage_of


@dataclass
class MonthReader:
    """The month view plus the process's live days."""

    view: MonthView
    live: LiveDays
    rows_read: int = 0
    """Ledger rows the last :meth:`read` took from the table (what moved past the fences)."""

    def read(self, period: str, now: datetime) -> pd.DataFrame:
        """``period``'s usage frame up to ``now``."""
        return join_usage(list(self.days(period, now)))

    def days(self, period: str, now: datetime) -> Iterator[pd.DataFrame]:
        """``period``'s usage up to ``now``, a usage frame per day, read as they are asked for: a month
        priced from these is never held whole."""
        self.rows_read = 0
        states = self.view.ledger.slice_states(period)
        for day in month_days(period, now):
            if settled(day, now, self.view.lag_hours):
                usage, changes, _ = self.view.day_usage(day, now, states)
                self.rows_read += len(changes)
                yield usage
            else:
                entries, read = self.live.entries(day, now, states)
                self.rows_read += read
                yield usage_of(entries)
        self.live.forget_settled(now)

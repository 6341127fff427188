"""Bills the gateway's LLM logs into the ledger: each run *sets* a day's totals, so reruns change nothing.

The LLM logs are not a stream with sequence numbers but a table that can be read again, so
this source needs no watermark: a run reads every LLM-log row of a UTC day, counts each call
once (however many rows its exchange was split over), sums the calls per subscription, model,
deployment and operation, and replaces the day's LLM-log rows in the ledger with those totals.
A rerun computes the same totals and writes nothing. The rows live in their own slice of the
month (``keys.llm_slice_key``), never in an Event Hub slice, so neither source can overwrite
the other's counts; which calls each source bills is fixed by the scope (see ``llm_log_rows``).

A call whose gateway-log row is not there yet has no APIM subscription: its tokens are kept as
*unattributed* rows, shown but not billed, and move to the subscription on the first run after
the gateway-log row lands. A day is *settled* once it ended more than the ingestion lag ago;
settled days are not read again unless they still hold unattributed tokens.

Each day's replacement is one entity-group transaction conditioned on the day marker's ETag
(a day touching more than ``MAX_ROWS_PER_COMMIT`` rows is cut into several, each carrying the
marker's ETag forward); a racing run loses on the ETag, re-reads the day and writes the
difference again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from chargeback.domain import keys, periods
from chargeback.domain.errors import ConcurrencyError
from chargeback.domain.logs import LLM_LOG_ROW_REJECTED, LLM_LOGS, log_event
from chargeback.domain.usage import ZERO, Counters, UsageKey, UsageRow
from chargeback.ingestion.llm_log_rows import (
    SCOPE_ALL,
    SCOPE_OFF,
    SCOPE_STREAMED,
    LlmLogRow,
    LlmLogSource,
    RejectedRow,
)

MAX_ROWS_PER_COMMIT = 99
"""A transaction holds at most 100 entities: 99 rows (writes and deletes) and the day marker."""

MAX_CONFLICT_RETRIES = 8

LOOKBACK_MONTHS = 3
"""Months before the current one whose unsettled or unattributed days a run collects."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DayMarker:
    """What the ledger records about one collected day of LLM-log usage."""

    settled: bool
    calls: int = 0
    tokens: int = 0
    unattributed_tokens: int = 0


@dataclass(frozen=True, slots=True)
class DayState:
    """A day's LLM-log rows as stored (row key → key and counters), its marker and the marker's ETag."""

    etag: str | None
    marker: DayMarker | None
    rows: Mapping[str, tuple[UsageKey, Counters]]


@dataclass(frozen=True, slots=True)
class RowChange:
    """Set a row to ``counters``, or delete it when ``counters`` is None."""

    row_key: str
    key: UsageKey
    counters: Counters | None


class LlmLogStore(Protocol):
    """Where LLM-log usage lives. The Table adapter implements it; tests may use an in-memory fake."""

    def markers(self, period: str) -> dict[date, DayMarker]:
        """The marker of every collected day of a month."""
        ...

    def read_day(self, day: date) -> DayState: ...

    def replace(self, day: date, etag: str | None, changes: Sequence[RowChange], marker: DayMarker) -> str:
        """Apply ``changes`` and write ``marker`` in one transaction if the marker's ETag is still
        ``etag`` (``None``: no marker yet); return the new ETag or raise ``ConcurrencyError``."""
        ...

    def unattributed(self, period: str) -> Iterable[UsageRow]:
        """The month's or day's usage whose subscription is not known yet (``subscription_id`` empty)."""
        ...


@dataclass(slots=True)
class DayTotals:
    """One day's calls, summed: billed per usage key, and unattributed (empty subscription)."""

    rows: dict[UsageKey, Counters] = field(default_factory=dict)
    calls: int = 0

    def marker(self, settled: bool) -> DayMarker:
        return DayMarker(
            settled=settled,
            calls=self.calls,
            tokens=sum(c.total_tokens for c in self.rows.values()),
            unattributed_tokens=sum(c.total_tokens for k, c in self.rows.items() if not k.subscription_id),
        )


@dataclass(slots=True)
class CollectOutcome:
    """What one collection did, logged as one line an operator can query."""

    scope: str
    days: int = 0
    rows_read: int = 0
    calls: int = 0
    tokens: int = 0
    unattributed_tokens: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    rows_written: int = 0
    rows_deleted: int = 0
    transactions: int = 0
    conflicts: int = 0

    def as_log(self) -> dict[str, object]:
        return {
            "scope": self.scope,
            "days": self.days,
            "rows_read": self.rows_read,
            "calls": self.calls,
            "tokens": self.tokens,
            "unattributed_tokens": self.unattributed_tokens,
            "rejected": dict(self.rejected),
            "rows_written": self.rows_written,
            "rows_deleted": self.rows_deleted,
            "transactions": self.transactions,
            "conflicts": self.conflicts,
        }


@dataclass(slots=True)
class _Call:
    first: LlmLogRow
    subscription_id: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    streamed: bool


def in_scope(streamed: bool, scope: str) -> bool:
    """Whether the LLM logs bill a call: the usage events bill every call they do not."""
    return scope == SCOPE_ALL or (scope == SCOPE_STREAMED and streamed)


def summarise(rows: Iterable[LlmLogRow | RejectedRow], scope: str, outcome: CollectOutcome) -> dict[date, DayTotals]:
    """Count each call once and sum the calls in scope per day and usage key.

    A call's rows share its ``CorrelationId``; an exchange split over several rows (rising
    ``SequenceNumber``) and a row delivered twice are one call. Its time is its earliest row's,
    its subscription the first one any row carries, and each token count the largest any row
    carries, so counts repeated on every row and counts on one row alone both come out once.
    """
    calls: dict[str, _Call] = {}
    for row in rows:
        outcome.rows_read += 1
        if isinstance(row, RejectedRow):
            outcome.rejected[row.reason] = outcome.rejected.get(row.reason, 0) + 1
            log_event(
                logger, LLM_LOG_ROW_REJECTED, logging.WARNING, where=row.where, reason=row.reason, detail=row.detail
            )
            continue
        call = calls.get(row.correlation_id)
        if call is None:
            calls[row.correlation_id] = _Call(
                row, row.subscription_id, row.prompt_tokens, row.completion_tokens, row.total_tokens, row.streamed
            )
            continue
        if (row.time, row.sequence_number) < (call.first.time, call.first.sequence_number):
            call.first = row
        call.subscription_id = call.subscription_id or row.subscription_id
        call.prompt_tokens = max(call.prompt_tokens, row.prompt_tokens)
        call.completion_tokens = max(call.completion_tokens, row.completion_tokens)
        call.total_tokens = max(call.total_tokens, row.total_tokens)
        call.streamed = call.streamed or row.streamed
    days: dict[date, DayTotals] = {}
    for call in calls.values():
        if not in_scope(call.streamed, scope):
            continue
        first = call.first
        key = UsageKey(first.time.date(), call.subscription_id, first.model, first.deployment, first.operation)
        totals = days.setdefault(key.day, DayTotals())
        totals.calls += 1
        totals.rows[key] = totals.rows.get(key, ZERO) + _counters(call)
    return days


def _counters(call: _Call) -> Counters:
    return Counters(
        requests=1,
        prompt_tokens=call.prompt_tokens,
        completion_tokens=call.completion_tokens,
        total_tokens=call.total_tokens,
        llm_log_requests=1,
        llm_log_tokens=call.total_tokens,
    )


def collection_months(now: datetime, lookback: int = LOOKBACK_MONTHS) -> list[str]:
    """The current month and ``lookback`` months before it, oldest first."""
    month = periods.month_of(now.astimezone(UTC))
    months = [month]
    for _ in range(lookback):
        month = periods.previous_month(month)
        months.insert(0, month)
    return months


def settled(day: date, now: datetime, lag_hours: int) -> bool:
    """A day is settled once it ended more than ``lag_hours`` before ``now``."""
    end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    return end + timedelta(hours=lag_hours) <= now


def days_to_collect(store: LlmLogStore, months: Iterable[str], now: datetime) -> list[date]:
    """Days begun by ``now`` that are not settled yet, or settled but still holding unattributed tokens."""
    due = []
    for month in months:
        markers = store.markers(month)
        start, end = periods.month_bounds(month)
        day = start.date()
        while day < end.date() and datetime(day.year, day.month, day.day, tzinfo=UTC) < now:
            marker = markers.get(day)
            if marker is None or not marker.settled or marker.unattributed_tokens > 0:
                due.append(day)
            day += timedelta(days=1)
    return due


def collect(
    source: LlmLogSource,
    store: LlmLogStore,
    *,
    scope: str,
    now: datetime,
    lag_hours: int,
    months: Sequence[str] | None = None,
) -> CollectOutcome:
    """Set every due day's LLM-log totals in the ledger from ``source``; raise what a retry may heal."""
    outcome = CollectOutcome(scope=scope)
    if scope == SCOPE_OFF:
        return outcome
    days = days_to_collect(store, collection_months(now) if months is None else months, now)
    if days:
        totals = summarise(source.rows(days), scope, outcome)
        for day in days:
            day_totals = totals.get(day, DayTotals())
            replace_day(store, day, day_totals, day_totals.marker(settled(day, now, lag_hours)), outcome)
    outcome.days = len(days)
    level = logging.WARNING if outcome.rejected or outcome.unattributed_tokens else logging.INFO
    log_event(logger, LLM_LOGS, level, **outcome.as_log())
    return outcome


def replace_day(store: LlmLogStore, day: date, totals: DayTotals, marker: DayMarker, outcome: CollectOutcome) -> None:
    """Make the day's stored rows equal ``totals``; nothing is written when they already are."""
    wanted = {keys.llm_row_key(key): (key, counters) for key, counters in totals.rows.items()}
    for _attempt in range(MAX_CONFLICT_RETRIES):
        state = store.read_day(day)
        changes = _changes(state.rows, wanted)
        if not changes and state.marker == marker:
            break
        try:
            etag = state.etag
            for start in range(0, max(len(changes), 1), MAX_ROWS_PER_COMMIT):
                chunk = changes[start : start + MAX_ROWS_PER_COMMIT]
                etag = store.replace(day, etag, chunk, marker)
                outcome.transactions += 1
                outcome.rows_written += sum(1 for change in chunk if change.counters is not None)
                outcome.rows_deleted += sum(1 for change in chunk if change.counters is None)
        except ConcurrencyError:
            outcome.conflicts += 1
            continue
        break
    else:
        raise ConcurrencyError(
            f"the LLM-log usage of {day.isoformat()} kept moving after {MAX_CONFLICT_RETRIES} re-reads"
        )
    outcome.calls += marker.calls
    outcome.tokens += marker.tokens
    outcome.unattributed_tokens += marker.unattributed_tokens


def _changes(
    stored: Mapping[str, tuple[UsageKey, Counters]], wanted: Mapping[str, tuple[UsageKey, Counters]]
) -> list[RowChange]:
    changes = [
        RowChange(row_key, key, counters)
        for row_key, (key, counters) in sorted(wanted.items())
        if stored.get(row_key, (None, None))[1] != counters
    ]
    changes += [RowChange(row_key, key, None) for row_key, (key, _) in sorted(stored.items()) if row_key not in wanted]
    return changes

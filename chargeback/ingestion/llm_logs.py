"""Bills the gateway's LLM logs into the ledger: each run *sets* a day's totals, so reruns change nothing.

The LLM logs are not a stream with sequence numbers but a table that can be read again, so
this source needs no watermark: a run asks the source for a UTC day's calls, each counted once
(``llm_log_calls``), summed per subscription, model, deployment and operation, and replaces the
day's LLM-log rows in the ledger with those totals. A rerun computes the same totals and writes
nothing. The rows live in their own slice of the month (``keys.llm_slice_key``), never in an
Event Hub slice, so neither source can overwrite the other's counts; which calls each source
bills is fixed by the scope each day was collected with.

A call whose gateway-log row is not there yet has no APIM subscription: its tokens are kept as
*unattributed* rows, shown but not billed, and move to the subscription on the first run after
the gateway-log row lands. A day is *settled* once it ended more than the ingestion lag ago;
settled days are not read again unless they still hold unattributed tokens.

Each day's replacement is one entity-group transaction conditioned on the day marker's ETag;
a day touching more than ``MAX_ROWS_PER_COMMIT`` rows is cut into several, each carrying the
marker's ETag forward, and only the last writes the day's real marker: every earlier one marks
the day *incomplete*, so a failure between two of them leaves the day due, and the next run
reads it again and writes what is still missing. A racing run loses on the ETag, re-reads the
day and writes the difference again.

Days are collected one at a time and each in isolation: a day whose logs cannot be read, or
whose rows cannot be written, is recorded as failed in the outcome (and logged), and the other
days go on. Nothing here raises what one day did; callers read ``CollectOutcome.failed``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from chargeback.domain import keys, periods
from chargeback.domain.errors import ChargebackError, ConcurrencyError
from chargeback.domain.logs import LLM_LOG_DAY_FAILED, LLM_LOGS, log_event
from chargeback.domain.usage import Counters, UsageKey, UsageRow
from chargeback.ingestion.llm_log_calls import LlmLogSource, WindowUsage
from chargeback.ingestion.llm_log_rows import SCOPE_ALL, SCOPE_OFF, SCOPE_STREAMED
from chargeback.observability import metrics

MAX_ROWS_PER_COMMIT = 99
"""A transaction holds at most 100 entities: 99 rows (writes and deletes) and the day marker."""

MAX_CONFLICT_RETRIES = 8

LOOKBACK_MONTHS = 3
"""Months before the current one whose unsettled or unattributed days a run collects."""

UNKNOWN_SCOPE = ""
"""The scope of a day collected before markers recorded it."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DayMarker:
    """What the ledger records about one collected day of LLM-log usage.

    ``complete`` is False while a replacement cut into several transactions is under way: the
    day's rows are then part old, part new, and the day is collected again. ``scope`` is what the
    LLM logs billed of that day (``streamed`` or ``all``; empty for days collected before it was
    recorded), which redrive reads to know whether a set-aside usage event was billed.
    """

    settled: bool
    calls: int = 0
    tokens: int = 0
    unattributed_tokens: int = 0
    complete: bool = True
    scope: str = UNKNOWN_SCOPE


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

    def event_usage_on(self, day: date) -> bool:
        """Whether any Event Hub slice holds usage of ``day``."""
        ...


@dataclass(slots=True)
class DayTotals:
    """One day's calls, summed: billed per usage key, and unattributed (empty subscription)."""

    rows: dict[UsageKey, Counters] = field(default_factory=dict)
    calls: int = 0

    @classmethod
    def of(cls, usage: WindowUsage) -> DayTotals:
        return cls(dict(usage.rows), usage.calls)

    def marker(self, settled: bool, scope: str = UNKNOWN_SCOPE) -> DayMarker:
        return DayMarker(
            settled=settled,
            calls=self.calls,
            tokens=sum(c.total_tokens for c in self.rows.values()),
            unattributed_tokens=sum(c.total_tokens for k, c in self.rows.items() if not k.subscription_id),
            scope=scope,
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
    failed: dict[str, str] = field(default_factory=dict)
    """Per day (or month, when its days could not even be listed) that failed, why."""

    @property
    def complete(self) -> bool:
        return not self.failed

    def add_read(self, usage: WindowUsage) -> None:
        self.rows_read += usage.rows_read
        for reason, rows in usage.rejected.items():
            self.rejected[reason] = self.rejected.get(reason, 0) + rows

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
            "failed": dict(self.failed),
        }


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


def begun_days(month: str, now: datetime) -> list[date]:
    """The days of ``month`` that have begun by ``now``."""
    start, end = periods.month_bounds(month)
    days, day = [], start.date()
    while day < end.date() and datetime(day.year, day.month, day.day, tzinfo=UTC) < now:
        days.append(day)
        day += timedelta(days=1)
    return days


def is_due(marker: DayMarker | None) -> bool:
    """Whether a day must be read again: never collected, cut short, not settled, or not yet attributed."""
    return marker is None or not marker.complete or not marker.settled or marker.unattributed_tokens > 0


def days_to_collect(store: LlmLogStore, months: Iterable[str], now: datetime) -> list[date]:
    """Days begun by ``now`` that are due (:func:`is_due`)."""
    due = []
    for month in months:
        markers = store.markers(month)
        due += [day for day in begun_days(month, now) if is_due(markers.get(day))]
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
    """Set every due day's LLM-log totals in the ledger from ``source``, one day at a time.

    A day (or a month whose markers cannot be read) that fails is recorded in
    ``CollectOutcome.failed`` and logged; the other days go on. Nothing is raised for it.
    """
    outcome = CollectOutcome(scope=scope)
    if scope == SCOPE_OFF:
        return outcome
    for month in collection_months(now) if months is None else months:
        try:
            markers = store.markers(month)
        except ChargebackError as exc:
            _failed(outcome, month, exc)
            continue
        for day in begun_days(month, now):
            if is_due(markers.get(day)):
                outcome.days += 1
                collect_day(
                    source, store, day, markers.get(day), scope=scope, now=now, lag_hours=lag_hours, outcome=outcome
                )
    level = logging.WARNING if outcome.rejected or outcome.unattributed_tokens or outcome.failed else logging.INFO
    log_event(logger, LLM_LOGS, level, **outcome.as_log())
    _record_metrics(outcome)
    return outcome


def _record_metrics(outcome: CollectOutcome) -> None:
    """The collection as metrics; a month whose days could not be listed counts as one failed day."""
    failed_days = sum(1 for where in outcome.failed if len(where) == len("YYYY-MM-DD"))
    metrics.llm_logs_collected(
        outcome.scope,
        rows=outcome.rows_read,
        calls=outcome.calls,
        rejected=outcome.rejected,
        collected_days=outcome.days - failed_days,
        failed_days=len(outcome.failed),
        unattributed_tokens=outcome.unattributed_tokens,
        transactions=outcome.transactions,
        conflicts=outcome.conflicts,
    )


def collect_day(
    source: LlmLogSource,
    store: LlmLogStore,
    day: date,
    marker: DayMarker | None,
    *,
    scope: str,
    now: datetime,
    lag_hours: int,
    outcome: CollectOutcome,
) -> None:
    """Read one day from ``source`` and set its totals; a failure is recorded, never raised."""
    try:
        day_scope = scope_of_day(scope, marker, lambda: store.event_usage_on(day))
        usage = source.day_usage(day, day_scope)
        outcome.add_read(usage)
        totals = DayTotals.of(usage)
        replace_day(store, day, totals, totals.marker(settled(day, now, lag_hours), day_scope), outcome)
    except ChargebackError as exc:
        _failed(outcome, day.isoformat(), exc)


def scope_of_day(setting: str, marker: DayMarker | None, event_usage: Callable[[], bool]) -> str:
    """What the LLM logs bill of a day, so that no call is billed by both sources.

    ``setting`` as a rule. But a day the LLM logs billed as ``streamed``, or a new day whose usage
    events were already applied, stays ``streamed`` when the setting turns to ``all``: its
    buffered calls may already be in the ledger through their events, and the events set aside
    after the switch are re-applied by redrive, which reads this scope. Going from ``all`` to
    ``streamed`` takes effect at once: the day's buffered calls leave the LLM-log rows, and their
    set-aside events can be redriven.
    """
    if setting != SCOPE_ALL:
        return setting
    if marker is not None and marker.scope == SCOPE_STREAMED:
        return SCOPE_STREAMED
    if marker is None and event_usage():
        return SCOPE_STREAMED
    return SCOPE_ALL


def bills_buffered_calls(marker: DayMarker | None, setting: str) -> bool:
    """Whether the LLM logs bill (or will bill) the buffered calls of the day of ``marker``, so that
    a usage event set aside as ``billed_by_llm_logs`` must stay set aside.

    A collected day says so by its scope (a day collected before scopes were recorded is taken to
    bill them: redriving could bill them twice, keeping them set aside cannot); a day not collected
    yet will be collected with ``setting``. A day's scope only ever moves from ``all`` to
    ``streamed`` (:func:`scope_of_day`), so an answer read once stays safe: at worst an event is
    kept set aside that a later run may apply.
    """
    if marker is None:
        return setting == SCOPE_ALL
    return marker.scope != SCOPE_STREAMED


def _failed(outcome: CollectOutcome, where: str, exc: ChargebackError) -> None:
    outcome.failed[where] = type(exc).__name__
    log_event(logger, LLM_LOG_DAY_FAILED, logging.ERROR, day=where, kind=type(exc).__name__, exc_info=exc)


def replace_day(store: LlmLogStore, day: date, totals: DayTotals, marker: DayMarker, outcome: CollectOutcome) -> None:
    """Make the day's stored rows equal ``totals``; nothing is written when they already are.

    Every transaction but the last marks the day incomplete, so the marker says ``marker`` only
    once every row is written.
    """
    wanted = {keys.llm_row_key(key): (key, counters) for key, counters in totals.rows.items()}
    unfinished = dataclasses.replace(marker, settled=False, complete=False)
    for _attempt in range(MAX_CONFLICT_RETRIES):
        state = store.read_day(day)
        changes = _changes(state.rows, wanted)
        if not changes and state.marker == marker:
            break
        step = MAX_ROWS_PER_COMMIT
        chunks = [changes[start : start + step] for start in range(0, len(changes), step)] or [[]]
        try:
            etag = state.etag
            for index, chunk in enumerate(chunks):
                etag = store.replace(day, etag, chunk, marker if index == len(chunks) - 1 else unfinished)
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


@dataclass(frozen=True, slots=True)
class MonthStatus:
    """Whether a month's streamed usage is all in the ledger, as a report states it."""

    status: str
    """``complete``, ``incomplete`` (some days could not be collected), ``off`` or ``not_configured``."""
    incomplete_days: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"status": self.status, "incomplete_days": list(self.incomplete_days)}


def month_status(store: LlmLogStore, period: str, now: datetime, lag_hours: int) -> MonthStatus:
    """Which begun days of ``period`` lack their streamed usage: never collected, cut short, or
    not read again since they settled."""
    markers = store.markers(period)
    missing = tuple(
        day.isoformat()
        for day in begun_days(period, now)
        if (marker := markers.get(day)) is None
        or not marker.complete
        or (not marker.settled and settled(day, now, lag_hours))
    )
    return MonthStatus("incomplete" if missing else "complete", missing)

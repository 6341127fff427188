"""Counts each call of the LLM logs once, in the window its first row falls in: the rule every source follows.

A call's rows share its ``CorrelationId``; an exchange split over several rows (rising
``SequenceNumber``) and a row delivered twice are one call. Its time and names are its first
row's (earliest time, then lowest sequence number), its subscription the one any row carries,
and each token count the largest any row carries, so counts repeated on every row and counts
on one row alone both come out once.

Collection reads the logs a window at a time (a UTC day, or a part of one when a day is too big
for one answer). A call belongs to exactly one window, the one holding its first row, so windows
add up without counting a call twice: the rows of a window are read with ``CALL_SPREAD`` either
side, enough to see every row of a call that starts inside it. The Log Analytics query
(``llm_log_rows.llm_log_usage_query``) applies the same rule in KQL; :func:`count_calls` applies
it to rows read one by one (the CSV export).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Protocol

from chargeback.domain.errors import MonitorError
from chargeback.domain.logs import LLM_LOG_ROW_REJECTED, log_event
from chargeback.domain.usage import UNKNOWN, ZERO, Counters, UsageKey
from chargeback.ingestion.llm_log_rows import (
    KIND_READ,
    KIND_REJECTED,
    KIND_USAGE,
    SCOPE_ALL,
    SCOPE_STREAMED,
    USAGE_COLUMNS,
    LlmLogRow,
    RejectedRow,
    identifier_problem,
    text_of,
    whole_count,
)

CALL_SPREAD = timedelta(hours=1)
"""How far apart the rows of one call may lie. API Management writes a call's LLM-log rows when
its answer ends, within seconds of each other; an hour is far beyond that."""

logger = logging.getLogger(__name__)


def in_scope(streamed: bool, scope: str) -> bool:
    """Whether the LLM logs bill a call: the usage events bill every call they do not."""
    return scope == SCOPE_ALL or (scope == SCOPE_STREAMED and streamed)


@dataclass(slots=True)
class WindowUsage:
    """What the LLM logs say about the calls first seen in a window, each counted once.

    ``rows`` holds the calls summed per usage key; a call whose subscription is not known yet
    is kept under an empty ``subscription_id`` (unattributed), never dropped.
    """

    rows: dict[UsageKey, Counters] = field(default_factory=dict)
    calls: int = 0
    rows_read: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    def add_calls(self, key: UsageKey, counters: Counters) -> None:
        self.rows[key] = self.rows.get(key, ZERO) + counters
        self.calls += counters.requests

    def reject(self, reason: str, rows: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + rows

    def add(self, other: WindowUsage) -> None:
        """Fold in another window's usage: windows never share a call, so their counts add."""
        for key, counters in other.rows.items():
            self.rows[key] = self.rows.get(key, ZERO) + counters
        self.calls += other.calls
        self.rows_read += other.rows_read
        for reason, rows in other.rejected.items():
            self.reject(reason, rows)


def call_counters(calls: int, prompt: int, completion: int, total: int) -> Counters:
    """What ``calls`` calls billed from the LLM logs add to their usage key."""
    return Counters(
        requests=calls,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        llm_log_requests=calls,
        llm_log_tokens=total,
    )


class LlmLogSource(Protocol):
    """Where the LLM logs come from: the Log Analytics workspace, or a CSV export of it."""

    def day_usage(self, day: date, scope: str) -> WindowUsage:
        """The calls in ``scope`` whose first row is timed on ``day`` (UTC), each counted once;
        ``MonitorError`` when the logs cannot give a complete answer."""
        ...


def usage_from_answer(records: Iterable[Mapping[str, object]], day: date, where: str) -> WindowUsage:
    """The usage query's answer (``USAGE_COLUMNS``) for a window of ``day``, checked row by row.

    A usage row whose names cannot be stored (the joined subscription is checked here; the query
    checked the rest) is rejected with its calls, and the rest of the window is kept. An answer
    that is not one this query gives is a ``MonitorError``: nothing of it is taken.
    """
    usage = WindowUsage()
    for index, record in enumerate(records):
        kind = record.get("Kind")
        if kind == KIND_READ:
            usage.rows_read += _number(record, "Rows", where)
        elif kind == KIND_REJECTED:
            reason, rows = text_of(record.get("Reason")), _number(record, "Rows", where)
            usage.reject(reason, rows)
            log_event(
                logger,
                LLM_LOG_ROW_REJECTED,
                logging.WARNING,
                where=where,
                reason=reason,
                rows=rows,
                sample=text_of(record.get("Sample")),
            )
        elif kind == KIND_USAGE:
            _add_usage_row(usage, record, day, f"{where} row {index}")
        else:
            raise MonitorError(f"the LLM-log usage answer has a row of unknown kind {str(kind)[:20]!r}")
    return usage


def _add_usage_row(usage: WindowUsage, record: Mapping[str, object], day: date, where: str) -> None:
    calls = _number(record, "Calls", where)
    names = {column: record.get(column) for column in USAGE_COLUMNS[1:5]}
    problem = identifier_problem(names)
    if problem is not None:
        usage.reject("invalid_field", calls)
        log_event(logger, LLM_LOG_ROW_REJECTED, logging.WARNING, where=where, reason="invalid_field", detail=problem)
        return
    subscription, model, deployment, operation = (text_of(value) for value in names.values())
    key = UsageKey(day, subscription, model or UNKNOWN, deployment or UNKNOWN, operation or UNKNOWN)
    prompt, completion, total = (_number(record, column, where) for column in USAGE_COLUMNS[6:9])
    usage.add_calls(key, call_counters(calls, prompt, completion, total))


def _number(record: Mapping[str, object], column: str, where: str) -> int:
    value = whole_count(record.get(column))
    if value is None:
        raise MonitorError(f"the LLM-log usage answer's {column} is not a whole number ({where})")
    return value


@dataclass(slots=True)
class _Call:
    first: LlmLogRow
    subscription_id: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


def count_calls(rows: Iterable[LlmLogRow | RejectedRow], start: datetime, end: datetime, scope: str) -> WindowUsage:
    """The calls in scope whose first row is timed in [start, end), from every row of
    [start - CALL_SPREAD, end + CALL_SPREAD); rows that cannot be billed are counted (and logged)
    by reason when timed inside the window."""
    usage = WindowUsage()
    calls: dict[str, _Call] = {}
    for row in rows:
        if isinstance(row, RejectedRow):
            if row.time is not None and start <= row.time < end and in_scope(row.streamed is not False, scope):
                usage.reject(row.reason)
                usage.rows_read += 1
                log_event(
                    logger, LLM_LOG_ROW_REJECTED, logging.WARNING, where=row.where, reason=row.reason, detail=row.detail
                )
            continue
        if not in_scope(row.streamed, scope):
            continue
        if start <= row.time < end:
            usage.rows_read += 1
        _fold(calls, row)
    for call in calls.values():
        first = call.first
        if start <= first.time < end:
            key = UsageKey(first.time.date(), call.subscription_id, first.model, first.deployment, first.operation)
            usage.add_calls(key, call_counters(1, call.prompt_tokens, call.completion_tokens, call.total_tokens))
    return usage


def _fold(calls: dict[str, _Call], row: LlmLogRow) -> None:
    call = calls.get(row.correlation_id)
    if call is None:
        calls[row.correlation_id] = _Call(
            row, row.subscription_id, row.prompt_tokens, row.completion_tokens, row.total_tokens
        )
        return
    if (row.time, row.sequence_number) < (call.first.time, call.first.sequence_number):
        call.first = row
    call.subscription_id = call.subscription_id or row.subscription_id
    call.prompt_tokens = max(call.prompt_tokens, row.prompt_tokens)
    call.completion_tokens = max(call.completion_tokens, row.completion_tokens)
    call.total_tokens = max(call.total_tokens, row.total_tokens)

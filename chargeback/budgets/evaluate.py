"""One evaluation of every budget: spend, forecast, alerts, enforcement, and the snapshot the API serves.

The timer runs it on ``BUDGET_SCHEDULE``. It first brings the months' LLM-log usage up to date
(a failure there is logged and flagged in the snapshot, and the evaluation goes on with what the
ledger holds), then, for the open month and, until its final report exists, the month before:

1. reads the month to date through the compact month view (:mod:`chargeback.budgets.reader`);
2. prices it with the report's engine (:mod:`chargeback.budgets.spend`);
3. records and logs each new threshold crossing and due forecast (:mod:`chargeback.budgets.alerts`);
4. for the month before, re-activates what this app suspended; for the open month, with
   enforcement on, suspends what exceeded ``suspend`` budgets cover (:mod:`chargeback.budgets.enforce`);
5. saves the month's snapshot, unless a later evaluation saved one first.

A budget file that cannot be used stops the evaluation before anything is done: it is logged
(``chargeback.budget.invalid``) and the API answers with the same error.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypedDict

from chargeback.billing.cost_centers import CostCenterMap
from chargeback.billing.prices import PriceSheet
from chargeback.budgets import enforce
from chargeback.budgets.alerts import BudgetStatus, record_alerts, status_of
from chargeback.budgets.definitions import Budget
from chargeback.budgets.document import budget_rows
from chargeback.budgets.gateway import GatewaySubscriptions, RetryPolicy
from chargeback.budgets.reader import MonthReader
from chargeback.budgets.records import BudgetStore, Stored, budget_key
from chargeback.budgets.spend import month_spend
from chargeback.domain import periods
from chargeback.domain.errors import BudgetFileError, ChargebackError, NotFoundError
from chargeback.domain.logs import BUDGET_EVALUATION, BUDGET_INVALID, log_event
from chargeback.observability import metrics

logger = logging.getLogger(__name__)

COLLECTED = "collected"
NOT_CONFIGURED = "not_configured"
FAILED = "failed"
MAX_SAVE_TRIES = 5


class BudgetSnapshot(TypedDict):
    """A month's budgets as one evaluation left them; ``GET /api/budgets/{period}`` serves the latest."""

    period: str
    currency: str
    evaluated_at: str
    closed: bool
    enforcement: str
    llm_logs: str
    breaker: bool
    budgets: list[dict[str, Any]]


class SnapshotStore(Protocol):
    """Where each month's latest snapshot is kept; the Blob adapter implements it."""

    def get(self, period: str) -> tuple[BudgetSnapshot, str] | None:
        """The snapshot and its ETag, or None."""
        ...

    def put(self, snapshot: BudgetSnapshot, etag: str | None) -> bool:
        """Write it if the stored one is still at ``etag`` (None: if there is none); False when it moved."""
        ...


@dataclass(frozen=True)
class BudgetContext:
    """Everything an evaluation reads and writes, wired by the runtime or by tests."""

    reader: MonthReader
    store: BudgetStore
    snapshots: SnapshotStore
    budgets: Callable[[PriceSheet], list[Budget]]
    """The budget file read against the price sheet; ``BudgetFileError`` when it cannot be used."""
    price_sheet: Callable[[], PriceSheet]
    cost_centers: Callable[[], CostCenterMap]
    gateway: Callable[[], GatewaySubscriptions] | None
    """The API Management subscriptions, or None when no instance is configured."""
    enforcement: bool
    max_suspensions: int
    grace_days: int
    is_final: Callable[[str], bool]
    """Whether a month's final report exists (its budgets are then no longer evaluated)."""
    policy: RetryPolicy = field(default_factory=RetryPolicy)


def months_to_evaluate(context: BudgetContext, now: datetime) -> list[str]:
    """The open month, preceded by the month before while it is in its grace period and not final."""
    current = periods.month_of(now)
    previous = periods.previous_month(current)
    if now < periods.month_end(previous) + timedelta(days=context.grace_days + 1) and not context.is_final(previous):
        return [previous, current]
    return [current]


def run(context: BudgetContext, now: datetime, prepare: Callable[[list[str]], object]) -> list[BudgetSnapshot]:
    """Bring the months' LLM-log usage up to date with ``prepare`` (non-fatal; None: no LLM-log source),
    then evaluate. A budget file that cannot be used stops it first: nothing is done, it is logged.
    An evaluation that fails (storage, the price sheet) is counted as ``failed``, then raised."""
    try:
        return _run(context, now, prepare)
    except ChargebackError:
        metrics.budget_evaluated("failed")
        raise


def _run(context: BudgetContext, now: datetime, prepare: Callable[[list[str]], object]) -> list[BudgetSnapshot]:
    sheet = context.price_sheet()
    try:
        budgets = context.budgets(sheet)
    except BudgetFileError as exc:
        log_event(logger, BUDGET_INVALID, logging.ERROR, file=exc.file, row=exc.row, problem=exc.problem, acted=False)
        metrics.budget_evaluated("invalid")
        return []
    months = months_to_evaluate(context, now)
    if not budgets:
        # Nothing to price: only what the month before left to re-activate, and an empty snapshot.
        return evaluate(context, now, budgets, sheet, months, llm_logs=NOT_CONFIGURED)
    try:
        llm_logs = NOT_CONFIGURED if prepare(months) is None else COLLECTED
    except ChargebackError as exc:
        llm_logs = FAILED
        log_event(logger, BUDGET_EVALUATION, logging.WARNING, llm_logs=FAILED, kind=type(exc).__name__, exc_info=exc)
    return evaluate(context, now, budgets, sheet, months, llm_logs=llm_logs)


@dataclass(frozen=True)
class _Evaluation:
    """One evaluation's fixed inputs."""

    context: BudgetContext
    now: datetime
    budgets: Sequence[Budget]
    sheet: PriceSheet
    cost_centers: CostCenterMap
    token: str
    enforcer: enforce.Enforcer | None


def evaluate(
    context: BudgetContext,
    now: datetime,
    budgets: Sequence[Budget],
    sheet: PriceSheet,
    months: Sequence[str],
    *,
    llm_logs: str,
) -> list[BudgetSnapshot]:
    """Evaluate ``budgets`` for ``months`` (the last is the open one); the snapshots saved."""
    token = uuid.uuid4().hex
    gateway = context.gateway() if context.gateway is not None else None
    enforcer = None
    if gateway is not None:
        enforcer = enforce.Enforcer(context.store, gateway, context.policy, context.max_suspensions, token, now)
    run = _Evaluation(context, now, budgets, sheet, context.cost_centers(), token, enforcer)
    current = months[-1]
    previous = periods.previous_month(current)
    if enforcer is not None and previous not in months:
        enforce.reactivate(enforcer, previous, current, context.store.read_period(previous))
    snapshots = []
    for period in months:
        statuses, records, tripped = _month(run, period)
        snapshot = BudgetSnapshot(
            period=period,
            currency=sheet.currency,
            evaluated_at=_iso(now),
            closed=now >= periods.month_end(period),
            enforcement="on" if context.enforcement else "off",
            llm_logs=llm_logs,
            breaker=tripped,
            budgets=budget_rows(statuses, records, run.cost_centers),
        )
        save_newer(context.snapshots, snapshot)
        snapshots.append(snapshot)
        _log_evaluation(snapshot, context.reader.rows_read)
    return snapshots


def _month(run: _Evaluation, period: str) -> tuple[list[BudgetStatus], dict[str, Stored], bool]:
    context, now = run.context, run.now
    statuses: list[BudgetStatus] = []
    if run.budgets:
        spend = month_spend(context.reader.days(period, now), run.sheet, run.cost_centers, period, now)
        statuses = [status_of(budget, spend) for budget in run.budgets]
    records = context.store.read_period(period)
    for status in statuses:
        key = budget_key(status.budget.scope, status.budget.id)
        stored = record_alerts(context.store, status, records.get(key), now, run.token)
        if stored is not None:
            records[key] = stored
    tripped = False
    if run.enforcer is not None and period != periods.month_of(now):
        enforce.reactivate(run.enforcer, period, periods.next_month(period), records)
    elif run.enforcer is not None and context.enforcement:
        tripped = enforce.enforce(run.enforcer, period, enforce.targets(statuses, run.cost_centers), records)
    return statuses, records, tripped


def latest(context: BudgetContext, period: str) -> BudgetSnapshot:
    """``period``'s latest snapshot; ``BudgetFileError`` while the budget file cannot be used,
    ``NotFoundError`` before the month's first evaluation."""
    periods.parse_month(period)
    context.budgets(context.price_sheet())
    found = context.snapshots.get(period)
    if found is None:
        raise NotFoundError(f"the budgets of {period} have not been evaluated")
    return found[0]


def save_newer(store: SnapshotStore, snapshot: BudgetSnapshot) -> bool:
    """Keep ``snapshot`` unless an evaluation of a later moment saved one; conditional, never check-then-write."""
    for _ in range(MAX_SAVE_TRIES):
        found = store.get(snapshot["period"])
        if found is not None and found[0]["evaluated_at"] > snapshot["evaluated_at"]:
            return False
        if store.put(snapshot, None if found is None else found[1]):
            return True
    return False


def _log_evaluation(snapshot: BudgetSnapshot, rows_read: int) -> None:
    counts = Counter(str(row["status"]) for row in snapshot["budgets"])
    log_event(
        logger,
        BUDGET_EVALUATION,
        period=snapshot["period"],
        budgets=len(snapshot["budgets"]),
        statuses=dict(sorted(counts.items())),
        breaker=snapshot["breaker"],
        llm_logs=snapshot["llm_logs"],
        enforcement=snapshot["enforcement"],
        ledger_rows_read=rows_read,
    )
    metrics.budget_evaluated("done")


def _iso(moment: datetime) -> str:
    """Fixed width, so that later moments sort later as text."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")

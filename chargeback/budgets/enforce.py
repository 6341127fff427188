"""Decides which subscriptions to suspend, records each decision before acting, and lifts them next month.

Per month and subscription there is one enforcement record. A suspension is *decided* by
creating it (claimed by the evaluation that creates it), *done* through the gateway, then the
record says how it ended: ``suspended`` (by this app), ``left_alone`` (someone else holds the
subscription suspended, or in another state), or ``suspend_failed`` (tried again by the next
evaluation). Two evaluations racing create the record once, so one of them acts; one that dies
after deciding leaves a claim that expires, and the gateway's state (suspended with this app's
comment) tells the next one that the work was done, so nothing is suspended twice.

A breaker stands in front: more suspensions due in one evaluation than ``max_suspensions`` means
something is wrong (a price sheet error, a bad budget file), so none is made and
``chargeback.budget.breaker`` is logged (once per month and set of subscriptions), which the alert
rule mails.

In the first evaluations of a month, the subscriptions this app suspended the month before are
re-activated, each only if it is still suspended with the comment this app left; anything else
is left alone and logged. That includes the suspensions whose ending was never known: a record
still ``decided`` (its evaluation died after the PATCH, perhaps) or ``suspend_failed`` (the last
try timed out, perhaps after ARM applied it). The gateway's state says whether they happened.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from chargeback.billing.cost_centers import CostCenterMap
from chargeback.budgets import gateway
from chargeback.budgets.alerts import EXCEEDED, BudgetStatus
from chargeback.budgets.definitions import SUBSCRIPTION, SUSPEND
from chargeback.budgets.gateway import GatewaySubscriptions, RetryPolicy
from chargeback.budgets.records import (
    BudgetStore,
    Document,
    Stored,
    breaker_key,
    change,
    claim,
    claim_expired,
    held_by,
    subscription_key,
)
from chargeback.domain.logs import BUDGET_BREAKER, BUDGET_REACTIVATE, BUDGET_SUSPEND, log_event
from chargeback.observability import metrics

logger = logging.getLogger(__name__)

DECIDED = "decided"
SUSPENDED = "suspended"
SUSPEND_FAILED = "suspend_failed"
LEFT_ALONE = "left_alone"
REACTIVATED = "reactivated"


@dataclass(frozen=True)
class Enforcer:
    """One evaluation's means to act: the records, the gateway, the limits, its claim token and clock."""

    store: BudgetStore
    gateway: GatewaySubscriptions
    policy: RetryPolicy
    max_suspensions: int
    token: str
    now: datetime


def targets(statuses: Sequence[BudgetStatus], cost_centers: CostCenterMap) -> dict[str, BudgetStatus]:
    """Each subscription an exceeded ``suspend`` budget covers, with that budget (its own budget first)."""
    found: dict[str, BudgetStatus] = {}
    ordered = sorted(statuses, key=lambda s: (s.budget.scope != SUBSCRIPTION, s.budget.scope, s.budget.id))
    for status in ordered:
        if status.budget.action != SUSPEND or status.status != EXCEEDED:
            continue
        if status.budget.scope == SUBSCRIPTION:
            covered = [status.budget.id]
        else:
            covered = sorted(s for s, c in cost_centers.entries.items() if c.cost_center == status.budget.id)
        for subscription in covered:
            found.setdefault(subscription, status)
    return found


def due(wanted: Mapping[str, BudgetStatus], records: Mapping[str, Stored], now: datetime) -> list[str]:
    """The subscriptions this evaluation must act on: undecided, failed before, or abandoned mid-way."""
    found = []
    for subscription in sorted(wanted):
        record = records.get(subscription_key(subscription))
        if record is None:
            found.append(subscription)
            continue
        document = record.document
        if document["state"] == SUSPEND_FAILED or (document["state"] == DECIDED and claim_expired(document, now)):
            found.append(subscription)
    return found


def enforce(enforcer: Enforcer, period: str, wanted: Mapping[str, BudgetStatus], records: dict[str, Stored]) -> bool:
    """Suspend what is due, unless the breaker trips; records are updated in place. True when it tripped."""
    pending = due(wanted, records, enforcer.now)
    if len(pending) > enforcer.max_suspensions:
        _trip(enforcer, period, pending)
        return True
    for subscription in pending:
        key = subscription_key(subscription)
        stored = _suspend(enforcer, period, subscription, wanted[subscription], records.get(key))
        if stored is not None:
            records[key] = stored
    return False


def comment_for(status: BudgetStatus) -> str:
    """The ``stateComment`` a suspension leaves: the budget, the month and the spend that decided it."""
    budget = status.budget
    return (
        f"Suspended by chargeback budget {budget.scope} {budget.id} for {status.period}: "
        f"{status.money(status.spent)} of {status.money(status.amount)} {budget.currency} spent"
    )


def reactivation_comment(period: str, next_period: str) -> str:
    return f"Re-activated by chargeback budgets for {next_period} (suspended for {period})"


def _suspend(
    enforcer: Enforcer, period: str, subscription: str, status: BudgetStatus, known: Stored | None
) -> Stored | None:
    now, token = enforcer.now, enforcer.token

    def decide(document: Document | None) -> Document | None:
        if document is None:
            return {
                "subscription_id": subscription,
                "budget": {"scope": status.budget.scope, "id": status.budget.id},
                "state": DECIDED,
                "comment": comment_for(status),
                "decided_at": now.isoformat(),
                "attempts": 0,
                **claim(now, token),
            }
        retry = document["state"] == SUSPEND_FAILED
        if retry or (document["state"] == DECIDED and claim_expired(document, now)):
            return {**document, "state": DECIDED, **claim(now, token)}
        return None

    stored, _ = change(enforcer.store, period, subscription_key(subscription), known, decide)
    if stored is None or not held_by(stored.document, token):
        return stored  # another evaluation holds it
    attempt = gateway.suspend(enforcer.gateway, subscription, str(stored.document["comment"]), enforcer.policy)
    ending = {gateway.DONE: SUSPENDED, gateway.OTHERS: LEFT_ALONE, gateway.FAILED: SUSPEND_FAILED}[attempt.result]
    log_event(
        logger,
        BUDGET_SUSPEND,
        logging.ERROR if ending == SUSPEND_FAILED else logging.WARNING,
        period=period,
        subscription_id=subscription,
        scope=status.budget.scope,
        id=status.budget.id,
        outcome=ending,
        tries=attempt.tries,
        gateway_state=attempt.state,
        detail=attempt.detail,
    )
    metrics.budget_action("suspend", "failed" if ending == SUSPEND_FAILED else ending)
    return _finish(enforcer, period, subscription, stored, ending=ending, attempt=attempt)


def _finish(
    enforcer: Enforcer, period: str, subscription: str, stored: Stored, *, ending: str, attempt: gateway.Attempt
) -> Stored | None:
    def record(document: Document | None) -> Document | None:
        if document is None or not held_by(document, enforcer.token):
            return None
        return {
            **document,
            "state": ending,
            "attempts": int(document.get("attempts", 0)) + attempt.tries,
            "detail": attempt.detail,
            "gateway_state": attempt.state,
            "updated_at": enforcer.now.isoformat(),
            "claimed_by": None,
            "claimed_until": None,
        }

    return change(enforcer.store, period, subscription_key(subscription), stored, record)[0]


def _trip(enforcer: Enforcer, period: str, pending: list[str]) -> None:
    """Record the trip once per month and set of subscriptions; the one that records it logs it."""
    fingerprint = hashlib.sha256("\n".join(pending).encode()).hexdigest()[:32]
    document = {"subscriptions": pending, "at": enforcer.now.isoformat(), "limit": enforcer.max_suspensions}
    _, wrote = change(enforcer.store, period, breaker_key(fingerprint), None, lambda found: None if found else document)
    if wrote:
        log_event(
            logger,
            BUDGET_BREAKER,
            logging.ERROR,
            period=period,
            due=len(pending),
            limit=enforcer.max_suspensions,
            subscriptions=pending[:20],
        )
        metrics.budget_action("breaker", "tripped")


# The states in which a subscription may be suspended by this app: done, or perhaps done.
MAY_BE_SUSPENDED = frozenset({SUSPENDED, DECIDED, SUSPEND_FAILED})


def reactivate(enforcer: Enforcer, period: str, next_period: str, records: dict[str, Stored]) -> None:
    """Re-activate what this app suspended in ``period`` and still holds so; records are updated in place."""
    for key, record in sorted(records.items()):
        document = record.document
        if document.get("state") not in MAY_BE_SUSPENDED or "subscription_id" not in document:
            continue
        if not claim_expired(document, enforcer.now):
            continue
        stored = _reactivate(enforcer, period, next_period, key, record)
        if stored is not None:
            records[key] = stored


def _reactivate(enforcer: Enforcer, period: str, next_period: str, key: str, known: Stored) -> Stored | None:
    now, token = enforcer.now, enforcer.token

    def take(document: Document | None) -> Document | None:
        if document is None or document.get("state") not in MAY_BE_SUSPENDED or not claim_expired(document, now):
            return None
        return {**document, **claim(now, token)}

    stored, _ = change(enforcer.store, period, key, known, take)
    if stored is None or not held_by(stored.document, token) or stored.document.get("state") not in MAY_BE_SUSPENDED:
        return stored
    subscription = str(stored.document["subscription_id"])
    comment = reactivation_comment(period, next_period)
    left = str(stored.document["comment"])
    attempt = gateway.reactivate(enforcer.gateway, subscription, left, comment, enforcer.policy)
    # A failed try keeps the state it found, so the next evaluation tries again.
    ending = {gateway.DONE: REACTIVATED, gateway.OTHERS: LEFT_ALONE, gateway.FAILED: str(stored.document["state"])}[
        attempt.result
    ]
    log_event(
        logger,
        BUDGET_REACTIVATE,
        logging.ERROR if attempt.result == gateway.FAILED else logging.WARNING,
        period=period,
        subscription_id=subscription,
        outcome=ending if attempt.result != gateway.FAILED else "reactivate_failed",
        tries=attempt.tries,
        gateway_state=attempt.state,
        detail=attempt.detail,
    )
    metrics.budget_action("reactivate", "failed" if attempt.result == gateway.FAILED else ending)
    return _finish(enforcer, period, subscription, stored, ending=ending, attempt=attempt)

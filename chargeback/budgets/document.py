"""The budgets of a month as ``GET /api/budgets/{period}`` answers them, and cut to what a caller may see."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from chargeback.billing.cost_centers import CostCenterMap
from chargeback.budgets.alerts import EXCEEDED, BudgetStatus, crossings_of
from chargeback.budgets.definitions import COST_CENTER, SUBSCRIPTION, SUSPEND
from chargeback.budgets.enforce import DECIDED, LEFT_ALONE, REACTIVATED, SUSPEND_FAILED, SUSPENDED
from chargeback.budgets.gateway import SUSPENDED as GATEWAY_SUSPENDED
from chargeback.budgets.records import Stored, budget_key, subscription_key

NONE = "none"
ALERTED = "alerted"
WOULD_SUSPEND = "would_suspend"
ACTIONS = (NONE, ALERTED, WOULD_SUSPEND, SUSPENDED, SUSPEND_FAILED, REACTIVATED)
"""What has been done about a budget, as the API says it."""


def budget_rows(
    statuses: Sequence[BudgetStatus], records: Mapping[str, Stored], cost_centers: CostCenterMap
) -> list[dict[str, Any]]:
    """One row per budget: amount, spent, forecast, percent, status, crossings and what was done."""
    rows = []
    for status in statuses:
        budget = status.budget
        enforcement = _enforcement(status, records, cost_centers)
        row: dict[str, Any] = {
            "scope": budget.scope,
            "id": budget.id,
            "amount": status.money(status.amount),
            "spent": status.money(status.spent),
            "forecast": status.money(status.forecast),
            "percent": str(status.percent),
            "status": status.status,
            "thresholds": list(budget.thresholds),
            "thresholds_crossed": crossings_of(records.get(budget_key(budget.scope, budget.id))),
            "action": _action(status, enforcement),
            "on_exceeded": budget.action,
        }
        if enforcement:
            row["subscriptions"] = enforcement
        rows.append(row)
    return rows


def _covered(status: BudgetStatus, cost_centers: CostCenterMap) -> list[str]:
    if status.budget.scope == SUBSCRIPTION:
        return [status.budget.id]
    return sorted(s for s, center in cost_centers.entries.items() if center.cost_center == status.budget.id)


def _enforcement(
    status: BudgetStatus, records: Mapping[str, Stored], cost_centers: CostCenterMap
) -> list[dict[str, Any]]:
    """The enforcement records of the budget's subscriptions, as the API shows them."""
    if status.budget.action != SUSPEND:
        return []
    found = []
    for subscription in _covered(status, cost_centers):
        record = records.get(subscription_key(subscription))
        if record is None:
            continue
        document = record.document
        found.append(
            {
                "subscription_id": subscription,
                "state": document["state"],
                "gateway_state": document.get("gateway_state"),
                "detail": document.get("detail"),
                "updated_at": _z(str(document.get("updated_at") or document.get("decided_at"))),
            }
        )
    return found


def _z(iso: str) -> str:
    return datetime.fromisoformat(iso).isoformat().replace("+00:00", "Z")


def _action(status: BudgetStatus, enforcement: Iterable[Mapping[str, Any]]) -> str:
    states = [entry["state"] for entry in enforcement]
    suspended_elsewhere = any(e["state"] == LEFT_ALONE and e["gateway_state"] == GATEWAY_SUSPENDED for e in enforcement)
    if SUSPEND_FAILED in states:
        return SUSPEND_FAILED
    if SUSPENDED in states or suspended_elsewhere:
        return SUSPENDED
    if REACTIVATED in states:
        return REACTIVATED
    if status.budget.action == SUSPEND and (status.status == EXCEEDED or DECIDED in states):
        return WOULD_SUSPEND
    return ALERTED if status.crossed else NONE


def report_rows(snapshot: Mapping[str, Any] | None, cost_centers: CostCenterMap) -> list[dict[str, Any]]:
    """A month's budgets as its report shows them: each with its cost center and when it was evaluated."""
    if snapshot is None:
        return []
    rows = []
    for row in snapshot["budgets"]:
        center = row["id"] if row["scope"] == COST_CENTER else cost_centers.lookup(str(row["id"])).cost_center
        rows.append({**row, "cost_center": center, "evaluated_at": snapshot["evaluated_at"]})
    return rows


def visible_rows(
    rows: Iterable[Mapping[str, Any]], cost_centers: CostCenterMap, readable: frozenset[str] | None
) -> list[Mapping[str, Any]]:
    """The rows a caller may read: all (``readable`` None), or those of its cost centers and their subscriptions."""
    if readable is None:
        return list(rows)
    kept = []
    for row in rows:
        center = row["id"] if row["scope"] == COST_CENTER else cost_centers.lookup(str(row["id"])).cost_center
        if center in readable:
            kept.append(row)
    return kept

"""Builds each answer for the caller's scope: a team's usage, listing and files hold its lines only."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import pandas as pd

from chargeback.access.scope import Scope
from chargeback.billing.cost_centers import CostCenterMap
from chargeback.budgets.document import visible_rows
from chargeback.budgets.evaluate import BudgetSnapshot
from chargeback.domain.usage import UsageRow
from chargeback.ingestion.usage_view import frame_document
from chargeback.reports import service
from chargeback.reports.build import from_bundle


def usage(
    scope: Scope,
    period: str,
    totals: pd.DataFrame,
    dead_letters: int,
    cost_centers: CostCenterMap,
    *,
    unattributed: Iterable[UsageRow] = (),
) -> dict[str, Any]:
    """``GET /api/usage``: everything, or the subscriptions the map puts in the caller's cost centers.

    ``totals`` holds one row per (subscription, model, deployment) with every counter. Dead letters
    and LLM-log usage not yet attributed belong to no cost center, so a team's document does not
    count them.
    """
    if scope.reads_everything:
        return frame_document(period, totals, dead_letters, unattributed=unattributed)
    centers = cost_centers.assign(totals["subscription_id"].astype(str))["cost_center"]
    mine = totals[centers.isin(sorted(scope.cost_centers)).to_numpy()]
    document = frame_document(period, mine, 0)
    document["dead_letters"] = None
    document["scope"] = {"cost_centers": sorted(scope.cost_centers)}
    return document


def report_list(scope: Scope, context: service.ReportContext) -> dict[str, Any]:
    """``GET /api/reports``: a team sees each period's total of its own cost centers, not the grand total."""
    listing = service.list_reports(context)
    if scope.reads_everything:
        return {"reports": listing}
    for item in listing:
        costs = _cost_by_center(context, str(item["period"]), str(item["generation"]))
        item["grand_total"] = str(sum((costs.get(center, Decimal(0)) for center in scope.cost_centers), Decimal(0)))
    return {"reports": listing, "scope": {"cost_centers": sorted(scope.cost_centers)}}


def budgets(scope: Scope, snapshot: BudgetSnapshot, cost_centers: CostCenterMap) -> dict[str, Any]:
    """``GET /api/budgets``: every budget, or those of the caller's cost centers and of their subscriptions."""
    readable = None if scope.reads_everything else scope.cost_centers
    document: dict[str, Any] = {
        "period": snapshot["period"],
        "currency": snapshot["currency"],
        "evaluated_at": snapshot["evaluated_at"],
        "closed": snapshot["closed"],
        "enforcement": snapshot["enforcement"],
        "llm_logs": snapshot["llm_logs"],
        "budgets": visible_rows(snapshot["budgets"], cost_centers, readable),
    }
    if readable is None:
        document["breaker"] = snapshot["breaker"]
    else:
        document["scope"] = {"cost_centers": sorted(readable)}
    return document


_totals_lock = threading.Lock()
_totals: dict[tuple[str, str], dict[str, Decimal]] = {}
_MAX_CACHED = 64


def _cost_by_center(context: service.ReportContext, period: str, generation: str) -> dict[str, Decimal]:
    """A generation's cost per cost center, read from its bundle once per process and generation."""
    key = (period, generation)
    with _totals_lock:
        if key in _totals:
            return _totals[key]
    frame = from_bundle(context.reports.get_file(period, generation, service.BUNDLE)).by_cost_center
    costs: dict[str, Decimal] = {}
    for center, cost in zip(frame["cost_center"].astype(str), frame["cost"], strict=True):
        costs[center] = costs.get(center, Decimal(0)) + Decimal(cost)
    with _totals_lock:
        if len(_totals) >= _MAX_CACHED:
            _totals.pop(next(iter(_totals)))
        _totals[key] = costs
    return costs

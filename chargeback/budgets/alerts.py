"""Where each budget stands, and each threshold crossing recorded and logged once a month.

A crossing is first recorded, claimed by the evaluation that records it, then logged as
``chargeback.budget.threshold {json}`` (a forecast that reaches the amount before the spend
does, once a month, as ``chargeback.budget.forecast``), then marked alerted. Azure Monitor's
scheduled query rule turns those lines into mail; the app sends none. Of two evaluations racing,
one records the crossing and logs it. If storage fails after the record was written but before
its answer came back, the crossing stays unalerted and its claim expires: the next evaluation
takes it over and logs it, so no alert is lost (at worst, when the mark itself fails, one is
logged twice).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from chargeback.budgets.definitions import Budget
from chargeback.budgets.records import (
    BudgetStore,
    Document,
    Stored,
    budget_key,
    change,
    claim,
    claim_expired,
    held_by,
)
from chargeback.budgets.spend import MonthSpend, crossed, percent, spend_of
from chargeback.domain.logs import BUDGET_FORECAST, BUDGET_THRESHOLD, log_event
from chargeback.observability import metrics

logger = logging.getLogger(__name__)

OK = "ok"
WARNING = "warning"
EXCEEDED = "exceeded"
FORECAST = "forecast"


@dataclass(frozen=True)
class BudgetStatus:
    """A budget against its month's spend at one evaluation (money in minor units)."""

    budget: Budget
    period: str
    spent: int
    forecast: int
    amount: int
    crossed: tuple[int, ...]
    minor_units: int

    @property
    def status(self) -> str:
        if self.spent >= self.amount:
            return EXCEEDED
        return WARNING if self.crossed else OK

    @property
    def forecast_due(self) -> bool:
        """The forecast reaches the amount while the spend has not yet."""
        return self.forecast >= self.amount > self.spent

    @property
    def percent(self) -> Decimal:
        return percent(self.spent, self.amount)

    def money(self, minor: int) -> str:
        return str(Decimal(minor).scaleb(-self.minor_units))

    def facts(self) -> dict[str, object]:
        """What an alert line says about the budget."""
        return {
            "period": self.period,
            "scope": self.budget.scope,
            "id": self.budget.id,
            "spent": self.money(self.spent),
            "amount": self.money(self.amount),
            "forecast": self.money(self.forecast),
            "percent": str(self.percent),
            "currency": self.budget.currency,
            "action": self.budget.action,
        }


def status_of(budget: Budget, spend: MonthSpend) -> BudgetStatus:
    amount = int(budget.amount.scaleb(spend.minor_units))
    found = spend_of(spend, budget.scope, budget.id)
    return BudgetStatus(
        budget=budget,
        period=spend.period,
        spent=found.spent,
        forecast=found.forecast,
        amount=amount,
        crossed=tuple(crossed(found.spent, amount, budget.thresholds)),
        minor_units=spend.minor_units,
    )


def record_alerts(
    store: BudgetStore, status: BudgetStatus, known: Stored | None, now: datetime, token: str
) -> Stored | None:
    """Record the budget's new crossings (and a due forecast), log the ones this evaluation claimed, mark them."""
    budget = status.budget
    key = budget_key(budget.scope, budget.id)
    due = [str(threshold) for threshold in status.crossed] + ([FORECAST] if status.forecast_due else [])
    if not due and known is None:
        return None
    stored, _ = change(store, status.period, key, known, lambda found: _claim_due(found, status, due, now, token))
    if stored is None:
        return None
    # What this evaluation claimed, whether its write's answer came back or storage applied it
    # and the answer was lost (the claim then carries this evaluation's token all the same).
    entries = stored.document["crossings"]
    mine = [name for name, entry in entries.items() if held_by(entry, token) and not entry["alerted"]]
    if not mine:
        return stored
    for name in mine:
        _log(status, name)
    return change(store, status.period, key, stored, lambda found: _mark(found, mine, token))[0]


def _claim_due(
    document: Document | None, status: BudgetStatus, due: list[str], now: datetime, token: str
) -> Document | None:
    """The record with each due crossing added, or taken over when its claim expired unalerted; None if unchanged."""
    document = document or {"scope": status.budget.scope, "id": status.budget.id, "crossings": {}}
    entries = document["crossings"]
    changed = False
    for name in due:
        entry = entries.get(name)
        if entry is None:
            entries[name] = {"at": now.isoformat(), "alerted": False, **claim(now, token)}
            changed = True
        elif not entry["alerted"] and claim_expired(entry, now):
            entry.update(claim(now, token))
            changed = True
    return document if changed else None


def _mark(document: Document | None, mine: list[str], token: str) -> Document | None:
    """The record with the crossings this evaluation logged marked alerted; None when none is still its own."""
    if document is None:
        return None
    entries = [document["crossings"][name] for name in mine if name in document["crossings"]]
    ours = [entry for entry in entries if held_by(entry, token) and not entry["alerted"]]
    for entry in ours:
        entry["alerted"] = True
    return document if ours else None


def _log(status: BudgetStatus, name: str) -> None:
    if name == FORECAST:
        log_event(logger, BUDGET_FORECAST, logging.WARNING, **status.facts())
    else:
        log_event(logger, BUDGET_THRESHOLD, logging.WARNING, threshold=int(name), **status.facts())
    metrics.budget_threshold_crossed(name)


def crossings_of(record: Stored | None) -> list[dict[str, object]]:
    """The thresholds a budget's record holds, ascending, each with when it was first recorded."""
    if record is None:
        return []
    entries = record.document.get("crossings", {})
    found = [(int(name), str(entry["at"])) for name, entry in entries.items() if name != FORECAST]
    return [{"threshold": threshold, "at": _z(at)} for threshold, at in sorted(found)]


def _z(iso: str) -> str:
    return datetime.fromisoformat(iso).isoformat().replace("+00:00", "Z")

"""Compares the ledger's token totals with Azure Monitor's, per subscription, and judges each."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

MATCHED = "matched"
LEDGER_SHORT = "ledger_short"
MONITOR_SHORT = "monitor_short"
ONLY_IN_LEDGER = "only_in_ledger"
ONLY_IN_MONITOR = "only_in_monitor"
STATUSES = (MATCHED, LEDGER_SHORT, MONITOR_SHORT, ONLY_IN_LEDGER, ONLY_IN_MONITOR)


@dataclass(frozen=True, slots=True)
class ReconciliationLine:
    """One subscription's ledger and monitor totals for the judged part of a period."""

    period: str
    subscription_id: str
    ledger_tokens: int
    monitor_tokens: int
    delta_tokens: int
    """monitor_tokens - ledger_tokens: positive when the event path lost usage."""
    delta_percent: Decimal | None
    """delta relative to the monitor total, None when the monitor saw nothing."""
    status: str

"""The report as data: its priced views, and the manifest that describes one stored generation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, NotRequired, TypedDict

import pandas as pd

from chargeback.reports.month_view import DayRecord

DEFAULT_INVOICE_ISSUER = "AI gateway platform"
"""The platform team running the gateway: provider and invoice issuer of the chargeback."""

DRAFT = "draft"
FINAL = "final"

BUDGET_COLUMNS = (
    "scope",
    "id",
    "cost_center",
    "amount",
    "spent",
    "forecast",
    "percent",
    "status",
    "action",
    "evaluated_at",
)
"""The budgets a report shows: the latest evaluation of its month, money as decimal text."""


def no_budgets() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series([], dtype=object) for name in BUDGET_COLUMNS})


@dataclass(frozen=True, eq=False)
class Report:
    """A period's chargeback as pandas views, ready to render in any registered format."""

    period: str
    currency: str
    minor_units: int
    generated_at: datetime
    lines: pd.DataFrame
    """One row per (charge category, adjusted period, subscription, model, deployment; a correction
    also per cost center, as a re-mapping moves cost from one to another)."""
    by_cost_center: pd.DataFrame
    by_subscription: pd.DataFrame
    daily: pd.DataFrame
    reconciliation: pd.DataFrame
    unallocated: pd.DataFrame
    totals: Mapping[str, Any]
    line_details: pd.DataFrame = field(repr=False)
    """Aligned with ``lines``: ``rates_applied`` and ``cost_minor`` (the cost in minor units)."""
    invoice_issuer: str = DEFAULT_INVOICE_ISSUER
    provisioned: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    """Per provisioned deployment: units, rates, hours billed, cost, what its users shared and
    what stayed idle (billed to ``unallocated``), and the requests and tokens it served."""
    budgets: pd.DataFrame = field(default_factory=no_budgets, repr=False)
    """The month's budgets as last evaluated (:data:`BUDGET_COLUMNS`); shown on the page, not billed."""

    @property
    def grand_total(self) -> Decimal:
        """The sum of every line's cost, exactly."""
        total = self.totals["cost"]
        assert isinstance(total, Decimal)  # noqa: S101 - built that way
        return total

    @property
    def views(self) -> dict[str, pd.DataFrame]:
        return {
            "lines": self.lines,
            "by_cost_center": self.by_cost_center,
            "by_subscription": self.by_subscription,
            "daily": self.daily,
            "reconciliation": self.reconciliation,
            "unallocated": self.unallocated,
            "provisioned": self.provisioned,
        }

    def row_counts(self) -> dict[str, int]:
        """Rows per view, for a manifest."""
        return {name: len(view) for name, view in self.views.items()}


class FileEntry(TypedDict):
    """One file of a generation: its format, blob name, type, size and content hash."""

    format: str
    name: str
    content_type: str
    bytes: int
    sha256: str


class ReconciliationSummary(TypedDict, total=False):
    """How the period's reconciliation with Azure Monitor went, without any internal detail."""

    window: list[str] | None
    status: str
    detail: str
    findings: dict[str, int]


class CorrectionRef(TypedDict):
    """One correction a generation bills: the final month it corrects and the correction's id."""

    period: str
    id: str


class LedgerView(TypedDict):
    days: list[DayRecord]


class Manifest(TypedDict):
    """What one generation of a period's report holds; the pointer blobs store it as JSON."""

    period: str
    status: str
    generation: str
    generated_at: str
    final_after: str
    currency: str
    grand_total: str
    totals: dict[str, Any]
    row_counts: dict[str, int]
    reconciliation: ReconciliationSummary
    adjusted_periods: list[str]
    corrections: NotRequired[list[CorrectionRef]]
    """The corrections of earlier final months this generation bills (a final bills them once)."""
    unallocated_subscriptions: list[str]
    files: list[FileEntry]
    ledger_view: NotRequired[LedgerView]
    """How the generation read the ledger: which days from compacted files (as of when), which live."""
    streamed_usage: NotRequired[dict[str, Any]]
    """Whether the streamed usage (the LLM logs) of the period was all in the ledger: ``status``
    (``complete``, ``incomplete``, ``off``, ``not_configured``) and the ``incomplete_days``."""
    view: NotRequired[dict[str, Any]]
    """Only on a file rebuilt for a narrower audience: the subscription and cost centers it shows."""

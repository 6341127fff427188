"""Scenario 6: what a team's view of a large month costs per request, against the stored file.

A team's download is not a stored file: the report is reloaded from the generation's bundle,
cut to the team's cost centers and rendered. This measures that path as the HTTP function runs
it (``service.download`` with a scope), **from a report store in memory**: the Blob read of the
bundle is not included (on Azurite it adds the transfer of the ``bundle_bytes`` shown).

``python -m benchmarks.access [subscriptions models days cost_centers]``
"""

from __future__ import annotations

import hashlib
import json
import resource
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchmarks.reports import PERIOD, ledger_frame
from chargeback.access import views
from chargeback.access.scope import Level, Scope
from chargeback.billing.cost_centers import CostCenter, CostCenterMap
from chargeback.billing.prices import load_price_sheet
from chargeback.domain.errors import ConfigurationError, NotFoundError
from chargeback.reports import formats, service
from chargeback.reports.build import build_report, to_bundle
from chargeback.reports.formats import FORMATS
from chargeback.reports.model import DRAFT

ROOT = Path(__file__).resolve().parent.parent
GENERATION = "benchmark"


class MemoryReports:
    """A report store in memory: the shortcut this scenario starts from (no Blob Storage)."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.pointers: dict[tuple[str, str], Any] = {}

    def put_file(
        self, period: str, generation: str, name: str, data: bytes, content_type: str, *, if_absent: bool = False
    ) -> None:
        if not (if_absent and (period, generation, name) in self.files):
            self.files[(period, generation, name)] = data

    def link(self, period: str, generation: str, name: str, filename: str, content_type: str) -> str | None:
        return None

    def get_file(self, period: str, generation: str, name: str) -> bytes:
        try:
            return self.files[(period, generation, name)]
        except KeyError:
            raise NotFoundError(name) from None

    def pointer(self, period: str, kind: str) -> tuple[Any, str] | None:
        found = self.pointers.get((period, kind))
        return None if found is None else (found, "etag")

    def commit(self, period: str, kind: str, manifest: Any, etag: str | None) -> None:
        self.pointers[(period, kind)] = manifest

    def periods(self) -> list[str]:
        return sorted({period for period, _ in self.pointers})

    def generations(self, period: str, older_than: timedelta) -> list[str]:
        return []

    def discard(self, period: str, generation: str) -> None:
        """Nothing to clean up in memory."""


def _unused() -> Any:
    raise ConfigurationError("not used by downloads")


def cost_center_map(subscriptions: int, cost_centers: int) -> CostCenterMap:
    """Subscriptions dealt round-robin to ``cost_centers`` cost centers."""
    return CostCenterMap(
        {f"sub-{i:05d}": CostCenter(f"CC-{i % cost_centers:04d}", "unit", "") for i in range(subscriptions)}
    )


def stored(subscriptions: int, models: int, days: int, cost_centers: int) -> tuple[service.ReportContext, int]:
    """A generated month in the in-memory store: every format, the page and the bundle."""
    report = build_report(
        PERIOD,
        ledger_frame(subscriptions, models, days),
        load_price_sheet(ROOT / "config" / "price-sheet.json"),
        cost_center_map(subscriptions, cost_centers),
    )
    store = MemoryReports()
    manifest: dict[str, Any] = {
        "period": PERIOD,
        "status": "draft",
        "generation": GENERATION,
        "generated_at": "2027-01-02T02:00:00Z",
        "currency": report.currency,
        "grand_total": str(report.totals.get("cost", "0")),
        "reconciliation": {"status": "not_configured"},
        "files": [],
    }
    for fmt in FORMATS:
        data = formats.render(report, fmt, manifest)  # type: ignore[arg-type]
        name = f"chargeback-{PERIOD}.{fmt}"
        store.put_file(PERIOD, GENERATION, name, data, "application/octet-stream")
        manifest["files"].append(
            {
                "format": fmt,
                "name": name,
                "content_type": "application/octet-stream",
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    bundle = to_bundle(report)
    store.put_file(PERIOD, GENERATION, service.BUNDLE, bundle, "application/zip")
    store.commit(PERIOD, DRAFT, manifest, None)
    context = service.ReportContext(
        usage=_unused,  # type: ignore[arg-type]
        view=_unused,  # type: ignore[arg-type]
        reports=store,
        reconciliations=_unused,  # type: ignore[arg-type]
        monitor=_unused,
        price_sheet=_unused,
        cost_centers=_unused,
        lag_hours=6,
        tolerance_percent=Decimal(1),
        grace_days=5,
    )
    return context, len(bundle)


def _timed(action: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return round(time.perf_counter() - started, 3), result


def run(subscriptions: int, models: int, days: int, cost_centers: int) -> dict[str, Any]:
    """Seconds per request: the stored file (admin, finance) and a one-cost-center team's view."""
    context, bundle_bytes = stored(subscriptions, models, days, cost_centers)
    team = Scope(Level.TEAM, frozenset({"CC-0001"}))
    whole: dict[str, float] = {}
    narrowed: dict[str, float] = {}
    for fmt in FORMATS:
        whole[fmt], _ = _timed(lambda fmt=fmt: service.download(context, PERIOD, fmt))
        narrowed[fmt], _ = _timed(
            lambda fmt=fmt: service.download(context, PERIOD, fmt, cost_centers=team.narrow(None))
        )
    first_listing, _ = _timed(lambda: views.report_list(team, context))
    cached_listing, _ = _timed(lambda: views.report_list(team, context))
    return {
        "shortcut": "report store in memory: the Blob read of the bundle is not included",
        "subscriptions": subscriptions,
        "models": models,
        "days": days,
        "cost_centers": cost_centers,
        "team_subscriptions": subscriptions // cost_centers,
        "bundle_bytes": bundle_bytes,
        "seconds_stored_file": whole,
        "seconds_team_view": narrowed,
        "seconds_team_listing_first": first_listing,
        "seconds_team_listing_cached": cached_listing,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


if __name__ == "__main__":
    sizes = [int(arg) for arg in sys.argv[1:]] or [10_000, 20, 31, 100]
    print(json.dumps(run(*sizes), indent=2))

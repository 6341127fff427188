"""Generates, finalises, lists and serves the monthly chargeback reports.

A report is generated into a folder per period: one file per format, the ledger snapshot it
was priced from, the adjustments it bills, and ``manifest.json`` last, which is the commit
point. A report is ``draft`` until its month has closed and the grace period has passed; the
first generation after that is ``final`` and is never rewritten. Usage counted for a final
month later (late events, redrives, replays) is the difference between the ledger now and
what final reports have billed so far; it appears in the next report as adjustment lines.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import pandas as pd

from chargeback.billing.cost_centers import CostCenterMap
from chargeback.billing.prices import PriceSheet
from chargeback.domain import periods
from chargeback.domain.errors import ConfigurationError, ConflictError, InvalidRequestError, MonitorError, NotFoundError
from chargeback.domain.usage import COUNTER_FIELDS, ZERO, Counters, UsageKey, UsageRow
from chargeback.reconciliation.monitor import MonitorSource
from chargeback.reconciliation.reconcile import (
    ReconciliationLine,
    judged_window,
    periods_to_reconcile,
    reconcile_period,
)
from chargeback.reports.build import (
    DEFAULT_INVOICE_ISSUER,
    FORMATS,
    Report,
    build_report,
    filtered,
    from_bundle,
    to_bundle,
)

logger = logging.getLogger("chargeback.reports.build")

DRAFT = "draft"
FINAL = "final"
MANIFEST = "manifest.json"
SNAPSHOT = "ledger-snapshot.parquet"
BUNDLE = "report-bundle.zip"
ADJUSTMENTS = "adjustments.parquet"
PARQUET = "application/vnd.apache.parquet"
ADJUSTMENT_LOOKBACK_MONTHS = 3
"""How many closed months are checked for late usage; Event Hubs keeps events at most 90 days."""

_KEY_COLUMNS = ("day", "subscription_id", "model", "deployment", "operation")


class ReportStore(Protocol):
    """Where report folders live. The Blob adapter implements it."""

    def manifest(self, period: str) -> dict[str, Any] | None: ...

    def manifests(self) -> list[dict[str, Any]]: ...

    def put(self, period: str, name: str, data: bytes, content_type: str) -> None: ...

    def put_manifest(self, period: str, manifest: Mapping[str, Any]) -> None: ...

    def get(self, period: str, name: str) -> bytes:
        """The file's bytes; ``NotFoundError`` when it does not exist."""
        ...


class ReconciliationStore(Protocol):
    """Where each period's latest reconciliation lines are kept."""

    def save(self, period: str, lines: Sequence[ReconciliationLine]) -> None: ...

    def load(self, period: str) -> list[ReconciliationLine]: ...


class UsageSource(Protocol):
    def period_rows(self, period: str) -> list[UsageRow]: ...


@dataclass(frozen=True)
class ReportContext:
    """Everything report generation reads and writes, wired by the runtime or by tests."""

    usage: UsageSource
    reports: ReportStore
    reconciliations: ReconciliationStore
    monitor: Callable[[], MonitorSource]
    """Builds the monitor source; raises ``ConfigurationError`` when none is configured."""
    price_sheet: Callable[[], PriceSheet]
    cost_centers: Callable[[], CostCenterMap]
    lag_hours: int
    tolerance_percent: Decimal
    grace_days: int
    render_extra: Mapping[str, Callable[[Report, Mapping[str, Any]], bytes]] | None = None
    """Formats beyond the report's own (the HTML page), rendered from the report and manifest."""
    provider_name: str = DEFAULT_INVOICE_ISSUER
    """The platform that provides the service and issues the chargeback (FOCUS ProviderName)."""


@dataclass(frozen=True, slots=True)
class Download:
    data: bytes
    content_type: str
    filename: str
    etag: str


def final_after(period: str, grace_days: int) -> datetime:
    """When ``period``'s report becomes final: the month's end plus the grace days."""
    return periods.month_end(period) + timedelta(days=grace_days)


def status_at(period: str, now: datetime, grace_days: int) -> str:
    return FINAL if now >= final_after(period, grace_days) else DRAFT


def generate(context: ReportContext, period: str, now: datetime) -> dict[str, Any]:
    """Reconcile and (re)generate ``period``'s report; refuse to touch a final one."""
    periods.parse_month(period)
    existing = context.reports.manifest(period)
    if existing is not None and existing.get("status") == FINAL:
        raise ConflictError(f"the report for {period} is final and is never regenerated")
    rows = context.usage.period_rows(period)
    reconciliation, recon_summary = _reconcile(context, period, now, rows)
    adjustments = _late_usage(context, period)
    report = build_report(
        period,
        rows,
        context.price_sheet(),
        context.cost_centers(),
        reconciliation=reconciliation,
        adjustments=[(original, row) for original, late in adjustments.items() for row in late],
        generated_at=now,
        invoice_issuer=context.provider_name,
    )
    status = status_at(period, now, context.grace_days)
    manifest: dict[str, Any] = {
        "period": period,
        "status": status,
        "generated_at": report.generated_at.isoformat().replace("+00:00", "Z"),
        "final_after": final_after(period, context.grace_days).isoformat().replace("+00:00", "Z"),
        "currency": report.currency,
        "grand_total": str(report.grand_total),
        "totals": {name: str(value) if isinstance(value, Decimal) else value for name, value in report.totals.items()},
        "row_counts": report.row_counts(),
        "reconciliation": recon_summary,
        "adjusted_periods": sorted(adjustments),
        "unallocated_subscriptions": sorted(report.unallocated["subscription_id"].astype(str)),
        "files": [],
    }
    for fmt, (content_type, _) in FORMATS.items():
        _put(
            context,
            manifest,
            period,
            fmt=fmt,
            name=report.filename(fmt),
            data=report.render(fmt),
            content_type=content_type,
        )
    for fmt, render in (context.render_extra or {}).items():
        _put(
            context,
            manifest,
            period,
            fmt=fmt,
            name=f"chargeback-{period}.{fmt}",
            data=render(report, manifest),
            content_type=f"text/{fmt}",
        )
    context.reports.put(period, BUNDLE, to_bundle(report), "application/zip")
    context.reports.put(period, SNAPSHOT, _frame_bytes(_usage_frame(rows)), PARQUET)
    context.reports.put(period, ADJUSTMENTS, _frame_bytes(_adjustment_frame(adjustments)), PARQUET)
    context.reports.put_manifest(period, manifest)
    logger.info(
        "chargeback.report period=%s status=%s lines=%s grand_total=%s %s reconciliation=%s",
        period,
        status,
        manifest["row_counts"].get("lines"),
        manifest["grand_total"],
        manifest["currency"],
        recon_summary["status"],
    )
    return manifest


def run_schedule(context: ReportContext, now: datetime) -> list[dict[str, Any]]:
    """The timer's work: reconcile and regenerate the open months, finalise the one that closed."""
    due = periods_to_reconcile(now, context.grace_days)
    previous = periods.previous_month(periods.month_of(now))
    if previous not in due:
        manifest = context.reports.manifest(previous)
        if manifest is not None and manifest.get("status") != FINAL:
            due.insert(0, previous)
    done = []
    for period in due:
        existing = context.reports.manifest(period)
        if existing is not None and existing.get("status") == FINAL:
            continue
        done.append(generate(context, period, now))
    return done


def list_reports(context: ReportContext) -> list[dict[str, Any]]:
    """Every generated period, newest first, with status and download links."""
    listing = []
    for manifest in sorted(context.reports.manifests(), key=lambda m: str(m.get("period")), reverse=True):
        period = str(manifest["period"])
        listing.append(
            {
                "period": period,
                "status": manifest.get("status"),
                "generated_at": manifest.get("generated_at"),
                "grand_total": manifest.get("grand_total"),
                "currency": manifest.get("currency"),
                "reconciliation": (manifest.get("reconciliation") or {}).get("status"),
                "links": {f["format"]: f"/api/reports/{period}?format={f['format']}" for f in manifest["files"]},
            }
        )
    return listing


def download(
    context: ReportContext,
    period: str,
    fmt: str,
    *,
    subscription: str | None = None,
    cost_center: str | None = None,
    cost_centers: frozenset[str] | None = None,
) -> Download:
    """A stored report file; with a filter, the same report narrowed to a subscription or cost center(s).

    ``cost_centers`` is the caller's scope: the file is rebuilt from the bundle with their lines only.
    """
    periods.parse_month(period)
    manifest = context.reports.manifest(period)
    if manifest is None:
        raise NotFoundError(f"no report has been generated for {period}")
    files = {entry["format"]: entry for entry in manifest["files"]}
    if fmt not in files:
        raise InvalidRequestError(f"format must be one of {', '.join(sorted(files))}, got {fmt[:40]!r}", field="format")
    entry = files[fmt]
    if subscription is None and cost_center is None and cost_centers is None:
        data = context.reports.get(period, entry["name"])
        return Download(data, entry["content_type"], entry["name"], f'"{entry["sha256"]}"')
    report = filtered(
        from_bundle(context.reports.get(period, BUNDLE)),
        subscription=subscription,
        cost_center=cost_center,
        cost_centers=cost_centers,
    )
    extra = context.render_extra or {}
    view = _view(manifest, subscription, cost_center, cost_centers)
    data = extra[fmt](report, view) if fmt in extra else report.render(fmt)
    name, tag = _view_name(entry["name"], view["view"]), _view_tag(entry, view["view"])
    return Download(data, entry["content_type"], name, tag)


def _view(
    manifest: Mapping[str, Any], subscription: str | None, cost_center: str | None, cost_centers: frozenset[str] | None
) -> dict[str, Any]:
    """The manifest plus what a narrowed file shows (``cost_centers`` None: not cut by cost center)."""
    if cost_center is not None:
        cost_centers = frozenset({cost_center}) & (cost_centers if cost_centers is not None else {cost_center})
    centers = sorted(cost_centers) if cost_centers is not None else None
    return {**manifest, "view": {"subscription": subscription, "cost_centers": centers}}


def _view_name(name: str, view: Mapping[str, Any]) -> str:
    stem, dot, suffix = name.partition(".")
    label = "-".join([*([view["subscription"]] if view["subscription"] else []), *(view["cost_centers"] or [])])
    return f"{stem}-{_safe_name(label or 'none')}{dot}{suffix}"


def _view_tag(entry: Mapping[str, Any], view: Mapping[str, Any]) -> str:
    """A strong ETag per generation and view: no cache hands one caller's view to another."""
    key = f"{entry['sha256']}|{view['subscription']}|{view['cost_centers']}"
    return f'"{hashlib.sha256(key.encode()).hexdigest()}"'


def _safe_name(text: str) -> str:
    """A filter value as a file-name part: letters, digits, dot, dash and underscore only."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-") else "_" for ch in text)[:80]


MAX_FILTER_LENGTH = 256


def parse_filter(value: str | None, field: str) -> str | None:
    """A subscription or cost-center filter: plain text, never a path or a control character."""
    if value is None or value == "":
        return None
    if len(value) > MAX_FILTER_LENGTH or ".." in value or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidRequestError(f"{field} filter is not a plain identifier", field=field)
    return value


def parse_format(value: str | None) -> str:
    fmt = (value or "csv").lower()
    if fmt not in FORMATS and fmt != "html":
        raise InvalidRequestError(
            f"format must be one of {', '.join([*FORMATS, 'html'])}, got {fmt[:40]!r}", field="format"
        )
    return fmt


def _put(
    context: ReportContext,
    manifest: dict[str, Any],
    period: str,
    *,
    fmt: str,
    name: str,
    data: bytes,
    content_type: str,
) -> None:
    context.reports.put(period, name, data, content_type)
    manifest["files"].append(
        {
            "format": fmt,
            "name": name,
            "content_type": content_type,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    )


def _reconcile(
    context: ReportContext, period: str, now: datetime, rows: Iterable[UsageRow]
) -> tuple[list[ReconciliationLine], dict[str, Any]]:
    window = judged_window(period, now, context.lag_hours)
    summary: dict[str, Any] = {
        "window": [moment.isoformat().replace("+00:00", "Z") for moment in window] if window else None
    }
    try:
        source = context.monitor()
    except ConfigurationError as exc:
        summary.update(status="not_configured", detail=str(exc))
        return [], summary
    try:
        lines = reconcile_period(
            period,
            now,
            lag_hours=context.lag_hours,
            tolerance_percent=context.tolerance_percent,
            ledger_rows=rows,
            source=source,
        )
    except MonitorError as exc:
        logger.error("chargeback.reconciliation.reconcile period=%s failed: %s", period, exc)  # noqa: TRY400 - no stack needed
        summary.update(status="failed", detail=str(exc))
        return [], summary
    context.reconciliations.save(period, lines)
    findings: dict[str, int] = {}
    for line in lines:
        findings[line.status] = findings.get(line.status, 0) + 1
    summary.update(status="reconciled" if window else "nothing_to_judge_yet", findings=findings)
    return lines, summary


def _late_usage(context: ReportContext, period: str) -> dict[str, list[UsageRow]]:
    """Per closed month, what the ledger holds beyond what final reports have billed."""
    late: dict[str, list[UsageRow]] = {}
    month = period
    finals: list[str] = []
    for _ in range(ADJUSTMENT_LOOKBACK_MONTHS + 1):
        month = periods.previous_month(month)
        manifest = context.reports.manifest(month)
        if manifest is not None and manifest.get("status") == FINAL:
            finals.append(month)
    for original in finals:
        billed = _counters_by_key(_frame(context.reports.get(original, SNAPSHOT)))
        for later in finals:
            if later > original:
                adjustments = _frame(context.reports.get(later, ADJUSTMENTS))
                for key, counters in _counters_by_key(adjustments[adjustments["original_period"] == original]).items():
                    billed[key] = billed.get(key, ZERO) + counters
        rows = []
        for row in context.usage.period_rows(original):
            difference = _minus(row.counters, billed.get(row.key, ZERO))
            if difference != ZERO:
                rows.append(UsageRow(row.key, difference))
        if rows:
            late[original] = rows
    return late


def _minus(now: Counters, billed: Counters) -> Counters:
    return Counters(*(getattr(now, name) - getattr(billed, name) for name in COUNTER_FIELDS))


def _usage_frame(rows: Iterable[UsageRow]) -> pd.DataFrame:
    records = [
        (
            row.key.day.isoformat(),
            row.key.subscription_id,
            row.key.model,
            row.key.deployment,
            row.key.operation,
            *(getattr(row.counters, name) for name in COUNTER_FIELDS),
        )
        for row in rows
    ]
    frame = pd.DataFrame.from_records(records, columns=[*_KEY_COLUMNS, *COUNTER_FIELDS])
    return frame.astype({name: "int64" for name in COUNTER_FIELDS})


def _adjustment_frame(adjustments: Mapping[str, list[UsageRow]]) -> pd.DataFrame:
    parts = [_usage_frame(rows).assign(original_period=original) for original, rows in adjustments.items()]
    if not parts:
        return _usage_frame([]).assign(original_period=pd.Series(dtype=str))
    return pd.concat(parts, ignore_index=True)


def _counters_by_key(frame: pd.DataFrame) -> dict[UsageKey, Counters]:
    out: dict[UsageKey, Counters] = {}
    columns = [frame[name].tolist() for name in (*_KEY_COLUMNS, *COUNTER_FIELDS)]
    width = len(_KEY_COLUMNS)
    for values in zip(*columns, strict=True):
        key = UsageKey(date.fromisoformat(str(values[0])), *(str(v) for v in values[1:width]))
        out[key] = out.get(key, ZERO) + Counters(*(int(v) for v in values[width:]))
    return out


def _frame_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _frame(data: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(data))


def utc_now() -> datetime:
    return datetime.now(UTC)

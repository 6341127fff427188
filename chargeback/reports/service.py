"""Generates, finalises, lists and serves the monthly chargeback reports.

Each generation of a period's report writes its files once, under its own generation id,
then commits by moving a pointer with a condition: ``final.json`` is created only if absent,
``draft.json`` moves only from the ETag the generation started from. Downloads read the
pointer, then that generation's files, so they always serve one generation whole. A report
is ``draft`` until its month has closed and the grace period has passed; the first
generation after that is ``final`` and is never rewritten. Usage counted for a final month
later (late events, redrives, replays) is the difference between the ledger now and what
final reports have billed so far; it appears in the next report as adjustment lines. A final
month re-priced or re-mapped by an administrator has its difference recorded as a correction
(chargeback.reports.corrections); the next report that is not final bills it as correction lines.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import pandas as pd

from chargeback.billing.cost_centers import CostCenterMap
from chargeback.billing.prices import PriceSheet
from chargeback.domain import periods
from chargeback.domain.errors import (
    ChargebackError,
    ConfigurationError,
    ConflictError,
    InvalidRequestError,
    MonitorError,
    NotFoundError,
    StorageError,
    TransientStorageError,
)
from chargeback.domain.logs import RECONCILE_FAILED, REPORT, REPORT_DISCARD_FAILED, log_event
from chargeback.domain.usage import COUNTER_FIELDS, ZERO, Counters, UsageKey, UsageRow
from chargeback.observability import metrics
from chargeback.reconciliation.monitor import MonitorSource
from chargeback.reconciliation.reconcile import (
    ReconciliationLine,
    judged_window,
    periods_to_reconcile,
    reconcile_period,
)
from chargeback.reports import correction_book, filters
from chargeback.reports.build import build_report, filtered, from_bundle, to_bundle
from chargeback.reports.correction_book import CorrectionStore, PendingCorrection
from chargeback.reports.formats import FORMATS
from chargeback.reports.model import (
    DEFAULT_INVOICE_ISSUER,
    DRAFT,
    FINAL,
    CorrectionRef,
    FileEntry,
    Manifest,
    ReconciliationSummary,
    Report,
)
from chargeback.reports.month_view import (
    ENTRY_KEYS,
    DayRecord,
    Fence,
    LedgerEntry,
    MonthView,
    add_deltas,
    concat_entries,
    difference,
    entries_bytes,
    entries_frame,
    entries_from,
    overlay,
    usage_rows,
    wall_clock,
    window_totals,
)

logger = logging.getLogger(__name__)

SNAPSHOT = "ledger-snapshot.parquet"
"""Before the compact month view: every ledger row a generation billed (read for old finals only)."""
LEDGER_VIEW = "ledger-view.parquet"
"""The ledger rows a generation read from the table beside the compacted days (see month_view)."""
BUNDLE = "report-bundle.zip"
ADJUSTMENTS = "adjustments.parquet"
PARQUET = "application/vnd.apache.parquet"
ADJUSTMENT_LOOKBACK_MONTHS = 3
"""How many closed months are checked for late usage; Event Hubs keeps events at most 90 days."""

_KEY_COLUMNS = ("day", "subscription_id", "model", "deployment", "operation")


class ReportStore(Protocol):
    """Where report generations live; the Blob adapter implements it.

    Files are written once under their generation; a period's ``draft`` and ``final``
    pointers hold the manifest of the generation served. Moving a pointer is conditional:
    ``commit`` raises ``ConflictError`` when another generation moved it first.
    """

    def put_file(
        self, period: str, generation: str, name: str, data: bytes, content_type: str, *, if_absent: bool = False
    ) -> None: ...

    def link(self, period: str, generation: str, name: str, filename: str, content_type: str) -> str | None:
        """A short-lived URL that reads the file without the app, or None when the store gives none."""
        ...

    def get_file(self, period: str, generation: str, name: str) -> bytes:
        """The file's bytes; ``NotFoundError`` when it does not exist."""
        ...

    def pointer(self, period: str, kind: str) -> tuple[Manifest, str] | None: ...

    def commit(self, period: str, kind: str, manifest: Manifest, etag: str | None) -> None: ...

    def periods(self) -> list[str]: ...

    def generations(self, period: str, older_than: timedelta) -> list[str]: ...

    def discard(self, period: str, generation: str) -> None: ...


class ReconciliationStore(Protocol):
    """Where each period's latest reconciliation lines are kept."""

    def save(self, period: str, lines: Sequence[ReconciliationLine]) -> None: ...

    def load(self, period: str) -> list[ReconciliationLine]: ...


class UsageSource(Protocol):
    def period_rows(self, period: str) -> list[UsageRow]: ...


utc_now = wall_clock
"""The reports' clock unless the runtime or a test sets another: the real time, in UTC."""


@dataclass(frozen=True)
class ReportContext:
    """Everything report generation reads and writes, wired by the runtime or by tests."""

    usage: UsageSource
    """The ledger row by row: only for finals written before the compact month view."""
    view: MonthView
    reports: ReportStore
    reconciliations: ReconciliationStore
    monitor: Callable[[], MonitorSource]
    """Builds the monitor source; raises ``ConfigurationError`` when none is configured."""
    price_sheet: Callable[[], PriceSheet]
    cost_centers: Callable[[], CostCenterMap]
    lag_hours: int
    tolerance_percent: Decimal
    grace_days: int
    clock: Callable[[], datetime] = utc_now
    """What time it is for the reports: whether a month is final, and the generation's stamp."""
    keep_unreferenced: timedelta = timedelta(hours=1)
    """How long a generation no pointer names is kept: longer than any generation takes to write."""
    provider_name: str = DEFAULT_INVOICE_ISSUER
    """The platform that provides the service and issues the chargeback (FOCUS ProviderName)."""
    links: bool = False
    """Serve files as redirects to short-lived storage links, so no function holds a whole file."""
    streamed_usage: Callable[[str, datetime], dict[str, Any]] = lambda _period, _now: {
        "status": "off",
        "incomplete_days": [],
    }
    """Whether the period's streamed usage (the LLM logs) is all in the ledger; the runtime wires
    ``llm_logs.month_status``. A report is written either way, and says so when it is not."""
    corrections: CorrectionStore | None = None
    """Where corrections of final months are recorded; None: no correction is ever billed."""
    budgets: Callable[[str], pd.DataFrame] | None = None
    """The month's budgets as last evaluated, for the page (chargeback.reports.model.BUDGET_COLUMNS)."""


@dataclass(frozen=True, slots=True)
class Download:
    """A file to serve: its bytes, or (``url``) a short-lived link the caller is sent to instead."""

    data: bytes
    content_type: str
    filename: str
    etag: str
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Priced:
    """A period priced from the ledger: the report and what its generation stores beside it."""

    report: Report
    changes: pd.DataFrame
    """The ledger rows read from the table beside the compacted days (see month_view)."""
    records: list[DayRecord]
    adjustments: dict[str, pd.DataFrame]
    """Per earlier final month, its late usage as ledger rows (deltas), in month_view's entry columns."""
    reconciliation: ReconciliationSummary
    streamed_usage: dict[str, Any]
    """Whether the streamed usage of the period was all collected when it was read."""
    corrections: list[CorrectionRef]
    """The corrections of earlier final months this generation bills."""


def final_after(period: str, grace_days: int) -> datetime:
    """When ``period``'s report becomes final: the month's end plus the grace days."""
    return periods.month_end(period) + timedelta(days=grace_days)


def status_at(period: str, now: datetime, grace_days: int) -> str:
    return FINAL if now >= final_after(period, grace_days) else DRAFT


def current(context: ReportContext, period: str) -> Manifest | None:
    """The manifest served for ``period``: the final one when there is one, else the latest draft."""
    for kind in (FINAL, DRAFT):
        found = context.reports.pointer(period, kind)
        if found is not None:
            return found[0]
    return None


def generate(context: ReportContext, period: str) -> Manifest:
    """Reconcile and generate ``period``'s report as a new generation, then commit it.

    The commit is the only write that can change what is served: a final is created only if
    none exists (``If-None-Match: *``), a draft moves the draft pointer only if no other draft
    moved it since this generation began (``If-Match``). The loser of a race gets
    ``ConflictError`` and its files are discarded; a generation that fails before its commit
    leaves the previous one served. Its outcome (committed, conflict, failed) and duration are
    recorded as metrics.
    """
    periods.parse_month(period)
    now = context.clock()
    status = status_at(period, now, context.grace_days)
    started, outcome = time.perf_counter(), "failed"
    try:
        manifest = _generate(context, period, now, status)
        outcome = "committed"
    except ConflictError:
        outcome = "conflict"
        raise
    finally:
        metrics.report_generated(outcome, status, time.perf_counter() - started)
    return manifest


def _generate(context: ReportContext, period: str, now: datetime, status: str) -> Manifest:
    base = _commit_base(context, period, status)
    generation = new_generation(now)
    manifest = _write_generation(context, period, generation, now, status)
    try:
        context.reports.commit(period, status, manifest, base)
    except ConflictError:
        _discard(context, period, generation)
        raise
    _clean_up(context, period)
    _log_committed(manifest)
    return manifest


def new_generation(now: datetime) -> str:
    """A generation id: when it began, then random, so ids sort by time and never collide."""
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(6)}"


def _commit_base(context: ReportContext, period: str, status: str) -> str | None:
    """The ETag the commit will be conditioned on; ``ConflictError`` when the month is final already."""
    if context.reports.pointer(period, FINAL) is not None:
        raise ConflictError(f"the report for {period} is final and is never regenerated")
    if status == FINAL:
        return None
    found = context.reports.pointer(period, DRAFT)
    return None if found is None else found[1]


def _write_generation(context: ReportContext, period: str, generation: str, now: datetime, status: str) -> Manifest:
    """Price the period and write every file of the generation; nothing is served from it yet."""
    priced = _price(context, period, now)
    manifest = _manifest(context, priced, generation, status)
    for spec in FORMATS.values():
        data = spec.render(priced.report, manifest)
        name = spec.filename(period)
        context.reports.put_file(period, generation, name, data, spec.content_type)
        manifest["files"].append(_entry(spec.name, name, spec.content_type, data))
    context.reports.put_file(period, generation, BUNDLE, to_bundle(priced.report), "application/zip")
    context.reports.put_file(period, generation, LEDGER_VIEW, entries_bytes(priced.changes), PARQUET)
    adjustments = entries_bytes(_adjustment_frame(priced.adjustments))
    context.reports.put_file(period, generation, ADJUSTMENTS, adjustments, PARQUET)
    return manifest


def _price(context: ReportContext, period: str, now: datetime) -> Priced:
    streamed_usage = context.streamed_usage(period, now)
    read = context.view.read(period, now)
    reconciliation, summary = _reconcile(context, period, now, read.usage)
    adjustments = _late_usage(context, period, now)
    due = pending_corrections(context, period)
    report = build_report(
        period,
        read.usage,
        context.price_sheet(),
        context.cost_centers(),
        reconciliation=reconciliation,
        adjustments=[(original, row) for original, late in adjustments.items() for row in usage_rows(late)],
        corrections=[(pending.period, pending.lines) for pending in due],
        generated_at=now,
        invoice_issuer=context.provider_name,
    )
    refs = [CorrectionRef(period=pending.period, id=pending.id) for pending in due]
    if context.budgets is not None:
        report = dataclasses.replace(report, budgets=context.budgets(period))
    # The month's usage frame is dropped here, before any file is rendered: it is the largest thing held.
    return Priced(report, read.changes, read.records, adjustments, summary, streamed_usage, refs)


def pending_corrections(context: ReportContext, period: str) -> list[PendingCorrection]:
    """The recorded corrections a report of ``period`` bills (see chargeback.reports.correction_book)."""
    if context.corrections is None:
        return []
    return correction_book.pending(context.reports, context.corrections, period)


def _manifest(context: ReportContext, priced: Priced, generation: str, status: str) -> Manifest:
    report = priced.report
    return Manifest(
        period=report.period,
        status=status,
        generation=generation,
        generated_at=_iso(report.generated_at),
        final_after=_iso(final_after(report.period, context.grace_days)),
        currency=report.currency,
        grand_total=str(report.grand_total),
        totals={name: str(value) if isinstance(value, Decimal) else value for name, value in report.totals.items()},
        row_counts=report.row_counts(),
        reconciliation=priced.reconciliation,
        adjusted_periods=sorted(priced.adjustments),
        corrections=priced.corrections,
        unallocated_subscriptions=sorted(report.unallocated["subscription_id"].astype(str)),
        files=[],
        ledger_view={"days": priced.records},
        streamed_usage=priced.streamed_usage,
    )


def _entry(fmt: str, name: str, content_type: str, data: bytes) -> FileEntry:
    return FileEntry(
        format=fmt, name=name, content_type=content_type, bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _discard(context: ReportContext, period: str, generation: str) -> None:
    """Remove a generation that lost its race; if storage fails now, the clean-up takes it later."""
    try:
        context.reports.discard(period, generation)
    except StorageError as exc:
        log_event(
            logger,
            REPORT_DISCARD_FAILED,
            logging.WARNING,
            period=period,
            generation=generation,
            kind=type(exc).__name__,
        )


def _clean_up(context: ReportContext, period: str) -> None:
    """Delete old generations no pointer serves: failed, lost, or replaced drafts. Finals stay."""
    served = {manifest["generation"] for manifest in _pointed(context, period)}
    for generation in context.reports.generations(period, context.keep_unreferenced):
        if generation not in served:
            context.reports.discard(period, generation)


def _pointed(context: ReportContext, period: str) -> list[Manifest]:
    final = context.reports.pointer(period, FINAL)
    if final is not None:
        return [final[0]]
    draft = context.reports.pointer(period, DRAFT)
    return [] if draft is None else [draft[0]]


def _log_committed(manifest: Manifest) -> None:
    log_event(
        logger,
        REPORT,
        period=manifest["period"],
        status=manifest["status"],
        generation=manifest["generation"],
        lines=manifest["row_counts"].get("lines"),
        grand_total=manifest["grand_total"],
        currency=manifest["currency"],
        reconciliation=manifest["reconciliation"].get("status"),
        findings=manifest["reconciliation"].get("findings", {}),
    )


def due_periods(context: ReportContext, now: datetime) -> list[str]:
    """The months the schedule generates: the open ones, and last month until its final exists."""
    due = periods_to_reconcile(now, context.grace_days)
    previous = periods.previous_month(periods.month_of(now))
    if previous not in due and context.reports.pointer(previous, DRAFT) is not None:
        due.insert(0, previous)
    return [period for period in due if context.reports.pointer(period, FINAL) is None]


def public_reason(exc: ChargebackError) -> str:
    """Why a generation failed, in words that name no path, host or internal detail."""
    if isinstance(exc, TransientStorageError):
        return "storage was unavailable; the next run retries"
    if isinstance(exc, StorageError):
        return "storage refused a write or read; see the logs"
    if isinstance(exc, ConfigurationError):
        return "a setting is missing or malformed; see the logs"
    return f"{type(exc).__name__}; see the logs"


def list_reports(context: ReportContext) -> list[dict[str, Any]]:
    """Every generated period, newest first, with status and download links."""
    listing = []
    for period in sorted(context.reports.periods(), reverse=True):
        manifest = current(context, period)
        if manifest is None:
            continue
        listing.append(
            {
                "period": period,
                "status": manifest["status"],
                "generation": manifest["generation"],
                "generated_at": manifest["generated_at"],
                "grand_total": manifest["grand_total"],
                "currency": manifest["currency"],
                "reconciliation": manifest["reconciliation"].get("status"),
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
    manifest = current(context, period)
    if manifest is None:
        raise NotFoundError(f"no report has been generated for {period}")
    files = {entry["format"]: entry for entry in manifest["files"]}
    if fmt not in files:
        raise InvalidRequestError(f"format must be one of {', '.join(sorted(files))}, got {fmt[:40]!r}", field="format")
    entry = files[fmt]
    generation = manifest["generation"]
    if subscription is None and cost_center is None and cost_centers is None:
        return _served(context, period, generation, stored=entry["name"], entry=entry, tag=f'"{entry["sha256"]}"')
    whole = from_bundle(context.reports.get_file(period, generation, BUNDLE))
    filters.require_known(
        whole, context.cost_centers(), subscription=subscription, cost_center=cost_center, cost_centers=cost_centers
    )
    report = filtered(whole, subscription=subscription, cost_center=cost_center, cost_centers=cost_centers)
    view = _view(manifest, subscription, cost_center, cost_centers)
    data = FORMATS[fmt].render(report, view)
    view_of = view.get("view", {})
    tag = _view_tag(entry, view_of)
    served = {**entry, "name": _view_name(entry["name"], view_of)}
    stored = f"view-{tag.strip(chr(34))[:32]}-{entry['name']}"
    return _served(context, period, generation, stored=stored, entry=served, tag=tag, data=data)


def _served(
    context: ReportContext,
    period: str,
    generation: str,
    *,
    stored: str,
    entry: Mapping[str, Any],
    tag: str,
    data: bytes | None = None,
) -> Download:
    """The file ``stored`` (or ``data``, kept under that name first) as a link when the store gives one,
    else as bytes. Pages are always served by the app: they need its security headers."""
    content_type, filename = str(entry["content_type"]), str(entry["name"])
    if context.links and not content_type.startswith("text/html"):
        if data is not None:
            context.reports.put_file(period, generation, stored, data, content_type, if_absent=True)
        url = context.reports.link(period, generation, stored, filename, content_type)
        if url is not None:
            return Download(b"", content_type, filename, tag, url)
    if data is None:
        data = context.reports.get_file(period, generation, stored)
    return Download(data, content_type, filename, tag)


def _view(
    manifest: Manifest, subscription: str | None, cost_center: str | None, cost_centers: frozenset[str] | None
) -> Manifest:
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


def parse_target(name: str, fmt: str | None) -> tuple[str, str]:
    """What ``GET /api/reports/{name}`` asks for: a month (``?format=``, CSV by default), or a file of
    it by its own name, ``chargeback-2026-11.xlsx``, as the page links to the files saved beside it."""
    for spec in sorted(FORMATS.values(), key=lambda spec: -len(spec.suffix)):
        stem = name.removesuffix(spec.suffix)
        if stem != name and stem.startswith(FILE_PREFIX):
            if fmt not in (None, "", spec.name):
                raise InvalidRequestError(f"{name[:60]!r} is a {spec.name} file; leave format out", field="format")
            return periods.parse_month(stem.removeprefix(FILE_PREFIX)), spec.name
    return periods.parse_month(name), parse_format(fmt)


FILE_PREFIX = "chargeback-"


def parse_format(value: str | None) -> str:
    fmt = (value or "csv").lower()
    if fmt not in FORMATS:
        raise InvalidRequestError(f"format must be one of {', '.join(FORMATS)}, got {fmt[:40]!r}", field="format")
    return fmt


def _reconcile(
    context: ReportContext, period: str, now: datetime, usage: pd.DataFrame
) -> tuple[list[ReconciliationLine], ReconciliationSummary]:
    window = judged_window(period, now, context.lag_hours)
    summary = ReconciliationSummary(window=[_iso(moment) for moment in window] if window else None)
    try:
        source = context.monitor()
    except ConfigurationError:
        summary.update({"status": "not_configured", "detail": "no Azure Monitor source is configured"})
        return [], summary
    try:
        lines = reconcile_period(
            period,
            now,
            lag_hours=context.lag_hours,
            tolerance_percent=context.tolerance_percent,
            ledger_rows=lambda window: window_totals(usage, window),
            source=source,
        )
    except MonitorError as exc:
        log_event(logger, RECONCILE_FAILED, logging.ERROR, period=period, kind=type(exc).__name__, exc_info=exc)
        summary.update({"status": "failed", "detail": "Azure Monitor could not give a complete answer; see the logs"})
        return [], summary
    context.reconciliations.save(period, lines)
    findings: dict[str, int] = {}
    for line in lines:
        findings[line.status] = findings.get(line.status, 0) + 1
    summary.update({"status": "reconciled" if window else "nothing_to_judge_yet", "findings": findings})
    return lines, summary


def _late_usage(context: ReportContext, period: str, now: datetime) -> dict[str, pd.DataFrame]:
    """Per closed month, what the ledger holds beyond what final reports have billed, as ledger rows.

    A final month's late usage is billed by the first month after it to be finalised, whatever
    order finals are made in: while a month between the two has no final yet, the late usage is
    left to that month's final, which bills it less what any final after it already billed.
    Finals racing each other therefore never both bill it: a later month skips it until the
    month before it is final, and the final that bills it reads what later finals billed.
    """
    finals = _recent_finals(context, period)
    later_finals = _finals_after(context, period, now)
    late: dict[str, pd.DataFrame] = {}
    for original, manifest in finals.items():
        if any(month not in finals for month in _months_between(original, period)):
            continue
        adjusted = _adjusted(context, original, {**finals, **later_finals})
        if "ledger_view" in manifest:
            rows = _late_since(context, original, manifest, adjusted, now)
        else:
            rows = _late_since_snapshot(context, original, manifest, adjusted)
        if len(rows):
            late[original] = rows
    return late


def _adjusted(context: ReportContext, original: str, finals: Mapping[str, Manifest]) -> pd.DataFrame:
    """The late usage of ``original`` that finals after it have billed already, as ledger rows."""
    parts = []
    for later, manifest in finals.items():
        if later > original:
            frame = entries_from(context.reports.get_file(later, manifest["generation"], ADJUSTMENTS))
            parts.append(frame[frame["original_period"] == original])
    return concat_entries(parts)


def _late_since(
    context: ReportContext, original: str, manifest: Manifest, adjusted: pd.DataFrame, now: datetime
) -> pd.DataFrame:
    """Late usage of a final read through the month view: only days whose rows moved are compared."""
    view = context.view
    billed_changes = _billed_changes(context, original, manifest)
    states = view.ledger.slice_states(original)
    parts = []
    for record in manifest["ledger_view"]["days"]:
        day = date.fromisoformat(record["day"])
        read_then = billed_changes[billed_changes["day"] == record["day"]].reset_index(drop=True)
        adjusted_day = adjusted[adjusted["day"] == record["day"]]
        if record["as_of"] is None:
            current, billed = view.day(day, now, states).entries, read_then
        else:
            base, fence = _compacted_as_billed(context, original, day, record)
            changes, llm = view.changes_since(day, fence, states)
            if llm == record["llm_reread"] and not len(adjusted_day) and _same_rows(changes, read_then):
                continue
            current = overlay(base, changes, drop_llm=llm)
            billed = overlay(base, read_then, drop_llm=record["llm_reread"])
        parts.append(difference(current, add_deltas(billed, adjusted_day)))
    return concat_entries(parts)


def billed_entries(context: ReportContext, original: str, manifest: Manifest) -> pd.DataFrame:
    """Every ledger row the final report of ``original`` billed, as it read them (month_view's entry columns)."""
    if "ledger_view" not in manifest:
        billed = _counters_by_key(_frame(context.reports.get_file(original, manifest["generation"], SNAPSHOT)))
        return entries_frame(LedgerEntry("", "", key, counters) for key, counters in billed.items())
    billed_changes = _billed_changes(context, original, manifest)
    parts = []
    for record in manifest["ledger_view"]["days"]:
        read_then = billed_changes[billed_changes["day"] == record["day"]].reset_index(drop=True)
        if record["as_of"] is None:
            parts.append(read_then)
            continue
        base, _ = _compacted_as_billed(context, original, date.fromisoformat(record["day"]), record)
        parts.append(overlay(base, read_then, drop_llm=record["llm_reread"]))
    return concat_entries(parts)


def _billed_changes(context: ReportContext, original: str, manifest: Manifest) -> pd.DataFrame:
    return concat_entries([entries_from(context.reports.get_file(original, manifest["generation"], LEDGER_VIEW))])


def _compacted_as_billed(
    context: ReportContext, original: str, day: date, record: DayRecord
) -> tuple[pd.DataFrame, Fence]:
    """The compacted day a final read; ``StorageError`` when the file is not that one any more."""
    base, fence = context.view.compacted(day)
    if _iso(fence.as_of) != record["as_of"]:
        raise StorageError(f"the compacted ledger of {day} is not the one the final report of {original} read")
    return base, fence


def _same_rows(one: pd.DataFrame, other: pd.DataFrame) -> bool:
    if len(one) != len(other):
        return False
    order = list(ENTRY_KEYS)
    left = one.sort_values(order, ignore_index=True)
    right = other.sort_values(order, ignore_index=True)
    return bool(left.equals(right))


def _late_since_snapshot(
    context: ReportContext, original: str, manifest: Manifest, adjusted: pd.DataFrame
) -> pd.DataFrame:
    """Late usage of a final written before the month view: the whole month re-read, row by row."""
    billed = _counters_by_key(_frame(context.reports.get_file(original, manifest["generation"], SNAPSHOT)))
    for key, counters in _counters_by_key(adjusted).items():
        billed[key] = billed.get(key, ZERO) + counters
    late = []
    for row in context.usage.period_rows(original):
        difference_ = _minus(row.counters, billed.get(row.key, ZERO))
        if difference_ != ZERO:
            late.append(LedgerEntry("", "", row.key, difference_))
    return entries_frame(late)


def _months_between(first: str, last: str) -> list[str]:
    """The months strictly after ``first`` and before ``last``."""
    months, month = [], periods.next_month(first)
    while month < last:
        months.append(month)
        month = periods.next_month(month)
    return months


def _finals_after(context: ReportContext, period: str, now: datetime) -> dict[str, Manifest]:
    """The final manifests of the months after ``period``, up to ``now``'s month: finals made out of order."""
    finals: dict[str, Manifest] = {}
    for month in _months_between(period, periods.next_month(periods.month_of(now))):
        found = context.reports.pointer(month, FINAL)
        if found is not None:
            finals[month] = found[0]
    return finals


def _recent_finals(context: ReportContext, period: str) -> dict[str, Manifest]:
    """The final manifests of the months in the adjustment look-back before ``period``."""
    finals: dict[str, Manifest] = {}
    month = period
    for _ in range(ADJUSTMENT_LOOKBACK_MONTHS + 1):
        month = periods.previous_month(month)
        found = context.reports.pointer(month, FINAL)
        if found is not None:
            finals[month] = found[0]
    return finals


def _minus(now: Counters, billed: Counters) -> Counters:
    return Counters(*(getattr(now, name) - getattr(billed, name) for name in COUNTER_FIELDS))


def _adjustment_frame(adjustments: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    parts = [rows.assign(original_period=original) for original, rows in adjustments.items()]
    if not parts:
        return entries_frame(()).assign(original_period=pd.Series(dtype=str))
    return pd.concat(parts, ignore_index=True)


def _counters_by_key(frame: pd.DataFrame) -> dict[UsageKey, Counters]:
    out: dict[UsageKey, Counters] = {}
    # A snapshot written before a counter existed (the LLM-log ones) holds none of it: zero.
    columns = [frame[name].tolist() if name in frame else [0] * len(frame) for name in (*_KEY_COLUMNS, *COUNTER_FIELDS)]
    width = len(_KEY_COLUMNS)
    for values in zip(*columns, strict=True):
        key = UsageKey(date.fromisoformat(str(values[0])), *(str(v) for v in values[1:width]))
        out[key] = out.get(key, ZERO) + Counters(*(int(v) for v in values[width:]))
    return out


def _frame(data: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(data))

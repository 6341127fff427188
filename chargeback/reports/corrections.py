"""Correcting a final month: re-price and re-map it with today's price sheet and cost-center map.

The difference is computed line by line — per subscription, model, deployment and cost center —
between everything a final month's usage comes to now and everything billed for it so far:

- now: the usage the final report billed, and the late usage of the month that later finals
  billed as adjustments (each such part priced as it was billed: the month's own usage with its
  provisioned capacity shared out, late usage without), priced with today's sheet and mapped
  with today's map;
- billed: the final's usage lines, those adjustment lines, and every correction recorded
  already (billed or still to be billed).

A dry run only answers the difference. Otherwise the difference, when there is one, is recorded
as a correction of the month (chargeback.reports.correction_book), conditioned on the record's
ETag, and the next report that is not final bills it as ``correction`` lines. Asking again with
nothing changed finds no difference and records nothing; a racing request that loses the
condition computes the difference again against the winner's record.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypedDict

import numpy as np
import orjson
import pandas as pd

from chargeback.billing.cost_centers import CostCenterMap
from chargeback.billing.frames import LEDGER_COUNTERS, LINE_KEYS
from chargeback.billing.prices import PriceSheet
from chargeback.billing.pricing import price_usage
from chargeback.domain import periods
from chargeback.domain.errors import ConfigurationError, ConflictError, InvalidRequestError
from chargeback.domain.logs import REPORT_CORRECTION, log_event
from chargeback.reports import correction_book, service
from chargeback.reports.build import ADJUSTMENT, CORRECTION_COLUMNS, USAGE, from_bundle
from chargeback.reports.correction_book import CorrectionEntry, CorrectionRecord, CorrectionStore
from chargeback.reports.model import FINAL, Manifest
from chargeback.reports.month_view import entries_from, usage_of

logger = logging.getLogger(__name__)

KEY_COLUMNS = (*LINE_KEYS, "cost_center", "business_unit", "owner")
SUMMED = (*LEDGER_COUNTERS, "cost_minor")
MAX_REASON = 500
RECORD_ATTEMPTS = 5
"""How often a correction is computed again after losing a race for the record."""


class Summary(TypedDict):
    lines: int
    cost: str
    currency: str
    billed_in: str
    price_sheet: str
    cost_centers: str


@dataclass(frozen=True)
class Difference:
    """What correcting ``period`` would record now, and against which version of its record."""

    period: str
    lines: pd.DataFrame
    """In :data:`chargeback.reports.build.CORRECTION_COLUMNS`; empty when nothing differs."""
    currency: str
    minor_units: int
    price_sheet: str
    cost_centers: str
    target: str
    """The month whose reports would bill it: the first after ``period`` without a final report."""
    record: CorrectionRecord | None
    etag: str | None

    @property
    def cost(self) -> Decimal:
        return Decimal(int(self.lines["cost_minor"].sum())).scaleb(-self.minor_units)

    def summary(self) -> Summary:
        """What the difference comes to, as its correction records and logs it."""
        return Summary(
            lines=len(self.lines),
            cost=str(self.cost),
            currency=self.currency,
            billed_in=self.target,
            price_sheet=self.price_sheet,
            cost_centers=self.cost_centers,
        )

    def document(self) -> dict[str, Any]:
        """The difference as the dry run answers it: per line, and in total."""
        lines = self.lines.assign(
            cost=[str(Decimal(int(v)).scaleb(-self.minor_units)) for v in self.lines["cost_minor"]]
        )
        return {
            "period": self.period,
            "currency": self.currency,
            "cost": str(self.cost),
            "lines": _records(lines.drop(columns="cost_minor")),
            "billed_in": self.target,
            "corrections_recorded": len(self.record["entries"]) if self.record else 0,
            "price_sheet": self.price_sheet,
            "cost_centers": self.cost_centers,
        }


@dataclass(frozen=True)
class Recorded:
    difference: Difference
    entry: CorrectionEntry | None
    """The correction recorded; None when there was nothing to correct."""


def parse_request(body: bytes) -> tuple[str, bool]:
    """``{"reason": "…", "dry_run": true|false}`` as (reason, dry run); ``InvalidRequestError`` otherwise."""
    try:
        document = orjson.loads(body or b"")
    except orjson.JSONDecodeError:
        raise InvalidRequestError("the body must be a JSON object", field="body") from None
    if not isinstance(document, dict):
        raise InvalidRequestError("the body must be a JSON object", field="body")
    unknown = sorted(set(document) - {"reason", "dry_run"})
    if unknown:
        raise InvalidRequestError(f"unknown field {unknown[0][:40]!r}", field=unknown[0][:40])
    dry_run = document.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise InvalidRequestError("dry_run must be true or false", field="dry_run")
    return parse_reason(document.get("reason")), dry_run


def parse_reason(reason: object) -> str:
    """Why a month is corrected: required plain text, kept in the audit trail."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidRequestError("say why the month is corrected: reason must be non-empty text", field="reason")
    text = reason.strip()
    if len(text) > MAX_REASON or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise InvalidRequestError(f"reason must be one line of at most {MAX_REASON} characters", field="reason")
    return text


def require_final(context: service.ReportContext, period: str) -> Manifest:
    """The final manifest of ``period``; ``ConflictError`` when the month is not final."""
    periods.parse_month(period)
    found = context.reports.pointer(period, FINAL)
    if found is None:
        raise ConflictError(f"the report for {period} is not final; only a final month is corrected")
    return found[0]


def difference(context: service.ReportContext, period: str) -> Difference:
    """The correction ``period`` needs now (empty lines: none); reads, never writes."""
    final = require_final(context, period)
    store = _store(context)
    found = store.record(period)
    record, etag = (None, None) if found is None else found
    sheet, centers = context.price_sheet(), context.cost_centers()
    later = _finals_after(context, period)
    now = _repriced(context, period, final, later=later, sheet=sheet, centers=centers)
    billed = _billed(context, period, final, later=later, store=store, record=record)
    target, _ = correction_book.target_month(context.reports, period)
    return Difference(
        period=period,
        lines=_minus(now, billed),
        currency=sheet.currency,
        minor_units=sheet.minor_units,
        price_sheet=_fingerprint(sheet),
        cost_centers=_fingerprint(centers),
        target=target,
        record=record,
        etag=etag,
    )


def record(
    context: service.ReportContext, period: str, *, requested_by: str, reason: str, job: str | None = None
) -> Recorded:
    """Record the correction ``period`` needs now, once, and log it; nothing when nothing differs."""
    store = _store(context)
    for _ in range(RECORD_ATTEMPTS):
        found = difference(context, period)
        done = _recorded_by(found.record, job)
        if done is not None:  # the same job delivered again after it recorded its correction
            return Recorded(found, done)
        if found.lines.empty:
            _log(found, requested_by, reason, job, None, dry_run=False)
            return Recorded(found, None)
        entry = _entry(context, found, requested_by, reason, job)
        store.put_lines(period, entry["id"], lines_bytes(found.lines))
        entries = [*(found.record["entries"] if found.record else []), entry]
        try:
            store.save(
                period, CorrectionRecord(period=period, entries=entries, updated_at=entry["requested_at"]), found.etag
            )
        except ConflictError:
            continue  # another correction was recorded first: compute the difference again
        _log(found, requested_by, reason, job, entry, dry_run=False)
        return Recorded(found, entry)
    raise ConflictError(f"the corrections of {period} kept changing while this one was computed; ask again")


def _recorded_by(record: CorrectionRecord | None, job: str | None) -> CorrectionEntry | None:
    if record is None or job is None:
        return None
    return next((entry for entry in record["entries"] if entry["job"] == job), None)


def dry_run(context: service.ReportContext, period: str, *, requested_by: str, reason: str) -> Difference:
    """The difference a correction would record now, logged as asked for; nothing is written."""
    found = difference(context, period)
    _log(found, requested_by, reason, None, None, dry_run=True)
    return found


def lines_bytes(lines: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    lines.loc[:, list(CORRECTION_COLUMNS)].to_parquet(buffer, index=False)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# The two sides


def _finals_after(context: service.ReportContext, period: str) -> dict[str, Manifest]:
    """The final manifests of the months after ``period`` up to the current one."""
    current = periods.month_of(context.clock())
    finals: dict[str, Manifest] = {}
    month = periods.next_month(period)
    while month <= current:
        found = context.reports.pointer(month, FINAL)
        if found is not None:
            finals[month] = found[0]
        month = periods.next_month(month)
    return finals


def _repriced(
    context: service.ReportContext,
    period: str,
    final: Manifest,
    *,
    later: dict[str, Manifest],
    sheet: PriceSheet,
    centers: CostCenterMap,
) -> pd.DataFrame:
    """What the month's billed usage comes to with today's sheet and map, each part priced as it was billed."""
    usage = usage_of(service.billed_entries(context, period, final))
    parts = [price_usage(usage, sheet, period).lines]
    for month, manifest in later.items():
        late = entries_from(context.reports.get_file(month, manifest["generation"], service.ADJUSTMENTS))
        mine = late[late["original_period"] == period] if "original_period" in late else late.iloc[0:0]
        if len(mine):
            parts.append(price_usage(usage_of(mine), sheet, period, allocate_provisioned=False).lines)
    lines = pd.concat(parts, ignore_index=True)
    assigned = centers.assign(lines["subscription_id"])
    lines = lines.assign(**{name: assigned[name] for name in ("cost_center", "business_unit", "owner")})
    return _keyed(lines)


def _billed(
    context: service.ReportContext,
    period: str,
    final: Manifest,
    *,
    later: dict[str, Manifest],
    store: CorrectionStore,
    record: CorrectionRecord | None,
) -> pd.DataFrame:
    """Everything billed for the month so far: its final's usage, later adjustments, and recorded corrections."""
    parts = [_report_lines(context, period, final, lambda lines: lines["charge_category"] == USAGE)]
    for month, manifest in later.items():
        parts.append(
            _report_lines(
                context,
                month,
                manifest,
                lambda lines: (lines["charge_category"] == ADJUSTMENT) & (lines["adjusted_period"] == period),
            )
        )
    parts.extend(
        correction_book.read_lines(store, period, entry["id"]) for entry in (record or {"entries": []})["entries"]
    )
    return _keyed(pd.concat([part for part in parts if len(part)] or parts[:1], ignore_index=True))


def _report_lines(
    context: service.ReportContext, month: str, manifest: Manifest, keep: Callable[[pd.DataFrame], pd.Series[bool]]
) -> pd.DataFrame:
    report = from_bundle(context.reports.get_file(month, manifest["generation"], service.BUNDLE))
    detail = pd.concat([report.lines, report.line_details], axis=1)
    kept: pd.DataFrame = detail[keep(detail)].reset_index(drop=True)
    return kept


def _keyed(lines: pd.DataFrame) -> pd.DataFrame:
    frame = lines.loc[:, [*KEY_COLUMNS, "pricing", *SUMMED]].copy()
    for name in KEY_COLUMNS:
        frame[name] = frame[name].astype(str)
    for name in SUMMED:
        frame[name] = frame[name].to_numpy().astype(np.int64)
    frame["pricing"] = frame["pricing"].astype(str)
    return frame


def _minus(now: pd.DataFrame, billed: pd.DataFrame) -> pd.DataFrame:
    """Per line key, ``now`` minus ``billed``; only the keys where a count or the cost differs."""
    negated = billed.assign(**{name: -billed[name] for name in SUMMED})
    both = pd.concat([now, negated], ignore_index=True)
    grouped = both.groupby(list(KEY_COLUMNS), sort=True).agg(
        pricing=("pricing", "first"), **{name: (name, "sum") for name in SUMMED}
    )
    moved = (grouped[list(SUMMED)] != 0).any(axis=1)
    out = grouped[moved].reset_index()
    for name in SUMMED:
        out[name] = out[name].astype(np.int64)
    return out.loc[:, list(CORRECTION_COLUMNS)]


# --------------------------------------------------------------------------------------------
# Recording and the audit trail


def _store(context: service.ReportContext) -> CorrectionStore:
    if context.corrections is None:
        raise ConfigurationError("no correction store is configured")
    return context.corrections


def _entry(
    context: service.ReportContext, found: Difference, requested_by: str, reason: str, job: str | None
) -> CorrectionEntry:
    return CorrectionEntry(
        id=uuid.uuid4().hex,
        period=found.period,
        requested_by=requested_by,
        requested_at=_iso(context.clock()),
        reason=reason,
        job=job,
        **found.summary(),
    )


def _log(
    found: Difference, requested_by: str, reason: str, job: str | None, entry: CorrectionEntry | None, *, dry_run: bool
) -> None:
    outcome = "dry_run" if dry_run else "recorded" if entry is not None else "nothing_to_correct"
    correction = None if entry is None else entry["id"]
    log_event(
        logger,
        REPORT_CORRECTION,
        period=found.period,
        outcome=outcome,
        correction=correction,
        job=job,
        requested_by=requested_by,
        reason=reason,
        **found.summary(),
    )


def _fingerprint(value: object) -> str:
    """A short fingerprint of a price sheet or map as parsed: equal inputs, equal fingerprints."""
    return hashlib.sha256(repr(value).encode("utf-8")).hexdigest()[:16]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    columns = list(frame.columns)
    values = [[v.item() if isinstance(v, np.generic) else v for v in frame[name].tolist()] for name in columns]
    return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")

"""Delivers each final month's FOCUS costs to a FinOps hub, off the report's commit and idempotently.

A FinOps hub (Microsoft's FinOps toolkit) ingests FOCUS Parquet dropped into its ``ingestion``
container, one folder per dataset, month and scope::

    Costs/{yyyy}/{mm}/{scope}/{ingestion id}__chargeback.parquet
    Costs/{yyyy}/{mm}/{scope}/manifest.json     written last: its creation starts the hub's pipeline

What a month delivers: its final report whole; before it is final, only the corrections its
draft carries for months already final (late usage, FOCUS ``ChargeClass`` Correction), so a
hub's users see a final changed as soon as the chargeback knows, and never draft usage. The
ingestion id is the month's own, so a month delivered again overwrites its file and the hub
replaces what it ingested before instead of adding to it.

Delivery runs from its own message on the report queue, queued after a generation commits (and
every day by the timer for the months that may still change), so it never holds up a report and
a failure is retried by the queue. Every write is conditional: the data file carries the
generation it came from and is replaced only by a later one (``If-Match`` on its ETag, or
``If-None-Match: *`` when absent); the manifest, written after it, records what was delivered,
so a delivery repeated after it completed writes nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import numpy as np
import orjson
import pandas as pd

from chargeback.domain import periods
from chargeback.domain.errors import ConflictError, InvalidRequestError
from chargeback.domain.logs import FINOPS_HUB, log_event
from chargeback.reports import service
from chargeback.reports.build import from_bundle
from chargeback.reports.formats import FOCUS_VERSION, focus_frame, focus_parquet, json_value
from chargeback.reports.model import DRAFT, FINAL, Manifest, Report

logger = logging.getLogger(__name__)

CONTAINER = "ingestion"
DATASET = "Costs"
FILE_NAME = "chargeback.parquet"
"""The ``{original-file-name}`` part of the hub's file name: kept by the hub for troubleshooting only."""
MANIFEST = "manifest.json"
MANIFEST_BODY = b"{}"
"""Not a zero-byte blob: the hub's storage event trigger ignores empty blobs (``ignoreEmptyBlobs``)."""
MESSAGE_KIND = "finops-hub-delivery"
SOURCE_NAME = "Token chargeback"
SOURCE_TYPE = "Chargeback"
MAX_RACES = 5

HUB_COLUMNS = frozenset(
    {
        "AvailabilityZone", "BilledCost", "BillingAccountId", "BillingAccountName", "BillingAccountType",
        "BillingCurrency", "BillingPeriodEnd", "BillingPeriodStart", "CapacityReservationId",
        "CapacityReservationStatus", "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargeFrequency",
        "ChargePeriodEnd", "ChargePeriodStart", "CommitmentDiscountCategory", "CommitmentDiscountId",
        "CommitmentDiscountName", "CommitmentDiscountQuantity", "CommitmentDiscountStatus",
        "CommitmentDiscountType", "CommitmentDiscountUnit", "ConsumedQuantity", "ConsumedUnit", "ContractedCost",
        "ContractedUnitPrice", "EffectiveCost", "InvoiceId", "InvoiceIssuerName", "ListCost", "ListUnitPrice",
        "PricingCategory", "PricingCurrency", "PricingQuantity", "PricingUnit", "ProviderName", "PublisherName",
        "RegionId", "RegionName", "ResourceId", "ResourceName", "ResourceType", "ServiceCategory", "ServiceName",
        "ServiceSubcategory", "SkuId", "SkuMeter", "SkuPriceDetails", "SkuPriceId", "SubAccountId",
        "SubAccountName", "SubAccountType", "Tags", "x_CostCenter", "x_SkuDetails", "x_SourceName",
        "x_SourceProvider", "x_SourceType", "x_SourceVersion",
    }
)  # fmt: skip
"""The columns of the hub's ``Costs_raw`` table (the FinOps toolkit's IngestionSetup_RawTables.kql
and its parquet mapping) that the chargeback can fill. The hub ingests a Parquet field only into
a column of that name, so every other column of the export is carried in ``x_SkuDetails``."""
REDUNDANT = frozenset({"x_Model", "x_Deployment", "x_BusinessUnit", "x_Owner", "x_ChargeCategory", "x_AdjustedPeriod"})
"""Export columns the hub keeps in other columns already: ``SkuId``, ``ResourceId``/``ResourceName``,
``Tags``, ``ChargeClass`` and ``ChargePeriodStart``; they are left out."""

NOTHING = "nothing_to_deliver"
ALREADY = "already_delivered"
UNCHANGED = "unchanged"
SUPERSEDED = "superseded"
DELIVERED = "delivered"


@dataclass(frozen=True, slots=True)
class Stamp:
    """What a delivered file came from: the generation, its status and the file's content hash."""

    generation: str
    status: str
    sha256: str

    def rank(self) -> tuple[bool, str]:
        """Later deliveries rank higher: a final above any draft, then newer generations (ids sort by time)."""
        return self.status == FINAL, self.generation

    def metadata(self) -> dict[str, str]:
        return {"generation": self.generation, "status": self.status, "sha256": self.sha256}


@dataclass(frozen=True, slots=True)
class Found:
    """A blob of the hub's folder: the stamp it carries (None when it carries none) and its ETag."""

    stamp: Stamp | None
    etag: str


class HubStore(Protocol):
    """The hub's ``ingestion`` container; the Blob adapter implements it."""

    def find(self, name: str) -> Found | None:
        """The blob ``name`` (path inside the container), or None when it does not exist."""
        ...

    def put(self, name: str, data: bytes, stamp: Stamp, etag: str | None) -> None:
        """Write ``name`` if it is still at ``etag`` (None: only if absent); ``ConflictError`` otherwise."""
        ...

    def put_manifest(self, name: str, stamp: Stamp) -> None:
        """Write the folder's manifest, replacing any earlier one."""
        ...


class DeliveryQueue(Protocol):
    def send(self, message: str) -> None: ...


@dataclass(frozen=True)
class HubContext:
    """The reports a delivery reads, the hub it writes to, and the queue deliveries wait in."""

    reports: service.ReportContext
    hub: HubStore
    queue: DeliveryQueue
    scope: str
    """The folder of this source under each month: ``chargeback/<provider>`` unless set."""


def folder(period: str, scope: str) -> str:
    """The month's folder of this source in the hub's ingestion container."""
    year, month = periods.parse_month(period).split("-")
    return f"{DATASET}/{year}/{month}/{scope}"


def ingestion_id(period: str) -> str:
    """The same for every delivery of a month, so the hub replaces a month rather than adding it twice."""
    return "chargeback-" + periods.parse_month(period).replace("-", "")


def data_name(period: str, scope: str) -> str:
    return f"{folder(period, scope)}/{ingestion_id(period)}__{FILE_NAME}"


def manifest_name(period: str, scope: str) -> str:
    return f"{folder(period, scope)}/{MANIFEST}"


def wants_delivery(manifest: Manifest) -> bool:
    """A final report, or a draft carrying changes to final months (late usage, corrections)."""
    return manifest["status"] == FINAL or _changes_finals(manifest)


def _changes_finals(manifest: Manifest) -> bool:
    return bool(manifest["adjusted_periods"] or manifest.get("corrections"))


def request(context: HubContext, manifest: Manifest) -> bool:
    """After a commit: queue the month's delivery when the committed generation wants one."""
    if not wants_delivery(manifest):
        return False
    context.queue.send(message(manifest["period"]))
    return True


def schedule(context: HubContext, now: datetime) -> list[str]:
    """The timer's part: queue each month that may still change whose hub copy is not its latest."""
    queued = []
    month = periods.month_of(now)
    for _ in range(service.ADJUSTMENT_LOOKBACK_MONTHS + 2):
        target = _target(context, month)
        if target is not None:
            found = context.hub.find(manifest_name(month, context.scope))
            if found is None or found.stamp is None or found.stamp.generation != target[0]["generation"]:
                context.queue.send(message(month))
                queued.append(month)
        month = periods.previous_month(month)
    return queued


def message(period: str) -> str:
    return orjson.dumps({"kind": MESSAGE_KIND, "period": periods.parse_month(period)}).decode()


def is_delivery(text: str) -> bool:
    """True for a delivery message (the report queue also carries report jobs)."""
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return isinstance(document, dict) and document.get("kind") == MESSAGE_KIND


def run(context: HubContext | None, text: str) -> str:
    """Deliver the month a queue message names; with no hub configured (any more), nothing."""
    document = orjson.loads(text)
    period = document.get("period") if isinstance(document, dict) else None
    if not isinstance(period, str):
        raise InvalidRequestError("a FinOps hub delivery message names no period")
    periods.parse_month(period)
    if context is None:
        log_event(logger, FINOPS_HUB, logging.WARNING, period=period, outcome="no_hub_configured")
        return NOTHING
    return deliver(context, period)


def deliver(context: HubContext, period: str) -> str:
    """Bring the hub's copy of ``period`` up to what the chargeback serves; say what was done."""
    target = _target(context, period)
    if target is None:
        return _logged(period, NOTHING)
    manifest, whole = target
    done = context.hub.find(manifest_name(period, context.scope))
    if done is not None and done.stamp is not None and done.stamp.generation == manifest["generation"]:
        return _logged(period, ALREADY, manifest)
    report = from_bundle(context.reports.reports.get_file(period, manifest["generation"], service.BUNDLE))
    data, rows, cost = hub_file(report, whole=whole)
    stamp = Stamp(manifest["generation"], manifest["status"], hashlib.sha256(data).hexdigest())
    if done is not None and done.stamp is not None and done.stamp.sha256 == stamp.sha256:
        return _logged(period, UNCHANGED, manifest)
    if not _put_data(context, data_name(period, context.scope), data, stamp):
        return _logged(period, SUPERSEDED, manifest)
    context.hub.put_manifest(manifest_name(period, context.scope), stamp)
    return _logged(period, DELIVERED, manifest, rows=rows, billed_cost=cost, folder=folder(period, context.scope))


def _target(context: HubContext, period: str) -> tuple[Manifest, bool] | None:
    """The generation ``period`` delivers, and whether whole (final) or its corrections only (draft).

    A draft without corrections delivers nothing, unless an earlier draft's corrections were
    delivered: they are then replaced (by none, if none are left).
    """
    final = context.reports.reports.pointer(period, FINAL)
    if final is not None:
        return final[0], True
    draft = context.reports.reports.pointer(period, DRAFT)
    if draft is None:
        return None
    if _changes_finals(draft[0]) or context.hub.find(manifest_name(period, context.scope)) is not None:
        return draft[0], False
    return None


def _put_data(context: HubContext, name: str, data: bytes, stamp: Stamp) -> bool:
    """Write the data file unless a later generation's is there; False when it is."""
    for _ in range(MAX_RACES):
        there = context.hub.find(name)
        if there is not None and there.stamp is not None:
            if there.stamp.rank() > stamp.rank():
                return False
            if there.stamp.sha256 == stamp.sha256:
                return True
        try:
            context.hub.put(name, data, stamp, None if there is None else there.etag)
        except ConflictError:
            continue
        return True
    raise ConflictError(f"the hub's file {name} kept changing under {MAX_RACES} deliveries")


def hub_file(report: Report, *, whole: bool) -> tuple[bytes, int, Decimal]:
    """The FOCUS Parquet a hub ingests, its rows and its billed cost: the report's (or, not
    ``whole``, its corrections') FOCUS rows, in the columns the hub keeps."""
    frame = focus_frame(report)
    if not whole:
        frame = frame[frame["ChargeClass"] == "Correction"]
    frame = hub_frame(frame, report.invoice_issuer)
    cost = sum((value for value in frame["BilledCost"] if isinstance(value, Decimal)), Decimal(0))
    return focus_parquet(report, frame), len(frame), cost


def hub_frame(frame: pd.DataFrame, provider: str) -> pd.DataFrame:
    """The export's FOCUS rows as the hub's raw table holds them, marked as this source's."""
    kept = [name for name in frame.columns if name in HUB_COLUMNS]
    carried = [name for name in frame.columns if name not in HUB_COLUMNS and name not in REDUNDANT]
    return frame.loc[:, kept].assign(
        x_SkuDetails=_details(frame, carried),
        x_SourceName=SOURCE_NAME,
        x_SourceProvider=provider,
        x_SourceType=SOURCE_TYPE,
        x_SourceVersion=FOCUS_VERSION,
    )


def _details(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """Per row, the carried columns as one JSON object: prices as exact decimal strings, counts as numbers."""
    keys = [name.removeprefix("x_") for name in columns]
    cells = [_plain_column(frame[name]) for name in columns]
    return (
        [
            orjson.dumps({key: value for key, value in zip(keys, row, strict=True) if value is not None}).decode()
            for row in zip(*cells, strict=True)
        ]
        if columns
        else ["{}"] * len(frame)
    )


def _plain_column(column: pd.Series[Any]) -> list[Any]:
    """A column's cells as plain JSON values, whole integer columns at once."""
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iu":
        return list(column.tolist())
    return [json_value(value) for value in column.to_numpy(dtype=object)]


def _logged(period: str, outcome: str, manifest: Mapping[str, Any] | None = None, **facts: object) -> str:
    generation = None if manifest is None else manifest["generation"]
    status = None if manifest is None else manifest["status"]
    log_event(
        logger,
        FINOPS_HUB,
        logging.INFO,
        **{"period": period, "outcome": outcome, "generation": generation, "status": status, **facts},
    )
    return outcome

"""Publishes each committed report generation's lines to Log Analytics, off the commit and idempotently.

Spend is shown where Azure operators look (workbooks, Power BI, KQL) from the report's own
lines, so every figure there equals a report figure. A generation's lines are sent as rows of
the custom table ``ChargebackLines_CL`` through the Logs Ingestion API (the adapter), or written
to a file locally. Log Analytics only appends, so the rows are built for readers to take each
period's latest *complete* generation once:

- every row names its ``Period``, ``Generation`` and ``Status``, and its place ``Line`` among
  the generation's ``Lines``; a generation sent twice (a retry after a partial upload, a
  repeated message) is read once per (``Generation``, ``Line``), and a generation is complete
  when all its lines are there;
- the latest generation of a period is its final if there is one, else its newest draft
  (generation ids sort by time), so republishing or publishing an older generation late never
  doubles or replaces a figure.

Publication runs from its own message on the report queue, queued after a generation commits
(``request``) and by the timer for every month whose served generation is not published yet
(``schedule``), so a failed publication never fails a report and is retried. What was published
is recorded per period (``PublishedStore``), with a condition on what was read, so a repeated
message sends nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
import pandas as pd

from chargeback.domain import periods
from chargeback.domain.errors import ConflictError, InvalidRequestError
from chargeback.domain.logs import PUBLISHED_LINES, log_event
from chargeback.observability import metrics
from chargeback.reports import service
from chargeback.reports.build import from_bundle
from chargeback.reports.model import Manifest, Report

logger = logging.getLogger(__name__)

TABLE = "ChargebackLines_CL"
STREAM = f"Custom-{TABLE}"
MESSAGE_KIND = "log-analytics-lines"

COLUMNS: tuple[tuple[str, str], ...] = (
    ("TimeGenerated", "datetime"),
    ("Period", "string"),
    ("Generation", "string"),
    ("Status", "string"),
    ("GeneratedAt", "datetime"),
    ("Line", "int"),
    ("Lines", "int"),
    ("ChargeCategory", "string"),
    ("AdjustedPeriod", "string"),
    ("SubscriptionId", "string"),
    ("CostCenter", "string"),
    ("BusinessUnit", "string"),
    ("Model", "string"),
    ("Deployment", "string"),
    ("PricingMethod", "string"),
    ("Requests", "long"),
    ("PromptTokens", "long"),
    ("CompletionTokens", "long"),
    ("CachedTokens", "long"),
    ("UnsplitTokens", "long"),
    ("TotalTokens", "long"),
    ("EventTokens", "long"),
    ("LlmLogTokens", "long"),
    ("CostMinor", "long"),
    ("MinorUnits", "int"),
    ("Currency", "string"),
    ("ReconciliationStatus", "string"),
)
"""The stream's columns and types; infra/app/chargeback-lines.columns.json declares the same for
the table and the data collection rule (a test keeps them equal). Cost is carried exactly, in
minor units (``CostMinor`` / 10^``MinorUnits``), never as a float."""

_FROM_LINE = {
    "ChargeCategory": "charge_category",
    "AdjustedPeriod": "adjusted_period",
    "SubscriptionId": "subscription_id",
    "CostCenter": "cost_center",
    "BusinessUnit": "business_unit",
    "Model": "model",
    "Deployment": "deployment",
    "PricingMethod": "pricing",
    "Requests": "requests",
    "PromptTokens": "prompt_tokens",
    "CompletionTokens": "completion_tokens",
    "CachedTokens": "cached_tokens",
    "UnsplitTokens": "unsplit_tokens",
    "TotalTokens": "total_tokens",
    "EventTokens": "event_tokens",
    "LlmLogTokens": "llm_log_tokens",
    "Currency": "currency",
    "ReconciliationStatus": "reconciliation_status",
}

NOTHING = "nothing_to_publish"
ALREADY = "already"
PUBLISHED = "published"


class LineSink(Protocol):
    """Where rows go: the Logs Ingestion API (adapter) or a local file."""

    def send(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Send every row, or raise (``PublishError``, ``StorageError``); a retry may send some again."""
        ...


class PublishedStore(Protocol):
    """What was published per period: the generation, read with an ETag and recorded on it."""

    def find(self, period: str) -> tuple[str, str] | None:
        """The generation published last for ``period`` and the record's ETag, or None."""
        ...

    def record(self, period: str, generation: str, etag: str | None) -> None:
        """Record ``generation`` if the record is still at ``etag`` (None: absent); ``ConflictError`` otherwise."""
        ...


class PublicationQueue(Protocol):
    def send(self, message: str) -> None: ...


@dataclass(frozen=True)
class PublishContext:
    """The reports a publication reads, where rows go, what was published, and the queue it waits in."""

    reports: service.ReportContext
    sink: LineSink
    published: PublishedStore
    queue: PublicationQueue


def rows(report: Report, manifest: Manifest, published_at: datetime) -> list[dict[str, Any]]:
    """The generation's report lines as rows of the stream, in the report's order."""
    lines = report.lines
    cost_minor = report.line_details["cost_minor"].tolist()
    common = {
        "TimeGenerated": _stamp(published_at),
        "Period": manifest["period"],
        "Generation": manifest["generation"],
        "Status": manifest["status"],
        "GeneratedAt": manifest["generated_at"],
        "Lines": len(lines),
        "MinorUnits": report.minor_units,
    }
    columns = {name: lines[source].tolist() for name, source in _FROM_LINE.items()}
    out = []
    for index in range(len(lines)):
        row = {**common, "Line": index + 1, "CostMinor": int(cost_minor[index])}
        for name, values in columns.items():
            row[name] = _plain(values[index], name)
        out.append(row)
    return out


def _plain(value: Any, name: str) -> Any:
    """A cell as the stream's type: counts as int, text as str, nothing as an empty string."""
    if dict(COLUMNS)[name] == "long":
        return int(value)
    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def message(period: str) -> str:
    return orjson.dumps({"kind": MESSAGE_KIND, "period": periods.parse_month(period)}).decode()


def is_publication(text: str) -> bool:
    """True for a publication message (the report queue also carries report jobs and hub deliveries)."""
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return isinstance(document, dict) and document.get("kind") == MESSAGE_KIND


def request(context: PublishContext, manifest: Manifest) -> None:
    """After a commit: queue the period's publication."""
    context.queue.send(message(manifest["period"]))


def schedule(context: PublishContext, now: datetime) -> list[str]:
    """The timer's part: queue each month that may still change whose served generation is not published."""
    queued = []
    month = periods.month_of(now)
    for _ in range(service.ADJUSTMENT_LOOKBACK_MONTHS + 2):
        served = service.current(context.reports, month)
        found = context.published.find(month)
        if served is not None and (found is None or found[0] != served["generation"]):
            context.queue.send(message(month))
            queued.append(month)
        month = periods.previous_month(month)
    return queued


def run(context: PublishContext | None, text: str) -> str:
    """Publish the month a queue message names; with no destination configured, nothing."""
    document = orjson.loads(text)
    period = document.get("period") if isinstance(document, dict) else None
    if not isinstance(period, str):
        raise InvalidRequestError("a publication message names no period")
    periods.parse_month(period)
    if context is None:
        log_event(logger, PUBLISHED_LINES, logging.WARNING, period=period, outcome="no_destination_configured")
        return NOTHING
    return publish(context, period)


def publish(context: PublishContext, period: str) -> str:
    """Send the lines of the generation ``period`` serves, unless they were sent already; say what was done.

    What the sink raises propagates (the queue delivers the message again); the record is
    written only after every row was taken.
    """
    manifest = service.current(context.reports, period)
    if manifest is None:
        return _logged(period, NOTHING, None, 0)
    found = context.published.find(period)
    if found is not None and found[0] == manifest["generation"]:
        return _logged(period, ALREADY, manifest, 0)
    report = from_bundle(context.reports.reports.get_file(period, manifest["generation"], service.BUNDLE))
    sent = rows(report, manifest, context.reports.clock())
    try:
        context.sink.send(sent)
    except Exception:
        metrics.lines_published("failed", manifest["status"], 0)
        raise
    # Another publication that recorded first sent the same rows, or a later generation's.
    with contextlib.suppress(ConflictError):
        context.published.record(period, manifest["generation"], None if found is None else found[1])
    return _logged(period, PUBLISHED, manifest, len(sent))


def _logged(period: str, outcome: str, manifest: Manifest | None, sent: int) -> str:
    status = "" if manifest is None else manifest["status"]
    if manifest is not None:
        metrics.lines_published(outcome, status, sent)
    generation = None if manifest is None else manifest["generation"]
    log_event(logger, PUBLISHED_LINES, period=period, outcome=outcome, generation=generation, status=status, rows=sent)
    return outcome

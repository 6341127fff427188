"""Reads the LLM-log rows joined to their gateway-log subscription: the KQL, the CSV export, row checks."""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Protocol

from chargeback.domain.errors import ConfigurationError, MonitorError
from chargeback.domain.kql import kql_datetime
from chargeback.domain.usage import UNKNOWN

SCOPE_STREAMED = "streamed"
SCOPE_ALL = "all"
SCOPE_OFF = "off"
SCOPES = (SCOPE_STREAMED, SCOPE_ALL, SCOPE_OFF)
"""What the LLM logs bill: streamed calls only (the usage events bill the rest), every call, or nothing."""

LLM_LOG_TABLE = "ApiManagementGatewayLlmLog"
GATEWAY_LOG_TABLE = "ApiManagementGatewayLogs"

EXPORT_COLUMNS = (
    "TimeGenerated",
    "CorrelationId",
    "ApimSubscriptionId",
    "ModelName",
    "DeploymentName",
    "OperationName",
    "PromptTokens",
    "CompletionTokens",
    "TotalTokens",
    "IsStreamCompletion",
    "SequenceNumber",
)
"""The joined query's columns, in order: what the query projects and what an export must hold."""

GATEWAY_LOG_SLACK = timedelta(days=1)
"""The gateway-log row of a call is looked for this far either side of the LLM-log window."""

LLM_LOG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ApiVersion", "string"),
    ("_BilledSize", "real"),
    ("CompletionTokens", "int"),
    ("CorrelationId", "string"),
    ("DeploymentName", "string"),
    ("_IsBillable", "string"),
    ("IsStreamCompletion", "bool"),
    ("ModelName", "string"),
    ("OperationName", "string"),
    ("PromptTokens", "int"),
    ("Region", "string"),
    ("RequestId", "string"),
    ("RequestMessages", "dynamic"),
    ("_ResourceId", "string"),
    ("ResponseMessages", "dynamic"),
    ("SequenceNumber", "int"),
    ("SourceSystem", "string"),
    ("_SubscriptionId", "string"),
    ("TenantId", "string"),
    ("TimeGenerated", "datetime"),
    ("TotalTokens", "int"),
    ("Type", "string"),
)
"""ApiManagementGatewayLlmLog as the Azure Monitor Logs table reference documents it."""

GATEWAY_LOG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ApiId", "string"),
    ("ApimSubscriptionId", "string"),
    ("ApiRevision", "string"),
    ("BackendId", "string"),
    ("BackendMethod", "string"),
    ("BackendProtocol", "string"),
    ("BackendRequestBody", "string"),
    ("BackendRequestHeaders", "dynamic"),
    ("BackendResponseBody", "string"),
    ("BackendResponseCode", "int"),
    ("BackendResponseHeaders", "dynamic"),
    ("BackendTime", "long"),
    ("BackendUrl", "string"),
    ("_BilledSize", "real"),
    ("Cache", "string"),
    ("CacheTime", "long"),
    ("CallerIpAddress", "string"),
    ("Category", "string"),
    ("ClientProtocol", "string"),
    ("ClientTime", "long"),
    ("ClientTlsVersion", "string"),
    ("CorrelationId", "string"),
    ("Errors", "dynamic"),
    ("_IsBillable", "string"),
    ("IsMasterTrace", "bool"),
    ("IsRequestSuccess", "bool"),
    ("IsTraceAllowed", "bool"),
    ("IsTraceExpired", "bool"),
    ("IsTraceRequested", "bool"),
    ("LastErrorElapsed", "long"),
    ("LastErrorMessage", "string"),
    ("LastErrorReason", "string"),
    ("LastErrorScope", "string"),
    ("LastErrorSection", "string"),
    ("LastErrorSource", "string"),
    ("Method", "string"),
    ("OperationId", "string"),
    ("ProductId", "string"),
    ("Region", "string"),
    ("RequestBody", "string"),
    ("RequestHeaders", "dynamic"),
    ("RequestSize", "int"),
    ("_ResourceId", "string"),
    ("ResponseBody", "string"),
    ("ResponseCode", "int"),
    ("ResponseHeaders", "dynamic"),
    ("ResponseSize", "int"),
    ("SourceSystem", "string"),
    ("_SubscriptionId", "string"),
    ("TenantId", "string"),
    ("TimeGenerated", "datetime"),
    ("TotalTime", "long"),
    ("TraceRecords", "dynamic"),
    ("Type", "string"),
    ("Url", "string"),
    ("UserId", "string"),
)
"""ApiManagementGatewayLogs as the Azure Monitor Logs table reference documents it."""


@dataclass(frozen=True, slots=True)
class LlmLogRow:
    """One LLM-log row with its call's APIM subscription (empty when the gateway-log row is not there)."""

    time: datetime
    correlation_id: str
    subscription_id: str
    model: str
    deployment: str
    operation: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    streamed: bool
    sequence_number: int


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row that cannot be billed, with where it came from and why."""

    where: str
    reason: str
    detail: str


class LlmLogSource(Protocol):
    """Where the joined LLM-log rows come from: Log Analytics or a CSV export."""

    def rows(self, days: Collection[date]) -> Iterator[LlmLogRow | RejectedRow]:
        """Every row timed on one of ``days`` (UTC); rows that cannot be read come as ``RejectedRow``."""
        ...


def llm_log_query(start: datetime, end: datetime, *, scope: str) -> str:
    """The KQL that lists LLM-log rows timed in [start, end) with their call's APIM subscription.

    The gateway log holds the subscription; it is joined on ``CorrelationId`` (left outer, so a
    call whose gateway-log row has not arrived yet comes back with an empty subscription and is
    shown as unattributed, never dropped). Its window is wider by ``GATEWAY_LOG_SLACK`` each side
    and it is reduced to one row per call first, so the join cannot multiply LLM-log rows. Rows
    are not summed here: a call split over several rows is counted once by the caller, the same
    code that reads a CSV export.
    """
    if scope not in (SCOPE_STREAMED, SCOPE_ALL):
        raise ValueError(f"no query for the scope {scope!r}")
    lines = [
        f"let WindowStart = {kql_datetime(start)};",
        f"let WindowEnd = {kql_datetime(end)};",
        f"let Subscriptions = {GATEWAY_LOG_TABLE}",
        f"    | where TimeGenerated >= WindowStart - {_timespan(GATEWAY_LOG_SLACK)}"
        f" and TimeGenerated < WindowEnd + {_timespan(GATEWAY_LOG_SLACK)}",
        "    | where isnotempty(CorrelationId) and isnotempty(ApimSubscriptionId)",
        "    | summarize ApimSubscriptionId = take_any(ApimSubscriptionId) by CorrelationId;",
        LLM_LOG_TABLE,
        "| where TimeGenerated >= WindowStart and TimeGenerated < WindowEnd",
    ]
    if scope == SCOPE_STREAMED:
        lines.append("| where IsStreamCompletion == true")
    lines += [
        "| join kind=leftouter Subscriptions on CorrelationId",
        f"| project {', '.join(EXPORT_COLUMNS)}",
    ]
    return "\n".join(lines)


def _timespan(span: timedelta) -> str:
    return f"{span.days}d"


def parse_record(record: Mapping[str, object], where: str) -> LlmLogRow | RejectedRow:
    """A joined row (Log Analytics values or CSV text) as an ``LlmLogRow``, or why it cannot be one."""
    moment = _time(record.get("TimeGenerated"))
    if moment is None:
        return RejectedRow(where, "invalid_time", f"TimeGenerated is not a timestamp: {record.get('TimeGenerated')!r}")
    correlation = _text(record.get("CorrelationId"))
    if not correlation:
        return RejectedRow(where, "missing_correlation_id", "no CorrelationId: the call cannot be counted once")
    counts: dict[str, int] = {}
    for column in ("PromptTokens", "CompletionTokens", "TotalTokens", "SequenceNumber"):
        value = _count(record.get(column))
        if value is None:
            return RejectedRow(where, "invalid_tokens", f"{column} is not a whole non-negative number")
        counts[column] = value
    streamed = _flag(record.get("IsStreamCompletion"))
    if streamed is None:
        return RejectedRow(where, "invalid_field", "IsStreamCompletion is not true or false")
    total = counts["TotalTokens"] or counts["PromptTokens"] + counts["CompletionTokens"]
    return LlmLogRow(
        time=moment,
        correlation_id=correlation,
        subscription_id=_text(record.get("ApimSubscriptionId")),
        model=_text(record.get("ModelName")) or UNKNOWN,
        deployment=_text(record.get("DeploymentName")) or UNKNOWN,
        operation=_text(record.get("OperationName")) or UNKNOWN,
        prompt_tokens=counts["PromptTokens"],
        completion_tokens=counts["CompletionTokens"],
        total_tokens=total,
        streamed=streamed,
        sequence_number=counts["SequenceNumber"],
    )


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    else:
        text = _text(value).replace("Z", "+00:00")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


MAX_TOKENS = 10**12
"""No single call uses a trillion tokens: a bigger count is corruption, not usage."""


def _count(value: object) -> int | None:
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    else:
        text = _text(value)
        if not text.isdigit():
            return None
        number = int(text)
    return number if 0 <= number < MAX_TOKENS else None


def _flag(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    text = _text(value).lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0", ""):
        return False
    return None


class CsvLlmLogExport:
    """An ``LlmLogSource`` over a CSV export of the joined query's rows, for running offline.

    The header must name every column of ``EXPORT_COLUMNS`` (in any order; others are ignored).
    A missing column is a ``ConfigurationError``; a row that cannot be read is a ``RejectedRow``
    naming its line, so one bad line never hides the rest of the file.
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)

    def rows(self, days: Collection[date]) -> Iterator[LlmLogRow | RejectedRow]:
        wanted = set(days)
        for line, record in self._records():
            parsed = parse_record(record, f"{self._path.name}, line {line}")
            if isinstance(parsed, RejectedRow) or parsed.time.date() in wanted:
                yield parsed

    def _records(self) -> Iterator[tuple[int, dict[str, str]]]:
        try:
            with self._path.open(encoding="utf-8-sig", newline="") as handle:
                reader = csv.DictReader(handle)
                missing = [name for name in EXPORT_COLUMNS if name not in (reader.fieldnames or [])]
                if missing:
                    raise ConfigurationError(f"the LLM-log export {self._path.name} lacks {', '.join(missing)}")
                for record in reader:
                    yield reader.line_num, {name: record.get(name) or "" for name in EXPORT_COLUMNS}
        except OSError as exc:
            raise MonitorError(f"cannot read the LLM-log export {self._path.name}: {exc.strerror}") from exc
        except (UnicodeDecodeError, csv.Error) as exc:
            raise MonitorError(f"the LLM-log export {self._path.name} is not UTF-8 CSV: {exc}") from exc

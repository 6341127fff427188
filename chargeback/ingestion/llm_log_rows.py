"""The LLM logs as the workspace holds them: the tables, the usage query, and the checks on each row."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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
    """A row that cannot be billed, with where it came from, why, and when (None: its time is unreadable)."""

    where: str
    reason: str
    detail: str
    time: datetime | None = None
    streamed: bool | None = None


MAX_IDENTIFIER_CHARS = 512
"""The longest subscription, model, deployment or operation name kept, as for usage events:
anything longer is not a name, and would not fit a ledger row."""

USAGE_COLUMNS = (
    "Kind",
    "ApimSubscriptionId",
    "ModelName",
    "DeploymentName",
    "OperationName",
    "Calls",
    "PromptTokens",
    "CompletionTokens",
    "TotalTokens",
    "Rows",
    "Reason",
    "Sample",
)
"""The usage query's columns, in order. ``Kind`` says what a row is: ``usage`` (calls summed per
subscription, model, deployment and operation), ``rejected`` (rows that cannot be billed, per
reason, with one correlation id as a sample) or ``read`` (how many rows the window held)."""

KIND_USAGE, KIND_REJECTED, KIND_READ = "usage", "rejected", "read"


def llm_log_usage_query(start: datetime, end: datetime, *, scope: str, spread: timedelta) -> str:
    """The KQL that counts, once each, the calls whose first LLM-log row is timed in [start, end).

    It applies the counting rule of ``llm_log_calls`` in the workspace, so an answer grows with
    subscriptions × models, never with calls: rows are read with ``spread`` either side of the
    window; each call is reduced to one row (its first row's time and names, the largest count of
    each kind any of its rows carries); calls whose first row lies outside the window are left to
    the window that holds it. The call's APIM subscription comes from the gateway log, joined on
    ``CorrelationId`` (left outer: a call whose gateway-log row has not arrived comes back with an
    empty subscription and is kept as unattributed, never dropped), looked for
    ``GATEWAY_LOG_SLACK`` either side and only for the window's calls. Rows that cannot be billed
    are counted by reason, as the CSV export's rows are checked one by one.
    """
    if scope not in (SCOPE_STREAMED, SCOPE_ALL):
        raise ValueError(f"no query for the scope {scope!r}")
    spread_text = _timespan(spread)
    lines = [
        f"let WindowStart = {kql_datetime(start)};",
        f"let WindowEnd = {kql_datetime(end)};",
        f"let RowsStart = WindowStart - {spread_text};",
        f"let RowsEnd = WindowEnd + {spread_text};",
        f"let MaxName = {MAX_IDENTIFIER_CHARS};",
        f"let MaxCount = {MAX_TOKENS};",
        *_checked_rows(scope),
        *_calls(),
        *_usage(),
        "union Usage, Rejected, Read",
        f"| project {', '.join(USAGE_COLUMNS)}",
    ]
    return "\n".join(lines)


def _checked_rows(scope: str) -> list[str]:
    """``Rows``: the LLM-log rows read (in scope), each with why it cannot be billed, if it cannot."""
    streamed = ["    | where IsStreamCompletion == true"] if scope == SCOPE_STREAMED else []
    return [
        f"let Rows = {LLM_LOG_TABLE}",
        "    | where TimeGenerated >= RowsStart and TimeGenerated < RowsEnd",
        *streamed,
        "    | extend Prompt = coalesce(PromptTokens, 0), Completion = coalesce(CompletionTokens, 0),"
        " Total = coalesce(TotalTokens, 0), Sequence = coalesce(SequenceNumber, 0)",
        "    | extend Reason = case(",
        '        isempty(CorrelationId), "missing_correlation_id",',
        "        Prompt < 0 or Completion < 0 or Total < 0 or Sequence < 0"
        " or Prompt >= MaxCount or Completion >= MaxCount or Total >= MaxCount or Sequence >= MaxCount,",
        '        "invalid_tokens",',
        "        strlen(ModelName) > MaxName or strlen(DeploymentName) > MaxName"
        ' or strlen(OperationName) > MaxName, "invalid_field",',
        '        "")',
        "    | extend InWindow = TimeGenerated >= WindowStart and TimeGenerated < WindowEnd;",
    ]


def _calls() -> list[str]:
    """``Calls``: one row per call whose first row is in the window, with its subscription's key."""
    slack = _timespan(GATEWAY_LOG_SLACK)
    return [
        "let Calls = materialize(Rows",
        '    | where Reason == ""',
        "    | extend RowTotal = iff(Total == 0, Prompt + Completion, Total),",
        "        Rank = tolong((TimeGenerated - RowsStart) / 1tick) * 1000000 + min_of(Sequence, 999999)",
        "    | summarize arg_min(Rank, TimeGenerated, ModelName, DeploymentName, OperationName),",
        "        Prompt = max(Prompt), Completion = max(Completion), Total = max(RowTotal) by CorrelationId",
        "    | where TimeGenerated >= WindowStart and TimeGenerated < WindowEnd);",
        f"let Subscriptions = {GATEWAY_LOG_TABLE}",
        f"    | where TimeGenerated >= WindowStart - {slack} and TimeGenerated < WindowEnd + {slack}",
        "    | where isnotempty(CorrelationId) and isnotempty(ApimSubscriptionId)",
        "    | join kind=leftsemi (Calls | project CorrelationId) on CorrelationId",
        "    | summarize ApimSubscriptionId = take_any(ApimSubscriptionId) by CorrelationId;",
    ]


def _usage() -> list[str]:
    """``Usage``, ``Rejected`` and ``Read``: the answer's three kinds of row."""
    return [
        "let Usage = Calls",
        "    | join kind=leftouter Subscriptions on CorrelationId",
        "    | summarize Calls = count(), PromptTokens = sum(Prompt), CompletionTokens = sum(Completion),",
        "        TotalTokens = sum(Total) by ApimSubscriptionId, ModelName, DeploymentName, OperationName",
        f'    | extend Kind = "{KIND_USAGE}";',
        "let Rejected = Rows",
        '    | where InWindow and Reason != ""',
        "    | summarize Rows = count(), Sample = take_any(substring(CorrelationId, 0, 64)) by Reason",
        f'    | extend Kind = "{KIND_REJECTED}";',
        "let Read = Rows",
        "    | where InWindow",
        "    | summarize Rows = count()",
        f'    | extend Kind = "{KIND_READ}";',
    ]


def _timespan(span: timedelta) -> str:
    if span % timedelta(days=1) == timedelta(0):
        return f"{span.days}d"
    if span % timedelta(hours=1) == timedelta(0):
        return f"{span // timedelta(hours=1)}h"
    return f"{span // timedelta(minutes=1)}m"


def parse_record(record: Mapping[str, object], where: str) -> LlmLogRow | RejectedRow:
    """A joined row (Log Analytics values or CSV text) as an ``LlmLogRow``, or why it cannot be one."""
    moment = _time(record.get("TimeGenerated"))
    if moment is None:
        return RejectedRow(where, "invalid_time", f"TimeGenerated is not a timestamp: {record.get('TimeGenerated')!r}")
    streamed = _flag(record.get("IsStreamCompletion"))
    if streamed is None:
        return RejectedRow(where, "invalid_field", "IsStreamCompletion is not true or false", moment)
    correlation = text_of(record.get("CorrelationId"))
    if not correlation:
        return RejectedRow(
            where, "missing_correlation_id", "no CorrelationId: the call cannot be counted once", moment, streamed
        )
    counts: dict[str, int] = {}
    for column in ("PromptTokens", "CompletionTokens", "TotalTokens", "SequenceNumber"):
        value = whole_count(record.get(column))
        if value is None:
            return RejectedRow(
                where, "invalid_tokens", f"{column} is not a whole non-negative number", moment, streamed
            )
        counts[column] = value
    names = {column: record.get(column) for column in _NAME_COLUMNS}
    problem = identifier_problem(names)
    if problem is not None:
        return RejectedRow(where, "invalid_field", problem, moment, streamed)
    total = counts["TotalTokens"] or counts["PromptTokens"] + counts["CompletionTokens"]
    return LlmLogRow(
        time=moment,
        correlation_id=correlation,
        subscription_id=text_of(names["ApimSubscriptionId"]),
        model=text_of(names["ModelName"]) or UNKNOWN,
        deployment=text_of(names["DeploymentName"]) or UNKNOWN,
        operation=text_of(names["OperationName"]) or UNKNOWN,
        prompt_tokens=counts["PromptTokens"],
        completion_tokens=counts["CompletionTokens"],
        total_tokens=total,
        streamed=streamed,
        sequence_number=counts["SequenceNumber"],
    )


_NAME_COLUMNS = ("ApimSubscriptionId", "ModelName", "DeploymentName", "OperationName")


def identifier_problem(names: Mapping[str, object]) -> str | None:
    """Why these names cannot be stored (too long, not text), or None when they can."""
    for column, value in names.items():
        text = "" if value is None else str(value)
        if len(text) > MAX_IDENTIFIER_CHARS:
            return f"{column} is {len(text)} characters long; at most {MAX_IDENTIFIER_CHARS}"
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return f"{column} is not valid Unicode text"
    return None


def text_of(value: object) -> str:
    return "" if value is None else str(value).strip()


def _time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    else:
        text = text_of(value).replace("Z", "+00:00")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


MAX_TOKENS = 10**12
"""No single call uses a trillion tokens: a bigger count is corruption, not usage."""


def whole_count(value: object) -> int | None:
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    else:
        text = text_of(value)
        if not text.isdigit():
            return None
        number = int(text)
    return number if 0 <= number < MAX_TOKENS else None


def _flag(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    text = text_of(value).lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0", ""):
        return False
    return None

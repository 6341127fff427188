"""Azure Monitor's side of reconciliation: the source protocol, the AppMetrics query, the CSV export."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Protocol

from chargeback.domain.errors import MonitorError
from chargeback.domain.kql import kql_datetime, kql_string

TABLE = "AppMetrics"
TOTAL_TOKENS = "Total Tokens"
PROMPT_TOKENS = "Prompt Tokens"
COMPLETION_TOKENS = "Completion Tokens"
METRIC_NAMES = (TOTAL_TOKENS, PROMPT_TOKENS, COMPLETION_TOKENS)
"""The metrics ``azure-openai-emit-token-metric`` writes, one AppMetrics row per time series a minute."""

NAMESPACE_PROPERTY = "_MS.MetricNamespace"
"""Where a custom metric's namespace lands: AppMetrics has no namespace column, so Application
Insights keeps it as this entry of ``Properties`` (``customDimensions`` in the classic schema)."""

APP_METRICS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("AppRoleInstance", "string"),
    ("AppRoleName", "string"),
    ("AppVersion", "string"),
    ("_BilledSize", "real"),
    ("ClientBrowser", "string"),
    ("ClientCity", "string"),
    ("ClientCountryOrRegion", "string"),
    ("ClientIP", "string"),
    ("ClientModel", "string"),
    ("ClientOS", "string"),
    ("ClientStateOrProvince", "string"),
    ("ClientType", "string"),
    ("IKey", "string"),
    ("_IsBillable", "string"),
    ("ItemCount", "int"),
    ("Max", "real"),
    ("Min", "real"),
    ("Name", "string"),
    ("OperationId", "string"),
    ("OperationName", "string"),
    ("ParentId", "string"),
    ("Properties", "dynamic"),
    ("ResourceGUID", "string"),
    ("_ResourceId", "string"),
    ("SDKVersion", "string"),
    ("SessionId", "string"),
    ("SourceSystem", "string"),
    ("_SubscriptionId", "string"),
    ("Sum", "real"),
    ("SyntheticSource", "string"),
    ("TenantId", "string"),
    ("TimeGenerated", "datetime"),
    ("Type", "string"),
    ("UserAccountId", "string"),
    ("UserAuthenticatedId", "string"),
    ("UserId", "string"),
)
"""The AppMetrics table as the Azure Monitor Logs table reference documents it."""

# Columns of the query's result, read by name by the Log Analytics adapter.
SUBSCRIPTION_COLUMN = "SubscriptionId"
TOTAL_COLUMN = "TotalTokens"
PROMPT_COLUMN = "PromptTokens"
COMPLETION_COLUMN = "CompletionTokens"


@dataclass(frozen=True, slots=True)
class MonitorTotals:
    """Tokens Azure Monitor counted for one subscription over a window."""

    total_tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: MonitorTotals) -> MonitorTotals:
        return MonitorTotals(
            self.total_tokens + other.total_tokens,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


class MonitorSource(Protocol):
    """Where reconciliation reads Azure Monitor's token totals from."""

    def token_totals(self, start: datetime, end: datetime) -> dict[str, MonitorTotals]:
        """Totals per subscription for token metrics timed in [start, end), both aware UTC."""
        ...


def check_window(start: datetime, end: datetime) -> None:
    """Reject a window that is not two aware datetimes in order; a naive time is a caller's bug."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("the window's bounds must be timezone-aware")
    if end < start:
        raise ValueError(f"the window ends ({end.isoformat()}) before it starts ({start.isoformat()})")


def token_totals_query(start: datetime, end: datetime, *, namespace: str | None, dimension: str) -> str:
    """The KQL that sums the token metrics per subscription over [start, end).

    AppMetrics rows are pre-aggregated (one row holds many requests), so ``Sum`` is summed,
    never counted. The window is in the query as well as in the request's timespan, whose
    bounds are not half-open. A row whose namespace is recorded and differs is left out; a row
    with none recorded is kept, so an unrecorded namespace cannot hide every row.
    """
    check_window(start, end)
    lines = [
        TABLE,
        f"| where TimeGenerated >= {kql_datetime(start)} and TimeGenerated < {kql_datetime(end)}",
        f"| where Name in ({', '.join(kql_string(name) for name in METRIC_NAMES)})",
    ]
    if namespace:
        lines += [
            f"| extend MetricNamespace = tostring(Properties[{kql_string(NAMESPACE_PROPERTY)}])",
            f"| where isempty(MetricNamespace) or MetricNamespace == {kql_string(namespace)}",
        ]
    lines += [
        f"| extend {SUBSCRIPTION_COLUMN} = tostring(Properties[{kql_string(dimension)}])",
        f"| summarize {TOTAL_COLUMN} = sumif(Sum, Name == {kql_string(TOTAL_TOKENS)}),"
        f" {PROMPT_COLUMN} = sumif(Sum, Name == {kql_string(PROMPT_TOKENS)}),"
        f" {COMPLETION_COLUMN} = sumif(Sum, Name == {kql_string(COMPLETION_TOKENS)})"
        f" by {SUBSCRIPTION_COLUMN}",
    ]
    return "\n".join(lines)


def to_tokens(value: object, what: str) -> int:
    """A token count from AppMetrics' ``real`` Sum, rounded half-to-even to the nearest integer.

    Every Sum adds up whole token counts, and a double holds every integer below 2**53
    exactly, so the value is already whole; rounding (rather than truncating) only absorbs
    representation noise such as 41.99999999 and never turns it into 41. The conversion goes
    through ``Decimal`` so no float survives it. A negative, missing or non-finite value is
    not a count and raises ``MonitorError``.
    """
    if isinstance(value, bool) or value is None:
        raise MonitorError(f"{what}: expected a number, got {value!r}")
    try:
        if isinstance(value, float):
            if not math.isfinite(value):
                raise MonitorError(f"{what}: expected a finite number, got {value!r}")
            number = Decimal(value)
        elif isinstance(value, int | Decimal):
            number = Decimal(value)
        elif isinstance(value, str):
            number = Decimal(value.strip())
        else:
            raise MonitorError(f"{what}: expected a number, got {value!r}")
    except InvalidOperation as exc:
        raise MonitorError(f"{what}: expected a number, got {value!r}") from exc
    if not number.is_finite():
        raise MonitorError(f"{what}: expected a finite number, got {value!r}")
    if number < 0:
        raise MonitorError(f"{what}: token counts cannot be negative, got {value!r}")
    return int(number.to_integral_value(rounding=ROUND_HALF_EVEN))


def dimension_text(value: object) -> str:
    """A dimension's value as KQL's ``tostring`` renders it: missing or null is empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_TIME_COLUMNS = ("TimeGenerated", "TimeGenerated [UTC]")
_REQUIRED = ("Name", "Sum", "Properties")
_PORTAL_TIME_FORMATS = ("%m/%d/%Y, %I:%M:%S.%f %p", "%m/%d/%Y, %I:%M:%S %p")


_CsvReader = Any  # csv's reader type is private; only next() and line_num are used


class CsvExportSource:
    """A ``MonitorSource`` over a CSV export of AppMetrics rows, for reconciling offline.

    The export needs the columns TimeGenerated (or the portal's "TimeGenerated [UTC]"), Name,
    Sum and Properties (a JSON object); others, such as ItemCount, are ignored, and order does
    not matter. Times without an offset are UTC, as Log Analytics writes them. The file is read
    on every call and checked whole: a malformed row raises ``MonitorError`` naming its line,
    even when the window or the filters would have skipped it.
    """

    def __init__(self, path: str | Path, *, namespace: str | None, dimension: str) -> None:
        self._path = Path(path)
        self._namespace = namespace or None
        self._dimension = dimension

    def token_totals(self, start: datetime, end: datetime) -> dict[str, MonitorTotals]:
        check_window(start, end)
        sums: dict[str, dict[str, Decimal]] = {}
        for line, row in self._rows():
            where = f"{self._path}, line {line}"
            moment = _export_time(row["time"], where)
            name = row["Name"]
            value = _export_sum(row["Sum"], where)
            properties = _export_properties(row["Properties"], where)
            if name not in METRIC_NAMES or not start <= moment < end:
                continue
            if value < 0:
                raise MonitorError(f"{where}: a {name} Sum cannot be negative, got {value}")
            recorded = dimension_text(properties.get(NAMESPACE_PROPERTY))
            if self._namespace and recorded and recorded != self._namespace:
                continue
            subscription = dimension_text(properties.get(self._dimension))
            per_name = sums.setdefault(subscription, dict.fromkeys(METRIC_NAMES, Decimal(0)))
            per_name[name] += value
        return {subscription: _totals(subscription, per_name) for subscription, per_name in sums.items()}

    def _rows(self) -> Iterator[tuple[int, dict[str, str]]]:
        try:
            with self._path.open(encoding="utf-8-sig", newline="") as handle:
                yield from self._records(csv.reader(handle))
        except OSError as exc:
            raise MonitorError(f"cannot read the monitor export {self._path}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise MonitorError(f"{self._path}: the export is not UTF-8: {exc}") from exc

    def _records(self, reader: _CsvReader) -> Iterator[tuple[int, dict[str, str]]]:
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise MonitorError(f"{self._path}, line 1: not valid CSV: {exc}") from exc
        if header is None:
            raise MonitorError(f"{self._path}, line 1: the export is empty; expected a header row")
        columns = {name.strip(): index for index, name in enumerate(header)}
        time_column = next((name for name in _TIME_COLUMNS if name in columns), None)
        missing = [name for name in _REQUIRED if name not in columns]
        if time_column is None or missing:
            missing = ([] if time_column else ["TimeGenerated"]) + missing
            raise MonitorError(f"{self._path}, line 1: the header lacks {', '.join(missing)}")
        wanted = {"time": columns[time_column]} | {name: columns[name] for name in _REQUIRED}
        line = reader.line_num + 1
        while True:
            try:
                record = next(reader, None)
            except csv.Error as exc:
                raise MonitorError(f"{self._path}, line {line}: not valid CSV: {exc}") from exc
            if record is None:
                return
            if any(field.strip() for field in record):
                if len(record) != len(header):
                    raise MonitorError(f"{self._path}, line {line}: expected {len(header)} fields, got {len(record)}")
                yield line, {key: record[index] for key, index in wanted.items()}
            line = reader.line_num + 1


def _totals(subscription: str, per_name: Mapping[str, Decimal]) -> MonitorTotals:
    def tokens(name: str) -> int:
        return to_tokens(per_name[name], f"{subscription!r}: {name}")

    return MonitorTotals(tokens(TOTAL_TOKENS), tokens(PROMPT_TOKENS), tokens(COMPLETION_TOKENS))


def _export_time(raw: str, where: str) -> datetime:
    text = raw.strip()
    moment: datetime | None = None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        for layout in _PORTAL_TIME_FORMATS:
            try:
                moment = datetime.strptime(text, layout)
                break
            except ValueError:
                continue
    if moment is None:
        raise MonitorError(f"{where}: TimeGenerated is not a timestamp: {raw!r}")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _export_sum(raw: str, where: str) -> Decimal:
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise MonitorError(f"{where}: Sum is not a number: {raw!r}") from None
    if not value.is_finite():
        raise MonitorError(f"{where}: Sum is not a finite number: {raw!r}")
    return value


def _export_properties(raw: str, where: str) -> Mapping[str, Any]:
    if not raw.strip():
        return {}
    try:
        properties = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise MonitorError(f"{where}: Properties is not JSON: {exc.msg}") from exc
    if not isinstance(properties, dict):
        raise MonitorError(f"{where}: Properties must be a JSON object, got {raw!r}")
    return properties

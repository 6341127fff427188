"""Reads Azure Monitor's token totals from Log Analytics (AppMetrics) with azure-monitor-query."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from azure.core.exceptions import AzureError
from azure.identity import DefaultAzureCredential
from azure.monitor.query import LogsQueryClient, LogsQueryStatus

from chargeback.app.settings import LOG_ANALYTICS_WORKSPACE_ID, MONITOR_EXPORT, Settings
from chargeback.domain.errors import ConfigurationError, MonitorError, PartialResultError
from chargeback.reconciliation.monitor import (
    COMPLETION_COLUMN,
    PROMPT_COLUMN,
    SUBSCRIPTION_COLUMN,
    TOTAL_COLUMN,
    CsvExportSource,
    MonitorSource,
    MonitorTotals,
    check_window,
    dimension_text,
    to_tokens,
    token_totals_query,
)

_TOKEN_COLUMNS = (TOTAL_COLUMN, PROMPT_COLUMN, COMPLETION_COLUMN)


class LogsClient(Protocol):
    """The part of ``LogsQueryClient`` the source uses; tests pass a fake."""

    def query_workspace(
        self, workspace_id: str, query: str, *, timespan: tuple[datetime, datetime] | None, **kwargs: Any
    ) -> Any: ...

    def close(self) -> None: ...


class LogAnalyticsSource:
    """A ``MonitorSource`` that sums AppMetrics' token metrics in a Log Analytics workspace."""

    def __init__(
        self,
        client: LogsClient,
        workspace_id: str,
        *,
        namespace: str | None,
        dimension: str,
        server_timeout: int | None = None,
    ) -> None:
        self._client = client
        self._workspace_id = workspace_id
        self._namespace = namespace
        self._dimension = dimension
        self._server_timeout = server_timeout

    def token_totals(self, start: datetime, end: datetime) -> dict[str, MonitorTotals]:
        check_window(start, end)
        query = token_totals_query(start, end, namespace=self._namespace, dimension=self._dimension)
        try:
            result = self._client.query_workspace(
                self._workspace_id, query, timespan=(start, end), server_timeout=self._server_timeout
            )
        except AzureError as exc:
            raise MonitorError(f"Log Analytics query failed: {_describe(exc)}") from exc
        if result.status == LogsQueryStatus.PARTIAL:
            error = result.partial_error
            detail = f"{error.code}: {error.message}" if error is not None else "no detail given"
            raise PartialResultError(
                f"Log Analytics returned a partial result for [{start.isoformat()}, {end.isoformat()}): {detail}"
            )
        if result.status != LogsQueryStatus.SUCCESS:
            raise MonitorError(f"Log Analytics answered with status {result.status!r}")
        return _totals(result.tables)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> LogAnalyticsSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _totals(tables: Sequence[Any]) -> dict[str, MonitorTotals]:
    if len(tables) != 1:
        raise MonitorError(f"expected one result table from Log Analytics, got {len(tables)}")
    table = tables[0]
    missing = [name for name in (SUBSCRIPTION_COLUMN, *_TOKEN_COLUMNS) if name not in table.columns]
    if missing:
        raise MonitorError(f"the Log Analytics result lacks the columns {', '.join(missing)}")
    totals: dict[str, MonitorTotals] = {}
    for row in table.rows:
        subscription = dimension_text(row[SUBSCRIPTION_COLUMN])
        counts = [_tokens(row[column], f"{subscription!r}: {column}") for column in _TOKEN_COLUMNS]
        totals[subscription] = totals.get(subscription, MonitorTotals()) + MonitorTotals(*counts)
    return totals


def _tokens(value: Any, what: str) -> int:
    # sumif over no matching row may come back as null: nothing counted is zero tokens.
    return 0 if value is None else to_tokens(value, what)


def _describe(exc: AzureError) -> str:
    status = getattr(exc, "status_code", None)
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) if error is not None else None
    parts = [type(exc).__name__]
    if status is not None:
        parts.append(str(status))
    if code:
        parts.append(str(code))
    return " ".join(parts) + f": {exc.message}"


def logs_client(client_id: str | None, **options: Any) -> LogsQueryClient:
    """A ``LogsQueryClient`` on the app's identity (a user-assigned one when ``client_id`` is set);
    ``options`` go to the client (a retry policy, say)."""
    credential = DefaultAzureCredential(managed_identity_client_id=client_id or None)
    return LogsQueryClient(credential, **options)


def monitor_source(settings: Settings) -> MonitorSource:
    """The source the settings name: the CSV export when set, else the Log Analytics workspace."""
    if settings.monitor_export:
        return CsvExportSource(
            settings.monitor_export,
            namespace=settings.metric_namespace,
            dimension=settings.subscription_dimension,
        )
    if settings.workspace_id:
        return LogAnalyticsSource(
            logs_client(settings.monitor_client_id),
            settings.workspace_id,
            namespace=settings.metric_namespace,
            dimension=settings.subscription_dimension,
        )
    raise ConfigurationError(
        f"reconciliation needs {LOG_ANALYTICS_WORKSPACE_ID} (a workspace) or {MONITOR_EXPORT} (a CSV export)"
    )

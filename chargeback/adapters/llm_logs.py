"""Reads API Management's LLM logs, joined to the gateway logs, from Log Analytics with azure-monitor-query."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError
from azure.monitor.query import LogsQueryStatus

from chargeback.adapters.monitor import LogsClient, logs_client
from chargeback.app.settings import LLM_LOG_EXPORT, LOG_ANALYTICS_WORKSPACE_ID, Settings
from chargeback.domain.errors import ConfigurationError, MonitorError, PartialResultError
from chargeback.ingestion.llm_log_rows import (
    EXPORT_COLUMNS,
    GATEWAY_LOG_SLACK,
    CsvLlmLogExport,
    LlmLogRow,
    LlmLogSource,
    RejectedRow,
    llm_log_query,
    parse_record,
)


class LogAnalyticsLlmLogSource:
    """An ``LlmLogSource`` that runs the joined query once per UTC day, so no answer grows past a day.

    A partial answer (a row limit, a timeout) is a ``PartialResultError``: a day is only ever
    replaced with a complete count, never with part of one.
    """

    def __init__(self, client: LogsClient, workspace_id: str, *, scope: str, server_timeout: int | None = None) -> None:
        self._client = client
        self._workspace_id = workspace_id
        self._scope = scope
        self._server_timeout = server_timeout

    def rows(self, days: Collection[date]) -> Iterator[LlmLogRow | RejectedRow]:
        for day in sorted(days):
            yield from self._day(day)

    def _day(self, day: date) -> Iterator[LlmLogRow | RejectedRow]:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        end = start + timedelta(days=1)
        query = llm_log_query(start, end, scope=self._scope)
        try:
            result = self._client.query_workspace(
                self._workspace_id,
                query,
                timespan=(start - GATEWAY_LOG_SLACK, end + GATEWAY_LOG_SLACK),
                server_timeout=self._server_timeout,
            )
        except AzureError as exc:
            raise MonitorError(f"the LLM-log query for {day.isoformat()} failed: {type(exc).__name__}") from exc
        if result.status == LogsQueryStatus.PARTIAL:
            raise PartialResultError(f"Log Analytics returned a partial LLM-log result for {day.isoformat()}")
        if result.status != LogsQueryStatus.SUCCESS:
            raise MonitorError(f"Log Analytics answered the LLM-log query with status {result.status!r}")
        yield from _records(result.tables, day)


def _records(tables: Any, day: date) -> Iterator[LlmLogRow | RejectedRow]:
    if len(tables) != 1:
        raise MonitorError(f"expected one result table from Log Analytics, got {len(tables)}")
    table = tables[0]
    missing = [name for name in EXPORT_COLUMNS if name not in table.columns]
    if missing:
        raise MonitorError(f"the LLM-log result lacks the columns {', '.join(missing)}")
    for index, row in enumerate(table.rows):
        yield parse_record({name: row[name] for name in EXPORT_COLUMNS}, f"{day.isoformat()} row {index}")


def llm_log_source(settings: Settings) -> LlmLogSource:
    """The source the settings name: the CSV export when set, else the Log Analytics workspace."""
    if settings.llm_log_export:
        return CsvLlmLogExport(settings.llm_log_export)
    if settings.workspace_id:
        return LogAnalyticsLlmLogSource(
            logs_client(settings.monitor_client_id), settings.workspace_id, scope=settings.llm_log_scope
        )
    raise ConfigurationError(
        f"billing LLM logs needs {LOG_ANALYTICS_WORKSPACE_ID} (a workspace) or {LLM_LOG_EXPORT} (a CSV export)"
    )

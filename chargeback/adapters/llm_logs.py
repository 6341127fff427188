"""Reads API Management's LLM logs from Log Analytics with azure-monitor-query, a window at a time.

The usage query (``llm_log_rows.llm_log_usage_query``) counts the calls in the workspace, so an
answer holds one row per subscription, model, deployment and operation, whatever the number of
calls. A day is asked for whole; when the workspace cannot answer it whole (a partial answer: the
row or size limit; a 504: the query ran past its time), the window is cut in two and each half is
asked for, down to ``MIN_WINDOW``. Calls belong to the window of their first row, so the halves
add up to the day exactly. Throttling (429 with ``Retry-After``) and the workspace's own 5xx are
retried by the client's retry policy; a timeout is not retried as it is (it would time out again)
but cut smaller.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import RetryPolicy
from azure.monitor.query import LogsQueryStatus

from chargeback.adapters.monitor import LogsClient, logs_client
from chargeback.app.settings import LLM_LOG_EXPORT, LOG_ANALYTICS_WORKSPACE_ID, Settings
from chargeback.domain.errors import ConfigurationError, MonitorError, PartialResultError
from chargeback.ingestion.llm_log_calls import CALL_SPREAD, LlmLogSource, WindowUsage, usage_from_answer
from chargeback.ingestion.llm_log_export import CsvLlmLogExport
from chargeback.ingestion.llm_log_rows import GATEWAY_LOG_SLACK, USAGE_COLUMNS, llm_log_usage_query

MIN_WINDOW = timedelta(minutes=15)
"""The smallest window asked for: a quarter of an hour of a gateway's calls always fits an answer."""

SERVER_TIMEOUT_SECONDS = 600
"""How long the workspace may run one query: its maximum (the default is three minutes)."""

QUERY_TIMEOUT = 504
"""What Log Analytics answers when a query runs past its server timeout."""


class _TooBig(Exception):
    """The workspace could not answer a window whole: cut it smaller."""


class LogsRetryPolicy(RetryPolicy[Any, Any]):
    """The client's retry policy, but a query timeout (504) is not retried: it is cut smaller instead."""

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        if response.http_response.status_code == QUERY_TIMEOUT:
            return False
        return bool(super().is_retry(settings, response))


class LogAnalyticsLlmLogSource:
    """An ``LlmLogSource`` that runs the usage query per day, cutting a day that does not fit one answer."""

    def __init__(
        self,
        client: LogsClient,
        workspace_id: str,
        *,
        server_timeout: int | None = SERVER_TIMEOUT_SECONDS,
        min_window: timedelta = MIN_WINDOW,
    ) -> None:
        self._client = client
        self._workspace_id = workspace_id
        self._server_timeout = server_timeout
        self._min_window = min_window
        self.queries = 0
        """How many queries this source has run (windows asked, cut ones included)."""

    def day_usage(self, day: date, scope: str) -> WindowUsage:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        usage = WindowUsage()
        windows = [(start, start + timedelta(days=1))]
        while windows:
            first, end = windows.pop()
            try:
                usage.add(self._window(day, first, end, scope))
            except _TooBig as exc:
                if end - first <= self._min_window:
                    raise PartialResultError(
                        f"Log Analytics could not answer the LLM-log usage of {first.isoformat()} to "
                        f"{end.isoformat()} whole, even cut to {self._min_window}: {exc}"
                    ) from exc
                middle = first + (end - first) / 2
                windows += [(middle, end), (first, middle)]
        return usage

    def _window(self, day: date, start: datetime, end: datetime, scope: str) -> WindowUsage:
        query = llm_log_usage_query(start, end, scope=scope, spread=CALL_SPREAD)
        slack = max(GATEWAY_LOG_SLACK, CALL_SPREAD)
        self.queries += 1
        try:
            result = self._client.query_workspace(
                self._workspace_id, query, timespan=(start - slack, end + slack), server_timeout=self._server_timeout
            )
        except HttpResponseError as exc:
            if exc.status_code == QUERY_TIMEOUT:
                raise _TooBig("the query ran past its time") from exc
            raise MonitorError(f"the LLM-log query for {day.isoformat()} failed: {_describe(exc)}") from exc
        except AzureError as exc:
            raise MonitorError(f"the LLM-log query for {day.isoformat()} failed: {type(exc).__name__}") from exc
        if result.status == LogsQueryStatus.PARTIAL:
            error = result.partial_error
            raise _TooBig(f"{error.code}: {error.message}" if error is not None else "a partial answer")
        if result.status != LogsQueryStatus.SUCCESS:
            raise MonitorError(f"Log Analytics answered the LLM-log query with status {result.status!r}")
        return usage_from_answer(_records(result.tables), day, f"{start.isoformat()} to {end.isoformat()}")


def _records(tables: Any) -> list[dict[str, Any]]:
    if len(tables) != 1:
        raise MonitorError(f"expected one result table from Log Analytics, got {len(tables)}")
    table = tables[0]
    missing = [name for name in USAGE_COLUMNS if name not in table.columns]
    if missing:
        raise MonitorError(f"the LLM-log usage answer lacks the columns {', '.join(missing)}")
    return [{name: row[name] for name in USAGE_COLUMNS} for row in table.rows]


def _describe(exc: HttpResponseError) -> str:
    return f"HTTP {exc.status_code}" if exc.status_code is not None else type(exc).__name__


def llm_log_source(settings: Settings) -> LlmLogSource:
    """The source the settings name: the CSV export when set, else the Log Analytics workspace."""
    if settings.llm_log_export:
        return CsvLlmLogExport(settings.llm_log_export)
    if settings.workspace_id:
        return LogAnalyticsLlmLogSource(
            logs_client(settings.monitor_client_id, retry_policy=LogsRetryPolicy()), settings.workspace_id
        )
    raise ConfigurationError(
        f"billing LLM logs needs {LOG_ANALYTICS_WORKSPACE_ID} (a workspace) or {LLM_LOG_EXPORT} (a CSV export)"
    )

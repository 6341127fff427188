"""The Log Analytics source turns LogsQueryClient answers into integer totals, or into MonitorErrors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
from azure.monitor.query import LogsQueryClient, LogsQueryError, LogsQueryPartialResult, LogsQueryResult, LogsTable

from chargeback.adapters.monitor import LogAnalyticsSource, logs_client, monitor_source
from chargeback.app.settings import Settings
from chargeback.domain.errors import ConfigurationError, MonitorError, PartialResultError
from chargeback.reconciliation.monitor import CsvExportSource, MonitorTotals, token_totals_query

START = datetime(2024, 5, 1, tzinfo=UTC)
END = datetime(2024, 5, 20, tzinfo=UTC)
WORKSPACE = "00000000-0000-0000-0000-000000000001"
COLUMNS = ["SubscriptionId", "TotalTokens", "PromptTokens", "CompletionTokens"]
TYPES = ["string", "real", "real", "real"]


def table(*rows: list[Any], columns: list[str] = COLUMNS, types: list[str] = TYPES) -> LogsTable:
    return LogsTable(name="PrimaryResult", columns=columns, columns_types=types, rows=list(rows))


@dataclass
class FakeLogsClient:
    """Stands in for LogsQueryClient: answers with a set result or raises a set error."""

    answer: Any = None
    error: Exception | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False

    def query_workspace(
        self, workspace_id: str, query: str, *, timespan: tuple[datetime, datetime] | None, **kwargs: Any
    ) -> Any:
        self.calls.append({"workspace_id": workspace_id, "query": query, "timespan": timespan, **kwargs})
        if self.error is not None:
            raise self.error
        return self.answer

    def close(self) -> None:
        self.closed = True


def source(client: FakeLogsClient, namespace: str | None = "openai") -> LogAnalyticsSource:
    return LogAnalyticsSource(client, WORKSPACE, namespace=namespace, dimension="Subscription ID")


def settings(**values: str) -> Settings:
    return Settings.from_env({"ChargebackStorage": "UseDevelopmentStorage=true", **values})


def test_rows_of_a_successful_query_become_integer_totals_per_subscription() -> None:
    client = FakeLogsClient(
        LogsQueryResult(tables=[table(["sub-one", 1750.0, 1200.0, 550.0], ["sub-two", 4010, 3000, 1010])])
    )

    totals = source(client).token_totals(START, END)

    assert totals == {"sub-one": MonitorTotals(1750, 1200, 550), "sub-two": MonitorTotals(4010, 3000, 1010)}
    assert all(type(value) is int for t in totals.values() for value in (t.total_tokens, t.prompt_tokens))


def test_the_query_goes_to_the_workspace_with_the_window_as_its_timespan() -> None:
    client = FakeLogsClient(LogsQueryResult(tables=[table()]))

    source(client).token_totals(START, END)

    assert client.calls == [
        {
            "workspace_id": WORKSPACE,
            "query": token_totals_query(START, END, namespace="openai", dimension="Subscription ID"),
            "timespan": (START, END),
            "server_timeout": None,
        }
    ]


def test_an_empty_result_means_no_subscription_used_tokens() -> None:
    assert source(FakeLogsClient(LogsQueryResult(tables=[table()]))).token_totals(START, END) == {}


@pytest.mark.parametrize(
    ("value", "tokens"),
    [
        pytest.param(1234.0000001, 1234, id="noise above a whole count"),
        pytest.param(1233.9999999, 1234, id="noise below a whole count"),
        pytest.param(None, 0, id="a null sum is nothing counted"),
        pytest.param(9007199254740992.0, 9007199254740992, id="two to the 53"),
    ],
)
def test_a_real_total_is_rounded_to_the_nearest_token(value: float | None, tokens: int) -> None:
    client = FakeLogsClient(LogsQueryResult(tables=[table(["sub", value, 0.0, 0.0])]))
    assert source(client).token_totals(START, END)["sub"].total_tokens == tokens


def test_a_partial_result_is_a_partial_result_error_not_data() -> None:
    partial = LogsQueryPartialResult(
        partial_data=[table(["sub", 10.0, 5.0, 5.0])],
        partial_error=LogsQueryError(code="PartialError", message="query exceeded the result size limit"),
    )
    with pytest.raises(PartialResultError, match="result size limit"):
        source(FakeLogsClient(partial)).token_totals(START, END)


def test_a_partial_result_without_detail_is_still_a_partial_result_error() -> None:
    with pytest.raises(PartialResultError, match="no detail given"):
        source(FakeLogsClient(LogsQueryPartialResult())).token_totals(START, END)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(HttpResponseError(message="Bad Request: the query is invalid"), id="an http error"),
        pytest.param(ClientAuthenticationError(message="no identity"), id="an authentication failure"),
        pytest.param(ServiceRequestError(message="connection refused"), id="a connection failure"),
    ],
)
def test_an_sdk_error_becomes_a_monitor_error_that_keeps_its_cause(error: Exception) -> None:
    with pytest.raises(MonitorError, match="Log Analytics query failed") as caught:
        source(FakeLogsClient(error=error)).token_totals(START, END)
    assert caught.value.__cause__ is error
    assert not isinstance(caught.value, PartialResultError)


@pytest.mark.parametrize(
    ("answer", "complaint"),
    [
        pytest.param(LogsQueryResult(tables=[]), "expected one result table", id="no table"),
        pytest.param(
            LogsQueryResult(
                tables=[table(["sub", 1.0], columns=["SubscriptionId", "Tokens"], types=["string", "real"])]
            ),
            "lacks the columns TotalTokens, PromptTokens, CompletionTokens",
            id="other columns",
        ),
        pytest.param(LogsQueryResult(tables=[table(["sub", -3.0, 0.0, 0.0])]), "cannot be negative", id="negative"),
        pytest.param(LogsQueryResult(tables=[table(["sub", "NaN", 0.0, 0.0])]), "finite", id="not a number"),
    ],
)
def test_an_answer_that_is_not_token_totals_is_a_monitor_error(answer: LogsQueryResult, complaint: str) -> None:
    with pytest.raises(MonitorError, match=complaint):
        source(FakeLogsClient(answer)).token_totals(START, END)


def test_a_naive_window_is_refused_before_any_query() -> None:
    client = FakeLogsClient(LogsQueryResult(tables=[table()]))
    with pytest.raises(ValueError, match="timezone-aware"):
        source(client).token_totals(datetime(2024, 5, 1), END)
    assert client.calls == []


def test_closing_the_source_closes_its_client() -> None:
    client = FakeLogsClient(LogsQueryResult(tables=[table()]))
    with source(client) as opened:
        opened.token_totals(START, END)
    assert client.closed


def test_the_settings_pick_the_csv_export_over_the_workspace(tmp_path: Path) -> None:
    chosen = monitor_source(
        settings(CHARGEBACK_MONITOR_EXPORT=str(tmp_path / "export.csv"), LOG_ANALYTICS_WORKSPACE_ID=WORKSPACE)
    )
    assert isinstance(chosen, CsvExportSource)


def test_the_settings_pick_log_analytics_when_no_export_is_named() -> None:
    chosen = monitor_source(settings(LOG_ANALYTICS_WORKSPACE_ID=WORKSPACE))
    assert isinstance(chosen, LogAnalyticsSource)
    chosen.close()


def test_the_settings_must_name_a_workspace_or_an_export() -> None:
    with pytest.raises(ConfigurationError, match="LOG_ANALYTICS_WORKSPACE_ID"):
        monitor_source(settings())


def test_the_real_client_is_built_on_the_apps_identity() -> None:
    client = logs_client("11111111-2222-3333-4444-555555555555")
    try:
        assert isinstance(client, LogsQueryClient)
    finally:
        client.close()

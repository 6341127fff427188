"""The Log Analytics source against a stand-in of the query API that enforces its limits, through the real client."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from chargeback.adapters.llm_logs import LogAnalyticsLlmLogSource, LogsRetryPolicy
from chargeback.domain.errors import MonitorError
from chargeback.ingestion import llm_logs
from chargeback.ingestion.llm_log_calls import WindowUsage
from chargeback.ingestion.llm_log_export import CsvLlmLogExport
from chargeback.ingestion.llm_log_rows import EXPORT_COLUMNS, SCOPE_ALL, SCOPE_STREAMED
from devtools.logs_query import LogsQueryStandIn, bearer_client, workspace_of
from tests.test_llm_log_rows import MemoryLlmLogStore

DAY = date(2026, 10, 20)


def joined_row(
    correlation: str, subscription: str, minute: int, prompt: int, completion: int, **values: object
) -> dict[str, object]:
    moment = datetime(2026, 10, 20, tzinfo=UTC) + timedelta(minutes=minute)
    row: dict[str, object] = {
        "TimeGenerated": moment.isoformat().replace("+00:00", "Z"),
        "CorrelationId": correlation,
        "ApimSubscriptionId": subscription,
        "ModelName": "gpt-4o",
        "DeploymentName": "chat",
        "OperationName": "ChatCompletions_Create",
        "PromptTokens": prompt,
        "CompletionTokens": completion,
        "TotalTokens": prompt + completion,
        "IsStreamCompletion": "true",
        "SequenceNumber": 0,
    }
    return row | values


def a_gateway_day(calls: int = 600, subscriptions: int = 150) -> list[dict[str, object]]:
    """A day of streamed calls with every trap the counting rule handles, plus the day's edges."""
    chooser = random.Random(11)
    rows: list[dict[str, object]] = []
    for n in range(calls):
        minute = chooser.randrange(-30, 24 * 60 + 30)  # some in the hours either side of the day
        row = joined_row(
            f"c-{n}", f"team-{n % subscriptions}", minute, chooser.randrange(1, 900), chooser.randrange(1, 300)
        )
        rows.append(row)
        if n % 7 == 0:  # split over sequence rows, the counts on the first only
            rows.append(row | {"SequenceNumber": 1, "PromptTokens": 0, "CompletionTokens": 0, "TotalTokens": 0})
        if n % 11 == 0:  # delivered twice
            rows.append(dict(row))
        if n % 13 == 0:  # its gateway-log row has not arrived: unattributed
            row["ApimSubscriptionId"] = ""
        if n % 17 == 0:  # buffered: the usage events bill it unless the scope is `all`
            row["IsStreamCompletion"] = "false"
    rows.append(joined_row("midnight", "team-1", 24 * 60 - 1, 50, 0))
    rows.append(joined_row("midnight", "team-1", 24 * 60 + 1, 0, 25, SequenceNumber=1, TotalTokens=75))
    rows.append(joined_row("", "team-2", 600, 10, 10))
    rows.append(joined_row("negative", "team-2", 610, -5, 10))
    rows.append(joined_row("long-name", "team-2", 620, 10, 10, ModelName="m" * 700))
    return rows


def counted(usage: WindowUsage) -> tuple[object, ...]:
    return (usage.rows, usage.calls, usage.rows_read, usage.rejected)


def the_export_says(rows: list[dict[str, object]], scope: str, tmp_path_factory: pytest.TempPathFactory) -> WindowUsage:
    path = tmp_path_factory.mktemp("export") / "llm.csv"
    lines = [",".join(EXPORT_COLUMNS)] + [",".join(str(r[c]) for c in EXPORT_COLUMNS) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return CsvLlmLogExport(path).day_usage(DAY, scope)


def source_for(stand_in: LogsQueryStandIn, **options: object) -> LogAnalyticsLlmLogSource:
    client = bearer_client(stand_in.endpoint, retry_policy=LogsRetryPolicy(retry_backoff_factor=0.01))
    return LogAnalyticsLlmLogSource(client, "00000000-0000-0000-0000-000000000001", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("scope", [SCOPE_STREAMED, SCOPE_ALL])
def test_the_workspace_answer_counts_the_day_exactly_as_the_export_does(
    scope: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    rows = a_gateway_day()
    with LogsQueryStandIn(workspace_of(rows)) as stand_in:
        from_workspace = source_for(stand_in).day_usage(DAY, scope)
    from_export = the_export_says(rows, scope, tmp_path_factory)
    assert counted(from_workspace) == counted(from_export)
    assert from_workspace.rejected == {"missing_correlation_id": 1, "invalid_tokens": 1, "invalid_field": 1}
    assert from_workspace.calls > 400


def test_a_day_over_the_row_limit_is_cut_until_each_answer_fits_and_adds_up_to_the_day(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    rows = a_gateway_day()
    workspace = workspace_of(rows, max_rows=60)
    with LogsQueryStandIn(workspace) as stand_in:
        source = source_for(stand_in)
        usage = source.day_usage(DAY, SCOPE_STREAMED)
    assert counted(usage) == counted(the_export_says(rows, SCOPE_STREAMED, tmp_path_factory))
    assert source.queries > 1
    assert all(query["end"] - query["start"] >= timedelta(minutes=15) for query in workspace.queries)


def test_a_query_that_runs_past_its_time_is_cut_rather_than_retried(tmp_path_factory: pytest.TempPathFactory) -> None:
    rows = a_gateway_day()
    workspace = workspace_of(rows, max_scan_rows=200)
    with LogsQueryStandIn(workspace) as stand_in:
        usage = source_for(stand_in).day_usage(DAY, SCOPE_STREAMED)
    assert counted(usage) == counted(the_export_says(rows, SCOPE_STREAMED, tmp_path_factory))
    whole_day = [q for q in workspace.queries if q["end"] - q["start"] == timedelta(days=1)]
    assert len(whole_day) == 1  # the day timed out once, and was cut, not asked again


def test_throttling_is_waited_out_as_retry_after_asks(tmp_path_factory: pytest.TempPathFactory) -> None:
    rows = a_gateway_day(calls=50, subscriptions=5)
    workspace = workspace_of(rows, faults=[429, 429])
    with LogsQueryStandIn(workspace) as stand_in:
        usage = source_for(stand_in).day_usage(DAY, SCOPE_STREAMED)
    assert counted(usage) == counted(the_export_says(rows, SCOPE_STREAMED, tmp_path_factory))
    assert workspace.faults == []


def test_a_day_that_never_fits_fails_alone_and_collection_goes_on_with_the_other_days() -> None:
    rows = a_gateway_day(calls=50, subscriptions=5)
    rows.append(joined_row("next-day", "team-9", 24 * 60 + 600, 100, 20))
    workspace = workspace_of(rows, max_rows=3)  # the 20th holds more keys than that in any quarter of a day
    store = MemoryLlmLogStore()
    now = datetime(2026, 10, 22, 7, tzinfo=UTC)
    with LogsQueryStandIn(workspace) as stand_in:
        source = source_for(stand_in, min_window=timedelta(hours=6))
        outcome = llm_logs.collect(source, store, scope=SCOPE_STREAMED, now=now, lag_hours=6, months=["2026-10"])
    assert outcome.failed == {DAY.isoformat(): "PartialResultError"}
    assert DAY not in store.markers_by_day
    assert store.markers_by_day[DAY + timedelta(days=1)].calls == 1
    assert all(store.markers_by_day[date(2026, 10, n)].complete for n in range(1, 20))


@pytest.mark.parametrize("status", [500, 502, 403])
def test_a_workspace_that_keeps_failing_is_a_monitor_error_for_the_day(status: int) -> None:
    workspace = workspace_of(a_gateway_day(calls=10, subscriptions=2), faults=[status] * 20)
    with LogsQueryStandIn(workspace) as stand_in, pytest.raises(MonitorError):
        source_for(stand_in).day_usage(DAY, SCOPE_STREAMED)

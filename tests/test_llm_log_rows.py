"""LLM-log rows: the joined query passes the Kusto parser, rows are checked, and each call counts once."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.monitor.query import LogsQueryError, LogsQueryPartialResult, LogsQueryResult, LogsTable

from chargeback.adapters.llm_logs import LogAnalyticsLlmLogSource
from chargeback.app.settings import Settings
from chargeback.domain.errors import ConcurrencyError, ConfigurationError, PartialResultError
from chargeback.domain.usage import Counters, UsageKey, UsageRow
from chargeback.ingestion import llm_logs
from chargeback.ingestion.llm_log_rows import (
    EXPORT_COLUMNS,
    GATEWAY_LOG_COLUMNS,
    GATEWAY_LOG_TABLE,
    LLM_LOG_COLUMNS,
    LLM_LOG_TABLE,
    SCOPE_ALL,
    SCOPE_OFF,
    SCOPE_STREAMED,
    CsvLlmLogExport,
    LlmLogRow,
    RejectedRow,
    llm_log_query,
    parse_record,
)
from chargeback.ingestion.llm_logs import CollectOutcome, summarise
from tests.test_monitor import CHECK_KQL, node

DAY = date(2026, 10, 20)
START = datetime(2026, 10, 20, tzinfo=UTC)
END = START + timedelta(days=1)
NOON = "2026-10-20T12:00:00Z"


def check(query: str) -> tuple[int, list[str]]:
    request = {
        "tables": [
            {"table": LLM_LOG_TABLE, "columns": [list(c) for c in LLM_LOG_COLUMNS]},
            {"table": GATEWAY_LOG_TABLE, "columns": [list(c) for c in GATEWAY_LOG_COLUMNS]},
        ],
        "query": query,
    }
    done = subprocess.run(
        [node(), str(CHECK_KQL)], input=json.dumps(request), capture_output=True, text=True, check=False
    )
    result = json.loads(done.stdout)
    return done.returncode, [d["message"] for d in result["diagnostics"] if d["severity"] == "Error"]


@pytest.mark.parametrize("scope", [SCOPE_STREAMED, SCOPE_ALL])
def test_the_joined_query_has_no_errors_from_the_kusto_parser_against_both_tables(scope: str) -> None:
    assert check(llm_log_query(START, END, scope=scope)) == (0, [])


@pytest.mark.parametrize(
    ("column", "misspelt"),
    [("ApimSubscriptionId", "ApimSubscriptionID"), ("IsStreamCompletion", "IsStreamed"), ("SequenceNumber", "Seq")],
)
def test_a_misspelt_column_in_the_joined_query_is_an_error(column: str, misspelt: str) -> None:
    code, messages = check(llm_log_query(START, END, scope=SCOPE_STREAMED).replace(column, misspelt))
    assert code == 1
    assert any(misspelt in message for message in messages)


def test_the_query_projects_exactly_the_export_columns_and_filters_streamed_calls_only_when_asked() -> None:
    streamed = llm_log_query(START, END, scope=SCOPE_STREAMED)
    assert streamed.splitlines()[-1] == f"| project {', '.join(EXPORT_COLUMNS)}"
    assert "IsStreamCompletion == true" in streamed
    assert "IsStreamCompletion == true" not in llm_log_query(START, END, scope=SCOPE_ALL)
    assert "join kind=leftouter" in streamed


def record(**values: object) -> dict[str, object]:
    base: dict[str, object] = {
        "TimeGenerated": NOON,
        "CorrelationId": "call-1",
        "ApimSubscriptionId": "sub-one",
        "ModelName": "gpt-4o",
        "DeploymentName": "gpt-4o",
        "OperationName": "ChatCompletions_Create",
        "PromptTokens": "100",
        "CompletionTokens": "20",
        "TotalTokens": "120",
        "IsStreamCompletion": "true",
        "SequenceNumber": "0",
    }
    return base | values


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"TimeGenerated": "yesterday"}, "invalid_time"),
        ({"CorrelationId": ""}, "missing_correlation_id"),
        ({"PromptTokens": "-5"}, "invalid_tokens"),
        ({"TotalTokens": "12.5"}, "invalid_tokens"),
        ({"CompletionTokens": "10000000000000"}, "invalid_tokens"),
        ({"SequenceNumber": "first"}, "invalid_tokens"),
        ({"IsStreamCompletion": "maybe"}, "invalid_field"),
    ],
)
def test_a_row_that_cannot_be_billed_is_rejected_with_its_reason(values: dict[str, object], reason: str) -> None:
    parsed = parse_record(record(**values), "line 7")
    assert isinstance(parsed, RejectedRow)
    assert (parsed.where, parsed.reason) == ("line 7", reason)


def test_log_analytics_values_and_csv_text_read_as_the_same_row() -> None:
    typed = record(
        TimeGenerated=datetime(2026, 10, 20, 12, tzinfo=UTC),
        PromptTokens=100,
        CompletionTokens=20,
        TotalTokens=120,
        IsStreamCompletion=True,
        SequenceNumber=0,
    )
    assert parse_record(typed, "a") == parse_record(record(), "b")


def rows(*records: dict[str, object]) -> list[LlmLogRow | RejectedRow]:
    return [parse_record(r, f"line {i}") for i, r in enumerate(records)]


def billed(records: list[LlmLogRow | RejectedRow], scope: str = SCOPE_STREAMED) -> dict[UsageKey, Counters]:
    days = summarise(records, scope, CollectOutcome(scope=scope))
    return {key: counters for totals in days.values() for key, counters in totals.rows.items()}


def key(subscription: str = "sub-one") -> UsageKey:
    return UsageKey(DAY, subscription, "gpt-4o", "gpt-4o", "ChatCompletions_Create")


def one_call(total: int = 120, prompt: int = 100, completion: int = 20) -> Counters:
    return Counters(
        requests=1,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        llm_log_requests=1,
        llm_log_tokens=total,
    )


@pytest.mark.parametrize(
    "later_rows",
    [
        pytest.param({"PromptTokens": "100", "CompletionTokens": "20", "TotalTokens": "120"}, id="counts repeated"),
        pytest.param({"PromptTokens": "0", "CompletionTokens": "0", "TotalTokens": "0"}, id="counts on one row"),
    ],
)
def test_an_exchange_split_over_sequence_rows_is_counted_once(later_rows: dict[str, object]) -> None:
    split = rows(record(), record(SequenceNumber="1", **later_rows), record(SequenceNumber="2", **later_rows))
    assert billed(split) == {key(): one_call()}


def test_a_row_delivered_twice_is_counted_once() -> None:
    assert billed(rows(record(), record())) == {key(): one_call()}


def test_a_call_takes_its_subscription_from_whichever_row_carries_it() -> None:
    assert billed(rows(record(ApimSubscriptionId=""), record(SequenceNumber="1", ApimSubscriptionId="sub-two"))) == {
        key("sub-two"): one_call()
    }


def test_a_call_without_a_subscription_is_kept_under_an_empty_one_not_dropped() -> None:
    assert billed(rows(record(ApimSubscriptionId=""))) == {key(""): one_call()}


@pytest.mark.parametrize(
    ("scope", "billed_calls"),
    [(SCOPE_STREAMED, {"streamed"}), (SCOPE_ALL, {"streamed", "buffered"}), (SCOPE_OFF, set())],
)
def test_the_scope_decides_which_calls_the_llm_logs_bill(scope: str, billed_calls: set[str]) -> None:
    calls = rows(
        record(CorrelationId="streamed", ApimSubscriptionId="streamed"),
        record(CorrelationId="buffered", ApimSubscriptionId="buffered", IsStreamCompletion="false"),
    )
    assert {k.subscription_id for k in billed(calls, scope)} == billed_calls


def test_rejected_rows_are_counted_by_reason_and_the_rest_is_billed() -> None:
    outcome = CollectOutcome(scope=SCOPE_STREAMED)
    days = summarise(rows(record(), record(CorrelationId="", TotalTokens="5")), SCOPE_STREAMED, outcome)
    assert outcome.rejected == {"missing_correlation_id": 1}
    assert days[DAY].rows == {key(): one_call()}


def write_export(path: Path, records: list[dict[str, object]], columns: tuple[str, ...] = EXPORT_COLUMNS) -> Path:
    lines = [",".join(columns)] + [",".join(str(r.get(c, "")) for c in columns) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_export_yields_the_rows_of_the_asked_days_and_names_the_line_of_a_bad_one(tmp_path: Path) -> None:
    export = write_export(
        tmp_path / "llm.csv",
        [record(), record(CorrelationId="other-day", TimeGenerated="2026-10-22T01:00:00Z"), record(TotalTokens="x")],
    )
    found = list(CsvLlmLogExport(export).rows({DAY}))
    assert [type(r).__name__ for r in found] == ["LlmLogRow", "RejectedRow"]
    rejected = found[1]
    assert isinstance(rejected, RejectedRow)
    assert rejected.where == "llm.csv, line 4"


def test_an_export_without_a_required_column_is_a_configuration_error(tmp_path: Path) -> None:
    export = write_export(tmp_path / "llm.csv", [record()], columns=EXPORT_COLUMNS[:-1])
    with pytest.raises(ConfigurationError, match="SequenceNumber"):
        list(CsvLlmLogExport(export).rows({DAY}))


@dataclass
class FakeLogsClient:
    answers: list[Any]
    calls: list[dict[str, Any]] = field(default_factory=list)

    def query_workspace(self, workspace_id: str, query: str, *, timespan: Any, **kwargs: Any) -> Any:
        self.calls.append({"query": query, "timespan": timespan})
        return self.answers.pop(0)

    def close(self) -> None:
        return None


def table(*values: list[Any]) -> LogsTable:
    types = ["datetime", "string", "string", "string", "string", "string", "int", "int", "int", "bool", "int"]
    return LogsTable(name="PrimaryResult", columns=list(EXPORT_COLUMNS), columns_types=types, rows=list(values))


def test_log_analytics_is_asked_one_day_at_a_time_with_room_for_late_gateway_rows() -> None:
    moment = datetime(2026, 10, 20, 12, tzinfo=UTC)
    answer = table([moment, "call-1", "sub-one", "gpt-4o", "gpt-4o", "ChatCompletions_Create", 100, 20, 120, True, 0])
    client = FakeLogsClient([LogsQueryResult(tables=[answer]), LogsQueryResult(tables=[table()])])
    source = LogAnalyticsLlmLogSource(client, "workspace", scope=SCOPE_STREAMED)
    found = list(source.rows([DAY, DAY + timedelta(days=1)]))
    assert found == [parse_record(record(), "x")]
    assert [call["timespan"] for call in client.calls] == [
        (START - timedelta(days=1), END + timedelta(days=1)),
        (START, END + timedelta(days=2)),
    ]
    assert client.calls[0]["query"] == llm_log_query(START, END, scope=SCOPE_STREAMED)


def test_a_partial_answer_from_log_analytics_is_an_error_never_a_count() -> None:
    partial = LogsQueryPartialResult(
        partial_data=[table()], partial_error=LogsQueryError(code="PartialError", message="row limit")
    )
    source = LogAnalyticsLlmLogSource(FakeLogsClient([partial]), "workspace", scope=SCOPE_STREAMED)
    with pytest.raises(PartialResultError):
        list(source.rows([DAY]))


class MemoryLlmLogStore:
    """An in-memory ``LlmLogStore`` whose ETag is a version number; ``interfere`` runs before a write once."""

    def __init__(self) -> None:
        self.version: dict[date, int] = {}
        self.markers_by_day: dict[date, llm_logs.DayMarker] = {}
        self.rows: dict[date, dict[str, tuple[UsageKey, Counters]]] = {}
        self.interfere: Callable[[], None] | None = None
        self.writes = 0

    def markers(self, period: str) -> dict[date, llm_logs.DayMarker]:
        return {day: m for day, m in self.markers_by_day.items() if day.isoformat().startswith(period)}

    def read_day(self, day: date) -> llm_logs.DayState:
        etag = str(self.version[day]) if day in self.version else None
        return llm_logs.DayState(etag, self.markers_by_day.get(day), dict(self.rows.get(day, {})))

    def replace(
        self, day: date, etag: str | None, changes: Sequence[llm_logs.RowChange], marker: llm_logs.DayMarker
    ) -> str:
        if self.interfere is not None:
            interfere, self.interfere = self.interfere, None
            interfere()
        current = str(self.version[day]) if day in self.version else None
        if current != etag:
            raise ConcurrencyError("moved")
        rows = self.rows.setdefault(day, {})
        for change in changes:
            if change.counters is None:
                del rows[change.row_key]
            else:
                rows[change.row_key] = (change.key, change.counters)
        self.markers_by_day[day] = marker
        self.version[day] = self.version.get(day, 0) + 1
        self.writes += 1
        return str(self.version[day])

    def unattributed(self, period: str) -> list[UsageRow]:
        return []


def totals_of(store: MemoryLlmLogStore) -> dict[UsageKey, Counters]:
    return {key: counters for rows in store.rows.values() for key, counters in rows.values()}


def collect_into(store: MemoryLlmLogStore, records: list[dict[str, object]]) -> llm_logs.CollectOutcome:
    source = ListSource(rows(*records))
    now = END + timedelta(hours=7)
    return llm_logs.collect(source, store, scope=SCOPE_STREAMED, now=now, lag_hours=6, months=["2026-10"])


@dataclass
class ListSource:
    found: list[LlmLogRow | RejectedRow]

    def rows(self, days: Collection[date]) -> Iterator[LlmLogRow | RejectedRow]:
        return iter(self.found)


def test_a_second_collection_of_the_same_rows_writes_nothing() -> None:
    store = MemoryLlmLogStore()
    split_call = [record(), record(SequenceNumber="1"), record(CorrelationId="call-2", ApimSubscriptionId="")]
    first = collect_into(store, split_call)
    writes = store.writes
    again = collect_into(store, split_call)
    assert (first.calls, first.unattributed_tokens) == (2, 120)
    assert (again.transactions, store.writes) == (0, writes)
    assert totals_of(store) == {key(): one_call(), key(""): one_call()}


def test_a_collection_that_loses_a_race_rereads_the_day_and_sets_it_once() -> None:
    store = MemoryLlmLogStore()
    day = llm_logs.DayTotals()
    store.interfere = lambda: llm_logs.replace_day(
        store, DAY, day, llm_logs.DayMarker(settled=False), llm_logs.CollectOutcome(scope=SCOPE_STREAMED)
    )
    totals = llm_logs.summarise(rows(record()), SCOPE_STREAMED, llm_logs.CollectOutcome(scope=SCOPE_STREAMED))[DAY]
    outcome = llm_logs.CollectOutcome(scope=SCOPE_STREAMED)
    llm_logs.replace_day(store, DAY, totals, totals.marker(settled=True), outcome)
    assert outcome.conflicts == 1
    assert totals_of(store) == {key(): one_call()}


def test_attributing_a_call_later_moves_its_tokens_and_deletes_the_unattributed_row() -> None:
    store = MemoryLlmLogStore()
    outcome = llm_logs.CollectOutcome(scope=SCOPE_STREAMED)
    for subscription in ("", "sub-one"):
        totals = llm_logs.summarise(rows(record(ApimSubscriptionId=subscription)), SCOPE_STREAMED, outcome)[DAY]
        llm_logs.replace_day(store, DAY, totals, totals.marker(settled=True), outcome)
    assert totals_of(store) == {key(): one_call()}
    assert (outcome.rows_written, outcome.rows_deleted) == (2, 1)


@pytest.mark.parametrize(
    ("marker", "due"),
    [
        pytest.param(None, True, id="never collected"),
        pytest.param(llm_logs.DayMarker(settled=False), True, id="not settled"),
        pytest.param(llm_logs.DayMarker(settled=True), False, id="settled"),
        pytest.param(llm_logs.DayMarker(settled=True, unattributed_tokens=5), True, id="settled, unattributed"),
    ],
)
def test_a_day_is_collected_until_it_is_settled_and_fully_attributed(
    marker: llm_logs.DayMarker | None, due: bool
) -> None:
    store = MemoryLlmLogStore()
    if marker is not None:
        store.markers_by_day[DAY] = marker
    days = llm_logs.days_to_collect(store, ["2026-10"], END + timedelta(days=3))
    assert (DAY in days) is due
    assert max(days) == DAY + timedelta(days=3)


@pytest.mark.parametrize(("hours_after_midnight", "settled"), [(5, False), (6, True)])
def test_a_day_settles_once_it_ended_more_than_the_lag_ago(hours_after_midnight: int, settled: bool) -> None:
    assert llm_logs.settled(DAY, END + timedelta(hours=hours_after_midnight), 6) is settled


@pytest.mark.parametrize("scope", ["streamed", "ALL", "off"])
def test_the_scope_setting_accepts_its_three_values(scope: str) -> None:
    values = {"ChargebackStorage": "UseDevelopmentStorage=true", "CHARGEBACK_LLM_LOG_SCOPE": scope}
    assert Settings.from_env(values).llm_log_scope == scope.lower()


def test_an_unknown_scope_is_a_configuration_error() -> None:
    values = {"ChargebackStorage": "UseDevelopmentStorage=true", "CHARGEBACK_LLM_LOG_SCOPE": "some"}
    with pytest.raises(ConfigurationError, match="CHARGEBACK_LLM_LOG_SCOPE"):
        Settings.from_env(values)

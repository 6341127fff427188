"""LLM-log rows: the usage query passes the Kusto parser, rows are checked, and each call counts once."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.monitor.query import LogsQueryError, LogsQueryPartialResult, LogsQueryResult, LogsTable

from chargeback.adapters.llm_logs import LogAnalyticsLlmLogSource
from chargeback.app.settings import Settings
from chargeback.domain.errors import (
    ConcurrencyError,
    ConfigurationError,
    MonitorError,
    PartialResultError,
    TransientStorageError,
)
from chargeback.domain.usage import Counters, UsageKey, UsageRow
from chargeback.ingestion import llm_logs
from chargeback.ingestion.llm_log_calls import CALL_SPREAD, WindowUsage, count_calls, usage_from_answer
from chargeback.ingestion.llm_log_export import CsvLlmLogExport
from chargeback.ingestion.llm_log_rows import (
    EXPORT_COLUMNS,
    GATEWAY_LOG_COLUMNS,
    GATEWAY_LOG_TABLE,
    LLM_LOG_COLUMNS,
    LLM_LOG_TABLE,
    SCOPE_ALL,
    SCOPE_OFF,
    SCOPE_STREAMED,
    USAGE_COLUMNS,
    LlmLogRow,
    RejectedRow,
    llm_log_usage_query,
    parse_record,
)
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


def usage_query(scope: str = SCOPE_STREAMED, start: datetime = START, end: datetime = END) -> str:
    return llm_log_usage_query(start, end, scope=scope, spread=CALL_SPREAD)


@pytest.mark.parametrize("scope", [SCOPE_STREAMED, SCOPE_ALL])
@pytest.mark.parametrize(
    ("start", "end"),
    [(START, END), (START + timedelta(minutes=45), START + timedelta(hours=1, minutes=30))],
    ids=["a day", "part of a day"],
)
def test_the_usage_query_has_no_errors_from_the_kusto_parser_against_both_tables(
    scope: str, start: datetime, end: datetime
) -> None:
    assert check(usage_query(scope, start, end)) == (0, [])


@pytest.mark.parametrize(
    ("column", "misspelt"),
    [
        ("ApimSubscriptionId", "ApimSubscriptionID"),
        ("IsStreamCompletion", "IsStreamed"),
        ("SequenceNumber", "Seq"),
        ("CorrelationId", "CorrelationID"),
    ],
)
def test_a_misspelt_column_in_the_usage_query_is_an_error(column: str, misspelt: str) -> None:
    code, messages = check(usage_query().replace(column, misspelt))
    assert code == 1
    assert any(misspelt in message for message in messages)


def test_the_usage_query_projects_the_usage_columns_and_filters_streamed_calls_only_when_asked() -> None:
    streamed = usage_query()
    assert streamed.splitlines()[-1] == f"| project {', '.join(USAGE_COLUMNS)}"
    assert "IsStreamCompletion == true" in streamed
    assert "IsStreamCompletion == true" not in usage_query(SCOPE_ALL)
    assert "join kind=leftouter Subscriptions on CorrelationId" in streamed


def test_the_usage_query_reads_rows_an_hour_either_side_and_keeps_calls_first_seen_inside() -> None:
    query = usage_query(start=START, end=START + timedelta(minutes=90))
    assert "let WindowStart = datetime(2026-10-20T00:00:00" in query
    assert "let WindowEnd = datetime(2026-10-20T01:30:00" in query
    assert "let RowsStart = WindowStart - 1h;" in query
    assert "let RowsEnd = WindowEnd + 1h;" in query
    assert "| where TimeGenerated >= WindowStart and TimeGenerated < WindowEnd);" in query


def test_the_usage_query_sums_calls_per_subscription_model_deployment_and_operation_never_per_call() -> None:
    query = usage_query()
    assert "by CorrelationId" in query
    assert "by ApimSubscriptionId, ModelName, DeploymentName, OperationName" in query
    assert "summarize Calls = count()" in query


def test_a_query_for_no_scope_is_refused() -> None:
    with pytest.raises(ValueError, match="off"):
        llm_log_usage_query(START, END, scope=SCOPE_OFF, spread=CALL_SPREAD)


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
        ({"ModelName": "m" * 40_000}, "invalid_field"),
        ({"ApimSubscriptionId": "s" * 513}, "invalid_field"),
        ({"DeploymentName": "dep\udc80loyment"}, "invalid_field"),
    ],
)
def test_a_row_that_cannot_be_billed_or_stored_is_rejected_with_its_reason(
    values: dict[str, object], reason: str
) -> None:
    parsed = parse_record(record(**values), "line 7")
    assert isinstance(parsed, RejectedRow)
    assert (parsed.where, parsed.reason) == ("line 7", reason)


def test_names_of_exactly_the_longest_length_are_kept() -> None:
    parsed = parse_record(record(ModelName="m" * 512, ApimSubscriptionId="s" * 512), "line 1")
    assert isinstance(parsed, LlmLogRow)
    assert (len(parsed.model), len(parsed.subscription_id)) == (512, 512)


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


def counted(records: Sequence[LlmLogRow | RejectedRow], scope: str = SCOPE_STREAMED) -> WindowUsage:
    return count_calls(records, START, END, scope)


def billed(records: Sequence[LlmLogRow | RejectedRow], scope: str = SCOPE_STREAMED) -> dict[UsageKey, Counters]:
    return counted(records, scope).rows


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
    usage = counted(
        rows(record(), record(CorrelationId="", TotalTokens="5"), record(CorrelationId="x", ModelName="m" * 600))
    )
    assert usage.rejected == {"missing_correlation_id": 1, "invalid_field": 1}
    assert (usage.rows, usage.calls, usage.rows_read) == ({key(): one_call()}, 1, 3)


def test_a_call_whose_rows_straddle_midnight_is_counted_once_on_the_day_of_its_first_row() -> None:
    late_evening = record(
        TimeGenerated="2026-10-20T23:59:59Z", PromptTokens="100", CompletionTokens="0", TotalTokens="100"
    )
    after_midnight = record(
        TimeGenerated="2026-10-21T00:00:02Z",
        SequenceNumber="1",
        CompletionTokens="20",
        PromptTokens="0",
        TotalTokens="120",
    )
    both = rows(late_evening, after_midnight)
    on_the_20th = count_calls(both, START, END, SCOPE_STREAMED)
    on_the_21st = count_calls(both, END, END + timedelta(days=1), SCOPE_STREAMED)
    assert on_the_20th.rows == {key(): one_call()}
    assert (on_the_21st.rows, on_the_21st.calls) == ({}, 0)


def test_windows_of_a_day_add_up_to_the_day_whatever_the_cut() -> None:
    calls = [
        record(
            CorrelationId=f"c-{n}",
            TimeGenerated=f"2026-10-20T{n % 24:02d}:{(n * 7) % 60:02d}:00Z",
            ApimSubscriptionId=f"s-{n % 3}",
        )
        for n in range(200)
    ]
    calls += [record(CorrelationId="c-7", SequenceNumber="1", TimeGenerated="2026-10-20T07:49:30Z")]
    every = rows(*calls)
    whole = count_calls(every, START, END, SCOPE_STREAMED)
    cuts = [START, START + timedelta(hours=7, minutes=49), START + timedelta(hours=7, minutes=49, seconds=15), END]
    parts = WindowUsage()
    for first, last in itertools.pairwise(cuts):
        parts.add(count_calls(every, first, last, SCOPE_STREAMED))
    assert (parts.rows, parts.calls, parts.rows_read) == (whole.rows, whole.calls, whole.rows_read)
    assert whole.calls == 200


def write_export(path: Path, records: list[dict[str, object]], columns: tuple[str, ...] = EXPORT_COLUMNS) -> Path:
    lines = [",".join(columns)] + [",".join(str(r.get(c, "")) for c in columns) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_export_counts_the_calls_of_the_asked_day_and_names_the_line_of_a_bad_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    export = write_export(
        tmp_path / "llm.csv",
        [record(), record(CorrelationId="other-day", TimeGenerated="2026-10-22T01:00:00Z"), record(TotalTokens="x")],
    )
    usage = CsvLlmLogExport(export).day_usage(DAY, SCOPE_STREAMED)
    assert (usage.rows, usage.rejected, usage.rows_read) == ({key(): one_call()}, {"invalid_tokens": 1}, 2)
    assert '"where": "llm.csv, line 4"' in caplog.text


def test_an_export_without_a_required_column_is_a_configuration_error(tmp_path: Path) -> None:
    export = write_export(tmp_path / "llm.csv", [record()], columns=EXPORT_COLUMNS[:-1])
    with pytest.raises(ConfigurationError, match="SequenceNumber"):
        CsvLlmLogExport(export).day_usage(DAY, SCOPE_STREAMED)


def test_an_export_that_cannot_be_read_is_a_monitor_error(tmp_path: Path) -> None:
    with pytest.raises(MonitorError, match="cannot read"):
        CsvLlmLogExport(tmp_path / "missing.csv").day_usage(DAY, SCOPE_STREAMED)


@dataclass
class FakeLogsClient:
    """Stands in for LogsQueryClient: each query takes the next answer (an exception is raised)."""

    answers: list[Any]
    calls: list[dict[str, Any]] = field(default_factory=list)

    def query_workspace(self, workspace_id: str, query: str, *, timespan: Any, **kwargs: Any) -> Any:
        self.calls.append({"query": query, "timespan": timespan, **kwargs})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        return None


TYPES = ["string", "string", "string", "string", "string", "long", "long", "long", "long", "long", "string", "string"]


def answer(*values: list[Any]) -> LogsQueryResult:
    return LogsQueryResult(
        tables=[LogsTable(name="PrimaryResult", columns=list(USAGE_COLUMNS), columns_types=TYPES, rows=list(values))]
    )


def usage_row(subscription: str, calls: int, prompt: int, completion: int) -> list[Any]:
    row = ["usage", subscription, "gpt-4o", "gpt-4o", "ChatCompletions_Create", calls, prompt, completion]
    return [*row, prompt + completion, None, None, None]


def read_row(rows: int) -> list[Any]:
    return ["read", None, None, None, None, None, None, None, None, rows, None, None]


def rejected_row(reason: str, rows: int) -> list[Any]:
    return ["rejected", None, None, None, None, None, None, None, None, rows, reason, "call-9"]


def too_big() -> LogsQueryPartialResult:
    return LogsQueryPartialResult(
        partial_data=[answer().tables[0]], partial_error=LogsQueryError(code="PartialError", message="row limit")
    )


def test_a_day_is_asked_whole_with_room_for_late_gateway_rows_and_counted_from_its_answer() -> None:
    client = FakeLogsClient([answer(usage_row("sub-one", 1, 100, 20), usage_row("", 2, 10, 10), read_row(4))])
    usage = LogAnalyticsLlmLogSource(client, "workspace").day_usage(DAY, SCOPE_STREAMED)
    two_calls = Counters(
        requests=2, prompt_tokens=10, completion_tokens=10, total_tokens=20, llm_log_requests=2, llm_log_tokens=20
    )
    assert usage.rows == {key(): one_call(), key(""): two_calls}
    assert (usage.calls, usage.rows_read) == (3, 4)
    [call] = client.calls
    assert call["timespan"] == (START - timedelta(days=1), END + timedelta(days=1))
    assert call["query"] == usage_query()
    assert call["server_timeout"] == 600


def test_a_day_too_big_for_one_answer_is_cut_in_halves_whose_counts_add_up() -> None:
    client = FakeLogsClient(
        [
            too_big(),
            answer(usage_row("sub-one", 1, 60, 10), read_row(2)),
            HttpResponseError(message="Gateway Timeout", response=_Response(504)),
            answer(usage_row("sub-one", 1, 40, 10), read_row(1)),
            answer(usage_row("sub-one", 3, 300, 30), rejected_row("invalid_tokens", 2), read_row(6)),
        ]
    )
    usage = LogAnalyticsLlmLogSource(client, "workspace").day_usage(DAY, SCOPE_STREAMED)
    assert usage.rows[key()].requests == 5
    assert usage.rows[key()].total_tokens == 450
    assert (usage.rows_read, usage.rejected) == (9, {"invalid_tokens": 2})
    windows = [(c["timespan"][0] + timedelta(days=1), c["timespan"][1] - timedelta(days=1)) for c in client.calls]
    noon, evening = START + timedelta(hours=12), START + timedelta(hours=18)
    assert windows == [(START, END), (START, noon), (noon, END), (noon, evening), (evening, END)]
    assert [c["query"] for c in client.calls[1:3]] == [usage_query(start=START, end=noon), usage_query(start=noon)]


def test_a_window_that_still_does_not_fit_at_the_smallest_cut_is_a_partial_result_error() -> None:
    client = FakeLogsClient([too_big() for _ in range(3)])
    source = LogAnalyticsLlmLogSource(client, "workspace", min_window=timedelta(hours=12))
    with pytest.raises(PartialResultError, match="even cut"):
        source.day_usage(DAY, SCOPE_STREAMED)


@pytest.mark.parametrize("status", [400, 403, 429, 500])
def test_an_error_answer_other_than_a_timeout_is_a_monitor_error_for_the_day(status: int) -> None:
    client = FakeLogsClient([HttpResponseError(message="no", response=_Response(status))])
    with pytest.raises(MonitorError, match=f"HTTP {status}"):
        LogAnalyticsLlmLogSource(client, "workspace").day_usage(DAY, SCOPE_STREAMED)


def test_an_answer_row_of_an_unknown_kind_is_a_monitor_error_and_nothing_is_taken() -> None:
    bad = ["total", None, None, None, None, None, None, None, None, 1, None, None]
    with pytest.raises(MonitorError, match="unknown kind"):
        LogAnalyticsLlmLogSource(FakeLogsClient([answer(bad)]), "workspace").day_usage(DAY, SCOPE_STREAMED)


def test_an_answer_row_whose_subscription_cannot_be_stored_is_rejected_with_its_calls_and_the_rest_kept() -> None:
    records = [
        dict(zip(USAGE_COLUMNS, row, strict=True))
        for row in (usage_row("s" * 600, 4, 1, 1), usage_row("sub-one", 1, 100, 20))
    ]
    usage = usage_from_answer(records, DAY, "test")
    assert usage.rejected == {"invalid_field": 4}
    assert usage.rows == {key(): one_call()}


@dataclass
class _Response:
    """Just enough of an HTTP response for ``HttpResponseError``."""

    status_code: int
    reason: str = "error"
    headers: dict[str, str] = field(default_factory=dict)
    request: None = None

    def text(self) -> str:
        return ""


class MemoryLlmLogStore:
    """An in-memory ``LlmLogStore`` whose ETag is a version number; ``interfere`` runs before a write once."""

    def __init__(self, *, fail_after: int | None = None, event_days: frozenset[date] = frozenset()) -> None:
        self.version: dict[date, int] = {}
        self.markers_by_day: dict[date, llm_logs.DayMarker] = {}
        self.rows: dict[date, dict[str, tuple[UsageKey, Counters]]] = {}
        self.interfere: Callable[[], None] | None = None
        self.writes = 0
        self.fail_after = fail_after
        """Writes of ``DAY`` that succeed before storage fails for it (None: it never does)."""
        self.writes_of_day = 0
        self.event_days = event_days

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
        if day == DAY and self.fail_after is not None:
            if self.writes_of_day >= self.fail_after:
                raise TransientStorageError("injected: storage unavailable")
            self.writes_of_day += 1
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

    def event_usage_on(self, day: date) -> bool:
        return day in self.event_days


def totals_of(store: MemoryLlmLogStore) -> dict[UsageKey, Counters]:
    return {key: counters for rows in store.rows.values() for key, counters in rows.values()}


AFTER_THE_DAY = END + timedelta(hours=7)


def collect_into(
    store: MemoryLlmLogStore, records: list[dict[str, object]], scope: str = SCOPE_STREAMED, **failing: date
) -> llm_logs.CollectOutcome:
    source = ListSource(rows(*records), failing=set(failing.values()))
    return llm_logs.collect(source, store, scope=scope, now=AFTER_THE_DAY, lag_hours=6, months=["2026-10"])


@dataclass
class ListSource:
    """A source over rows in memory; asking for a day in ``failing`` is a ``MonitorError``."""

    found: list[LlmLogRow | RejectedRow]
    failing: set[date] = field(default_factory=set)
    asked: list[tuple[date, str]] = field(default_factory=list)

    def day_usage(self, day: date, scope: str) -> WindowUsage:
        self.asked.append((day, scope))
        if day in self.failing:
            raise MonitorError("injected: the workspace did not answer")
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return count_calls(self.found, start, start + timedelta(days=1), scope)


def day_totals(*records: dict[str, object]) -> llm_logs.DayTotals:
    return llm_logs.DayTotals.of(count_calls(rows(*records), START, END, SCOPE_STREAMED))


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
    totals = day_totals(record())
    outcome = llm_logs.CollectOutcome(scope=SCOPE_STREAMED)
    llm_logs.replace_day(store, DAY, totals, totals.marker(settled=True), outcome)
    assert outcome.conflicts == 1
    assert totals_of(store) == {key(): one_call()}


def test_attributing_a_call_later_moves_its_tokens_and_deletes_the_unattributed_row() -> None:
    store = MemoryLlmLogStore()
    outcome = llm_logs.CollectOutcome(scope=SCOPE_STREAMED)
    for subscription in ("", "sub-one"):
        totals = day_totals(record(ApimSubscriptionId=subscription))
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
        pytest.param(llm_logs.DayMarker(settled=False, complete=False), True, id="cut short between two writes"),
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


def many_calls(count: int) -> list[dict[str, object]]:
    """``count`` calls on the day, one subscription each: a day of ``count`` ledger rows."""
    return [
        record(CorrelationId=f"c-{n}", ApimSubscriptionId=f"team-{n}", PromptTokens=str(n), TotalTokens=str(n + 20))
        for n in range(count)
    ]


@pytest.mark.parametrize("good_writes", [0, 1, 2])
def test_a_day_cut_short_between_its_writes_stays_due_and_the_next_run_bills_it_exactly(good_writes: int) -> None:
    calls = many_calls(250)  # three transactions: 99 + 99 + 52 rows
    store = MemoryLlmLogStore(fail_after=good_writes)
    failed = collect_into(store, calls)
    assert failed.failed == {DAY.isoformat(): "TransientStorageError"}
    assert DAY in llm_logs.days_to_collect(store, ["2026-10"], AFTER_THE_DAY)
    if good_writes:
        assert store.markers_by_day[DAY] == llm_logs.DayMarker(
            settled=False, calls=250, tokens=sum(n + 20 for n in range(250)), complete=False, scope=SCOPE_STREAMED
        )
    store.fail_after = None
    healed = collect_into(store, calls)
    assert healed.complete
    assert sum(c.total_tokens for c in totals_of(store).values()) == sum(n + 20 for n in range(250))
    assert len(totals_of(store)) == 250
    assert store.markers_by_day[DAY].settled and store.markers_by_day[DAY].complete
    assert DAY not in llm_logs.days_to_collect(store, ["2026-10"], AFTER_THE_DAY)


def test_a_day_whose_logs_cannot_be_read_does_not_stop_the_other_days() -> None:
    calls = [record(), record(CorrelationId="next", TimeGenerated="2026-10-21T12:00:00Z")]
    store = MemoryLlmLogStore()
    outcome = collect_into(store, calls, broken=DAY)
    assert outcome.failed == {DAY.isoformat(): "MonitorError"}
    assert DAY not in store.markers_by_day
    assert store.markers_by_day[DAY + timedelta(days=1)].calls == 1
    assert DAY in llm_logs.days_to_collect(store, ["2026-10"], AFTER_THE_DAY)


def test_a_month_whose_markers_cannot_be_read_is_recorded_and_the_other_months_go_on() -> None:
    class Unreadable(MemoryLlmLogStore):
        def markers(self, period: str) -> dict[date, llm_logs.DayMarker]:
            if period == "2026-09":
                raise TransientStorageError("injected")
            return super().markers(period)

    store = Unreadable()
    source = ListSource(rows(record()))
    outcome = llm_logs.collect(
        source, store, scope=SCOPE_STREAMED, now=AFTER_THE_DAY, lag_hours=6, months=["2026-09", "2026-10"]
    )
    assert outcome.failed == {"2026-09": "TransientStorageError"}
    assert totals_of(store) == {key(): one_call()}


@pytest.mark.parametrize(
    ("setting", "marker_scope", "events_applied", "billed_as"),
    [
        pytest.param(SCOPE_STREAMED, None, False, SCOPE_STREAMED, id="streamed stays streamed"),
        pytest.param(SCOPE_ALL, None, False, SCOPE_ALL, id="a new day under all bills every call"),
        pytest.param(SCOPE_ALL, SCOPE_ALL, False, SCOPE_ALL, id="a day billed as all stays all"),
        pytest.param(SCOPE_ALL, SCOPE_STREAMED, False, SCOPE_STREAMED, id="a day billed as streamed stays streamed"),
        pytest.param(SCOPE_ALL, None, True, SCOPE_STREAMED, id="a new day whose events were applied stays streamed"),
        pytest.param(SCOPE_STREAMED, SCOPE_ALL, False, SCOPE_STREAMED, id="all to streamed takes effect at once"),
        pytest.param(SCOPE_ALL, "", False, SCOPE_ALL, id="a day collected before scopes were kept"),
    ],
)
def test_a_day_is_billed_with_a_scope_that_never_bills_a_call_already_billed_by_its_event(
    setting: str, marker_scope: str | None, events_applied: bool, billed_as: str
) -> None:
    store = MemoryLlmLogStore(event_days=frozenset({DAY}) if events_applied else frozenset())
    if marker_scope is not None:
        store.markers_by_day[DAY] = llm_logs.DayMarker(settled=False, scope=marker_scope)
        store.version[DAY] = 1
    source = ListSource(rows(record()))
    llm_logs.collect(source, store, scope=setting, now=AFTER_THE_DAY, lag_hours=6, months=["2026-10"])
    assert (DAY, billed_as) in source.asked
    assert store.markers_by_day[DAY].scope == billed_as


@pytest.mark.parametrize(
    ("marker", "setting", "billed"),
    [
        pytest.param(None, SCOPE_ALL, True, id="not collected yet, will bill every call"),
        pytest.param(None, SCOPE_STREAMED, False, id="not collected yet, will bill streamed calls only"),
        pytest.param(llm_logs.DayMarker(settled=True, scope=SCOPE_ALL), SCOPE_STREAMED, True, id="settled as all"),
        pytest.param(llm_logs.DayMarker(settled=True, scope=SCOPE_STREAMED), SCOPE_ALL, False, id="billed as streamed"),
        pytest.param(llm_logs.DayMarker(settled=True), SCOPE_STREAMED, True, id="scope not recorded: kept aside"),
    ],
)
def test_an_event_set_aside_for_the_llm_logs_counts_as_billed_only_where_they_bill_its_day(
    marker: llm_logs.DayMarker | None, setting: str, billed: bool
) -> None:
    assert llm_logs.bills_buffered_calls(marker, setting) is billed


def test_a_month_with_a_day_never_collected_cut_short_or_stale_is_incomplete() -> None:
    store = MemoryLlmLogStore()
    now = datetime(2026, 10, 6, 9, tzinfo=UTC)
    for day in range(1, 7):
        store.markers_by_day[date(2026, 10, day)] = llm_logs.DayMarker(settled=day < 5)
    store.markers_by_day[date(2026, 10, 2)] = llm_logs.DayMarker(settled=False, complete=False)
    del store.markers_by_day[date(2026, 10, 3)]
    status = llm_logs.month_status(store, "2026-10", now, lag_hours=6)
    assert status.status == "incomplete"
    # The 2nd was cut short, the 3rd never collected; the 5th settled at 06:00 and was not read since.
    assert status.incomplete_days == ("2026-10-02", "2026-10-03", "2026-10-05")


def test_a_month_whose_begun_days_are_all_collected_is_complete() -> None:
    store = MemoryLlmLogStore()
    now = datetime(2026, 10, 3, 1, tzinfo=UTC)
    for day in range(1, 4):
        store.markers_by_day[date(2026, 10, day)] = llm_logs.DayMarker(settled=day < 2)
    assert llm_logs.month_status(store, "2026-10", now, lag_hours=6) == llm_logs.MonthStatus("complete")

"""The AppMetrics query passes Microsoft's Kusto parser, and the CSV export reads like the query."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargeback.domain.errors import MonitorError
from chargeback.domain.kql import kql_datetime, kql_string
from chargeback.reconciliation.monitor import (
    APP_METRICS_COLUMNS,
    TABLE,
    CsvExportSource,
    MonitorTotals,
    to_tokens,
    token_totals_query,
)
from tests.support import APPMETRICS_EXPORT, ROOT

CHECK_KQL = ROOT / "tests" / "kql" / "check_kql.js"
EXPORT = APPMETRICS_EXPORT
START = datetime(2024, 5, 1, tzinfo=UTC)
END = datetime(2024, 5, 20, tzinfo=UTC)
HEADER = "TimeGenerated,Name,Sum,ItemCount,Properties\n"
ONE = '"{""Subscription ID"":""sub-one""}"'


def kql_request(query: str) -> dict[str, Any]:
    return {"table": TABLE, "columns": [list(column) for column in APP_METRICS_COLUMNS], "query": query}


def node() -> str:
    found = shutil.which("node")
    assert found is not None, "node is needed to run the Kusto parser"
    return found


class KustoParser:
    """Microsoft's Kusto parser in one long-lived node process, checking AppMetrics queries."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._process = process

    def check(self, query: str) -> dict[str, Any]:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(kql_request(query)) + "\n")
        self._process.stdin.flush()
        answer: dict[str, Any] = json.loads(self._process.stdout.readline())
        assert "failure" not in answer, answer
        return answer


@pytest.fixture(name="kusto", scope="module")
def fixture_kusto() -> Iterator[KustoParser]:
    """The parser, loaded once for the module (loading it takes a second or so)."""
    process = subprocess.Popen(
        [node(), str(CHECK_KQL), "--lines"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        yield KustoParser(process)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)


def run_check_kql(query: str) -> tuple[int, dict[str, Any]]:
    """Run the checker once as a command, the way a person or CI would."""
    done = subprocess.run(
        [node(), str(CHECK_KQL)], input=json.dumps(kql_request(query)), capture_output=True, text=True, check=False
    )
    return done.returncode, json.loads(done.stdout)


def errors(result: dict[str, Any]) -> list[str]:
    return [d["message"] for d in result["diagnostics"] if d["severity"] == "Error"]


@pytest.fixture(name="export")
def fixture_export(tmp_path: Path) -> Any:
    """Writes an export of the given data rows (after a standard header) and returns its path."""

    def write(*rows: str, header: str = HEADER) -> Path:
        path = tmp_path / "export.csv"
        path.write_text(header + "".join(f"{row}\n" for row in rows), encoding="utf-8")
        return path

    return write


def totals(path: Path, namespace: str | None = "openai") -> dict[str, MonitorTotals]:
    return CsvExportSource(path, namespace=namespace, dimension="Subscription ID").token_totals(START, END)


@pytest.mark.parametrize("namespace", ["openai", None], ids=["with a namespace", "without a namespace"])
def test_the_token_query_has_no_diagnostics_from_the_kusto_parser(kusto: KustoParser, namespace: str | None) -> None:
    query = token_totals_query(START, END, namespace=namespace, dimension="Subscription ID")
    assert kusto.check(query)["diagnostics"] == []


def test_the_checker_exits_zero_for_the_token_query() -> None:
    query = token_totals_query(START, END, namespace="openai", dimension="Subscription ID")
    code, result = run_check_kql(query)
    assert (code, result["diagnostics"]) == (0, [])


def test_the_checker_exits_non_zero_with_the_errors_for_a_broken_query() -> None:
    query = token_totals_query(START, END, namespace="openai", dimension="Subscription ID")
    code, result = run_check_kql(query.replace("Properties", "Propertes", 1))
    assert code == 1
    assert {"severity", "message", "start", "length"} <= set(result["diagnostics"][0])
    assert any("Propertes" in message for message in errors(result))


def test_the_token_query_sums_the_preaggregated_rows_rather_than_counting_them() -> None:
    query = token_totals_query(START, END, namespace="openai", dimension="Subscription ID")
    assert "sumif(Sum, " in query
    assert "count()" not in query


def test_the_token_query_bounds_time_generated_half_open() -> None:
    query = token_totals_query(START, END, namespace=None, dimension="Subscription ID")
    assert (
        "TimeGenerated >= datetime(2024-05-01T00:00:00.000000Z)"
        " and TimeGenerated < datetime(2024-05-20T00:00:00.000000Z)"
    ) in query


@pytest.mark.parametrize(
    ("broken", "replace"),
    [
        pytest.param("Propertes", "Properties", id="a misspelt column"),
        pytest.param("sumarize", "summarize", id="a misspelt operator"),
        pytest.param("TimeGenerate ", "TimeGenerated ", id="a misspelt time column"),
    ],
)
def test_the_kusto_parser_rejects_a_broken_query(kusto: KustoParser, broken: str, replace: str) -> None:
    query = token_totals_query(START, END, namespace="openai", dimension="Subscription ID")
    result = kusto.check(query.replace(replace, broken, 1))
    assert result["errors"]
    assert errors(result)


@pytest.mark.parametrize(
    "dimension",
    [
        pytest.param('Sub "ID"', id="double quotes"),
        pytest.param("it's", id="a single quote"),
        pytest.param("back\\slash\\", id="backslashes"),
        pytest.param('x\\"] | take 1 | extend y = tostring(Properties["', id="an attempt to close the literal"),
        pytest.param("\"'\\", id="all three together"),
        pytest.param("line\nbreak\r\ttab\x00nul\x1b", id="control characters"),
        pytest.param("abonnement \u00e9t\u00e9 \u2028 \U0001f600", id="non-ascii"),
    ],
)
def test_a_dimension_name_reaches_the_parser_exactly_as_written(kusto: KustoParser, dimension: str) -> None:
    query = token_totals_query(START, END, namespace=dimension, dimension=dimension)
    result = kusto.check(query)
    assert result["diagnostics"] == []
    assert result["strings"].count(dimension) == 2  # the namespace and the dimension, nothing spilt


def test_every_character_round_trips_through_a_kql_string_literal(kusto: KustoParser) -> None:
    text = "".join(chr(point) for point in range(0x300)) + "\u2028\u2029\ufeff\U0001f600"
    result = kusto.check(f"print value = {kql_string(text)}")
    assert (result["diagnostics"], result["strings"]) == ([], [text])


@given(st.lists(st.text(), min_size=1, max_size=8))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_text_round_trips_through_a_kql_string_literal(kusto: KustoParser, texts: list[str]) -> None:
    query = "print " + ", ".join(f"v{index} = {kql_string(text)}" for index, text in enumerate(texts))
    result = kusto.check(query)
    assert (result["diagnostics"], result["strings"]) == ([], texts)


@pytest.mark.parametrize(
    ("moment", "literal"),
    [
        pytest.param(datetime(2024, 5, 1, tzinfo=UTC), "datetime(2024-05-01T00:00:00.000000Z)", id="utc"),
        pytest.param(
            datetime(2024, 5, 1, 2, 30, 0, 5, tzinfo=timezone(timedelta(hours=2))),
            "datetime(2024-05-01T00:30:00.000005Z)",
            id="an offset is converted to utc",
        ),
    ],
)
def test_a_datetime_literal_is_written_in_utc(moment: datetime, literal: str) -> None:
    assert kql_datetime(moment) == literal


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: kql_datetime(datetime(2024, 5, 1)), id="a naive datetime literal"),
        pytest.param(
            lambda: token_totals_query(END, START, namespace=None, dimension="d"), id="a window that ends first"
        ),
    ],
)
def test_a_malformed_window_is_a_programming_error(call: Any) -> None:
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize(
    ("value", "tokens"),
    [
        pytest.param(1234.0, 1234, id="a whole real"),
        pytest.param(41.999999999, 42, id="noise below rounds up"),
        pytest.param(42.000000001, 42, id="noise above rounds down"),
        pytest.param(2.5, 2, id="a half rounds to even"),
        pytest.param(2**53, 2**53, id="the largest exact double"),
        pytest.param(7, 7, id="an integer"),
        pytest.param("15.0", 15, id="a string from an export"),
        pytest.param(Decimal("0"), 0, id="zero"),
    ],
)
def test_a_real_sum_becomes_the_nearest_integer(value: object, tokens: int) -> None:
    converted = to_tokens(value, "Total Tokens")
    assert (converted, type(converted)) == (tokens, int)


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), -1.0, "twelve", None, True, "Infinity", [1]],
    ids=["nan", "infinity", "negative", "words", "null", "a boolean", "infinity text", "a list"],
)
def test_a_sum_that_is_not_a_token_count_is_a_monitor_error(value: object) -> None:
    with pytest.raises(MonitorError, match="Total Tokens"):
        to_tokens(value, "Total Tokens")


def test_the_sample_export_sums_each_subscriptions_tokens_in_the_window() -> None:
    assert totals(EXPORT) == {
        "aoai-product-subscription-one": MonitorTotals(1750, 1200, 550),
        "aoai-product-subscription-two": MonitorTotals(4010, 3000, 1000),
    }


def test_a_row_outside_the_window_is_ignored(export: Any) -> None:
    path = export(
        f"2024-04-30T23:59:59.9999999Z,Total Tokens,1,1,{ONE}",
        f"2024-05-01T00:00:00Z,Total Tokens,10,1,{ONE}",
        f"2024-05-19T23:59:59.999999Z,Total Tokens,100,1,{ONE}",
        f"2024-05-20T00:00:00Z,Total Tokens,1000,1,{ONE}",
    )
    assert totals(path) == {"sub-one": MonitorTotals(110)}


def test_a_row_of_another_metric_name_is_ignored(export: Any) -> None:
    path = export(f"2024-05-02T00:00:00Z,Total Tokens,10,1,{ONE}", f"2024-05-02T00:00:00Z,Requests,99,99,{ONE}")
    assert totals(path) == {"sub-one": MonitorTotals(10)}


def test_a_row_with_a_different_namespace_is_ignored(export: Any) -> None:
    other = '"{""Subscription ID"":""sub-one"",""_MS.MetricNamespace"":""another-gateway""}"'
    same = '"{""Subscription ID"":""sub-one"",""_MS.MetricNamespace"":""openai""}"'
    path = export(
        f"2024-05-02T00:00:00Z,Total Tokens,10,1,{same}",
        f"2024-05-02T00:00:00Z,Total Tokens,99,1,{other}",
        f"2024-05-02T00:00:00Z,Total Tokens,1,1,{ONE}",
    )
    assert totals(path) == {"sub-one": MonitorTotals(11)}


def test_without_a_namespace_setting_every_namespace_counts(export: Any) -> None:
    other = '"{""Subscription ID"":""sub-one"",""_MS.MetricNamespace"":""another-gateway""}"'
    path = export(f"2024-05-02T00:00:00Z,Total Tokens,10,1,{other}", f"2024-05-02T00:00:00Z,Total Tokens,1,1,{ONE}")
    assert totals(path, namespace=None) == {"sub-one": MonitorTotals(11)}


def test_rows_are_grouped_by_the_configured_dimension(export: Any) -> None:
    weird = '"{""Team \\""A\\"""":""blue"",""Subscription ID"":""sub-one""}"'
    path = export(f"2024-05-02T00:00:00Z,Total Tokens,10,1,{weird}")
    source = CsvExportSource(path, namespace=None, dimension='Team "A"')
    assert source.token_totals(START, END) == {"blue": MonitorTotals(10)}


def test_a_row_without_the_dimension_is_grouped_under_an_empty_subscription(export: Any) -> None:
    path = export(
        '2024-05-02T00:00:00Z,Total Tokens,10,1,"{""API ID"":""azure-openai""}"', "2024-05-02,Total Tokens,1,1,"
    )
    assert totals(path) == {"": MonitorTotals(11)}


def test_a_portal_export_with_its_utc_header_and_time_format_reads_the_same(export: Any) -> None:
    path = export(
        f'"5/19/2024, 11:59:59.000 PM",Total Tokens,1,10,10,10,{ONE}',
        f'"5/20/2024, 12:00:00.000 AM",Total Tokens,1,99,99,99,{ONE}',
        header="\ufeffTimeGenerated [UTC],Name,ItemCount,Sum,Min,Max,Properties\n",
    )
    assert totals(path) == {"sub-one": MonitorTotals(10)}


def test_a_time_with_an_offset_is_read_in_utc(export: Any) -> None:
    path = export(f"2024-05-20T01:00:00+02:00,Total Tokens,10,1,{ONE}")
    assert totals(path) == {"sub-one": MonitorTotals(10)}


@pytest.mark.parametrize(
    ("row", "complaint"),
    [
        pytest.param(f"yesterday,Total Tokens,10,1,{ONE}", "TimeGenerated is not a timestamp", id="a bad time"),
        pytest.param(f"2024-05-02T00:00:00Z,Total Tokens,ten,1,{ONE}", "Sum is not a number", id="a bad sum"),
        pytest.param(f"2024-05-02T00:00:00Z,Total Tokens,NaN,1,{ONE}", "not a finite number", id="a nan sum"),
        pytest.param(f"2024-05-02T00:00:00Z,Total Tokens,-5,1,{ONE}", "cannot be negative", id="a negative token sum"),
        pytest.param('2024-05-02T00:00:00Z,Total Tokens,10,1,"{not json"', "Properties is not JSON", id="bad json"),
        pytest.param('2024-05-02T00:00:00Z,Total Tokens,10,1,"[1, 2]"', "must be a JSON object", id="a json list"),
        pytest.param("2024-05-02T00:00:00Z,Total Tokens,10", "expected 5 fields, got 3", id="a short row"),
        pytest.param(f"2024-05-02T00:00:00Z,Requests,ten,1,{ONE}", "Sum is not a number", id="even a skipped row"),
        pytest.param(
            '2023-01-01T00:00:00Z,Total Tokens,10,1,"{not json"', "Properties is not JSON", id="out of window"
        ),
    ],
)
def test_a_malformed_row_is_a_monitor_error_naming_its_line(export: Any, row: str, complaint: str) -> None:
    path = export(f"2024-05-02T00:00:00Z,Total Tokens,10,1,{ONE}", row)
    with pytest.raises(MonitorError, match=complaint) as caught:
        totals(path)
    assert f"{path}, line 3:" in str(caught.value)


def test_a_line_number_counts_physical_lines_of_multiline_fields(export: Any) -> None:
    multiline = '"{""Subscription ID"":\n""sub-one""}"'
    path = export(f"2024-05-02T00:00:00Z,Total Tokens,10,1,{multiline}", "2024-05-02T00:00:00Z,Total Tokens,x,1,")
    with pytest.raises(MonitorError, match=r"line 4: Sum is not a number"):
        totals(path)


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        pytest.param("", "line 1: the export is empty", id="an empty file"),
        pytest.param("TimeGenerated,Name,Sum\n", "line 1: the header lacks Properties", id="a missing column"),
        pytest.param("When,Name,Sum,Properties\n", "line 1: the header lacks TimeGenerated", id="no time column"),
    ],
)
def test_an_export_without_the_needed_header_is_a_monitor_error(tmp_path: Path, content: str, complaint: str) -> None:
    path = tmp_path / "export.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(MonitorError, match=complaint):
        totals(path)


def test_a_missing_export_is_a_monitor_error(tmp_path: Path) -> None:
    with pytest.raises(MonitorError, match="cannot read the monitor export") as caught:
        totals(tmp_path / "absent.csv")
    assert isinstance(caught.value.__cause__, OSError)


def test_blank_lines_in_an_export_are_skipped(export: Any) -> None:
    path = export("", f"2024-05-02T00:00:00Z,Total Tokens,10,1,{ONE}", ",,,,")
    assert totals(path) == {"sub-one": MonitorTotals(10)}

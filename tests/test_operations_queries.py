"""Every query of the workbooks and alert rules passes Microsoft's Kusto parser against the tables it reads,
and the workbooks are well-formed workbook JSON."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.monitor_schemas import workspace_tables
from tests.support import ROOT
from tests.test_monitor import CHECK_KQL, node

INFRA = ROOT / "infra" / "app"
ALERTS = sorted((INFRA / "alerts").glob("*.kql"))
WORKBOOKS = sorted((INFRA / "workbooks").glob("*.workbook.json"))
SAMPLE_PARAMETERS = {"Period": "2026-10"}
"""A value for each workbook parameter a query names, as the workbook substitutes it."""


class Parser:
    """The Kusto parser in one node process, with every workspace table declared."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._process = process

    def errors(self, query: str) -> list[str]:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps({"tables": workspace_tables(), "query": query}) + "\n")
        self._process.stdin.flush()
        answer: dict[str, Any] = json.loads(self._process.stdout.readline())
        assert "failure" not in answer, answer
        return [d["message"] for d in answer["diagnostics"] if d["severity"] == "Error"]


@pytest.fixture(name="kusto", scope="module")
def fixture_kusto() -> Iterator[Parser]:
    process = subprocess.Popen(
        [node(), str(CHECK_KQL), "--lines"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        yield Parser(process)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)


def workbook(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def queries(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, query) of every query item and query parameter of a workbook."""
    found = [(item["name"], item["content"]["query"]) for item in document["items"] if item["type"] == 3]
    for item in document["items"]:
        if item["type"] == 9:
            found += [(p["name"], p["query"]) for p in item["content"]["parameters"] if "query" in p]
    return found


def substituted(query: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE_PARAMETERS[m.group(1)], query)


WORKBOOK_QUERIES = [
    pytest.param(path, name, query, id=f"{path.name.split('.')[0]}:{name}")
    for path in WORKBOOKS
    for name, query in queries(workbook(path))
]


@pytest.mark.parametrize("path", ALERTS, ids=lambda p: p.stem)
def test_each_alert_query_has_no_errors_from_the_kusto_parser(kusto: Parser, path: Path) -> None:
    assert kusto.errors(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(("path", "name", "query"), WORKBOOK_QUERIES)
def test_each_workbook_query_has_no_errors_from_the_kusto_parser(
    kusto: Parser, path: Path, name: str, query: str
) -> None:
    assert kusto.errors(substituted(query)) == []


@pytest.mark.parametrize(
    ("wrong", "right"),
    [("Mesage", "Message"), ("CostMinr", "CostMinor"), ("summarise", "summarize")],
    ids=["an unknown AppTraces column", "an unknown column of the custom table", "a misspelt operator"],
)
def test_the_parser_reports_what_a_query_gets_wrong(kusto: Parser, wrong: str, right: str) -> None:
    texts = [path.read_text(encoding="utf-8") for path in ALERTS] + [
        substituted(query) for path in WORKBOOKS for _, query in queries(workbook(path))
    ]
    query = next(text for text in texts if right in text)
    assert kusto.errors(query.replace(right, wrong, 1)) != []


def test_every_alert_query_is_a_rule_of_the_bicep_and_every_rule_loads_one() -> None:
    bicep = (INFRA / "operations.bicep").read_text(encoding="utf-8")
    loaded = set(re.findall(r"loadTextContent\('alerts/([\w-]+)\.kql'\)", bicep))
    assert loaded == {path.stem for path in ALERTS}
    assert len(ALERTS) >= 6


_ITEM = {
    "type": "object",
    "required": ["type", "content", "name"],
    "properties": {"type": {"enum": [1, 3, 9]}, "name": {"type": "string", "minLength": 1}},
}
_QUERY_CONTENT = {
    "type": "object",
    "required": ["version", "query", "queryType", "resourceType", "timeContextFromParameter", "visualization", "title"],
    "properties": {
        "version": {"const": "KqlItem/1.0"},
        "query": {"type": "string", "minLength": 1},
        "queryType": {"const": 0},
        "resourceType": {"const": "microsoft.operationalinsights/workspaces"},
        "visualization": {"enum": ["table", "timechart", "barchart", "piechart", "tiles"]},
        "size": {"enum": [0, 1, 2, 3, 4]},
    },
}
_PARAMETER = {
    "type": "object",
    "required": ["id", "version", "name", "type"],
    "properties": {"version": {"const": "KqlParameterItem/1.0"}, "type": {"enum": [1, 2, 4, 5]}},
}
WORKBOOK_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["version", "items"],
    "properties": {
        "version": {"const": "Notebook/1.0"},
        "items": {
            "type": "array",
            "minItems": 2,
            "items": {
                "allOf": [
                    _ITEM,
                    {
                        "if": {"properties": {"type": {"const": 3}}},
                        "then": {"properties": {"content": _QUERY_CONTENT}},
                    },
                    {
                        "if": {"properties": {"type": {"const": 9}}},
                        "then": {
                            "properties": {
                                "content": {
                                    "type": "object",
                                    "required": ["version", "parameters"],
                                    "properties": {"parameters": {"type": "array", "items": _PARAMETER}},
                                }
                            }
                        },
                    },
                    {
                        "if": {"properties": {"type": {"const": 1}}},
                        "then": {
                            "properties": {
                                "content": {
                                    "type": "object",
                                    "required": ["json"],
                                    "properties": {"json": {"type": "string"}},
                                }
                            }
                        },
                    },
                ]
            },
        },
        "fallbackResourceIds": {"type": "array"},
    },
}
"""The workbook format (Notebook/1.0) as the published schema describes it, applied to every item
(the published schema's tuple-form ``items`` checks only the first) and stricter about queries."""


@pytest.mark.parametrize("path", WORKBOOKS, ids=lambda p: p.name)
def test_each_workbook_is_valid_workbook_json(path: Path) -> None:
    jsonschema.Draft202012Validator(WORKBOOK_SCHEMA).validate(workbook(path))


@pytest.mark.parametrize("path", WORKBOOKS, ids=lambda p: p.name)
def test_each_workbook_names_its_items_once_and_declares_every_parameter_it_uses(path: Path) -> None:
    document = workbook(path)
    names = [item["name"] for item in document["items"]]
    assert len(names) == len(set(names))
    declared = {
        parameter["name"]
        for item in document["items"]
        if item["type"] == 9
        for parameter in item["content"]["parameters"]
    }
    used = {name for _, query in queries(document) for name in re.findall(r"\{(\w+)\}", query)}
    time_ranges = {item["content"]["timeContextFromParameter"] for item in document["items"] if item["type"] == 3}
    assert used | time_ranges <= declared
    assert used <= set(SAMPLE_PARAMETERS)


def test_a_schema_violation_is_caught() -> None:
    document = workbook(WORKBOOKS[0])
    broken = next(item for item in document["items"] if item["type"] == 3)
    broken["content"]["queryType"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(WORKBOOK_SCHEMA).validate(document)


def test_the_workbooks_have_stable_names_and_load_their_json_from_the_files() -> None:
    bicep = (INFRA / "operations.bicep").read_text(encoding="utf-8")
    assert "name: guid(resourceGroup().id, 'chargeback-workbook', workbook.key)" in bicep
    loaded = set(re.findall(r"loadJsonContent\('workbooks/([\w.-]+)'\)", bicep))
    assert loaded == {path.name for path in WORKBOOKS} == {"chargeback.workbook.json", "pipeline-health.workbook.json"}


@pytest.mark.parametrize("path", [INFRA / "operations.bicep", INFRA / "budget-alerts.bicep"], ids=lambda p: p.name)
def test_an_alert_rule_is_created_on_a_workspace_that_has_no_rows_yet(path: Path) -> None:
    assert "skipQueryValidation: true" in path.read_text(encoding="utf-8")


def test_every_alert_rule_notifies_the_action_group() -> None:
    bicep = (INFRA / "operations.bicep").read_text(encoding="utf-8")
    assert "actions: { actionGroups: [actionGroup.id] }" in bicep
    assert "resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {" in bicep  # always, not `if`
    assert "param alertEmails array = []" in bicep


def test_the_rule_publishes_to_the_table_the_columns_file_declares_and_the_app_may_publish_to_it_alone() -> None:
    bicep = (INFRA / "chargeback-lines.bicep").read_text(encoding="utf-8")
    assert "var columns = loadJsonContent('chargeback-lines.columns.json')" in bicep
    assert "kind: 'Direct'" in bicep
    assert re.search(r"resource appPublisher[^}]*scope: rule\n", bicep, re.DOTALL)
    assert "streamDeclarations" in bicep and "columns: columns" in bicep


def test_application_insights_keeps_custom_metric_dimensions() -> None:
    assert "CustomMetricsOptedInType: 'WithDimensions'" in (INFRA / "monitoring.bicep").read_text(encoding="utf-8")

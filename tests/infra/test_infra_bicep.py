"""The Bicep parses, and every module call, file load and parameter file fits what it names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from chargeback.app import settings
from tests.infra.bicep_tree import (
    INFRA,
    bicep_files,
    literal,
    modules,
    outputs,
    param_decorators,
    params,
    properties,
    root,
    syntax_errors,
    text,
    undeclared,
    variables,
)
from tests.support import ROOT

BICEP_FILES = bicep_files()


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_deployment_has_the_expected_bicep_files() -> None:
    names = {_id(path) for path in BICEP_FILES}
    assert {"infra/main.bicep", "infra/app/rbac.bicep", "infra/apim/apim.bicep"} <= names


@pytest.mark.parametrize("path", BICEP_FILES, ids=_id)
def test_every_bicep_file_parses_without_errors(path: Path) -> None:
    assert syntax_errors(path.read_bytes()) == []


@pytest.mark.parametrize(
    "broken",
    [
        "param name string =\n",
        "resource r 'Microsoft.Web/sites@2024-04-01' = {\n  name: \n}\n",
        "var x = {\n  a: 'b'\n",
    ],
    ids=["param-without-value", "property-without-value", "unclosed-object"],
)
def test_a_broken_snippet_is_reported(broken: str) -> None:
    assert syntax_errors(broken.encode()) != []


@pytest.mark.parametrize("path", BICEP_FILES, ids=_id)
def test_every_name_a_bicep_file_uses_is_declared_in_it(path: Path) -> None:
    assert undeclared(path.read_bytes()) == []


@pytest.mark.parametrize(
    ("source", "named"),
    [
        (
            "resource r 'Microsoft.Insights/actionGroups@2023-01-01' = {\n  name: 'g'\n}\noutput o string = gone.id\n",
            "gone",
        ),
        ("param a string\nvar b = '${a}-${c}'\n", "c"),
        (
            "resource v 'Microsoft.Network/virtualNetworks@2024-05-01' existing = {\n  name: 'v'\n}\n"
            "var s = v::gone.id\n",
            "gone",
        ),
        ("var c = [for (item, i) in range(0, 2): item]\nvar d = map(c, x => y)\n", "y"),
    ],
    ids=["output-of-a-removed-resource", "interpolated-name", "nested-resource", "lambda-body"],
)
def test_a_name_nothing_declares_is_reported(source: str, named: str) -> None:
    assert [found.split(" at ")[0] for found in undeclared(source.encode())] == [named]


def test_loop_variables_lambda_parameters_calls_and_nested_resources_are_declared_names() -> None:
    source = """
param prefix string
resource v 'Microsoft.Network/virtualNetworks@2024-05-01' existing = {
  name: prefix
  resource subnet 'subnets' existing = {
    name: 'apps'
  }
}
var ids = [for (item, i) in range(0, 2): '${prefix}-${item}-${i}']
var kept = filter(ids, id => !empty(id))
var pairs = map(kept, (x, n) => { id: x, subnet: v::subnet.id, scopes: [resourceGroup().id] })
func twice(z int) int => z * 2
output o array = [for x in pairs: x.id]
"""
    assert undeclared(source.encode()) == []


def _output_uses() -> list[tuple[Path, str, str, Path | None]]:
    """Each `symbol.outputs.name` a file reads: the file, symbol, output, and the module file it calls."""
    uses = []
    for path in BICEP_FILES:
        called = {module.symbol: (path.parent / module.target).resolve() for module in modules(path)}
        for symbol, name in re.findall(r"\b(\w+)\.outputs\.(\w+)", path.read_text(encoding="utf-8")):
            uses.append((path, symbol, name, called.get(symbol)))
    return uses


OUTPUT_USES = _output_uses()


@pytest.mark.parametrize(
    ("caller", "symbol", "name", "module"),
    OUTPUT_USES,
    ids=[f"{_id(caller)}:{symbol}.{name}" for caller, symbol, name, _ in OUTPUT_USES],
)
def test_every_module_output_a_file_reads_is_declared_by_that_module(
    caller: Path, symbol: str, name: str, module: Path | None
) -> None:
    assert module is not None, f"{symbol} is not a module {_id(caller)} calls"
    assert name in outputs(module)


def _module_calls() -> list[tuple[Path, str, Path, set[str]]]:
    calls = []
    for path in BICEP_FILES:
        for module in modules(path):
            passed = set(properties(module.props["params"]))
            calls.append((path, module.symbol, (path.parent / module.target).resolve(), passed))
    return calls


MODULE_CALLS = _module_calls()


@pytest.mark.parametrize(
    ("caller", "symbol", "target", "passed"),
    MODULE_CALLS,
    ids=[f"{_id(c)}:{s}" for c, s, _, _ in MODULE_CALLS],
)
def test_every_module_call_passes_exactly_parameters_the_module_declares(
    caller: Path, symbol: str, target: Path, passed: set[str]
) -> None:
    assert target.is_file(), f"{symbol} in {_id(caller)} points at a missing file"
    declared = params(target)
    required = {name for name, param in declared.items() if param.default is None}
    assert passed - set(declared) == set(), "passes parameters the module does not declare"
    assert required - passed == set(), "leaves required parameters unset"


@pytest.mark.parametrize("path", BICEP_FILES, ids=_id)
def test_every_file_a_bicep_file_loads_exists(path: Path) -> None:
    loads = re.findall(r"load(?:Text|Json)Content\('([^']+)'\)", text(root(path)))
    for relative in loads:
        assert (path.parent / relative).is_file(), f"{_id(path)} loads missing {relative}"


def test_the_parameter_file_maps_azd_environment_values_onto_main_bicep_parameters() -> None:
    document = json.loads((INFRA / "main.parameters.json").read_text())
    mapped = document["parameters"]
    declared = params(INFRA / "main.bicep")
    assert set(mapped) <= set(declared)
    assert mapped["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert mapped["location"]["value"] == "${AZURE_LOCATION}"
    assert mapped["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"


def test_main_bicep_leaves_only_azd_supplied_parameters_without_a_default() -> None:
    declared = params(INFRA / "main.bicep")
    assert {name for name, param in declared.items() if param.default is None} == {
        "environmentName",
        "location",
    }


@pytest.mark.parametrize(
    ("parameter", "setting"),
    [
        ("eventHubName", settings.EVENTHUB_NAME),
        ("consumerGroupName", settings.EVENTHUB_CONSUMER_GROUP),
        ("reconcileSchedule", settings.RECONCILE_SCHEDULE),
        ("reconcileTolerancePercent", settings.RECONCILE_TOLERANCE_PERCENT),
        ("priceSheetPath", settings.PRICE_SHEET),
        ("costCentersPath", settings.COST_CENTERS),
        ("llmLogScope", settings.LLM_LOG_SCOPE),
        ("providerName", settings.PROVIDER_NAME),
    ],
)
def test_main_bicep_defaults_match_the_code_defaults(parameter: str, setting: str) -> None:
    param = params(INFRA / "main.bicep")[parameter]
    assert literal(param.default) == settings.DEFAULTS[setting]


@pytest.mark.parametrize(
    ("parameter", "setting"),
    [
        ("reconcileLagHours", settings.RECONCILE_LAG_HOURS),
        ("finalGraceDays", settings.FINAL_GRACE_DAYS),
    ],
)
def test_main_bicep_whole_number_defaults_match_the_code_defaults(parameter: str, setting: str) -> None:
    param = params(INFRA / "main.bicep")[parameter]
    assert param.default is not None
    assert text(param.default) == settings.DEFAULTS[setting]


@pytest.mark.parametrize(
    ("variable", "setting"),
    [
        ("ledgerTableName", settings.LEDGER_TABLE),
        ("deadLetterTableName", settings.DEAD_LETTER_TABLE),
        ("reconciliationTableName", settings.RECONCILIATION_TABLE),
        ("reportsContainerName", settings.REPORTS_CONTAINER),
        ("deadLetterContainerName", settings.DEAD_LETTER_CONTAINER),
        ("subscriptionDimension", settings.SUBSCRIPTION_DIMENSION),
    ],
)
def test_main_bicep_creates_the_tables_and_containers_the_code_defaults_to(variable: str, setting: str) -> None:
    assert literal(variables(INFRA / "main.bicep")[variable]) == settings.DEFAULTS[setting]


def _api_call_params() -> dict[str, str]:
    [api] = [module for module in modules(INFRA / "main.bicep") if module.symbol == "api"]
    return {name: text(value) for name, value in properties(api.props["params"]).items()}


@pytest.mark.parametrize(
    ("parameter", "setting"),
    [
        ("llmLogScope", settings.LLM_LOG_SCOPE),
        ("providerName", settings.PROVIDER_NAME),
        ("finalGraceDays", settings.FINAL_GRACE_DAYS),
        ("pythonVersion", None),
    ],
)
def test_a_deployer_chooses_these_in_main_bicep_and_they_reach_the_app_unchanged(
    parameter: str, setting: str | None
) -> None:
    assert parameter in params(INFRA / "main.bicep")
    assert _api_call_params()[parameter] == parameter
    if setting is not None:
        configured = properties(variables(INFRA / "app" / "api.bicep")["appSettings"])
        assert parameter in text(configured[setting])


def test_report_downloads_are_the_deployers_choice_and_auto_follows_private_networking() -> None:
    assert _api_call_params()["downloads"] == "downloads"
    # Literals on both sides: a value typed 'auto' | 'redirect' | 'inline' would not fit the api
    # module's @allowed(['redirect', 'inline']) parameter (Bicep's BCP036), whatever the condition.
    assert text(variables(INFRA / "main.bicep")["downloads"]) == (
        "reportDownloads == 'inline' || (reportDownloads == 'auto' && privateNetworking) ? 'inline' : 'redirect'"
    )
    assert param_decorators(INFRA / "app" / "api.bicep", "downloads")["allowed"] == "['redirect', 'inline']"
    assert param_decorators(INFRA / "main.bicep", "reportDownloads")["allowed"] == "['auto', 'redirect', 'inline']"


@pytest.mark.parametrize("name", sorted(set(settings.DEFAULTS)))
def test_api_bicep_takes_every_defaulted_setting_from_a_parameter_not_a_literal(name: str) -> None:
    configured = properties(variables(INFRA / "app" / "api.bicep")["appSettings"])
    assert literal(configured[name]) is None, f"{name} is hard-coded in api.bicep"

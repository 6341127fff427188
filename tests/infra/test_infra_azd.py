"""azd deploys this folder to the function app, and its hook writes identity-only local settings."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from chargeback import interpreter
from chargeback.app import settings
from tests.infra.bicep_tree import (
    INFRA,
    literal,
    modules,
    outputs,
    param_decorators,
    params,
    properties,
    resources,
    text,
    variables,
)
from tests.infra.setting_names import NOT_IN_AZURE, connection_of, is_read
from tests.support import ROOT

HOOKS = INFRA / "hooks"
SH_HOOK = HOOKS / "postprovision.sh"
PS_HOOK = HOOKS / "postprovision.ps1"

OUTPUTS = {
    "EVENTHUB_FULLY_QUALIFIED_NAMESPACE": "evhns-abc.servicebus.windows.net",
    "EVENTHUB_NAME": "aoai-usage",
    "EVENTHUB_CONSUMER_GROUP": "chargeback",
    "STORAGE_BLOB_ENDPOINT": "https://stabc.blob.core.windows.net/",
    "STORAGE_QUEUE_ENDPOINT": "https://stabc.queue.core.windows.net/",
    "STORAGE_TABLE_ENDPOINT": "https://stabc.table.core.windows.net/",
    "HOST_STORAGE_BLOB_ENDPOINT": "https://sthostabc.blob.core.windows.net/",
    "HOST_STORAGE_QUEUE_ENDPOINT": "https://sthostabc.queue.core.windows.net/",
    "HOST_STORAGE_TABLE_ENDPOINT": "https://sthostabc.table.core.windows.net/",
    "LOG_ANALYTICS_WORKSPACE_ID": "00000000-0000-0000-0000-000000000001",
    "RECONCILE_SCHEDULE": "0 0 2 * * *",
    "CHARGEBACK_METRIC_NAMESPACE": "openai",
    "CHARGEBACK_RECONCILE_TOLERANCE_PERCENT": "1.0",
    "CHARGEBACK_RECONCILE_LAG_HOURS": "6",
    "CHARGEBACK_FINAL_GRACE_DAYS": "5",
    "CHARGEBACK_PRICE_SHEET": "config/price-sheet.json",
    "CHARGEBACK_COST_CENTERS": "config/cost-centers.csv",
    "CHARGEBACK_DOWNLOADS": "redirect",
    "CHARGEBACK_PROVIDER_NAME": "Contoso AI platform",
    "CHARGEBACK_LLM_LOG_SCOPE": "all",
    "CHARGEBACK_BUDGETS": "config/budgets.csv",
    "BUDGET_SCHEDULE": "0 */15 * * * *",
    "CHARGEBACK_APIM_RESOURCE_ID": "",
    "CHARGEBACK_ARM_ENDPOINT": "https://management.azure.com/",
    "CHARGEBACK_MAX_SUSPENSIONS": "5",
    "AZURE_RESOURCE_GROUP": "rg-dev",
}


@pytest.fixture(name="azure_yaml")
def fixture_azure_yaml() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "azure.yaml").read_text())
    return document


def run_hook(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(SH_HOOK)],
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_azd_deploys_this_folder_as_the_python_function_service_api(azure_yaml: dict[str, Any]) -> None:
    assert azure_yaml["services"] == {"api": {"project": ".", "language": "python", "host": "function"}}


def test_the_function_app_carries_the_azd_service_tag_of_that_service() -> None:
    (site,) = [r for r in resources(INFRA / "app" / "api.bicep") if r.target.startswith("Microsoft.Web/sites@")]
    assert "'azd-service-name': 'api'" in text(site.props["tags"])


def test_the_function_app_is_flex_consumption_python_of_the_chosen_version() -> None:
    by_type = {r.target.split("@")[0]: r for r in resources(INFRA / "app" / "api.bicep")}
    plan_sku = properties(by_type["Microsoft.Web/serverfarms"].props["sku"])
    assert (literal(plan_sku["name"]), literal(plan_sku["tier"])) == ("FC1", "FlexConsumption")
    config = properties(properties(by_type["Microsoft.Web/sites"].props["properties"])["functionAppConfig"])
    runtime = properties(config["runtime"])
    assert (literal(runtime["name"]), text(runtime["version"])) == ("python", "pythonVersion")
    assert literal(properties(properties(config["deployment"])["storage"])["type"]) == "blobContainer"


@pytest.mark.parametrize("path", [INFRA / "main.bicep", INFRA / "app" / "api.bicep"], ids=lambda p: p.name)
def test_the_python_version_a_deployer_may_choose_is_one_the_app_supports(path: Path) -> None:
    allowed = param_decorators(path, "pythonVersion")["allowed"]
    assert re.findall(r"'([\d.]+)'", allowed) == [f"{major}.{minor}" for major, minor in interpreter.SUPPORTED]


def test_the_default_python_version_is_the_one_make_test_runs_on() -> None:
    assert literal(params(INFRA / "main.bicep")["pythonVersion"].default) == "3.11"


@pytest.mark.parametrize("platform", ["posix", "windows"])
def test_the_postprovision_hook_of_each_platform_exists(azure_yaml: dict[str, Any], platform: str) -> None:
    hook = azure_yaml["hooks"]["postprovision"][platform]
    assert (ROOT / hook["run"]).is_file()


def test_every_value_the_hook_needs_is_a_main_bicep_output() -> None:
    needed = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", SH_HOOK.read_text())) - {"AZURE_RESOURCE_GROUP"}
    assert needed <= set(outputs(INFRA / "main.bicep"))


def test_the_hook_writes_identity_based_settings_the_app_reads(tmp_path: Path) -> None:
    result = run_hook(tmp_path, OUTPUTS)
    assert result.returncode == 0, result.stderr
    values = json.loads((tmp_path / "local.settings.json").read_text())["Values"]
    assert values["EventHubConnection__fullyQualifiedNamespace"] == OUTPUTS["EVENTHUB_FULLY_QUALIFIED_NAMESPACE"]
    assert values["ChargebackStorage__tableServiceUri"] == OUTPUTS["STORAGE_TABLE_ENDPOINT"]
    assert [name for name in values if name != "FUNCTIONS_WORKER_RUNTIME" and not is_read(name)] == []


def test_the_hook_never_writes_a_key_or_connection_string(tmp_path: Path) -> None:
    run_hook(tmp_path, OUTPUTS)
    written = (tmp_path / "local.settings.json").read_text()
    for marker in ("AccountKey", "SharedAccessKey", "DefaultEndpointsProtocol", "UseDevelopmentStorage"):
        assert marker not in written
    values = json.loads(written)["Values"]
    assert not {"EventHubConnection", "ChargebackStorage", "AzureWebJobsStorage"} & set(values)


def test_the_hook_refuses_to_run_without_the_provisioned_values(tmp_path: Path) -> None:
    result = run_hook(tmp_path, {k: v for k, v in OUTPUTS.items() if k != "STORAGE_TABLE_ENDPOINT"})
    assert result.returncode != 0
    assert "STORAGE_TABLE_ENDPOINT" in result.stderr
    assert not (tmp_path / "local.settings.json").exists()


def test_both_hooks_write_the_same_settings(tmp_path: Path) -> None:
    run_hook(tmp_path, OUTPUTS)
    posix = set(json.loads((tmp_path / "local.settings.json").read_text())["Values"])
    windows = set(re.findall(r"^\s*'([A-Za-z_]+)'\s*=", PS_HOOK.read_text(), re.MULTILINE))
    assert posix == windows


@pytest.mark.skipif(shutil.which("pwsh") is None, reason="PowerShell is not installed here")
def test_the_powershell_hook_writes_valid_json(tmp_path: Path) -> None:
    result = subprocess.run(
        ["pwsh", "-NoProfile", "-File", str(PS_HOOK)],
        cwd=tmp_path,
        env={**os.environ, **OUTPUTS},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "EVENTHUB_NAME" in json.loads((tmp_path / "local.settings.json").read_text())["Values"]


def test_azd_is_required_at_a_version_that_honours_funcignore(azure_yaml: dict[str, Any]) -> None:
    # .funcignore keeps tests, docs and infra out of the package; azd reads it from 1.18.0 on.
    assert azure_yaml["requiredVersions"] == {"azd": ">= 1.18.0"}


def _site_config() -> dict[str, str]:
    (site,) = [r for r in resources(INFRA / "app" / "api.bicep") if r.target.startswith("Microsoft.Web/sites@")]
    config = properties(properties(site.props["properties"])["siteConfig"])
    return {name: text(value) for name, value in config.items()}


def test_the_flex_site_sets_no_site_config_property_that_flex_rejects() -> None:
    # Flex Consumption refuses ftpsState and most other siteConfig properties (ARM error 51021).
    assert _site_config() == {"minTlsVersion": "'1.2'"}


@pytest.mark.parametrize("path", [INFRA / "main.bicep", INFRA / "app" / "api.bicep"], ids=lambda p: p.name)
def test_the_maximum_instance_count_stays_in_the_range_flex_documents(path: Path) -> None:
    bounds = param_decorators(path, "maximumInstanceCount")
    assert (bounds["minValue"], bounds["maxValue"]) == ("40", "1000")
    default = params(path)["maximumInstanceCount"].default
    assert default is not None
    assert 40 <= int(text(default)) <= 1000


# What the hook leaves out of the sample's names, and why.
NOT_WRITTEN_BY_THE_HOOK = {
    **{name: reason for name, reason in NOT_IN_AZURE.items() if name != "FUNCTIONS_WORKER_RUNTIME"},
    settings.MONITOR_CLIENT_ID: "locally the app signs in as you: no client id",
    settings.ARM_CLIENT_ID: "locally the app signs in as you: no client id",
}
LOCAL_ONLY_VALUES = {
    settings.ENFORCEMENT: (
        "off",
        "a developer's machine never suspends a team: that stays with the deployed app's role",
    ),
}
"""Settings the hook writes with a value of its own rather than the deployed app's, and why."""
SIGN_IN_SUFFIXES = ("__credential", "__clientId")


def sample_values() -> dict[str, str]:
    values: dict[str, str] = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    return values


def api_app_settings() -> dict[str, str]:
    return {
        name: text(value) for name, value in properties(variables(INFRA / "app" / "api.bicep")["appSettings"]).items()
    }


def hook_values() -> dict[str, str]:
    """The sh hook's Values as written in its template: name to the source of the value."""
    template = SH_HOOK.read_text().split("<<JSON", 1)[1].split('"Values": {', 1)[1]
    return dict(re.findall(r'^\s*"(\w+)": "(.*)",?$', template, re.MULTILINE))


def identity_form(connection: str) -> set[str]:
    """The identity-form settings api.bicep gives a connection, without the ones that pick an identity."""
    return {
        name for name in api_app_settings() if connection_of(name) == connection and not name.endswith(SIGN_IN_SUFFIXES)
    }


def expected_hook_names() -> set[str]:
    expected: set[str] = set()
    for name in sample_values():
        if name in NOT_WRITTEN_BY_THE_HOOK:
            continue
        expected |= identity_form(name) or {name}
    return expected


def test_the_hook_writes_every_setting_of_the_sample_connections_in_identity_form(tmp_path: Path) -> None:
    # local.settings.sample.json names every setting the app and its bindings read; the Functions
    # host resolves %CHARGEBACK_REPORT_QUEUE% and the ChargebackStorage connection from settings,
    # never from the code's defaults, so a name the hook leaves out stops generate_report indexing.
    result = run_hook(tmp_path, OUTPUTS)
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "local.settings.json").read_text())["Values"]
    assert set(written) == set(hook_values()) == expected_hook_names()


@pytest.mark.parametrize("name", [settings.STORAGE_QUEUE_URI, settings.REPORT_QUEUE, settings.EVENTHUB_NAME])
def test_the_hook_writes_what_the_bindings_resolve_from_settings(name: str) -> None:
    assert name in hook_values()


def _main_api_arguments() -> dict[str, str]:
    (call,) = [m for m in modules(INFRA / "main.bicep") if m.symbol == "api"]
    return {name: text(value) for name, value in properties(call.props["params"]).items()}


def deployed_source(setting: str) -> str:
    """The main.bicep expression the deployed app's setting gets, through api.bicep's parameters."""
    api_params = params(INFRA / "app" / "api.bicep")
    arguments = _main_api_arguments()

    def resolve(match: re.Match[str]) -> str:
        token = match.group(0)
        if token.startswith("'") or token not in api_params:
            return token
        default = api_params[token].default
        return arguments.get(token) or (text(default) if default is not None else token)

    return re.sub(r"'[^']*'|\b[A-Za-z_]\w*\b", resolve, api_app_settings()[setting])


OUTPUT_SOURCE = re.compile(r'\$\(json "\$\{?([A-Z][A-Z0-9_]*)(?::-)?\}?"\)')
HOOK_VALUES = [(name, source) for name, source in hook_values().items() if name not in NOT_IN_AZURE]
FROM_OUTPUTS = [(name, match[1]) for name, source in HOOK_VALUES if (match := OUTPUT_SOURCE.fullmatch(source))]
FIXED = [
    (name, source)
    for name, source in HOOK_VALUES
    if not OUTPUT_SOURCE.fullmatch(source) and name not in LOCAL_ONLY_VALUES
]


@pytest.mark.parametrize(("name", "output"), FROM_OUTPUTS, ids=[name for name, _ in FROM_OUTPUTS])
def test_the_hook_writes_the_output_that_carries_the_deployed_value(name: str, output: str) -> None:
    assert outputs(INFRA / "main.bicep")[output] == deployed_source(name)


@pytest.mark.parametrize(("name", "value"), FIXED, ids=[name for name, _ in FIXED])
def test_the_hook_writes_the_fixed_value_bicep_gives_the_app(name: str, value: str) -> None:
    deployed = deployed_source(name)
    bicep_value = (
        literal(variables(INFRA / "main.bicep")[deployed]) if deployed.isidentifier() else literal_text(deployed)
    )
    assert bicep_value == value


@pytest.mark.parametrize("name", sorted(LOCAL_ONLY_VALUES))
def test_the_hook_writes_its_own_value_where_a_developers_machine_must_not_act_as_the_app(name: str) -> None:
    assert hook_values()[name] == LOCAL_ONLY_VALUES[name][0]


def literal_text(source: str) -> str:
    """The text of a single-quoted Bicep string without interpolation."""
    assert re.fullmatch(r"'[^'$]*'", source), f"not a plain string literal: {source}"
    return source[1:-1]


def test_the_hook_writes_values_as_json_strings_whatever_they_hold(tmp_path: Path) -> None:
    awkward = 'config/price "sheet" \\ 2026.json'
    result = run_hook(tmp_path, {**OUTPUTS, "CHARGEBACK_PRICE_SHEET": awkward})
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "local.settings.json").read_text())["Values"]["CHARGEBACK_PRICE_SHEET"] == awkward


def test_an_empty_metric_namespace_is_written_as_empty(tmp_path: Path) -> None:
    # An empty namespace compares every namespace; the hook keeps it rather than refusing to run.
    result = run_hook(tmp_path, {k: v for k, v in OUTPUTS.items() if k != "CHARGEBACK_METRIC_NAMESPACE"})
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "local.settings.json").read_text())["Values"]["CHARGEBACK_METRIC_NAMESPACE"] == ""


def _normalized(source: str) -> str:
    """A hook value's source as `$NAME` (an output) or the literal text."""
    output = re.search(r"\$(?:\{|env:)?([A-Z][A-Z0-9_]*)", source)
    return f"${output[1]}" if output is not None else source.strip("'\"")


def test_the_windows_hook_writes_the_same_value_as_the_posix_hook_for_every_setting() -> None:
    windows = dict(re.findall(r"^\s*'(\w+)'\s*=\s*(.+?)\s*$", PS_HOOK.read_text(), re.MULTILINE))
    posix = hook_values()
    assert {name: _normalized(source) for name, source in windows.items()} == {
        name: _normalized(source) for name, source in posix.items()
    }

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
from tests.infra.bicep_tree import INFRA, literal, param_decorators, params, properties, resources, root, text
from tests.infra.setting_names import is_read
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
    "AZURE_RESOURCE_GROUP": "rg-dev",
}


@pytest.fixture(name="azure_yaml")
def fixture_azure_yaml() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "azure.yaml").read_text())
    return document


def main_outputs() -> set[str]:
    return {
        text(node.named_children[0])
        for node in root(INFRA / "main.bicep").named_children
        if node.type == "output_declaration"
    }


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
    assert needed <= main_outputs()


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

"""The app settings Bicep sets and the names the code reads are the same names, in identity form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tree_sitter

from chargeback.app import settings
from tests.infra.bicep_tree import INFRA, bicep_files, literal, properties, root, text, variables
from tests.infra.setting_names import (
    NOT_IN_AZURE,
    binding_setting_names,
    code_setting_names,
    connection_of,
    is_read,
    is_set,
)
from tests.support import ROOT

API_BICEP = INFRA / "app" / "api.bicep"
SAMPLE_SETTINGS = ROOT / "local.settings.sample.json"


def bicep_app_settings() -> dict[str, str]:
    """The app settings api.bicep gives the function app, name to value source text."""
    return {name: text(value) for name, value in properties(variables(API_BICEP)["appSettings"]).items()}


def sample_setting_names() -> list[str]:
    if not SAMPLE_SETTINGS.is_file():
        return []
    return sorted(json.loads(SAMPLE_SETTINGS.read_text())["Values"])


CONFIGURED = set(bicep_app_settings())
READ_BY_APP = code_setting_names() | binding_setting_names()


def test_the_code_declares_its_setting_names() -> None:
    assert {settings.EVENTHUB_NAME, settings.STORAGE_TABLE_URI, settings.PRICE_SHEET} <= code_setting_names()


@pytest.mark.parametrize("name", sorted(READ_BY_APP - set(NOT_IN_AZURE)))
def test_bicep_sets_every_setting_the_app_reads(name: str) -> None:
    assert is_set(name, CONFIGURED), f"{name} is read by the app but api.bicep does not set it"


@pytest.mark.parametrize(
    "name",
    [name for name in sample_setting_names() if name not in NOT_IN_AZURE]
    or [pytest.param("", marks=pytest.mark.skip(reason="local.settings.sample.json is not written yet"))],
)
def test_bicep_sets_every_setting_of_the_sample_file(name: str) -> None:
    assert is_set(name, CONFIGURED), f"{name} is in local.settings.sample.json but api.bicep does not set it"


@pytest.mark.parametrize("name", sorted(CONFIGURED))
def test_every_bicep_app_setting_is_read_by_the_code_or_the_host(name: str) -> None:
    assert is_read(name), f"nothing reads the app setting {name}"


@pytest.mark.parametrize("connection", sorted({c for name in CONFIGURED if (c := connection_of(name)) is not None}))
def test_every_identity_connection_uses_the_apps_managed_identity(connection: str) -> None:
    configured = bicep_app_settings()
    assert configured[f"{connection}__credential"] == "managedIdentity"
    assert configured[f"{connection}__clientId"] == "identityClientId"
    assert literal(variables(API_BICEP)["managedIdentity"]) == "managedidentity"


def test_the_monitor_query_and_telemetry_use_the_same_identity() -> None:
    configured = bicep_app_settings()
    assert configured[settings.MONITOR_CLIENT_ID] == "identityClientId"
    assert configured["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "'ClientId=${identityClientId};Authorization=AAD'"


def test_the_flex_consumption_app_sets_no_runtime_settings() -> None:
    assert CONFIGURED.isdisjoint({"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION"})


@pytest.mark.parametrize("path", [*bicep_files(), INFRA / "main.parameters.json"], ids=lambda p: p.name)
def test_no_infra_file_reads_or_passes_a_key(path: Path) -> None:
    source = text(root(path)) if path.suffix == ".bicep" else path.read_text()
    for marker in ("listKeys(", "listConnectionStrings(", "AccountKey=", "SharedAccessKey"):
        assert marker not in source


def _connection_string_credentials(path: Path) -> list[dict[str, str]]:
    """Every object in ``path`` with a connectionString property, as property name to source text."""
    found: list[dict[str, str]] = []

    def walk(node: tree_sitter.Node) -> None:
        if node.type == "object":
            props = properties(node)
            if "connectionString" in props:
                found.append({name: text(value) for name, value in props.items()})
        for child in node.named_children:
            walk(child)

    walk(root(path))
    return found


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.name)
def test_a_connection_string_appears_only_as_an_address_signed_in_with_an_identity(path: Path) -> None:
    # An Application Insights connection string names the ingestion endpoint; with local auth off
    # on the component it grants nothing, and the logger signs in with the managed identity.
    for credentials in _connection_string_credentials(path):
        assert credentials == {
            "connectionString": "applicationInsightsConnectionString",
            "identityClientId": "'SystemAssigned'",
        }

"""The sample settings, the emulator's config and the compose file agree with what the code reads."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from chargeback.app import settings
from devtools import simulate
from tests.support import ROOT

SAMPLE = ROOT / "local.settings.sample.json"
LOCAL = ROOT / "infra" / "local"
CONFIG_MOUNT = "/Eventhubs_Emulator/ConfigFiles/Config.json"

IDENTITY_ALTERNATIVES = {
    settings.STORAGE_TABLE_URI,
    settings.STORAGE_BLOB_URI,
    settings.STORAGE_QUEUE_URI,
    settings.STORAGE_CLIENT_ID,
}
"""Identity-based forms of a connection that the sample configures with a connection string instead."""


def sample_values() -> dict[str, str]:
    values: dict[str, str] = json.loads(SAMPLE.read_text())["Values"]
    return values


def code_settings() -> set[str]:
    """The setting names chargeback/settings.py declares as module-level constants."""
    return {
        value
        for name, value in vars(settings).items()
        if name.isupper() and isinstance(value, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", value)
    }


def binding_settings() -> set[str]:
    """Settings the host resolves for function_app.py's bindings: %NAME% and connection names."""
    code = (ROOT / "function_app.py").read_text()
    return set(re.findall(r"[\"']%([A-Za-z][A-Za-z0-9_]*)%[\"']", code)) | set(
        re.findall(r"\bconnection\s*=\s*[\"']([A-Za-z][A-Za-z0-9_]*)[\"']", code)
    )


def emulator_config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads((LOCAL / "Config.json").read_text())
    return config


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((LOCAL / "docker-compose.yml").read_text())
    return document


@pytest.mark.parametrize("name", sorted(code_settings() - IDENTITY_ALTERNATIVES))
def test_every_setting_the_code_reads_is_in_the_sample(name: str) -> None:
    assert name in sample_values()


@pytest.mark.parametrize("name", sorted(IDENTITY_ALTERNATIVES))
def test_identity_forms_are_covered_by_their_connection_string_in_the_sample(name: str) -> None:
    connection = name.split("__", maxsplit=1)[0]
    assert sample_values()[connection] == "UseDevelopmentStorage=true"


@pytest.mark.parametrize("name", sorted(binding_settings()))
def test_every_setting_the_bindings_name_is_in_the_sample(name: str) -> None:
    assert name in sample_values()


@pytest.mark.parametrize("name", sorted(set(settings.DEFAULTS)))
def test_the_sample_gives_each_defaulted_setting_its_default(name: str) -> None:
    assert sample_values()[name] == settings.DEFAULTS[name]


def test_the_sample_names_no_secret() -> None:
    text = SAMPLE.read_text()
    assert "AccountKey=" not in text
    assert "SharedAccessKey=SAS_KEY_VALUE" in text, "only the emulator's documented placeholder key"


def test_the_sample_reaches_the_event_hubs_emulator() -> None:
    connection = sample_values()["EventHubConnection"]
    parts = simulate.validate_connection_string(connection)
    assert parts["usedevelopmentemulator"] == "true"
    assert simulate.emulator_connection_string(SAMPLE) == connection


def test_the_emulator_config_declares_the_hub_and_consumer_group_the_settings_name() -> None:
    [namespace] = emulator_config()["UserConfig"]["NamespaceConfig"]
    hubs = {entity["Name"]: entity for entity in namespace["Entities"]}
    hub = hubs[sample_values()[settings.EVENTHUB_NAME]]
    assert sample_values()[settings.EVENTHUB_CONSUMER_GROUP] in {group["Name"] for group in hub["ConsumerGroups"]}
    assert int(hub["PartitionCount"]) == 4
    assert namespace["Name"] == "emulatorNs1"
    assert namespace["Type"] == "EventHub"


def test_the_compose_file_mounts_the_emulator_config_and_accepts_its_licence() -> None:
    services = compose()["services"]
    [emulator] = [s for s in services.values() if "eventhubs-emulator" in s["image"]]
    assert f"./Config.json:{CONFIG_MOUNT}:ro" in emulator["volumes"]
    assert (LOCAL / "Config.json").is_file()
    assert emulator["environment"]["ACCEPT_EULA"] == "Y"
    assert "5672:5672" in emulator["ports"]


def test_the_emulator_keeps_its_checkpoints_in_the_composed_azurite() -> None:
    services = compose()["services"]
    [emulator] = [s for s in services.values() if "eventhubs-emulator" in s["image"]]
    [(azurite_name, azurite)] = [(n, s) for n, s in services.items() if "azurite" in s["image"]]
    assert emulator["environment"]["BLOB_SERVER"] == azurite_name
    assert emulator["environment"]["METADATA_SERVER"] == azurite_name
    assert azurite_name in emulator["depends_on"]
    assert {"10000:10000", "10001:10001", "10002:10002"} <= set(azurite["ports"])


def test_the_extension_bundle_ships_an_event_hubs_extension_the_emulator_accepts() -> None:
    bundle = json.loads((ROOT / "host.json").read_text())["extensionBundle"]
    assert bundle["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    assert bundle["version"].startswith("[4.")

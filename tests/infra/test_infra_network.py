"""Private networking is one switch, off by default: VNet integration, private endpoints, public access off."""

from __future__ import annotations

import pytest

from tests.infra.bicep_tree import INFRA, literal, modules, params, properties, root, text, variables

MAIN = INFRA / "main.bicep"
NETWORK = INFRA / "app" / "network.bicep"


def calls() -> dict[str, dict[str, str]]:
    return {
        m.symbol: {name: text(value) for name, value in properties(m.props["params"]).items()} for m in modules(MAIN)
    }


def test_private_networking_is_off_by_default_so_azd_up_works_from_a_laptop() -> None:
    default = params(MAIN)["privateNetworking"].default
    assert default is not None
    assert text(default) == "false"


def test_the_network_exists_only_with_private_networking() -> None:
    (network,) = [m for m in modules(MAIN) if m.symbol == "network"]
    assert network.body.parent is not None
    assert text(network.body.parent).startswith("if (privateNetworking)")


def test_the_app_integrates_with_the_delegated_subnet() -> None:
    assert calls()["api"]["virtualNetworkSubnetId"] == "privateNetworking ? network.outputs.appSubnetId : ''"
    source = text(root(NETWORK))
    assert "serviceName: 'Microsoft.App/environments'" in source


@pytest.mark.parametrize("module", ["storage", "hostStorage", "eventHubs"])
def test_public_networks_are_refused_with_private_networking(module: str) -> None:
    assert calls()[module]["denyPublicNetworks"] == "privateNetworking"


def test_storage_and_event_hubs_turn_public_network_access_off() -> None:
    storage = text(root(INFRA / "app" / "storage.bicep"))
    assert "publicNetworkAccess: denyPublicNetworks && !allowTrustedServices ? 'Disabled' : 'Enabled'" in storage
    assert "defaultAction: denyPublicNetworks ? 'Deny' : 'Allow'" in storage
    namespace = text(root(INFRA / "app" / "eventhubs.bicep"))
    assert "publicNetworkAccess: denyPublicNetworks ? 'Disabled' : 'Enabled'" in namespace


def test_capture_keeps_its_trusted_service_path_to_the_data_account() -> None:
    assert calls()["storage"]["allowTrustedServices"] == "enableCapture"
    assert "allowTrustedServices" not in calls()["hostStorage"]


def test_every_service_the_app_reaches_has_a_private_endpoint() -> None:
    endpoints = variables(NETWORK)["endpoints"]
    pairs = {
        (text(properties(entry)["target"]), literal(properties(entry)["group"])) for entry in endpoints.named_children
    }
    assert pairs == {
        ("dataStorageAccountId", "blob"),
        ("dataStorageAccountId", "table"),
        ("hostStorageAccountId", "blob"),
        ("hostStorageAccountId", "queue"),
        ("hostStorageAccountId", "table"),
        ("eventHubNamespaceId", "namespace"),
    }

"""Private networking is one switch, off by default: VNet integration, private endpoints, public access off."""

from __future__ import annotations

import pytest

from tests.infra.bicep_tree import INFRA, modules, params, properties, root, text, variables

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


def endpoints() -> list[dict[str, str]]:
    """network.bicep's private endpoints: name, target, group and zone as source text."""
    return [
        {name: text(value) for name, value in properties(entry).items()}
        for entry in variables(NETWORK)["endpoints"].named_children
    ]


def test_every_service_the_app_reaches_has_a_private_endpoint() -> None:
    pairs = {(entry["target"], entry["group"].strip("'")) for entry in endpoints()}
    assert pairs == {
        ("dataStorageAccountId", "blob"),
        ("dataStorageAccountId", "queue"),
        ("dataStorageAccountId", "table"),
        ("hostStorageAccountId", "blob"),
        ("hostStorageAccountId", "queue"),
        ("hostStorageAccountId", "table"),
        ("eventHubNamespaceId", "namespace"),
    }


def test_the_report_queue_on_the_data_account_is_reachable_inside_the_network() -> None:
    # The report jobs live on the data account's queue (ChargebackStorage__queueServiceUri, the
    # generate_report trigger); with public access off, only a queue endpoint reaches it.
    (queue,) = [entry for entry in endpoints() if entry["name"] == "'data-queue'"]
    assert (queue["target"], queue["group"]) == ("dataStorageAccountId", "'queue'")
    app_settings = properties(variables(INFRA / "app" / "api.bicep")["appSettings"])
    assert text(app_settings["ChargebackStorage__queueServiceUri"]) == "storageQueueEndpoint"


# Microsoft Learn, "Azure Private Endpoint private DNS zone values": Storage account blob, queue
# and table sub-resources resolve in privatelink.blob|queue|table.core.windows.net (the storage
# suffix of the cloud), an Event Hubs namespace in privatelink.servicebus.windows.net (the
# namespace host's suffix).
DOCUMENTED_ZONES = {
    "'blob'": "'privatelink.blob.${environment().suffixes.storage}'",
    "'queue'": "'privatelink.queue.${environment().suffixes.storage}'",
    "'table'": "'privatelink.table.${environment().suffixes.storage}'",
    "'namespace'": "'privatelink.${eventHubsSuffix}'",
}


@pytest.mark.parametrize("entry", endpoints(), ids=lambda entry: entry["name"].strip("'"))
def test_each_endpoint_resolves_in_the_zone_microsoft_documents_for_its_sub_resource(entry: dict[str, str]) -> None:
    assert entry["zone"] == DOCUMENTED_ZONES[entry["group"]]


def test_the_event_hubs_zone_takes_the_suffix_of_the_namespace_host() -> None:
    suffix = text(variables(NETWORK)["eventHubsSuffix"])
    assert suffix == ("substring(eventHubFullyQualifiedNamespace, indexOf(eventHubFullyQualifiedNamespace, '.') + 1)")

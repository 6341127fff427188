"""The resources are locked to Entra ID sign-in and shaped the way the pipeline uses them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.bicep_tree import (
    INFRA,
    Declaration,
    bicep_files,
    literal,
    modules,
    properties,
    resources,
    root,
    text,
    variables,
)

APP = INFRA / "app"


def resource(path_name: str, resource_type: str) -> Declaration:
    (found,) = [r for r in resources(APP / path_name) if r.target.split("@")[0] == resource_type]
    return found


def props_of(declaration: Declaration) -> dict[str, str]:
    return {name: text(value) for name, value in properties(declaration.props["properties"]).items()}


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("allowSharedKeyAccess", "false"),
        ("allowBlobPublicAccess", "false"),
        ("minimumTlsVersion", "'TLS1_2'"),
        ("supportsHttpsTrafficOnly", "true"),
    ],
)
def test_the_storage_account_accepts_only_entra_id_over_tls_1_2(setting: str, value: str) -> None:
    assert props_of(resource("storage.bicep", "Microsoft.Storage/storageAccounts"))[setting] == value


def test_the_storage_account_creates_its_tables_in_bicep() -> None:
    tables = resource("storage.bicep", "Microsoft.Storage/storageAccounts/tableServices/tables")
    assert text(tables.props["name"]) == "tableName"
    (call,) = [m for m in modules(INFRA / "main.bicep") if m.symbol == "storage"]
    passed = properties(call.props["params"])
    assert text(passed["tableNames"]) == (
        "[ledgerTableName, deadLetterTableName, reconciliationTableName, budgetTableName]"
    )
    assert "reportsContainerName, deadLetterContainerName" in text(passed["containerNames"])
    assert "enableCapture ? [captureContainerName] : []" in text(passed["containerNames"])


def test_the_event_hubs_namespace_is_standard_with_keys_disabled() -> None:
    namespace = resource("eventhubs.bicep", "Microsoft.EventHub/namespaces")
    assert props_of(namespace)["disableLocalAuth"] == "true"
    assert literal(properties(namespace.props["sku"])["name"]) == "Standard"


def test_application_insights_is_workspace_based_with_local_auth_disabled() -> None:
    component = props_of(resource("monitoring.bicep", "Microsoft.Insights/components"))
    assert component["DisableLocalAuth"] == "true"
    assert component["WorkspaceResourceId"] == "workspaceResourceId"


def test_the_hub_takes_its_partitions_and_retention_from_parameters() -> None:
    hub = props_of(resource("eventhub.bicep", "Microsoft.EventHub/namespaces/eventhubs"))
    assert (hub["partitionCount"], hub["messageRetentionInDays"]) == ("partitionCount", "messageRetentionInDays")


def test_capture_writes_avro_in_the_default_path_format_with_the_namespace_identity() -> None:
    capture = props_of(resource("eventhub.bicep", "Microsoft.EventHub/namespaces/eventhubs"))["captureDescription"]
    assert capture.startswith("enableCapture")
    assert "encoding: 'Avro'" in capture
    assert "'{Namespace}/{EventHub}/{PartitionId}/{Year}/{Month}/{Day}/{Hour}/{Minute}/{Second}'" in capture
    assert "type: 'SystemAssigned'" in capture


def test_the_app_reads_with_its_own_consumer_group() -> None:
    group = resource("eventhub.bicep", "Microsoft.EventHub/namespaces/eventhubs/consumergroups")
    assert text(group.props["name"]) == "consumerGroupName"


def test_capture_is_switched_on_only_after_its_role_is_granted() -> None:
    # Event Hubs, "Authenticate modes for capturing events to destinations": the destination must
    # hold the role for the namespace's identity before Capture is enabled with that identity.
    calls = {m.symbol: m for m in modules(INFRA / "main.bicep")}
    assert text(calls["eventHub"].props["dependsOn"]) == "[captureAccess]"
    assert calls["captureAccess"].body.parent is not None
    assert text(calls["captureAccess"].body.parent).startswith("if (enableCapture)")


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.name)
def test_no_bicep_file_hard_codes_the_public_clouds_service_bus_suffix(path: Path) -> None:
    assert "servicebus.windows.net" not in text(root(path))


def test_the_namespace_host_name_is_read_from_the_endpoint_azure_reports() -> None:
    host = variables(APP / "eventhubs.bicep")["serviceBusHost"]
    assert "namespace.properties.serviceBusEndpoint" in text(host)
    outputs = {
        text(node.named_children[0]): text(node.named_children[-1])
        for node in root(APP / "eventhubs.bicep").named_children
        if node.type == "output_declaration"
    }
    assert outputs["fullyQualifiedNamespace"] == "serviceBusHost"


def test_the_apim_logger_sends_to_the_host_name_the_namespace_reports() -> None:
    (logger,) = [r for r in resources(INFRA / "apim" / "apim.bicep") if r.symbol == "usageLogger"]
    credentials = properties(properties(logger.props["properties"])["credentials"])
    assert text(credentials["endpointAddress"]) == "eventHubFullyQualifiedNamespace"
    (call,) = [m for m in modules(INFRA / "main.bicep") if m.symbol == "apim"]
    passed = properties(call.props["params"])
    assert text(passed["eventHubFullyQualifiedNamespace"]) == "eventHubs.outputs.fullyQualifiedNamespace"

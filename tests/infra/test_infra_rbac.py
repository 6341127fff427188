"""Each identity holds exactly the roles the pipeline needs, on the narrowest resource it needs them on."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import tree_sitter

from tests.infra.bicep_tree import INFRA, literal, modules, params, properties, root, text, variables
from tests.support import ROOT

# Built-in role definition ids (learn.microsoft.com, Azure built-in roles).
ROLE_IDS = {
    "Azure Event Hubs Data Receiver": "a638d3c7-ab3a-418d-83e6-5f17a39d4fde",
    "Azure Event Hubs Data Sender": "2b629674-e913-4c01-ae53-ef4638d8f975",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "Log Analytics Data Reader": "3b03c2da-16b3-4a49-8834-0f8130efdd3b",
    "Storage Blob Delegator": "db58b8e5-c6ad-4a2a-8342-4190687cbf4a",
}

RBAC_FILES = [
    INFRA / "app" / "rbac.bicep",
    INFRA / "app" / "capture-access.bicep",
    INFRA / "app" / "workspace-access.bicep",
    INFRA / "app" / "finops-hub-access.bicep",
    INFRA / "apim" / "eventhub-sender.bicep",
    INFRA / "apim" / "insights-publisher.bicep",
]


@dataclass(frozen=True)
class Scope:
    """A resource a role is granted on: its type and the source text of its name."""

    type: str
    name: str


@dataclass(frozen=True)
class Grant:
    """One role assignment as written: to whom, which role, on which resource."""

    principal: str
    role: str
    scope: Scope
    conditional: bool


def _scopes(path: Path) -> dict[str, Scope]:
    """Every resource symbol, nested ones as parent::child, to its full type and name."""
    found: dict[str, Scope] = {}

    def walk(node: tree_sitter.Node, parent_symbol: str, parent_type: str) -> None:
        for child in node.named_children:
            if child.type != "resource_declaration":
                walk(child, parent_symbol, parent_type)
                continue
            symbol = text(child.named_children[0])
            target = (literal(child.named_children[1]) or "").split("@")[0]
            full_type = f"{parent_type}/{target}" if parent_type else target
            full_symbol = f"{parent_symbol}::{symbol}" if parent_symbol else symbol
            body = child.named_children[-1]
            name = properties(body).get("name") if body.type == "object" else None
            found[full_symbol] = Scope(full_type, text(name) if name is not None else "")
            walk(body, full_symbol, full_type)

    walk(root(path), "", "")
    return found


def _role_names(path: Path) -> dict[str, str]:
    by_id = {guid: name for name, guid in ROLE_IDS.items()}
    return {
        var: by_id[guid]
        for var, value in variables(path).items()
        if (guid := literal(value)) is not None and guid in by_id
    }


def _assignments(path: Path) -> list[tree_sitter.Node]:
    return [
        node
        for node in root(path).named_children
        if node.type == "resource_declaration"
        and (literal(node.named_children[1]) or "").startswith("Microsoft.Authorization/roleAssignments@")
    ]


def grants(path: Path) -> list[Grant]:
    scopes = _scopes(path)
    roles = _role_names(path)
    found = []
    for assignment in _assignments(path):
        symbol = text(assignment.named_children[0])
        body = assignment.named_children[-1]
        conditional = body.type != "object"
        props = properties(body.named_children[-1] if conditional else body)
        inner = properties(props["properties"])
        role_var = re.fullmatch(
            r"subscriptionResourceId\('Microsoft\.Authorization/roleDefinitions', (\w+)\)",
            text(inner["roleDefinitionId"]),
        )
        assert role_var is not None, f"{symbol}: role definition id is not a named variable"
        scope = text(props["scope"])
        principal = text(inner["principalId"])
        expected_name = f"guid({scope}.id, {principal}, {role_var[1]})"
        assert text(props["name"]) == expected_name, f"{symbol}: name is not {expected_name}"
        found.append(Grant(principal, roles[role_var[1]], scopes[scope], conditional))
    return found


ALL_GRANTS = {path.relative_to(ROOT).as_posix(): grants(path) for path in RBAC_FILES}

APP = "appPrincipalId"
USER = "userPrincipalId"
DEPLOY = "deployPrincipalId"
RBAC = "infra/app/rbac.bicep"

HUB = Scope("Microsoft.EventHub/namespaces/eventhubs", "eventHubName")
HOST = Scope("Microsoft.Storage/storageAccounts", "hostStorageAccountName")
DATA = Scope("Microsoft.Storage/storageAccounts", "storageAccountName")
TABLE = "Microsoft.Storage/storageAccounts/tableServices/tables"
CONTAINER = "Microsoft.Storage/storageAccounts/blobServices/containers"
LEDGER, DEAD_LETTER_TABLE, RECONCILIATION, BUDGET_TABLE = (
    Scope(TABLE, name)
    for name in ("ledgerTableName", "deadLetterTableName", "reconciliationTableName", "budgetTableName")
)
REPORTS, DEAD_LETTER_CONTAINER, PACKAGE = (
    Scope(CONTAINER, name) for name in ("reportsContainerName", "deadLetterContainerName", "deploymentContainerName")
)
QUEUE = "Microsoft.Storage/storageAccounts/queueServices/queues"
REPORT_QUEUE, REPORT_POISON_QUEUE = (Scope(QUEUE, name) for name in ("reportQueueName", "reportPoisonQueueName"))
INSIGHTS = Scope("Microsoft.Insights/components", "applicationInsightsName")
WORKSPACE = Scope("Microsoft.OperationalInsights/workspaces", "workspaceName")
HUB_INGESTION = Scope(CONTAINER, "'ingestion'")
"""A FinOps hub's ingestion container, in the hub's storage account: the one thing of the hub the app writes."""

# What the running code touches: the same list for the app and (to run it locally) the user.
RUNTIME = [
    ("Azure Event Hubs Data Receiver", HUB),
    ("Storage Blob Data Owner", HOST),
    ("Storage Queue Data Contributor", HOST),
    ("Storage Table Data Contributor", HOST),
    ("Storage Table Data Contributor", LEDGER),
    ("Storage Table Data Contributor", DEAD_LETTER_TABLE),
    ("Storage Table Data Contributor", RECONCILIATION),
    ("Storage Table Data Contributor", BUDGET_TABLE),
    ("Storage Blob Data Contributor", REPORTS),
    ("Storage Blob Data Contributor", DEAD_LETTER_CONTAINER),
    ("Storage Queue Data Contributor", REPORT_QUEUE),
    ("Storage Queue Data Contributor", REPORT_POISON_QUEUE),
    # Signs the download links (a user delegation key); reads no data itself.
    ("Storage Blob Delegator", DATA),
]

EXPECTED = [
    *[(RBAC, APP, role, scope, False) for role, scope in RUNTIME],
    (RBAC, APP, "Monitoring Metrics Publisher", INSIGHTS, False),
    (RBAC, DEPLOY, "Storage Blob Data Contributor", PACKAGE, False),
    *[(RBAC, USER, role, scope, True) for role, scope in RUNTIME],
    (RBAC, USER, "Azure Event Hubs Data Sender", HUB, True),
    ("infra/app/workspace-access.bicep", APP, "Log Analytics Data Reader", WORKSPACE, False),
    ("infra/app/workspace-access.bicep", USER, "Log Analytics Data Reader", WORKSPACE, True),
    ("infra/app/finops-hub-access.bicep", APP, "Storage Blob Data Contributor", HUB_INGESTION, False),
    # Event Hubs documents Capture's role on the storage account, not on a container.
    ("infra/app/capture-access.bicep", "capturePrincipalId", "Storage Blob Data Contributor", DATA, False),
    ("infra/apim/eventhub-sender.bicep", "apimPrincipalId", "Azure Event Hubs Data Sender", HUB, False),
    ("infra/apim/insights-publisher.bicep", "apimPrincipalId", "Monitoring Metrics Publisher", INSIGHTS, False),
]


@pytest.mark.parametrize("path", RBAC_FILES, ids=lambda p: p.name)
def test_role_variables_hold_the_built_in_role_ids(path: Path) -> None:
    named = _role_names(path)
    role_like = {var for var in variables(path) if var.endswith("Role")}
    assert role_like == set(named), "a role variable holds an id that is not the built-in role's"


@pytest.mark.parametrize(
    ("path", "principal", "role", "scope", "conditional"),
    EXPECTED,
    ids=[f"{principal}-{role}-{scope.name}" for _, principal, role, scope, _ in EXPECTED],
)
def test_each_identity_holds_its_role_on_its_resource(
    path: str, principal: str, role: str, scope: Scope, conditional: bool
) -> None:
    assert Grant(principal, role, scope, conditional) in ALL_GRANTS[path]


def test_no_role_is_granted_beyond_the_expected_ones() -> None:
    granted = {(path, g.principal, g.role, g.scope, g.conditional) for path, gs in ALL_GRANTS.items() for g in gs}
    assert granted == set(EXPECTED)


# Roles that carry no data action: they reach no blob, whatever their scope.
NO_DATA_ACTIONS = {"Storage Blob Delegator"}


def test_no_identity_but_the_deploy_identity_can_write_the_deployment_package() -> None:
    writers = {
        g.principal
        for gs in ALL_GRANTS.values()
        for g in gs
        if g.scope in (PACKAGE, DATA) and g.role not in NO_DATA_ACTIONS
    }
    assert writers == {DEPLOY, "capturePrincipalId"}


@pytest.mark.parametrize("principal", [APP, USER])
def test_the_user_delegation_key_is_asked_for_with_a_role_on_the_storage_account(principal: str) -> None:
    # Microsoft Learn, "Get User Delegation Key" (Storage REST API), Authorization: the operation
    # acts at the level of the storage account, so the
    # Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey action "must be
    # scoped at the level of the storage account, the resource group, or the subscription". A
    # grant on the blob service or a container would make every download link fail with 403.
    (delegator,) = [g for g in ALL_GRANTS[RBAC] if g.principal == principal and g.role == "Storage Blob Delegator"]
    assert delegator.scope == DATA


@pytest.mark.parametrize("principal", [APP, USER])
def test_queue_roles_sit_on_single_queues_a_scope_storage_documents(principal: str) -> None:
    # Microsoft Learn, "Authorize access to queues using Microsoft Entra ID", Resource scope: a
    # role on queue data is scoped to an individual queue, the storage account, the resource
    # group, the subscription or a management group; the queue service is not among them.
    data_queue_scopes = {
        g.scope
        for g in ALL_GRANTS[RBAC]
        if g.principal == principal and g.role == "Storage Queue Data Contributor" and g.scope != HOST
    }
    assert data_queue_scopes == {REPORT_QUEUE, REPORT_POISON_QUEUE}


def test_the_poison_queue_is_the_one_the_functions_host_moves_failed_jobs_to() -> None:
    # Microsoft Learn, "Azure Queue storage trigger for Azure Functions", Poison messages: after
    # the last failed attempt the host moves the message to a queue named <originalqueuename>-poison.
    assert text(variables(ROOT / "infra" / "main.bicep")["reportPoisonQueueName"]) == "'${reportQueueName}-poison'"
    (call,) = [m for m in modules(ROOT / "infra" / "main.bicep") if m.symbol == "storage"]
    assert text(properties(call.props["params"])["queueNames"]) == "[reportQueueName, reportPoisonQueueName]"


def test_no_owner_role_reaches_the_data_account() -> None:
    data_scopes = {
        DATA,
        LEDGER,
        DEAD_LETTER_TABLE,
        RECONCILIATION,
        BUDGET_TABLE,
        REPORTS,
        DEAD_LETTER_CONTAINER,
        PACKAGE,
    }
    assert [g for gs in ALL_GRANTS.values() for g in gs if g.role.endswith("Owner") and g.scope in data_scopes] == []


@pytest.mark.parametrize("symbol", ["appTableReader", "userTableReader"])
def test_workspace_reads_are_limited_to_the_three_tables_by_a_condition(symbol: str) -> None:
    path = INFRA / "app" / "workspace-access.bicep"
    (assignment,) = [a for a in _assignments(path) if text(a.named_children[0]) == symbol]
    body = assignment.named_children[-1]
    inner = properties(properties(body.named_children[-1] if body.type != "object" else body)["properties"])
    assert (text(inner["condition"]), literal(inner["conditionVersion"])) == ("tableCondition", "2.0")
    condition = text(variables(path)["tableCondition"])
    assert "ActionMatches{\\'Microsoft.OperationalInsights/workspaces/tables/data/read\\'}" in condition
    assert "@Resource[Microsoft.OperationalInsights/workspaces/tables:name] StringEquals" in condition


def test_the_hubs_container_is_granted_only_when_a_hub_is_named_and_in_the_hubs_resource_group() -> None:
    main = INFRA / "main.bicep"
    access = {m.symbol: m for m in modules(main)}["finopsHubAccess"]
    assert "module finopsHubAccess 'app/finops-hub-access.bicep' = if (useFinopsHub) {" in text(root(main))
    assert text(variables(main)["useFinopsHub"]) == "!empty(finopsHubStorageAccountId)"
    assert "finopsHubParts[4]" in text(access.props["scope"])


def test_the_readable_tables_are_exactly_the_ones_the_queries_read() -> None:
    default = params(INFRA / "app" / "workspace-access.bicep")["readableTables"].default
    assert default is not None
    assert {literal(item) for item in default.named_children} == {
        "AppMetrics",
        "ApiManagementGatewayLlmLog",
        "ApiManagementGatewayLogs",
    }


@pytest.mark.parametrize(
    ("path", "module", "param", "source"),
    [
        ("infra/main.bicep", "rbac", "appPrincipalId", "identity.outputs.principalId"),
        ("infra/main.bicep", "rbac", "deployPrincipalId", "deployIdentity.outputs.principalId"),
        ("infra/main.bicep", "rbac", "userPrincipalId", "principalId"),
        ("infra/main.bicep", "captureAccess", "capturePrincipalId", "eventHubs.outputs.principalId"),
        ("infra/main.bicep", "workspaceAccess", "appPrincipalId", "identity.outputs.principalId"),
        ("infra/main.bicep", "workspaceAccess", "userPrincipalId", "grantPrincipalWorkspaceAccess ? principalId : ''"),
        ("infra/main.bicep", "finopsHubAccess", "appPrincipalId", "identity.outputs.principalId"),
        ("infra/apim/apim.bicep", "sender", "apimPrincipalId", "apimService.identity.principalId"),
        ("infra/apim/apim.bicep", "insightsPublisher", "apimPrincipalId", "apimService.identity.principalId"),
    ],
)
def test_the_principals_are_the_right_identities(path: str, module: str, param: str, source: str) -> None:
    calls = {m.symbol: m for m in modules(ROOT / path)}
    assert text(properties(calls[module].props["params"])[param]) == source


def test_the_app_runs_as_the_identity_that_holds_the_roles() -> None:
    calls = {m.symbol: m for m in modules(INFRA / "main.bicep")}
    passed = properties(calls["api"].props["params"])
    assert text(passed["identityId"]) == "identity.outputs.id"
    assert text(passed["identityClientId"]) == "identity.outputs.clientId"
    assert text(passed["deployIdentityId"]) == "deployIdentity.outputs.id"


def test_the_platform_reads_the_package_with_the_deploy_identity_not_the_apps() -> None:
    source = text(root(INFRA / "app" / "api.bicep"))
    assert "userAssignedIdentityResourceId: deployIdentityId" in source
    assert "userAssignedIdentityResourceId: identityId" not in source

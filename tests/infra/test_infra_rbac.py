"""Each identity holds exactly the roles the pipeline needs, on the resource it needs them on."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from bicep_tree import INFRA, ROOT, literal, modules, properties, resources, text, variables

# Built-in role definition ids (learn.microsoft.com, Azure built-in roles).
ROLE_IDS = {
    "Azure Event Hubs Data Receiver": "a638d3c7-ab3a-418d-83e6-5f17a39d4fde",
    "Azure Event Hubs Data Sender": "2b629674-e913-4c01-ae53-ef4638d8f975",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "Log Analytics Reader": "73c42c96-874c-492b-b04d-ab87d138a893",
}

RBAC_FILES = [
    INFRA / "app" / "rbac.bicep",
    INFRA / "app" / "workspace-access.bicep",
    INFRA / "apim" / "eventhub-sender.bicep",
    INFRA / "apim" / "insights-publisher.bicep",
]


@dataclass(frozen=True)
class Grant:
    """One role assignment as written: to whom, which role, on which resource (by type)."""

    principal: str
    role: str
    scope: str
    conditional: bool


def _resource_types(path: Path) -> dict[str, str]:
    return {r.symbol: r.target.split("@")[0] for r in resources(path)}


def _role_names(path: Path) -> dict[str, str]:
    by_id = {guid: name for name, guid in ROLE_IDS.items()}
    return {
        var: by_id[guid]
        for var, value in variables(path).items()
        if (guid := literal(value)) is not None and guid in by_id
    }


def grants(path: Path) -> list[Grant]:
    types = _resource_types(path)
    roles = _role_names(path)
    found = []
    for assignment in resources(path):
        if not assignment.target.startswith("Microsoft.Authorization/roleAssignments@"):
            continue
        props = assignment.props
        inner = properties(props["properties"])
        role_var = re.fullmatch(
            r"subscriptionResourceId\('Microsoft\.Authorization/roleDefinitions', (\w+)\)",
            text(inner["roleDefinitionId"]),
        )
        assert role_var is not None, f"{assignment.symbol}: role definition id is not a named variable"
        scope = text(props["scope"])
        principal = text(inner["principalId"])
        expected_name = f"guid({scope}.id, {principal}, {role_var[1]})"
        assert text(props["name"]) == expected_name, f"{assignment.symbol}: name is not {expected_name}"
        conditional = assignment.body.parent is not None and assignment.body.parent.type == "if_statement"
        found.append(Grant(principal, roles[role_var[1]], types[scope], conditional))
    return found


ALL_GRANTS = {path.relative_to(ROOT).as_posix(): grants(path) for path in RBAC_FILES}

APP = "appPrincipalId"
USER = "userPrincipalId"
STORAGE = "Microsoft.Storage/storageAccounts"
NAMESPACE = "Microsoft.EventHub/namespaces"
CONTAINER = "Microsoft.Storage/storageAccounts/blobServices/containers"
INSIGHTS = "Microsoft.Insights/components"
WORKSPACE = "Microsoft.OperationalInsights/workspaces"

EXPECTED = [
    # file, principal, role, scope, only when asked for
    ("infra/app/rbac.bicep", APP, "Azure Event Hubs Data Receiver", NAMESPACE, False),
    ("infra/app/rbac.bicep", APP, "Storage Blob Data Owner", STORAGE, False),
    ("infra/app/rbac.bicep", APP, "Storage Table Data Contributor", STORAGE, False),
    ("infra/app/rbac.bicep", APP, "Storage Queue Data Contributor", STORAGE, False),
    ("infra/app/rbac.bicep", APP, "Monitoring Metrics Publisher", INSIGHTS, False),
    ("infra/app/workspace-access.bicep", APP, "Log Analytics Reader", WORKSPACE, False),
    ("infra/app/rbac.bicep", USER, "Azure Event Hubs Data Sender", NAMESPACE, True),
    ("infra/app/rbac.bicep", USER, "Azure Event Hubs Data Receiver", NAMESPACE, True),
    ("infra/app/rbac.bicep", USER, "Storage Blob Data Owner", STORAGE, True),
    ("infra/app/rbac.bicep", USER, "Storage Table Data Contributor", STORAGE, True),
    ("infra/app/rbac.bicep", USER, "Storage Queue Data Contributor", STORAGE, True),
    ("infra/app/workspace-access.bicep", USER, "Log Analytics Reader", WORKSPACE, True),
    # Event Hubs documents Capture's role on the storage account, not on a container.
    ("infra/app/rbac.bicep", "capturePrincipalId", "Storage Blob Data Contributor", STORAGE, True),
    ("infra/apim/eventhub-sender.bicep", "apimPrincipalId", "Azure Event Hubs Data Sender", NAMESPACE, False),
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
    ids=[f"{principal}-{role}" for _, principal, role, _, _ in EXPECTED],
)
def test_each_identity_holds_its_role_on_its_resource(
    path: str, principal: str, role: str, scope: str, conditional: bool
) -> None:
    assert Grant(principal, role, scope, conditional) in ALL_GRANTS[path]


def test_no_role_is_granted_beyond_the_expected_ones() -> None:
    granted = {(path, g.principal, g.role, g.scope, g.conditional) for path, gs in ALL_GRANTS.items() for g in gs}
    assert granted == set(EXPECTED)


@pytest.mark.parametrize(
    ("path", "module", "param", "source"),
    [
        ("infra/main.bicep", "rbac", "appPrincipalId", "identity.outputs.principalId"),
        ("infra/main.bicep", "rbac", "userPrincipalId", "principalId"),
        ("infra/main.bicep", "rbac", "capturePrincipalId", "eventHubs.outputs.principalId"),
        ("infra/main.bicep", "workspaceAccess", "appPrincipalId", "identity.outputs.principalId"),
        ("infra/main.bicep", "workspaceAccess", "userPrincipalId", "grantPrincipalWorkspaceAccess ? principalId : ''"),
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

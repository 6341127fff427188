"""Budgets in the Bicep: a custom role with exactly three actions on the one instance, and an alert rule
whose KQL Microsoft's Kusto parser accepts against the AppTraces schema."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chargeback.app import settings
from chargeback.domain import logs
from tests.infra.bicep_tree import INFRA, literal, modules, params, properties, resources, root, text, variables
from tests.test_monitor import CHECK_KQL, node

ENFORCER = INFRA / "apim" / "budget-enforcer.bicep"
ALERTS = INFRA / "app" / "budget-alerts.bicep"
QUERY = INFRA / "app" / "budget-alerts.kql"
MAIN = INFRA / "main.bicep"

APP_TRACES = [
    ("TenantId", "string"),
    ("TimeGenerated", "datetime"),
    ("Message", "string"),
    ("SeverityLevel", "int"),
    ("Properties", "dynamic"),
    ("Measurements", "dynamic"),
    ("OperationName", "string"),
    ("OperationId", "string"),
    ("ParentId", "string"),
    ("SyntheticSource", "string"),
    ("SessionId", "string"),
    ("UserId", "string"),
    ("UserAuthenticatedId", "string"),
    ("UserAccountId", "string"),
    ("AppVersion", "string"),
    ("AppRoleName", "string"),
    ("AppRoleInstance", "string"),
    ("ClientType", "string"),
    ("ClientModel", "string"),
    ("ClientOS", "string"),
    ("ClientIP", "string"),
    ("ClientCity", "string"),
    ("ClientStateOrProvince", "string"),
    ("ClientCountryOrRegion", "string"),
    ("ClientBrowser", "string"),
    ("ResourceGUID", "string"),
    ("IKey", "string"),
    ("SDKVersion", "string"),
    ("ItemCount", "int"),
    ("ReferencedItemId", "string"),
    ("ReferencedType", "string"),
    ("SourceSystem", "string"),
    ("Type", "string"),
    ("_ResourceId", "string"),
]
"""AppTraces as Azure Monitor's table reference documents it (workspace-based Application Insights traces)."""


def check(query: str) -> tuple[int, dict[str, Any]]:
    request = {"table": "AppTraces", "columns": [list(column) for column in APP_TRACES], "query": query}
    done = subprocess.run(
        [node(), str(CHECK_KQL)], input=json.dumps(request), capture_output=True, text=True, check=False
    )
    return done.returncode, json.loads(done.stdout)


def declared(path: Path, symbol: str) -> dict[str, Any]:
    (found,) = [r for r in resources(path) if r.symbol == symbol]
    return found.props


def test_the_enforcer_role_holds_exactly_the_three_actions_and_nothing_else() -> None:
    role = properties(declared(ENFORCER, "enforcerRole")["properties"])
    [permission] = role["permissions"].named_children
    granted = properties(permission)
    actions = {literal(item) for item in variables(ENFORCER)["enforcerActions"].named_children}
    assert text(granted["actions"]) == "enforcerActions"
    assert actions == {
        "Microsoft.ApiManagement/service/read",
        "Microsoft.ApiManagement/service/subscriptions/read",
        "Microsoft.ApiManagement/service/subscriptions/write",
    }
    assert [text(granted[name]) for name in ("notActions", "dataActions", "notDataActions")] == ["[]", "[]", "[]"]
    assert literal(role["type"]) == "CustomRole"


def test_the_enforcer_role_is_assigned_to_the_apps_identity_on_the_instance_only() -> None:
    assignment = declared(ENFORCER, "appEnforcer")
    inner = properties(assignment["properties"])
    assert text(assignment["scope"]) == "apimService"
    assert (text(inner["roleDefinitionId"]), text(inner["principalId"])) == ("enforcerRole.id", "appPrincipalId")
    assert text(assignment["name"]) == "guid(apimService.id, appPrincipalId, enforcerRole.id)"
    assert text(properties(declared(ENFORCER, "enforcerRole")["properties"])["assignableScopes"]) == (
        "[resourceGroup().id]"
    )


def test_the_role_is_deployed_only_with_enforcement_on_for_the_wired_instance() -> None:
    (call,) = [m for m in modules(MAIN) if m.symbol == "budgetEnforcer"]
    passed = properties(call.props["params"])
    assert (text(passed["appPrincipalId"]), text(passed["apimServiceName"])) == (
        "identity.outputs.principalId",
        "apimServiceName",
    )
    assert text(variables(MAIN)["enforceBudgets"]) == "wireApim && budgetEnforcement == 'on'"
    assert "module budgetEnforcer 'apim/budget-enforcer.bicep' = if (enforceBudgets) {" in text(root(MAIN))


def test_the_app_is_told_to_enforce_only_when_the_role_is_granted() -> None:
    (call,) = [m for m in modules(MAIN) if m.symbol == "api"]
    passed = properties(call.props["params"])
    assert text(passed["budgetEnforcement"]) == "enforceBudgets ? 'on' : 'off'"
    assert text(passed["apimResourceId"]) == "apimResourceId"


def test_the_alert_rule_runs_the_checked_query_over_the_workspace() -> None:
    rule = properties(declared(ALERTS, "budgetRule")["properties"])
    [criterion] = properties(rule["criteria"])["allOf"].named_children
    assert text(properties(criterion)["query"]) == "budgetQuery"
    assert text(variables(ALERTS)["budgetQuery"]) == "loadTextContent('budget-alerts.kql')"
    assert text(rule["scopes"]) == "[workspaceResourceId]"
    assert (text(rule["autoMitigate"]), literal(declared(ALERTS, "budgetRule")["kind"])) == ("true", "LogAlert")


def test_the_alert_rule_mails_through_the_deployments_one_action_group_of_the_email_parameter() -> None:
    rule = properties(declared(ALERTS, "budgetRule")["properties"])
    assert text(rule["actions"]) == "notify ? { actionGroups: [actionGroupId] } : {}"
    (call,) = [m for m in modules(MAIN) if m.symbol == "budgetAlerts"]
    passed = properties(call.props["params"])
    assert (text(passed["actionGroupId"]), text(passed["workspaceResourceId"])) == (
        "operations.outputs.actionGroupId",
        "monitoring.outputs.workspaceResourceId",
    )
    operations = INFRA / "app" / "operations.bicep"
    group = properties(declared(operations, "actionGroup")["properties"])
    assert "in alertEmails" in text(group["emailReceivers"])


def test_the_alert_rule_splits_by_columns_the_query_projects() -> None:
    rule = properties(declared(ALERTS, "budgetRule")["properties"])
    [criterion] = properties(rule["criteria"])["allOf"].named_children
    dimensions = [literal(properties(d)["name"]) for d in properties(criterion)["dimensions"].named_children]
    projected = QUERY.read_text()
    assert dimensions == ["Event", "Period", "Scope", "BudgetId", "Threshold"]
    assert all(f"{name} =" in projected or f"    {name},\n" in projected for name in dimensions)


def test_the_alert_query_has_no_diagnostics_from_the_kusto_parser() -> None:
    code, result = check(QUERY.read_text())
    assert (code, result["diagnostics"]) == (0, [])


def test_the_alert_query_matches_the_lines_the_app_logs() -> None:
    _, result = check(QUERY.read_text())
    assert {f"{logs.BUDGET_THRESHOLD} ", f"{logs.BUDGET_FORECAST} ", f"{logs.BUDGET_BREAKER} "} <= set(
        result["strings"]
    )


def test_the_checker_rejects_the_alert_query_with_a_misspelt_column() -> None:
    code, result = check(QUERY.read_text().replace("Message startswith", "Mesage startswith", 1))
    assert code == 1
    assert any("Mesage" in d["message"] for d in result["diagnostics"] if d["severity"] == "Error")


@pytest.mark.parametrize(
    ("parameter", "setting"),
    [
        ("budgetsPath", settings.BUDGETS),
        ("budgetSchedule", settings.BUDGET_SCHEDULE),
        ("budgetEnforcement", settings.ENFORCEMENT),
    ],
)
def test_main_bicep_budget_defaults_match_the_code_defaults(parameter: str, setting: str) -> None:
    assert literal(params(MAIN)[parameter].default) == settings.DEFAULTS[setting]


def test_main_bicep_creates_the_budget_table_the_code_defaults_to() -> None:
    assert literal(variables(MAIN)["budgetTableName"]) == settings.DEFAULTS[settings.BUDGET_TABLE]
    default = params(MAIN)["maxSuspensions"].default
    assert default is not None and text(default) == settings.DEFAULTS[settings.MAX_SUSPENSIONS]


def test_the_management_endpoint_is_the_clouds_own() -> None:
    app_settings = properties(variables(INFRA / "app" / "api.bicep")["appSettings"])
    assert text(app_settings[settings.ARM_ENDPOINT]) == "environment().resourceManager"
    assert text(app_settings[settings.ARM_CLIENT_ID]) == "identityClientId"

"""The APIM module gives the token metric and the LLM logs everything they need to reach the workspace."""

from __future__ import annotations

from pathlib import Path

import pytest
import tree_sitter

from tests.infra.bicep_tree import (
    INFRA,
    Declaration,
    literal,
    modules,
    outputs,
    param_decorators,
    params,
    properties,
    resources,
    root,
    text,
    variables,
)

APIM = INFRA / "apim" / "apim.bicep"
MAIN = INFRA / "main.bicep"


def declared(symbol: str) -> Declaration:
    (found,) = [r for r in resources(APIM) if r.symbol == symbol]
    return found


def props_of(symbol: str) -> dict[str, str]:
    return {name: text(value) for name, value in properties(declared(symbol).props["properties"]).items()}


def apim_call() -> dict[str, str]:
    (call,) = [m for m in modules(MAIN) if m.symbol == "apim"]
    return {name: text(value) for name, value in properties(call.props["params"]).items()}


def test_an_application_insights_logger_signs_in_with_apims_identity() -> None:
    logger = props_of("insightsLogger")
    assert literal(properties(declared("insightsLogger").props["properties"])["loggerType"]) == "applicationInsights"
    assert logger["resourceId"] == "applicationInsightsId"
    credentials = properties(properties(declared("insightsLogger").props["properties"])["credentials"])
    assert literal(credentials["identityClientId"]) == "SystemAssigned"


def test_the_apis_application_insights_diagnostic_turns_custom_metrics_on() -> None:
    diagnostic = declared("insightsDiagnostic")
    assert diagnostic.target.startswith("Microsoft.ApiManagement/service/apis/diagnostics@")
    assert text(diagnostic.props["parent"]) == "api"
    assert literal(diagnostic.props["name"]) == "applicationinsights"
    settings = props_of("insightsDiagnostic")
    assert (settings["loggerId"], settings["metrics"]) == ("insightsLogger.id", "true")


def test_the_diagnostic_logs_every_call_as_the_apim_guide_recommends() -> None:
    sampling = properties(properties(declared("insightsDiagnostic").props["properties"])["sampling"])
    assert (literal(sampling["samplingType"]), text(sampling["percentage"])) == ("fixed", "100")


def test_the_component_keeps_custom_metric_dimensions() -> None:
    (component,) = [
        r
        for r in resources(INFRA / "app" / "monitoring.bicep")
        if r.target.startswith("Microsoft.Insights/components@")
    ]
    assert literal(properties(component.props["properties"])["CustomMetricsOptedInType"]) == "WithDimensions"


def test_the_apis_azure_monitor_diagnostic_turns_llm_logging_on() -> None:
    diagnostic = declared("monitorDiagnostic")
    assert literal(diagnostic.props["name"]) == "azuremonitor"
    settings = props_of("monitorDiagnostic")
    assert settings["loggerId"] == "azureMonitorLogger.id"
    assert settings["largeLanguageModel"] == "union({ logs: 'enabled' }, llmMessages)"


@pytest.mark.parametrize("path", [APIM, MAIN], ids=lambda p: p.name)
def test_prompts_and_completions_are_not_logged_unless_asked_for(path: Path) -> None:
    default = params(path)["logLlmMessages"].default
    assert default is not None
    assert text(default) == "false"


def test_the_message_settings_apply_only_when_messages_are_asked_for() -> None:
    assert text(variables(APIM)["llmMessages"]).startswith("logLlmMessages\n")
    assert apim_call()["logLlmMessages"] == "logLlmMessages"


def test_gateway_and_llm_logs_go_to_the_workspace_as_resource_specific_tables() -> None:
    setting = declared("gatewayLogs")
    assert setting.target.startswith("Microsoft.Insights/diagnosticSettings@")
    assert text(setting.props["scope"]) == "apimService"
    inner = properties(setting.props["properties"])
    assert text(inner["workspaceId"]) == "workspaceResourceId"
    assert literal(inner["logAnalyticsDestinationType"]) == "Dedicated"
    categories = {literal(properties(entry)["category"]) for entry in inner["logs"].named_children}
    assert categories == {"GatewayLogs", "GatewayLlmLogs"}


@pytest.mark.parametrize(
    ("param", "source"),
    [
        ("workspaceResourceId", "monitoring.outputs.workspaceResourceId"),
        ("applicationInsightsId", "monitoring.outputs.applicationInsightsId"),
        ("applicationInsightsConnectionString", "monitoring.outputs.applicationInsightsConnectionString"),
        ("apiName", "apimApiName"),
    ],
)
def test_apim_reports_to_the_workspace_the_reconciliation_queries(param: str, source: str) -> None:
    assert apim_call()[param] == source
    (api,) = [m for m in modules(MAIN) if m.symbol == "api"]
    assert text(properties(api.props["params"])["logAnalyticsWorkspaceId"]) == "monitoring.outputs.workspaceCustomerId"


def test_wiring_apim_without_naming_its_api_fails_before_anything_is_deployed() -> None:
    assert param_decorators(APIM, "apiName")["minLength"] == "1"


def _declaration_node(symbol: str) -> tree_sitter.Node:
    (node,) = [
        n for n in root(APIM).named_children if n.type == "resource_declaration" and text(n.named_children[0]) == symbol
    ]
    return node


def test_the_azure_monitor_logger_is_declared_so_an_instance_without_it_still_deploys() -> None:
    # Microsoft.ApiManagement/service/loggers template reference: loggerType 'azureMonitor' needs
    # no credentials or resourceId. Azure-Samples/AI-Gateway (modules/apim/v2/apim.bicep) declares
    # the logger 'azuremonitor' this way; a PUT of the same type is idempotent where it exists.
    assert "existing" not in [child.type for child in _declaration_node("azureMonitorLogger").children]
    logger = declared("azureMonitorLogger")
    assert logger.target.startswith("Microsoft.ApiManagement/service/loggers@")
    assert (text(logger.props["parent"]), literal(logger.props["name"])) == ("apimService", "azuremonitor")
    settings = properties(logger.props["properties"])
    assert literal(settings["loggerType"]) == "azureMonitor"
    assert not {"credentials", "resourceId"} & set(settings)


def test_the_gateway_log_setting_can_be_left_to_one_the_instance_already_has() -> None:
    # Azure Monitor refuses a second diagnostic setting that sends a category to the same
    # destination: "Data sink '...' is already used in diagnostic setting '...' for category
    # '...'. Data sinks can't be reused in different settings on the same category for the same
    # resource." (Azure Monitor diagnostic settings, Conflict.)
    setting = declared("gatewayLogs")
    assert setting.body.parent is not None
    assert text(setting.body.parent).startswith("if (createDiagnosticSetting)")
    assert apim_call()["createDiagnosticSetting"] == "createApimDiagnosticSetting"


@pytest.mark.parametrize(
    ("path", "param"),
    [(APIM, "createDiagnosticSetting"), (MAIN, "createApimDiagnosticSetting")],
    ids=["apim.bicep", "main.bicep"],
)
def test_the_gateway_log_setting_is_created_unless_asked_not_to(path: Path, param: str) -> None:
    default = params(path)[param].default
    assert default is not None
    assert text(default) == "true"


@pytest.mark.parametrize("name", [name for name in outputs(APIM) if name.endswith("Id")])
def test_every_id_output_of_the_apim_module_is_a_resource_id(name: str) -> None:
    # An output named ...Id returns the resource's id (its ARM resource id), not its name.
    assert outputs(APIM)[name].endswith(".id")


def test_main_outputs_the_event_hub_loggers_resource_id() -> None:
    assert outputs(MAIN)["APIM_LOGGER_ID"] == "wireApim ? apim.outputs.loggerId : ''"
    assert outputs(APIM)["loggerId"] == "usageLogger.id"


def ternary_branches(node: tree_sitter.Node) -> list[tuple[str, str]]:
    """(condition, outcome) of a chain of ternaries; the last branch's condition is 'otherwise'."""
    branches: list[tuple[str, str]] = []
    while node.type == "ternary_expression":
        condition, outcome, node = node.named_children
        branches.append((text(condition), text(outcome)))
    return [*branches, ("otherwise", text(node))]


def _wiring_checks() -> list[tuple[str, str]]:
    return [
        (condition, "fail" if outcome.startswith("fail(") else outcome)
        for condition, outcome in ternary_branches(variables(MAIN)["wireApim"])
    ]


def test_apim_is_wired_only_through_the_checked_value() -> None:
    (call,) = [m for m in modules(MAIN) if m.symbol == "apim"]
    assert call.body.parent is not None
    assert text(call.body.parent).startswith("if (wireApim)")


def test_an_apim_name_without_an_api_name_stops_the_deployment_in_main() -> None:
    # Bicep "Flow control functions": fail() ends evaluation with the message given. The check
    # depends on parameters alone and decides whether the APIM module runs, so it stops the
    # deployment before that module (which also requires the name) would fail late.
    assert ("empty(apimApiName)", "fail") in _wiring_checks()


def test_private_networking_with_apim_outside_the_network_stops_the_deployment() -> None:
    # API Management's log-to-eventhub never fails the call it logs: an instance that cannot reach
    # the namespace's private endpoint would lose every usage event without an error.
    assert ("privateNetworking && !apimReachesPrivateNetwork", "fail") in _wiring_checks()
    default = params(MAIN)["apimReachesPrivateNetwork"].default
    assert default is not None
    assert text(default) == "false"


def test_without_an_apim_name_nothing_is_checked_or_wired() -> None:
    assert _wiring_checks() == [
        ("empty(apimServiceName)", "false"),
        ("empty(apimApiName)", "fail"),
        ("privateNetworking && !apimReachesPrivateNetwork", "fail"),
        ("otherwise", "true"),
    ]

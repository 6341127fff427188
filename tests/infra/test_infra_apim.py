"""The APIM module gives the token metric and the LLM logs everything they need to reach the workspace."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.bicep_tree import (
    INFRA,
    Declaration,
    literal,
    modules,
    param_decorators,
    params,
    properties,
    resources,
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

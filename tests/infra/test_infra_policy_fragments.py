"""The APIM policy fragments are well-formed and fit the logger, the metric and the settings."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from chargeback.app import settings
from tests.infra.bicep_tree import INFRA, literal, params, properties, resources, text, variables

APIM = INFRA / "apim"
FRAGMENTS = APIM / "fragments"
TOKEN_METRIC = FRAGMENTS / "chargeback-token-metric.xml"
USAGE_EVENT = FRAGMENTS / "chargeback-usage-event.xml"


def fragment(path: Path) -> ET.Element:
    return ET.parse(path).getroot()  # noqa: S314 - the repository's own policy file


def installed_fragments() -> dict[str, str]:
    """Fragment id to the file apim.bicep loads into it."""
    found = {}
    for resource in resources(APIM / "apim.bicep"):
        if resource.target.startswith("Microsoft.ApiManagement/service/policyFragments@"):
            inner = properties(resource.props["properties"])
            found[literal(resource.props["name"]) or ""] = text(inner["value"])
    return found


@pytest.mark.parametrize("path", sorted(FRAGMENTS.glob("*.xml")), ids=lambda p: p.name)
def test_every_fragment_is_well_formed_xml_with_a_fragment_root(path: Path) -> None:
    assert fragment(path).tag == "fragment"


def test_apim_bicep_installs_every_fragment_from_its_file() -> None:
    assert installed_fragments() == {
        "chargeback-token-metric": "loadTextContent('fragments/chargeback-token-metric.xml')",
        "chargeback-usage-event": "loadTextContent('fragments/chargeback-usage-event.xml')",
        "chargeback-token-quota": "loadTextContent('fragments/chargeback-token-quota.xml')",
    }


def test_the_fragments_are_installed_as_xml_because_their_expressions_are_escaped() -> None:
    for resource in resources(APIM / "apim.bicep"):
        if resource.target.startswith("Microsoft.ApiManagement/service/policyFragments@"):
            assert literal(properties(resource.props["properties"])["format"]) == "xml"


def test_the_token_metric_uses_the_namespace_and_dimension_the_reconciliation_reads() -> None:
    metric = fragment(TOKEN_METRIC).find("azure-openai-emit-token-metric")
    assert metric is not None
    assert metric.get("namespace") == literal(params(INFRA / "main.bicep")["metricNamespace"].default)
    dimensions = [d.get("name") for d in metric.findall("dimension")]
    assert settings.DEFAULTS[settings.SUBSCRIPTION_DIMENSION] in dimensions
    assert literal(variables(INFRA / "main.bicep")["subscriptionDimension"]) in dimensions


def test_the_token_metric_stays_within_azure_monitors_ten_dimensions() -> None:
    metric = fragment(TOKEN_METRIC).find("azure-openai-emit-token-metric")
    assert metric is not None
    assert 1 <= len(metric.findall("dimension")) <= 10


def _log_to_eventhub() -> ET.Element:
    found = fragment(USAGE_EVENT).find("./choose/when/log-to-eventhub")
    assert found is not None, "log-to-eventhub must sit inside choose/when"
    return found


def test_the_usage_event_is_logged_with_the_logger_apim_bicep_creates() -> None:
    logger_name = literal(variables(APIM / "apim.bicep")["loggerName"])
    assert _log_to_eventhub().get("logger-id") == logger_name


def test_the_logger_signs_in_with_apims_identity_and_no_key() -> None:
    (logger,) = [r for r in resources(APIM / "apim.bicep") if r.symbol == "usageLogger"]
    inner = properties(logger.props["properties"])
    credentials = properties(inner["credentials"])
    assert literal(inner["loggerType"]) == "azureEventHub"
    assert set(credentials) == {"name", "endpointAddress", "identityClientId"}
    assert literal(credentials["identityClientId"]) == "SystemAssigned"


def test_the_usage_event_is_sent_only_for_successful_responses() -> None:
    when = fragment(USAGE_EVENT).find("./choose/when")
    assert when is not None
    condition = when.get("condition", "")
    assert condition.startswith("@(") and "context.Response.StatusCode == 200" in condition


def test_the_partition_key_is_the_apim_subscription_id() -> None:
    event = _log_to_eventhub()
    assert event.get("partition-key", "").startswith("@(context.Subscription?.Id")
    assert event.get("partition-id") is None, "partition-id and partition-key exclude each other"

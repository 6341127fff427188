"""The ARM adapter speaks Subscription - Get and Update as the stand-in (and ARM) expects, and turns every fault
into a ManagementError."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from chargeback.adapters.apim import API_VERSION, ArmGatewaySubscriptions
from chargeback.app import settings
from chargeback.app.settings import Settings
from chargeback.budgets.gateway import check_endpoint, check_instance
from chargeback.domain.errors import ConfigurationError, ManagementError
from devtools.apim_standin import DROP, HOLD, ApimStandIn, StandInCredential


@pytest.fixture(name="arm")
def fixture_arm() -> Iterator[ApimStandIn]:
    with ApimStandIn() as stand_in:
        stand_in.add("team-a")
        yield stand_in


@pytest.fixture(name="gateway")
def fixture_gateway(arm: ApimStandIn) -> ArmGatewaySubscriptions:
    return ArmGatewaySubscriptions(arm.endpoint, arm.resource_id, arm.credential(), read_seconds=0.5)


def fault(call: object) -> ManagementError:
    with pytest.raises(ManagementError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def test_a_subscription_is_read_with_its_state_comment_and_etag(gateway: ArmGatewaySubscriptions) -> None:
    found = gateway.get("team-a")
    assert (found.sid, found.state, found.comment, found.etag) == ("team-a", "active", None, '"AAAAAAAA0001="')


def test_a_change_is_sent_with_if_match_and_the_state_and_comment(
    arm: ApimStandIn, gateway: ArmGatewaySubscriptions
) -> None:
    changed = gateway.set_state("team-a", "suspended", "over budget", gateway.get("team-a").etag)
    assert (changed.state, changed.comment, changed.etag) == ("suspended", "over budget", '"AAAAAAAA0002="')
    patch = arm.patches("team-a")[0]
    assert patch.if_match == '"AAAAAAAA0001="'
    assert patch.body == {"properties": {"state": "suspended", "stateComment": "over budget"}}


def test_a_change_from_a_stale_etag_is_refused_with_412(gateway: ArmGatewaySubscriptions) -> None:
    etag = gateway.get("team-a").etag
    gateway.set_state("team-a", "suspended", "first", etag)
    error = fault(lambda: gateway.set_state("team-a", "active", "second", etag))
    assert (error.status, error.code) == (412, "PreconditionFailed")


class NoSignIn:
    """A credential whose sign-in fails, as a managed identity's does when its endpoint is down."""

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        raise ClientAuthenticationError("the managed identity endpoint did not answer")


def test_a_failed_sign_in_is_a_fault_without_a_status_and_sends_nothing(arm: ApimStandIn) -> None:
    gateway = ArmGatewaySubscriptions(arm.endpoint, arm.resource_id, NoSignIn(), read_seconds=0.5)
    error = fault(lambda: gateway.get("team-a"))
    assert (error.status, "sign in" in str(error)) == (None, True)
    assert arm.patches("team-a") == []


def test_a_deleted_subscription_is_a_404(gateway: ArmGatewaySubscriptions) -> None:
    error = fault(lambda: gateway.get("team-gone"))
    assert (error.status, error.code) == (404, "ResourceNotFound")


def test_throttling_carries_the_seconds_retry_after_asks(arm: ApimStandIn, gateway: ArmGatewaySubscriptions) -> None:
    arm.fail("GET", 429, retry_after="17")
    error = fault(lambda: gateway.get("team-a"))
    assert (error.status, error.retry_after) == (429, 17.0)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_server_error_is_a_fault_with_its_status(
    arm: ApimStandIn, gateway: ArmGatewaySubscriptions, status: int
) -> None:
    arm.fail("PATCH", status)
    error = fault(lambda: gateway.set_state("team-a", "suspended", "x", gateway.get("team-a").etag))
    assert error.status == status


def test_a_dropped_connection_is_a_fault_without_a_status(arm: ApimStandIn, gateway: ArmGatewaySubscriptions) -> None:
    arm.fail("GET", DROP)
    assert fault(lambda: gateway.get("team-a")).status is None


def test_an_answer_that_does_not_come_in_time_is_a_fault_without_a_status(
    arm: ApimStandIn, gateway: ArmGatewaySubscriptions
) -> None:
    arm.fail("GET", HOLD)
    started = time.monotonic()
    assert fault(lambda: gateway.get("team-a")).status is None
    assert time.monotonic() - started < 10


def test_every_request_carries_the_bearer_token_and_the_api_version(arm: ApimStandIn) -> None:
    wrong = ArmGatewaySubscriptions(arm.endpoint, arm.resource_id, StandInCredential("not-the-token"))
    assert fault(lambda: wrong.get("team-a")).status == 401
    assert API_VERSION >= "2022-08-01"


def test_a_subscription_id_with_reserved_characters_is_escaped_in_the_url(arm: ApimStandIn) -> None:
    arm.add("team a/#1")
    gateway = ArmGatewaySubscriptions(arm.endpoint, arm.resource_id, arm.credential())
    assert gateway.get("team a/#1").sid == "team a/#1"
    assert arm.requests[-1].sid == "team a/#1"


@pytest.mark.parametrize(
    "endpoint",
    ["http://management.azure.com", "ftp://management.azure.com", "https://", "https://management.azure.com/x"],
)
def test_a_management_endpoint_must_be_https_except_on_loopback(endpoint: str) -> None:
    with pytest.raises(ConfigurationError):
        check_endpoint(endpoint)


def test_the_usual_endpoints_are_accepted_as_they_are_written() -> None:
    assert check_endpoint("https://management.azure.com/") == "https://management.azure.com"
    assert check_endpoint("https://management.usgovcloudapi.net") == "https://management.usgovcloudapi.net"
    assert check_endpoint("http://127.0.0.1:8080") == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    "resource_id",
    [
        "/subscriptions/x/resourceGroups/rg/providers/Microsoft.ApiManagement/service/apim",
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Web/sites/app",
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ApiManagement/service/apim/subscriptions/a",
    ],
    ids=["not a subscription id", "another resource type", "a subscription, not the instance"],
)  # fmt: skip
def test_the_instance_must_be_an_api_management_service(resource_id: str) -> None:
    with pytest.raises(ConfigurationError):
        check_instance(resource_id)


def test_enforcement_on_needs_the_instance() -> None:
    values = {"ChargebackStorage": "UseDevelopmentStorage=true", settings.ENFORCEMENT: "on"}
    with pytest.raises(ConfigurationError, match="CHARGEBACK_APIM_RESOURCE_ID"):
        Settings.from_env(values)


def test_the_budget_settings_are_read_with_their_defaults() -> None:
    budgets = Settings.from_env({"ChargebackStorage": "UseDevelopmentStorage=true"}).budgets
    assert (budgets.file, budgets.enforcement, budgets.max_suspensions, budgets.arm_endpoint) == (
        "config/budgets.csv",
        False,
        5,
        "https://management.azure.com",
    )


def test_an_empty_budget_file_setting_means_no_budgets() -> None:
    values = {"ChargebackStorage": "UseDevelopmentStorage=true", settings.BUDGETS: ""}
    assert Settings.from_env(values).budgets.file is None

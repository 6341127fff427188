"""API Management subscriptions through Azure Resource Manager: Subscription - Get and Subscription - Update.

``GET {endpoint}{instance}/subscriptions/{sid}?api-version=…`` answers the subscription
(``properties.state``, ``properties.stateComment``) with its ``ETag``; ``PATCH`` the same URL
with ``If-Match`` (required by the API) and ``{"properties": {"state", "stateComment"}}``
changes it, or answers 412 when the ETag no longer matches. The app signs in with its managed
identity for ``{endpoint}/.default``. Retries are the core's (chargeback.budgets.gateway): this
adapter makes one request per call and translates every fault into ``ManagementError``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError
from azure.core.pipeline.policies import BearerTokenCredentialPolicy, HeadersPolicy, UserAgentPolicy
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse
from azure.identity import DefaultAzureCredential

from chargeback.adapters.retry_after import retry_after
from chargeback.budgets.gateway import GatewaySubscription, check_endpoint, check_instance
from chargeback.domain.errors import ManagementError

API_VERSION = "2024-05-01"
"""A stable API version of Microsoft.ApiManagement with Subscription - Get and Update (2022-08-01 or later)."""
CONNECT_SECONDS = 10
READ_SECONDS = 30


class ArmGatewaySubscriptions:
    """``GatewaySubscriptions`` of one API Management instance, over ARM's REST API."""

    def __init__(
        self,
        endpoint: str,
        resource_id: str,
        credential: TokenCredential,
        *,
        transport: HttpTransport[Any, Any] | None = None,
        read_seconds: float = READ_SECONDS,
    ) -> None:
        self._endpoint = check_endpoint(endpoint)
        self._instance = check_instance(resource_id)
        self._read_seconds = read_seconds
        self._https = self._endpoint.startswith("https://")
        policies: list[Any] = [
            HeadersPolicy({"Accept": "application/json"}),
            UserAgentPolicy("chargeback-budgets"),
            BearerTokenCredentialPolicy(credential, f"{self._endpoint}/.default"),
        ]
        self._client: PipelineClient[Any, Any] = PipelineClient(
            base_url=self._endpoint, policies=policies, transport=transport
        )

    def get(self, sid: str) -> GatewaySubscription:
        response = self._send(HttpRequest("GET", self._url(sid)))
        return self._subscription(sid, response)

    def set_state(self, sid: str, state: str, comment: str, etag: str) -> GatewaySubscription:
        body = orjson.dumps({"properties": {"state": state, "stateComment": comment}})
        headers = {"If-Match": etag, "Content-Type": "application/json"}
        response = self._send(HttpRequest("PATCH", self._url(sid), headers=headers, content=body))
        return self._subscription(sid, response)

    def _url(self, sid: str) -> str:
        return f"{self._endpoint}{self._instance}/subscriptions/{quote(sid, safe='')}?api-version={API_VERSION}"

    def _send(self, request: HttpRequest) -> HttpResponse:
        options: dict[str, Any] = {"connection_timeout": CONNECT_SECONDS, "read_timeout": self._read_seconds}
        if not self._https:
            options["enforce_https"] = False  # a loopback stand-in: check_endpoint allows nothing else
        try:
            response: HttpResponse = self._client.send_request(request, **options)
            response.read()
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise ManagementError(f"{request.method} of a subscription got no answer", status=None) from exc
        except ClientAuthenticationError as exc:  # no token: the identity could not sign in, nothing was sent
            raise ManagementError(
                f"{request.method} of a subscription could not sign in to Azure Resource Manager", status=None
            ) from exc
        if response.status_code >= 400:
            raise ManagementError(
                f"{request.method} of a subscription answered {response.status_code}",
                status=response.status_code,
                code=_error_code(response),
                retry_after=retry_after(response.headers.get("Retry-After")),
            )
        return response

    @staticmethod
    def _subscription(sid: str, response: HttpResponse) -> GatewaySubscription:
        try:
            properties = orjson.loads(response.content)["properties"]
            state = str(properties["state"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ManagementError("a subscription came back unreadable", status=response.status_code) from exc
        comment = properties.get("stateComment")
        return GatewaySubscription(
            sid, state, None if comment is None else str(comment), response.headers.get("ETag", "")
        )


def _error_code(response: HttpResponse) -> str:
    try:
        return str(orjson.loads(response.content)["error"]["code"])[:80]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return ""


def arm_credential(client_id: str | None) -> TokenCredential:
    """The app's managed identity (``client_id``, user-assigned), as it signs in to Azure Resource Manager."""
    return DefaultAzureCredential(managed_identity_client_id=client_id)

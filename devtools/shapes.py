"""One builder per gateway event shape, shared by the demo's traffic and the benchmark workload.

Each builder writes one successful call as that gateway's policy writes it: this project's
canonical event, the GenAI gateway toolkit's (a total only, with a .NET time string), the
``TokenUsage`` object and the AI Hub gateway's camelCase record. What varies from call to call
(ids, addresses, which clock format) comes from the ``random.Random`` the caller passes, so a
seed gives the same bodies every time.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from chargeback.domain.events import AI_HUB, CANONICAL, CANONICAL_SCHEMA, TOKEN_USAGE, TOOLKIT

SHAPES = (CANONICAL, TOOLKIT, TOKEN_USAGE, AI_HUB)


@dataclass(frozen=True, slots=True)
class Call:
    """One successful gateway call, before any gateway writes it down."""

    subscription_id: str
    time: datetime
    model: str
    deployment: str
    operation_id: str
    operation_name: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    embeddings: bool = False
    provisioned: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def body(shape: str, call: Call, rng: random.Random) -> bytes:
    """``call`` as the gateway of ``shape`` sends it to the Event Hub."""
    try:
        builder = _BUILDERS[shape]
    except KeyError:
        raise ValueError(f"unknown shape {shape}") from None
    return orjson.dumps(builder(call, rng))


def usage_object(call: Call) -> dict[str, object]:
    """The Azure OpenAI ``usage`` object, as the canonical and ``TokenUsage`` shapes carry it."""
    usage: dict[str, object] = {"prompt_tokens": call.prompt_tokens}
    if not call.embeddings:
        usage["completion_tokens"] = call.completion_tokens
    usage["total_tokens"] = call.total_tokens
    if call.cached_tokens:
        usage["prompt_tokens_details"] = {"cached_tokens": call.cached_tokens}
    return usage


def iso_time(moment: datetime) -> str:
    """An ISO 8601 UTC time with milliseconds, as the canonical policy writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def dotnet_time(moment: datetime, *, twelve_hour: bool) -> str:
    """``DateTime.UtcNow.ToString()`` as an en-US (12-hour) or a 24-hour culture writes it."""
    if twelve_hour:
        hour = moment.hour % 12 or 12
        meridiem = "AM" if moment.hour < 12 else "PM"
        return f"{moment.month}/{moment.day}/{moment.year} {hour}:{moment.minute:02d}:{moment.second:02d} {meridiem}"
    return f"{moment.month}/{moment.day}/{moment.year} {moment.hour}:{moment.minute:02d}:{moment.second:02d}"


def request_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _canonical(call: Call, rng: random.Random) -> dict[str, object]:
    return {
        "schema": CANONICAL_SCHEMA,
        "requestId": request_id(rng),
        "eventTime": iso_time(call.time),
        "subscriptionId": call.subscription_id,
        "productId": "aoai-product",
        "apiId": "azure-openai",
        "operationId": call.operation_id,
        "model": call.model,
        "deployment": call.deployment,
        "backendId": "ptu-backend-1" if call.provisioned else f"payg-backend-{rng.randint(1, 2)}",
        "region": "swedencentral",
        "stream": False,
        "usage": usage_object(call),
    }


def _toolkit(call: Call, rng: random.Random) -> dict[str, object]:
    return {
        "Type": "Message",
        "EventTime": dotnet_time(call.time, twelve_hour=rng.random() < 0.7),
        "ServiceName": "apim-genai-x7k2",
        "GatewayId": "managed",
        "RequestId": request_id(rng),
        "RequestIp": f"20.61.10.{rng.randint(2, 40)}",
        "OperationName": call.operation_name,
        "SubscriptionId": call.subscription_id,
        "TotalTokens": str(call.total_tokens),
    }


def _token_usage(call: Call, rng: random.Random) -> dict[str, object]:
    return {
        "SubscriptionId": call.subscription_id,
        "OperationName": call.operation_id,
        "RequestId": request_id(rng),
        "TokenUsage": usage_object(call),
    }


def _ai_hub(call: Call, rng: random.Random) -> dict[str, object]:
    return {
        "id": request_id(rng) if call.embeddings else f"chatcmpl-{rng.getrandbits(96):024x}",
        "timestamp": dotnet_time(call.time, twelve_hour=True),
        "appId": "NA",
        "subscriptionId": call.subscription_id,
        "productName": call.subscription_id,
        "targetService": "embeddings" if call.embeddings else "chat.completion",
        "model": call.model,
        "gatewayName": "apim-aihub-eus",
        "gatewayRegion": "East US",
        "aiGatewayId": "managed",
        "RequestIp": f"10.1.2.{rng.randint(2, 250)}",
        "operationName": call.operation_id,
        "sessionId": "NA",
        "endUserId": "NA",
        "backendId": "openai-eus-ptu" if call.provisioned else "openai-eus",
        "routeLocation": "eastus",
        "routeName": "EastUS",
        "deploymentName": call.deployment,
        "promptTokens": call.prompt_tokens,
        "responseTokens": call.completion_tokens,
        "totalTokens": call.total_tokens,
    }


_BUILDERS: dict[str, Callable[[Call, random.Random], dict[str, object]]] = {
    CANONICAL: _canonical,
    TOOLKIT: _toolkit,
    TOKEN_USAGE: _token_usage,
    AI_HUB: _ai_hub,
}

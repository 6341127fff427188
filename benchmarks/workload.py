"""Generates gateway usage events in the four real shapes, deterministically, as a stream.

Field names, types and time formats follow tests/fixtures/events (the shapes the
gateways really send); the values vary: subscriptions, models, operations, token counts and
event times. Each body is padded with a ``userAgent`` field to a size drawn from
[``min_bytes``, ``max_bytes``], as gateway events with client details are.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from chargeback.ingestion.ledger import Batch, ReceivedEvent
from devtools.hostshape import HostEvent

CANONICAL = "canonical"
TOOLKIT = "genai-gateway-toolkit"
TOKEN_USAGE = "token-usage-object"  # noqa: S105 - a shape name
AI_HUB = "ai-hub-gateway"
SHAPES: tuple[str, ...] = (CANONICAL, TOOLKIT, TOKEN_USAGE, AI_HUB)

# (model, deployment, operation id, operation name) the gateways put in front of Azure OpenAI.
_CATALOG: tuple[tuple[str, str, str, str], ...] = (
    ("gpt-4o-2024-08-06", "gpt-4o", "ChatCompletions_Create", "Creates a completion for the chat message"),
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini", "ChatCompletions_Create", "Creates a completion for the chat message"),
    ("text-embedding-3-large", "embeddings", "Embeddings_Create", "Return the embeddings for a given prompt."),
)

START = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)
"""Where the stream's clock starts; at the default rate a 200k-event run crosses midnight."""

_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) openai-python/1.54.3 "


def _dotnet(moment: datetime, twelve_hour: bool) -> str:
    """``DateTime.UtcNow.ToString()`` in en-US (12-hour) or an invariant-like 24-hour culture."""
    if twelve_hour:
        hour = moment.hour % 12 or 12
        meridiem = "AM" if moment.hour < 12 else "PM"
        return f"{moment.month}/{moment.day}/{moment.year} {hour}:{moment.minute:02d}:{moment.second:02d} {meridiem}"
    return f"{moment.month}/{moment.day}/{moment.year} {moment.hour}:{moment.minute:02d}:{moment.second:02d}"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Workload:
    """A deterministic stream of usage events.

    ``events_per_second`` is the gateway's rate in stream time: it decides how many days (and so
    how many aggregate rows per slice) a run of a given length spans, not how fast anything runs.
    """

    subscriptions: int = 10
    shapes: tuple[str, ...] = SHAPES
    seed: int = 20261126
    start: datetime = START
    events_per_second: float = 5.0
    min_bytes: int = 300
    max_bytes: int = 2048
    partitions: int = 4

    def subscription(self, index: int) -> str:
        return f"aoai-product-subscription-{index:05d}"

    def bodies(self, count: int, *, offset: int = 0) -> Iterator[tuple[bytes, datetime]]:
        """``count`` bodies with their enqueued times, starting at stream position ``offset``."""
        rng = random.Random(self.seed * 1_000_003 + offset)
        for position in range(offset, offset + count):
            enqueued = self.start + timedelta(seconds=position / self.events_per_second)
            shape = self.shapes[position % len(self.shapes)]
            yield self._body(rng, shape, enqueued), enqueued

    def _body(self, rng: random.Random, shape: str, enqueued: datetime) -> bytes:
        subscription = self.subscription(rng.randrange(self.subscriptions))
        model, deployment, operation_id, operation_name = rng.choice(_CATALOG)
        embedding = operation_id == "Embeddings_Create"
        prompt = rng.randint(1, 8000)
        completion = 0 if embedding else rng.randint(1, 1500)
        cached = rng.choice((0, 0, 0, prompt // 2))
        event_time = enqueued - timedelta(milliseconds=rng.randint(0, 3000))
        request_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        document: dict[str, Any]
        if shape == CANONICAL:
            document = {
                "schema": "chargeback.usage/v1",
                "requestId": request_id,
                "eventTime": _iso(event_time),
                "subscriptionId": subscription,
                "productId": "aoai-product",
                "apiId": "azure-openai",
                "operationId": operation_id,
                "model": model,
                "deployment": deployment,
                "backendId": f"payg-backend-{rng.randint(1, 3)}",
                "region": "swedencentral",
                "stream": rng.random() < 0.3,
                "usage": _usage(prompt, completion, cached),
            }
        elif shape == TOOLKIT:
            document = {
                "Type": "Message",
                "EventTime": _dotnet(event_time, twelve_hour=rng.random() < 0.7),
                "ServiceName": "apim-genai-x7k2",
                "GatewayId": "managed",
                "RequestId": request_id,
                "RequestIp": f"20.61.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                "OperationName": operation_name,
                "SubscriptionId": subscription,
                "TotalTokens": str(prompt + completion),
            }
        elif shape == TOKEN_USAGE:
            document = {
                "SubscriptionId": subscription,
                "OperationName": operation_id,
                "RequestId": request_id,
                "TokenUsage": _usage(prompt, completion, cached),
            }
        elif shape == AI_HUB:
            document = {
                "id": f"chatcmpl-{request_id.replace('-', '')[:24]}",
                "timestamp": _dotnet(event_time, twelve_hour=True),
                "appId": "NA",
                "subscriptionId": subscription,
                "productName": "OAI-Products",
                "targetService": "embeddings" if embedding else "chat.completion",
                "model": model,
                "gatewayName": "apim-aihub-eus",
                "gatewayRegion": "East US",
                "aiGatewayId": "managed",
                "RequestIp": f"10.1.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                "operationName": operation_id,
                "sessionId": "NA",
                "endUserId": "NA",
                "backendId": "openai-eus-ptu",
                "routeLocation": "eastus",
                "routeName": "EastUS",
                "deploymentName": deployment,
                "promptTokens": prompt,
                "responseTokens": completion,
                "totalTokens": prompt + completion,
            }
        else:
            raise ValueError(f"unknown shape {shape}")
        body = orjson.dumps(document)
        target = rng.randint(self.min_bytes, self.max_bytes)
        room = target - len(body) - len(',"userAgent":""')
        if room > 0:
            agent = (_USER_AGENT * (room // len(_USER_AGENT) + 1))[:room]
            body = body[:-1] + b',"userAgent":"' + agent.encode("ascii") + b'"}'
        return body

    def host_batches(self, total: int, batch_size: int) -> Iterator[tuple[str, list[HostEvent]]]:
        """The stream cut into host invocations: batch k is partition ``k % partitions``'s next batch."""
        sequences = [0] * self.partitions
        produced = 0
        batch_index = 0
        while produced < total:
            partition = batch_index % self.partitions
            size = min(batch_size, total - produced)
            first = sequences[partition]
            events = [
                HostEvent(body, first + i, enqueued)
                for i, (body, enqueued) in enumerate(self.bodies(size, offset=produced))
            ]
            sequences[partition] += size
            produced += size
            batch_index += 1
            yield str(partition), events

    def core_batches(self, total: int, batch_size: int, hub: str = "aoai-usage") -> Iterator[Batch]:
        """The same stream as core ``Batch`` objects (what ``batch_from_trigger`` hands the ledger)."""
        for partition, events in self.host_batches(total, batch_size):
            yield Batch(
                hub=hub,
                partition_id=partition,
                events=[ReceivedEvent(e.body, e.sequence_number, e.enqueued_time) for e in events],
            )


def _usage(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    """The Azure OpenAI ``usage`` object, as the canonical and TokenUsage shapes carry it."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return usage

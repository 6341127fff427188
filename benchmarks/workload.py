"""Generates gateway usage events in the four real shapes, deterministically, as a stream.

Field names, types and time formats follow tests/fixtures/events (the shapes the
gateways really send); the values vary: subscriptions, models, operations, token counts and
event times. Each body is padded with a ``userAgent`` field to a size drawn from
[``min_bytes``, ``max_bytes``], as gateway events with client details are.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from chargeback.ingestion.ledger import Batch, ReceivedEvent
from devtools import shapes
from devtools.hostshape import HostEvent
from devtools.shapes import SHAPES

# (model, deployment, operation id, operation name) the gateways put in front of Azure OpenAI.
_CATALOG: tuple[tuple[str, str, str, str], ...] = (
    ("gpt-4o-2024-08-06", "gpt-4o", "ChatCompletions_Create", "Creates a completion for the chat message"),
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini", "ChatCompletions_Create", "Creates a completion for the chat message"),
    ("text-embedding-3-large", "embeddings", "Embeddings_Create", "Return the embeddings for a given prompt."),
)

START = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)
"""Where the stream's clock starts; at the default rate a 200k-event run crosses midnight."""

_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) openai-python/1.54.3 "


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
        model, deployment, operation_id, operation_name = rng.choice(_CATALOG)
        embeddings = operation_id == "Embeddings_Create"
        prompt = rng.randint(1, 8000)
        call = shapes.Call(
            subscription_id=self.subscription(rng.randrange(self.subscriptions)),
            time=enqueued - timedelta(milliseconds=rng.randint(0, 3000)),
            model=model,
            deployment=deployment,
            operation_id=operation_id,
            operation_name=operation_name,
            prompt_tokens=prompt,
            completion_tokens=0 if embeddings else rng.randint(1, 1500),
            cached_tokens=rng.choice((0, 0, 0, prompt // 2)),
            embeddings=embeddings,
        )
        return self._padded(shapes.body(shape, call, rng), rng)

    def _padded(self, body: bytes, rng: random.Random) -> bytes:
        """``body`` with a ``userAgent`` field that brings it to a size drawn from the workload's range."""
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

"""Turns the Event Hub trigger's binding (events and PartitionContext) into a core ``Batch``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import azure.functions as func

from chargeback.domain.errors import ConfigurationError
from chargeback.ingestion.ledger import Batch, ReceivedEvent


def _field(mapping: Mapping[str, Any], name: str) -> Any:
    for key, value in mapping.items():
        if key.lower() == name.lower():
            return value
    return None


def batch_from_trigger(events: Sequence[func.EventHubEvent], default_hub: str) -> Batch:
    """Read partition, hub and namespace from ``PartitionContext``; sequence and time per event.

    Metadata is read from the first event only: for cardinality many every event carries the
    whole invocation's metadata, and decoding it per event would cost O(n²).
    """
    if not events:
        return Batch(hub=default_hub, partition_id="", events=())
    metadata = events[0].metadata or {}
    context = _field(metadata, "PartitionContext")
    if not isinstance(context, Mapping) or _field(context, "PartitionId") is None:
        raise ConfigurationError("trigger metadata carries no PartitionContext.PartitionId")
    received = []
    for event in events:
        if event.sequence_number is None:
            raise ConfigurationError("an event arrived without a sequence number")
        received.append(
            ReceivedEvent(
                body=event.get_body(),
                sequence_number=int(event.sequence_number),
                enqueued_time=event.enqueued_time or datetime.now(UTC),
            )
        )
    return Batch(
        hub=str(_field(context, "EventHubName") or default_hub),
        partition_id=str(_field(context, "PartitionId")),
        events=received,
        namespace=str(_field(context, "FullyQualifiedNamespace") or ""),
        consumer_group=str(_field(context, "ConsumerGroup") or ""),
    )

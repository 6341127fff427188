"""Builds Event Hub trigger inputs exactly as the Functions host hands them to the worker.

Bodies arrive as ``collection_bytes``, per-event system properties as ``SystemPropertiesArray``
and the partition as ``PartitionContext``; ``azure.functions``' own converter decodes them.
The demo, the benchmarks and the tests deliver batches to the registered function this way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import azure.functions as func
from azure.functions import meta

from chargeback.adapters import eventhub


@dataclass(frozen=True, slots=True)
class CollectionBytes:
    """The host's repeated-bytes payload (the worker's protobuf ``CollectionBytes``)."""

    bytes: Sequence[bytes]


@dataclass(frozen=True, slots=True)
class HostEvent:
    body: bytes
    sequence_number: int
    enqueued_time: datetime
    partition_key: str | None = None


def _utc_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def trigger_metadata(
    events: Sequence[HostEvent], *, hub: str, partition_id: str, namespace: str, consumer_group: str
) -> dict[str, meta.Datum]:
    system = [
        {
            "EnqueuedTimeUtc": _utc_text(event.enqueued_time),
            "SequenceNumber": event.sequence_number,
            "Offset": str(event.sequence_number * 512),
            "PartitionKey": event.partition_key,
        }
        for event in events
    ]
    context = {
        "FullyQualifiedNamespace": namespace,
        "EventHubName": hub,
        "ConsumerGroup": consumer_group,
        "PartitionId": partition_id,
    }
    return {
        "PartitionContext": meta.Datum(json.dumps(context), "json"),
        "SystemPropertiesArray": meta.Datum(json.dumps(system), "json"),
        "PropertiesArray": meta.Datum(json.dumps([{} for _ in events]), "json"),
        "SequenceNumberArray": meta.Datum(json.dumps([e.sequence_number for e in events]), "json"),
        "EnqueuedTimeUtcArray": meta.Datum(json.dumps([s["EnqueuedTimeUtc"] for s in system]), "json"),
        "PartitionKeyArray": meta.Datum(json.dumps([e.partition_key for e in events]), "json"),
    }


def decode_batch(
    events: Sequence[HostEvent],
    *,
    hub: str,
    partition_id: str,
    namespace: str = "chargeback.servicebus.windows.net",
    consumer_group: str = "chargeback",
) -> list[func.EventHubEvent]:
    """What the worker passes to a cardinality-many Event Hub function for these events."""
    data = meta.Datum(CollectionBytes([event.body for event in events]), "collection_bytes")
    metadata = trigger_metadata(
        events, hub=hub, partition_id=partition_id, namespace=namespace, consumer_group=consumer_group
    )
    decoded = eventhub.trigger_converter().decode(data, trigger_metadata=metadata)
    if not isinstance(decoded, list):
        raise TypeError("the Event Hub converter did not decode a batch")
    return decoded

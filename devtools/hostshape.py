"""Builds Event Hub and Storage queue trigger inputs exactly as the Functions host hands them to the worker.

Bodies arrive as ``collection_bytes``, per-event system properties as ``SystemPropertiesArray``
and the partition as ``PartitionContext``; ``azure.functions``' own converter decodes them.
The demo, the benchmarks and the tests deliver batches to the registered function this way.
Queue messages are taken off a real (Azurite) queue, Base64-decoded as the host does, and
decoded by the converter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import azure.functions as func
from azure.functions import meta
from azure.functions.queue import QueueMessageInConverter
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

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


def take_queue_messages(connection_string: str, queue_name: str, limit: int = 32) -> list[func.QueueMessage]:
    """Take waiting messages off a queue as the host does: Base64 text, decoded by the converter.

    Each message is deleted once taken, as the host does after a successful invocation.
    """
    queue = QueueClient.from_connection_string(
        connection_string, queue_name, message_decode_policy=TextBase64DecodePolicy()
    )
    messages = []
    for received in queue.receive_messages(max_messages=limit, visibility_timeout=300):
        metadata = {
            "Id": meta.Datum(received.id, "string"),
            "DequeueCount": meta.Datum(received.dequeue_count, "int"),
            "PopReceipt": meta.Datum(received.pop_receipt, "string"),
        }
        datum = meta.Datum(received.content, "string")
        messages.append(QueueMessageInConverter.decode(datum, trigger_metadata=metadata))
        queue.delete_message(received.id, received.pop_receipt)
    return messages

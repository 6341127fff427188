"""Reads Event Hubs Capture Avro files and blob paths into the events the trigger would deliver."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

import fastavro

from chargeback.domain.errors import ConfigurationError
from chargeback.ingestion.ledger import ReceivedEvent

DEFAULT_LAYOUT = "{Namespace}/{EventHub}/{PartitionId}/{Year}/{Month}/{Day}/{Hour}/{Minute}/{Second}"
"""Capture's default blob name format; the file itself ends in ``.avro``."""

CAPTURE_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "EventData",
    "namespace": "Microsoft.ServiceBus.Messaging",
    "fields": [
        {"name": "SequenceNumber", "type": "long"},
        {"name": "Offset", "type": "string"},
        {"name": "EnqueuedTimeUtc", "type": "string"},
        {"name": "SystemProperties", "type": {"type": "map", "values": ["long", "double", "string", "bytes"]}},
        {"name": "Properties", "type": {"type": "map", "values": ["long", "double", "string", "bytes", "null"]}},
        {"name": "Body", "type": ["null", "bytes"]},
    ],
}
"""The Avro schema Event Hubs Capture writes (tests write files with it)."""

_FIELDS = ("Namespace", "EventHub", "PartitionId", "Year", "Month", "Day", "Hour", "Minute", "Second")
_NAMES = frozenset({"Namespace", "EventHub", "PartitionId"})
_DOTNET_TIME = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?\s*([AaPp][Mm])?$")


@dataclass(frozen=True, slots=True)
class CaptureFile:
    """Where a Capture file's events came from, read from its blob name."""

    name: str
    hub: str | None
    partition_id: str


def path_pattern(layout: str = DEFAULT_LAYOUT) -> re.Pattern[str]:
    """A regex matching blob names of ``layout``: names are path segments, time fields digits."""
    if "{PartitionId}" not in layout:
        raise ConfigurationError("the capture layout must contain {PartitionId}")
    pattern = re.escape(layout)
    for name in _FIELDS:
        segment = r"[^/]+" if name in _NAMES else r"\d+"
        pattern = pattern.replace(re.escape("{" + name + "}"), f"(?P<{name}>{segment})")
    return re.compile(rf"(?:^|/){pattern}(?:\.avro)?$")


def parse_blob_name(name: str, pattern: re.Pattern[str]) -> CaptureFile | None:
    """The hub and partition of a Capture blob, or None when the name does not fit the layout."""
    match = pattern.search(name)
    if match is None:
        return None
    fields = match.groupdict()
    return CaptureFile(name=name, hub=fields.get("EventHub"), partition_id=fields["PartitionId"])


def read_events(stream: IO[bytes]) -> Iterator[ReceivedEvent]:
    """The events of one Capture Avro file, as the trigger would have delivered them."""
    for record in fastavro.reader(stream):
        if not isinstance(record, dict):
            raise ConfigurationError("a Capture record is not an Avro record")
        yield to_received(record)


def to_received(record: dict[str, Any]) -> ReceivedEvent:
    """One Capture record as a ``ReceivedEvent``: sequence number, enqueued time and raw body."""
    body = record.get("Body")
    return ReceivedEvent(
        body=bytes(body) if body is not None else b"",
        sequence_number=int(record["SequenceNumber"]),
        enqueued_time=parse_enqueued_time(str(record["EnqueuedTimeUtc"])),
    )


def parse_enqueued_time(text: str) -> datetime:
    """Capture writes .NET's invariant ``M/d/yyyy h:mm:ss tt``; ISO 8601 is accepted too."""
    match = _DOTNET_TIME.match(text.strip())
    if match is None:
        try:
            parsed = datetime.fromisoformat(text.strip())
        except ValueError as exc:
            raise ConfigurationError(f"unreadable EnqueuedTimeUtc {text[:40]!r} in a Capture file") from exc
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    month, day, year, hour, minute, second, fraction, meridiem = match.groups()
    hours = int(hour)
    if meridiem:
        hours = hours % 12 + (12 if meridiem.upper() == "PM" else 0)
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    return datetime(int(year), int(month), int(day), hours, int(minute), int(second), micros, tzinfo=UTC)


def format_enqueued_time(moment: datetime) -> str:
    """``moment`` the way Capture writes EnqueuedTimeUtc."""
    utc = moment.astimezone(UTC)
    hour = utc.hour % 12 or 12
    meridiem = "AM" if utc.hour < 12 else "PM"
    return f"{utc.month}/{utc.day}/{utc.year} {hour}:{utc.minute:02d}:{utc.second:02d} {meridiem}"

"""Replaying Event Hubs Capture files fills what was missed and counts nothing twice."""

from __future__ import annotations

import io
import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import fastavro
import orjson
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from chargeback.adapters.tables import TableDeadLetterStore
from chargeback.app import runtime
from chargeback.domain import events
from chargeback.ingestion.capture import (
    CAPTURE_SCHEMA,
    DEFAULT_LAYOUT,
    format_enqueued_time,
    parse_blob_name,
    parse_enqueued_time,
    path_pattern,
)
from chargeback.ingestion.ledger import DeadLetter
from chargeback.ops import cli
from devtools.emulator import Azurite
from devtools.hostshape import HostEvent
from tests.functions import deliver

ENQUEUED = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
HUB = "aoai-usage"


def body(sequence: int, partition: str) -> bytes:
    """Event ``sequence`` of ``partition``: tokens 2**k so any lost or doubled event shows in the sum."""
    return orjson.dumps({"SubscriptionId": f"p{partition}", "TotalTokens": str(1 + sequence)})


def expected(partition: str, sequences: range) -> int:
    return sum(1 + sequence for sequence in sequences)


def record(sequence: int, payload: bytes | None, enqueued: datetime = ENQUEUED) -> dict[str, object]:
    return {
        "SequenceNumber": sequence,
        "Offset": str(sequence * 512),
        "EnqueuedTimeUtc": format_enqueued_time(enqueued + timedelta(seconds=sequence)),
        "SystemProperties": {"x-opt-sequence-number": sequence},
        "Properties": {},
        "Body": payload,
    }


def avro(records: Sequence[dict[str, object]]) -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(CAPTURE_SCHEMA), list(records))
    return out.getvalue()


def capture_name(partition: str, minute: int, prefix: str = "ns/aoai-usage") -> str:
    return f"{prefix}/{partition}/2026/11/27/06/{minute:02d}/00.avro"


@pytest.fixture(name="capture")
def fixture_capture(azurite: Azurite) -> ContainerClient:
    """An empty container of Capture files in Azurite."""
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    return service.create_container(f"capture-{uuid.uuid4().hex[:10]}")


def write_capture(
    container: ContainerClient, partition: str, sequences: range, *, files: int = 3, shuffle: bool = False
) -> None:
    """Capture files for ``partition``, ``files`` one-minute windows, records in each file shuffled or not."""
    numbers = list(sequences)
    size = -(-len(numbers) // files)
    for index in range(files):
        window = [record(n, body(n, partition)) for n in numbers[index * size : (index + 1) * size]]
        if shuffle:
            random.Random(index).shuffle(window)
        container.upload_blob(capture_name(partition, index), avro(window))


def live(partition: str, sequences: range) -> None:
    deliver([HostEvent(body(n, partition), n, ENQUEUED) for n in sequences], partition_id=partition)


def tokens(subscription: str) -> int:
    rows = runtime.services().ledger.period_rows("2026-11")
    return sum(row.counters.total_tokens for row in rows if row.key.subscription_id == subscription)


def replay(capsys: pytest.CaptureFixture[str], location: str, *argv: str) -> dict[str, str]:
    assert cli.main(["replay", "--capture", location, *argv]) == 0
    lines = capsys.readouterr().out.splitlines()
    return dict(line.split(": ", 1) for line in lines)


def dead_letters() -> TableDeadLetterStore:
    services = runtime.services()
    names = services.settings.storage
    return TableDeadLetterStore(
        services.storage.table(names.dead_letter_table), services.storage.container(names.dead_letter_container)
    )


@pytest.mark.azurite
class TestAgainstAzurite:
    def test_replaying_what_was_already_counted_changes_nothing(
        self, app_settings: dict[str, str], capture: ContainerClient, capsys: pytest.CaptureFixture[str]
    ) -> None:
        live("0", range(60))
        write_capture(capture, "0", range(60))
        counts = replay(capsys, capture.container_name)
        assert (counts["events"], counts["applied"], counts["already present"]) == ("60", "0", "60")
        assert tokens("p0") == expected("0", range(60))

    def test_replaying_what_was_missed_fills_the_gap(
        self, app_settings: dict[str, str], capture: ContainerClient, capsys: pytest.CaptureFixture[str]
    ) -> None:
        live("0", range(60))
        live("1", range(25))
        write_capture(capture, "0", range(60))
        write_capture(capture, "1", range(60), shuffle=True)
        counts = replay(capsys, f"{capture.container_name}/ns")
        assert (counts["files"], counts["applied"], counts["already present"]) == ("6", "35", "85")
        assert (tokens("p0"), tokens("p1")) == (expected("0", range(60)), expected("1", range(60)))

    def test_replaying_twice_counts_once(
        self, app_settings: dict[str, str], capture: ContainerClient, capsys: pytest.CaptureFixture[str]
    ) -> None:
        write_capture(capture, "3", range(250), files=5)
        replay(capsys, capture.container_name, "--batch-size", "40")
        counts = replay(capsys, capture.container_name)
        assert (counts["applied"], counts["already present"]) == ("0", "250")
        assert tokens("p3") == expected("3", range(250))

    def test_bad_captured_events_are_dead_lettered_and_every_event_is_accounted_for(
        self, app_settings: dict[str, str], capture: ContainerClient, capsys: pytest.CaptureFixture[str]
    ) -> None:
        records = [record(n, body(n, "2")) for n in range(10)]
        records[3] = record(3, b"{not json")
        records[7] = record(7, None)
        capture.upload_blob(capture_name("2", 0), avro(records))
        counts = replay(capsys, capture.container_name)
        assert (counts["applied"], counts["already present"], counts["dead-lettered"].split()[0]) == ("8", "0", "2")
        assert {dead.reason for dead in dead_letters().find()} == {events.NOT_JSON}
        assert tokens("p2") == expected("2", range(10)) - 4 - 8

    def test_an_event_still_waiting_for_redrive_is_left_to_redrive(
        self, app_settings: dict[str, str], capture: ContainerClient, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An older parser dead-lettered event 10; a fixed parser must not count it here *and* in redrive."""
        live("4", range(10))
        dead_letters().put([DeadLetter(HUB, "4", 10, ENQUEUED + timedelta(seconds=10), body(10, "4"), "x", "old")])
        write_capture(capture, "4", range(12), files=1)
        counts = replay(capsys, capture.container_name)
        assert (counts["applied"], counts["dead-lettered"]) == ("1", "1 (1 already waiting for redrive)")
        assert cli.main(["redrive"]) == 0
        assert tokens("p4") == expected("4", range(12))

    def test_an_event_already_redriven_is_not_counted_again(
        self, app_settings: dict[str, str], capture: ContainerClient, capsys: pytest.CaptureFixture[str]
    ) -> None:
        live("5", range(10))
        dead_letters().put([DeadLetter(HUB, "5", 10, ENQUEUED + timedelta(seconds=10), body(10, "5"), "x", "old")])
        assert cli.main(["redrive"]) == 0
        write_capture(capture, "5", range(11), files=1)
        counts = replay(capsys, capture.container_name)
        assert (counts["applied"], counts["already present"]) == ("0", "11")
        assert tokens("p5") == expected("5", range(11))

    def test_a_custom_layout_names_the_partition(
        self, app_settings: dict[str, str], capture: ContainerClient, capsys: pytest.CaptureFixture[str]
    ) -> None:
        capture.upload_blob("archive/7/2026-11-27/0600.avro", avro([record(n, body(n, "7")) for n in range(5)]))
        counts = replay(
            capsys, capture.container_name, "--layout", "archive/{PartitionId}/{Year}-{Month}-{Day}/{Hour}{Minute}"
        )
        assert counts["applied"] == "5"
        assert tokens("p7") == expected("7", range(5))

    def test_files_outside_the_prefix_or_layout_are_ignored(
        self, app_settings: dict[str, str], capture: ContainerClient, capsys: pytest.CaptureFixture[str]
    ) -> None:
        write_capture(capture, "0", range(5), files=1)
        capture.upload_blob("ns/aoai-usage/README.txt", b"not a capture file")
        capture.upload_blob("other/aoai-usage/1/2026/11/27/06/00/00.avro", avro([record(0, body(0, "1"))]))
        counts = replay(capsys, f"{capture.container_name}/ns/")
        assert (counts["files"], counts["applied"]) == ("1", "5")


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("11/27/2026 6:00:05 AM", datetime(2026, 11, 27, 6, 0, 5, tzinfo=UTC)),
        ("11/27/2026 12:00:00 AM", datetime(2026, 11, 27, 0, 0, tzinfo=UTC)),
        ("11/27/2026 12:30:00 PM", datetime(2026, 11, 27, 12, 30, tzinfo=UTC)),
        ("11/27/2026 11:59:59 PM", datetime(2026, 11, 27, 23, 59, 59, tzinfo=UTC)),
        ("2026-11-27T06:00:05.25Z", datetime(2026, 11, 27, 6, 0, 5, 250000, tzinfo=UTC)),
    ],
)
def test_capture_enqueued_times_are_read_as_utc(text: str, moment: datetime) -> None:
    assert parse_enqueued_time(text) == moment


def test_a_written_enqueued_time_reads_back() -> None:
    moment = datetime(2026, 1, 2, 15, 4, 5, tzinfo=UTC)
    assert parse_enqueued_time(format_enqueued_time(moment)) == moment


@pytest.mark.parametrize(
    ("name", "partition"),
    [
        ("ns/aoai-usage/0/2026/11/27/06/00/00.avro", "0"),
        ("prefix/ns/aoai-usage/31/2026/11/27/06/00/00.avro", "31"),
        ("ns/aoai-usage/0/2026/11/27/06/00/00", "0"),
        ("ns/aoai-usage/2026/11/27/06/00/00.avro", None),
        ("ns/aoai-usage/0/2026/11/27/06/00/00.avro.tmp", None),
    ],
)
def test_the_partition_comes_from_the_blob_path(name: str, partition: str | None) -> None:
    found = parse_blob_name(name, path_pattern(DEFAULT_LAYOUT))
    assert (found.partition_id if found else None) == partition

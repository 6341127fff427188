"""The Table adapter keeps the ledger's promises on real Azurite."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, date, datetime

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from chargeback.adapters.tables import MAX_INLINE_BODY, TableDeadLetterStore, TableLedgerStore
from chargeback.domain import keys
from chargeback.domain.errors import ConcurrencyError
from chargeback.domain.usage import Counters, UsageKey
from chargeback.ingestion.ledger import NO_WATERMARK, DeadLetter, RowWrite
from devtools.emulator import Azurite

pytestmark = pytest.mark.azurite


@pytest.fixture(name="tables")
def fixture_tables(azurite: Azurite) -> TableServiceClient:
    return TableServiceClient.from_connection_string(azurite.connection_string)


@pytest.fixture(name="store")
def fixture_store(tables: TableServiceClient) -> TableLedgerStore:
    return TableLedgerStore(tables.create_table(f"ledger{uuid.uuid4().hex[:12]}"))


@pytest.fixture(name="dead_letters")
def fixture_dead_letters(azurite: Azurite, tables: TableServiceClient) -> TableDeadLetterStore:
    suffix = uuid.uuid4().hex[:12]
    container = BlobServiceClient.from_connection_string(azurite.connection_string).create_container(f"dl-{suffix}")
    return TableDeadLetterStore(tables.create_table(f"dead{suffix}"), container)


def write(subscription: str, counters: Counters, day: date = date(2026, 11, 27)) -> RowWrite:
    key = UsageKey(day, subscription, "gpt-4o", "dep", "op")
    return RowWrite(keys.aggregate_row_key(key), key, counters)


SLICE = keys.slice_key("2026-11", "aoai-usage", "0")


def test_a_new_slice_has_no_watermark(store: TableLedgerStore) -> None:
    snapshot = store.read_slice(SLICE, ["2026-11-27"])
    assert (snapshot.watermark, snapshot.etag, dict(snapshot.rows)) == (NO_WATERMARK, None, {})


def test_a_commit_writes_rows_and_watermark_together(store: TableLedgerStore) -> None:
    etag = store.commit(SLICE, None, [write("a", Counters(requests=1, total_tokens=5))], 41)
    snapshot = store.read_slice(SLICE, ["2026-11-27"])
    assert (snapshot.watermark, snapshot.etag) == (41, etag)
    assert list(snapshot.rows.values()) == [Counters(requests=1, total_tokens=5)]


def test_a_commit_with_a_stale_etag_is_refused_and_writes_nothing(store: TableLedgerStore) -> None:
    first = store.commit(SLICE, None, [write("a", Counters(requests=1))], 1)
    store.commit(SLICE, first, [write("a", Counters(requests=2))], 2)
    with pytest.raises(ConcurrencyError):
        store.commit(SLICE, first, [write("a", Counters(requests=99)), write("b", Counters(requests=1))], 3)
    snapshot = store.read_slice(SLICE, ["2026-11-27"])
    assert snapshot.watermark == 2
    assert list(snapshot.rows.values()) == [Counters(requests=2)]


def test_creating_a_watermark_that_exists_is_a_lost_race(store: TableLedgerStore) -> None:
    store.commit(SLICE, None, [], 1)
    with pytest.raises(ConcurrencyError):
        store.commit(SLICE, None, [], 2)


def test_counters_past_32_bits_survive_the_round_trip(store: TableLedgerStore) -> None:
    big = Counters(requests=3, prompt_tokens=2**40, total_tokens=2**41 + 7)
    store.commit(SLICE, None, [write("a", big)], 2**40)
    snapshot = store.read_slice(SLICE, ["2026-11-27"])
    assert list(snapshot.rows.values()) == [big]
    assert snapshot.watermark == 2**40


@pytest.mark.parametrize(
    "subscription", ["team/alpha", "back\\slash", "hash#tag", "what?", "tab\there", "團隊-🚀", "%41|x", "x" * 800]
)
def test_identifiers_that_keys_forbid_are_stored_and_read_back_unchanged(
    store: TableLedgerStore, subscription: str
) -> None:
    store.commit(SLICE, None, [write(subscription, Counters(requests=1))], 1)
    [(key, counters)] = list(store.period_rows("2026-11"))
    assert key.subscription_id == subscription
    assert counters.requests == 1


def test_period_reads_sum_nothing_from_the_watermark_and_respect_days(store: TableLedgerStore) -> None:
    etag = store.commit(SLICE, None, [write("a", Counters(requests=1), date(2026, 11, 1))], 1)
    other = keys.slice_key("2026-11", "aoai-usage", "1")
    store.commit(other, None, [write("a", Counters(requests=2), date(2026, 11, 2))], 1)
    store.commit(SLICE, etag, [write("b", Counters(requests=4), date(2026, 11, 2))], 2)
    december = keys.slice_key("2026-12", "aoai-usage", "0")
    store.commit(december, None, [write("a", Counters(requests=8), date(2026, 12, 1))], 3)
    month = sorted((k.day.day, k.subscription_id, c.requests) for k, c in store.period_rows("2026-11"))
    assert month == [(1, "a", 1), (2, "a", 2), (2, "b", 4)]
    assert sorted(c.requests for _, c in store.period_rows("2026-11-02")) == [2, 4]


def letter(sequence: int, body: bytes, reason: str = "not_json") -> DeadLetter:
    return DeadLetter("aoai-usage", "3", sequence, datetime(2026, 11, 27, 5, tzinfo=UTC), body, reason, "detail")


def stored(dead_letters: TableDeadLetterStore, sequence: int) -> dict[str, object]:
    row_key = TableDeadLetterStore.row_key(letter(sequence, b""))
    return dict(dead_letters._table.get_entity("2026-11-27", row_key))


def test_a_dead_letter_keeps_its_text_body_reason_and_position(dead_letters: TableDeadLetterStore) -> None:
    dead_letters.put([letter(7, b"{broken")])
    entity = stored(dead_letters, 7)
    assert (entity["body"], entity["body_encoding"], entity["reason"]) == ("{broken", "utf-8", "not_json")
    assert (entity["partition_id"], entity["hub"]) == ("3", "aoai-usage")


def test_a_binary_dead_letter_body_is_kept_as_base64(dead_letters: TableDeadLetterStore) -> None:
    dead_letters.put([letter(8, b"\xff\x00\xfe", "not_utf8")])
    entity = stored(dead_letters, 8)
    assert entity["body_encoding"] == "base64"
    assert base64.b64decode(str(entity["body"])) == b"\xff\x00\xfe"


def test_a_dead_letter_too_large_for_an_entity_goes_to_a_blob(dead_letters: TableDeadLetterStore) -> None:
    body = b"x" * (MAX_INLINE_BODY + 1)
    dead_letters.put([letter(9, body, "too_large")])
    entity = stored(dead_letters, 9)
    assert entity["body_encoding"] == "blob"
    container, _, name = str(entity["body_blob"]).partition("/")
    assert dead_letters._bodies.container_name == container
    assert dead_letters._bodies.download_blob(name).readall() == body


def test_dead_lettering_the_same_event_twice_keeps_one_row(dead_letters: TableDeadLetterStore) -> None:
    dead_letters.put([letter(1, b"a"), letter(2, b"b")])
    dead_letters.put([letter(1, b"a")])
    assert dead_letters.count("2026-11") == 2
    assert dead_letters.count("2026-11-27") == 2
    assert dead_letters.count("2026-10") == 0


def test_a_rows_progress_is_stored_with_it_and_read_back(store: TableLedgerStore) -> None:
    first = write("a", Counters(requests=1))
    store.commit(SLICE, None, [RowWrite(first.row_key, first.key, first.counters, progress=41)], -1)
    snapshot = store.read_slice(SLICE, ["2026-11-27"])
    assert (snapshot.watermark, dict(snapshot.progress)) == (-1, {first.row_key: 41})


def test_a_write_without_progress_keeps_the_stored_progress(store: TableLedgerStore) -> None:
    """A redrive rewrites a row's totals only: its progress must survive, or events would count twice."""
    first = write("a", Counters(requests=1))
    etag = store.commit(SLICE, None, [RowWrite(first.row_key, first.key, first.counters, progress=41)], -1)
    store.commit(SLICE, etag, [write("a", Counters(requests=2))], -1)
    snapshot = store.read_slice(SLICE, ["2026-11-27"])
    assert (dict(snapshot.rows), dict(snapshot.progress)) == (
        {first.row_key: Counters(requests=2)},
        {first.row_key: 41},
    )

"""Report generations on real Azurite: files written once in their folder, pointers moved only conditionally."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import cast

import pytest
from azure.storage.blob import BlobServiceClient

from chargeback.adapters.blobs import BlobCorrectionStore, BlobReportStore
from chargeback.domain.errors import ConflictError, InvalidRequestError, NotFoundError, StorageError
from chargeback.reports.correction_book import CorrectionEntry, CorrectionRecord
from chargeback.reports.model import DRAFT, FINAL, Manifest
from devtools.emulator import Azurite

pytestmark = pytest.mark.azurite


@pytest.fixture(name="store")
def fixture_store(azurite: Azurite) -> BlobReportStore:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    return BlobReportStore(service.create_container(f"reports-{uuid.uuid4().hex[:12]}"))


def manifest(period: str, generation: str, status: str = DRAFT) -> Manifest:
    return cast(Manifest, {"period": period, "generation": generation, "status": status, "files": []})


def test_a_file_is_read_back_from_its_generation(store: BlobReportStore) -> None:
    store.put_file("2026-11", "g1", "chargeback-2026-11.csv", b"a,b\n", "text/csv")
    assert store.get_file("2026-11", "g1", "chargeback-2026-11.csv") == b"a,b\n"


def test_a_generations_file_is_never_overwritten(store: BlobReportStore) -> None:
    store.put_file("2026-11", "g1", "a.csv", b"first", "text/csv")
    with pytest.raises(StorageError):
        store.put_file("2026-11", "g1", "a.csv", b"second", "text/csv")
    assert store.get_file("2026-11", "g1", "a.csv") == b"first"


def test_a_final_pointer_is_created_once(store: BlobReportStore) -> None:
    store.commit("2026-10", FINAL, manifest("2026-10", "g1", FINAL), None)
    with pytest.raises(ConflictError):
        store.commit("2026-10", FINAL, manifest("2026-10", "g2", FINAL), None)
    found = store.pointer("2026-10", FINAL)
    assert found is not None
    assert found[0]["generation"] == "g1"


def test_a_draft_pointer_moves_only_from_the_etag_its_writer_read(store: BlobReportStore) -> None:
    store.commit("2026-11", DRAFT, manifest("2026-11", "g1"), None)
    first = store.pointer("2026-11", DRAFT)
    assert first is not None
    store.commit("2026-11", DRAFT, manifest("2026-11", "g2"), first[1])
    with pytest.raises(ConflictError):
        store.commit("2026-11", DRAFT, manifest("2026-11", "g3"), first[1])
    now = store.pointer("2026-11", DRAFT)
    assert now is not None
    assert now[0]["generation"] == "g2"


def test_periods_are_listed_by_their_pointers_and_generations_by_age(store: BlobReportStore) -> None:
    store.commit("2026-10", FINAL, manifest("2026-10", "g1", FINAL), None)
    store.put_file("2026-11", "g2", "a.csv", b"x", "text/csv")
    assert store.periods() == ["2026-10"]
    assert store.generations("2026-11", timedelta(0)) == ["g2"]
    assert store.generations("2026-11", timedelta(hours=1)) == []
    store.discard("2026-11", "g2")
    assert store.generations("2026-11", timedelta(0)) == []
    assert store.pointer("2026-12", DRAFT) is None


def test_a_missing_file_is_not_found(store: BlobReportStore) -> None:
    with pytest.raises(NotFoundError):
        store.get_file("2026-11", "g1", "nothing.csv")


@pytest.mark.parametrize("name", ["../2026-10/final.json", "a/b.csv", "..\\x", ".hidden", "/etc/passwd", ""])
def test_a_file_or_generation_name_that_would_leave_its_folder_is_refused(store: BlobReportStore, name: str) -> None:
    with pytest.raises(StorageError):
        store.put_file("2026-11", "g1", name, b"x", "text/plain")
    with pytest.raises(StorageError):
        store.get_file("2026-11", name, "a.csv")


@pytest.mark.parametrize("period", ["2026-11/..", "../x", "2026-1", ""])
def test_a_period_that_is_not_a_month_is_refused(store: BlobReportStore, period: str) -> None:
    with pytest.raises(InvalidRequestError):
        store.get_file(period, "g1", "a.csv")


# --------------------------------------------------------------------------------------------
# Correction records


@pytest.fixture(name="corrections")
def fixture_corrections(store: BlobReportStore) -> BlobCorrectionStore:
    return BlobCorrectionStore(store.container)


def record(*ids: str) -> CorrectionRecord:
    entries = [cast(CorrectionEntry, {"id": correction, "period": "2026-10"}) for correction in ids]
    return CorrectionRecord(period="2026-10", entries=entries)


def test_a_correction_record_is_created_once(corrections: BlobCorrectionStore) -> None:
    assert corrections.record("2026-10") is None
    corrections.save("2026-10", record("a" * 32), None)
    with pytest.raises(ConflictError):
        corrections.save("2026-10", record("b" * 32), None)
    found = corrections.record("2026-10")
    assert found is not None
    assert [entry["id"] for entry in found[0]["entries"]] == ["a" * 32]


def test_a_correction_record_moves_only_from_the_etag_its_writer_read(corrections: BlobCorrectionStore) -> None:
    corrections.save("2026-10", record("a" * 32), None)
    first = corrections.record("2026-10")
    assert first is not None
    corrections.save("2026-10", record("a" * 32, "b" * 32), first[1])
    with pytest.raises(ConflictError):
        corrections.save("2026-10", record("a" * 32, "c" * 32), first[1])
    now = corrections.record("2026-10")
    assert now is not None
    assert [entry["id"] for entry in now[0]["entries"]] == ["a" * 32, "b" * 32]


def test_a_corrections_lines_are_written_once_and_read_back(corrections: BlobCorrectionStore) -> None:
    corrections.put_lines("2026-10", "a" * 32, b"lines")
    with pytest.raises(StorageError):
        corrections.put_lines("2026-10", "a" * 32, b"other")
    assert corrections.get_lines("2026-10", "a" * 32) == b"lines"
    with pytest.raises(StorageError):
        corrections.get_lines("2026-10", "b" * 32)


@pytest.mark.parametrize("correction", ["../final", "A" * 32, "a" * 31, ""])
def test_a_correction_id_that_is_not_one_this_app_writes_is_refused(
    corrections: BlobCorrectionStore, correction: str
) -> None:
    with pytest.raises(StorageError):
        corrections.put_lines("2026-10", correction, b"x")


def test_the_months_with_a_record_are_listed_and_nothing_else(
    corrections: BlobCorrectionStore, store: BlobReportStore
) -> None:
    corrections.save("2026-10", record("a" * 32), None)
    corrections.put_lines("2026-09", "a" * 32, b"lines of a record not yet written")
    store.commit("2026-11", DRAFT, manifest("2026-11", "g1"), None)
    assert corrections.periods() == ["2026-10"]
    assert store.periods() == ["2026-11"]

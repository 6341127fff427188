"""The report store keeps every file inside its period's folder, on real Azurite."""

from __future__ import annotations

import uuid

import pytest
from azure.storage.blob import BlobServiceClient

from chargeback.adapters.blobs import BlobReportStore
from chargeback.domain.errors import InvalidRequestError, NotFoundError, StorageError
from devtools.emulator import Azurite

pytestmark = pytest.mark.azurite


@pytest.fixture(name="store")
def fixture_store(azurite: Azurite) -> BlobReportStore:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    return BlobReportStore(service.create_container(f"reports-{uuid.uuid4().hex[:12]}"))


def test_a_file_is_read_back_from_its_period_folder(store: BlobReportStore) -> None:
    store.put("2026-11", "chargeback-2026-11.csv", b"a,b\n", "text/csv")
    assert store.get("2026-11", "chargeback-2026-11.csv") == b"a,b\n"


def test_manifests_are_listed_per_period(store: BlobReportStore) -> None:
    store.put_manifest("2026-10", {"period": "2026-10", "status": "final"})
    store.put_manifest("2026-11", {"period": "2026-11", "status": "draft"})
    store.put("2026-11", "other.json", b"{}", "application/json")
    assert sorted(m["period"] for m in store.manifests()) == ["2026-10", "2026-11"]
    assert store.manifest("2026-12") is None


def test_a_missing_file_is_not_found(store: BlobReportStore) -> None:
    with pytest.raises(NotFoundError):
        store.get("2026-11", "nothing.csv")


@pytest.mark.parametrize("name", ["../2026-10/manifest.json", "a/b.csv", "..\\x", ".hidden", "/etc/passwd"])
def test_a_file_name_that_would_leave_the_period_folder_is_refused(store: BlobReportStore, name: str) -> None:
    with pytest.raises(StorageError):
        store.put("2026-11", name, b"x", "text/plain")
    with pytest.raises(StorageError):
        store.get("2026-11", name)


@pytest.mark.parametrize("period", ["2026-11/..", "../x", "2026-1", ""])
def test_a_period_that_is_not_a_month_is_refused(store: BlobReportStore, period: str) -> None:
    with pytest.raises(InvalidRequestError):
        store.get(period, "manifest.json")

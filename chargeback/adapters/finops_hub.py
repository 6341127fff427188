"""A FinOps hub's ``ingestion`` container on Blob Storage: stamped files, written on a condition.

In Azure the app reaches the hub's storage account with its own identity, which holds Storage
Blob Data Contributor on that one container; locally a connection string (Azurite) is used and
the container is created when missing (in Azure the hub owns it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

from chargeback.adapters.storage import PARQUET, put_blob, translated
from chargeback.app.settings import FinOpsHubSettings
from chargeback.domain.errors import ConflictError
from chargeback.reports.finops_hub import CONTAINER, MANIFEST_BODY, Found, Stamp

_TIMEOUTS: dict[str, Any] = {"connection_timeout": 10, "read_timeout": 60}


def hub_store(settings: FinOpsHubSettings, client_id: str | None) -> BlobHubStore:
    """The hub's ingestion container: by connection string, or by URI with the app's identity (``client_id``).

    Nothing is sent until the first delivery, so a hub that cannot be reached never stands in a report's way.
    """
    if settings.connection_string:
        service = BlobServiceClient.from_connection_string(settings.connection_string, **_TIMEOUTS)
        return BlobHubStore(service.get_container_client(CONTAINER), create=True)
    credential = DefaultAzureCredential(managed_identity_client_id=client_id)
    service = BlobServiceClient(account_url=str(settings.blob_service_uri), credential=credential, **_TIMEOUTS)
    return BlobHubStore(service.get_container_client(CONTAINER))


@contextmanager
def _lost_race(name: str) -> Iterator[None]:
    try:
        yield
    except (ResourceExistsError, ResourceModifiedError) as exc:
        raise ConflictError(f"another delivery wrote {name} first") from exc


class BlobHubStore:
    """``HubStore`` on the hub's ingestion container: each file carries its stamp as blob metadata."""

    def __init__(self, container: ContainerClient, *, create: bool = False) -> None:
        self._container = container
        # Locally the container is created before the first write; in Azure the hub owns it.
        self._create = create

    def _writable(self) -> None:
        if self._create:
            with translated("create the FinOps hub's ingestion container"), suppress(ResourceExistsError):
                self._container.create_container()
            self._create = False

    def find(self, name: str) -> Found | None:
        with translated("read a FinOps hub file"):
            try:
                properties = self._container.get_blob_client(name).get_blob_properties()
            except ResourceNotFoundError:
                return None
        metadata = properties.metadata or {}
        generation, status, sha256 = (metadata.get(key) for key in ("generation", "status", "sha256"))
        stamp = Stamp(generation, status, sha256) if generation and status and sha256 else None
        return Found(stamp, str(properties.etag))

    def put(self, name: str, data: bytes, stamp: Stamp, etag: str | None) -> None:
        self._writable()
        with translated("deliver to a FinOps hub"), _lost_race(name):
            put_blob(self._container, name, data, etag, content_type=PARQUET, metadata=stamp.metadata())

    def put_manifest(self, name: str, stamp: Stamp) -> None:
        settings = ContentSettings(content_type="application/json")
        self._writable()
        with translated("write a FinOps hub manifest"):
            self._container.upload_blob(
                name, MANIFEST_BODY, overwrite=True, metadata=stamp.metadata(), content_settings=settings
            )

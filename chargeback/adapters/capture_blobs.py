"""Lists and downloads Event Hubs Capture blobs through the ChargebackStorage settings."""

from __future__ import annotations

import io
import re

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient

from chargeback.adapters import storage
from chargeback.adapters.storage import translated
from chargeback.app.settings import StorageSettings
from chargeback.domain.errors import ConfigurationError
from chargeback.ingestion.capture import CaptureFile, parse_blob_name


class CaptureBlobs:
    """The Capture files of one container, listed and downloaded with translated errors."""

    def __init__(self, settings: StorageSettings, location: str) -> None:
        """``location`` is ``container/prefix``; no container is ever created."""
        container, _, prefix = location.strip("/").partition("/")
        if not container:
            raise ConfigurationError("--capture must name a container: <container>[/<prefix>]")
        self._container: ContainerClient = storage.blob_service(settings).get_container_client(container)
        self._prefix = prefix

    def files(self, pattern: re.Pattern[str]) -> list[CaptureFile]:
        """Every Capture file under the prefix, in name order (which is time order per partition)."""
        files: list[CaptureFile] = []
        container = self._container.container_name
        with translated(f"list capture blobs under {container}/{self._prefix}"):
            try:
                for blob in self._container.list_blobs(name_starts_with=self._prefix or None):
                    found = parse_blob_name(blob.name, pattern)
                    if found is not None and blob.size:
                        files.append(found)
            except ResourceNotFoundError as exc:
                raise ConfigurationError(
                    f"--capture names the container {container}, which the storage account does not have "
                    "(Capture writes to the container the hub's Capture settings name, capture by default)"
                ) from exc
        return sorted(files, key=lambda file: file.name)

    def download(self, name: str) -> io.BytesIO:
        """One Capture file (each covers a window of minutes: small enough to hold in memory)."""
        with translated(f"download capture blob {name}"):
            return io.BytesIO(self._container.download_blob(name).readall())

"""Lists and downloads Event Hubs Capture blobs through the ChargebackStorage settings."""

from __future__ import annotations

import io
import re

from azure.storage.blob import ContainerClient

from chargeback.adapters import storage
from chargeback.adapters.storage import translated
from chargeback.app.settings import StorageSettings
from chargeback.domain.errors import ConfigurationError
from chargeback.ops.capture import CaptureFile, parse_blob_name


def capture_container(settings: StorageSettings, location: str) -> tuple[ContainerClient, str]:
    """The container of ``container/prefix`` and the prefix (no container is ever created)."""
    container, _, prefix = location.strip("/").partition("/")
    if not container:
        raise ConfigurationError("--capture must name a container: <container>[/<prefix>]")
    return storage.blob_service(settings).get_container_client(container), prefix


def capture_files(container: ContainerClient, prefix: str, pattern: re.Pattern[str]) -> list[CaptureFile]:
    """Every Capture file under ``prefix``, in name order (which is time order per partition)."""
    files: list[CaptureFile] = []
    with translated(f"list capture blobs under {container.container_name}/{prefix}"):
        for blob in container.list_blobs(name_starts_with=prefix or None):
            found = parse_blob_name(blob.name, pattern)
            if found is not None and blob.size:
                files.append(found)
    return sorted(files, key=lambda file: file.name)


def download(container: ContainerClient, name: str) -> io.BytesIO:
    """One Capture file (each covers a window of minutes: small enough to hold in memory)."""
    with translated(f"download capture blob {name}"):
        return io.BytesIO(container.download_blob(name).readall())

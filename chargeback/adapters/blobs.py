"""Report folders on Azure Blob Storage: ``<period>/<file>`` and ``<period>/manifest.json``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from chargeback.adapters.storage import translated
from chargeback.domain.errors import NotFoundError, StorageError
from chargeback.domain.periods import parse_month

MANIFEST = "manifest.json"


def _name(period: str, file_name: str) -> str:
    parse_month(period)
    if "/" in file_name or "\\" in file_name or file_name.startswith("."):
        raise StorageError(f"refusing a report file name outside its period folder: {file_name[:80]!r}")
    return f"{period}/{file_name}"


class BlobReportStore:
    """``ReportStore`` on one container; a file never leaves its period's folder."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    def put(self, period: str, name: str, data: bytes, content_type: str) -> None:
        blob = _name(period, name)
        with translated(f"write report file {blob}"):
            self._container.upload_blob(
                blob,
                data,
                overwrite=True,
                content_settings=ContentSettings(
                    content_type=content_type, content_disposition=f'attachment; filename="{name}"'
                ),
            )

    def put_manifest(self, period: str, manifest: Mapping[str, Any]) -> None:
        self.put(period, MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2), "application/json")

    def get(self, period: str, name: str) -> bytes:
        blob = _name(period, name)
        with translated(f"read report file {blob}"):
            try:
                return self._container.download_blob(blob).readall()
            except ResourceNotFoundError as exc:
                raise NotFoundError(f"{name} does not exist for {period}") from exc

    def manifest(self, period: str) -> dict[str, Any] | None:
        try:
            document: dict[str, Any] = orjson.loads(self.get(period, MANIFEST))
        except NotFoundError:
            return None
        return document

    def manifests(self) -> list[dict[str, Any]]:
        with translated("list reports"):
            names = [blob.name for blob in self._container.list_blobs() if blob.name.endswith(f"/{MANIFEST}")]
        found = []
        for name in names:
            manifest = self.manifest(name.split("/", 1)[0])
            if manifest is not None:
                found.append(manifest)
        return found

"""Builds Table and Blob clients from the ChargebackStorage settings and translates SDK errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableServiceClient
from azure.identity import DefaultAzureCredential
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from chargeback.app.settings import StorageSettings
from chargeback.domain.errors import AccessDeniedError, ConfigurationError, StorageError, TransientStorageError

JSON = "application/json"
PARQUET = "application/vnd.apache.parquet"
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
DENIED_STATUS = frozenset({401, 403})
_TIMEOUTS: dict[str, Any] = {"connection_timeout": 10, "read_timeout": 30}


def _credential(settings: StorageSettings) -> Any:
    return DefaultAzureCredential(managed_identity_client_id=settings.client_id)


def table_service(settings: StorageSettings) -> TableServiceClient:
    """A Table client: the connection string when set, else the service URI and an identity."""
    if settings.connection_string:
        return TableServiceClient.from_connection_string(settings.connection_string, **_TIMEOUTS)
    if settings.table_service_uri is None:
        raise ConfigurationError("no table service URI for ChargebackStorage")
    return TableServiceClient(endpoint=settings.table_service_uri, credential=_credential(settings), **_TIMEOUTS)


def blob_service(settings: StorageSettings) -> BlobServiceClient:
    """A Blob client: the connection string when set, else the service URI and an identity."""
    if settings.connection_string:
        return BlobServiceClient.from_connection_string(settings.connection_string, **_TIMEOUTS)
    if settings.blob_service_uri is None:
        raise ConfigurationError("no blob service URI for ChargebackStorage")
    return BlobServiceClient(account_url=settings.blob_service_uri, credential=_credential(settings), **_TIMEOUTS)


def report_queue(settings: StorageSettings) -> QueueClient:
    """The report job queue; messages are Base64 text, as the Functions queue trigger expects."""
    policy = TextBase64EncodePolicy()
    if settings.connection_string:
        return QueueClient.from_connection_string(
            settings.connection_string, settings.report_queue, message_encode_policy=policy, **_TIMEOUTS
        )
    if settings.queue_service_uri is None:
        raise ConfigurationError("no queue service URI for ChargebackStorage")
    return QueueClient(
        settings.queue_service_uri,
        settings.report_queue,
        credential=_credential(settings),
        message_encode_policy=policy,
        **_TIMEOUTS,
    )


def ensure_queue(queue: QueueClient) -> None:
    with translated("create the report queue"), suppress(ResourceExistsError):
        queue.create_queue()


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn SDK failures into the package's errors: transient ones are worth a retry."""
    try:
        yield
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise TransientStorageError(f"{what}: storage unreachable ({type(exc).__name__})") from exc
    except ClientAuthenticationError as exc:
        if exc.status_code is None:  # no answer from storage: the credential found no sign-in
            raise AccessDeniedError(f"{what}: could not sign in to storage ({_first_line(exc)})") from exc
        raise AccessDeniedError(f"{what}: storage refused the sign-in ({exc.status_code} {_code(exc)})") from exc
    except HttpResponseError as exc:
        status = exc.status_code
        if status in TRANSIENT_STATUS:
            raise TransientStorageError(f"{what}: storage answered {status}") from exc
        if status in DENIED_STATUS:
            raise AccessDeniedError(f"{what}: storage answered {status} {_code(exc)}") from exc
        raise StorageError(f"{what}: storage answered {status} {_code(exc)}") from exc


def _code(exc: HttpResponseError) -> str:
    return str(getattr(exc, "error_code", "") or "")


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def ensure_table(service: TableServiceClient, name: str) -> None:
    with translated(f"create table {name}"), suppress(ResourceExistsError):
        service.create_table(name)


def ensure_container(service: BlobServiceClient, name: str) -> None:
    with translated(f"create container {name}"), suppress(ResourceExistsError):
        service.create_container(name)


class StorageAccount:
    """The app's Table and Blob clients, built on first use; a table or container is created on first use."""

    def __init__(self, settings: StorageSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._tables: TableServiceClient | None = None
        self._blobs: BlobServiceClient | None = None

    def table(self, name: str) -> TableClient:
        with self._lock:
            if self._tables is None:
                self._tables = table_service(self._settings)
        ensure_table(self._tables, name)
        return self._tables.get_table_client(name)

    def container(self, name: str) -> ContainerClient:
        ensure_container(self.blobs(), name)
        return self.blobs().get_container_client(name)

    def blobs(self) -> BlobServiceClient:
        with self._lock:
            if self._blobs is None:
                self._blobs = blob_service(self._settings)
            return self._blobs

    def report_queue(self) -> QueueClient:
        """The report job queue, created if missing."""
        queue = report_queue(self._settings)
        ensure_queue(queue)
        return queue


def read_json(container: ContainerClient, name: str) -> tuple[Any, str] | None:
    """The JSON document in blob ``name`` and the blob's ETag, or None when there is no such blob."""
    try:
        downloader = container.download_blob(name)
        data = downloader.readall()
    except ResourceNotFoundError:
        return None
    return orjson.loads(data), str(downloader.properties.etag)


def put_blob(
    container: ContainerClient,
    name: str,
    data: bytes,
    etag: str | None,
    *,
    content_type: str,
    metadata: Mapping[str, str] | None = None,
) -> str:
    """Create blob ``name`` (``etag`` None: only if absent) or replace it only if still at ``etag``; its new ETag.

    A failed condition raises the SDK's ``ResourceExistsError`` or ``ResourceModifiedError`` for the caller to name.
    """
    condition: dict[str, Any] = (
        {"overwrite": False}
        if etag is None
        else {"overwrite": True, "etag": etag, "match_condition": MatchConditions.IfNotModified}
    )
    written = container.get_blob_client(name).upload_blob(
        data,
        content_settings=ContentSettings(content_type=content_type),
        metadata=dict(metadata) if metadata is not None else None,
        **condition,
    )
    return str(written["etag"])

"""Report lines to Log Analytics through the Logs Ingestion API, or to a local file; and what was published.

The rows go to the stream ``Custom-ChargebackLines_CL`` of the data collection rule that
``CHARGEBACK_LINES_RULE_ID`` names, at the rule's own logs ingestion endpoint
(``CHARGEBACK_LINES_ENDPOINT``), signed in with the app's identity, which holds *Monitoring
Metrics Publisher* on that rule only (infra/app/chargeback-lines.bicep). The client cuts the rows
into gzip-compressed requests of at most 1 MB and sends them one after the other; a failure is
raised as ``PublishError`` and the publication's message is delivered again (rows sent twice are
read once: see ``chargeback.reports.published_lines``). Locally, ``CHARGEBACK_LINES_FILE`` names a
JSON Lines file the same rows are appended to.

What was published is recorded per period as ``published-lines/<period>.json`` in the reports
container, created with ``If-None-Match: *`` or replaced with ``If-Match``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError
from azure.identity import DefaultAzureCredential
from azure.monitor.ingestion import LogsIngestionClient
from azure.storage.blob import ContainerClient

from chargeback.adapters.storage import JSON, put_blob, read_json, translated
from chargeback.app.settings import LinesSettings
from chargeback.domain.errors import ConflictError, PublishError
from chargeback.domain.periods import parse_month
from chargeback.reports.published_lines import STREAM

PUBLISHED = "published-lines"


class IngestionSink:
    """``LineSink`` on a ``LogsIngestionClient``."""

    def __init__(self, client: LogsIngestionClient, rule_id: str) -> None:
        self._client = client
        self._rule_id = rule_id

    def send(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        try:
            self._client.upload(rule_id=self._rule_id, stream_name=STREAM, logs=[dict(row) for row in rows])
        except AzureError as exc:
            status = getattr(exc, "status_code", None)
            raise PublishError(
                f"the Logs Ingestion API did not take the report lines ({status or type(exc).__name__})"
            ) from exc


class FileSink:
    """``LineSink`` appending JSON Lines to a file (local runs and the demo)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def send(self, rows: Sequence[Mapping[str, Any]]) -> None:
        data = b"".join(orjson.dumps(row) + b"\n" for row in rows)
        try:
            with self._lock:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                with self._path.open("ab") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
        except OSError as exc:
            raise PublishError(
                f"the report lines could not be written to the lines file ({type(exc).__name__})"
            ) from exc


class BlobPublishedStore:
    """``PublishedStore``: ``published-lines/<period>.json`` beside the reports."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    def find(self, period: str) -> tuple[str, str] | None:
        with translated("read what was published"):
            found = read_json(self._container, f"{PUBLISHED}/{parse_month(period)}.json")
        return None if found is None else (str(found[0]["generation"]), found[1])

    def record(self, period: str, generation: str, etag: str | None) -> None:
        data = orjson.dumps({"period": period, "generation": generation})
        with translated("record what was published"):
            try:
                put_blob(self._container, f"{PUBLISHED}/{parse_month(period)}.json", data, etag, content_type=JSON)
            except (ResourceExistsError, ResourceModifiedError) as exc:
                raise ConflictError(f"another publication of {period} was recorded first") from exc


def line_sink(settings: LinesSettings, client_id: str | None, root: Path, **options: Any) -> IngestionSink | FileSink:
    """The sink the settings name: the rule's endpoint in Azure, else the file (relative to ``root``)."""
    if settings.endpoint is not None and settings.rule_id is not None:
        credential = DefaultAzureCredential(managed_identity_client_id=client_id)
        return IngestionSink(LogsIngestionClient(settings.endpoint, credential, **options), settings.rule_id)
    path = Path(str(settings.file))
    return FileSink(path if path.is_absolute() else root / path)

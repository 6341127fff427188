"""Report generations on Azure Blob Storage: immutable files per generation, moved by pointer blobs.

Layout of one period::

    <period>/generations/<generation>/<file>   written once (If-None-Match: *), never changed
    <period>/draft.json                        the latest draft's manifest, moved with If-Match
    <period>/final.json                        the final manifest, created once with If-None-Match: *

and, beside them, the compact month view's settled days (chargeback.reports.month_view)::

    ledger-days/<YYYY-MM>/<YYYY-MM-DD>.parquet   created once with If-None-Match: *, never changed
    ledger-days/<YYYY-MM>/totals-through-<YYYY-MM-DD>.parquet   the settled days summed (the usage API)

and the corrections of final months (chargeback.reports.correction_book)::

    corrections/<YYYY-MM>.json                   the month's record: created with If-None-Match: *,
                                                 then only moved with If-Match
    corrections/<YYYY-MM>/<id>.parquet           one correction's lines, written once
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import cast

import orjson
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from chargeback.adapters.links import BlobLinks
from chargeback.adapters.storage import JSON, PARQUET, put_blob, read_json, translated
from chargeback.domain.errors import ConflictError, NotFoundError, StorageError
from chargeback.domain.periods import parse_month
from chargeback.reports.correction_book import CORRECTION_ID, CorrectionRecord
from chargeback.reports.jobs import ReportJob
from chargeback.reports.model import DRAFT, FINAL, Manifest

POINTERS = {DRAFT: "draft.json", FINAL: "final.json"}
GENERATIONS = "generations"
JOBS = "jobs"


def _checked(part: str, what: str) -> str:
    if not part or "/" in part or "\\" in part or part.startswith("."):
        raise StorageError(f"refusing a report {what} outside its period folder")
    return part


def _file(period: str, generation: str, name: str) -> str:
    parse_month(period)
    return f"{period}/{GENERATIONS}/{_checked(generation, 'generation')}/{_checked(name, 'file name')}"


def _pointer(period: str, kind: str) -> str:
    parse_month(period)
    return f"{period}/{POINTERS[kind]}"


@contextmanager
def _lost_race(period: str, kind: str) -> Iterator[None]:
    """A conditional pointer write that failed its condition: another generation committed first."""
    try:
        yield
    except (ResourceExistsError, ResourceModifiedError) as exc:
        raise ConflictError(f"another {kind} report for {period} was committed first") from exc


def _put_json(container: ContainerClient, name: str, document: object, etag: str | None) -> str:
    """Create blob ``name`` (``etag`` None: only if absent) or replace it only if still at ``etag``."""
    return put_blob(container, name, orjson.dumps(document, option=orjson.OPT_INDENT_2), etag, content_type=JSON)


class BlobReportStore:
    """``ReportStore`` on one container; with ``links``, files can be handed out as short-lived links."""

    def __init__(self, container: ContainerClient, links: BlobLinks | None = None) -> None:
        self._container = container
        self._links = links

    @property
    def container(self) -> ContainerClient:
        return self._container

    def put_file(
        self, period: str, generation: str, name: str, data: bytes, content_type: str, *, if_absent: bool = False
    ) -> None:
        """Write one file of a generation; a generation's files are never overwritten.

        With ``if_absent`` a file that exists already is left as it is (a view another request
        rendered first); otherwise that is a ``StorageError``.
        """
        blob = _file(period, generation, name)
        settings = ContentSettings(content_type=content_type, content_disposition=f'attachment; filename="{name}"')
        with translated("write a report file"):
            try:
                self._container.upload_blob(blob, data, overwrite=False, content_settings=settings)
            except ResourceExistsError:
                if not if_absent:
                    raise

    def link(self, period: str, generation: str, name: str, filename: str, content_type: str) -> str | None:
        """A short-lived read-only URL of the file, or None when this store hands out no links."""
        if self._links is None:
            return None
        blob = _file(period, generation, name)
        return self._links.url(self._container.container_name, blob, filename=filename, content_type=content_type)

    def get_file(self, period: str, generation: str, name: str) -> bytes:
        blob = _file(period, generation, name)
        with translated("read a report file"):
            try:
                return self._container.download_blob(blob).readall()
            except ResourceNotFoundError as exc:
                raise NotFoundError(f"{name} does not exist for {period}") from exc

    def pointer(self, period: str, kind: str) -> tuple[Manifest, str] | None:
        """The manifest a pointer holds and the pointer's ETag, or ``None`` when there is none."""
        with translated("read a report pointer"):
            return cast("tuple[Manifest, str] | None", read_json(self._container, _pointer(period, kind)))

    def commit(self, period: str, kind: str, manifest: Manifest, etag: str | None) -> None:
        """Move the ``kind`` pointer to ``manifest`` if it is still at ``etag`` (``None``: absent).

        ``ConflictError`` when another generation moved it first; nothing is overwritten then.
        """
        with translated("commit a report"), _lost_race(period, kind):
            _put_json(self._container, _pointer(period, kind), manifest, etag)

    def periods(self) -> list[str]:
        """Every period with a committed pointer."""
        with translated("list reports"):
            names = [blob.name for blob in self._container.list_blobs() if blob.name.count("/") == 1]
        return sorted({name.split("/", 1)[0] for name in names if name.split("/", 1)[1] in POINTERS.values()})

    def generations(self, period: str, older_than: timedelta) -> list[str]:
        """The period's generations whose files were all written more than ``older_than`` ago."""
        prefix = f"{parse_month(period)}/{GENERATIONS}/"
        cutoff = datetime.now(UTC) - older_than
        newest: dict[str, datetime] = {}
        with translated("list report generations"):
            for blob in self._container.list_blobs(name_starts_with=prefix):
                generation = blob.name[len(prefix) :].split("/", 1)[0]
                newest[generation] = max(newest.get(generation, blob.last_modified), blob.last_modified)
        return sorted(generation for generation, moment in newest.items() if moment <= cutoff)

    def discard(self, period: str, generation: str) -> None:
        """Delete one generation's files (never a pointer)."""
        prefix = f"{period}/{GENERATIONS}/{_checked(generation, 'generation')}/"
        parse_month(period)
        with translated("discard a report generation"):
            for blob in self._container.list_blobs(name_starts_with=prefix):
                try:
                    self._container.delete_blob(blob.name)
                except ResourceNotFoundError:
                    continue


COMPACT_DAYS = "ledger-days"


class BlobCompactDays:
    """``CompactDays``: each settled day of the ledger as one immutable Parquet blob."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    @staticmethod
    def _name(day: date) -> str:
        return f"{COMPACT_DAYS}/{day:%Y-%m}/{day.isoformat()}.parquet"

    def get(self, day: date) -> bytes | None:
        with translated("read a compacted ledger day"):
            try:
                return self._container.download_blob(self._name(day)).readall()
            except ResourceNotFoundError:
                return None

    def create(self, day: date, data: bytes) -> bool:
        with translated("write a compacted ledger day"):
            try:
                put_blob(self._container, self._name(day), data, None, content_type=PARQUET)
            except ResourceExistsError:
                return False
        return True


class BlobCompactTotals:
    """``CompactTotals``: a month's settled days summed, ``ledger-days/<month>/totals-through-<day>.parquet``."""

    PREFIX = "totals-through-"

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    def _name(self, month: str, through: date) -> str:
        return f"{COMPACT_DAYS}/{parse_month(month)}/{self.PREFIX}{through.isoformat()}.parquet"

    def totals_through(self, month: str) -> list[date]:
        prefix = f"{COMPACT_DAYS}/{parse_month(month)}/{self.PREFIX}"
        with translated("list a month's kept totals"):
            names = [blob.name for blob in self._container.list_blobs(name_starts_with=prefix)]
        return sorted(date.fromisoformat(name[len(prefix) :].removesuffix(".parquet")) for name in names)

    def get_totals(self, month: str, through: date) -> bytes | None:
        with translated("read a month's kept totals"):
            try:
                return self._container.download_blob(self._name(month, through)).readall()
            except ResourceNotFoundError:
                return None

    def create_totals(self, month: str, through: date, data: bytes) -> bool:
        with translated("write a month's kept totals"):
            try:
                put_blob(self._container, self._name(month, through), data, None, content_type=PARQUET)
            except ResourceExistsError:
                return False
        return True


class BlobJobStore:
    """``JobStore``: each report job's status as ``jobs/<id>.json`` beside the reports."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    def save(self, job: ReportJob) -> None:
        data = orjson.dumps(job, option=orjson.OPT_INDENT_2)
        name = f"{JOBS}/{_checked(job['id'], 'job')}.json"
        with translated("write a report job"):
            self._container.upload_blob(name, data, overwrite=True, content_settings=ContentSettings(JSON))

    def load(self, job_id: str) -> ReportJob:
        return self.load_versioned(job_id)[0]

    def load_versioned(self, job_id: str) -> tuple[ReportJob, str]:
        with translated("read a report job"):
            found = read_json(self._container, f"{JOBS}/{_checked(job_id, 'job')}.json")
        if found is None:
            raise NotFoundError("no such report job")
        return cast("tuple[ReportJob, str]", found)

    def save_versioned(self, job: ReportJob, etag: str) -> str:
        """Write ``job`` if its record is still at ``etag``; ``ConflictError`` when someone moved it."""
        with translated("write a report job"):
            try:
                return _put_json(self._container, f"{JOBS}/{_checked(job['id'], 'job')}.json", job, etag)
            except ResourceModifiedError as exc:
                raise ConflictError("the report job was changed by another run") from exc


CORRECTIONS = "corrections"


class BlobCorrectionStore:
    """``CorrectionStore``: each final month's correction record and the corrections' lines."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    @staticmethod
    def _record(period: str) -> str:
        return f"{CORRECTIONS}/{parse_month(period)}.json"

    @staticmethod
    def _lines(period: str, correction: str) -> str:
        if not CORRECTION_ID.match(correction):
            raise StorageError("refusing a correction file that is not one this app writes")
        return f"{CORRECTIONS}/{parse_month(period)}/{correction}.parquet"

    def record(self, period: str) -> tuple[CorrectionRecord, str] | None:
        with translated("read a correction record"):
            return cast("tuple[CorrectionRecord, str] | None", read_json(self._container, self._record(period)))

    def save(self, period: str, record: CorrectionRecord, etag: str | None) -> None:
        """Create the record (``etag`` None) or move it from ``etag``; ``ConflictError`` when it moved first."""
        with translated("record a correction"), _lost_race(period, "correction"):
            _put_json(self._container, self._record(period), record, etag)

    def put_lines(self, period: str, correction: str, data: bytes) -> None:
        with translated("write a correction's lines"):
            put_blob(self._container, self._lines(period, correction), data, None, content_type=PARQUET)

    def get_lines(self, period: str, correction: str) -> bytes:
        with translated("read a correction's lines"):
            try:
                return self._container.download_blob(self._lines(period, correction)).readall()
            except ResourceNotFoundError as exc:
                raise StorageError(f"the lines of a correction of {period} are missing") from exc

    def periods(self) -> list[str]:
        """Every month with a correction record."""
        prefix = f"{CORRECTIONS}/"
        with translated("list correction records"):
            names = [blob.name[len(prefix) :] for blob in self._container.list_blobs(name_starts_with=prefix)]
        return sorted(name.removesuffix(".json") for name in names if "/" not in name and name.endswith(".json"))

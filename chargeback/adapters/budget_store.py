"""Budget records in Table Storage (ETag-conditioned) and each month's budget snapshot in Blob Storage.

Records: one table, a partition per month, one entity per record with its JSON document;
created with ``create_entity`` (fails if it exists) and replaced with ``If-Match`` on its ETag.
Snapshots: ``budgets/<YYYY-MM>.json`` beside the reports, written with ``If-Match`` on the ETag
read (or ``If-None-Match: *`` when there was none).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from azure.storage.blob import ContainerClient

from chargeback.adapters.storage import JSON, put_blob, read_json, translated
from chargeback.budgets.evaluate import BudgetSnapshot
from chargeback.budgets.records import Stored
from chargeback.domain.errors import TransientStorageError
from chargeback.domain.periods import parse_month

SNAPSHOTS = "budgets"
_DOCUMENT = "document"


@contextmanager
def _answered(what: str) -> Iterator[None]:
    """``translated``, plus a connection lost while the answer was read: azure-data-tables 12.7 then
    fails inside its own error handling (AttributeError on the missing response), outside its retries."""
    with translated(what):
        try:
            yield
        except AttributeError as exc:
            raise TransientStorageError(f"{what}: the answer was lost") from exc


def _entity(period: str, key: str, document: Mapping[str, Any]) -> dict[str, Any]:
    return {"PartitionKey": period, "RowKey": key, _DOCUMENT: orjson.dumps(document).decode()}


def _stored(entity: Any) -> Stored:
    return Stored(orjson.loads(entity[_DOCUMENT]), str(entity.metadata["etag"]))


class TableBudgetStore:
    """``BudgetStore`` on one table."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def read_period(self, period: str) -> dict[str, Stored]:
        with translated(f"read the budget records of {period}"):
            return {
                str(entity["RowKey"]): _stored(entity)
                for entity in self._table.query_entities("PartitionKey eq @pk", parameters={"pk": parse_month(period)})
            }

    def read(self, period: str, key: str) -> Stored | None:
        with translated(f"read a budget record of {period}"):
            try:
                return _stored(self._table.get_entity(partition_key=parse_month(period), row_key=key))
            except ResourceNotFoundError:
                return None

    def create(self, period: str, key: str, document: Mapping[str, Any]) -> str | None:
        with _answered(f"create a budget record of {period}"):
            try:
                written = self._table.create_entity(_entity(parse_month(period), key, document))
            except ResourceExistsError:
                return None
        return str(written["etag"])

    def replace(self, period: str, key: str, document: Mapping[str, Any], etag: str) -> str | None:
        with _answered(f"replace a budget record of {period}"):
            try:
                written = self._table.update_entity(
                    _entity(parse_month(period), key, document),
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceNotFoundError):
                return None
        return str(written["etag"])


class BlobBudgetSnapshots:
    """``SnapshotStore``: ``budgets/<period>.json`` in the reports container."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    @staticmethod
    def _name(period: str) -> str:
        return f"{SNAPSHOTS}/{parse_month(period)}.json"

    def get(self, period: str) -> tuple[BudgetSnapshot, str] | None:
        with translated("read a budget snapshot"):
            return cast("tuple[BudgetSnapshot, str] | None", read_json(self._container, self._name(period)))

    def put(self, snapshot: BudgetSnapshot, etag: str | None) -> bool:
        name, data = self._name(snapshot["period"]), orjson.dumps(snapshot)
        with translated("write a budget snapshot"):
            try:
                put_blob(self._container, name, data, etag, content_type=JSON)
            except (ResourceExistsError, ResourceModifiedError):
                return False
        return True

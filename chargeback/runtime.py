"""Wires the core to its Azure adapters from the app settings, once per worker process."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

from azure.data.tables import TableClient, TableServiceClient
from azure.storage.blob import BlobServiceClient, ContainerClient

from chargeback.adapters import storage
from chargeback.adapters.tables import TableDeadLetterStore, TableLedgerStore
from chargeback.ledger import Ledger
from chargeback.settings import Settings


@dataclass
class Services:
    """The app's long-lived objects; clients are built on first use and reused."""

    settings: Settings

    @cached_property
    def _tables(self) -> TableServiceClient:
        return storage.table_service(self.settings.storage)

    @cached_property
    def _blobs(self) -> BlobServiceClient:
        return storage.blob_service(self.settings.storage)

    def table(self, name: str) -> TableClient:
        storage.ensure_table(self._tables, name)
        return self._tables.get_table_client(name)

    def container(self, name: str) -> ContainerClient:
        storage.ensure_container(self._blobs, name)
        return self._blobs.get_container_client(name)

    @cached_property
    def ledger(self) -> Ledger:
        names = self.settings.storage
        return Ledger(
            TableLedgerStore(self.table(names.ledger_table)),
            TableDeadLetterStore(self.table(names.dead_letter_table), self.container(names.dead_letter_container)),
        )


_lock = threading.Lock()
_services: Services | None = None


def services() -> Services:
    """The process's services, built from the environment on first call."""
    global _services  # noqa: PLW0603 - one set of clients per worker process
    with _lock:
        if _services is None:
            _services = Services(Settings.from_env())
        return _services


def reset() -> None:
    """Forget the process's services, e.g. after the settings changed (tests)."""
    global _services  # noqa: PLW0603
    with _lock:
        _services = None

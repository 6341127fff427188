"""Each period's latest reconciliation lines on Azure Table Storage, a partition per period."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from azure.data.tables import EdmType, EntityProperty, TableClient, UpdateMode

from chargeback.adapters.storage import translated
from chargeback.domain import keys
from chargeback.reconciliation.reconcile import ReconciliationLine


def _int(value: Any) -> int:
    return int(value.value) if isinstance(value, EntityProperty) else int(value)


class TableReconciliationStore:
    """``ReconciliationStore``: replaces a period's lines with the latest run's."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def save(self, period: str, lines: Sequence[ReconciliationLine]) -> None:
        wanted = {keys.table_key(line.subscription_id): line for line in lines}
        with translated(f"read reconciliation for {period}"):
            stale = [
                entity["RowKey"]
                for entity in self._table.query_entities(
                    "PartitionKey eq @p", parameters={"p": period}, select=["RowKey"]
                )
                if entity["RowKey"] not in wanted
            ]
        operations: list[Any] = [("delete", {"PartitionKey": period, "RowKey": row}) for row in stale]
        operations += [
            ("upsert", self._entity(period, row_key, line), {"mode": UpdateMode.REPLACE})
            for row_key, line in wanted.items()
        ]
        for start in range(0, len(operations), 100):
            with translated(f"write reconciliation for {period}"):
                self._table.submit_transaction(operations[start : start + 100])

    @staticmethod
    def _entity(period: str, row_key: str, line: ReconciliationLine) -> dict[str, Any]:
        return {
            "PartitionKey": period,
            "RowKey": row_key,
            "subscription_id": line.subscription_id,
            "ledger_tokens": EntityProperty(line.ledger_tokens, EdmType.INT64),
            "monitor_tokens": EntityProperty(line.monitor_tokens, EdmType.INT64),
            "delta_tokens": EntityProperty(line.delta_tokens, EdmType.INT64),
            "delta_percent": None if line.delta_percent is None else str(line.delta_percent),
            "status": line.status,
        }

    def load(self, period: str) -> list[ReconciliationLine]:
        with translated(f"read reconciliation for {period}"):
            entities = list(self._table.query_entities("PartitionKey eq @p", parameters={"p": period}))
        return sorted(
            (
                ReconciliationLine(
                    period=period,
                    subscription_id=str(entity["subscription_id"]),
                    ledger_tokens=_int(entity["ledger_tokens"]),
                    monitor_tokens=_int(entity["monitor_tokens"]),
                    delta_tokens=_int(entity["delta_tokens"]),
                    delta_percent=Decimal(entity["delta_percent"]) if entity.get("delta_percent") else None,
                    status=str(entity["status"]),
                )
                for entity in entities
            ),
            key=lambda line: line.subscription_id,
        )

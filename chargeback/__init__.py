"""Token chargeback for an Azure OpenAI gateway: exactly-once usage ledger, reconciliation, reports."""

from __future__ import annotations

__version__ = "0.1.0"

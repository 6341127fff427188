"""Scenario 5 (placeholder): building the monthly report from a ledger of a given size.

Not registered with the harness and never run: the report scenario will be written against
``chargeback.reports`` once that module settles. Until then the harness reports no number
for it rather than an invented one.
"""

from __future__ import annotations

from typing import Any


def report_generation_scenario(events: int) -> dict[str, Any]:
    """Time building one month's report from a ledger holding ``events`` events (to be written)."""
    raise NotImplementedError("the report scenario is not written yet; the harness does not run it")

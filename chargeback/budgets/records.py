"""Budget decisions kept per month, each changed only by a conditional write: racing evaluators agree.

A record is one JSON document per month and key (a budget's crossings, a subscription's
enforcement, a breaker trip). It is created only if absent and replaced only from the ETag it
was read with, so of two evaluators that decide the same thing one writes and the other learns
it lost, re-reads and finds the decision made. Work that follows a decision (a log line, a call
to Azure Resource Manager) is *claimed* in the same write: the writer holds it for
:data:`LEASE`; a claim left by an evaluator that died is taken over once it has expired.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from chargeback.domain import keys
from chargeback.domain.errors import ConcurrencyError

LEASE = timedelta(minutes=10)
"""How long a claim holds: longer than the work it covers (a log line; at most a few minutes of retries)."""
MAX_TRIES = 8

Document = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Stored:
    """A record as read or written: its document and its ETag."""

    document: Document
    etag: str


class BudgetStore(Protocol):
    """Where budget records live, a partition per month; the Table adapter implements it."""

    def read_period(self, period: str) -> dict[str, Stored]:
        """Every record of ``period``, by key."""
        ...

    def read(self, period: str, key: str) -> Stored | None: ...

    def create(self, period: str, key: str, document: Mapping[str, Any]) -> str | None:
        """Write a new record; its ETag, or None (and nothing written) when one exists."""
        ...

    def replace(self, period: str, key: str, document: Mapping[str, Any], etag: str) -> str | None:
        """Replace the record if it is still at ``etag``; the new ETag, or None (nothing written) when it moved."""
        ...


Mutation = Callable[[Document | None], Document | None]
"""Given the record now (None: there is none), the record wanted, or None when nothing is to be written."""


def change(
    store: BudgetStore, period: str, key: str, known: Stored | None, mutate: Mutation
) -> tuple[Stored | None, bool]:
    """Apply ``mutate`` until a conditional write of its result wins, re-reading after each loss.

    Returns the record as it now stands and whether this call wrote it.
    """
    current = known
    for _ in range(MAX_TRIES):
        wanted = mutate(None if current is None else copy.deepcopy(current.document))
        if wanted is None:
            return current, False
        if current is None:
            etag = store.create(period, key, wanted)
        else:
            etag = store.replace(period, key, wanted, current.etag)
        if etag is not None:
            return Stored(wanted, etag), True
        current = store.read(period, key)
    raise ConcurrencyError(f"the budget record {key} of {period} kept moving")


def claim(now: datetime, token: str) -> dict[str, str]:
    """A claim by evaluation ``token`` from ``now``, to be put in a record's entry."""
    return {"claimed_by": token, "claimed_until": _iso(now + LEASE)}


def claim_expired(entry: Mapping[str, Any], now: datetime) -> bool:
    until = entry.get("claimed_until")
    return until is None or datetime.fromisoformat(str(until)) <= now


def held_by(entry: Mapping[str, Any], token: str) -> bool:
    return entry.get("claimed_by") == token


def budget_key(scope: str, scope_id: str) -> str:
    """The key of a budget's record of crossings."""
    return keys.table_key("budget", scope, scope_id)


def subscription_key(subscription_id: str) -> str:
    """The key of a subscription's enforcement record."""
    return keys.table_key("subscription", subscription_id)


def breaker_key(fingerprint: str) -> str:
    return keys.table_key("breaker", fingerprint)


def _iso(moment: datetime) -> str:
    return moment.isoformat()

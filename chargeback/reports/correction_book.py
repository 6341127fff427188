"""The corrections recorded for each final month, and which report bills each of them, once.

A final report is never rewritten. When one was priced with a wrong price or mapped to a wrong
cost center, an administrator records a *correction*: the difference, line by line, between the
month priced with today's price sheet and cost-center map and everything billed for it so far.
Each final month has one correction record, ``corrections/<month>.json``, an append-only list of
entries; an entry is appended only with the record's ETag as a condition (created with
``If-None-Match: *``), so two administrators racing cannot both add the same difference: the
loser re-reads the record and finds nothing left to correct.

Who bills an entry follows from the finals alone, never from a flag written after the fact.
A report of month ``M`` bills the entries of an earlier final month ``F`` that

- no final report lists (a final's manifest names the corrections it billed), and
- that are ``M``'s to bill: every month strictly between ``F`` and ``M`` has a final report.

So an entry is shown by the next report that is not final, as often as that month's draft is
regenerated, and billed by that month's final, which is created once. Two finals can never both
bill an entry: the later one reads the earlier one's final manifest, which lists it. A final
that was being generated while the entry was recorded, and so does not list it, passes it on:
the next month is then the first without a final, and bills it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NotRequired, Protocol, TypedDict

import pandas as pd

from chargeback.domain import periods
from chargeback.domain.errors import StorageError
from chargeback.reports.model import FINAL, Manifest

CORRECTION_ID = re.compile(r"\A[0-9a-f]{32}\Z")


class CorrectionEntry(TypedDict):
    """One recorded correction of a final month: its difference, and who asked, when and why."""

    id: str
    period: str
    """The final month it corrects."""
    requested_by: str
    requested_at: str
    reason: str
    job: str | None
    lines: int
    """How many lines the difference has; they are kept in a file of their own."""
    cost: str
    """The sum of the lines' cost, exactly: the re-priced month minus what was billed before."""
    currency: str
    price_sheet: str
    """A fingerprint of the price sheet the month was re-priced with."""
    cost_centers: str
    """A fingerprint of the cost-center map the month was re-mapped with."""
    billed_in: str
    """The month whose reports were to bill it when it was recorded (the first without a final)."""


class CorrectionRecord(TypedDict):
    period: str
    entries: list[CorrectionEntry]
    updated_at: NotRequired[str]


class CorrectionStore(Protocol):
    """Where correction records and their lines live; the Blob adapter implements it."""

    def record(self, period: str) -> tuple[CorrectionRecord, str] | None:
        """The month's record and its ETag, or None when none was ever written."""
        ...

    def save(self, period: str, record: CorrectionRecord, etag: str | None) -> None:
        """Write the record if it is still at ``etag`` (None: absent); ``ConflictError`` when it moved."""
        ...

    def put_lines(self, period: str, correction: str, data: bytes) -> None:
        """Write a correction's lines once (never overwritten)."""
        ...

    def get_lines(self, period: str, correction: str) -> bytes: ...

    def periods(self) -> list[str]:
        """Every month with a correction record."""
        ...


class Pointers(Protocol):
    def pointer(self, period: str, kind: str) -> tuple[Manifest, str] | None: ...


@dataclass(frozen=True, slots=True)
class PendingCorrection:
    """A recorded correction that a report of a later month is to bill, with its lines."""

    period: str
    id: str
    lines: pd.DataFrame


def billed_ids(manifest: Mapping[str, object]) -> set[tuple[str, str]]:
    """The ``(month, id)`` of every correction a manifest bills (none in manifests written before corrections)."""
    listed = manifest.get("corrections") or []
    assert isinstance(listed, list)  # noqa: S101 - manifests are written by this app
    return {(str(ref["period"]), str(ref["id"])) for ref in listed}


def target_month(reports: Pointers, period: str, before: str | None = None) -> tuple[str, set[tuple[str, str]]]:
    """The first month after ``period`` without a final report, and the corrections finals before it billed.

    With ``before``, the walk stops there: the month returned is then ``before`` only when every
    month between has a final.
    """
    listed: set[tuple[str, str]] = set()
    month = periods.next_month(period)
    while before is None or month < before:
        found = reports.pointer(month, FINAL)
        if found is None:
            return month, listed
        listed |= billed_ids(found[0])
        month = periods.next_month(month)
    return month, listed


def pending(reports: Pointers, store: CorrectionStore, period: str, read: bool = True) -> list[PendingCorrection]:
    """The corrections a report of ``period`` bills: see the module's rule. ``read``: load their lines."""
    due: list[PendingCorrection] = []
    for corrected in sorted(store.periods()):
        if corrected >= period:
            continue
        target, listed = target_month(reports, corrected, before=period)
        if target != period:
            continue
        found = store.record(corrected)
        if found is None:
            continue
        for entry in found[0]["entries"]:
            if (corrected, entry["id"]) in listed:
                continue
            lines = read_lines(store, corrected, entry["id"]) if read else pd.DataFrame()
            due.append(PendingCorrection(corrected, entry["id"], lines))
    return due


def read_lines(store: CorrectionStore, period: str, correction: str) -> pd.DataFrame:
    if not CORRECTION_ID.match(correction):
        raise StorageError("a correction record names a correction that is not one this app writes")
    return pd.read_parquet(io.BytesIO(store.get_lines(period, correction)))


def entries(store: CorrectionStore, period: str) -> Sequence[CorrectionEntry]:
    found = store.record(period)
    return [] if found is None else found[0]["entries"]

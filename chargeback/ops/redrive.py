"""``python -m chargeback redrive``: re-applies dead-lettered events once, after their cause is fixed.

A dead letter's sequence number usually lies *below* its slice's watermark (later good events
were applied), so it cannot go through the watermark. Instead each re-applied event writes, in
the same transaction as its aggregate, a marker row keyed by its sequence number into the slice
it belongs to, and that transaction is conditioned on the slice watermark's ETag (so the live
owner's cached totals are invalidated) and on the marker not existing yet (so the event is
counted once however often, or however concurrently, redrive runs). The dead letter is deleted
afterwards; a crash in between leaves a dead letter whose marker exists, which the next run
reports as already present and deletes. The argument is written out in docs/reliability.md.

No usage event of a day whose buffered calls the LLM logs bill (the day was collected with
``CHARGEBACK_LLM_LOG_SCOPE=all``, or is not collected yet while the setting is ``all``) is applied,
here as in ingestion: a dead letter of that day that parses stays, as ``billed_by_llm_logs``, so no
call is billed by both sources; a redrive applies it once the day is collected with ``streamed``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Protocol, TextIO

from chargeback.adapters.tables import TableDeadLetterStore, TableLedgerStore
from chargeback.app.runtime import Services
from chargeback.domain import keys, periods
from chargeback.domain.errors import ConcurrencyError, InvalidRequestError
from chargeback.domain.events import REASONS, Rejection, parse_event
from chargeback.domain.usage import ZERO
from chargeback.ingestion import llm_logs
from chargeback.ingestion.ingest import BILLED_BY_LLM_LOGS, BILLED_BY_LLM_LOGS_DETAIL
from chargeback.ingestion.ledger import MAX_CONFLICT_RETRIES, DeadLetter, LedgerStore, RowWrite, usage_delta, usage_key
from chargeback.ops import settings_file

DEAD_LETTER_REASONS: tuple[str, ...] = tuple(sorted(REASONS | {BILLED_BY_LLM_LOGS}))
"""Every reason a dead letter can carry: the parser's, and the usage events the LLM logs bill."""
APPLIED = "applied"
ALREADY_PRESENT = "already_present"
STILL_DEAD_LETTERED = "still_dead_lettered"


class RedriveLedgerStore(LedgerStore, Protocol):
    """A ledger store that can hold redrive markers beside a slice's aggregates."""

    def redriven(self, slice_key: str) -> set[int]:
        """Sequence numbers of the dead letters already re-applied into the slice."""
        ...

    def commit_redriven(
        self, slice_key: str, etag: str | None, writes: Sequence[RowWrite], watermark: int, sequence_number: int
    ) -> str:
        """``commit`` plus a marker for ``sequence_number``; ``ConcurrencyError`` if either exists/moved."""
        ...


class RedriveDeadLetters(Protocol):
    """The dead-letter store as redrive uses it: list, rewrite, remove."""

    def find(self, period: str | None = None, reason: str | None = None) -> Iterator[DeadLetter]: ...

    def put(self, letters: Sequence[DeadLetter]) -> None: ...

    def remove(self, letters: Sequence[DeadLetter]) -> None: ...


@dataclass(slots=True)
class RedriveOutcome:
    """What a redrive did; ``examined == applied + already_present + still_dead_lettered``."""

    examined: int = 0
    applied: int = 0
    already_present: int = 0
    still_dead_lettered: int = 0
    reasons_changed: int = 0
    still_failing: dict[str, int] = field(default_factory=dict)

    def add(self, result: str, reason: str | None = None) -> None:
        self.examined += 1
        if result == APPLIED:
            self.applied += 1
        elif result == ALREADY_PRESENT:
            self.already_present += 1
        else:
            self.still_dead_lettered += 1
            if reason is not None:
                self.still_failing[reason] = self.still_failing.get(reason, 0) + 1


class Redriver:
    """Re-applies dead letters through the parser into the ledger's slices, each exactly once."""

    def __init__(
        self,
        store: RedriveLedgerStore,
        dead_letters: RedriveDeadLetters,
        *,
        dry_run: bool = False,
        billed_by_llm_logs: Callable[[date], bool] = lambda _day: False,
    ) -> None:
        self._store = store
        self._dead_letters = dead_letters
        self._dry_run = dry_run
        self._billed_by_llm_logs = billed_by_llm_logs
        """Whether the LLM logs bill the buffered calls of a day: no event of that day is applied."""

    def run(
        self,
        *,
        period: str | None = None,
        reason: str | None = None,
        progress: Callable[[RedriveOutcome], None] | None = None,
    ) -> RedriveOutcome:
        """Redrive every dead letter of ``period`` (enqueued month or day) and ``reason`` (or all)."""
        outcome = RedriveOutcome()
        for letter in self._dead_letters.find(period, reason):
            result, new_reason = self.redrive(letter)
            outcome.add(result, new_reason)
            if new_reason is not None and new_reason != letter.reason:
                outcome.reasons_changed += 1
            if progress is not None:
                progress(outcome)
        return outcome

    def redrive(self, letter: DeadLetter) -> tuple[str, str | None]:
        """Redrive one dead letter; return what happened and, if it still fails, its reason now."""
        enqueued = _utc(letter.enqueued_time)
        parsed = parse_event(letter.body, enqueued)
        if isinstance(parsed, Rejection):
            return self._still_dead_lettered(letter, parsed.reason, parsed.detail)
        key = usage_key(parsed)
        if self._billed_by_llm_logs(key.day):  # a dead letter is a buffered call: the LLM logs bill it
            return self._still_dead_lettered(letter, BILLED_BY_LLM_LOGS, BILLED_BY_LLM_LOGS_DETAIL)
        slice_key = keys.slice_key(key.day.strftime("%Y-%m"), letter.hub, letter.partition_id)
        row_key = keys.aggregate_row_key(key)
        for _attempt in range(MAX_CONFLICT_RETRIES):
            # The watermark (and its ETag) is read first: a marker written after this read moved it.
            snapshot = self._store.read_slice(slice_key, [key.day.isoformat()])
            if letter.sequence_number in self._store.redriven(slice_key):
                result = ALREADY_PRESENT
                break
            if self._dry_run:
                return APPLIED, None
            write = RowWrite(row_key, key, snapshot.rows.get(row_key, ZERO) + usage_delta(parsed))
            try:
                self._store.commit_redriven(
                    slice_key, snapshot.etag, [write], snapshot.watermark, letter.sequence_number
                )
            except ConcurrencyError:
                continue
            result = APPLIED
            break
        else:
            raise ConcurrencyError(f"slice {slice_key} kept moving after {MAX_CONFLICT_RETRIES} re-reads")
        if not self._dry_run:
            self._dead_letters.remove([letter])
        return result, None

    def _still_dead_lettered(self, letter: DeadLetter, reason: str, detail: str) -> tuple[str, str | None]:
        """Keep ``letter``, its reason brought up to date (unless this is a dry run)."""
        if (reason, detail) != (letter.reason, letter.detail) and not self._dry_run:
            self._dead_letters.put([dataclasses.replace(letter, reason=reason, detail=detail)])
        return STILL_DEAD_LETTERED, reason


class LlmLogBilling:
    """Whether the LLM logs bill a day's buffered calls, from its marker, each month's markers read once."""

    def __init__(self, store: llm_logs.LlmLogStore, setting: str) -> None:
        self._store = store
        self._setting = setting
        self._markers: dict[str, dict[date, llm_logs.DayMarker]] = {}

    def __call__(self, day: date) -> bool:
        month = periods.month_of(day)
        if month not in self._markers:
            self._markers[month] = self._store.markers(month)
        return llm_logs.bills_buffered_calls(self._markers[month].get(day), self._setting)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# Command line ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reason",
        choices=DEAD_LETTER_REASONS,
        metavar="REASON",
        help="only dead letters set aside for this reason: " + ", ".join(DEAD_LETTER_REASONS),
    )
    parser.add_argument(
        "--period", type=_period, help="only dead letters enqueued in this month (YYYY-MM) or day (YYYY-MM-DD)"
    )
    parser.add_argument("--dry-run", action="store_true", help="report what would happen; change nothing")


def _period(text: str) -> str:
    try:
        return periods.parse_period(text)
    except InvalidRequestError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    """Redrive from the ChargebackStorage settings; exit 1 when something is still dead-lettered."""
    services = Services(settings_file.settings(args))
    names = services.settings.storage
    if not services.events_billed:
        sys.stderr.write(f"redrive: {BILLED_BY_LLM_LOGS_DETAIL}: dead letters of the days it bills stay\n")
    redriver = Redriver(
        TableLedgerStore(services.storage.table(names.ledger_table)),
        TableDeadLetterStore(
            services.storage.table(names.dead_letter_table), services.storage.container(names.dead_letter_container)
        ),
        dry_run=args.dry_run,
        billed_by_llm_logs=LlmLogBilling(services.llm_log_store, services.settings.llm_log_scope),
    )
    outcome = redriver.run(period=args.period, reason=args.reason, progress=_Progress(sys.stderr))
    report(outcome, sys.stdout, dry_run=args.dry_run)
    return 1 if outcome.still_dead_lettered else 0


class _Progress:
    """Writes a progress line every ``every`` dead letters."""

    def __init__(self, stream: TextIO, every: int = 100) -> None:
        self._stream = stream
        self._every = every

    def __call__(self, outcome: RedriveOutcome) -> None:
        if outcome.examined % self._every == 0:
            self._stream.write(
                f"redrive: {outcome.examined} examined, {outcome.applied} applied, "
                f"{outcome.already_present} already present, {outcome.still_dead_lettered} still dead-lettered\n"
            )
            self._stream.flush()


def report(outcome: RedriveOutcome, stream: TextIO, *, dry_run: bool = False) -> None:
    verb = "would apply" if dry_run else "applied"
    lines: Iterable[str] = [
        f"examined: {outcome.examined}",
        f"{verb}: {outcome.applied}",
        f"already present: {outcome.already_present}",
        f"still dead-lettered: {outcome.still_dead_lettered}",
        *(f"  {reason}: {count}" for reason, count in sorted(outcome.still_failing.items())),
    ]
    stream.write("\n".join(lines) + "\n")

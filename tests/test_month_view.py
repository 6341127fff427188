"""The compact month view reads a month exactly as the ledger holds it, from compacted days plus what changed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import orjson
import pandas as pd
import pytest

from chargeback.adapters.tables import TableDeadLetterStore, TableLedgerStore
from chargeback.app import runtime
from chargeback.domain import events, keys
from chargeback.domain.errors import StorageError
from chargeback.domain.usage import Counters, UsageKey
from chargeback.ingestion.ledger import DeadLetter
from chargeback.ingestion.llm_logs import DayMarker, RowChange
from chargeback.ops.redrive import APPLIED, Redriver
from chargeback.reports.month_view import CompactDays, LedgerDays, LedgerEntry, MonthView, SliceState, usage_of
from devtools.hostshape import HostEvent
from tests.functions import deliver

pytestmark = pytest.mark.azurite

PERIOD = "2026-10"
AFTER_MONTH = datetime(2026, 11, 3, 12, tzinfo=UTC)
MID_MONTH = datetime(2026, 10, 5, 12, tzinfo=UTC)


def event(subscription: str, tokens: int, when: datetime, *, model: str = "gpt-4o") -> bytes:
    return orjson.dumps(
        {
            "schema": "chargeback.usage/v1",
            "subscriptionId": subscription,
            "eventTime": when.isoformat(),
            "model": model,
            "deployment": model,
            "operationId": "ChatCompletions_Create",
            "usage": {"prompt_tokens": tokens, "completion_tokens": 1},
        }
    )


class Sequences:
    """Hands out the next sequence number of each partition, as Event Hubs would."""

    def __init__(self) -> None:
        self.next: dict[str, int] = {}

    def send(self, bodies: list[bytes], when: datetime, partition: str) -> None:
        first = self.next.get(partition, 0)
        deliver([HostEvent(body, first + i, when) for i, body in enumerate(bodies)], partition_id=partition)
        self.next[partition] = first + len(bodies)


@pytest.fixture(name="sequences")
def fixture_sequences(app_settings: dict[str, str]) -> Sequences:
    return Sequences()


@pytest.fixture(name="october")
def fixture_october(sequences: Sequences) -> None:
    """Three days of October over two partitions, two subscriptions and two models."""
    for day in (1, 2, 3):
        when = datetime(2026, 10, day, 10, tzinfo=UTC)
        for partition in ("0", "1"):
            sequences.send(
                [event(f"sub-{n}", 100 * day + n, when, model=model) for n in range(2) for model in ("gpt-4o", "o3")],
                when,
                partition,
            )


def view() -> MonthView:
    return runtime.services().month_view


def ledger_usage(period: str = PERIOD) -> pd.DataFrame:
    """The month as the ledger holds it, read row by row: what the view must equal."""
    rows = runtime.services().ledger.period_rows(period)
    frame = pd.DataFrame(
        [
            (
                row.key.day.isoformat(),
                *(getattr(row.key, n) for n in ("subscription_id", "model", "deployment")),
                *(row.counters.requests, row.counters.total_tokens, row.counters.llm_log_tokens),
            )
            for row in rows
        ],
        columns=["day", "subscription_id", "model", "deployment", "requests", "total_tokens", "llm_log_tokens"],
    )
    return comparable(frame.groupby(["day", "subscription_id", "model", "deployment"]).sum().reset_index())


def comparable(usage: pd.DataFrame) -> pd.DataFrame:
    out = usage.loc[:, ["day", "subscription_id", "model", "deployment", "requests", "total_tokens", "llm_log_tokens"]]
    out = out.assign(
        day=pd.to_datetime(out["day"]).dt.strftime("%Y-%m-%d"),
        **{name: out[name].astype(str) for name in ("subscription_id", "model", "deployment")},
    )
    return out.sort_values(["day", "subscription_id", "model", "deployment"], ignore_index=True)


def viewed(now: datetime = AFTER_MONTH) -> pd.DataFrame:
    return comparable(view().read(PERIOD, now).usage)


def compacted_file(day: date) -> bytes | None:
    return view().compact.get(day)


def test_a_month_read_through_compacted_days_equals_the_ledger_row_by_row(october: None) -> None:
    assert viewed().equals(ledger_usage())
    assert all(compacted_file(date(2026, 10, day)) is not None for day in (1, 2, 3))


def test_only_settled_days_are_compacted_and_the_rest_are_read_live(october: None) -> None:
    # The 2nd ended, but less than the lag ago: events may still be on their way.
    now = datetime(2026, 10, 3, tzinfo=UTC) + timedelta(hours=view().lag_hours) - timedelta(minutes=1)
    read = view().read(PERIOD, now)
    assert [(r["day"], r["as_of"] is not None) for r in read.records] == [
        ("2026-10-01", True),
        ("2026-10-02", False),
        ("2026-10-03", False),
    ]
    assert compacted_file(date(2026, 10, 2)) is None
    assert comparable(read.usage).equals(ledger_usage())


def test_a_compacted_day_is_written_once_and_read_again_as_it_is(october: None) -> None:
    viewed()
    first = compacted_file(date(2026, 10, 2))
    viewed()
    assert compacted_file(date(2026, 10, 2)) == first


def test_late_events_after_compaction_are_folded_in(october: None, sequences: Sequences) -> None:
    viewed()
    late = datetime(2026, 10, 2, 23, tzinfo=UTC)
    sequences.send([event("sub-0", 5_000, late), event("sub-9", 7, late)], late, "1")
    after = viewed()
    assert after.equals(ledger_usage())
    assert after.loc[after["subscription_id"] == "sub-9", "total_tokens"].tolist() == [8]


def test_a_slice_first_written_after_compaction_is_folded_in(october: None, sequences: Sequences) -> None:
    viewed()
    late = datetime(2026, 10, 1, 23, tzinfo=UTC)
    sequences.send([event("sub-1", 1_000, late)], late, "7")
    assert viewed().equals(ledger_usage())


def test_a_dead_letter_redriven_after_compaction_is_folded_in(october: None) -> None:
    viewed()
    body = orjson.dumps({"SubscriptionId": "sub-redriven", "TotalTokens": "77"})
    enqueued = datetime(2026, 10, 2, 9, tzinfo=UTC)
    letter = DeadLetter("aoai-usage", "0", 1, enqueued, body, events.MISSING_TOKENS, "rejected by an older parser")
    services = runtime.services()
    names = services.settings.storage
    dead_letters = TableDeadLetterStore(
        services.storage.table(names.dead_letter_table), services.storage.container(names.dead_letter_container)
    )
    dead_letters.put([letter])
    ledger_store = TableLedgerStore(services.storage.table(names.ledger_table))
    assert Redriver(ledger_store, dead_letters).redrive(letter) == (APPLIED, None)
    after = viewed()
    assert after.equals(ledger_usage())
    assert after.loc[after["subscription_id"] == "sub-redriven", "total_tokens"].tolist() == [77]


class Counting:
    """The ledger's days, counting what each read asked for."""

    def __init__(self, inner: LedgerDays) -> None:
        self.inner = inner
        self.reads: list[tuple[str, str | None, int | None]] = []

    def slice_states(self, month: str) -> dict[str, SliceState]:
        return self.inner.slice_states(month)

    def day_entries(
        self, day: date, *, slice_key: str | None = None, after: int | None = None
    ) -> Iterator[LedgerEntry]:
        self.reads.append((day.isoformat(), slice_key, after))
        return self.inner.day_entries(day, slice_key=slice_key, after=after)

    def llm_marker(self, day: date) -> str | None:
        return self.inner.llm_marker(day)


def test_a_compacted_day_nothing_wrote_to_since_is_not_read_from_the_table_again(october: None) -> None:
    viewed()
    counting = Counting(view().ledger)
    MonthView(counting, view().compact, view().lag_hours).read(PERIOD, AFTER_MONTH)
    assert counting.reads == []


def test_after_a_late_event_only_its_slices_rows_past_the_fence_are_read(october: None, sequences: Sequences) -> None:
    viewed()
    late = datetime(2026, 10, 2, 23, tzinfo=UTC)
    sequences.send([event("sub-0", 5, late)], late, "1")
    counting = Counting(view().ledger)
    read = MonthView(counting, view().compact, view().lag_hours).read(PERIOD, AFTER_MONTH)
    slice_one = keys.slice_key(PERIOD, "aoai-usage", "1")
    fenced = 3 * 4 - 1  # partition 1's last sequence number when the days were compacted
    assert counting.reads == [(f"2026-10-{day:02d}", slice_one, fenced) for day in range(1, 32)]
    assert len(read.changes) == 1
    assert comparable(read.usage).equals(ledger_usage())


def replace_llm_day(day: date, rows: dict[str, int]) -> None:
    """Set the day's LLM-log usage to ``rows`` (subscription → tokens), deleting the rows no longer there."""
    store = runtime.services().llm_log_store
    state = store.read_day(day)
    changes = []
    wanted = {}
    for subscription, tokens in rows.items():
        key = UsageKey(day, subscription, "gpt-4o", "gpt-4o", "ChatCompletions_Create")
        wanted[keys.llm_row_key(key)] = RowChange(
            keys.llm_row_key(key), key, Counters(requests=1, total_tokens=tokens, llm_log_tokens=tokens)
        )
    changes = list(wanted.values())
    changes += [RowChange(row, key, None) for row, (key, _) in state.rows.items() if row not in wanted]
    store.replace(day, state.etag, changes, DayMarker(settled=True, tokens=sum(rows.values())))


def test_llm_log_rows_deleted_after_compaction_leave_the_view(october: None) -> None:
    day = date(2026, 10, 2)
    replace_llm_day(day, {"sub-0": 300, "sub-5": 40})
    before = viewed()
    assert before.loc[before["subscription_id"] == "sub-5", "llm_log_tokens"].tolist() == [40]
    replace_llm_day(day, {"sub-0": 310})
    after = viewed()
    assert after.equals(ledger_usage())
    assert "sub-5" not in set(after["subscription_id"])


def test_two_readers_compacting_the_same_days_at_once_keep_one_file_and_agree(october: None) -> None:
    results: list[pd.DataFrame] = []
    barrier = threading.Barrier(2)

    def read() -> None:
        barrier.wait()
        results.append(viewed())

    threads = [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2
    assert results[0].equals(results[1])
    assert results[0].equals(ledger_usage())


def test_events_arriving_while_days_are_compacted_are_all_in_the_next_read(october: None, sequences: Sequences) -> None:
    stop = threading.Event()

    def ingest() -> None:
        for n in range(30):
            when = datetime(2026, 10, 1 + n % 3, 22, tzinfo=UTC)
            sequences.send([event(f"late-{n % 4}", n, when)], when, "3")
        stop.set()

    writer = threading.Thread(target=ingest)
    writer.start()
    while not stop.is_set():
        viewed()
    writer.join()
    assert viewed().equals(ledger_usage())


class FailingOnce:
    """Compacted days whose store refuses the write of one day once, as storage failing between two files."""

    def __init__(self, inner: CompactDays, day: date) -> None:
        self.inner, self.day, self.failed = inner, day, False

    def get(self, day: date) -> bytes | None:
        return self.inner.get(day)

    def create(self, day: date, data: bytes) -> bool:
        if day == self.day and not self.failed:
            self.failed = True
            raise StorageError("injected: storage refused the write")
        return self.inner.create(day, data)


def test_storage_failing_between_two_compacted_days_loses_nothing(october: None) -> None:
    failing = FailingOnce(view().compact, date(2026, 10, 2))
    flaky = MonthView(view().ledger, failing, view().lag_hours)
    with pytest.raises(StorageError):
        flaky.read(PERIOD, AFTER_MONTH)
    assert compacted_file(date(2026, 10, 1)) is not None
    assert compacted_file(date(2026, 10, 2)) is None
    assert comparable(flaky.read(PERIOD, AFTER_MONTH).usage).equals(ledger_usage())


def test_an_empty_month_reads_as_an_empty_usage_frame(app_settings: dict[str, str]) -> None:
    read = view().read(PERIOD, AFTER_MONTH)
    assert read.usage.empty
    assert len(read.records) == 31


def test_a_day_folds_slices_and_operations_into_one_usage_row(october: None) -> None:
    entries = view().day(date(2026, 10, 1), AFTER_MONTH, view().ledger.slice_states(PERIOD)).entries
    usage = usage_of(entries)
    assert len(entries) == 2 * len(usage)  # the same keys in partitions 0 and 1
    assert int(usage["total_tokens"].sum()) == int(entries["total_tokens"].sum())

"""Chunks cut by row with per-row progress: fewer transactions, and still every event counted once."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargeback.domain import keys
from chargeback.domain.errors import StorageError, TransientStorageError
from chargeback.domain.usage import Counters, UsageKey
from chargeback.ingestion import ledger as ledger_module
from chargeback.ingestion.ledger import MAX_ROWS_PER_COMMIT, Ledger, RowWrite, SliceSnapshot
from devtools.memory import InMemoryDeadLetterStore, InMemoryLedgerStore
from tests.test_ledger import DAYS, SUBSCRIPTIONS, batch, expected_fold, ledger_state, totals, usage_body


@dataclass
class Recording:
    """A store that remembers every commit: which rows, which watermark."""

    inner: InMemoryLedgerStore = field(default_factory=InMemoryLedgerStore)
    commits: list[tuple[list[str], int]] = field(default_factory=list)

    def read_slice(self, slice_key: str, days: Collection[str]) -> SliceSnapshot:
        return self.inner.read_slice(slice_key, days)

    def commit(self, slice_key: str, etag: str | None, writes: Sequence[RowWrite], watermark: int) -> str:
        self.commits.append(([write.row_key for write in writes], watermark))
        return self.inner.commit(slice_key, etag, writes, watermark)

    def period_rows(self, period: str) -> Iterator[tuple[UsageKey, Counters]]:
        return self.inner.period_rows(period)


def round_robin(subscriptions: int, events: int) -> list[tuple[int, bytes]]:
    return [(n, usage_body(f"s{n % subscriptions:03d}", 1)) for n in range(events)]


def test_rows_repeating_across_a_batch_are_written_once_each() -> None:
    """150 rows touched round-robin by 1,000 events: two transactions, not one per 99 events."""
    store = Recording()
    outcome = Ledger(store, InMemoryDeadLetterStore()).apply(batch("0", round_robin(150, 1000)))
    written = [row for rows, _ in store.commits for row in rows]
    assert outcome.transactions == len(store.commits) == 2
    assert sorted(written) == sorted(set(written)) and len(written) == 150
    assert totals(Ledger(store, InMemoryDeadLetterStore()).period_rows("2026-11")) == {
        f"s{n:03d}": sum(2 for e in range(1000) if e % 150 == n) for n in range(150)
    }


def test_only_the_last_chunk_moves_the_watermark_and_every_row_records_its_last_event() -> None:
    store = Recording()
    Ledger(store, InMemoryDeadLetterStore()).apply(batch("0", round_robin(150, 1000)))
    assert [watermark for _, watermark in store.commits] == [-1, 999]
    progress = store.inner.progress[next(iter(store.inner.progress))]
    assert sorted(progress.values()) == list(range(850, 1000))


@pytest.mark.parametrize(("subscriptions", "days"), [(40, 1), (250, 1), (250, 3), (1000, 2)])
def test_transactions_never_pass_one_per_99_distinct_rows_plus_one_per_slice(subscriptions: int, days: int) -> None:
    late = [date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2)][-days:]
    events = [(n, usage_body(f"s{n % subscriptions}", 1, day=late[n % days])) for n in range(3000)]
    store = Recording()
    outcome = Ledger(store, InMemoryDeadLetterStore()).apply(batch("0", events))
    per_slice: dict[str, set[tuple[str, date]]] = {}
    for n, _ in events:
        per_slice.setdefault(late[n % days].strftime("%Y-%m"), set()).add((f"s{n % subscriptions}", late[n % days]))
    distinct = sum(len(rows) for rows in per_slice.values())
    assert outcome.transactions <= -(-distinct // MAX_ROWS_PER_COMMIT) + outcome.slices
    assert outcome.transactions == sum(-(-len(rows) // MAX_ROWS_PER_COMMIT) for rows in per_slice.values())


@pytest.mark.parametrize("committed", [0, 1, 2])
def test_a_crash_between_row_chunks_heals_even_when_the_redelivery_is_cut_differently(committed: int) -> None:
    """The host may redeliver from its checkpoint in batches of another size; progress per row still holds."""
    store = InMemoryLedgerStore()
    events = round_robin(250, 1200)  # three chunks of rows
    failing = FailOn(store, fail_at={committed + 1})
    with pytest.raises(TransientStorageError):
        Ledger(failing, InMemoryDeadLetterStore()).apply(batch("0", events))
    ledger = Ledger(store, InMemoryDeadLetterStore())
    applied = sum(ledger.apply(batch("0", events[start : start + 500])).applied for start in range(0, 1200, 500))
    done = {row for rows in failing.committed_rows for row in rows}
    key = UsageKey(date(2026, 11, 2), "", "gpt-4o", "d", "op")
    already = sum(
        1
        for n, _ in events
        if keys.aggregate_row_key(dataclasses.replace(key, subscription_id=f"s{n % 250:03d}")) in done
    )
    assert len(done) == committed * MAX_ROWS_PER_COMMIT
    assert applied == 1200 - already
    assert totals(ledger.period_rows("2026-11")) == {
        f"s{n:03d}": sum(2 for e in range(1200) if e % 250 == n) for n in range(250)
    }


def test_a_redrive_write_keeps_the_rows_progress() -> None:
    """Redrive writes totals without progress; the row's progress must survive it."""
    store = InMemoryLedgerStore()
    ledger = Ledger(store, InMemoryDeadLetterStore())
    ledger.apply(batch("0", round_robin(1, 5)))
    slice_key = next(iter(store.slices))
    [(row_key, (key, counters))] = store.slices[slice_key].items()
    etag = store.watermarks[slice_key][1]
    store.commit(slice_key, etag, [RowWrite(row_key, key, counters + Counters(requests=1))], 4)
    assert store.read_slice(slice_key, ["2026-11-02"]).progress == {row_key: 4}


# A property: crashes before and after commits, races between chunks, redeliveries from the
# checkpoint in batches of any size — every event is counted exactly once.


class FailOn:
    """Wraps a store: commit number n in ``fail_at`` fails before reaching storage; in ``lost_at``
    it lands but its answer is lost; in ``race_at`` another owner delivers first."""

    def __init__(
        self,
        inner: InMemoryLedgerStore,
        fail_at: Collection[int] = (),
        lost_at: Collection[int] = (),
        race_at: Collection[int] = (),
        race: Callable[[], None] = lambda: None,
    ) -> None:
        self.inner, self.fail_at, self.lost_at, self.race_at, self.race = inner, fail_at, lost_at, race_at, race
        self.number = 0
        self.committed_rows: list[list[str]] = []

    def read_slice(self, slice_key: str, days: Collection[str]) -> SliceSnapshot:
        return self.inner.read_slice(slice_key, days)

    def commit(self, slice_key: str, etag: str | None, writes: Sequence[RowWrite], watermark: int) -> str:
        self.number += 1
        if self.number in self.race_at:
            self.race()
        if self.number in self.fail_at:
            raise TransientStorageError("storage unreachable")
        new_etag = self.inner.commit(slice_key, etag, writes, watermark)
        self.committed_rows.append([write.row_key for write in writes])
        if self.number in self.lost_at:
            raise TransientStorageError("answer lost")
        return new_etag

    def period_rows(self, period: str) -> Iterator[tuple[UsageKey, Counters]]:
        return self.inner.period_rows(period)


@st.composite
def streams(draw: st.DrawFn) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for partition in ["0", "1"][: draw(st.integers(1, 2))]:
        out[partition] = [
            usage_body(
                draw(st.sampled_from(SUBSCRIPTIONS)), draw(st.integers(0, 1000)), day=draw(st.sampled_from(DAYS))
            )
            if draw(st.integers(0, 9))
            else b"{broken"
            for _ in range(draw(st.integers(1, 30)))
        ]
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(streams(), st.data())
def test_crashes_lost_answers_and_races_between_row_chunks_count_each_event_once(
    delivered: dict[str, list[bytes]], data: st.DataObject
) -> None:
    with pytest.MonkeyPatch.context() as small:
        small.setattr(ledger_module, "MAX_ROWS_PER_COMMIT", 2)  # many chunks from a few rows
        store = InMemoryLedgerStore()
        checkpoint = dict.fromkeys(delivered, 0)
        rival = Ledger(store, InMemoryDeadLetterStore(), max_cached_days=1)

        def deliver_from_checkpoint(partition: str, owner: Ledger) -> None:
            start = data.draw(st.integers(0, checkpoint[partition]), label="start")
            end = data.draw(st.integers(start + 1, len(delivered[partition])), label="end")
            owner.apply(batch(partition, list(enumerate(delivered[partition]))[start:end]))
            checkpoint[partition] = max(checkpoint[partition], end)

        for _ in range(data.draw(st.integers(1, 12), label="invocations")):
            partition = data.draw(st.sampled_from(sorted(delivered)), label="partition")
            if checkpoint[partition] == len(delivered[partition]):
                continue
            faults = st.sets(st.integers(1, 6), max_size=2)

            def race(partition: str = partition) -> None:
                deliver_from_checkpoint(partition, rival)

            flaky = FailOn(
                store,
                fail_at=data.draw(faults, label="fail"),
                lost_at=data.draw(faults, label="lost"),
                race_at=data.draw(faults, label="race"),
                race=race,
            )
            # A failed invocation is not checkpointed: the next delivery starts at or before it.
            with contextlib.suppress(StorageError):
                deliver_from_checkpoint(partition, Ledger(flaky, InMemoryDeadLetterStore(), max_cached_days=1))
        owner = Ledger(store, InMemoryDeadLetterStore())
        for partition, bodies in delivered.items():  # finally, the host catches up from each checkpoint
            owner.apply(batch(partition, list(enumerate(bodies))[checkpoint[partition] :]))
            owner.apply(batch(partition, list(enumerate(bodies))))  # and a full redelivery changes nothing
        assert ledger_state(owner) == expected_fold(delivered)


def test_row_keys_used_for_progress_are_the_aggregate_row_keys() -> None:
    store = InMemoryLedgerStore()
    Ledger(store, InMemoryDeadLetterStore()).apply(batch("0", [(7, usage_body("a", 1))]))
    key = UsageKey(date(2026, 11, 2), "a", "gpt-4o", "d", "op")
    assert store.progress[keys.slice_key("2026-11", "hub", "0")] == {keys.aggregate_row_key(key): 7}


def test_a_redrive_between_two_chunks_of_a_live_batch_is_kept_and_the_batch_counted_once() -> None:
    store = InMemoryLedgerStore()
    events = round_robin(150, 600)  # two chunks of rows
    with pytest.raises(TransientStorageError):
        Ledger(FailOn(store, fail_at={2}), InMemoryDeadLetterStore()).apply(batch("0", events))
    slice_key = next(iter(store.slices))
    snapshot = store.read_slice(slice_key, ["2026-11-02"])
    row_key = next(iter(snapshot.progress))  # a row the first chunk applied
    key = store.slices[slice_key][row_key][0]
    redriven = snapshot.rows[row_key] + Counters(requests=1, total_tokens=1000)
    store.commit(slice_key, snapshot.etag, [RowWrite(row_key, key, redriven)], snapshot.watermark)
    Ledger(store, InMemoryDeadLetterStore()).apply(batch("0", events))
    expected = {f"s{n:03d}": sum(2 for e in range(600) if e % 150 == n) for n in range(150)}
    expected[key.subscription_id] += 1000
    assert totals(Ledger(store, InMemoryDeadLetterStore()).period_rows("2026-11")) == expected

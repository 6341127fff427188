"""The ledger counts every distinct event exactly once, however batches are redelivered."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargeback.domain.errors import ConcurrencyError, TransientStorageError
from chargeback.domain.usage import ZERO, Counters, UsageKey, UsageRow
from chargeback.ingestion.ledger import MAX_ROWS_PER_COMMIT, Batch, Ledger, LedgerStore, ReceivedEvent, RowWrite
from devtools.memory import InMemoryDeadLetterStore, InMemoryLedgerStore

ENQUEUED = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
"""Late events within a week of their enqueued time keep their own time; the tests stay near it."""


def usage_body(subscription: str, tokens: int, *, day: date = date(2026, 11, 2), model: str = "gpt-4o") -> bytes:
    return orjson.dumps(
        {
            "schema": "chargeback.usage/v1",
            "subscriptionId": subscription,
            "eventTime": f"{day.isoformat()}T05:00:00Z",
            "model": model,
            "deployment": "d",
            "operationId": "op",
            "usage": {"prompt_tokens": tokens, "completion_tokens": 1},
        }
    )


def batch(partition: str, bodies: Sequence[tuple[int, bytes]]) -> Batch:
    return Batch(
        hub="hub",
        partition_id=partition,
        events=[ReceivedEvent(body, sequence, ENQUEUED) for sequence, body in bodies],
    )


def totals(rows: list[UsageRow]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        out[row.key.subscription_id] = out.get(row.key.subscription_id, 0) + row.counters.total_tokens
    return out


@pytest.fixture(name="store")
def fixture_store() -> InMemoryLedgerStore:
    return InMemoryLedgerStore()


@pytest.fixture(name="ledger")
def fixture_ledger(store: InMemoryLedgerStore) -> Ledger:
    return Ledger(store, InMemoryDeadLetterStore())


def test_a_batch_is_folded_into_one_aggregate_per_key(ledger: Ledger) -> None:
    outcome = ledger.apply(batch("0", [(1, usage_body("a", 10)), (2, usage_body("a", 20)), (3, usage_body("b", 5))]))
    assert (outcome.applied, outcome.skipped, outcome.dead_lettered) == (3, 0, 0)
    rows = ledger.period_rows("2026-11")
    assert len(rows) == 2
    assert rows[0].counters == Counters(requests=2, prompt_tokens=30, completion_tokens=2, total_tokens=32)


def test_a_redelivered_batch_changes_nothing(ledger: Ledger) -> None:
    events = [(1, usage_body("a", 10)), (2, usage_body("a", 20))]
    ledger.apply(batch("0", events))
    again = ledger.apply(batch("0", events))
    assert (again.applied, again.skipped, again.transactions) == (0, 2, 0)
    assert totals(ledger.period_rows("2026-11")) == {"a": 32}


def test_a_batch_overlapping_an_applied_one_applies_only_the_new_events(ledger: Ledger) -> None:
    ledger.apply(batch("0", [(1, usage_body("a", 10)), (2, usage_body("a", 20))]))
    outcome = ledger.apply(batch("0", [(2, usage_body("a", 20)), (3, usage_body("a", 40))]))
    assert (outcome.applied, outcome.skipped) == (1, 1)
    assert totals(ledger.period_rows("2026-11")) == {"a": 73}


def test_partitions_have_independent_watermarks(ledger: Ledger) -> None:
    ledger.apply(batch("0", [(5, usage_body("a", 10))]))
    outcome = ledger.apply(batch("1", [(1, usage_body("a", 10))]))
    assert outcome.applied == 1
    assert totals(ledger.period_rows("2026-11")) == {"a": 22}


def test_a_late_event_for_last_month_is_counted_once_in_its_own_month(ledger: Ledger) -> None:
    late = usage_body("a", 7, day=date(2026, 10, 31))
    ledger.apply(batch("0", [(1, usage_body("a", 10)), (2, late)]))
    ledger.apply(batch("0", [(1, usage_body("a", 10)), (2, late)]))
    assert totals(ledger.period_rows("2026-10")) == {"a": 8}
    assert totals(ledger.period_rows("2026-11")) == {"a": 11}


def test_a_day_period_reads_only_that_day(ledger: Ledger) -> None:
    ledger.apply(batch("0", [(1, usage_body("a", 10, day=date(2026, 11, 1))), (2, usage_body("a", 5))]))
    assert totals(ledger.period_rows("2026-11-01")) == {"a": 11}
    assert totals(ledger.period_rows("2026-11-02")) == {"a": 6}


def test_steady_state_costs_one_transaction_per_slice_and_no_reads(ledger: Ledger) -> None:
    ledger.apply(batch("0", [(1, usage_body("a", 1))]))
    outcome = ledger.apply(batch("0", [(2, usage_body("a", 1)), (3, usage_body("b", 1))]))
    assert (outcome.transactions, outcome.reads) == (1, 0)


def test_a_part_touching_more_than_a_transaction_holds_is_committed_in_chunks(
    ledger: Ledger, store: InMemoryLedgerStore
) -> None:
    subscriptions = MAX_ROWS_PER_COMMIT * 2 + 10
    outcome = ledger.apply(batch("0", [(i, usage_body(f"s{i}", 1)) for i in range(subscriptions)]))
    assert outcome.transactions == 3
    assert len(ledger.period_rows("2026-11")) == subscriptions
    assert store.watermarks[next(iter(store.watermarks))][0] == subscriptions - 1


class FailingAfter:
    """A store that lets ``commits`` commits through, then fails like an unreachable service."""

    def __init__(self, inner: InMemoryLedgerStore, commits: int) -> None:
        self.inner, self.remaining = inner, commits

    def read_slice(self, slice_key: str, days: object) -> object:
        return self.inner.read_slice(slice_key, days)  # type: ignore[arg-type]

    def commit(self, slice_key: str, etag: str | None, writes: Sequence[RowWrite], watermark: int) -> str:
        if self.remaining == 0:
            raise TransientStorageError("storage unreachable")
        self.remaining -= 1
        return self.inner.commit(slice_key, etag, writes, watermark)

    def period_rows(self, period: str) -> object:
        return self.inner.period_rows(period)


def test_a_crash_between_chunks_heals_when_the_host_retries_the_batch(store: InMemoryLedgerStore) -> None:
    events = [(i, usage_body(f"s{i}", 1)) for i in range(250)]
    failing: LedgerStore = FailingAfter(store, commits=1)  # type: ignore[assignment]
    with pytest.raises(TransientStorageError):
        Ledger(failing, InMemoryDeadLetterStore()).apply(batch("0", events))
    retry = Ledger(store, InMemoryDeadLetterStore()).apply(batch("0", events))
    assert (retry.applied, retry.skipped) == (250 - MAX_ROWS_PER_COMMIT, MAX_ROWS_PER_COMMIT)
    assert sum(totals(Ledger(store, InMemoryDeadLetterStore()).period_rows("2026-11")).values()) == 500


def test_the_same_ledger_heals_after_a_failure_without_a_restart(store: InMemoryLedgerStore) -> None:
    failing = FailingAfter(store, commits=0)
    ledger = Ledger(failing, InMemoryDeadLetterStore())  # type: ignore[arg-type]
    events = [(1, usage_body("a", 1))]
    with pytest.raises(TransientStorageError):
        ledger.apply(batch("0", events))
    failing.remaining = 10
    assert ledger.apply(batch("0", events)).applied == 1
    assert totals(ledger.period_rows("2026-11")) == {"a": 2}


def test_racing_owners_with_a_stale_view_count_each_event_once(store: InMemoryLedgerStore) -> None:
    first, second = Ledger(store, InMemoryDeadLetterStore()), Ledger(store, InMemoryDeadLetterStore())
    first.apply(batch("0", [(1, usage_body("a", 1))]))
    second.apply(batch("0", [(1, usage_body("a", 1))]))  # both now cache the slice
    first.apply(batch("0", [(2, usage_body("a", 10)), (3, usage_body("a", 100))]))
    outcome = second.apply(
        batch("0", [(2, usage_body("a", 10)), (3, usage_body("a", 100)), (4, usage_body("a", 1000))])
    )
    assert (outcome.conflicts, outcome.applied, outcome.skipped) == (1, 1, 2)
    assert totals(first.period_rows("2026-11")) == {"a": 1 + 10 + 100 + 1000 + 4}


def test_a_slice_that_never_stops_moving_hands_the_batch_back_to_the_host(store: InMemoryLedgerStore) -> None:
    class AlwaysMoved(InMemoryLedgerStore):
        def commit(self, slice_key: str, etag: str | None, writes: Sequence[RowWrite], watermark: int) -> str:
            raise ConcurrencyError("moved")

    with pytest.raises(ConcurrencyError):
        Ledger(AlwaysMoved(), InMemoryDeadLetterStore()).apply(batch("0", [(1, usage_body("a", 1))]))


def test_received_always_equals_applied_plus_skipped_plus_dead_lettered(ledger: Ledger) -> None:
    events = [(1, usage_body("a", 1)), (2, b"nope"), (3, usage_body("a", 1)), (3, usage_body("a", 1))]
    outcome = ledger.apply(batch("0", events))
    assert outcome.received == 4
    assert (outcome.applied, outcome.skipped, outcome.dead_lettered) == (2, 1, 1)
    assert outcome.reasons == {"not_json": 1}


def test_a_cache_holding_few_days_still_counts_a_batch_spanning_many(store: InMemoryLedgerStore) -> None:
    ledger = Ledger(store, InMemoryDeadLetterStore(), max_cached_days=1)
    days = [date(2026, 11, day) for day in range(1, 8)]
    for round_ in range(3):
        ledger.apply(batch("0", [(round_ * 10 + i, usage_body("a", 1, day=d)) for i, d in enumerate(days)]))
    assert totals(ledger.period_rows("2026-11")) == {"a": 2 * 7 * 3}


# A property: whatever the delivery, the ledger equals the fold of the distinct events.

SUBSCRIPTIONS = ["a", "b", "c/d", "e#f"]
DAYS = [date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2)]


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[dict[str, list[bytes]], list[tuple[str, int, int]]]:
    """Per partition a stream of events, and a delivery plan of (partition, start, end) ranges.

    Each partition's plan is what Event Hubs can do: every range starts at or before the first
    event not yet delivered (redeliveries and overlaps), and together they reach the end.
    """
    streams: dict[str, list[bytes]] = {}
    plan: list[tuple[str, int, int]] = []
    for partition in ["0", "1", "2"][: draw(st.integers(1, 3))]:
        size = draw(st.integers(0, 25))
        streams[partition] = [
            usage_body(
                draw(st.sampled_from(SUBSCRIPTIONS)), draw(st.integers(0, 1000)), day=draw(st.sampled_from(DAYS))
            )
            if draw(st.integers(0, 9))
            else b"{broken"
            for _ in range(size)
        ]
        delivered = 0
        while delivered < size:
            start = draw(st.integers(0, delivered))
            end = draw(st.integers(delivered + 1, size))
            plan.append((partition, start, end))
            delivered = max(delivered, end)
    interleaved = draw(st.permutations(plan))
    # Keep each partition's own order (a partition is delivered in order); interleave partitions.
    ordered: list[tuple[str, int, int]] = []
    queues = {p: [r for r in plan if r[0] == p] for p in streams}
    for partition, _, _ in interleaved:
        ordered.append(queues[partition].pop(0))
    return streams, ordered


def expected_fold(streams: dict[str, list[bytes]]) -> dict[UsageKey, Counters]:
    reference = Ledger(InMemoryLedgerStore(), InMemoryDeadLetterStore())
    expected: dict[UsageKey, Counters] = {}
    for partition, bodies in streams.items():
        for sequence, body in enumerate(bodies):
            reference.apply(batch(partition, [(sequence, body)]))
    for period in ("2026-10", "2026-11"):
        for row in reference.period_rows(period):
            expected[row.key] = expected.get(row.key, ZERO) + row.counters
    return expected


def simple_fold(streams: dict[str, list[bytes]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for bodies in streams.values():
        for body in bodies:
            if body != b"{broken":
                document = orjson.loads(body)
                out[document["subscriptionId"]] = (
                    out.get(document["subscriptionId"], 0) + document["usage"]["prompt_tokens"] + 1
                )
    return out


def ledger_state(ledger: Ledger) -> dict[UsageKey, Counters]:
    return {row.key: row.counters for period in ("2026-10", "2026-11") for row in ledger.period_rows(period)}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries(), st.integers(1, 3))
def test_any_delivery_with_redeliveries_and_late_events_counts_each_event_once(
    delivery: tuple[dict[str, list[bytes]], list[tuple[str, int, int]]], owners: int
) -> None:
    streams, plan = delivery
    store = InMemoryLedgerStore()
    ledgers = [Ledger(store, InMemoryDeadLetterStore(), max_cached_days=1) for _ in range(owners)]
    for turn, (partition, start, end) in enumerate(plan):
        events = list(enumerate(streams[partition]))[start:end]
        ledgers[turn % owners].apply(batch(partition, events))
    state = ledger_state(ledgers[0])
    assert state == expected_fold(streams)
    by_subscription: dict[str, int] = {}
    for key, counters in state.items():
        by_subscription[key.subscription_id] = by_subscription.get(key.subscription_id, 0) + counters.total_tokens
    assert {k: v for k, v in by_subscription.items() if v} == {k: v for k, v in simple_fold(streams).items() if v}


def test_events_past_the_month_boundary_land_in_their_own_months(ledger: Ledger) -> None:
    start = datetime(2026, 10, 31, 23, 59, tzinfo=UTC)
    bodies = [
        (
            i,
            orjson.dumps(
                {"SubscriptionId": "a", "TotalTokens": "1", "EventTime": (start + timedelta(minutes=i)).isoformat()}
            ),
        )
        for i in range(3)
    ]
    outcome = ledger.apply(batch("0", bodies))
    assert (outcome.slices, outcome.transactions) == (2, 2)
    assert (totals(ledger.period_rows("2026-10")), totals(ledger.period_rows("2026-11"))) == ({"a": 1}, {"a": 2})


def test_partitions_applied_on_threads_at_once_are_each_counted_exactly(store: InMemoryLedgerStore) -> None:
    ledger = Ledger(store, InMemoryDeadLetterStore(), max_cached_slices=2)
    days = [date(2026, 10, 28), date(2026, 11, 1), date(2026, 11, 2)]

    def feed(partition: str) -> None:
        for round_ in range(60):
            events = [(round_ * 3 + i, usage_body(f"p{partition}", 1, day=days[i])) for i in range(3)]
            ledger.apply(batch(partition, events))
            ledger.apply(batch(partition, events))  # and every batch once more

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(feed, [str(p) for p in range(8)]))
    month = totals(ledger.period_rows("2026-10"))
    assert totals(ledger.period_rows("2026-11")) == {f"p{p}": 2 * 2 * 60 for p in range(8)}
    assert month == {f"p{p}": 2 * 60 for p in range(8)}

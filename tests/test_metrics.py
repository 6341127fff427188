"""The metrics the app records, read through an in-memory OpenTelemetry reader from the registered functions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest

from chargeback.domain.errors import MonitorError
from chargeback.ingestion import llm_logs
from chargeback.ingestion.llm_log_calls import WindowUsage
from chargeback.observability import metrics
from devtools import metrics as local_metrics
from devtools.hostshape import HostEvent
from devtools.memory import InMemoryLedgerStore
from tests.conftest import Writer
from tests.functions import deliver, run_queue
from tests.test_llm_logs import OCTOBER, ONE, TRAPS, TWO, run_timer
from tests.test_report_api import AFTER_OCTOBER_GRACE, event, request, send

pytestmark = pytest.mark.azurite

Reader = Callable[[], local_metrics.Taken]


@pytest.fixture(name="read_metrics")
def fixture_read_metrics() -> Iterator[Reader]:
    """What was recorded since the test began: the reader is drained first."""
    local = local_metrics.install()
    local.take()
    yield local.take


def recently(seconds: int) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def test_an_ingested_batch_counts_received_applied_skipped_and_dead_lettered_by_reason(
    app_settings: dict[str, str], read_metrics: Reader
) -> None:
    bodies = [event(ONE, 10, 5, OCTOBER), event(TWO, 20, 5, OCTOBER), b"not json", orjson.dumps({"TotalTokens": 3})]
    events = [HostEvent(body, n, recently(30)) for n, body in enumerate(bodies)]
    deliver(events, partition_id="2")
    deliver(events, partition_id="2")  # redelivered whole
    taken = read_metrics()
    where = {"hub": "aoai-usage", "partition": "2"}
    assert taken.total("chargeback.events.received", **where) == 8
    assert taken.total("chargeback.events.applied", **where) == 2
    assert taken.total("chargeback.events.skipped", **where) == 2
    assert taken.total("chargeback.events.dead_lettered", **where, reason="not_json") == 2
    assert taken.total("chargeback.events.dead_lettered", **where, reason="missing_subscription") == 2


def test_each_batch_records_its_lag_from_its_newest_events_enqueued_time(
    app_settings: dict[str, str], read_metrics: Reader
) -> None:
    events = [HostEvent(event(ONE, 10, 5, OCTOBER), n, recently(600 - 60 * n)) for n in range(5)]
    deliver(events, partition_id="1")
    taken = read_metrics()
    assert taken.count("chargeback.ingest.lag", hub="aoai-usage", partition="1") == 1
    assert 360 <= taken.total("chargeback.ingest.lag", hub="aoai-usage", partition="1") < 600


def test_ledger_transactions_are_counted_per_source(app_settings: dict[str, str], read_metrics: Reader) -> None:
    send([event(ONE, 10, 5, OCTOBER)], OCTOBER, partition="3")
    assert read_metrics().total("chargeback.ledger.transactions", source="events") == 1


def test_a_lost_etag_race_is_counted_as_a_conflict(read_metrics: Reader) -> None:
    from chargeback.ingestion.ingest import ingest
    from chargeback.ingestion.ledger import Batch, Ledger, ReceivedEvent
    from devtools.memory import InMemoryDeadLetterStore

    store = InMemoryLedgerStore()
    first, second = Ledger(store, InMemoryDeadLetterStore()), Ledger(store, InMemoryDeadLetterStore())
    batch = Batch("aoai-usage", "0", [ReceivedEvent(event(ONE, 1, 1, OCTOBER), 0, OCTOBER)])
    ingest(first, batch)
    ingest(second, Batch("aoai-usage", "0", [ReceivedEvent(event(ONE, 1, 1, OCTOBER), 1, OCTOBER)]))
    ingest(first, Batch("aoai-usage", "0", [ReceivedEvent(event(ONE, 1, 1, OCTOBER), 2, OCTOBER)]))
    assert read_metrics().total("chargeback.ledger.conflicts", source="events") == 1


def test_an_llm_log_collection_counts_rows_calls_rejections_days_and_unattributed_tokens(
    write_export: Writer, clock: Callable[[datetime], None], read_metrics: Reader
) -> None:
    write_export(TRAPS)
    clock(datetime(2026, 10, 21, 2, tzinfo=UTC))
    run_timer()
    taken = read_metrics()
    # The timer collects the month, then its report job brings the month up to date again.
    streamed_rows = len(TRAPS) - 1  # one row is a buffered call: the usage events bill it
    assert taken.total("chargeback.llm_logs.rows", scope="streamed") % streamed_rows == 0
    assert taken.total("chargeback.llm_logs.rows", scope="streamed") >= streamed_rows
    assert taken.total("chargeback.llm_logs.calls", scope="streamed") >= 4
    assert taken.total("chargeback.llm_logs.rejected", scope="streamed", reason="missing_correlation_id") >= 1
    assert taken.total("chargeback.llm_logs.days", scope="streamed", outcome="collected") >= 20
    assert taken.total("chargeback.llm_logs.days", outcome="failed") == 0
    assert taken.last["chargeback.llm_logs.unattributed_tokens"][(("scope", "streamed"),)] == 1_000


class _FailingOn:
    """An LLM-log source whose query fails on one day."""

    def __init__(self, day: date) -> None:
        self.day = day

    def day_usage(self, day: date, scope: str) -> WindowUsage:
        if day == self.day:
            raise MonitorError("the workspace did not answer")
        return WindowUsage()


class _EmptyStore:
    """An LLM-log store with nothing collected yet, that takes every write."""

    def markers(self, period: str) -> dict[date, llm_logs.DayMarker]:
        return {}

    def read_day(self, day: date) -> llm_logs.DayState:
        return llm_logs.DayState(None, None, {})

    def replace(self, day: date, etag: str | None, changes: object, marker: llm_logs.DayMarker) -> str:
        return "etag"

    def unattributed(self, period: str) -> list[object]:
        return []

    def event_usage_on(self, day: date) -> bool:
        return False


def test_a_failed_llm_log_day_is_counted_as_failed(read_metrics: Reader) -> None:
    now = datetime(2026, 10, 3, 12, tzinfo=UTC)
    source, store = _FailingOn(date(2026, 10, 2)), _EmptyStore()
    llm_logs.collect(source, store, scope="streamed", now=now, lag_hours=6, months=["2026-10"])  # type: ignore[arg-type]
    taken = read_metrics()
    assert taken.total("chargeback.llm_logs.days", outcome="failed") == 1
    assert taken.total("chargeback.llm_logs.days", outcome="collected") == 2


def test_a_report_job_counts_its_generation_its_duration_and_its_end(
    app_settings: dict[str, str], clock: Callable[[datetime], None], read_metrics: Reader
) -> None:
    send([event(ONE, 300, 100, OCTOBER)], OCTOBER)
    clock(AFTER_OCTOBER_GRACE)
    assert request("POST", "reports/2026-10").status_code == 202
    assert run_queue() == [None]
    taken = read_metrics()
    assert taken.total("chargeback.report.generations", outcome="committed", status="final") == 1
    assert taken.count("chargeback.report.duration", outcome="committed", status="final") == 1
    assert taken.total("chargeback.report.jobs", outcome="done") == 1


def test_a_generation_that_loses_to_a_final_is_counted_as_a_conflict(
    app_settings: dict[str, str], clock: Callable[[datetime], None], read_metrics: Reader
) -> None:
    from chargeback.app import runtime
    from chargeback.reports import service

    send([event(ONE, 300, 100, OCTOBER)], OCTOBER)
    clock(AFTER_OCTOBER_GRACE)
    service.generate(runtime.services().reports, "2026-10")
    with pytest.raises(Exception, match="final"):
        service.generate(runtime.services().reports, "2026-10")
    taken = read_metrics()
    assert taken.total("chargeback.report.generations", outcome="conflict", status="final") == 1


@pytest.mark.parametrize(
    ("record", "name", "dimensions"),
    [
        (lambda: metrics.budget_evaluated("done"), "chargeback.budget.evaluations", {"outcome": "done"}),
        (lambda: metrics.budget_threshold_crossed("80"), "chargeback.budget.thresholds", {"threshold": "80"}),
        (lambda: metrics.budget_action("suspend", "done"), "chargeback.budget.actions", {"action": "suspend"}),
    ],
    ids=["evaluation", "threshold", "suspension"],
)
def test_the_budget_instruments_record_what_budgets_hand_them(
    record: Callable[[], None], name: str, dimensions: dict[str, str], read_metrics: Reader
) -> None:
    record()
    assert read_metrics().total(name, **dimensions) == 1


def test_no_metric_carries_a_subscription_id_or_a_period(
    write_export: Writer, clock: Callable[[datetime], None], read_metrics: Reader
) -> None:
    send([event(ONE, 300, 100, OCTOBER), event(TWO, 1, 1, OCTOBER), b"{}"], OCTOBER)
    write_export(TRAPS)
    clock(AFTER_OCTOBER_GRACE)
    run_timer()
    taken = read_metrics()
    allowed = {"hub", "partition", "reason", "outcome", "status", "source", "scope", "threshold", "action"}
    seen = {name: taken.dimensions(name) for name in taken.names()}
    assert len(seen) >= 10
    for dimensions in seen.values():
        for key in dimensions:
            assert {name for name, _ in key} <= allowed
            assert not {value for _, value in key} & {ONE, TWO, "2026-10"}

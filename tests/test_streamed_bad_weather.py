"""Streamed usage in bad weather, on a real Azurite through the registered functions: nothing lost, nothing stuck."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.functions import meta
from azure.functions.queue import QueueMessageInConverter

from chargeback.app import runtime
from chargeback.domain.errors import CollectionError, TransientStorageError
from chargeback.ingestion import llm_logs
from chargeback.ingestion.llm_log_export import CsvLlmLogExport
from chargeback.reports import jobs as report_jobs
from chargeback.reports import service as report_service
from tests.conftest import Writer
from tests.functions import job, post_report, registered, run_queue
from tests.test_llm_logs import AFTER_OCTOBER, ONE, TWO, call, usage
from tests.test_report_api import AFTER_OCTOBER_GRACE, body, request

pytestmark = pytest.mark.azurite

DAY = date(2026, 10, 20)
CALLS = 300
"""Four transactions' worth of rows on one day (99 + 99 + 99 + 3, each with the day's marker)."""
WRITES = 4


def a_busy_day() -> list[dict[str, object]]:
    """300 calls on 2026-10-20, one subscription each (so one ledger row each): 47,850 tokens."""
    return [call(f"c-{n}", f"team-{n}", 10, n) for n in range(CALLS)]


BUSY_DAY_TOKENS = sum(10 + n for n in range(CALLS))


class FailingWrite:
    """The LLM-log store, with storage failing at the ``nth`` write of ``DAY``, before or after it lands."""

    def __init__(self, inner: llm_logs.LlmLogStore, nth: int, after: bool) -> None:
        self.inner, self.nth, self.after = inner, nth, after
        self.seen = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def replace(
        self, day: date, etag: str | None, changes: Sequence[llm_logs.RowChange], marker: llm_logs.DayMarker
    ) -> str:
        if day != DAY:
            return self.inner.replace(day, etag, changes, marker)
        self.seen += 1
        if self.seen == self.nth and not self.after:
            raise TransientStorageError("injected: storage failed before the write")
        written = self.inner.replace(day, etag, changes, marker)
        if self.seen == self.nth:
            raise TransientStorageError("injected: storage failed after the write landed")
        return written


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
@pytest.mark.parametrize("nth", range(1, WRITES + 1))
def test_storage_failing_at_any_write_of_a_day_leaves_it_due_or_whole_and_the_next_run_bills_it_exactly(
    write_export: Writer, nth: int, after: bool
) -> None:
    source = CsvLlmLogExport(write_export(a_busy_day()))
    store = runtime.services().llm_log_store
    collect = functools.partial(llm_logs.collect, scope="streamed", now=AFTER_OCTOBER, lag_hours=6, months=["2026-10"])

    failed = collect(source, FailingWrite(store, nth, after))

    assert failed.failed == {DAY.isoformat(): "TransientStorageError"}
    whole = after and nth == WRITES
    marker = store.markers("2026-10")[DAY] if (nth > 1 or after) else None
    assert (marker is not None and marker.complete and marker.settled) is whole
    assert (DAY in llm_logs.days_to_collect(store, ["2026-10"], AFTER_OCTOBER)) is not whole
    healed = collect(source, store)
    assert healed.complete
    document = usage()
    assert (document["totals"]["total_tokens"], document["totals"]["requests"]) == (BUSY_DAY_TOKENS, CALLS)
    assert DAY not in llm_logs.days_to_collect(store, ["2026-10"], AFTER_OCTOBER)


def test_an_unreadable_workspace_on_the_sixth_still_queues_and_finalises_last_month_and_says_what_is_missing(
    app_settings: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: Callable[[datetime], None]
) -> None:
    monkeypatch.setenv("CHARGEBACK_LLM_LOG_EXPORT", str(tmp_path / "no-such-export.csv"))
    runtime.reset()
    for moment in (AFTER_OCTOBER, AFTER_OCTOBER_GRACE):  # a draft in the grace days, then the final
        clock(moment)
        with pytest.raises(CollectionError, match="LLM logs not collected"):
            registered_timer()
        assert all(outcome is None for outcome in run_queue())
    reports = {r["period"]: r for r in body(request("GET", "reports"))["reports"]}
    assert reports["2026-10"]["status"] == "final"
    manifest = report_service.current(runtime.services().reports, "2026-10")
    assert manifest is not None
    assert manifest["streamed_usage"]["status"] == "incomplete"
    assert len(manifest["streamed_usage"]["incomplete_days"]) == 31
    page = request("GET", "reports/2026-10", {"format": "html"}).get_body().decode("utf-8")
    assert "could not be collected" in page
    assert "as adjustments in the next report" in page


def registered_timer() -> None:
    from azure.functions.timer import TimerRequestConverter

    timer = TimerRequestConverter.decode(meta.Datum(json.dumps({"IsPastDue": False}), "json"), trigger_metadata={})
    registered("reconcile_and_report").get_user_function()(timer)


def test_a_row_with_a_forty_thousand_character_model_is_rejected_and_the_rest_of_its_day_is_billed(
    write_export: Writer, clock: Callable[[datetime], None], caplog: pytest.LogCaptureFixture
) -> None:
    write_export([call("s-1", ONE, 1_000, 4_000), call("bad", TWO, 5, 5, ModelName="m" * 40_000)])
    clock(AFTER_OCTOBER)
    accepted = post_report("2026-10")
    assert accepted.status_code == 202
    assert all(outcome is None for outcome in run_queue())
    assert job(body(accepted)["id"])["status"] == "done"
    assert usage()["totals"]["total_tokens"] == 5_000
    assert '"reason": "invalid_field"' in caplog.text
    collected = [r.getMessage() for r in caplog.records if r.getMessage().startswith("chargeback.llm_logs {")]
    assert json.loads(collected[-1].split(" ", 1)[1])["rejected"] == {"invalid_field": 1}


# Report jobs ------------------------------------------------------------------------------------


def message_of(job_id: str, period: str, dequeue_count: int) -> Any:
    """A queue message as the host hands it over on its ``dequeue_count``-th delivery."""
    metadata = {
        "Id": meta.Datum("m-1", "string"),
        "DequeueCount": meta.Datum(dequeue_count, "int"),
        "PopReceipt": meta.Datum("p-1", "string"),
    }
    text = orjson.dumps({"job": job_id, "period": period}).decode()
    return QueueMessageInConverter.decode(meta.Datum(text, "string"), trigger_metadata=metadata)


def queued_job(period: str = "2026-10") -> str:
    """POST a generation and take its message off the queue: the test delivers it as the host would."""
    accepted = post_report(period)
    assert len(take_messages()) == 1
    job_id: str = body(accepted)["id"]
    return job_id


def take_messages() -> list[Any]:
    from devtools.hostshape import take_queue_messages

    names = runtime.services().settings.storage
    assert names.connection_string is not None
    return take_queue_messages(names.connection_string, names.report_queue)


def deliver(job_id: str, dequeue_count: int, period: str = "2026-10") -> BaseException | None:
    try:
        registered("generate_report").get_user_function()(message_of(job_id, period, dequeue_count))
    except Exception as exc:  # noqa: BLE001 - the host records a failed invocation and delivers again
        return exc
    return None


def test_a_job_whose_preparation_raises_is_still_generated_and_ends_done(
    write_export: Writer, clock: Callable[[datetime], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_export([call("s-1", ONE, 1_000, 4_000)])
    clock(AFTER_OCTOBER)
    job_id = queued_job()

    def broken(now: datetime, months: Sequence[str] | None = None) -> None:
        raise RuntimeError("injected: preparation broke")

    monkeypatch.setattr(runtime.services(), "collect_llm_logs", broken)
    assert deliver(job_id, 1) is None
    assert job(job_id)["status"] == "done"
    manifest = job(job_id)["report"]
    assert manifest["streamed_usage"]["status"] == "incomplete"


@pytest.mark.parametrize(
    "error", [RuntimeError("the month view broke"), MemoryError(), KeyError("column")], ids=lambda e: type(e).__name__
)
def test_a_generation_that_raises_anything_fails_its_job_with_a_reason_at_once(
    app_settings: dict[str, str], clock: Callable[[datetime], None], monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    clock(AFTER_OCTOBER)
    job_id = queued_job()

    def broken(context: report_service.ReportContext, period: str) -> None:
        raise error

    monkeypatch.setattr(report_service, "generate", broken)
    assert deliver(job_id, 1) is None
    ended = job(job_id)
    assert ended["status"] == "failed"
    assert type(error).__name__ in ended["reason"]
    assert "/" not in ended["reason"]


def test_a_transient_failure_keeps_a_job_queued_until_its_last_delivery_fails_it(
    app_settings: dict[str, str], clock: Callable[[datetime], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock(AFTER_OCTOBER)
    job_id = queued_job()

    def unavailable(context: report_service.ReportContext, period: str) -> None:
        raise TransientStorageError("injected: storage unavailable")

    monkeypatch.setattr(report_service, "generate", unavailable)
    for delivery in range(1, report_jobs.MAX_DELIVERIES):
        assert isinstance(deliver(job_id, delivery), TransientStorageError)
        assert (job(job_id)["status"], job(job_id)["attempt"]) == ("queued", delivery)
    assert deliver(job_id, report_jobs.MAX_DELIVERIES) is None
    ended = job(job_id)
    assert ended["status"] == "failed"
    assert f"gave up after {report_jobs.MAX_DELIVERIES} tries" in ended["reason"]


def test_a_redelivered_message_of_a_finished_job_changes_nothing(
    app_settings: dict[str, str], clock: Callable[[datetime], None]
) -> None:
    clock(AFTER_OCTOBER)
    job_id = queued_job()
    assert deliver(job_id, 1) is None
    done = job(job_id)
    assert deliver(job_id, 2) is None
    assert job(job_id) == done


def test_the_poison_queue_function_fails_a_job_the_host_gave_up_on(
    app_settings: dict[str, str], clock: Callable[[datetime], None]
) -> None:
    clock(AFTER_OCTOBER)
    job_id = queued_job()
    registered("report_job_gave_up").get_user_function()(message_of(job_id, "2026-10", 1))
    ended = job(job_id)
    assert ended["status"] == "failed"
    assert "did not finish" in ended["reason"]


def test_a_job_found_running_past_its_lease_is_failed_when_read(
    app_settings: dict[str, str], clock: Callable[[datetime], None]
) -> None:
    clock(AFTER_OCTOBER)
    job_id = queued_job()
    store = runtime.services().report_jobs.store
    record, etag = store.load_versioned(job_id)
    store.save_versioned({**record, "status": "running", "lease_until": "2026-11-02T02:31:00Z"}, etag)
    assert job(job_id)["status"] == "running"
    clock(datetime(2026, 11, 2, 2, 32, tzinfo=UTC))
    ended = job(job_id)
    assert ended["status"] == "failed"
    assert "stopped without finishing" in ended["reason"]


def test_the_job_lease_and_deliveries_match_what_host_json_tells_the_host() -> None:
    from datetime import timedelta

    from tests.support import ROOT

    host = json.loads((ROOT / "host.json").read_text())
    hours, minutes, seconds = (int(part) for part in host["functionTimeout"].split(":"))
    timeout = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    assert timeout < report_jobs.JOB_LEASE <= timeout + timedelta(minutes=5)
    assert host["extensions"]["queues"]["maxDequeueCount"] == report_jobs.MAX_DELIVERIES

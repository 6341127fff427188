"""GET /api/usage reads the compact month view and answers what the ledger read row by row would."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.functions import meta
from azure.functions.timer import TimerRequestConverter

from chargeback.adapters.blobs import BlobCompactDays, BlobCompactTotals
from chargeback.app import runtime
from chargeback.domain.errors import StorageError
from chargeback.ingestion.usage_view import usage_document
from chargeback.reports.live_days import LiveDays
from devtools.hostshape import HostEvent
from tests.budgets.support import write_llm_export
from tests.functions import deliver, get, registered
from tests.test_report_api import event

pytestmark = pytest.mark.azurite

NOVEMBER = [datetime(2026, 11, day, 9, tzinfo=UTC) for day in (1, 2, 15, 29, 30)]
ON_THE_30TH = datetime(2026, 11, 30, 18, tzinfo=UTC)
"""The 30th is not settled yet (six hours' lag); the days before it are."""


class Sender:
    def __init__(self) -> None:
        self.sequence = {"0": 0, "1": 0}

    def __call__(self, bodies: list[bytes], when: datetime, partition: str = "0") -> None:
        first = self.sequence[partition]
        deliver([HostEvent(body, first + i, when) for i, body in enumerate(bodies)], partition_id=partition)
        self.sequence[partition] = first + len(bodies)


def answered(period: str) -> dict[str, Any]:
    response = get("get_usage", f"/api/usage/{period}", {"period": period})
    assert response.status_code == 200
    document: dict[str, Any] = json.loads(response.get_body())
    return document


def row_by_row(period: str) -> dict[str, Any]:
    """What the usage API answered before the month view: every ledger row of the period, read one by one."""
    services = runtime.services()
    rows = services.ledger.period_rows(period)
    document = usage_document(
        period,
        rows,
        services.ledger.dead_letter_count(period),
        unattributed=services.llm_log_store.unattributed(period),
    )
    return json.loads(json.dumps(document))  # type: ignore[no-any-return]


@pytest.fixture(name="send")
def fixture_send(app_settings: dict[str, str]) -> Sender:
    runtime.services().clock = lambda: ON_THE_30TH
    return Sender()


@pytest.fixture(name="november")
def fixture_november(send: Sender) -> Sender:
    for index, when in enumerate(NOVEMBER):
        send(
            [
                event("aoai-product-subscription-one", 1_000 + index, 10, when),
                event("aoai-product-subscription-two", 2_000, 20 + index, when, model="gpt-4o-mini"),
                b'{"SubscriptionId": "toolkit", "TotalTokens": "27"}',
                b"not json",
            ],
            when,
            partition=str(index % 2),
        )
    return send


def test_a_month_answers_as_the_ledger_read_row_by_row(november: Sender) -> None:
    assert answered("2026-11") == row_by_row("2026-11")


def test_a_day_answers_as_that_day_read_row_by_row(november: Sender) -> None:
    for day in ("2026-11-02", "2026-11-30", "2026-11-03"):
        assert answered(day) == row_by_row(day)


def test_usage_counted_after_its_day_was_compacted_is_in_the_next_answer(november: Sender) -> None:
    answered("2026-11")  # compacts the settled days
    late = NOVEMBER[1]
    november([event("aoai-product-subscription-one", 50_000, 5, late)], late, partition="1")
    november([event("aoai-product-subscription-three", 7, 7, late)], late, partition="0")
    assert answered("2026-11") == row_by_row("2026-11")


def test_a_day_not_yet_settled_is_read_again_only_for_what_was_written_since(november: Sender) -> None:
    services = runtime.services()
    live = LiveDays(services.month_view)
    states = services.month_view.ledger.slice_states("2026-11")
    _, first = live.entries(date(2026, 11, 30), ON_THE_30TH, states)
    _, again = live.entries(date(2026, 11, 30), ON_THE_30TH, services.month_view.ledger.slice_states("2026-11"))
    november([event("aoai-product-subscription-one", 1, 1, ON_THE_30TH)], ON_THE_30TH, partition="0")
    entries, after = live.entries(date(2026, 11, 30), ON_THE_30TH, services.month_view.ledger.slice_states("2026-11"))
    assert (first, again, after) == (3, 0, 1)
    assert int(entries["requests"].sum()) == 4


def test_the_live_day_answers_as_the_ledger_does_after_more_usage(november: Sender) -> None:
    answered("2026-11")
    november([event("aoai-product-subscription-two", 3, 4, ON_THE_30TH)], ON_THE_30TH, partition="1")
    assert answered("2026-11") == row_by_row("2026-11")


def test_streamed_usage_and_its_replacement_are_answered_as_the_ledger_holds_them(
    november: Sender, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = tmp_path / "llm-log-export.csv"
    monkeypatch.setenv("CHARGEBACK_LLM_LOG_EXPORT", str(export))
    runtime.reset()
    services = runtime.services()
    services.clock = lambda: ON_THE_30TH
    write_llm_export(
        export,
        [
            ("s-1", "aoai-product-subscription-one", 900, 100, "2026-11-02T10:00:00Z"),
            ("s-2", "", 5, 5, "2026-11-02T11:00:00Z"),
        ],
    )
    services.collect_llm_logs(ON_THE_30TH, ["2026-11"])
    assert answered("2026-11") == row_by_row("2026-11")
    write_llm_export(export, [("s-1", "aoai-product-subscription-two", 900, 100, "2026-11-02T10:00:00Z")])
    services.collect_llm_logs(ON_THE_30TH, ["2026-11"])
    assert answered("2026-11") == row_by_row("2026-11")
    assert answered("2026-11")["sources"]["llm_logs"]["total_tokens"] == 1_000


class Counting:
    """Counts the compacted-day files a read takes from storage."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.days: list[date] = []
        original = BlobCompactDays.get

        def get(store: BlobCompactDays, day: date) -> bytes | None:
            self.days.append(day)
            return original(store, day)

        monkeypatch.setattr(BlobCompactDays, "get", get)


def test_a_new_process_answers_a_month_from_its_kept_totals_without_reading_each_day(
    november: Sender, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = answered("2026-11")
    runtime.reset()  # another process: nothing in memory
    runtime.services().clock = lambda: ON_THE_30TH
    counting = Counting(monkeypatch)
    assert answered("2026-11") == first
    assert counting.days == []


def test_the_settled_totals_are_kept_in_a_file_of_their_own(november: Sender) -> None:
    answered("2026-11")
    services = runtime.services()
    kept = BlobCompactTotals(services.storage.container(services.settings.storage.reports_container))
    assert kept.totals_through("2026-11") == [date(2026, 11, 29)]


def test_when_another_day_settles_the_kept_totals_grow_by_that_day(
    november: Sender, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered("2026-11")
    later = datetime(2026, 12, 1, 7, tzinfo=UTC)  # the 30th has settled too
    runtime.services().clock = lambda: later
    counting = Counting(monkeypatch)
    assert answered("2026-11") == row_by_row("2026-11")
    assert counting.days == [date(2026, 11, 30)]


def test_only_a_day_with_rows_past_its_fence_is_read_again(november: Sender, monkeypatch: pytest.MonkeyPatch) -> None:
    answered("2026-11")
    late = NOVEMBER[2]
    november([event("aoai-product-subscription-two", 5, 5, late)], late, partition="1")
    counting = Counting(monkeypatch)
    assert answered("2026-11") == row_by_row("2026-11")
    assert counting.days == [late.date()]


def test_the_budget_timer_keeps_the_months_settled_sum_so_no_request_sums_the_days(
    november: Sender, monkeypatch: pytest.MonkeyPatch
) -> None:
    timer = TimerRequestConverter.decode(meta.Datum(json.dumps({"IsPastDue": False}), "json"), trigger_metadata={})
    registered("evaluate_budgets").get_user_function()(timer)
    services = runtime.services()
    kept = BlobCompactTotals(services.storage.container(services.settings.storage.reports_container))
    assert kept.totals_through("2026-11") == [date(2026, 11, 29)]
    runtime.reset()  # the request comes to another instance
    runtime.services().clock = lambda: ON_THE_30TH
    counting = Counting(monkeypatch)
    assert answered("2026-11") == row_by_row("2026-11")
    assert counting.days == []


def test_a_failure_to_keep_the_sum_still_lets_the_budgets_be_evaluated_then_fails_the_timer(
    november: Sender, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refused(store: BlobCompactTotals, month: str, through: date, data: bytes) -> bool:
        raise StorageError("write a month's kept totals: storage answered 403 AuthorizationFailure")

    monkeypatch.setattr(BlobCompactTotals, "create_totals", refused)
    timer = TimerRequestConverter.decode(meta.Datum(json.dumps({"IsPastDue": False}), "json"), trigger_metadata={})
    with caplog.at_level(logging.INFO, logger="chargeback"), pytest.raises(StorageError):
        registered("evaluate_budgets").get_user_function()(timer)
    assert any(record.getMessage().startswith("chargeback.budget.evaluation ") for record in caplog.records)

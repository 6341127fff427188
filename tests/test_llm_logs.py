"""Streamed calls are billed from the LLM logs through the registered functions, on a real Azurite."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from azure.data.tables import TableServiceClient
from azure.functions import meta
from azure.functions.timer import TimerRequestConverter

from chargeback.adapters.tables import TableDeadLetterStore
from chargeback.app import runtime
from chargeback.ingestion import llm_logs
from chargeback.ingestion.ingest import BILLED_BY_LLM_LOGS
from chargeback.ingestion.ledger import DeadLetter
from chargeback.ingestion.llm_log_export import CsvLlmLogExport
from tests.conftest import Writer
from tests.functions import get, registered, run_queue
from tests.test_report_api import AFTER_OCTOBER_GRACE, DURING_NOVEMBER, body, event, request, send

pytestmark = pytest.mark.azurite

OCTOBER = datetime(2026, 10, 20, 12, tzinfo=UTC)
AFTER_OCTOBER = datetime(2026, 11, 2, 2, tzinfo=UTC)
ONE, TWO, THREE = (f"aoai-product-subscription-{n}" for n in ("one", "two", "three"))


def call(correlation: str, subscription: str, prompt: int, completion: int, **values: object) -> dict[str, object]:
    row: dict[str, object] = {
        "TimeGenerated": "2026-10-20T12:00:00Z",
        "CorrelationId": correlation,
        "ApimSubscriptionId": subscription,
        "ModelName": "gpt-4o",
        "DeploymentName": "gpt-4o",
        "OperationName": "ChatCompletions_Create",
        "PromptTokens": prompt,
        "CompletionTokens": completion,
        "TotalTokens": prompt + completion,
        "IsStreamCompletion": "true",
        "SequenceNumber": 0,
    }
    return row | values


def split(row: dict[str, object], parts: int) -> list[dict[str, object]]:
    """An exchange over ``parts`` rows with rising sequence numbers; the counts repeated on each."""
    return [row | {"SequenceNumber": n} for n in range(parts)]


TRAPS: list[dict[str, object]] = [
    *split(call("s-1", ONE, 1_000, 4_000), 3),
    call("s-2", ONE, 500, 500),
    call("s-2", ONE, 500, 500),  # the same row delivered twice
    call("s-3", TWO, 2_000, 2_000),
    call("s-4", "", 700, 300),  # its gateway-log row has not arrived
    call("b-1", ONE, 9_000, 9_000, IsStreamCompletion="false"),  # the usage events bill it
    call("", TWO, 1, 1),  # cannot be counted once without a correlation id
]
STREAMED = {ONE: 6_000, TWO: 4_000}
UNATTRIBUTED = 1_000


def run_timer() -> None:
    """The timer as the host runs it, then every report job it queued, through the queue function."""
    timer = TimerRequestConverter.decode(meta.Datum(json.dumps({"IsPastDue": False}), "json"), trigger_metadata={})
    registered("reconcile_and_report").get_user_function()(timer)
    assert all(outcome is None for outcome in run_queue())


def usage(period: str = "2026-10") -> dict[str, Any]:
    document: dict[str, Any] = json.loads(get("get_usage", f"/api/usage/{period}", {"period": period}).get_body())
    return document


def by_source(document: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Per subscription: (event tokens, LLM-log tokens)."""
    return {
        s["subscription_id"]: (s["sources"]["events"]["total_tokens"], s["sources"]["llm_logs"]["total_tokens"])
        for s in document["subscriptions"]
    }


def ledger_entities(settings: dict[str, str]) -> dict[tuple[str, str], str]:
    """Every ledger entity's key and ETag: a write of any kind changes an ETag."""
    service = TableServiceClient.from_connection_string(settings["ChargebackStorage"])
    table = service.get_table_client(settings["CHARGEBACK_LEDGER_TABLE"])
    return {(e["PartitionKey"], e["RowKey"]): str(e.metadata["etag"]) for e in table.list_entities()}


def test_streamed_calls_are_billed_once_beside_the_usage_events(
    write_export: Writer, clock: Callable[[datetime], None]
) -> None:
    send([event(ONE, 300, 100, OCTOBER), event(THREE, 50, 50, OCTOBER)], OCTOBER)
    write_export(TRAPS)
    clock(AFTER_OCTOBER)
    run_timer()
    document = usage()
    assert by_source(document) == {ONE: (400, STREAMED[ONE]), TWO: (0, STREAMED[TWO]), THREE: (100, 0)}
    assert document["totals"]["total_tokens"] == 400 + 100 + sum(STREAMED.values())
    assert document["sources"]["llm_logs"]["requests"] == 3
    assert document["unattributed_llm_logs"]["total_tokens"] == UNATTRIBUTED


def test_a_rerun_writes_nothing_and_bills_the_same(
    write_export: Writer, clock: Callable[[datetime], None], app_settings: dict[str, str]
) -> None:
    write_export(TRAPS)
    clock(AFTER_OCTOBER)
    run_timer()
    before, totals = ledger_entities(app_settings), usage()
    outcome = runtime.services().collect_llm_logs(AFTER_OCTOBER)
    assert outcome is not None and outcome.transactions == 0
    assert ledger_entities(app_settings) == before
    assert usage() == totals


def test_a_call_whose_gateway_row_arrives_late_is_unattributed_then_billed_to_its_subscription(
    write_export: Writer, clock: Callable[[datetime], None]
) -> None:
    write_export([call("late", "", 700, 300)])
    clock(datetime(2026, 10, 25, 2, tzinfo=UTC))
    run_timer()
    assert by_source(usage()) == {}
    assert usage()["unattributed_llm_logs"]["models"] == [
        {"model": "gpt-4o", "deployment": "gpt-4o", "requests": 1, "total_tokens": 1_000}
    ]
    write_export([call("late", TWO, 700, 300)])
    clock(datetime(2026, 10, 26, 2, tzinfo=UTC))
    run_timer()
    assert by_source(usage()) == {TWO: (0, 1_000)}
    assert usage()["unattributed_llm_logs"]["total_tokens"] == 0


@pytest.mark.parametrize(
    ("scope", "expected", "dead_lettered"),
    [
        pytest.param("streamed", {ONE: (400, 5_000), TWO: (0, 4_000)}, 0, id="streamed: events bill the rest"),
        pytest.param("all", {ONE: (0, 23_000), TWO: (0, 4_000)}, 1, id="all: events are set aside"),
        pytest.param("off", {ONE: (400, 0)}, 0, id="off: only events bill"),
    ],
)
def test_each_call_is_billed_by_exactly_one_source_whatever_the_scope(
    write_export: Writer,
    clock: Callable[[datetime], None],
    monkeypatch: pytest.MonkeyPatch,
    scope: str,
    expected: dict[str, tuple[int, int]],
    dead_lettered: int,
) -> None:
    monkeypatch.setenv("CHARGEBACK_LLM_LOG_SCOPE", scope)
    runtime.reset()
    # The buffered call b-1 is both in the LLM logs and, as a usage event, on the hub.
    send([event(ONE, 300, 100, OCTOBER)], OCTOBER)
    write_export(
        [
            call("s-1", ONE, 1_000, 4_000),
            call("s-3", TWO, 2_000, 2_000),
            call("b-1", ONE, 300, 100, IsStreamCompletion="false"),
            call("b-2", ONE, 9_000, 8_600, IsStreamCompletion="false"),
        ]
    )
    clock(AFTER_OCTOBER)
    run_timer()
    document = usage()
    if scope == "all":
        expected = {ONE: (0, 5_000 + 400 + 17_600), TWO: (0, 4_000)}
    assert by_source(document) == expected
    assert document["dead_letters"] == dead_lettered


def test_events_set_aside_while_the_llm_logs_bill_everything_carry_their_reason(
    write_export: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHARGEBACK_LLM_LOG_SCOPE", "all")
    runtime.reset()
    send([event(ONE, 300, 100, OCTOBER)], OCTOBER)
    letters = list(runtime.services().ledger._dead_letters.find("2026-10"))  # type: ignore[attr-defined]
    assert [(letter.reason, letter.sequence_number) for letter in letters] == [(BILLED_BY_LLM_LOGS, 0)]


def test_two_collections_racing_on_the_same_days_bill_every_call_once(write_export: Writer) -> None:
    rows = [call(f"c-{n}", f"team-{n % 130}", 10, n) for n in range(400)]
    source = CsvLlmLogExport(write_export(rows))
    store = runtime.services().llm_log_store
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def collect() -> None:
        start.wait()
        try:
            llm_logs.collect(source, store, scope="streamed", now=AFTER_OCTOBER, lag_hours=6, months=["2026-10"])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=collect) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    document = usage()
    assert document["totals"]["total_tokens"] == sum(10 + n for n in range(400))
    assert document["totals"]["requests"] == 400
    assert len(document["subscriptions"]) == 130


def test_a_final_report_stays_final_and_late_streamed_usage_is_an_adjustment_next_month(
    write_export: Writer, clock: Callable[[datetime], None]
) -> None:
    write_export([call("s-1", ONE, 1_000, 4_000), call("late", "", 700, 300)])
    clock(AFTER_OCTOBER)
    run_timer()
    clock(AFTER_OCTOBER_GRACE)
    run_timer()
    assert {r["period"]: r["status"] for r in body(request("GET", "reports"))["reports"]}["2026-10"] == "final"
    final_csv = request("GET", "reports/2026-10").get_body()
    write_export([call("s-1", ONE, 1_000, 4_000), call("late", TWO, 700, 300)])
    clock(DURING_NOVEMBER)
    run_timer()
    november = pd.read_parquet(io.BytesIO(request("GET", "reports/2026-11", {"format": "parquet"}).get_body()))
    adjustments = november[november["charge_category"] == "adjustment"]
    assert adjustments[["adjusted_period", "subscription_id", "total_tokens", "llm_log_tokens"]].values.tolist() == [
        ["2026-10", TWO, 1_000, 1_000]
    ]
    assert request("GET", "reports/2026-10").get_body() == final_csv


def test_every_report_format_says_which_source_billed_each_subscription(
    write_export: Writer, clock: Callable[[datetime], None]
) -> None:
    send([event(ONE, 300, 100, OCTOBER)], OCTOBER)
    write_export([call("s-1", ONE, 1_000, 4_000)])
    clock(AFTER_OCTOBER)
    run_timer()
    report = json.loads(request("GET", "reports/2026-10", {"format": "json"}).get_body())
    [subscription] = [s for s in report["by_subscription"] if s["subscription_id"] == ONE]
    assert (subscription["event_tokens"], subscription["llm_log_tokens"]) == (400, 5_000)
    csv_header = request("GET", "reports/2026-10").get_body().decode("utf-8-sig").splitlines()[0]
    assert {"event_tokens", "llm_log_tokens"} <= set(csv_header.split(","))
    focus = pd.read_csv(io.BytesIO(request("GET", "reports/2026-10", {"format": "focus"}).get_body()))
    mine = focus[focus["SubAccountId"] == ONE]
    assert (int(mine["x_EventTokens"].sum()), int(mine["x_LlmLogTokens"].sum())) == (400, 5_000)


def test_reconciliation_compares_both_sources_with_the_token_metric(
    write_export: Writer, clock: Callable[[datetime], None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    send([event(ONE, 300, 100, OCTOBER)], OCTOBER)
    write_export([call("s-1", ONE, 1_000, 4_000), call("s-3", TWO, 2_000, 2_000)])
    export = tmp_path / "appmetrics.csv"
    properties = '"{""Subscription ID"":""%s""}"'
    export.write_text(
        "TimeGenerated,Name,Sum,ItemCount,Properties\n"
        f"2026-10-20T12:00:00Z,Total Tokens,5400,2,{properties % ONE}\n"
        f"2026-10-20T12:00:00Z,Total Tokens,4000,1,{properties % TWO}\n"
    )
    monkeypatch.setenv("CHARGEBACK_MONITOR_EXPORT", str(export))
    runtime.reset()
    clock(AFTER_OCTOBER)
    run_timer()
    recon = json.loads(request("GET", "reports/2026-10", {"format": "json"}).get_body())["reconciliation"]
    assert {line["subscription_id"]: line["status"] for line in recon} == {ONE: "matched", TWO: "matched"}


def test_the_report_page_shows_the_streamed_tokens_of_each_subscription(
    write_export: Writer, clock: Callable[[datetime], None]
) -> None:
    send([event(ONE, 300, 100, OCTOBER)], OCTOBER)
    write_export([call("s-1", ONE, 1_234, 4_000)])
    clock(AFTER_OCTOBER)
    run_timer()
    page = request("GET", "reports/2026-10", {"format": "html"}).get_body().decode("utf-8")
    assert "Streamed tokens (LLM logs)" in page
    assert "streamed (LLM logs)" in page
    assert "5,234" in page


NOVEMBER_2 = datetime(2026, 11, 2, 9, tzinfo=UTC)
LATER_ON_NOVEMBER_2 = datetime(2026, 11, 2, 11, tzinfo=UTC)


def switch_scope(monkeypatch: pytest.MonkeyPatch, clock: Callable[[datetime], None], scope: str, now: datetime) -> None:
    """Change CHARGEBACK_LLM_LOG_SCOPE as a deployment does: the app restarts with it."""
    monkeypatch.setenv("CHARGEBACK_LLM_LOG_SCOPE", scope)
    runtime.reset()
    clock(now)


def redrive_everything() -> None:
    from chargeback.ops import cli

    cli.main(["redrive"])


def billed(period: str = "2026-11") -> tuple[int, int, int]:
    """Tokens billed to ONE in ``period`` from events and from the LLM logs, and the dead letters left."""
    document = usage(period)
    return (*by_source(document).get(ONE, (0, 0)), document["dead_letters"])


def test_switching_from_all_to_streamed_bills_each_buffered_call_once_after_a_redrive(
    write_export: Writer, clock: Callable[[datetime], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    settled_day, open_day = datetime(2026, 10, 20, 12, tzinfo=UTC), NOVEMBER_2
    switch_scope(monkeypatch, clock, "all", open_day)
    send([event(ONE, 300, 100, settled_day)], settled_day)
    send([event(ONE, 30, 10, open_day)], open_day, first=1)
    write_export(
        [
            call("b-1", ONE, 300, 100, IsStreamCompletion="false"),
            call("b-2", ONE, 30, 10, IsStreamCompletion="false", TimeGenerated="2026-11-02T08:00:00Z"),
            call("s-1", ONE, 1_000, 4_000, TimeGenerated="2026-11-02T08:00:00Z"),
        ]
    )
    run_timer()
    assert billed("2026-10") == (0, 400, 1) and billed() == (0, 5_040, 1)
    redrive_everything()  # under `all` the LLM logs bill both: nothing is applied
    assert billed("2026-10") == (0, 400, 1) and billed() == (0, 5_040, 1)
    switch_scope(monkeypatch, clock, "streamed", LATER_ON_NOVEMBER_2)
    run_timer()  # the open day is collected again as streamed; the settled day keeps `all`
    redrive_everything()
    assert billed("2026-10") == (0, 400, 1)  # still billed by the LLM logs, its event kept aside
    assert billed() == (40, 5_000, 0)  # the buffered call moved to its event, counted once


def test_switching_from_streamed_to_all_bills_each_buffered_call_once_after_a_redrive(
    write_export: Writer, clock: Callable[[datetime], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    switch_scope(monkeypatch, clock, "streamed", NOVEMBER_2)
    send([event(ONE, 300, 100, NOVEMBER_2)], NOVEMBER_2)
    rows = [
        call("b-1", ONE, 300, 100, IsStreamCompletion="false", TimeGenerated="2026-11-02T08:00:00Z"),
        call("s-1", ONE, 1_000, 4_000, TimeGenerated="2026-11-02T08:00:00Z"),
    ]
    write_export(rows)
    run_timer()
    assert billed() == (400, 5_000, 0)
    switch_scope(monkeypatch, clock, "all", LATER_ON_NOVEMBER_2)
    send([event(ONE, 30, 10, LATER_ON_NOVEMBER_2)], LATER_ON_NOVEMBER_2, first=1)
    write_export([*rows, call("b-2", ONE, 30, 10, IsStreamCompletion="false", TimeGenerated="2026-11-02T10:30:00Z")])
    run_timer()  # the day was billed as streamed: it stays so, its applied event is not billed again
    assert billed() == (400, 5_000, 1)
    redrive_everything()
    assert billed() == (440, 5_000, 0)


def test_a_dead_letter_of_another_reason_stays_set_aside_on_a_day_the_llm_logs_bill(
    write_export: Writer, clock: Callable[[datetime], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rejected by an older parser, its call was billed by the LLM logs of an `all` day: applying it bills twice."""
    switch_scope(monkeypatch, clock, "all", NOVEMBER_2)
    names = runtime.services().settings.storage
    storage = runtime.services().storage
    TableDeadLetterStore(storage.table(names.dead_letter_table), storage.container(names.dead_letter_container)).put(
        [DeadLetter("aoai-usage", "0", 1, NOVEMBER_2, event(ONE, 30, 10, NOVEMBER_2), "missing_tokens", "older parser")]
    )
    write_export([call("b-1", ONE, 30, 10, IsStreamCompletion="false", TimeGenerated="2026-11-02T08:00:00Z")])
    run_timer()
    assert billed() == (0, 40, 1)
    switch_scope(monkeypatch, clock, "streamed", LATER_ON_NOVEMBER_2)  # the day keeps `all`: it was billed so
    redrive_everything()
    assert billed() == (0, 40, 1)
    [kept] = TableDeadLetterStore(
        storage.table(names.dead_letter_table), storage.container(names.dead_letter_container)
    ).find()
    assert kept.reason == BILLED_BY_LLM_LOGS

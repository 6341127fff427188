"""Committed report lines reach Log Analytics (or a local file) once per generation, via the registered functions."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chargeback.adapters.log_ingestion import BlobPublishedStore, IngestionSink
from chargeback.app import runtime
from chargeback.domain.errors import PublishError, TransientStorageError
from chargeback.reports import published_lines
from chargeback.reports.service import current
from devtools import log_ingestion
from tests.functions import run_queue
from tests.support import ROOT
from tests.test_llm_logs import OCTOBER, ONE, THREE, TWO, run_timer
from tests.test_report_api import AFTER_OCTOBER_GRACE, DURING_NOVEMBER, event, request, send

pytestmark = pytest.mark.azurite

RULE = "dcr-00000000000000000000000000000000"


def latest_complete(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per period, the rows of its latest complete generation, each line once: what the workbook
    and alert queries take (final before draft, then the newest generation)."""
    lines: dict[tuple[str, int], dict[str, Any]] = {(r["Generation"], r["Line"]): r for r in rows}
    generations: dict[str, list[dict[str, Any]]] = {}
    for row in lines.values():
        generations.setdefault(row["Generation"], []).append(row)
    best: dict[str, tuple[tuple[bool, str], list[dict[str, Any]]]] = {}
    for generation, found in generations.items():
        if len(found) != found[0]["Lines"]:
            continue
        rank = (found[0]["Status"] == "final", generation)
        period = found[0]["Period"]
        if period not in best or rank > best[period][0]:
            best[period] = (rank, sorted(found, key=lambda r: r["Line"]))
    return {period: chosen for period, (_, chosen) in best.items()}


def cost(rows: list[dict[str, Any]]) -> Decimal:
    return sum((Decimal(r["CostMinor"]).scaleb(-r["MinorUnits"]) for r in rows), Decimal(0))


@pytest.fixture(name="lines_file")
def fixture_lines_file(app_settings: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "published-lines.jsonl"
    monkeypatch.setenv("CHARGEBACK_LINES_FILE", str(path))
    runtime.reset()
    return path


def read_file(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def generate(clock: Callable[[datetime], None], moment: datetime) -> None:
    clock(moment)
    assert request("POST", "reports/2026-10").status_code == 202
    assert run_queue() == [None]  # the generation; it queues the publication
    assert run_queue() == [None]  # the publication


def test_a_committed_generation_publishes_one_row_per_report_line_equal_to_the_report(
    lines_file: Path, clock: Callable[[datetime], None]
) -> None:
    send([event(ONE, 300, 100, OCTOBER), event(TWO, 50, 50, OCTOBER), event(THREE, 5, 5, OCTOBER)], OCTOBER)
    generate(clock, AFTER_OCTOBER_GRACE)
    manifest = current(runtime.services().reports, "2026-10")
    assert manifest is not None
    rows = read_file(lines_file)
    assert [r["Line"] for r in rows] == list(range(1, manifest["row_counts"]["lines"] + 1))
    assert {r["Generation"] for r in rows} == {manifest["generation"]}
    assert {r["Status"] for r in rows} == {"final"}
    assert cost(rows) == Decimal(manifest["grand_total"])
    assert sum(r["TotalTokens"] for r in rows) == 300 + 100 + 50 + 50 + 5 + 5
    assert {r["SubscriptionId"] for r in rows} >= {ONE, TWO, THREE}


def test_publishing_a_generation_again_sends_nothing(lines_file: Path, clock: Callable[[datetime], None]) -> None:
    send([event(ONE, 300, 100, OCTOBER)], OCTOBER)
    generate(clock, DURING_NOVEMBER)
    before = read_file(lines_file)
    context = runtime.services().line_publication
    assert context is not None
    assert published_lines.publish(context, "2026-10") == published_lines.ALREADY
    assert read_file(lines_file) == before


def test_each_new_draft_is_published_and_readers_take_the_latest(
    lines_file: Path, clock: Callable[[datetime], None]
) -> None:
    send([event(ONE, 300, 100, OCTOBER)], OCTOBER)
    generate(clock, datetime(2026, 11, 2, 2, tzinfo=OCTOBER.tzinfo))
    send([event(ONE, 1_000, 0, OCTOBER)], OCTOBER, first=1)
    generate(clock, datetime(2026, 11, 3, 2, tzinfo=OCTOBER.tzinfo))
    rows = read_file(lines_file)
    assert len({r["Generation"] for r in rows}) == 2
    latest = latest_complete(rows)["2026-10"]
    assert sum(r["TotalTokens"] for r in latest) == 1_400


def test_the_timer_publishes_what_a_commit_could_not(
    app_settings: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: Callable[[datetime], None]
) -> None:
    send([event(ONE, 300, 100, OCTOBER)], OCTOBER)
    clock(DURING_NOVEMBER)
    assert request("POST", "reports/2026-10").status_code == 202
    assert run_queue() == [None]  # committed with no destination named: nothing is queued
    path = tmp_path / "lines.jsonl"
    monkeypatch.setenv("CHARGEBACK_LINES_FILE", str(path))
    runtime.reset()
    clock(DURING_NOVEMBER)
    run_timer()
    assert latest_complete(read_file(path))["2026-10"]


def test_a_publication_that_fails_leaves_the_report_done_and_is_retried(
    app_settings: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: Callable[[datetime], None]
) -> None:
    blocked = tmp_path / "a-folder"
    blocked.mkdir()
    monkeypatch.setenv("CHARGEBACK_LINES_FILE", str(blocked))
    runtime.reset()
    send([event(ONE, 300, 100, OCTOBER)], OCTOBER)
    clock(DURING_NOVEMBER)
    response = request("POST", "reports/2026-10")
    assert run_queue() == [None]
    outcomes = run_queue()
    assert len(outcomes) == 1 and isinstance(outcomes[0], PublishError)
    job = json.loads(response.get_body())["id"]
    from tests.functions import job as job_status

    assert job_status(job)["status"] == "done"


@pytest.fixture(name="stand_in")
def fixture_stand_in() -> Iterator[log_ingestion.IngestionStandIn]:
    with log_ingestion.IngestionStandIn(RULE, published_lines.STREAM) as server:
        yield server


def publish_to(stand_in: log_ingestion.IngestionStandIn, **options: Any) -> published_lines.PublishContext:
    services = runtime.services()
    sink = IngestionSink(log_ingestion.client(stand_in.endpoint, **options), RULE)
    container = services.storage.container(services.settings.storage.reports_container)
    return published_lines.PublishContext(services.reports, sink, BlobPublishedStore(container), services._job_queue)


def test_the_ingestion_endpoint_takes_every_row_as_the_rules_stream_declares_it(
    app_settings: dict[str, str], clock: Callable[[datetime], None], stand_in: log_ingestion.IngestionStandIn
) -> None:
    send([event(ONE, 300, 100, OCTOBER), event(TWO, 7, 3, OCTOBER)], OCTOBER)
    clock(DURING_NOVEMBER)
    assert request("POST", "reports/2026-10").status_code == 202
    assert run_queue() == [None]
    assert published_lines.publish(publish_to(stand_in), "2026-10") == published_lines.PUBLISHED
    assert stand_in.refused == []
    assert sum(r["TotalTokens"] for r in latest_complete(stand_in.rows)["2026-10"]) == 410


def test_a_refused_upload_raises_and_records_nothing_so_the_retry_sends_it(
    app_settings: dict[str, str], clock: Callable[[datetime], None], stand_in: log_ingestion.IngestionStandIn
) -> None:
    send([event(ONE, 300, 100, OCTOBER)], OCTOBER)
    clock(DURING_NOVEMBER)
    request("POST", "reports/2026-10")
    assert run_queue() == [None]
    context = publish_to(stand_in, retry_total=0)
    stand_in.fail(503)
    with pytest.raises(PublishError):
        published_lines.publish(context, "2026-10")
    assert stand_in.rows == []
    assert context.published.find("2026-10") is None
    assert published_lines.publish(context, "2026-10") == published_lines.PUBLISHED
    assert published_lines.publish(context, "2026-10") == published_lines.ALREADY
    assert sum(r["TotalTokens"] for r in latest_complete(stand_in.rows)["2026-10"]) == 400


class _RecordFailsOnce:
    """A published-store whose first record fails, after the rows were taken: they will be sent again."""

    def __init__(self, store: published_lines.PublishedStore) -> None:
        self.store, self.failed = store, False

    def find(self, period: str) -> tuple[str, str] | None:
        return self.store.find(period)

    def record(self, period: str, generation: str, etag: str | None) -> None:
        if not self.failed:
            self.failed = True
            raise TransientStorageError("storage went away after the upload")
        self.store.record(period, generation, etag)


def test_rows_sent_twice_by_a_retry_are_read_once(
    app_settings: dict[str, str], clock: Callable[[datetime], None], stand_in: log_ingestion.IngestionStandIn
) -> None:
    send([event(ONE, 300, 100, OCTOBER), event(TWO, 1, 1, OCTOBER)], OCTOBER)
    clock(DURING_NOVEMBER)
    request("POST", "reports/2026-10")
    assert run_queue() == [None]
    plain = publish_to(stand_in)
    context = dataclasses.replace(plain, published=_RecordFailsOnce(plain.published))
    with pytest.raises(TransientStorageError):
        published_lines.publish(context, "2026-10")
    assert published_lines.publish(context, "2026-10") == published_lines.PUBLISHED
    lines = len(latest_complete(stand_in.rows)["2026-10"])
    assert len(stand_in.rows) == 2 * lines
    assert sum(r["TotalTokens"] for r in latest_complete(stand_in.rows)["2026-10"]) == 402


def test_the_stand_in_refuses_a_row_with_an_undeclared_column_or_a_wrong_type() -> None:
    columns = log_ingestion.declared_columns()
    row = {name: "x" for name, kind in columns.items() if kind == "string"}
    row |= {"TimeGenerated": "2026-11-20T02:00:00Z", "GeneratedAt": "2026-11-20T02:00:00Z"}
    assert log_ingestion.row_errors(row, columns) == []
    assert log_ingestion.row_errors({**row, "Tokens": 3}, columns) == ["Tokens: not a declared column"]
    assert log_ingestion.row_errors({**row, "CostMinor": 1.5}, columns) == ["CostMinor: not a whole number"]


def test_the_apps_columns_are_the_ones_the_bicep_declares() -> None:
    declared = json.loads((ROOT / "infra" / "app" / "chargeback-lines.columns.json").read_text())
    assert [(c["name"], c["type"]) for c in declared] == list(published_lines.COLUMNS)

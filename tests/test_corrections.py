"""A final month is corrected with today's prices and map: once, audited, billed in the next open report."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import azure.functions as func
import orjson
import pandas as pd
import pytest

from chargeback.app import runtime
from chargeback.domain.errors import ConflictError
from chargeback.ops import cli
from chargeback.ops import correct as correct_command
from chargeback.reports import correction_book, corrections
from chargeback.reports import jobs as report_jobs
from chargeback.reports.model import FINAL
from devtools.hostshape import HostEvent
from tests.functions import deliver, followed, job, post_report, registered, run_queue
from tests.principals import client_principal

pytestmark = pytest.mark.azurite

ONE, TWO, THREE = (
    "aoai-product-subscription-one",
    "aoai-product-subscription-two",
    "aoai-product-subscription-three",
)
OCTOBER_DAY = datetime(2026, 10, 20, 12, tzinfo=UTC)
AFTER_OCTOBER_GRACE = datetime(2026, 11, 7, 2, tzinfo=UTC)
DURING_NOVEMBER = datetime(2026, 11, 20, 2, tzinfo=UTC)
AFTER_NOVEMBER_GRACE = datetime(2026, 12, 7, 2, tzinfo=UTC)
WRONG_SHEET: dict[str, Any] = {
    "currency": "USD",
    "minor_unit_digits": 2,
    "models": [{"model": "gpt-4o", "effective_from": "2024-10-01", "input": "2.50", "output": "10.00"}],
    "default": [{"effective_from": "2024-01-01", "blended": "5.00"}],
}
# gpt-4o input was 2.50 per 1M in the sheet October was billed with; the right price was 3.00.
RIGHT_SHEET = {**WRONG_SHEET, "models": [{**WRONG_SHEET["models"][0], "input": "3.00"}]}
WRONG_MAP = f"subscription_id,cost_center,business_unit,owner\n{ONE},CC-1001,Digital Products,one@contoso.com\n"
# subscription three was never mapped: its cost went to unallocated; it belongs to CC-1003.
RIGHT_MAP = WRONG_MAP + f"{THREE},CC-1003,Digital Products,three@contoso.com\n"


def event(subscription: str, prompt: int, completion: int, when: datetime) -> bytes:
    return orjson.dumps(
        {
            "schema": "chargeback.usage/v1",
            "subscriptionId": subscription,
            "eventTime": when.isoformat(),
            "model": "gpt-4o",
            "deployment": "gpt-4o",
            "operationId": "ChatCompletions_Create",
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
        }
    )


def send(bodies: list[bytes], when: datetime, *, partition: str = "0") -> None:
    deliver([HostEvent(body, i, when) for i, body in enumerate(bodies)], partition_id=partition)


@pytest.fixture(name="clock")
def fixture_clock() -> Callable[[datetime], None]:
    def set_now(moment: datetime) -> None:
        runtime.services().clock = lambda: moment

    return set_now


class Config:
    """The price sheet and cost-center map the app reads, rewritten as an administrator would fix them."""

    def __init__(self, folder: Path) -> None:
        self.sheet = folder / "price-sheet.json"
        self.map = folder / "cost-centers.csv"

    def prices(self, sheet: dict[str, Any]) -> None:
        self.sheet.write_text(json.dumps(sheet), encoding="utf-8")

    def centers(self, text: str) -> None:
        self.map.write_text(text, encoding="utf-8")


@pytest.fixture(name="config")
def fixture_config(app_settings: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    config = Config(tmp_path)
    config.prices(WRONG_SHEET)
    config.centers(WRONG_MAP)
    monkeypatch.setenv("CHARGEBACK_PRICE_SHEET", str(config.sheet))
    monkeypatch.setenv("CHARGEBACK_COST_CENTERS", str(config.map))
    return config


@pytest.fixture(name="october_final")
def fixture_october_final(config: Config, clock: Callable[[datetime], None]) -> dict[str, Any]:
    """October billed final with the wrong sheet and map: 1M + 2M input tokens, and 20 of three's."""
    send(
        [
            event(ONE, 1_000_000, 100_000, OCTOBER_DAY),
            event(TWO, 2_000_000, 0, OCTOBER_DAY),
            event(THREE, 400_000, 0, OCTOBER_DAY),
        ],
        OCTOBER_DAY,
    )
    clock(AFTER_OCTOBER_GRACE)
    manifest = generated("2026-10")
    assert manifest["status"] == FINAL
    # one: 1M × 2.50 + 0.1M × 10 = 3.50; two: 2M × 2.50 = 5.00; three: 0.4M × 2.50 = 1.00
    assert manifest["grand_total"] == "9.50"
    return manifest


def generated(period: str) -> dict[str, Any]:
    answer = post_report(period)
    assert answer.status_code == 202, answer.get_body()
    assert run_queue() == [None]
    done = job(orjson.loads(answer.get_body())["id"])
    assert done["status"] == "done", done
    report: dict[str, Any] = done["report"]
    return report


def correct(
    period: str, body: bytes | dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = func.HttpRequest(
        "POST",
        f"/api/reports/{period}/corrections",
        route_params={"period": period},
        headers=headers or {},
        body=data,
    )
    response: func.HttpResponse = registered("correct_report").get_user_function()(req)
    return response.status_code, orjson.loads(response.get_body())


def lines(period: str, fmt: str = "parquet") -> pd.DataFrame:
    req = func.HttpRequest(
        "GET", f"/api/reports/{period}", params={"format": fmt}, route_params={"period": period}, body=b""
    )
    response = followed(registered("report").get_user_function()(req))
    assert response.status_code == 200
    return pd.read_parquet(io.BytesIO(response.get_body()))


def corrected(period: str, reason: str = "gpt-4o input was priced at 2.50, the sheet says 3.00") -> dict[str, Any]:
    status, document = correct(period, {"reason": reason})
    assert status == 202, document
    assert run_queue() == [None]
    return job(document["id"])


# --------------------------------------------------------------------------------------------
# The contract


def test_the_route_is_a_post_at_the_admin_level_like_regenerating() -> None:
    bindings = json.loads(registered("correct_report").get_function_json())["bindings"]
    [trigger] = [b for b in bindings if b["type"] == "httpTrigger"]
    assert (trigger["route"], trigger["methods"], trigger["authLevel"]) == (
        "reports/{period}/corrections",
        ["POST"],
        "ADMIN",
    )


def test_a_dry_run_answers_the_difference_per_line_and_records_nothing(
    october_final: dict[str, Any], config: Config, clock: Callable[[datetime], None]
) -> None:
    config.prices(RIGHT_SHEET)
    clock(DURING_NOVEMBER)
    status, document = correct("2026-10", {"reason": "input price", "dry_run": True})
    assert status == 200
    assert (document["dry_run"], document["period"], document["billed_in"]) == (True, "2026-10", "2026-11")
    # 0.50 more per 1M input tokens: one 1M → 0.50, two 2M → 1.00, three 0.4M → 0.20
    assert document["cost"] == "1.70"
    by_subscription = {line["subscription_id"]: line for line in document["lines"]}
    assert {name: line["cost"] for name, line in by_subscription.items()} == {ONE: "0.50", TWO: "1.00", THREE: "0.20"}
    assert all(line["total_tokens"] == 0 for line in document["lines"])
    assert correction_book.entries(runtime.services().reports.corrections, "2026-10") == []  # type: ignore[arg-type]


def test_nothing_changed_means_nothing_to_correct(october_final: dict[str, Any]) -> None:
    status, document = correct("2026-10", {"reason": "checking", "dry_run": True})
    assert (status, document["lines"], document["cost"]) == (200, [], "0.00")


def test_a_correction_is_billed_as_correction_lines_of_the_next_open_report(
    october_final: dict[str, Any], config: Config, clock: Callable[[datetime], None]
) -> None:
    config.prices(RIGHT_SHEET)
    clock(DURING_NOVEMBER)
    done = corrected("2026-10")
    assert done["status"] == "done", done
    assert (done["report"]["period"], done["report"]["status"]) == ("2026-11", "draft")
    november = lines("2026-11")
    fixes = november[november["charge_category"] == "correction"]
    assert set(fixes["adjusted_period"]) == {"2026-10"}
    assert sum(fixes["cost"], Decimal(0)) == Decimal("1.70")
    assert done["report"]["corrections"] == [{"period": "2026-10", "id": done["correction"]["id"]}]


def test_the_correction_lines_sum_to_the_repriced_month_minus_the_final(
    october_final: dict[str, Any], config: Config, clock: Callable[[datetime], None]
) -> None:
    config.prices(RIGHT_SHEET)
    config.centers(RIGHT_MAP)
    clock(DURING_NOVEMBER)
    done = corrected("2026-10", "three belongs to CC-1003, and input was 3.00")
    fixes = lines("2026-11")
    fixes = fixes[fixes["charge_category"] == "correction"]
    # re-priced October: one 1M × 3 + 0.1M × 10 = 4.00; two 6.00; three 1.20 → 11.20, final 9.50
    assert sum(fixes["cost"], Decimal(0)) == Decimal("11.20") - Decimal(october_final["grand_total"])
    three = fixes[fixes["subscription_id"] == THREE].set_index("cost_center")
    costs = {center: three.loc[center, "cost"] for center in ("unallocated", "CC-1003")}
    assert costs == {"unallocated": Decimal("-1.00"), "CC-1003": Decimal("1.20")}
    assert (three.loc["unallocated", "total_tokens"], three.loc["CC-1003", "total_tokens"]) == (-400_000, 400_000)
    assert done["correction"]["cost"] == "1.70"


def test_the_final_is_never_touched(
    october_final: dict[str, Any], config: Config, clock: Callable[[datetime], None]
) -> None:
    before = lines("2026-10")
    config.prices(RIGHT_SHEET)
    clock(DURING_NOVEMBER)
    corrected("2026-10")
    assert lines("2026-10").equals(before)
    assert runtime.services().reports.reports.pointer("2026-10", FINAL)[0] == october_final  # type: ignore[index]


def test_asking_again_with_nothing_changed_adds_nothing(
    october_final: dict[str, Any], config: Config, clock: Callable[[datetime], None]
) -> None:
    config.prices(RIGHT_SHEET)
    clock(DURING_NOVEMBER)
    first = corrected("2026-10")
    again = corrected("2026-10")
    assert (first["correction"]["outcome"], again["correction"]["outcome"]) == ("recorded", "nothing_to_correct")
    assert again["report"] is None
    store = runtime.services().reports.corrections
    assert store is not None
    assert [entry["id"] for entry in correction_book.entries(store, "2026-10")] == [first["correction"]["id"]]
    status, dry = correct("2026-10", {"reason": "anything left?", "dry_run": True})
    assert (status, dry["lines"], dry["corrections_recorded"]) == (200, [], 1)


def test_a_second_change_is_corrected_by_its_own_difference_only(
    october_final: dict[str, Any], config: Config, clock: Callable[[datetime], None]
) -> None:
    config.prices(RIGHT_SHEET)
    clock(DURING_NOVEMBER)
    corrected("2026-10")
    config.centers(RIGHT_MAP)
    second = corrected("2026-10", "three belongs to CC-1003")
    assert second["correction"]["cost"] == "0.00"  # a re-mapping moves cost, it adds none
    assert second["correction"]["lines"] == 2
    november = lines("2026-11")
    fixes = november[november["charge_category"] == "correction"]
    assert sum(fixes["cost"], Decimal(0)) == Decimal("1.70")
    assert len(fixes) == 5


def test_the_correction_is_billed_once_however_often_the_next_reports_are_generated(
    october_final: dict[str, Any], config: Config, clock: Callable[[datetime], None]
) -> None:
    config.prices(RIGHT_SHEET)
    clock(DURING_NOVEMBER)
    done = corrected("2026-10")
    for _ in range(2):
        generated("2026-11")  # drafts regenerate: each shows the correction, none bills it
    clock(AFTER_NOVEMBER_GRACE)
    november = generated("2026-11")
    assert november["status"] == FINAL
    assert november["corrections"] == [{"period": "2026-10", "id": done["correction"]["id"]}]
    december = generated("2026-12")
    assert december["corrections"] == []
    fixes = lines("2026-12")
    assert "correction" not in set(fixes["charge_category"])


def test_a_correction_is_billed_by_the_first_month_without_a_final(
    october_final: dict[str, Any], config: Config, clock: Callable[[datetime], None]
) -> None:
    # November is a draft inside its grace period on 3 December: it, not December, bills it
    clock(DURING_NOVEMBER)
    generated("2026-11")
    config.prices(RIGHT_SHEET)
    clock(datetime(2026, 12, 3, 2, tzinfo=UTC))
    done = corrected("2026-10")
    assert (done["correction"]["billed_in"], done["report"]["period"]) == ("2026-11", "2026-11")
    assert generated("2026-12")["corrections"] == []


def test_a_final_committed_without_the_correction_passes_it_to_the_next_month(
    october_final: dict[str, Any], config: Config, clock: Callable[[datetime], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    # November's final was being generated when the correction was recorded, so it does not bill it
    context = runtime.services().reports
    config.prices(RIGHT_SHEET)
    clock(AFTER_NOVEMBER_GRACE)
    store = context.corrections
    assert store is not None
    real_pending = correction_book.pending
    seen: list[int] = []

    def pending_then_correct(*args: Any, **kwargs: Any) -> list[correction_book.PendingCorrection]:
        due = real_pending(*args, **kwargs)
        if not seen:
            seen.append(len(due))
            corrections.record(context, "2026-10", requested_by="test", reason="recorded mid-generation")
        return due

    monkeypatch.setattr(correction_book, "pending", pending_then_correct)
    november = generated("2026-11")
    monkeypatch.setattr(correction_book, "pending", real_pending)
    assert (seen, november["status"], november["corrections"]) == ([0], FINAL, [])
    december = generated("2026-12")
    assert [ref["period"] for ref in december["corrections"]] == ["2026-10"]


@pytest.mark.parametrize("period", ["2026-10", "2026-09"])
def test_a_month_that_is_not_final_is_a_409(config: Config, clock: Callable[[datetime], None], period: str) -> None:
    send([event(ONE, 1_000, 0, OCTOBER_DAY)], OCTOBER_DAY)
    clock(datetime(2026, 11, 2, 2, tzinfo=UTC))
    assert generated("2026-10")["status"] == "draft"  # inside October's grace period; September has no report
    for body in ({"reason": "wrong price", "dry_run": True}, {"reason": "wrong price"}):
        status, document = correct(period, body)
        assert (status, document["error"]["code"]) == (409, "conflict")
        assert "not final" in document["error"]["message"]
    assert run_queue() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"", "body"),
        (b"not json", "body"),
        (b"[]", "body"),
        ({}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"reason": "x" * 501}, "reason"),
        ({"reason": "two\nlines"}, "reason"),
        ({"reason": 7}, "reason"),
        ({"reason": "ok", "dry_run": "yes"}, "dry_run"),
        ({"reason": "ok", "dryrun": True}, "dryrun"),
    ],
)
def test_a_bad_body_is_a_400_naming_the_field(
    october_final: dict[str, Any], body: bytes | dict[str, Any], field: str
) -> None:
    status, document = correct("2026-10", body)
    assert status == 400
    assert (document["error"]["code"], document["error"]["field"]) == ("invalid_request", field)
    assert correction_book.entries(runtime.services().reports.corrections, "2026-10") == []  # type: ignore[arg-type]


def test_a_bad_period_is_a_400(config: Config) -> None:
    status, document = correct("2026-13", {"reason": "x"})
    assert (status, document["error"]["field"]) == (400, "period")


def test_with_sign_in_only_an_admin_corrects(
    october_final: dict[str, Any], monkeypatch: pytest.MonkeyPatch, config: Config
) -> None:
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    runtime.reset()
    config.prices(RIGHT_SHEET)
    reader = client_principal(roles=["Chargeback.FinanceReader"])
    status, document = correct("2026-10", {"reason": "x", "dry_run": True}, {"X-MS-CLIENT-PRINCIPAL": reader})
    assert (status, document["error"]["code"]) == (403, "forbidden")


# --------------------------------------------------------------------------------------------
# The audit trail


def test_who_when_and_why_are_in_the_job_record_and_the_log(
    october_final: dict[str, Any],
    config: Config,
    clock: Callable[[datetime], None],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    runtime.reset()
    config.prices(RIGHT_SHEET)
    clock(DURING_NOVEMBER)
    admin = client_principal(roles=["Chargeback.Admin"])
    caplog.set_level(logging.INFO, logger="chargeback")
    status, queued = correct("2026-10", {"reason": "input price was 3.00"}, {"X-MS-CLIENT-PRINCIPAL": admin})
    assert status == 202
    assert run_queue() == [None]
    done = report_jobs.job_status(runtime.services().report_jobs, queued["id"])  # GET needs a sign-in now
    who = "entra:5b5450db-eb26-4c1a-981c-ba1d25f0483d"
    assert (done["requested_by"], done["requested_at"], done["correction"]["reason"]) == (
        who,
        "2026-11-20T02:00:00Z",
        "input price was 3.00",
    )
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("chargeback.report.correction ")]
    logged = json.loads(line.split(" ", 1)[1])
    assert (logged["requested_by"], logged["reason"], logged["outcome"], logged["cost"]) == (
        who,
        "input price was 3.00",
        "recorded",
        "1.70",
    )
    [entry] = correction_book.entries(runtime.services().reports.corrections, "2026-10")  # type: ignore[arg-type]
    assert (entry["requested_by"], entry["reason"], entry["job"]) == (who, "input price was 3.00", queued["id"])


# --------------------------------------------------------------------------------------------
# Races


@pytest.fixture(name="racing")
def fixture_racing(
    october_final: dict[str, Any], config: Config, clock: Callable[[datetime], None]
) -> Iterator[runtime.Services]:
    config.prices(RIGHT_SHEET)
    clock(DURING_NOVEMBER)
    yield runtime.services()


def test_two_corrections_racing_record_the_difference_once(racing: runtime.Services) -> None:
    context = racing.reports
    barrier = threading.Barrier(4)
    outcomes: list[corrections.Recorded | BaseException] = []

    def ask(number: int) -> None:
        barrier.wait()
        try:
            outcomes.append(corrections.record(context, "2026-10", requested_by=f"admin-{number}", reason="race"))
        except BaseException as exc:  # noqa: BLE001 - the test reports what each thread ended with
            outcomes.append(exc)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorded = [o for o in outcomes if isinstance(o, corrections.Recorded) and o.entry is not None]
    assert len(recorded) == 1, outcomes
    assert all(isinstance(o, corrections.Recorded) for o in outcomes), outcomes
    store = context.corrections
    assert store is not None
    [entry] = correction_book.entries(store, "2026-10")
    assert entry["cost"] == "1.70"


def test_a_lost_race_is_computed_again_against_the_winners_record(
    racing: runtime.Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = racing.reports
    store = context.corrections
    assert store is not None
    real_save = type(store).save
    calls: list[int] = []

    def save_after_a_rival(self: Any, period: str, record: Any, etag: str | None) -> None:
        if not calls:
            calls.append(1)
            corrections.record(context, period, requested_by="rival", reason="got there first")
        real_save(self, period, record, etag)

    monkeypatch.setattr(type(store), "save", save_after_a_rival)
    mine = corrections.record(context, "2026-10", requested_by="me", reason="second")
    assert mine.entry is None
    assert [entry["requested_by"] for entry in correction_book.entries(store, "2026-10")] == ["rival"]


def test_a_job_delivered_again_after_recording_reports_its_own_correction(racing: runtime.Services) -> None:
    jobs = racing.report_jobs
    queued = report_jobs.request_correction(jobs, "2026-10", "admin", "price")
    message = orjson.dumps({"job": queued["id"], "period": "2026-10", "kind": "correct"}).decode()
    first = report_jobs.run(jobs, message)
    again = report_jobs.run(jobs, message)
    assert first["correction"]["id"] == again["correction"]["id"]
    assert again["correction"]["outcome"] == "recorded"
    assert len(correction_book.entries(jobs.reports.corrections, "2026-10")) == 1  # type: ignore[arg-type]
    run_queue()


def test_a_correction_that_kept_losing_says_so(racing: runtime.Services, monkeypatch: pytest.MonkeyPatch) -> None:
    store = racing.reports.corrections
    assert store is not None

    def always_lose(self: Any, period: str, record: Any, etag: str | None) -> None:
        raise ConflictError("another correction was recorded first")

    monkeypatch.setattr(type(store), "save", always_lose)
    with pytest.raises(ConflictError, match="kept changing"):
        corrections.record(racing.reports, "2026-10", requested_by="me", reason="x")


# --------------------------------------------------------------------------------------------
# The operator command


@pytest.fixture(name="cli_clock")
def fixture_cli_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command builds its own services; they believe it is 20 November 2026."""
    monkeypatch.setattr(
        correct_command, "Services", lambda settings: runtime.Services(settings, clock=lambda: DURING_NOVEMBER)
    )


def test_the_command_dry_run_prints_the_difference_and_records_nothing(
    october_final: dict[str, Any], config: Config, cli_clock: None, capsys: pytest.CaptureFixture[str]
) -> None:
    config.prices(RIGHT_SHEET)
    code = cli.main(["correct", "--period", "2026-10", "--reason", "input price", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("2026-10: 3 lines differ, +1.70 USD in all (dry run: nothing recorded;")
    assert f"  {TWO}  gpt-4o  gpt-4o  unallocated  +0 tokens  +1.00 USD" in out
    assert correction_book.entries(runtime.services().reports.corrections, "2026-10") == []  # type: ignore[arg-type]


def test_the_command_records_once_and_generates_the_report_that_bills_it(
    october_final: dict[str, Any], config: Config, cli_clock: None, capsys: pytest.CaptureFixture[str]
) -> None:
    config.prices(RIGHT_SHEET)
    argv = ["correct", "--period", "2026-10", "--reason", "input price", "--json"]
    assert cli.main(argv) == 0
    done = json.loads(capsys.readouterr().out)
    assert (done["status"], done["correction"]["outcome"], done["report"]["period"]) == ("done", "recorded", "2026-11")
    assert done["requested_by"].startswith("cli:")
    assert cli.main(argv[:-1]) == 0
    assert capsys.readouterr().out.startswith("2026-10: nothing to correct; nothing recorded")
    store = runtime.services().reports.corrections
    assert store is not None
    assert [entry["job"] for entry in correction_book.entries(store, "2026-10")] == [done["id"]]


def test_the_command_refuses_a_month_that_is_not_final_in_one_line(
    config: Config, cli_clock: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["correct", "--period", "2026-10", "--reason", "x"]) == 2
    err = capsys.readouterr().err
    assert err == "correct: the report for 2026-10 is not final; only a final month is corrected\n"


@pytest.mark.parametrize("argv", [["--period", "2026-13", "--reason", "x"], ["--period", "2026-10", "--reason", " "]])
def test_the_command_refuses_a_bad_period_or_reason(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        cli.main(["correct", *argv])
    assert refused.value.code == 2
    assert "error: argument --" in capsys.readouterr().err

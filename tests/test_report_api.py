"""Reports are reconciled, generated, finalised and downloaded through the registered functions."""

from __future__ import annotations

import csv
import io
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import azure.functions as func
import openpyxl
import orjson
import pandas as pd
import pytest
from azure.functions import meta
from azure.functions.queue import QueueMessageInConverter
from azure.functions.timer import TimerRequestConverter

from chargeback.app import runtime
from chargeback.domain.errors import ChargebackError
from chargeback.reports import service as report_service
from devtools.hostshape import HostEvent
from tests.functions import deliver, followed, job, post_report, registered, run_queue

pytestmark = pytest.mark.azurite

OCTOBER_DAY = datetime(2026, 10, 20, 12, tzinfo=UTC)
DURING_OCTOBER = datetime(2026, 10, 25, 9, tzinfo=UTC)
AFTER_OCTOBER_GRACE = datetime(2026, 11, 7, 2, tzinfo=UTC)
DURING_NOVEMBER = datetime(2026, 11, 20, 2, tzinfo=UTC)


def event(subscription: str, prompt: int, completion: int, when: datetime, *, model: str = "gpt-4o") -> bytes:
    return orjson.dumps(
        {
            "schema": "chargeback.usage/v1",
            "subscriptionId": subscription,
            "eventTime": when.isoformat(),
            "model": model,
            "deployment": "gpt-4o",
            "operationId": "ChatCompletions_Create",
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
        }
    )


def send(bodies: list[bytes], when: datetime, *, partition: str = "0", first: int = 0) -> None:
    deliver([HostEvent(body, first + i, when) for i, body in enumerate(bodies)], partition_id=partition)


def request(
    method: str, route: str, params: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    parts = route.split("/")
    function_name = "list_reports" if len(parts) == 1 else "regenerate_report" if method == "POST" else "report"
    route_params = {} if len(parts) == 1 else {"period": parts[1]}
    req = func.HttpRequest(
        method, f"/api/{route}", params=params or {}, route_params=route_params, headers=headers or {}, body=b""
    )
    response: func.HttpResponse = registered(function_name).get_user_function()(req)
    return followed(response)


def body(response: func.HttpResponse) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(response.get_body())
    return document


@pytest.fixture(name="clock")
def fixture_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], None]:
    """Sets the time the report service believes it is."""

    def set_now(moment: datetime) -> None:
        runtime.services().clock = lambda: moment

    return set_now


PRICE_SHEET = {
    "currency": "USD",
    "minor_unit_digits": 2,
    "models": [
        {"model": "gpt-4o", "effective_from": "2024-10-01", "input": "2.50", "cached_input": "1.25", "output": "10.00"}
    ],
    "default": [{"effective_from": "2024-01-01", "blended": "5.00"}],
}


@pytest.fixture(name="october")
def fixture_october(
    app_settings: dict[str, str], clock: Callable[[datetime], None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """October usage for two mapped subscriptions and one without a cost center."""
    sheet = tmp_path / "price-sheet.json"
    sheet.write_text(json.dumps(PRICE_SHEET))
    monkeypatch.setenv("CHARGEBACK_PRICE_SHEET", str(sheet))
    send(
        [
            event("aoai-product-subscription-one", 1_000_000, 100_000, OCTOBER_DAY),
            event("aoai-product-subscription-two", 2_000_000, 0, OCTOBER_DAY),
            event("aoai-product-subscription-three", 10, 10, OCTOBER_DAY),
        ],
        OCTOBER_DAY,
    )
    clock(DURING_OCTOBER)


def http_trigger(name: str) -> dict[str, Any]:
    [trigger] = [b for b in json.loads(registered(name).get_function_json())["bindings"] if b["type"] == "httpTrigger"]
    found: dict[str, Any] = trigger
    return found


@pytest.mark.parametrize(
    ("name", "route", "methods", "level"),
    [
        ("list_reports", "reports", ["GET"], "ANONYMOUS"),
        ("report", "reports/{period}", ["GET"], "ANONYMOUS"),
        ("get_usage", "usage/{period}", ["GET"], "ANONYMOUS"),
        ("report_job", "report-jobs/{id}", ["GET"], "ANONYMOUS"),
        ("regenerate_report", "reports/{period}", ["POST"], "ADMIN"),
    ],
)
def test_reading_is_left_to_sign_in_and_regenerating_needs_the_admin_key_too(
    name: str, route: str, methods: list[str], level: str
) -> None:
    trigger = http_trigger(name)
    assert (trigger["route"], [m.upper() for m in trigger["methods"]], trigger["authLevel"]) == (route, methods, level)


def generated(period: str) -> dict[str, Any]:
    """POST the period, let the queue function run the job, and return the job's report."""
    answer = post_report(period)
    assert answer.status_code == 202, answer.get_body()
    run_queue()
    done = job(body(answer)["id"])
    assert done["status"] == "done", done
    report: dict[str, Any] = done["report"]
    return report


def test_generating_a_report_answers_202_and_the_queued_job_commits_it(october: None) -> None:
    answer = post_report("2026-10")
    assert answer.status_code == 202
    queued = body(answer)
    assert (queued["status"], queued["period"]) == ("queued", "2026-10")
    assert answer.headers["Location"] == queued["status_url"] == f"/api/report-jobs/{queued['id']}"
    assert job(queued["id"])["status"] == "queued"
    assert run_queue() == [None]
    done = job(queued["id"])
    assert (done["status"], done["reason"]) == ("done", None)
    manifest = done["report"]
    assert done["generation"] == manifest["generation"]
    assert manifest["status"] == "draft"
    assert manifest["currency"] == "USD"
    # gpt-4o since 2024-10-01: input 2.50, output 10.00 per 1M tokens.
    # one: 1M × 2.50 + 0.1M × 10.00 = 3.50; two: 2M × 2.50 = 5.00; three: 20 tokens ≈ 0.00
    assert manifest["grand_total"] == "8.50"
    assert manifest["unallocated_subscriptions"] == ["aoai-product-subscription-three"]
    assert {f["format"] for f in manifest["files"]} >= {"csv", "json", "xlsx", "parquet", "focus", "focus-parquet"}


@pytest.fixture(name="reserved")
def fixture_reserved(october: None, tmp_path: Path) -> None:
    """October's usage priced with a deployment reserved at 744.00 a month: 1.00 for each of its hours.

    The sheet is read on every use: rewriting it is enough."""
    reserved = {"deployment": "gpt-4o-ptu", "units": 15, "monthly_cost": "744.00"}
    (tmp_path / "price-sheet.json").write_text(json.dumps({**PRICE_SHEET, "provisioned": [reserved]}))


def test_a_draft_of_the_month_to_date_bills_the_capacity_hours_that_have_ended(reserved: None) -> None:
    manifest = generated("2026-10")  # 25 October 09:00: 24 days and 9 hours have ended
    assert (manifest["status"], manifest["totals"]["provisioned_cost"]) == ("draft", "585.00")
    lines = pd.read_parquet(io.BytesIO(request("GET", "reports/2026-10", {"format": "parquet"}).get_body()))
    idle = lines[lines["deployment"] == "gpt-4o-ptu"]
    assert idle[["subscription_id", "cost"]].values.tolist() == [["unallocated", Decimal("585.00")]]


def test_the_final_bills_the_capacity_of_the_whole_month(reserved: None, clock: Callable[[datetime], None]) -> None:
    clock(AFTER_OCTOBER_GRACE)
    manifest = generated("2026-10")
    assert (manifest["status"], manifest["totals"]["provisioned_cost"]) == ("final", "744.00")


def test_the_listing_shows_each_period_with_status_and_links(october: None) -> None:
    generated("2026-10")
    listing = body(request("GET", "reports"))["reports"]
    assert [(r["period"], r["status"]) for r in listing] == [("2026-10", "draft")]
    assert listing[0]["links"]["xlsx"] == "/api/reports/2026-10?format=xlsx"


@pytest.mark.parametrize(
    ("fmt", "content_type", "suffix"),
    [
        ("csv", "text/csv", ".csv"),
        ("json", "application/json", ".json"),
        ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ".xlsx"),
        ("parquet", "application/vnd.apache.parquet", ".parquet"),
        ("focus", "text/csv", "-focus.csv"),
        ("focus-parquet", "application/vnd.apache.parquet", "-focus.parquet"),
    ],
)
def test_each_format_downloads_as_an_attachment_with_its_content_type(
    october: None, fmt: str, content_type: str, suffix: str
) -> None:
    generated("2026-10")
    response = request("GET", "reports/2026-10", {"format": fmt})
    assert response.status_code == 200
    assert response.mimetype == content_type
    assert response.headers["Content-Disposition"] == f'attachment; filename="chargeback-2026-10{suffix}"'
    assert response.headers["ETag"].startswith('"')
    assert response.get_body()


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("chargeback-2026-10.csv", "csv"),
        ("chargeback-2026-10.xlsx", "xlsx"),
        ("chargeback-2026-10-focus.csv", "focus"),
        ("chargeback-2026-10-focus.parquet", "focus-parquet"),
    ],
)
def test_a_file_is_served_under_its_own_name_as_the_page_links_to_it(october: None, name: str, fmt: str) -> None:
    generated("2026-10")
    by_name = request("GET", f"reports/{name}")
    assert by_name.status_code == 200
    assert by_name.headers["Content-Disposition"] == f'attachment; filename="{name}"'
    assert by_name.get_body() == request("GET", "reports/2026-10", {"format": fmt}).get_body()


def test_csv_is_the_default_format(october: None) -> None:
    generated("2026-10")
    response = request("GET", "reports/2026-10")
    rows = list(csv.DictReader(io.StringIO(response.get_body().decode("utf-8-sig"))))
    assert {row["subscription_id"] for row in rows} >= {"aoai-product-subscription-one"}


def test_the_xlsx_opens_with_a_sheet_per_view_and_numbers_as_numbers(october: None) -> None:
    generated("2026-10")
    workbook = openpyxl.load_workbook(io.BytesIO(request("GET", "reports/2026-10", {"format": "xlsx"}).get_body()))
    assert len(workbook.sheetnames) >= 5
    sheet = workbook[workbook.sheetnames[0]]
    header = [cell.value for cell in sheet[1]]
    cost = header.index("cost") + 1
    values = [sheet.cell(row=r, column=cost).value for r in range(2, sheet.max_row + 1)]
    assert any(isinstance(v, int | float) and v > 0 for v in values)


def test_the_parquet_reads_back_with_pandas(october: None) -> None:
    generated("2026-10")
    frame = pd.read_parquet(io.BytesIO(request("GET", "reports/2026-10", {"format": "parquet"}).get_body()))
    assert set(frame["subscription_id"]) == {
        "aoai-product-subscription-one",
        "aoai-product-subscription-two",
        "aoai-product-subscription-three",
    }
    assert int(frame["total_tokens"].sum()) == 3_100_020


def test_the_focus_export_has_the_focus_columns(october: None) -> None:
    generated("2026-10")
    text = request("GET", "reports/2026-10", {"format": "focus"}).get_body().decode("utf-8-sig")
    header = next(csv.reader(io.StringIO(text)))
    for column in ("BilledCost", "EffectiveCost", "BillingCurrency", "ChargeCategory", "x_CostCenter"):
        assert column in header


@pytest.fixture(name="provider")
def fixture_provider(app_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """The platform team the app is configured to bill as, over the test's other settings."""
    monkeypatch.setenv("CHARGEBACK_PROVIDER_NAME", "Contoso AI Platform")
    return "Contoso AI Platform"


def test_the_focus_exports_bill_as_the_provider_the_setting_names(provider: str, october: None) -> None:
    generated("2026-10")
    parquet = pd.read_parquet(io.BytesIO(request("GET", "reports/2026-10", {"format": "focus-parquet"}).get_body()))
    text = request("GET", "reports/2026-10", {"format": "focus"}).get_body().decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {(row["ProviderName"], row["InvoiceIssuerName"]) for row in rows} == {(provider, provider)}
    assert set(parquet["ProviderName"]) == set(parquet["InvoiceIssuerName"]) == {provider}
    assert sorted(parquet["InvoiceId"]) == sorted(row["InvoiceId"] for row in rows)
    assert sum(parquet["BilledCost"]) == Decimal("8.50")


def test_an_unchanged_file_answers_304_to_its_etag(october: None) -> None:
    generated("2026-10")
    first = request("GET", "reports/2026-10", {"format": "json"})
    again = request("GET", "reports/2026-10", {"format": "json"}, {"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.get_body() == b""
    other = request("GET", "reports/2026-10", {"format": "json"}, {"If-None-Match": '"stale"'})
    assert other.status_code == 200


def unfollowed(params: dict[str, str]) -> func.HttpResponse:
    """The registered GET /api/reports/2026-10 as the function answers it, before any redirect."""
    req = func.HttpRequest("GET", "/api/reports/2026-10", params=params, route_params={"period": "2026-10"}, body=b"")
    response: func.HttpResponse = registered("report").get_user_function()(req)
    return response


def test_a_file_is_served_as_a_redirect_to_a_read_only_link_that_expires_within_minutes(october: None) -> None:
    generated("2026-10")
    answer = unfollowed({"format": "xlsx"})
    assert answer.status_code == 302
    assert answer.get_body() == b""
    assert answer.headers["Cache-Control"] == "private, no-store"
    link = urllib.parse.urlsplit(answer.headers["Location"])
    query = urllib.parse.parse_qs(link.query)
    assert query["sp"] == ["r"]
    assert link.path.endswith("/chargeback-2026-10.xlsx")
    expiry = datetime.fromisoformat(query["se"][0].replace("Z", "+00:00"))
    assert timedelta(0) < expiry - datetime.now(UTC) <= timedelta(minutes=10)
    with urllib.request.urlopen(answer.headers["Location"]) as fetched:  # noqa: S310 - Azurite on loopback
        assert fetched.headers["Content-Disposition"] == 'attachment; filename="chargeback-2026-10.xlsx"'
        assert fetched.read()[:2] == b"PK"


def test_a_link_reads_its_one_file_and_nothing_else(october: None) -> None:
    generated("2026-10")
    link = urllib.parse.urlsplit(unfollowed({"format": "csv"}).headers["Location"])
    elsewhere = link._replace(path=link.path.replace("chargeback-2026-10.csv", "report-bundle.zip")).geturl()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(elsewhere)  # noqa: S310 - Azurite on loopback
    assert refused.value.code == 403


def test_a_narrowed_file_is_kept_once_and_linked_like_the_whole_one(october: None) -> None:
    generated("2026-10")
    params = {"format": "csv", "subscription": "aoai-product-subscription-two"}
    first, again = unfollowed(params), unfollowed(params)
    assert first.status_code == again.status_code == 302
    assert (
        urllib.parse.urlsplit(first.headers["Location"]).path == urllib.parse.urlsplit(again.headers["Location"]).path
    )
    assert first.headers["ETag"] == again.headers["ETag"]
    rows = csv_rows(followed(first))
    assert {row["subscription_id"] for row in rows} == {"aoai-product-subscription-two"}


def test_the_page_is_always_served_by_the_app_with_its_security_headers(october: None) -> None:
    generated("2026-10")
    page = unfollowed({"format": "html"})
    assert page.status_code == 200
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_with_inline_downloads_the_app_serves_the_bytes_itself(
    october: None, monkeypatch: pytest.MonkeyPatch, clock: Callable[[datetime], None]
) -> None:
    generated("2026-10")
    monkeypatch.setenv("CHARGEBACK_DOWNLOADS", "inline")
    runtime.reset()
    clock(DURING_OCTOBER)
    answer = unfollowed({"format": "csv"})
    assert answer.status_code == 200
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert csv_rows(answer)


@pytest.mark.parametrize(
    ("route", "params", "status", "field"),
    [
        ("reports/2026-10", {"format": "pdf"}, 400, "format"),
        ("reports/2026-10", {"format": "../manifest"}, 400, "format"),
        ("reports/2026-13", {}, 400, "period"),
        ("reports/2026-10-01", {}, 400, "period"),
        ("reports/..%2F..%2Fsecrets", {}, 400, "period"),
        ("reports/2026-10", {"subscription": "../../etc/passwd"}, 400, "subscription"),
        ("reports/2026-10", {"cost_center": "CC\r\nSet-Cookie: x"}, 400, "cost_center"),
        ("reports/\u0662\u0660\u0662\u0666-\u0661\u0660", {}, 400, "period"),
        ("reports/２０２６-１０", {}, 400, "period"),
        ("reports/9999-12", {}, 400, "period"),
        ("reports/1999-12", {}, 400, "period"),
        ("reports/chargeback-2026-13.csv", {}, 400, "period"),
        ("reports/chargeback-2026-10.csv", {"format": "json"}, 400, "format"),
        ("reports/chargeback-2026-10.pdf", {}, 400, "period"),
        ("reports/2031-01", {}, 404, None),
        ("reports/9998-12", {}, 404, None),
    ],
)
def test_bad_report_requests_get_a_4xx_with_a_json_reason(
    october: None, route: str, params: dict[str, str], status: int, field: str | None
) -> None:
    generated("2026-10")
    response = request("GET", route, params)
    assert response.status_code == status
    error = body(response)["error"]
    assert error["message"]
    assert error.get("field") == field


def test_a_report_is_final_once_the_month_and_the_grace_period_are_over(
    october: None, clock: Callable[[datetime], None]
) -> None:
    clock(AFTER_OCTOBER_GRACE)
    assert generated("2026-10")["status"] == "final"
    refused = post_report("2026-10")
    assert refused.status_code == 409
    assert body(refused)["error"]["code"] == "conflict"


def test_late_usage_for_a_final_month_is_billed_once_as_adjustments_next_month(
    october: None, clock: Callable[[datetime], None]
) -> None:
    clock(AFTER_OCTOBER_GRACE)
    generated("2026-10")
    final_csv = request("GET", "reports/2026-10").get_body()
    late_time = datetime(2026, 10, 31, 23, 0, tzinfo=UTC)
    send([event("aoai-product-subscription-one", 400_000, 0, late_time)], late_time, partition="1")
    send([event("aoai-product-subscription-one", 1_000_000, 0, DURING_NOVEMBER)], DURING_NOVEMBER, partition="2")
    clock(DURING_NOVEMBER)
    november = generated("2026-11")
    assert november["adjusted_periods"] == ["2026-10"]
    lines = pd.read_parquet(io.BytesIO(request("GET", "reports/2026-11", {"format": "parquet"}).get_body()))
    adjustments = lines[lines["charge_category"] == "adjustment"]
    assert adjustments[["adjusted_period", "subscription_id", "total_tokens"]].values.tolist() == [
        ["2026-10", "aoai-product-subscription-one", 400_000]
    ]
    assert request("GET", "reports/2026-10").get_body() == final_csv
    clock(datetime(2026, 12, 8, 2, tzinfo=UTC))
    generated("2026-11")
    december = generated("2026-12")
    assert december["adjusted_periods"] == []


AFTER_DECEMBER_GRACE = datetime(2027, 1, 7, 2, tzinfo=UTC)
LATE_OCTOBER = datetime(2026, 10, 31, 23, 0, tzinfo=UTC)


def adjusted_tokens(period: str, original: str) -> int:
    """The tokens ``period``'s report bills as adjustments of ``original``."""
    lines = pd.read_parquet(io.BytesIO(request("GET", f"reports/{period}", {"format": "parquet"}).get_body()))
    mine = lines[(lines["charge_category"] == "adjustment") & (lines["adjusted_period"] == original)]
    return int(mine["total_tokens"].sum())


def test_late_usage_is_billed_once_when_a_later_month_is_finalised_before_the_month_after_the_final(
    october: None, clock: Callable[[datetime], None]
) -> None:
    clock(AFTER_OCTOBER_GRACE)
    generated("2026-10")
    send([event("aoai-product-subscription-one", 400_000, 0, LATE_OCTOBER)], LATE_OCTOBER, partition="1")
    clock(AFTER_DECEMBER_GRACE)  # November's final was held back past December's
    december = generated("2026-12")
    november = generated("2026-11")
    january = generated("2027-01")
    assert (december["status"], november["status"], january["status"]) == ("final", "final", "draft")
    assert december["adjusted_periods"] == []
    assert november["adjusted_periods"] == ["2026-10"]
    assert [adjusted_tokens(p, "2026-10") for p in ("2026-11", "2026-12", "2027-01")] == [400_000, 0, 0]


def test_two_finals_made_at_once_bill_the_late_usage_of_an_earlier_final_once(
    october: None, clock: Callable[[datetime], None]
) -> None:
    clock(AFTER_OCTOBER_GRACE)
    generated("2026-10")
    send([event("aoai-product-subscription-two", 250_000, 0, LATE_OCTOBER)], LATE_OCTOBER, partition="3")
    clock(AFTER_DECEMBER_GRACE)
    context = runtime.services().reports
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def finalise(period: str) -> None:
        start.wait()
        try:
            report_service.generate(context, period)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=finalise, args=(period,)) for period in ("2026-11", "2026-12")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert adjusted_tokens("2026-11", "2026-10") + adjusted_tokens("2026-12", "2026-10") == 250_000
    generated("2027-01")
    assert adjusted_tokens("2027-01", "2026-10") == 0


def test_late_usage_of_a_final_month_is_found_without_reading_that_month_row_by_row(
    october: None, clock: Callable[[datetime], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock(AFTER_OCTOBER_GRACE)
    generated("2026-10")
    late_time = datetime(2026, 10, 20, 23, 0, tzinfo=UTC)
    send([event("aoai-product-subscription-two", 250_000, 0, late_time)], late_time, partition="3")

    def refuse(period: str) -> None:
        raise AssertionError(f"{period} was read row by row")

    monkeypatch.setattr(runtime.services().ledger, "period_rows", refuse)
    clock(DURING_NOVEMBER)
    november = generated("2026-11")
    assert november["adjusted_periods"] == ["2026-10"]
    lines = pd.read_parquet(io.BytesIO(request("GET", "reports/2026-11", {"format": "parquet"}).get_body()))
    adjustments = lines[lines["charge_category"] == "adjustment"]
    assert adjustments[["subscription_id", "total_tokens"]].values.tolist() == [
        ["aoai-product-subscription-two", 250_000]
    ]
    clock(datetime(2026, 12, 8, 2, tzinfo=UTC))
    generated("2026-11")
    assert generated("2026-12")["adjusted_periods"] == []


def test_the_timer_reconciles_against_a_monitor_export_and_finds_the_loss(
    october: None, clock: Callable[[datetime], None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = tmp_path / "appmetrics.csv"
    properties = '"{""Subscription ID"":""%s""}"'
    export.write_text(
        "TimeGenerated,Name,Sum,ItemCount,Properties\n"
        f"2026-10-20T12:00:00Z,Total Tokens,1100000,1,{properties % 'aoai-product-subscription-one'}\n"
        f"2026-10-20T12:00:00Z,Total Tokens,2500000,2,{properties % 'aoai-product-subscription-two'}\n"
        f"2026-10-20T12:00:00Z,Total Tokens,20,1,{properties % 'aoai-product-subscription-three'}\n"
    )
    monkeypatch.setenv("CHARGEBACK_MONITOR_EXPORT", str(export))
    runtime.reset()  # settings change restarts the app
    clock(datetime(2026, 11, 2, 2, tzinfo=UTC))
    timer = TimerRequestConverter.decode(meta.Datum(json.dumps({"IsPastDue": False}), "json"), trigger_metadata={})
    registered("reconcile_and_report").get_user_function()(timer)
    assert set(run_queue()) == {None}
    listing = {r["period"]: r for r in body(request("GET", "reports"))["reports"]}
    assert listing["2026-10"]["status"] == "draft"
    assert listing["2026-10"]["reconciliation"] == "reconciled"
    recon = json.loads(request("GET", "reports/2026-10", {"format": "json"}).get_body())["reconciliation"]
    statuses = {line["subscription_id"]: line["status"] for line in recon}
    assert statuses == {
        "aoai-product-subscription-one": "matched",
        "aoai-product-subscription-two": "ledger_short",
        "aoai-product-subscription-three": "matched",
    }


def test_the_timer_finalises_last_month_once_its_grace_period_is_over(
    october: None, clock: Callable[[datetime], None]
) -> None:
    timer = TimerRequestConverter.decode(meta.Datum(json.dumps({"IsPastDue": False}), "json"), trigger_metadata={})
    clock(datetime(2026, 11, 3, 2, tzinfo=UTC))
    registered("reconcile_and_report").get_user_function()(timer)
    assert set(run_queue()) == {None}
    clock(AFTER_OCTOBER_GRACE)
    registered("reconcile_and_report").get_user_function()(timer)
    assert set(run_queue()) == {None}
    listing = {r["period"]: r["status"] for r in body(request("GET", "reports"))["reports"]}
    assert listing == {"2026-10": "final", "2026-11": "draft"}


def csv_rows(response: func.HttpResponse) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.get_body().decode("utf-8-sig"))))


def test_a_subscription_filter_narrows_every_format_to_that_subscription(october: None) -> None:
    generated("2026-10")
    response = request("GET", "reports/2026-10", {"subscription": "aoai-product-subscription-two"})
    assert response.status_code == 200
    assert {row["subscription_id"] for row in csv_rows(response)} == {"aoai-product-subscription-two"}
    assert "aoai-product-subscription-two" in response.headers["Content-Disposition"]
    document = json.loads(
        request(
            "GET", "reports/2026-10", {"format": "json", "subscription": "aoai-product-subscription-two"}
        ).get_body()
    )
    assert document["totals"]["cost"] == "5.00"


def test_a_cost_center_filter_keeps_that_cost_centers_lines(october: None) -> None:
    generated("2026-10")
    rows = csv_rows(request("GET", "reports/2026-10", {"cost_center": "CC-1001"}))
    assert {row["cost_center"] for row in rows} == {"CC-1001"}
    assert {row["subscription_id"] for row in rows} == {"aoai-product-subscription-one"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cost_center": "CC-9999"}, "cost_center"),
        ({"subscription": "no-such-subscription"}, "subscription"),
        ({"cost_center": "CC-9999", "subscription": "aoai-product-subscription-one"}, "cost_center"),
        ({"subscription": "aoai-product-subscription-one", "cost_center": "CC-1002"}, "subscription"),
        ({"subscription": "no-such-subscription", "format": "html"}, "subscription"),
    ],
)
def test_a_filter_naming_nothing_the_report_or_the_map_knows_is_a_404_with_a_json_error(
    october: None, params: dict[str, str], field: str
) -> None:
    generated("2026-10")
    response = request("GET", "reports/2026-10", params)
    assert (response.status_code, response.mimetype) == (404, "application/json")
    error = body(response)["error"]
    assert (error["code"], error["field"]) == ("not_found", field)
    assert params[field] in error["message"]


@pytest.mark.parametrize(
    ("params", "subscriptions"),
    [
        ({"cost_center": "CC-4001"}, set()),
        ({"subscription": "finance-copilot"}, set()),
        ({"cost_center": "unallocated"}, {"aoai-product-subscription-three"}),
        ({"subscription": "aoai-product-subscription-three"}, {"aoai-product-subscription-three"}),
    ],
    ids=["mapped-cost-center-without-usage", "mapped-subscription-without-usage", "unallocated", "unmapped-in-report"],
)
def test_a_filter_naming_a_known_cost_center_or_subscription_answers_its_lines_even_none(
    october: None, params: dict[str, str], subscriptions: set[str]
) -> None:
    generated("2026-10")
    response = request("GET", "reports/2026-10", params)
    assert response.status_code == 200
    assert {row["subscription_id"] for row in csv_rows(response)} == subscriptions


def test_a_filtered_download_has_its_own_etag(october: None) -> None:
    generated("2026-10")
    whole = request("GET", "reports/2026-10").headers["ETag"]
    narrowed = request("GET", "reports/2026-10", {"subscription": "aoai-product-subscription-one"})
    assert narrowed.headers["ETag"] != whole
    again = request(
        "GET",
        "reports/2026-10",
        {"subscription": "aoai-product-subscription-one"},
        {"If-None-Match": narrowed.headers["ETag"]},
    )
    assert again.status_code == 304


def test_a_subscription_id_that_is_a_formula_is_neutralised_in_csv_and_xlsx(
    app_settings: dict[str, str], clock: Callable[[datetime], None]
) -> None:
    formula = '=HYPERLINK("http://evil.example","click")'
    send([event(formula, 100, 10, OCTOBER_DAY)], OCTOBER_DAY)
    clock(DURING_OCTOBER)
    generated("2026-10")
    subscriptions = {row["subscription_id"] for row in csv_rows(request("GET", "reports/2026-10"))}
    assert "'" + formula in subscriptions
    assert formula not in subscriptions
    workbook = openpyxl.load_workbook(io.BytesIO(request("GET", "reports/2026-10", {"format": "xlsx"}).get_body()))
    cells = [cell.value for sheet in workbook.worksheets for row in sheet.iter_rows() for cell in row]
    assert formula not in cells
    assert "'" + formula in cells


def test_a_reconciliation_failure_reaches_the_answer_and_the_page_without_any_path(
    october: None, clock: Callable[[datetime], None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "secret-folder" / "appmetrics.csv"
    broken.parent.mkdir()
    broken.write_text("TimeGenerated,Name\nnot a time,Total Tokens\n")
    monkeypatch.setenv("CHARGEBACK_MONITOR_EXPORT", str(broken))
    runtime.reset()
    clock(datetime(2026, 11, 2, 2, tzinfo=UTC))
    manifest = generated("2026-10")
    assert manifest["reconciliation"]["status"] == "failed"
    page = request("GET", "reports/2026-10", {"format": "html"}).get_body().decode()
    for text in (json.dumps(manifest), page):
        assert "secret-folder" not in text
        assert str(tmp_path) not in text


@pytest.mark.parametrize(
    ("job_id", "status"), [("not-a-job", 400), ("../jobs/x", 400), ("0" * 32, 404)], ids=["word", "path", "unknown"]
)
def test_a_bad_or_unknown_job_id_gets_a_4xx_with_a_json_reason(
    app_settings: dict[str, str], job_id: str, status: int
) -> None:
    req = func.HttpRequest("GET", f"/api/report-jobs/{job_id}", route_params={"id": job_id}, body=b"")
    response = registered("report_job").get_user_function()(req)
    assert response.status_code == status
    assert body(response)["error"]["message"]


@pytest.mark.parametrize("content", ["not json", '{"period": "2026-10"}', '{"job": "' + "0" * 32 + '", "period": 1}'])
def test_a_queue_message_the_app_did_not_write_fails_so_the_host_moves_it_to_poison(
    app_settings: dict[str, str], content: str
) -> None:
    message = QueueMessageInConverter.decode(meta.Datum(content, "string"), trigger_metadata={})
    with pytest.raises(ChargebackError):
        registered("generate_report").get_user_function()(message)


def test_the_queue_function_reads_the_report_queue_through_the_storage_connection() -> None:
    [trigger] = [
        b
        for b in json.loads(registered("generate_report").get_function_json())["bindings"]
        if b["type"] == "queueTrigger"
    ]
    assert (trigger["queueName"], trigger["connection"]) == ("%CHARGEBACK_REPORT_QUEUE%", "ChargebackStorage")

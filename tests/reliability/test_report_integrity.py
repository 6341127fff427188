"""One final per month and whole generations, with POSTs, the timer and events racing, and storage failing."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import orjson
import pytest
from azure.functions import meta
from azure.functions.timer import TimerRequestConverter

from chargeback.app import runtime
from chargeback.domain.errors import ReportScheduleError
from chargeback.reports import service as report_service
from devtools.emulator import Azurite
from devtools.hostshape import HostEvent
from tests.functions import deliver, registered
from tests.reliability import report_workers
from tests.reliability.proxy import Action, FaultProxy, Rule

pytestmark = pytest.mark.azurite

SPAWN = multiprocessing.get_context("spawn")
OCTOBER = "2026-10"
OCTOBER_DAY = datetime(2026, 10, 20, 12, tzinfo=UTC)
DURING_OCTOBER = datetime(2026, 10, 25, 9, tzinfo=UTC)
AFTER_OCTOBER_GRACE = datetime(2026, 11, 7, 2, tzinfo=UTC)
GENERATION_FILE = rf"PUT /devstoreaccount1/[^/ ]+/{OCTOBER}/generations/"
DRAFT_POINTER = rf"PUT /devstoreaccount1/[^/ ]+/{OCTOBER}/draft\.json"


def send(subscription: str, first: int, count: int, *, partition: str = "0") -> None:
    bodies = [
        orjson.dumps(
            {
                "schema": "chargeback.usage/v1",
                "subscriptionId": f"{subscription}-{n % 7}",
                "eventTime": OCTOBER_DAY.isoformat(),
                "model": "gpt-4o",
                "deployment": "gpt-4o",
                "operationId": "ChatCompletions_Create",
                "usage": {"prompt_tokens": 1000 + n, "completion_tokens": 10},
            }
        )
        for n in range(first, first + count)
    ]
    deliver([HostEvent(body, first + i, OCTOBER_DAY) for i, body in enumerate(bodies)], partition_id=partition)


def at(moment: datetime) -> None:
    runtime.services().clock = lambda: moment


def post(period: str = OCTOBER) -> func.HttpResponse:
    request = func.HttpRequest("POST", f"/api/reports/{period}", route_params={"period": period}, body=b"")
    response: func.HttpResponse = registered("regenerate_report").get_user_function()(request)
    return response


def get(params: dict[str, str], period: str = OCTOBER) -> func.HttpResponse:
    request = func.HttpRequest(
        "GET", f"/api/reports/{period}", params=params, route_params={"period": period}, body=b""
    )
    response: func.HttpResponse = registered("report").get_user_function()(request)
    return response


def run_timer() -> None:
    timer = TimerRequestConverter.decode(meta.Datum(json.dumps({"IsPastDue": False}), "json"), trigger_metadata={})
    registered("reconcile_and_report").get_user_function()(timer)


def served() -> dict[str, Any]:
    manifest = report_service.current(runtime.services().reports, OCTOBER)
    assert manifest is not None
    return dict(manifest)


def generations(period: str = OCTOBER) -> set[str]:
    container = runtime.services().container(runtime.services().settings.storage.reports_container)
    prefix = f"{period}/generations/"
    return {blob.name[len(prefix) :].split("/", 1)[0] for blob in container.list_blobs(name_starts_with=prefix)}


def assert_served_whole() -> dict[str, Any]:
    """Every format downloads with the bytes the served manifest hashed: one generation, whole."""
    manifest = served()
    for entry in manifest["files"]:
        response = get({"format": entry["format"]})
        assert response.status_code == 200
        digest = hashlib.sha256(response.get_body()).hexdigest()
        assert (digest, response.headers["ETag"]) == (entry["sha256"], f'"{entry["sha256"]}"'), entry["format"]
    return manifest


def in_threads(work: list[Callable[[], Any]]) -> list[Any]:
    barrier = threading.Barrier(len(work), timeout=60)
    results: list[Any] = [None] * len(work)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = work[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return results


@pytest.fixture(name="october")
def fixture_october(app_settings: dict[str, str]) -> None:
    send("team", 0, 200)


def test_posts_in_threads_and_processes_and_the_timer_racing_while_events_arrive_make_exactly_one_final(
    october: None,
) -> None:
    at(AFTER_OCTOBER_GRACE)
    moment = AFTER_OCTOBER_GRACE.isoformat()
    barrier = SPAWN.Barrier(3, timeout=120)
    answers: multiprocessing.Queue[int] = SPAWN.Queue()
    settings = dict(os.environ)
    rivals = [
        SPAWN.Process(target=report_workers.regenerate, args=(settings, moment, OCTOBER, barrier, answers)),
        SPAWN.Process(target=report_workers.regenerate, args=(settings, moment, OCTOBER, barrier, answers)),
        SPAWN.Process(target=report_workers.run_timer, args=(settings, moment, barrier, answers)),
    ]
    for rival in rivals:
        rival.start()
    work: list[Callable[[], Any]] = [post, post, post, run_timer, lambda: send("late", 0, 100, partition="3")]
    local = in_threads(work)
    remote = sorted(answers.get(timeout=300) for _ in rivals)
    for rival in rivals:
        rival.join()
    assert [rival.exitcode for rival in rivals] == [0, 0, 0]
    posts = [response.status_code for response in local[:3]] + [code for code in remote if code]
    assert set(posts) <= {200, 409}
    final = assert_served_whole()
    assert final["status"] == "final"
    assert generations() == {final["generation"]}, "a losing generation was left behind or committed"
    winners = [r for r in local[:3] if r.status_code == 200]
    assert all(json.loads(r.get_body())["generation"] == final["generation"] for r in winners)
    assert post().status_code == 409
    assert served() == final


def test_drafts_racing_each_other_and_downloads_never_serve_a_torn_generation(october: None) -> None:
    at(DURING_OCTOBER)
    assert post().status_code == 200

    def download_all() -> int:
        for _ in range(3):
            assert_served_whole()
        return 0

    results = in_threads([post, post, post, post, download_all, download_all])
    codes = [response.status_code for response in results[:4]]
    assert set(codes) <= {200, 409}
    assert 200 in codes
    draft = assert_served_whole()
    assert draft["status"] == "draft"
    assert len(generations()) == 1 + codes.count(200), "a losing draft's files were kept"


def test_a_slow_draft_that_commits_after_the_final_never_replaces_it(
    blob_proxied: dict[str, str], proxy: FaultProxy
) -> None:
    send("team", 0, 50)
    stall = proxy.add(Rule(DRAFT_POINTER, Action.STALL_REQUEST))
    context = dataclasses.replace(runtime.services().reports, clock=lambda: DURING_OCTOBER)
    slow = threading.Thread(target=report_service.generate, args=(context, OCTOBER))
    slow.start()
    held = proxy.stalled()
    at(AFTER_OCTOBER_GRACE)
    final = json.loads(post().get_body())
    held.release()
    slow.join(timeout=120)
    assert stall.fired == 1
    assert final["status"] == "final"
    assert served() == final
    assert assert_served_whole()["generation"] == final["generation"]
    listing = json.loads(
        registered("list_reports").get_user_function()(func.HttpRequest("GET", "/api/reports", body=b"")).get_body()
    )
    assert [(r["period"], r["status"]) for r in listing["reports"]] == [(OCTOBER, "final")]


@pytest.mark.parametrize(
    ("pattern", "after"),
    [(GENERATION_FILE, 0), (GENERATION_FILE, 3), (GENERATION_FILE, 7), (DRAFT_POINTER, 0)],
    ids=["before-the-first-file", "between-files", "after-the-last-format", "at-the-commit-point"],
)
def test_a_storage_failure_mid_generation_leaves_the_previous_generation_served_whole(
    blob_proxied: dict[str, str], proxy: FaultProxy, pattern: str, after: int
) -> None:
    send("team", 0, 50)
    at(DURING_OCTOBER)
    assert post().status_code == 200
    before = assert_served_whole()
    send("team", 50, 50, partition="1")
    refused = proxy.add(Rule(pattern, Action.FAIL, after=after, status=403))  # not retried by the SDK
    failed = post()
    assert refused.fired == 1
    assert failed.status_code == 500
    assert "devstoreaccount1" not in failed.get_body().decode()
    assert assert_served_whole() == before
    assert post().status_code == 200
    after_recovery = assert_served_whole()
    assert after_recovery["generation"] != before["generation"]
    assert after_recovery["grand_total"] != before["grand_total"]


def test_the_timer_goes_on_with_the_other_months_when_one_fails_and_names_it(
    blob_proxied: dict[str, str], proxy: FaultProxy
) -> None:
    send("team", 0, 50)
    at(datetime(2026, 11, 3, 2, tzinfo=UTC))
    proxy.add(Rule(GENERATION_FILE, Action.FAIL, status=403, times=1_000))
    with pytest.raises(ReportScheduleError) as failed:
        run_timer()
    assert list(failed.value.failed) == [OCTOBER]
    assert "devstoreaccount1" not in str(failed.value)
    assert report_service.current(runtime.services().reports, "2026-11") is not None
    assert report_service.current(runtime.services().reports, OCTOBER) is None


def test_old_draft_generations_are_cleaned_up_and_the_final_is_kept(october: None) -> None:
    context = dataclasses.replace(runtime.services().reports, keep_unreferenced=timedelta(0))
    drafts = [
        report_service.generate(dataclasses.replace(context, clock=lambda: DURING_OCTOBER), OCTOBER) for _ in range(3)
    ]
    assert generations() == {drafts[-1]["generation"]}
    final = report_service.generate(dataclasses.replace(context, clock=lambda: AFTER_OCTOBER_GRACE), OCTOBER)
    assert generations() == {final["generation"]}
    assert report_service.current(context, OCTOBER) == final


@pytest.fixture(name="proxy")
def fixture_blob_proxy(azurite: Azurite) -> Iterator[FaultProxy]:
    with FaultProxy(azurite.blob_port) as proxy:
        yield proxy


@pytest.fixture(name="blob_proxied")
def fixture_blob_proxied(
    app_settings: dict[str, str], azurite: Azurite, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The app's settings with ChargebackStorage's BlobEndpoint at the proxy; containers already made."""
    connection = azurite.connection_string.replace(azurite.blob_endpoint, proxy.table_endpoint)
    monkeypatch.setenv("ChargebackStorage", connection)
    runtime.reset()
    runtime.services().reports  # noqa: B018 - create the container and tables before any fault
    return {**app_settings, "ChargebackStorage": connection}

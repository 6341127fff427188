"""One final per month and whole generations, with POSTs, the timer and events racing, and storage failing."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import orjson
import pytest
from azure.functions import meta
from azure.functions.queue import QueueMessageInConverter
from azure.functions.timer import TimerRequestConverter

from chargeback.app import runtime
from chargeback.domain.errors import ReportScheduleError, TransientStorageError
from chargeback.reports import jobs as report_jobs
from chargeback.reports import service as report_service
from devtools.emulator import Azurite
from devtools.hostshape import HostEvent, take_queue_messages
from tests.functions import deliver, followed, job, post_report, registered, run_queue
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
    return post_report(period)


def get(params: dict[str, str], period: str = OCTOBER) -> func.HttpResponse:
    request = func.HttpRequest(
        "GET", f"/api/reports/{period}", params=params, route_params={"period": period}, body=b""
    )
    response: func.HttpResponse = registered("report").get_user_function()(request)
    return followed(response)


def run_timer() -> None:
    timer = TimerRequestConverter.decode(meta.Datum(json.dumps({"IsPastDue": False}), "json"), trigger_metadata={})
    registered("reconcile_and_report").get_user_function()(timer)


def served() -> dict[str, Any]:
    manifest = report_service.current(runtime.services().reports, OCTOBER)
    assert manifest is not None
    return dict(manifest)


def generations(period: str = OCTOBER) -> set[str]:
    container = runtime.services().storage.container(runtime.services().settings.storage.reports_container)
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


def jobs_done(answers: list[func.HttpResponse]) -> list[dict[str, Any]]:
    return [job(json.loads(answer.get_body())["id"]) for answer in answers]


def take() -> list[func.QueueMessage]:
    names = runtime.services().settings.storage
    assert names.connection_string is not None
    return take_queue_messages(names.connection_string, names.report_queue)


def generate_report(message: func.QueueMessage) -> None:
    registered("generate_report").get_user_function()(message)


def test_posts_the_timer_and_queue_workers_in_threads_and_processes_racing_while_events_arrive_make_one_final(
    october: None,
) -> None:
    at(DURING_OCTOBER)
    assert post().status_code == 202
    assert run_queue() == [None]  # a draft, so the timer finalises October too
    at(AFTER_OCTOBER_GRACE)
    moment = AFTER_OCTOBER_GRACE.isoformat()
    settings = dict(os.environ)
    barrier = SPAWN.Barrier(2, timeout=120)
    answers: multiprocessing.Queue[int] = SPAWN.Queue()
    poster = SPAWN.Process(target=report_workers.post, args=(settings, moment, OCTOBER, barrier, answers))
    poster.start()
    requested = in_threads([post, post, post, run_timer, barrier.wait, lambda: send("late", 0, 100, partition="3")])
    assert answers.get(timeout=120) == 202
    poster.join()
    messages = take()
    october_jobs = [m for m in messages if json.loads(m.get_body())["period"] == OCTOBER]
    assert len(october_jobs) == 5, "three POSTs here, one in another process and the timer's"
    contents = [m.get_body().decode() for m in october_jobs]
    workers_barrier = SPAWN.Barrier(3, timeout=120)
    workers = [
        SPAWN.Process(
            target=report_workers.work, args=(settings, moment, contents[i : i + 1], workers_barrier, answers)
        )
        for i in (3, 4)
    ]
    for worker in workers:
        worker.start()
    work: list[Callable[[], Any]] = [functools.partial(generate_report, m) for m in october_jobs[:3]]
    in_threads([*work, workers_barrier.wait, lambda: send("later", 0, 100, partition="4")])
    assert [answers.get(timeout=300) for _ in workers] == [0, 0]
    for worker in workers:
        worker.join()
    assert [worker.exitcode for worker in workers] == [0, 0]
    final = assert_served_whole()
    assert final["status"] == "final"
    assert final["generation"] in generations()
    assert len(generations()) == 2, "a losing generation was left behind (the draft's stays an hour)"
    outcomes = [job(json.loads(m.get_body())["job"]) for m in october_jobs]
    done = [o for o in outcomes if o["status"] == "done"]
    assert [o["generation"] for o in done] == [final["generation"]]
    assert all(o["status"] == "failed" and o["reason"] for o in outcomes if o not in done)
    assert all(r.status_code == 202 for r in requested[:3])
    assert post().status_code == 409
    assert served() == final


def test_drafts_racing_each_other_and_downloads_never_serve_a_torn_generation(october: None) -> None:
    at(DURING_OCTOBER)
    assert post().status_code == 202
    assert run_queue() == [None]
    answers = [post() for _ in range(4)]

    def download_all() -> int:
        for _ in range(3):
            assert_served_whole()
        return 0

    in_threads([*(functools.partial(generate_report, m) for m in take()), download_all, download_all])
    outcomes = jobs_done(answers)
    assert {o["status"] for o in outcomes} <= {"done", "failed"}
    done = [o for o in outcomes if o["status"] == "done"]
    assert done
    draft = assert_served_whole()
    assert draft["status"] == "draft"
    assert draft["generation"] in {o["generation"] for o in done}
    assert len(generations()) == 1 + len(done), "a losing draft's files were kept"


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
    answer = post()
    assert run_queue() == [None]
    [finished] = jobs_done([answer])
    final = finished["report"]
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
    assert post().status_code == 202
    assert run_queue() == [None]
    before = assert_served_whole()
    send("team", 50, 50, partition="1")
    refused = proxy.add(Rule(pattern, Action.FAIL, after=after, status=403))  # not retried by the SDK
    answer = post()
    assert run_queue() == [None]
    [failed] = jobs_done([answer])
    assert refused.fired == 1
    assert failed["status"] == "failed"
    assert "devstoreaccount1" not in json.dumps(failed)
    assert assert_served_whole() == before
    assert post().status_code == 202
    assert run_queue() == [None]
    after_recovery = assert_served_whole()
    assert after_recovery["generation"] != before["generation"]
    assert after_recovery["grand_total"] != before["grand_total"]


def test_the_timers_months_go_on_when_one_fails_and_its_job_says_why(
    blob_proxied: dict[str, str], proxy: FaultProxy
) -> None:
    send("team", 0, 50)
    at(datetime(2026, 11, 3, 2, tzinfo=UTC))
    proxy.add(Rule(GENERATION_FILE, Action.FAIL, status=403, times=1_000))
    run_timer()
    messages = take()
    assert run_queue() == []
    for message in messages:
        generate_report(message)
    outcomes = {o["period"]: o for o in (job(json.loads(m.get_body())["job"]) for m in messages)}
    assert {period: o["status"] for period, o in outcomes.items()} == {OCTOBER: "failed", "2026-11": "done"}
    assert outcomes[OCTOBER]["reason"] == "storage refused a write or read; see the logs"
    assert report_service.current(runtime.services().reports, "2026-11") is not None
    assert report_service.current(runtime.services().reports, OCTOBER) is None


def test_a_timer_that_cannot_queue_a_month_queues_the_others_and_names_it(app_settings: dict[str, str]) -> None:
    at(datetime(2026, 11, 3, 2, tzinfo=UTC))
    jobs = runtime.services().report_jobs
    refusing = FailingQueue(jobs.queue, OCTOBER)
    with pytest.raises(ReportScheduleError) as failed:
        report_jobs.schedule(dataclasses.replace(jobs, queue=refusing))
    assert list(failed.value.failed) == [OCTOBER]
    assert [json.loads(m.get_body())["period"] for m in take()] == ["2026-11"]


@dataclasses.dataclass
class FailingQueue:
    """A queue that refuses the messages of one period, as a storage outage would."""

    queue: report_jobs.JobQueue
    period: str

    def send(self, message: str) -> None:
        if json.loads(message)["period"] == self.period:
            raise TransientStorageError("queue a report job: storage unreachable")
        self.queue.send(message)


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


def killed_mid_generation(settings: dict[str, str], moment: datetime, message: str, delivery: int, tmp: Path) -> None:
    """Run the queue function in a process of its own and kill it once the generation is under way."""
    reached = tmp / f"reached-{delivery}"
    worker = SPAWN.Process(
        target=report_workers.stalled, args=(settings, moment.isoformat(), message, delivery, str(reached))
    )
    worker.start()
    deadline = time.monotonic() + 120
    while not reached.exists():
        assert worker.is_alive() and time.monotonic() < deadline, "the generation never got under way"
        time.sleep(0.05)
    worker.kill()
    worker.join()
    assert worker.exitcode == -signal.SIGKILL


def test_a_generation_killed_mid_way_is_taken_over_by_the_next_delivery_and_ends_done(
    october: None, app_settings: dict[str, str], tmp_path: Path
) -> None:
    accepted = post()
    [message] = take()
    text = message.get_body().decode()
    at(DURING_OCTOBER)
    killed_mid_generation(app_settings, DURING_OCTOBER, text, 1, tmp_path)
    job_id = json.loads(accepted.get_body())["id"]
    assert job(job_id)["status"] == "running"
    redelivered = QueueMessageInConverter.decode(
        meta.Datum(text, "string"), trigger_metadata={"DequeueCount": meta.Datum(2, "int")}
    )
    generate_report(redelivered)
    done = job(job_id)
    assert (done["status"], done["attempt"]) == ("done", 2)
    assert_served_whole()


def test_a_generation_killed_on_every_delivery_ends_failed_past_its_lease_or_from_the_poison_queue(
    october: None, app_settings: dict[str, str], tmp_path: Path
) -> None:
    accepted = post()
    [message] = take()
    text = message.get_body().decode()
    job_id = json.loads(accepted.get_body())["id"]
    at(DURING_OCTOBER)
    killed_mid_generation(app_settings, DURING_OCTOBER, text, 5, tmp_path)
    at(DURING_OCTOBER + report_jobs.JOB_LEASE + timedelta(seconds=1))
    failed = job(job_id)
    assert failed["status"] == "failed"
    assert "stopped without finishing" in failed["reason"]
    registered("report_job_gave_up").get_user_function()(message)  # the host's poison queue, later
    assert job(job_id) == failed

"""The demo's queue trigger plays the host's: leases, dequeue counts, retries after the visibility timeout, poison."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from chargeback.app import runtime
from devtools.local_host import registered
from devtools.queue_host import POISON_SUFFIX, QueueOptions, QueueTrigger
from tests.functions import job, post_report
from tests.support import ROOT

pytestmark = pytest.mark.azurite

RIGHT_AWAY = QueueOptions(max_dequeue_count=5, visibility_timeout=timedelta(0), batch_size=1)
"""The host's counts with no wait between tries, so a test sees all five."""


def queue(app_settings: dict[str, str], name: str | None = None) -> QueueClient:
    client = QueueClient.from_connection_string(
        app_settings["ChargebackStorage"],
        name or app_settings["CHARGEBACK_REPORT_QUEUE"],
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )
    if name is None:
        runtime.services().storage.report_queue()  # the app creates its queue before first use
    return client


def contents(client: QueueClient) -> list[str]:
    return [message.content for message in client.peek_messages(max_messages=32)]


class Recorder:
    """A queue function that records what it was handed and fails the first ``failures`` times."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.seen: list[tuple[str, int | None]] = []

    def __call__(self, message: func.QueueMessage) -> None:
        self.seen.append((message.get_body().decode(), message.dequeue_count))
        if len(self.seen) <= self.failures:
            raise RuntimeError("transient")


def trigger(app_settings: dict[str, str], function: Any, options: QueueOptions = RIGHT_AWAY) -> QueueTrigger:
    return QueueTrigger(app_settings["ChargebackStorage"], app_settings["CHARGEBACK_REPORT_QUEUE"], function, options)


def test_the_options_are_the_ones_host_json_gives_the_host() -> None:
    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    options = QueueOptions.from_host_json()
    assert (options.max_dequeue_count, options.batch_size) == (queues["maxDequeueCount"], queues["batchSize"])
    assert options.visibility_timeout == timedelta(minutes=1)


def test_a_message_the_function_takes_is_handed_over_once_and_deleted(app_settings: dict[str, str]) -> None:
    queue(app_settings).send_message("hello")
    recorder = Recorder()
    assert trigger(app_settings, recorder).drain() == 1
    assert recorder.seen == [("hello", 1)]
    assert contents(queue(app_settings)) == []


def test_a_failed_message_comes_back_with_a_rising_dequeue_count_until_it_succeeds(
    app_settings: dict[str, str],
) -> None:
    queue(app_settings).send_message("flaky")
    recorder = Recorder(failures=2)
    played = trigger(app_settings, recorder)
    played.drain()
    assert recorder.seen == [("flaky", 1), ("flaky", 2), ("flaky", 3)]
    assert (played.played.failed, played.played.succeeded, played.played.poisoned) == (2, 1, 0)


def test_a_message_that_fails_five_times_is_moved_to_the_poison_queue(app_settings: dict[str, str]) -> None:
    queue(app_settings).send_message("doomed")
    recorder = Recorder(failures=99)
    played = trigger(app_settings, recorder)
    played.drain()
    assert [count for _, count in recorder.seen] == [1, 2, 3, 4, 5]
    assert contents(queue(app_settings)) == []
    assert contents(queue(app_settings, app_settings["CHARGEBACK_REPORT_QUEUE"] + POISON_SUFFIX)) == ["doomed"]
    assert played.played.poisoned == 1


def test_a_failed_message_waits_out_the_visibility_timeout(app_settings: dict[str, str]) -> None:
    queue(app_settings).send_message("later")
    recorder = Recorder(failures=1)
    played = trigger(app_settings, recorder, QueueOptions(5, timedelta(minutes=1), 1))
    played.drain()
    assert recorder.seen == [("later", 1)]
    assert contents(queue(app_settings)) == []  # invisible until the minute is over, not gone
    assert queue(app_settings).get_queue_properties().approximate_message_count == 1


def test_a_message_back_past_the_limit_goes_to_poison_without_running(app_settings: dict[str, str]) -> None:
    """A host that died during the fifth try leaves a message that comes back a sixth time."""
    client = queue(app_settings)
    client.send_message("orphan")
    for _ in range(5):  # taken and lost five times: each receive counts a dequeue
        [taken] = client.receive_messages(max_messages=1, visibility_timeout=30)
        client.update_message(taken.id, pop_receipt=taken.pop_receipt, visibility_timeout=0)
    recorder = Recorder()
    trigger(app_settings, recorder).drain()
    assert recorder.seen == []
    assert contents(queue(app_settings, app_settings["CHARGEBACK_REPORT_QUEUE"] + POISON_SUFFIX)) == ["orphan"]


def test_a_posted_report_job_is_run_to_done_by_the_registered_function(app_settings: dict[str, str]) -> None:
    posted = post_report("2026-10")
    assert posted.status_code == 202
    queued = json.loads(posted.get_body())
    assert trigger(app_settings, registered("generate_report").get_user_function()).drain() == 1
    assert job(queued["id"])["status"] == "done"


def test_a_message_the_app_did_not_write_ends_in_poison_after_five_tries(app_settings: dict[str, str]) -> None:
    queue(app_settings).send_message("not a job")
    played = trigger(app_settings, registered("generate_report").get_user_function())
    played.drain()
    assert (played.played.failed, played.played.poisoned) == (5, 1)
    assert contents(queue(app_settings, app_settings["CHARGEBACK_REPORT_QUEUE"] + POISON_SUFFIX)) == ["not a job"]


def test_polling_in_the_background_takes_what_arrives_until_stopped(app_settings: dict[str, str]) -> None:
    recorder = Recorder()
    with trigger(app_settings, recorder) as played:
        queue(app_settings).send_message("arrives later")
        for _ in range(100):
            if recorder.seen:
                break
            played._stop.wait(0.1)
    assert recorder.seen == [("arrives later", 1)]

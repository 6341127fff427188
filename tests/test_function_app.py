"""The registered functions ingest host-shaped batches into Azurite and serve the totals."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import pytest

from chargeback.app import runtime
from chargeback.app.runtime import Services
from chargeback.app.settings import Settings
from chargeback.domain.errors import ConfigurationError
from chargeback.ingestion.ledger import Ledger
from devtools.hostshape import HostEvent
from tests.functions import deliver, get, registered
from tests.support import BAD_INPUT, SAMPLES

pytestmark = pytest.mark.azurite

ENQUEUED = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)


def host_events(bodies: list[bytes], first_sequence: int = 0) -> list[HostEvent]:
    return [HostEvent(body, first_sequence + i, ENQUEUED) for i, body in enumerate(bodies)]


def sample_bodies() -> list[bytes]:
    return [line for path in sorted(SAMPLES.glob("*.jsonl")) for line in path.read_bytes().splitlines() if line]


def usage(period: str) -> tuple[int, dict[str, Any]]:
    response = get("get_usage", f"/api/usage/{period}", {"period": period})
    return response.status_code, json.loads(response.get_body())


def function_json(name: str) -> dict[str, Any]:
    """The function's metadata exactly as the host indexes it."""
    document: dict[str, Any] = json.loads(registered(name).get_function_json())
    return document


def subscription(document: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [s for s in document["subscriptions"] if s["subscription_id"] == name]
    return cast(dict[str, Any], found)


def test_the_ingest_function_is_registered_as_the_design_requires() -> None:
    metadata = function_json("ingest_usage")
    [binding] = [b for b in metadata["bindings"] if b["type"] == "eventHubTrigger"]
    assert binding["cardinality"].lower() == "many"
    assert binding["eventHubName"] == "%EVENTHUB_NAME%"
    assert binding["consumerGroup"] == "%EVENTHUB_CONSUMER_GROUP%"
    assert binding["connection"] == "EventHubConnection"
    assert binding["dataType"].lower() == "binary"
    retry = registered("ingest_usage").get_settings_dict("retry_policy")
    assert (retry["strategy"], retry["max_retry_count"]) == ("exponential_backoff", "-1")


def test_the_usage_endpoint_requires_a_function_key() -> None:
    [trigger] = [b for b in function_json("get_usage")["bindings"] if b["type"] == "httpTrigger"]
    assert (trigger["authLevel"], trigger["route"], trigger["methods"]) == ("FUNCTION", "usage/{period}", ["GET"])


def test_every_gateway_sample_is_counted_through_the_registered_function(app_settings: dict[str, str]) -> None:
    deliver(host_events(sample_bodies()), partition_id="0")
    status, document = usage("2026-11")
    assert status == 200
    assert document["totals"]["requests"] == 9
    assert document["totals"]["total_tokens"] == 2359 + 512 + 27 + 19 + 24 + 27 + 1285 + 400 + 1
    one = subscription(document, "aoai-product-subscription-one")
    assert (one["requests"], one["total_tokens"], one["unsplit_tokens"]) == (3, 2359 + 27 + 27, 27)
    assert (one["prompt_tokens"], one["completion_tokens"], one["cached_tokens"]) == (2048 + 12, 311 + 15, 1536)
    assert document["dead_letters"] == 0


def test_a_subscription_that_sent_only_totals_reports_its_split_as_unknown(app_settings: dict[str, str]) -> None:
    deliver(host_events([orjson.dumps({"SubscriptionId": "toolkit", "TotalTokens": "27"})]), partition_id="0")
    toolkit = subscription(usage("2026-11")[1], "toolkit")
    assert (toolkit["prompt_tokens"], toolkit["completion_tokens"], toolkit["total_tokens"]) == (None, None, 27)
    assert toolkit["models"][0]["model"] == "unknown"


def test_redelivering_every_batch_changes_no_total(app_settings: dict[str, str]) -> None:
    events = host_events(sample_bodies())
    deliver(events[:5], partition_id="0")
    deliver(events, partition_id="0")
    deliver(events[3:], partition_id="0")
    deliver(events, partition_id="0")
    assert usage("2026-11")[1]["totals"]["requests"] == 9


def test_bad_events_are_dead_lettered_with_their_reason_while_good_ones_count(
    app_settings: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    good = orjson.dumps({"SubscriptionId": "good", "TotalTokens": "10"})
    bodies = [good]
    for _, body, _ in BAD_INPUT:
        bodies += [body, good]
    caplog.set_level(logging.INFO, logger="chargeback.ingestion.ingest")
    deliver(host_events(bodies, first_sequence=100), partition_id="2")
    _, document = usage("2026-11")
    assert subscription(document, "good")["total_tokens"] == 10 * (len(BAD_INPUT) + 1)
    assert document["dead_letters"] == len(BAD_INPUT)
    services = runtime.services()
    table = services.storage.table(services.settings.storage.dead_letter_table)
    reasons = {
        int(entity["RowKey"].rsplit("|", 1)[1]): entity["reason"]
        for entity in table.query_entities("PartitionKey eq '2026-11-27'")
    }
    expected = {100 + 2 * i + 1: reason for i, (_, _, reason) in enumerate(BAD_INPUT)}
    assert reasons == expected
    [record] = [r for r in caplog.records if r.getMessage().startswith("chargeback.ingest ")]
    line = json.loads(record.getMessage().removeprefix("chargeback.ingest "))
    assert (line["received"], line["applied"], line["dead_lettered"]) == (
        len(bodies),
        len(BAD_INPUT) + 1,
        len(BAD_INPUT),
    )
    assert (line["partition"], line["first_sequence"], line["last_sequence"]) == ("2", 100, 100 + len(bodies) - 1)


def test_the_log_line_never_carries_a_body_or_a_connection_string(
    app_settings: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    deliver(host_events([b'{"SubscriptionId": "secret-body-marker", "TotalTokens": "oops"}']), partition_id="0")
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "chargeback.ingest " in text
    assert "secret-body-marker" not in text
    assert "AccountKey" not in text


def test_racing_owners_of_one_partition_count_each_event_once(app_settings: dict[str, str]) -> None:
    bodies = [orjson.dumps({"SubscriptionId": "race", "TotalTokens": str(2**i)}) for i in range(12)]
    first, second = Services(Settings.from_env()).ledger, Services(Settings.from_env()).ledger
    deliver(host_events(bodies[:2]), partition_id="1")
    from chargeback.adapters.eventhub import batch_from_trigger
    from devtools.hostshape import decode_batch

    def apply(ledger: Ledger, start: int, end: int) -> None:
        events = decode_batch(host_events(bodies[start:end], start), hub="aoai-usage", partition_id="1")
        ledger.apply(batch_from_trigger(events, "aoai-usage"))

    apply(first, 0, 4)
    apply(second, 0, 3)  # the second owner's view is now stale
    apply(first, 3, 8)
    apply(second, 2, 12)
    apply(first, 5, 12)
    assert subscription(usage("2026-11")[1], "race")["total_tokens"] == 2**12 - 1


@pytest.mark.parametrize("period", ["2026-13", "2026-11-31", "26-11", "2026-1", "../etc", "2026-11-01T00", "x" * 50])
def test_a_malformed_period_gets_a_400_with_a_json_reason(app_settings: dict[str, str], period: str) -> None:
    status, document = usage(period)
    assert status == 400
    assert document["error"]["code"] == "invalid_request"
    assert document["error"]["field"] == "period"


def test_a_day_period_returns_that_days_totals(app_settings: dict[str, str]) -> None:
    deliver(host_events(sample_bodies()), partition_id="0")
    assert usage("2026-11-27")[1]["totals"]["requests"] == 9
    assert usage("2026-11-26")[1]["totals"]["requests"] == 0


def test_storage_that_cannot_be_reached_answers_503_without_details(
    app_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "ChargebackStorage",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=a2V5;TableEndpoint=http://127.0.0.1:9/devstoreaccount1;"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;",
    )
    runtime.reset()
    response = get("get_usage", "/api/usage/2026-11", {"period": "2026-11"})
    assert response.status_code == 503
    body = response.get_body().decode()
    assert "AccountKey" not in body and "127.0.0.1" not in body and "Traceback" not in body


def test_a_batch_without_partition_context_is_refused_loudly(app_settings: dict[str, str]) -> None:
    import azure.functions as func

    event = func.EventHubEvent(body=b"{}", sequence_number=1, enqueued_time=ENQUEUED, trigger_metadata={})
    with pytest.raises(ConfigurationError):
        registered("ingest_usage").get_user_function()([event])

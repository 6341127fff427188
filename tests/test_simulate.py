"""The simulator keeps its ground truth, and `simulate` batches by subscription and fails fast on a bad hub."""

from __future__ import annotations

import dataclasses
import io
import socket
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest
from azure.eventhub import EventDataBatch

from chargeback.domain.events import UsageEvent, parse_event
from chargeback.reconciliation.monitor import CsvExportSource
from devtools import cli, simulate, traffic
from devtools.emulator import free_port

OCTOBER = datetime(2026, 10, 1, tzinfo=UTC)
SCENARIO = traffic.Scenario(start=OCTOBER, days=31, requests=600, subscriptions=6, seed=7)


@pytest.fixture(name="simulated", scope="module")
def fixture_simulated() -> traffic.Traffic:
    return traffic.simulate(SCENARIO)


def parsed(request: traffic.Request) -> UsageEvent:
    event = parse_event(request.body, request.enqueued_time)
    assert isinstance(event, UsageEvent), request.body
    return event


# --------------------------------------------------------------------------------------------
# The traffic and its ground truth


def test_the_same_seed_gives_the_same_traffic_byte_for_byte(simulated: traffic.Traffic) -> None:
    again = traffic.simulate(SCENARIO)
    assert [r.body for r in again.requests] == [r.body for r in simulated.requests]
    assert again.lost == simulated.lost


def test_another_seed_gives_other_traffic(simulated: traffic.Traffic) -> None:
    other = traffic.simulate(traffic.Scenario(start=OCTOBER, days=31, requests=600, seed=8))
    assert [r.body for r in other.requests] != [r.body for r in simulated.requests]


def test_the_traffic_comes_in_all_four_shapes_the_gateways_send(simulated: traffic.Traffic) -> None:
    assert {r.shape for r in simulated.requests} == set(traffic.SHAPES)
    for request in simulated.requests:
        assert parsed(request).shape == request.shape


def test_every_event_parses_to_the_tokens_and_day_the_simulator_recorded(simulated: traffic.Traffic) -> None:
    for request in simulated.requests:
        event = parsed(request)
        assert event.subscription_id == request.subscription_id
        assert event.total_tokens == request.total_tokens
        assert event.event_time.date() == request.time.date()


def test_toolkit_events_carry_small_totals_as_strings_and_dotnet_times(simulated: traffic.Traffic) -> None:
    toolkit = [r for r in simulated.requests if r.shape == traffic.TOOLKIT and r.model == "gpt-4o-mini-2024-07-18"]
    small = [r for r in toolkit if r.total_tokens <= 24 + traffic.TOOLKIT_MAX_TOKENS[1]]
    assert small
    assert b'"TotalTokens":"' in small[0].body
    assert any(b' AM"' in r.body or b' PM"' in r.body for r in toolkit)


def test_the_richer_traffic_has_cached_tokens_embeddings_and_the_provisioned_deployment(
    simulated: traffic.Traffic,
) -> None:
    assert any(r.cached_tokens for r in simulated.requests)
    assert any(r.model == "text-embedding-3-large" for r in simulated.requests)
    assert any(r.deployment == traffic.PROVISIONED_DEPLOYMENT for r in simulated.requests)


def test_the_first_three_subscriptions_are_the_toolkits(simulated: traffic.Traffic) -> None:
    assert traffic.subscription_names(3) == traffic.TOOLKIT_SUBSCRIPTIONS
    assert traffic.subscription_names(9)[-2:] == ("team-08", "team-09")
    assert set(simulated.truth().monitor) == set(traffic.subscription_names(6))


def test_malformed_events_are_all_rejected_by_the_parser(simulated: traffic.Traffic) -> None:
    assert len(simulated.malformed) == 4
    for malformed in simulated.malformed:
        rejection = parse_event(malformed.body, malformed.enqueued_time)
        assert not isinstance(rejection, UsageEvent)
        assert rejection.reason == malformed.kind


def test_only_the_lossy_subscription_loses_events_and_more_than_the_tolerance(simulated: traffic.Traffic) -> None:
    truth = simulated.truth()
    assert set(truth.lost) == {traffic.LOSSY_SUBSCRIPTION}
    lost = truth.lost[traffic.LOSSY_SUBSCRIPTION].total_tokens
    assert lost * 100 > truth.monitor[traffic.LOSSY_SUBSCRIPTION].total_tokens * 1  # beyond the 1 % tolerance
    for name, seen in truth.monitor.items():
        assert seen == truth.ledger[name] + truth.lost.get(name, traffic.Tally())


def test_lost_events_never_reach_the_hub(simulated: traffic.Traffic) -> None:
    bodies = {body for body, _, _ in simulated.hub_events()}
    lost = [simulated.requests[index].body for index in simulated.lost]
    assert lost
    assert not bodies.intersection(lost)
    assert len(bodies) == len(simulated.requests) - len(lost) + len(simulated.malformed)


def test_the_appmetrics_export_holds_every_request_the_gateway_served(
    simulated: traffic.Traffic, tmp_path: Path
) -> None:
    path = tmp_path / "export.csv"
    traffic.write_appmetrics_export(simulated, path)
    source = CsvExportSource(path, namespace=None, dimension=traffic.SUBSCRIPTION_DIMENSION)
    totals = source.token_totals(OCTOBER, datetime(2026, 11, 1, tzinfo=UTC))
    truth = simulated.truth()
    assert {name: t.total_tokens for name, t in totals.items()} == {
        name: t.total_tokens for name, t in truth.monitor.items()
    }
    assert {name: t.prompt_tokens for name, t in totals.items()} == {
        name: t.prompt_tokens for name, t in truth.monitor.items()
    }


def test_a_subscription_always_lands_on_the_same_partition(simulated: traffic.Traffic) -> None:
    streams = simulated.partitions(4)
    for partition_id, events in streams.items():
        assert [event.sequence_number for event in events] == list(range(len(events)))
        for event in events:
            assert traffic.partition_for(event.partition_key or "", 4) == partition_id
    assert sum(1 for events in streams.values() if events) >= 3


def test_the_delivery_plan_redelivers_but_never_skips_an_event(simulated: traffic.Traffic) -> None:
    streams = simulated.partitions(4)
    plan = traffic.deliveries(streams, seed=1)
    kinds = {delivery.kind for delivery in plan}
    assert kinds == {traffic.NEW, traffic.REPLAY, traffic.OVERLAP}
    applied = {partition_id: -1 for partition_id in streams}
    for delivery in plan:
        first = delivery.events[0].sequence_number
        assert first <= applied[delivery.partition_id] + 1, "a redelivery starts at or before the first unapplied event"
        applied[delivery.partition_id] = max(applied[delivery.partition_id], delivery.events[-1].sequence_number)
    assert all(applied[p] == len(events) - 1 for p, events in streams.items() if events)


# --------------------------------------------------------------------------------------------
# Batches for a real hub


def test_batches_group_events_by_subscription_as_partition_key_within_the_size_limit(
    simulated: traffic.Traffic,
) -> None:
    events = [(body, key) for body, _, key in simulated.hub_events()]
    planned = list(simulate.batches(events, lambda key: EventDataBatch(max_size_in_bytes=8192, partition_key=key)))
    assert len(planned) > len({key for _, key in events}), "small batches force more than one per key"
    for item in planned:
        assert item.batch.size_in_bytes <= 8192
        assert len(item.batch) == len(item.bodies)
        assert item.batch._partition_key == item.partition_key  # what the producer sends it with
        sent = [b"".join(cast(Iterable[bytes], event.body)) for event in item.batch._internal_events]
        assert sent == item.bodies
    for key in {key for _, key in events}:
        in_order = [body for item in planned if item.partition_key == key for body in item.bodies]
        assert in_order == [body for body, k in events if k == key]


def test_an_event_too_large_for_any_batch_is_refused() -> None:
    with pytest.raises(simulate.TargetError, match="does not fit"):
        list(simulate.batches([(b"x" * 4096, "k")], lambda key: EventDataBatch(max_size_in_bytes=1024)))


def test_sending_paces_to_the_rate_and_stops_when_the_duration_is_over() -> None:
    now = [0.0]
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        now[0] += seconds

    sent_batches: list[EventDataBatch] = []
    events = [(f'{{"n":{n}}}'.encode(), f"k{n % 2}") for n in range(100)]
    sent = simulate.send(
        events,
        make_batch=lambda key: EventDataBatch(max_size_in_bytes=65536, partition_key=key),
        send_batch=sent_batches.append,
        rate=20,
        duration=2.5,
        progress=simulate.Progress(io.StringIO(), len(events)),
        clock=lambda: now[0],
        pause=pause,
    )
    assert sent == 60  # three one-second windows of 20 events start before 2.5 s
    assert sum(len(batch) for batch in sent_batches) == 60
    assert pauses == [1.0, 1.0, 1.0]


# --------------------------------------------------------------------------------------------
# A bad or unreachable hub fails fast with exit code 2


@pytest.mark.parametrize(
    "connection",
    [
        "not a connection string",
        "Endpoint=https://example.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b",
        "Endpoint=sb://example.servicebus.windows.net/;SharedAccessKeyName=send",
        "Endpoint=sb://bad host/;SharedAccessKeyName=a;SharedAccessKey=b",
    ],
)
def test_a_malformed_connection_string_exits_2_with_a_clear_error(
    connection: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["simulate", "--connection-string", connection, "--requests", "5"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("simulate: ")
    assert "Traceback" not in error


def test_a_connection_string_for_another_hub_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    connection = "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=a;SharedAccessKey=b;EntityPath=other"
    assert cli.main(["simulate", "--connection-string", connection, "--hub", "aoai-usage"]) == 2
    assert "--hub other" in capsys.readouterr().err


def test_no_target_at_all_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("EventHubConnection", raising=False)
    assert cli.main(["simulate", "--requests", "5"]) == 2
    assert "--connection-string" in capsys.readouterr().err


def emulator_style(port: int) -> str:
    return (
        f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    )


def test_an_unreachable_loopback_endpoint_exits_2_quickly(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code = cli.main(["simulate", "--connection-string", emulator_style(free_port()), "--requests", "5"])
    assert code == 2
    assert time.monotonic() - started < 15
    assert "cannot reach sb://127.0.0.1:" in capsys.readouterr().err


@pytest.fixture(name="silent_endpoint")
def fixture_silent_endpoint() -> Iterator[int]:
    """A loopback port that accepts connections and never says a word."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()  # resets the abandoned connection, so the client's thread ends too


def test_an_endpoint_that_never_answers_exits_2_after_the_connect_timeout(
    silent_endpoint: int, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    code = cli.main(
        [
            "simulate",
            "--connection-string",
            emulator_style(silent_endpoint),
            "--connect-timeout",
            "1",
            "--requests",
            "5",
        ]
    )
    assert code == 2
    assert time.monotonic() - started < 10
    assert "no answer from sb://127.0.0.1:" in capsys.readouterr().err


def test_the_emulator_option_uses_the_sample_settings_connection_string() -> None:
    connection = simulate.emulator_connection_string()
    assert simulate.validate_connection_string(connection)["endpoint"] == "sb://localhost"


STREAMING = dataclasses.replace(SCENARIO, streamed_share=1 / 3)


@pytest.fixture(name="streaming", scope="module")
def fixture_streaming() -> traffic.Traffic:
    return traffic.simulate(STREAMING)


def test_about_a_third_of_the_calls_stream_and_only_chat_calls_do(streaming: traffic.Traffic) -> None:
    assert 0.25 < len(streaming.streamed) / len(streaming.requests) < 0.42
    assert {streaming.requests[i].operation for i in streaming.streamed} == {traffic.CHAT}


def test_streamed_calls_never_reach_the_hub_and_are_never_the_lost_events(streaming: traffic.Traffic) -> None:
    bodies = {body for body, _, _ in streaming.hub_events()}
    assert not bodies.intersection(streaming.requests[i].body for i in streaming.streamed)
    assert not streaming.lost & streaming.streamed
    assert streaming.lost


def test_every_call_has_llm_log_rows_and_some_exchanges_are_split(streaming: traffic.Traffic) -> None:
    rows = traffic.llm_log_rows(streaming)
    correlations = {row[1] for row in rows}
    assert len(correlations) == len(streaming.requests)
    assert len(rows) > len(streaming.requests)
    assert {row[9] for row in rows if int(str(row[10])) > 0} == {"true"}


def test_one_streamed_call_has_no_subscription_and_the_ground_truth_leaves_it_unbilled(
    streaming: traffic.Traffic,
) -> None:
    orphans = {row[1] for row in traffic.llm_log_rows(streaming) if row[2] == ""}
    assert len(orphans) == 1 and streaming.orphan in streaming.streamed
    truth = streaming.truth()
    assert truth.unattributed == traffic.Tally.of(streaming.requests[streaming.orphan])
    orphaned = streaming.requests[streaming.orphan].subscription_id
    for name, seen in truth.monitor.items():
        missing = truth.unattributed if name == orphaned else traffic.Tally()
        assert seen == truth.ledger[name] + truth.lost.get(name, traffic.Tally()) + missing

"""The Event Hub converter's fast enqueued-time path gives exactly what the stock parsing gives."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from azure.functions.eventhub import EventHubTriggerConverter
from hypothesis import given, settings
from hypothesis import strategies as st

import function_app
from chargeback.adapters import eventhub
from chargeback.adapters.eventhub import FastTimeEventHubConverter
from devtools.hostshape import HostEvent, decode_batch

Outcome = tuple[object, ...]

STOCK: Callable[[str | None], datetime | None] = EventHubTriggerConverter._parse_datetime
FAST: Callable[[str | None], datetime | None] = FastTimeEventHubConverter._parse_datetime


def outcome(parse: Callable[[str | None], datetime | None], text: str | None) -> Outcome:
    """What a parser makes of ``text``: the datetime with its zone object, or the error it raised."""
    try:
        parsed = parse(text)
    except ValueError as exc:
        return ("raised", type(exc), str(exc))
    if parsed is None:
        return ("none",)
    return ("parsed", type(parsed), parsed, parsed.tzinfo, parsed.utcoffset())


def host_text(moment: datetime, digits: int) -> str:
    """``EnqueuedTimeUtc`` as the host writes it: ISO 8601, ``digits`` fraction digits (0-7), ``Z``."""
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        ticks = f"{moment.microsecond:06d}" + str(moment.microsecond % 10)
        text += "." + ticks[:digits]
    return text + "Z"


def test_the_app_registers_the_fast_converter_for_the_event_hub_trigger() -> None:
    assert function_app.app is not None
    assert eventhub.trigger_converter() is FastTimeEventHubConverter
    assert FastTimeEventHubConverter.has_trigger_support()


def test_installing_again_keeps_the_fast_converter() -> None:
    assert eventhub.install_fast_enqueued_time()
    assert eventhub.trigger_converter() is FastTimeEventHubConverter


def test_a_converter_registered_by_someone_else_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    class Newer(EventHubTriggerConverter, binding=None, trigger="eventHubTrigger"):
        pass

    monkeypatch.setitem(eventhub._registry(), "eventHubTrigger", Newer)
    assert not eventhub.install_fast_enqueued_time()
    assert eventhub.trigger_converter() is Newer


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-27T05:06:14.512Z",
        "2026-11-27T05:06:14Z",
        "2026-11-27T05:06:14.5Z",
        "2026-11-27T05:06:14.51Z",
        "2026-11-27T05:06:14.5123Z",
        "2026-11-27T05:06:14.51234Z",
        "2026-11-27T05:06:14.512345Z",
        "2026-11-27T05:06:14.5123456Z",
        "2026-11-27T05:06:14.0000000Z",
        "2026-12-31T23:59:59.9999999Z",
        "2028-02-29T00:00:00Z",
        "0001-01-01T00:00:00.0000001Z",
        "9999-12-31T23:59:59.9999999Z",
    ],
)
def test_the_hosts_formats_parse_to_the_same_utc_datetime(text: str) -> None:
    fast = outcome(FAST, text)
    assert fast == outcome(STOCK, text)
    assert fast[0] == "parsed" and fast[3] is UTC


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-27T05:06:14+00:00",
        "2026-11-27T05:06:14.512-00:00",
        "2026-11-27T05:06:14",
        "2026-11-27T05:06:14.512",
        "11/27/2026 05:06:14Z",
        "11/27/2026 05:06:14.512+00:00",
        "11/27/2026T05:06:14",
        "2026-11-27T05:06:14.51234567Z",
        "2026-11-27T05:06:14.123456789012Z",
        "2026-11-27 05:06:14Z",
        "2026-11-27T05:06:14+01:00",
        "2026-11-27t05:06:14z",
        "2026-13-27T05:06:14Z",
        "2026-02-30T05:06:14Z",
        "2026-11-27T24:00:00Z",
        "2026-11-27T23:59:60Z",
        "0000-01-01T00:00:00Z",
        "２０２６-11-27T05:06:14Z",
        "not a time",
        "",
        None,
    ],
)
def test_every_other_text_gets_exactly_the_stock_result_or_error(text: str | None) -> None:
    assert outcome(FAST, text) == outcome(STOCK, text)


@settings(max_examples=500, derandomize=True, database=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    st.integers(min_value=0, max_value=7),
)
def test_any_host_time_with_any_fraction_length_parses_identically(moment: datetime, digits: int) -> None:
    text = host_text(moment, digits)
    assert outcome(FAST, text) == outcome(STOCK, text)


@settings(max_examples=500, derandomize=True, database=None)
@given(st.from_regex(eventhub._HOST_TIME, fullmatch=True))
def test_any_text_the_fast_path_takes_gives_the_stock_result_or_error(text: str) -> None:
    assert outcome(FAST, text) == outcome(STOCK, text)


@settings(max_examples=300, derandomize=True, database=None)
@given(st.text(alphabet="0123456789-:TZ.+/ ", max_size=32) | st.text(max_size=32))
def test_any_text_at_all_gives_the_stock_result_or_error(text: str) -> None:
    assert outcome(FAST, text) == outcome(STOCK, text)


def events(count: int) -> Iterator[HostEvent]:
    start = datetime(2026, 11, 26, 23, 59, 58, tzinfo=UTC)
    for n in range(count):
        yield HostEvent(f'{{"n":{n}}}'.encode(), 1000 + n, start + timedelta(microseconds=n * 12_345))


def test_a_batch_decoded_through_the_registry_equals_the_stock_decoding() -> None:
    batch = list(events(500))
    fast = decode_batch(batch, hub="aoai-usage", partition_id="3")
    with pytest.MonkeyPatch.context() as stock:
        stock.setitem(eventhub._registry(), "eventHubTrigger", EventHubTriggerConverter)
        expected = decode_batch(batch, hub="aoai-usage", partition_id="3")

    def seen(event: func.EventHubEvent) -> tuple[object, ...]:
        moment = event.enqueued_time
        return (event.get_body(), event.sequence_number, moment, moment.tzinfo if moment else None)

    assert [seen(event) for event in fast] == [seen(event) for event in expected]
    assert [e.enqueued_time for e in fast] == [event.enqueued_time for event in batch]

"""The simulated gateways write each event shape so that the parser reads back the call they were given."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from chargeback.domain import events
from devtools import shapes

CALL = shapes.Call(
    subscription_id="aoai-product-subscription-one",
    time=datetime(2026, 11, 5, 14, 7, 9, tzinfo=UTC),
    model="gpt-4o",
    deployment="gpt-4o",
    operation_id="ChatCompletions_Create",
    operation_name="Creates a completion for the chat message",
    prompt_tokens=1200,
    completion_tokens=300,
    cached_tokens=400,
)
ENQUEUED = datetime(2026, 11, 5, 14, 7, 12, tzinfo=UTC)


@pytest.mark.parametrize("shape", shapes.SHAPES)
def test_every_shape_parses_back_to_its_own_shape_subscription_and_total(shape: str) -> None:
    parsed = events.parse_event(shapes.body(shape, CALL, random.Random(1)), ENQUEUED)
    assert isinstance(parsed, events.UsageEvent)
    assert (parsed.shape, parsed.subscription_id, parsed.total_tokens) == (shape, CALL.subscription_id, 1500)


@pytest.mark.parametrize("shape", [events.CANONICAL, events.TOKEN_USAGE])
def test_shapes_with_a_usage_object_carry_the_split_and_the_cached_tokens(shape: str) -> None:
    parsed = events.parse_event(shapes.body(shape, CALL, random.Random(1)), ENQUEUED)
    assert isinstance(parsed, events.UsageEvent)
    assert (parsed.prompt_tokens, parsed.completion_tokens, parsed.cached_tokens) == (1200, 300, 400)


def test_the_toolkit_shape_sends_only_a_total_and_a_dotnet_time_the_parser_trusts() -> None:
    parsed = events.parse_event(shapes.body(events.TOOLKIT, CALL, random.Random(1)), ENQUEUED)
    assert isinstance(parsed, events.UsageEvent)
    assert parsed.prompt_tokens is None
    assert (parsed.event_time, parsed.time_from_event) == (CALL.time, True)


def test_the_same_seed_writes_the_same_bodies() -> None:
    first = [shapes.body(shape, CALL, random.Random(7)) for shape in shapes.SHAPES]
    assert first == [shapes.body(shape, CALL, random.Random(7)) for shape in shapes.SHAPES]


def test_an_unknown_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown shape"):
        shapes.body("fax", CALL, random.Random(1))

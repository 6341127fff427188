"""The parser reads every gateway shape into the right numbers and rejects what is not usage."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from chargeback.domain import events
from chargeback.domain.events import Rejection, UsageEvent, parse_event
from chargeback.domain.usage import UNKNOWN
from tests.support import BAD_INPUT, SAMPLES

ENQUEUED = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)


def parse(document: object) -> UsageEvent | Rejection:
    return parse_event(orjson.dumps(document), ENQUEUED)


def accepted(document: object) -> UsageEvent:
    result = parse(document)
    assert isinstance(result, UsageEvent), result
    return result


def sample_lines(name: str) -> list[bytes]:
    return [line for line in (SAMPLES / name).read_bytes().splitlines() if line.strip()]


# (file, line, subscription, request id, model, deployment, operation, prompt, completion, cached, total, time)
SAMPLE_EXPECTATIONS = [
    (
        "canonical.jsonl", 0, "aoai-product-subscription-one", "9d8c7b6a-5f4e-4d3c-2b1a-0f9e8d7c6b5a",
        "gpt-4o-2024-08-06", "gpt-4o", "ChatCompletions_Create", 2048, 311, 1536, 2359,
        datetime(2026, 11, 27, 5, 6, 14, 512000, tzinfo=UTC),
    ),
    (
        "canonical.jsonl", 1, "aoai-product-subscription-two", "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        "text-embedding-3-large", "embeddings", "Embeddings_Create", 512, 0, 0, 512,
        datetime(2026, 11, 27, 5, 6, 15, 4000, tzinfo=UTC),
    ),
    (
        "genai-gateway-toolkit.jsonl", 0, "aoai-product-subscription-one", "8f0b7c52-1d7e-4a43-9a3e-0c4a7e2f11a1",
        UNKNOWN, UNKNOWN, "Creates a completion for the chat message", None, None, None, 27,
        datetime(2026, 11, 27, 5, 6, 14, tzinfo=UTC),
    ),
    (
        "genai-gateway-toolkit.jsonl", 2, "aoai-product-subscription-three", "c3d1e6a0-7f28-4c1b-b0a9-2e8d4f6a9c10",
        UNKNOWN, UNKNOWN, "Creates a completion for the provided prompt and parameters", None, None, None, 24,
        datetime(2026, 11, 27, 17, 6, 16, tzinfo=UTC),
    ),
    (
        "token-usage-object.jsonl", 1, "aoai-product-subscription-two", "6b5d2a1f-3c9e-4f7a-8b2d-4e6f8a0c2b3d",
        UNKNOWN, UNKNOWN, "ChatCompletions_Create", 1200, 85, 1024, 1285, ENQUEUED,
    ),
    (
        "ai-hub-gateway.jsonl", 0, "hr-chatbot-dev", "chatcmpl-AQ9vXqk2fJ3l8mN0pR4sT6uV",
        "gpt-4o-2024-08-06", "gpt-4o", "ChatCompletions_Create", 312, 88, 0, 400,
        datetime(2026, 11, 27, 5, 6, 14, tzinfo=UTC),
    ),
    (
        "ai-hub-gateway.jsonl", 1, "Portal-Admin", "3e1f4c2a-9b7d-4a6e-8c5f-1d2b3a4c5d6e",
        UNKNOWN, UNKNOWN, "Embeddings_Create", 1, 0, 0, 1, datetime(2026, 11, 27, 5, 6, 20, tzinfo=UTC),
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    (
        "file",
        "line",
        "subscription",
        "request_id",
        "model",
        "deployment",
        "operation",
        "prompt",
        "completion",
        "cached",
        "total",
        "event_time",
    ),
    SAMPLE_EXPECTATIONS,
)
def test_every_gateway_sample_parses_to_its_numbers(
    file: str,
    line: int,
    subscription: str,
    request_id: str,
    model: str,
    deployment: str,
    operation: str,
    prompt: int | None,
    completion: int | None,
    cached: int | None,
    total: int,
    event_time: datetime,
) -> None:
    event = parse_event(sample_lines(file)[line], ENQUEUED)
    assert isinstance(event, UsageEvent), event
    assert (event.subscription_id, event.request_id, event.model, event.deployment, event.operation) == (
        subscription,
        request_id,
        model,
        deployment,
        operation,
    )
    assert (event.prompt_tokens, event.completion_tokens, event.cached_tokens, event.total_tokens) == (
        prompt,
        completion,
        cached,
        total,
    )
    assert event.event_time == event_time


def test_every_line_of_every_sample_file_is_accepted() -> None:
    files = sorted(SAMPLES.glob("*.jsonl"))
    assert len(files) == 4
    for path in files:
        for line in sample_lines(path.name):
            assert isinstance(parse_event(line, ENQUEUED), UsageEvent), (path.name, line)


def test_an_event_without_a_time_falls_back_to_the_enqueued_time_and_says_so() -> None:
    event = accepted({"SubscriptionId": "a", "TotalTokens": "5"})
    assert event.event_time == ENQUEUED
    assert event.time_from_event is False


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("11/27/2026 5:06:14 AM", datetime(2026, 11, 27, 5, 6, 14, tzinfo=UTC)),
        ("11/27/2026 5:06:14 PM", datetime(2026, 11, 27, 17, 6, 14, tzinfo=UTC)),
        ("11/27/2026 12:06:14 AM", datetime(2026, 11, 27, 0, 6, 14, tzinfo=UTC)),
        ("11/27/2026 12:06:14 PM", datetime(2026, 11, 27, 12, 6, 14, tzinfo=UTC)),
        ("11/27/2026 17:06:14", datetime(2026, 11, 27, 17, 6, 14, tzinfo=UTC)),
        ("2026-11-27T05:06:14Z", datetime(2026, 11, 27, 5, 6, 14, tzinfo=UTC)),
        ("2026-11-27T07:06:14+02:00", datetime(2026, 11, 27, 5, 6, 14, tzinfo=UTC)),
        ("2026-11-27T05:06:14.1234567Z", datetime(2026, 11, 27, 5, 6, 14, 123456, tzinfo=UTC)),
        ("2026-11-27 05:06:14", datetime(2026, 11, 27, 5, 6, 14, tzinfo=UTC)),
    ],
)
def test_event_times_are_read_in_dotnet_and_iso_formats_as_utc(raw: str, expected: datetime) -> None:
    event = accepted({"SubscriptionId": "a", "TotalTokens": "5", "EventTime": raw})
    assert event.event_time == expected
    assert event.time_from_event is True


@pytest.mark.parametrize(
    "raw",
    [
        "yesterday",
        "13/27/2026 5:06:14 AM",
        "11/27/2026 13:06:14 PM",
        "2026-02-30T00:00:00Z",
        "",
        1732684000,
        None,
    ],
)
def test_unreadable_event_times_fall_back_to_the_enqueued_time(raw: object) -> None:
    event = accepted({"SubscriptionId": "a", "TotalTokens": "5", "EventTime": raw})
    assert (event.event_time, event.time_from_event) == (ENQUEUED, False)


def test_an_event_time_far_from_the_enqueued_time_is_not_trusted() -> None:
    event = accepted({"SubscriptionId": "a", "TotalTokens": "5", "EventTime": "1999-01-01T00:00:00Z"})
    assert (event.event_time, event.time_from_event) == (ENQUEUED, False)


@pytest.mark.parametrize(
    "subscription",
    [
        "team/alpha",
        "back\\slash",
        "hash#tag",
        "what?",
        "tab\there",
        "nul\x00byte",
        "ünïcödé-团队-🚀",
        "%41",
        " padded ",
    ],
)
def test_identifiers_keep_every_character_they_arrived_with(subscription: str) -> None:
    event = accepted({"SubscriptionId": subscription, "model": subscription, "TotalTokens": 1})
    assert event.subscription_id == subscription
    assert event.model == subscription


def test_fields_are_found_whatever_their_case() -> None:
    event = accepted({"SUBSCRIPTIONID": "a", "tokenusage": {"PROMPT_TOKENS": 3, "completion_tokens": 2}})
    assert (event.subscription_id, event.prompt_tokens, event.completion_tokens, event.total_tokens) == ("a", 3, 2, 5)


def test_a_utf8_byte_order_mark_is_tolerated() -> None:
    event = parse_event(b"\xef\xbb\xbf" + orjson.dumps({"SubscriptionId": "a", "TotalTokens": "9"}), ENQUEUED)
    assert isinstance(event, UsageEvent)
    assert event.total_tokens == 9


def test_na_placeholders_mean_unknown() -> None:
    event = accepted({"subscriptionId": "a", "model": "NA", "deploymentName": "n/a", "totalTokens": 4})
    assert (event.model, event.deployment, event.operation) == (UNKNOWN, UNKNOWN, UNKNOWN)


GOOD = {"subscriptionId": "team-a", "requestId": "r", "usage": {"prompt_tokens": 10, "completion_tokens": 5}}

# (case, body, reason): every way an event can be unusable, and the reason it is dead-lettered with.


def test_the_bad_input_table_covers_at_least_25_cases_and_every_reason() -> None:
    assert len(BAD_INPUT) >= 25
    assert {reason for _, _, reason in BAD_INPUT} == events.REASONS


@pytest.mark.parametrize(("case", "body", "reason"), BAD_INPUT, ids=[case for case, _, _ in BAD_INPUT])
def test_bad_input_is_rejected_with_its_reason(case: str, body: bytes, reason: str) -> None:
    result = parse_event(body, ENQUEUED)
    assert isinstance(result, Rejection), case
    assert result.reason == reason
    assert result.detail

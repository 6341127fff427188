"""The event the outbound fragment builds, rendered for a real response, parses as intended."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from chargeback.domain.events import CANONICAL, UsageEvent, parse_event
from tests.infra.bicep_tree import INFRA
from tests.support import ROOT

USAGE_EVENT = INFRA / "apim" / "fragments" / "chargeback-usage-event.xml"
CANONICAL_SAMPLE = ROOT / "tests" / "fixtures" / "events" / "canonical.jsonl"

Context = dict[str, Any]

# The gateway context a request leaves behind, and what each policy expression reads from it.
CONTEXT: Context = {
    "request_id": "9d8c7b6a-5f4e-4d3c-2b1a-0f9e8d7c6b5a",
    "now": datetime(2026, 11, 27, 5, 6, 14, 512000, tzinfo=UTC),
    "subscription": "aoai-product-subscription-one",
    "product": "aoai-product",
    "api": "azure-openai",
    "operation": "ChatCompletions_Create",
    "route": {"deployment-id": "gpt-4o"},
    "backend_host": "payg-backend-1.openai.azure.com",
    "headers": {"x-ms-region": "Sweden Central", "Content-Type": "application/json"},
    "gateway_region": "West Europe",
    "body": {
        "id": "chatcmpl-AQ9vXqk2fJ3l8mN0pR4sT6uV",
        "object": "chat.completion",
        "created": 1795756974,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"content": "Hi"}}],
        "usage": {
            "prompt_tokens": 2048,
            "completion_tokens": 311,
            "total_tokens": 2359,
            "prompt_tokens_details": {"cached_tokens": 1536},
        },
    },
}


def _dotnet_round_trip(moment: datetime) -> str:
    """DateTime.UtcNow.ToString("o"): seven fraction digits and a Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


# Every C# expression the fragment may use, and how the gateway evaluates it. A new or changed
# expression fails the render until it is described here.
EXPRESSIONS: dict[str, Callable[[Context, dict[str, Any]], Any]] = {
    "context.Response.Body.As<JObject>(preserveContent: true)": lambda c, _: c["body"],
    'context.Request.MatchedParameters.ContainsKey("deployment-id") ? '
    'context.Request.MatchedParameters["deployment-id"] : ""': lambda c, _: c["route"].get("deployment-id", ""),
    "context.RequestId.ToString()": lambda c, _: c["request_id"],
    'DateTime.UtcNow.ToString("o")': lambda c, _: _dotnet_round_trip(c["now"]),
    "context.Subscription?.Id": lambda c, _: c["subscription"],
    "context.Product?.Id": lambda c, _: c["product"],
    "context.Api.Id": lambda c, _: c["api"],
    "context.Operation.Id": lambda c, _: c["operation"],
    '(string)body["model"]': lambda _, local: local["body"].get("model"),
    'body["usage"]': lambda _, local: local["body"].get("usage"),
    "context.Request.Url.Host": lambda c, _: c["backend_host"],
    'context.Response.Headers.GetValueOrDefault("x-ms-region", context.Deployment.Region)': lambda c, _: c[
        "headers"
    ].get("x-ms-region", c["gateway_region"]),
}


def _split_arguments(call: str) -> list[str]:
    """Top-level comma-separated arguments of a C# argument list (no parentheses around it)."""
    arguments, depth, current, quoted = [], 0, "", False
    for char in call:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "([{":
            depth += 1
        elif not quoted and char in ")]}":
            depth -= 1
        if char == "," and depth == 0 and not quoted:
            arguments.append(current.strip())
            current = ""
        else:
            current += char
    arguments.append(current.strip())
    return arguments


def _balanced(source: str, start: int) -> str:
    """The text inside the parenthesis that opens at ``source[start]``."""
    depth, quoted = 0, False
    for index in range(start, len(source)):
        char = source[index]
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth == 0:
                return source[start + 1 : index]
    raise AssertionError("unbalanced parentheses in the policy expression")


def evaluate(expression: str, context: Context, local: dict[str, Any]) -> Any:
    if re.fullmatch(r'"[^"]*"', expression):
        return expression[1:-1]
    if expression in {"true", "false"}:
        return expression == "true"
    if expression in local:
        return local[expression]
    if expression not in EXPRESSIONS:
        raise AssertionError(f"no rendering for the policy expression {expression!r}; describe it in EXPRESSIONS")
    return EXPRESSIONS[expression](context, local)


def render(policy_block: str, context: Context) -> bytes:
    """Run the @{ ... } block the way the gateway would: locals, then the JObject it returns."""
    code = policy_block.strip()
    assert code.startswith("@{") and code.endswith("}")
    prelude, _, returned = code[2:-1].partition("return new JObject(")
    local: dict[str, Any] = {}
    for statement in filter(None, (part.strip() for part in prelude.split(";"))):
        declared = re.fullmatch(r"var (\w+) = (.+)", statement, re.DOTALL)
        assert declared is not None, f"unexpected statement {statement!r}"
        local[declared[1]] = evaluate(" ".join(declared[2].split()), context, local)
    assert re.search(r"\)\.ToString\(Newtonsoft\.Json\.Formatting\.None\);\s*$", returned)
    document: dict[str, Any] = {}
    for match in re.finditer(r"new JProperty\(", returned):
        name, value = _split_arguments(_balanced(returned, match.end() - 1))
        document[json.loads(name)] = evaluate(" ".join(value.split()), context, local)
    return json.dumps(document, separators=(",", ":")).encode()


def policy_block() -> str:
    event = ET.parse(USAGE_EVENT).getroot().find("./choose/when/log-to-eventhub")  # noqa: S314 - own file
    assert event is not None and event.text is not None
    return event.text


@pytest.fixture(name="rendered")
def fixture_rendered() -> bytes:
    return render(policy_block(), CONTEXT)


@pytest.fixture(name="parsed")
def fixture_parsed(rendered: bytes) -> UsageEvent:
    result = parse_event(rendered, enqueued_time=datetime(2026, 11, 27, 5, 6, 15, tzinfo=UTC))
    assert isinstance(result, UsageEvent), result
    return result


def test_the_rendered_event_has_exactly_the_canonical_fields(rendered: bytes) -> None:
    sample = json.loads(CANONICAL_SAMPLE.read_text().splitlines()[0])
    assert list(json.loads(rendered)) == list(sample)


def test_the_rendered_event_is_read_as_the_canonical_shape(parsed: UsageEvent) -> None:
    assert parsed.shape == CANONICAL


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("subscription_id", "aoai-product-subscription-one"),
        ("request_id", "9d8c7b6a-5f4e-4d3c-2b1a-0f9e8d7c6b5a"),
        ("operation", "ChatCompletions_Create"),
        ("model", "gpt-4o-2024-08-06"),
        ("deployment", "gpt-4o"),
        ("prompt_tokens", 2048),
        ("completion_tokens", 311),
        ("cached_tokens", 1536),
        ("total_tokens", 2359),
        ("event_time", datetime(2026, 11, 27, 5, 6, 14, 512000, tzinfo=UTC)),
        ("time_from_event", True),
    ],
)
def test_the_rendered_event_parses_into_the_responses_numbers(parsed: UsageEvent, field: str, expected: object) -> None:
    assert getattr(parsed, field) == expected


def test_an_embeddings_response_without_completion_tokens_parses_too() -> None:
    body = {"model": "text-embedding-3-large", "usage": {"prompt_tokens": 512, "total_tokens": 512}}
    context = {**CONTEXT, "body": body}
    result = parse_event(render(policy_block(), context), enqueued_time=CONTEXT["now"])
    assert isinstance(result, UsageEvent)
    assert (result.prompt_tokens, result.completion_tokens, result.total_tokens) == (512, 0, 512)


def test_a_renamed_field_would_be_caught() -> None:
    drifted = policy_block().replace('new JProperty("subscriptionId"', 'new JProperty("subscription"')
    result = parse_event(render(drifted, CONTEXT), enqueued_time=CONTEXT["now"])
    assert not isinstance(result, UsageEvent)

"""Parses the gateway's usage events, in every shape gateways send, into one ``UsageEvent``.

Accepted shapes (see the README): this project's canonical ``chargeback.usage/v1`` event, the
GenAI gateway toolkit's usage-tracking event (``TotalTokens`` as a string, .NET ``EventTime``),
the same capability's ``TokenUsage`` object, and the AI Hub Gateway accelerator's camelCase
event. Fields are found by name, case-insensitively, so a shape that mixes them is read too.

Parsing never raises on bad input: it returns a ``Rejection`` with a reason code, and the
caller dead-letters the raw body.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from chargeback.usage import UNKNOWN

MAX_EVENT_BYTES = 64 * 1024
"""A usage event is a few hundred bytes; anything past this is not one."""

MAX_TOKENS = 100_000_000
"""No single request uses this many tokens; a larger count is corruption, not usage."""

MAX_TIME_SKEW = timedelta(days=7)
"""An event time further than this from the enqueued time is not trusted."""

CANONICAL_SCHEMA = "chargeback.usage/v1"

# Reason codes a rejected event is dead-lettered with.
TOO_LARGE = "too_large"
NOT_UTF8 = "not_utf8"
NOT_JSON = "not_json"
NOT_OBJECT = "not_object"
UNSUPPORTED_SCHEMA = "unsupported_schema"
MISSING_SUBSCRIPTION = "missing_subscription"
INVALID_FIELD = "invalid_field"
AMBIGUOUS_FIELD = "ambiguous_field"
MISSING_TOKENS = "missing_tokens"
INVALID_TOKENS = "invalid_tokens"
NEGATIVE_TOKENS = "negative_tokens"
FRACTIONAL_TOKENS = "fractional_tokens"
ABSURD_TOKENS = "absurd_tokens"
INCONSISTENT_TOKENS = "inconsistent_tokens"

REASONS: frozenset[str] = frozenset(
    {
        TOO_LARGE,
        NOT_UTF8,
        NOT_JSON,
        NOT_OBJECT,
        UNSUPPORTED_SCHEMA,
        MISSING_SUBSCRIPTION,
        INVALID_FIELD,
        AMBIGUOUS_FIELD,
        MISSING_TOKENS,
        INVALID_TOKENS,
        NEGATIVE_TOKENS,
        FRACTIONAL_TOKENS,
        ABSURD_TOKENS,
        INCONSISTENT_TOKENS,
    }
)

# Shapes, for statistics and the dead-letter store.
CANONICAL = "canonical"
TOOLKIT = "genai-gateway-toolkit"
TOKEN_USAGE = "token-usage-object"  # noqa: S105 - a shape name, not a secret
AI_HUB = "ai-hub-gateway"
GENERIC = "generic"

_NOT_SENT = frozenset({"", "na", "n/a", "null", "none"})
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One successful gateway call's usage, whatever shape it arrived in.

    ``prompt_tokens``/``completion_tokens``/``cached_tokens`` are ``None`` when the shape sent
    only a total; ``time_from_event`` is False when the event time was missing or unusable and
    the enqueued time stood in for it.
    """

    subscription_id: str
    request_id: str | None
    operation: str
    model: str
    deployment: str
    event_time: datetime
    time_from_event: bool
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int | None
    total_tokens: int
    shape: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an event can never be applied; the raw body travels beside it to the dead letters."""

    reason: str
    detail: str


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.rejection = Rejection(reason, detail)


def parse_event(body: bytes, enqueued_time: datetime) -> UsageEvent | Rejection:
    """Parse one event body; ``enqueued_time`` (UTC) stands in for a missing event time."""
    if len(body) > MAX_EVENT_BYTES:
        return Rejection(TOO_LARGE, f"{len(body)} bytes exceeds {MAX_EVENT_BYTES}")
    if body.startswith(_BOM):
        body = body[3:]
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _undecodable(body, exc)
    if not isinstance(document, dict):
        return Rejection(NOT_OBJECT, f"top level is {type(document).__name__}, not an object")
    try:
        return _from_document(document, enqueued_time)
    except _Reject as reject:
        return reject.rejection


def _undecodable(body: bytes, exc: orjson.JSONDecodeError) -> Rejection:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as utf8_error:
        return Rejection(NOT_UTF8, f"invalid UTF-8 at byte {utf8_error.start}")
    return Rejection(NOT_JSON, str(exc)[:200])


def _from_document(document: dict[str, Any], enqueued_time: datetime) -> UsageEvent:
    fields = _fold_case(document)
    schema = fields.get("schema")
    if schema is not None and schema != CANONICAL_SCHEMA:
        raise _Reject(UNSUPPORTED_SCHEMA, f"schema {str(schema)[:80]!r} is not {CANONICAL_SCHEMA}")

    subscription = _text(fields, "subscriptionid")
    if subscription is None or not subscription.strip():
        raise _Reject(MISSING_SUBSCRIPTION, "no subscription id")

    usage = _first(fields, "usage", "tokenusage")
    if usage is not None:
        shape = CANONICAL if schema is not None else TOKEN_USAGE
        prompt, completion, cached, total = _usage_object(usage)
    elif "totaltokens" in fields or "prompttokens" in fields:
        shape = AI_HUB if "responsetokens" in fields else TOOLKIT
        prompt, completion, cached, total = _flat_counts(fields)
    else:
        raise _Reject(MISSING_TOKENS, "no usage, TokenUsage or token count fields")
    if schema is None and shape == TOOLKIT and prompt is not None:
        shape = GENERIC

    event_time, from_event = _event_time(_first(fields, "eventtime", "timestamp"), enqueued_time)
    return UsageEvent(
        subscription_id=subscription,
        request_id=_text(fields, "requestid") or _text(fields, "id"),
        operation=_name(fields, "operationid", "operationname"),
        model=_name(fields, "model"),
        deployment=_name(fields, "deployment", "deploymentname"),
        event_time=event_time,
        time_from_event=from_event,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        total_tokens=total,
        shape=shape,
    )


def _fold_case(document: dict[str, Any]) -> dict[str, Any]:
    folded: dict[str, Any] = {}
    for key, value in document.items():
        lower = key.lower()
        if lower in folded and folded[lower] != value:
            raise _Reject(AMBIGUOUS_FIELD, f"field {key[:80]!r} is given twice with different values")
        folded[lower] = value
    return folded


def _first(fields: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = fields.get(name)
        if value is not None:
            return value
    return None


def _text(fields: dict[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Reject(INVALID_FIELD, f"{name} must be a string, got {type(value).__name__}")
    return value


def _name(fields: dict[str, Any], *names: str) -> str:
    """A descriptive identifier (model, deployment, operation); gateways write NA when unknown."""
    for name in names:
        value = _text(fields, name)
        if value is not None and value.strip().lower() not in _NOT_SENT:
            return value
    return UNKNOWN


def _usage_object(usage: Any) -> tuple[int | None, int | None, int | None, int]:
    if not isinstance(usage, dict):
        raise _Reject(INVALID_FIELD, f"usage must be an object, got {type(usage).__name__}")
    usage = _fold_case(usage)
    prompt = _count(usage, "prompt_tokens")
    completion = _count(usage, "completion_tokens")
    total = _count(usage, "total_tokens")
    details = usage.get("prompt_tokens_details")
    cached: int | None = None
    if details is not None:
        if not isinstance(details, dict):
            raise _Reject(INVALID_FIELD, "prompt_tokens_details must be an object")
        cached = _count(_fold_case(details), "cached_tokens")
    return _settle(prompt, completion, cached, total)


def _flat_counts(fields: dict[str, Any]) -> tuple[int | None, int | None, int | None, int]:
    prompt = _count(fields, "prompttokens")
    completion = _count(fields, "responsetokens")
    if completion is None:
        completion = _count(fields, "completiontokens")
    cached = _count(fields, "cachedtokens")
    return _settle(prompt, completion, cached, _count(fields, "totaltokens"))


def _settle(
    prompt: int | None, completion: int | None, cached: int | None, total: int | None
) -> tuple[int | None, int | None, int | None, int]:
    """Complete what the event implies and refuse what contradicts itself."""
    if prompt is None:
        if total is None:
            raise _Reject(MISSING_TOKENS, "neither a total nor a prompt token count")
        if completion is not None or cached is not None:
            raise _Reject(INCONSISTENT_TOKENS, "completion or cached tokens without prompt tokens")
        return None, None, None, total
    completion = 0 if completion is None else completion
    cached = 0 if cached is None else cached
    if cached > prompt:
        raise _Reject(INCONSISTENT_TOKENS, f"cached tokens {cached} exceed prompt tokens {prompt}")
    if total is None:
        total = prompt + completion
    elif total < prompt + completion:
        raise _Reject(
            INCONSISTENT_TOKENS,
            f"total tokens {total} is less than prompt {prompt} + completion {completion}",
        )
    if total > MAX_TOKENS:
        raise _Reject(ABSURD_TOKENS, f"{total} tokens in one request exceeds {MAX_TOKENS}")
    return prompt, completion, cached, total


def _count(fields: dict[str, Any], name: str) -> int | None:
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        raise _Reject(INVALID_TOKENS, f"{name} is a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _Reject(INVALID_TOKENS, f"{name} is not a finite number")
        if not value.is_integer():
            raise _Reject(FRACTIONAL_TOKENS, f"{name} is fractional: {value!r}")
        number = int(value)
    elif isinstance(value, str):
        digits = value.strip()
        if digits.startswith("-") and digits[1:].isdecimal():
            raise _Reject(NEGATIVE_TOKENS, f"{name} is negative: {digits[:40]}")
        if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
            raise _Reject(INVALID_TOKENS, f"{name} is not a whole number: {value[:40]!r}")
        number = int(digits)
    else:
        raise _Reject(INVALID_TOKENS, f"{name} must be a number, got {type(value).__name__}")
    if number < 0:
        raise _Reject(NEGATIVE_TOKENS, f"{name} is negative: {number}")
    if number > MAX_TOKENS:
        raise _Reject(ABSURD_TOKENS, f"{name} {number} exceeds {MAX_TOKENS}")
    return number


_DOTNET_TIME = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2})(?:\s*([AaPp])\.?[Mm]\.?)?$")


def _event_time(raw: Any, enqueued_time: datetime) -> tuple[datetime, bool]:
    """The event's own UTC time when it is readable and plausible, else the enqueued time."""
    parsed = _parse_time(raw) if isinstance(raw, str) else None
    if parsed is None or abs(parsed - enqueued_time) > MAX_TIME_SKEW:
        return enqueued_time, False
    return parsed, True


def _parse_time(raw: str) -> datetime | None:
    text = raw.strip()
    match = _DOTNET_TIME.match(text)
    if match:
        month, day, year, hour, minute, second, meridiem = match.groups()
        hours = int(hour)
        if meridiem:
            if not 1 <= hours <= 12:
                return None
            hours = hours % 12 + (12 if meridiem in "Pp" else 0)
        try:
            return datetime(int(year), int(month), int(day), hours, int(minute), int(second), tzinfo=UTC)
        except ValueError:
            return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)

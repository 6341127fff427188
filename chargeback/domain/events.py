"""Parses the gateway's usage events, in every shape gateways send, into one ``UsageEvent``.

Accepted shapes (see the README): this project's canonical ``chargeback.usage/v1`` event, the
GenAI gateway toolkit's usage-tracking event (``TotalTokens`` as a string, .NET ``EventTime``),
the same capability's ``TokenUsage`` object, and the AI Hub Gateway accelerator's camelCase
event. Fields are found by name, case-insensitively, so a shape that mixes them is read too.

Parsing never raises on bad input: it returns a ``Rejection`` with a reason code, and the
caller dead-letters the raw body.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from chargeback.domain.usage import UNKNOWN

MAX_EVENT_BYTES = 64 * 1024
"""A usage event is a few hundred bytes; anything past this is not one."""

MAX_TOKENS = 100_000_000
"""No single request uses this many tokens; a larger count is corruption, not usage."""

MAX_IDENTIFIER_CHARS = 512
"""Subscription, model, deployment and operation names are short; longer ones are not names."""

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


EventFields = tuple[str, str | None, str, str, str, datetime, bool, int | None, int | None, int | None, int, str]
"""A ``UsageEvent``'s fields as a plain tuple, in the dataclass's field order."""


def parse_event(body: bytes, enqueued_time: datetime) -> UsageEvent | Rejection:
    """Parse one event body; ``enqueued_time`` (UTC) stands in for a missing event time."""
    parsed = parse_event_fields(body, enqueued_time)
    if isinstance(parsed, Rejection):
        return parsed
    return UsageEvent(*parsed)


def parse_event_fields(body: bytes, enqueued_time: datetime) -> EventFields | Rejection:
    """``parse_event`` without building the ``UsageEvent``: its fields as a tuple, in field order.

    The ledger folds every event through this; a frozen dataclass per event would cost it about
    a fifth of its time.
    """
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


def _from_document(document: dict[str, Any], enqueued_time: datetime) -> EventFields:
    # Each field's common case (a plain string, a small int) is read inline; anything else goes
    # through the functions below, which decide exactly as the field-by-field reading always
    # has, and in the same order, so the first problem found is the one reported.
    values, present = _EVENT_FIELDS.values(document)
    schema, subscription, usage, token_usage, *counts, event_time_text, timestamp = values[:11]
    request_id, identifier, operation_id, operation_name, model, deployment, deployment_name = values[11:]
    if schema is not None and schema != CANONICAL_SCHEMA:
        raise _Reject(UNSUPPORTED_SCHEMA, f"schema {str(schema)[:80]!r} is not {CANONICAL_SCHEMA}")
    if subscription.__class__ is not str:
        subscription = _text(subscription, "subscriptionid")
    if subscription is None or not subscription.strip():
        raise _Reject(MISSING_SUBSCRIPTION, "no subscription id")
    shape, prompt, completion, cached, total = _tokens(
        schema, usage if usage is not None else token_usage, counts, present
    )
    event_time, from_event = _event_time(event_time_text if event_time_text is not None else timestamp, enqueued_time)
    if request_id.__class__ is not str or not request_id:
        request_id = _text(request_id, "requestid") or _text(identifier, "id")
    if operation_id.__class__ is not str or operation_id.strip().lower() in _NOT_SENT:
        operation_id = _name("operationid", operation_id, "operationname", operation_name)
    if model.__class__ is not str or model.strip().lower() in _NOT_SENT:
        model = _name("model", model)
    if deployment.__class__ is not str or deployment.strip().lower() in _NOT_SENT:
        deployment = _name("deployment", deployment, "deploymentname", deployment_name)
    longest = max(len(subscription), len(operation_id), len(model), len(deployment))
    if longest > MAX_IDENTIFIER_CHARS:
        raise _Reject(INVALID_FIELD, f"an identifier is {longest} characters long; at most {MAX_IDENTIFIER_CHARS}")
    return (
        subscription,
        request_id,
        operation_id,
        model,
        deployment,
        event_time,
        from_event,
        prompt,
        completion,
        cached,
        total,
        shape,
    )


def _tokens(
    schema: Any, usage: Any, counts: list[Any], present: frozenset[str]
) -> tuple[str, int | None, int | None, int | None, int]:
    """The event's shape and token counts, from a usage object or from flat count fields."""
    if usage is not None:
        shape = CANONICAL if schema is not None else TOKEN_USAGE
        return (shape, *_usage_object(usage))
    if "totaltokens" not in present and "prompttokens" not in present:
        raise _Reject(MISSING_TOKENS, "no usage, TokenUsage or token count fields")
    total_tokens, prompt_tokens, response_tokens, completion_tokens, cached_tokens = counts
    shape = AI_HUB if "responsetokens" in present else TOOLKIT
    prompt = _count(prompt_tokens, "prompttokens")
    completion = _count(response_tokens, "responsetokens")
    if completion is None:
        completion = _count(completion_tokens, "completiontokens")
    cached = _count(cached_tokens, "cachedtokens")
    prompt, completion, cached, total = _settle(prompt, completion, cached, _count(total_tokens, "totaltokens"))
    if schema is None and shape == TOOLKIT and prompt is not None:
        shape = GENERIC
    return shape, prompt, completion, cached, total


def _fold_case(document: dict[str, Any]) -> dict[str, Any]:
    folded: dict[str, Any] = {}
    for key, value in document.items():
        lower = key.lower()
        if lower in folded and folded[lower] != value:
            raise _Reject(AMBIGUOUS_FIELD, f"field {key[:80]!r} is given twice with different values")
        folded[lower] = value
    return folded


_Plan = tuple[Callable[[dict[str, Any]], tuple[Any, ...]], frozenset[str]]
_AMBIGUOUS: _Plan = (tuple, frozenset())
"""The plan of an object whose keys fold together: ``_fold_case`` then judges each object."""

_ABSENT = "\x00absent"
"""A key added to a planned object, holding None: the one every absent name is read from."""

_MAX_PLANS = 1024
_MAX_PLANNED_KEYS = 64


class _CaseFolder:
    """Reads the wanted names of an object case-insensitively, as ``_fold_case`` would.

    Objects of one shape carry the same keys in the same order, so which key holds each wanted
    name (or that two keys fold together) is worked out once per sequence of keys, and the
    values are then read with one ``itemgetter`` call instead of lower-casing every key of
    every event.
    """

    def __init__(self, *names: str) -> None:
        self._names = names
        self._plans: dict[tuple[str, ...], _Plan] = {}

    def values(self, document: dict[str, Any]) -> tuple[tuple[Any, ...], frozenset[str]]:
        """The wanted names' values (None when absent or null) and which names are present.

        ``document`` is the parser's own object: a key holding None is added to it.
        """
        signature = tuple(document)
        plan = self._plans.get(signature)
        if plan is None:
            plan = self._plan(signature)
        if plan is _AMBIGUOUS:
            folded = _fold_case(document)
            return tuple(folded.get(name) for name in self._names), frozenset(folded)
        getter, present = plan
        document[_ABSENT] = None
        return getter(document), present

    def _plan(self, signature: tuple[str, ...]) -> _Plan:
        folded = {key.lower(): key for key in signature}
        if len(folded) != len(signature) or _ABSENT in signature:
            plan = _AMBIGUOUS
        else:
            keys = [folded.get(name, _ABSENT) for name in self._names]
            # itemgetter of one key returns the value itself; read the marker too to get a tuple.
            getter = operator.itemgetter(*keys) if len(keys) > 1 else operator.itemgetter(*keys, _ABSENT)
            plan = (getter, frozenset(name for name in self._names if name in folded))
        if len(signature) <= _MAX_PLANNED_KEYS:
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            self._plans[signature] = plan
        return plan


_EVENT_FIELDS = _CaseFolder(
    "schema",
    "subscriptionid",
    "usage",
    "tokenusage",
    "totaltokens",
    "prompttokens",
    "responsetokens",
    "completiontokens",
    "cachedtokens",
    "eventtime",
    "timestamp",
    "requestid",
    "id",
    "operationid",
    "operationname",
    "model",
    "deployment",
    "deploymentname",
)
_USAGE_FIELDS = _CaseFolder("prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details")
_DETAIL_FIELDS = _CaseFolder("cached_tokens")


def _text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Reject(INVALID_FIELD, f"{name} must be a string, got {type(value).__name__}")
    return value


def _name(name: str, value: Any, alternative: str = "", alternative_value: Any = None) -> str:
    """A descriptive identifier (model, deployment, operation); gateways write NA when unknown.

    ``name`` is read first; ``alternative`` (when given) only if ``name`` is absent or NA.
    """
    if value.__class__ is str and value.strip().lower() not in _NOT_SENT:
        return str(value)
    for field, candidate in ((name, value), (alternative, alternative_value)):
        text = _text(candidate, field)
        if text is not None and text.strip().lower() not in _NOT_SENT:
            return text
    return UNKNOWN


def _usage_object(usage: Any) -> tuple[int | None, int | None, int | None, int]:
    if not isinstance(usage, dict):
        raise _Reject(INVALID_FIELD, f"usage must be an object, got {type(usage).__name__}")
    (prompt, completion, total, details), _ = _USAGE_FIELDS.values(usage)
    if prompt is not None and (prompt.__class__ is not int or not 0 <= prompt <= MAX_TOKENS):
        prompt = _count(prompt, "prompt_tokens")
    if completion is not None and (completion.__class__ is not int or not 0 <= completion <= MAX_TOKENS):
        completion = _count(completion, "completion_tokens")
    if total is not None and (total.__class__ is not int or not 0 <= total <= MAX_TOKENS):
        total = _count(total, "total_tokens")
    cached: int | None = None
    if details is not None:
        if not isinstance(details, dict):
            raise _Reject(INVALID_FIELD, "prompt_tokens_details must be an object")
        cached_tokens = _DETAIL_FIELDS.values(details)[0][0]
        cached = _count(cached_tokens, "cached_tokens")
    return _settle(prompt, completion, cached, total)


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


def _count(value: Any, name: str) -> int | None:
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
        number = _count_text(value, name)
    else:
        raise _Reject(INVALID_TOKENS, f"{name} must be a number, got {type(value).__name__}")
    if number < 0:
        raise _Reject(NEGATIVE_TOKENS, f"{name} is negative: {number}")
    if number > MAX_TOKENS:
        raise _Reject(ABSURD_TOKENS, f"{name} {number} exceeds {MAX_TOKENS}")
    return number


def _count_text(value: str, name: str) -> int:
    """A count sent as text: ASCII digits only, at most 18 of them."""
    digits = value.strip()
    if digits.startswith("-") and digits[1:].isdecimal():
        raise _Reject(NEGATIVE_TOKENS, f"{name} is negative: {digits[:40]}")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise _Reject(INVALID_TOKENS, f"{name} is not a whole number: {value[:40]!r}")
    return int(digits)


_DOTNET_TIME = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2})(?:\s*([AaPp])\.?[Mm]\.?)?$")


def _event_time(raw: Any, enqueued_time: datetime) -> tuple[datetime, bool]:
    """The event's own UTC time when it is readable and plausible, else the enqueued time."""
    if raw.__class__ is str:
        text = raw.strip()
        parsed = _parse_slashed_time(text) if "/" in text else _parse_iso_time(text)
    else:
        parsed = _parse_time(raw) if isinstance(raw, str) else None
    if parsed is None or abs(parsed - enqueued_time) > MAX_TIME_SKEW:
        return enqueued_time, False
    return parsed, True


def _parse_time(raw: str) -> datetime | None:
    text = raw.strip()
    if "/" in text:
        return _parse_slashed_time(text)
    # Without a slash the .NET pattern cannot match: straight to ISO 8601.
    return _parse_iso_time(text)


@functools.lru_cache(maxsize=4096)
def _parse_slashed_time(text: str) -> datetime | None:
    """A .NET ``DateTime.ToString()`` time (or ISO 8601 with a slash separator); cached, since
    at one-second resolution many events of a busy gateway carry the same string."""
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
    return _parse_iso_time(text)


def _parse_iso_time(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)

"""Hostile and malformed events never escape the registered function: each is counted or dead-lettered."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargeback.app import runtime
from chargeback.domain import events
from chargeback.domain.events import MAX_EVENT_BYTES
from devtools.hostshape import HostEvent
from tests.functions import deliver
from tests.support import BAD_INPUT

pytestmark = pytest.mark.azurite

ENQUEUED = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
DAY = "2026-11-27"
MARKER = orjson.dumps({"SubscriptionId": "marker", "TotalTokens": "7"})
"""A good event sent beside each hostile one: it must be counted exactly, whatever its neighbour."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid event with odd but legal content, and what it must add to the ledger."""

    subscription: str
    total_tokens: int


Expectation = Accepted | str
"""Either ``Accepted`` or the reason code the event is dead-lettered with."""


def event(subscription: Any = "a", tokens: Any = 1, **extra: Any) -> bytes:
    return json.dumps({"SubscriptionId": subscription, "TotalTokens": tokens, **extra}, ensure_ascii=False).encode()


def nested(depth: int) -> bytes:
    return b'{"SubscriptionId": "deep", "TotalTokens": 2, "x": ' + b"[" * depth + b"]" * depth + b"}"


GOOD_TEXT = b'{"SubscriptionId": "trunc", "RequestId": "r-1", "TotalTokens": "12345", "model": "gpt-4o"}'
CONTROL_CHARACTERS = "\x00\x01\x07\x08\x0b\x0c\x1b\x1f\x7f\x85\x9f"
FORBIDDEN_IN_KEYS = "/\\#?|%"

CORPUS: list[tuple[str, bytes, Expectation]] = [
    *((f"table: {case}", body, reason) for case, body, reason in BAD_INPUT),
    # Truncated JSON: every cut of a good event is unreadable.
    *((f"truncated at {cut}", GOOD_TEXT[:cut], events.NOT_JSON) for cut in range(1, len(GOOD_TEXT), 6)),
    # Nesting: deep but within the parser's limit is fine; past it is not JSON it will read.
    ("nested 200 deep beside good fields", nested(200), Accepted("deep", 2)),
    ("nested 5000 deep beside good fields", nested(5000), events.NOT_JSON),
    ("nested objects 3000 deep", b'{"a":' * 3000 + b"1" + b"}" * 3000, events.NOT_JSON),
    # Numbers.
    ("number overflowing a double", b'{"SubscriptionId": "a", "TotalTokens": 1e400}', events.NOT_JSON),
    ("negative overflow", b'{"SubscriptionId": "a", "TotalTokens": -1e400}', events.NOT_JSON),
    ("integer past 64 bits", event(tokens=2**70), events.ABSURD_TOKENS),
    ("digits past 64 bits as text", event(tokens="9" * 30), events.INVALID_TOKENS),
    ("the largest believable count", event("max", "100000000"), Accepted("max", 100_000_000)),
    ("one past the largest believable count", event(tokens="100000001"), events.ABSURD_TOKENS),
    ("a whole float", event("float", 12.0), Accepted("float", 12)),
    ("an exponent that is whole", b'{"SubscriptionId": "exp", "TotalTokens": 1E2}', Accepted("exp", 100)),
    ("negative zero", b'{"SubscriptionId": "zero", "TotalTokens": -0.0}', Accepted("zero", 0)),
    ("padded digits as text", event("padded", " 12 "), Accepted("padded", 12)),
    ("a plus sign", event(tokens="+5"), events.INVALID_TOKENS),
    ("hexadecimal text", event(tokens="0x10"), events.INVALID_TOKENS),
    ("empty text", event(tokens=""), events.INVALID_TOKENS),
    ("full-width digits", event(tokens="\uff11\uff12"), events.INVALID_TOKENS),
    ("arabic-indic digits", event(tokens="\u0661"), events.INVALID_TOKENS),
    ("a leading zero literal", b'{"SubscriptionId": "a", "TotalTokens": 01}', events.NOT_JSON),
    ("NaN as text", event(tokens="NaN"), events.INVALID_TOKENS),
    ("-Infinity literal", b'{"SubscriptionId": "a", "TotalTokens": -Infinity}', events.NOT_JSON),
    # Duplicate keys: the parser takes the last value; two spellings that disagree are refused.
    ("a duplicated total, last wins",
     b'{"SubscriptionId": "dup", "TotalTokens": 1, "TotalTokens": 5}', Accepted("dup", 5)),
    ("a duplicated subscription, last wins",
     b'{"SubscriptionId": "x", "SubscriptionId": "dup2", "TotalTokens": 3}', Accepted("dup2", 3)),
    ("the same value under two spellings",
     b'{"subscriptionid": "same", "SUBSCRIPTIONID": "same", "TotalTokens": 1}', Accepted("same", 1)),
    ("two spellings of the total disagree",
     b'{"SubscriptionId": "a", "totaltokens": 1, "TotalTokens": 2}', events.AMBIGUOUS_FIELD),
    ("two spellings inside usage disagree",
     b'{"SubscriptionId": "a", "usage": {"prompt_tokens": 1, "PROMPT_TOKENS": 2}}', events.AMBIGUOUS_FIELD),
    # Wrong types.
    ("object subscription", event({"id": "a"}), events.INVALID_FIELD),
    ("list subscription", event(["a"]), events.INVALID_FIELD),
    ("boolean subscription", event(True), events.INVALID_FIELD),
    ("null subscription", event(None), events.MISSING_SUBSCRIPTION),
    ("numeric request id", event(RequestId=5), events.INVALID_FIELD),
    ("object deployment", event(deployment=["d"]), events.INVALID_FIELD),
    ("null total", event(tokens=None), events.MISSING_TOKENS),
    ("object total", event(tokens={"n": 1}), events.INVALID_TOKENS),
    ("usage as text", b'{"SubscriptionId": "a", "usage": "10"}', events.INVALID_FIELD),
    ("prompt details as a list",
     b'{"SubscriptionId": "a", "usage": {"prompt_tokens": 1, "prompt_tokens_details": []}}', events.INVALID_FIELD),
    ("numeric event time falls back to enqueued", event("numtime", 4, EventTime=12345), Accepted("numtime", 4)),
    ("impossible event time falls back", event("badtime", 4, EventTime="2026-13-45T99:00:00Z"), Accepted("badtime", 4)),
    ("schema null means no schema", event("nullschema", 2, schema=None), Accepted("nullschema", 2)),
    # Sizes.
    ("1 MB of JSON", event(pad="x" * 1_000_000), events.TOO_LARGE),
    ("1 MB of zero bytes", b"\x00" * 1_000_000, events.TOO_LARGE),
    ("1 MB of invalid UTF-8", b"\xff" * 1_000_000, events.TOO_LARGE),
    ("one byte past the limit", b" " * (MAX_EVENT_BYTES + 1), events.TOO_LARGE),
    ("padded to exactly the limit", GOOD_TEXT + b" " * (MAX_EVENT_BYTES - len(GOOD_TEXT)), Accepted("trunc", 12345)),
    ("whitespace only", b" \t\r\n", events.NOT_JSON),
    # Encodings.
    ("a UTF-8 BOM", b"\xef\xbb\xbf" + event("bom", 9), Accepted("bom", 9)),
    ("two UTF-8 BOMs", b"\xef\xbb\xbf\xef\xbb\xbf" + event("bom", 9), events.NOT_JSON),
    ("UTF-16 with its BOM", b"\xff\xfe" + event("u16", 1).decode().encode("utf-16-le"), events.NOT_UTF8),
    ("UTF-16 without a BOM", event("u16", 1).decode().encode("utf-16-le"), events.NOT_JSON),
    ("an overlong UTF-8 slash", b'{"SubscriptionId": "a\xc0\xaf", "TotalTokens": 1}', events.NOT_UTF8),
    ("an encoded surrogate", b'{"SubscriptionId": "\xed\xa0\x80", "TotalTokens": 1}', events.NOT_UTF8),
    ("a lone escaped surrogate", b'{"SubscriptionId": "\\ud800", "TotalTokens": 1}', events.NOT_JSON),
    ("a truncated multibyte character", b'{"SubscriptionId": "\xe2\x82", "TotalTokens": 1}', events.NOT_UTF8),
    ("emoji and combining marks", event("t\u0301e\u0308am-\U0001f600", 3), Accepted("t\u0301e\u0308am-\U0001f600", 3)),
    ("right-to-left override", event("\u202eevil", 3), Accepted("\u202eevil", 3)),
    ("a non-breaking-space subscription", event("\u00a0\u2003"), events.MISSING_SUBSCRIPTION),
    ("trailing NUL after the document", event() + b"\x00", events.NOT_JSON),
    ("a trailing comma", b'{"SubscriptionId": "a", "TotalTokens": 1,}', events.NOT_JSON),
    ("single quotes", b"{'SubscriptionId': 'a', 'TotalTokens': 1}", events.NOT_JSON),
    ("two documents", event() + event(), events.NOT_JSON),
    ("a raw control character in a string", b'{"SubscriptionId": "a\x01b", "TotalTokens": 1}', events.NOT_JSON),
    # Identifiers Table Storage forbids in keys, or that are odd: they are data, not keys.
    *(
        (f"control character {ord(ch):#04x} in the subscription", event(f"s{ch}x", 2), Accepted(f"s{ch}x", 2))
        for ch in CONTROL_CHARACTERS
    ),
    *(
        (f"{ch!r} in every identifier",
         event(f"s{ch}1", 2, model=f"m{ch}", deployment=ch, OperationId=f"{ch}op"), Accepted(f"s{ch}1", 2))
        for ch in FORBIDDEN_IN_KEYS
    ),
    ("a subscription that looks like a key range", event("2026-11|~", 1), Accepted("2026-11|~", 1)),
    ("a subscription that looks like the watermark", event("!watermark", 1), Accepted("!watermark", 1)),
    ("percent escapes that must stay literal", event("%7C%2F", 1), Accepted("%7C%2F", 1)),
    (
        "identifiers at the length limit (hashed key)",
        event("k" * events.MAX_IDENTIFIER_CHARS, 1, model="m" * events.MAX_IDENTIFIER_CHARS),
        Accepted("k" * events.MAX_IDENTIFIER_CHARS, 1),
    ),
    ("a 2000-character subscription", event("k" * 2000, 1), events.INVALID_FIELD),
    ("a 10000-character model name", event("longmodel", 1, model="m" * 10_000), events.INVALID_FIELD),
]  # fmt: skip


@contextmanager
def ingest_lines() -> Iterator[list[dict[str, Any]]]:
    """Collect the parsed JSON of every ``chargeback.ingestion.ingest`` log line."""
    lines: list[dict[str, Any]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message.startswith("chargeback.ingest "):
                lines.append(json.loads(message.removeprefix("chargeback.ingest ")))

    handler = Collect()
    logger = logging.getLogger("chargeback.ingestion.ingest")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def dead_letter_reasons(partition: str) -> dict[int, str]:
    services = runtime.services()
    table = services.storage.table(services.settings.storage.dead_letter_table)
    query = "PartitionKey eq @day and partition_id eq @partition"
    return {
        int(entity["RowKey"].rsplit("|", 1)[1]): str(entity["reason"])
        for entity in table.query_entities(query, parameters={"day": DAY, "partition": partition})
    }


def counted() -> dict[str, tuple[int, int]]:
    """Requests and total tokens per subscription in the ledger (events may be dated up to a week on)."""
    out: dict[str, tuple[int, int]] = {}
    ledger = runtime.services().ledger
    for row in [*ledger.period_rows("2026-11"), *ledger.period_rows("2026-12")]:
        requests, total = out.get(row.key.subscription_id, (0, 0))
        out[row.key.subscription_id] = (requests + row.counters.requests, total + row.counters.total_tokens)
    return out


def deliver_accounted(bodies: list[bytes], partition: str) -> dict[str, Any]:
    """Deliver one batch through the registered function and return its ingest log line."""
    with ingest_lines() as lines:
        deliver([HostEvent(body, i, ENQUEUED) for i, body in enumerate(bodies)], partition_id=partition)
    [line] = lines
    assert line["received"] == len(bodies)
    assert line["received"] == line["applied"] + line["skipped_already_applied"] + line["dead_lettered"]
    return line


def test_the_corpus_holds_at_least_100_entries_and_every_reason() -> None:
    assert len(CORPUS) >= 100
    reasons = {expectation for _, _, expectation in CORPUS if isinstance(expectation, str)}
    assert reasons == events.REASONS
    assert sum(isinstance(expectation, Accepted) for _, _, expectation in CORPUS) >= 30


def check(body: bytes, expectation: Expectation) -> None:
    line = deliver_accounted([MARKER, body, MARKER], partition="0")
    reasons = dead_letter_reasons("0")
    totals = counted()
    assert totals.pop("marker") == (2, 14)
    if isinstance(expectation, Accepted):
        assert (line["applied"], reasons) == (3, {})
        assert totals == {expectation.subscription: (1, expectation.total_tokens)}
    else:
        assert (line["applied"], reasons, totals) == (2, {1: expectation}, {})


@pytest.mark.parametrize(
    ("case", "body", "expectation"), CORPUS, ids=[f"{i:03d} {case[:60]}" for i, (case, _, _) in enumerate(CORPUS)]
)
def test_each_hostile_event_is_counted_or_dead_lettered_as_classified(
    app_settings: dict[str, str], case: str, body: bytes, expectation: Expectation
) -> None:
    check(body, expectation)


def test_the_whole_corpus_in_one_batch_is_accounted_for(app_settings: dict[str, str]) -> None:
    bodies = [MARKER]
    for _, body, _ in CORPUS:
        bodies += [body, MARKER]
    line = deliver_accounted(bodies, partition="1")
    rejected = {2 * i + 1: e for i, (_, _, e) in enumerate(CORPUS) if isinstance(e, str)}
    assert dead_letter_reasons("1") == rejected
    assert line["dead_lettered"] == len(rejected)
    totals = counted()
    assert totals.pop("marker") == (len(CORPUS) + 1, 7 * (len(CORPUS) + 1))
    expected: dict[str, tuple[int, int]] = {}
    for _, _, expectation in CORPUS:
        if isinstance(expectation, Accepted):
            requests, total = expected.get(expectation.subscription, (0, 0))
            expected[expectation.subscription] = (requests + 1, total + expectation.total_tokens)
    assert totals == expected


def test_ten_thousand_distinct_subscriptions_in_one_batch_are_each_counted_once(
    app_settings: dict[str, str],
) -> None:
    bodies = [event(f"sub-{i:05d}", i % 97 + 1) for i in range(10_000)]
    line = deliver_accounted(bodies, partition="2")
    again = deliver_accounted(bodies, partition="2")  # the host retries: nothing changes
    assert again["skipped_already_applied"] == 10_000
    totals = counted()
    assert line["applied"] == 10_000
    assert len(totals) == 10_000
    assert totals == {f"sub-{i:05d}": (1, i % 97 + 1) for i in range(10_000)}


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELD_NAMES = st.sampled_from(
    ["SubscriptionId", "subscriptionId", "TotalTokens", "usage", "model", "EventTime", "schema", "RequestId", "x"]
)
HOSTILE_BODIES = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=5).map(lambda document: json.dumps(document).encode()),
    st.builds(
        lambda prefix, body, cut: prefix + body[:cut],
        st.sampled_from([b"", b"\xef\xbb\xbf", b" ", b"\xff"]),
        st.sampled_from([GOOD_TEXT, MARKER, event("fz", "3")]),
        st.integers(0, 120),
    ),
)
_partitions = itertools.count()
_applied: dict[str, int] = {}
"""Events applied so far per ledger table, across the fuzzer's examples."""


@settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(bodies=st.lists(HOSTILE_BODIES, min_size=1, max_size=4))
def test_arbitrary_bytes_never_escape_and_every_event_is_accounted_for(
    app_settings: dict[str, str], bodies: list[bytes]
) -> None:
    partition = f"fuzz-{next(_partitions)}"
    batch = [MARKER, *bodies, MARKER]
    line = deliver_accounted(batch, partition)
    reasons = dead_letter_reasons(partition)
    assert len(reasons) == line["dead_lettered"]
    assert set(reasons.values()) <= events.REASONS
    assert set(reasons) <= set(range(1, len(batch) - 1))
    table = app_settings["CHARGEBACK_LEDGER_TABLE"]
    _applied[table] = _applied.get(table, 0) + line["applied"]
    totals = counted()
    assert sum(requests for requests, _ in totals.values()) == _applied[table]
    assert totals["marker"][1] == 7 * totals["marker"][0]


def test_a_batch_of_large_non_ascii_dead_letters_is_stored(app_settings: dict[str, str]) -> None:
    emoji = ("\U0001f600" * 4000).encode()
    line = deliver_accounted([emoji] * 100, partition="3")
    assert line["dead_lettered"] == 100


def test_a_batch_of_many_identifiers_as_long_as_allowed_is_committed_in_chunks_that_fit(
    app_settings: dict[str, str],
) -> None:
    longest = events.MAX_IDENTIFIER_CHARS
    long = "\U0001f600" * (longest - 3)
    bodies = [
        event(f"{i:03d}{long}", 1, model=f"{i:03d}{long}", deploymentName=long, OperationName=long) for i in range(99)
    ]
    line = deliver_accounted(bodies, partition="4")
    assert (line["applied"], line["dead_lettered"]) == (99, 0)
    assert line["transactions"] > 1


def test_an_identifier_longer_than_allowed_is_dead_lettered_not_retried_forever(app_settings: dict[str, str]) -> None:
    check(event("s" * 40_000, 1), events.INVALID_FIELD)

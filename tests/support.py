"""Paths and data that many test modules share (fixtures live in conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from chargeback.domain import events

ROOT = Path(__file__).resolve().parent.parent
"""The repository's root."""

SAMPLES = ROOT / "tests" / "fixtures" / "events"
"""The gateways' event shapes, one JSON event per line, as real APIM policies write them."""


def chargeback(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m chargeback ARGV`` as an operator runs it, in the repository, with ``env`` alone."""
    return subprocess.run(
        [sys.executable, "-m", "chargeback", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


APPMETRICS_EXPORT = ROOT / "tests" / "fixtures" / "appmetrics-export.csv"
"""An AppMetrics export, as Log Analytics writes it, for the reconciliation tests."""

BAD_INPUT: list[tuple[str, bytes, str]] = [
    ("empty body", b"", events.NOT_JSON),
    ("plain text", b"hello", events.NOT_JSON),
    ("truncated JSON", b'{"SubscriptionId": "a", "TotalTokens": "1', events.NOT_JSON),
    ("NaN literal", b'{"SubscriptionId": "a", "TotalTokens": NaN}', events.NOT_JSON),
    ("Infinity literal", b'{"SubscriptionId": "a", "TotalTokens": Infinity}', events.NOT_JSON),
    ("deep nesting", b"[" * 5000 + b"]" * 5000, events.NOT_JSON),
    ("invalid UTF-8", b'{"SubscriptionId": "\xff\xfe", "TotalTokens": 1}', events.NOT_UTF8),
    ("latin-1 bytes", "{\"SubscriptionId\": \"caf\xe9\", \"TotalTokens\": 1}".encode("latin-1"), events.NOT_UTF8),
    ("oversized", b'{"SubscriptionId": "a", "pad": "' + b"x" * events.MAX_EVENT_BYTES + b'"}', events.TOO_LARGE),
    ("a JSON array", b'[{"SubscriptionId": "a", "TotalTokens": 1}]', events.NOT_OBJECT),
    ("a JSON string", b'"usage"', events.NOT_OBJECT),
    ("a JSON number", b"42", events.NOT_OBJECT),
    ("null", b"null", events.NOT_OBJECT),
    ("no subscription", b'{"TotalTokens": "5"}', events.MISSING_SUBSCRIPTION),
    ("blank subscription", b'{"SubscriptionId": "  ", "TotalTokens": "5"}', events.MISSING_SUBSCRIPTION),
    ("numeric subscription", b'{"SubscriptionId": 7, "TotalTokens": "5"}', events.INVALID_FIELD),
    ("object model", b'{"SubscriptionId": "a", "model": {}, "TotalTokens": "5"}', events.INVALID_FIELD),
    ("usage not an object", b'{"SubscriptionId": "a", "usage": [1, 2]}', events.INVALID_FIELD),
    ("no token fields", b'{"SubscriptionId": "a", "RequestId": "r"}', events.MISSING_TOKENS),
    ("empty usage", b'{"SubscriptionId": "a", "usage": {}}', events.MISSING_TOKENS),
    ("negative total", b'{"SubscriptionId": "a", "TotalTokens": -5}', events.NEGATIVE_TOKENS),
    ("negative total as text", b'{"SubscriptionId": "a", "TotalTokens": "-5"}', events.NEGATIVE_TOKENS),
    ("negative prompt", b'{"SubscriptionId": "a", "usage": {"prompt_tokens": -1}}', events.NEGATIVE_TOKENS),
    ("fractional total", b'{"SubscriptionId": "a", "TotalTokens": 2.5}', events.FRACTIONAL_TOKENS),
    ("fractional text", b'{"SubscriptionId": "a", "TotalTokens": "2.5"}', events.INVALID_TOKENS),
    ("word as tokens", b'{"SubscriptionId": "a", "TotalTokens": "many"}', events.INVALID_TOKENS),
    ("boolean tokens", b'{"SubscriptionId": "a", "TotalTokens": true}', events.INVALID_TOKENS),
    ("list tokens", b'{"SubscriptionId": "a", "TotalTokens": [1]}', events.INVALID_TOKENS),
    ("absurd total", b'{"SubscriptionId": "a", "TotalTokens": 100000000000}', events.ABSURD_TOKENS),
    ("absurd text total", b'{"SubscriptionId": "a", "TotalTokens": "99999999999"}', events.ABSURD_TOKENS),
    ("huge exponent", b'{"SubscriptionId": "a", "TotalTokens": 1e300}', events.ABSURD_TOKENS),
    (
        "cached beyond prompt",
        b'{"SubscriptionId": "a", "usage": {"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": 5}}}',
        events.INCONSISTENT_TOKENS,
    ),
    (
        "total below its parts",
        b'{"SubscriptionId": "a", "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 3}}',
        events.INCONSISTENT_TOKENS,
    ),
    ("completion without prompt", b'{"SubscriptionId": "a", "usage": {"completion_tokens": 5}}', events.MISSING_TOKENS),
    ("future schema", b'{"schema": "chargeback.domain.usage/v9", "subscriptionId": "a"}', events.UNSUPPORTED_SCHEMA),
    (
        "two spellings disagree",
        b'{"SubscriptionId": "a", "subscriptionId": "b", "TotalTokens": "1"}',
        events.AMBIGUOUS_FIELD,
    ),
]  # fmt: skip
"""Bodies that can never be applied, with the reason each is dead-lettered for."""

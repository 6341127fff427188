"""Encodes identifiers into Table Storage keys without losing or rejecting any character."""

from __future__ import annotations

import hashlib
import re

from chargeback.domain.usage import UsageKey

WATERMARK_ROW = "!watermark"
"""The row key of a slice's watermark; sorts before every aggregate row (which start with a day)."""

MAX_KEY_BYTES = 1024
"""Table Storage caps a key at 1 KiB (UTF-16)."""

# Table keys forbid / \ # ? and control characters; % escapes, | separates.
_UNSAFE = re.compile(r"[%|/\\#?\x00-\x1f\x7f-\x9f]")


def escape(value: str) -> str:
    """Percent-encode the characters a Table key may not hold; reversible and readable."""
    return _UNSAFE.sub(_percent, value)


def _percent(match: re.Match[str]) -> str:
    return f"%{ord(match.group()):02X}"


def unescape(value: str) -> str:
    """Invert ``escape``."""
    return re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), value)


def slice_key(period: str, hub: str, partition_id: str) -> str:
    """The partition key of a ledger slice: the period leads so a month is one range query."""
    return table_key(period, hub, partition_id, keep=1)


def period_range(period: str) -> tuple[str, str]:
    """Bounds [low, high) of every slice key of a month (``YYYY-MM``)."""
    return f"{period}|", f"{period}}}"


def table_key(*parts: str, keep: int = 0) -> str:
    """The one way every Table key the app writes is made from identifiers: any text fits.

    The parts are escaped and joined with ``|``. When that is longer than a key may be, the
    parts after the first ``keep`` (which must be short, e.g. a day) are replaced by ``~`` and
    their SHA-256; readers take identifiers from the row's properties, never from the key, so
    nothing is lost either way. A readable key never equals a hashed one: when both would have
    the same number of parts, a readable last part's leading ``~`` is escaped.
    """
    escaped = [escape(part) for part in parts]
    if len(parts) == keep + 1 and escaped[-1].startswith("~"):
        escaped[-1] = "%7E" + escaped[-1][1:]
    readable = "|".join(escaped)
    if len(readable.encode("utf-16-le", "surrogatepass")) <= MAX_KEY_BYTES:
        return readable
    digest = hashlib.sha256("\x00".join(parts[keep:]).encode("utf-8", "surrogatepass")).hexdigest()
    return "|".join([*escaped[:keep], f"~{digest}"])


def aggregate_row_key(key: UsageKey) -> str:
    """The row key of an aggregate: the day leads so a day is one range query within a slice."""
    return table_key(key.day.isoformat(), key.subscription_id, key.model, key.deployment, key.operation, keep=1)


def day_range(day: str) -> tuple[str, str]:
    """Bounds [low, high) of the aggregate row keys of one day (``YYYY-MM-DD``) within a slice."""
    return f"{day}|", f"{day}}}"


LLM_LOG_SLICE = "~llm-logs"
"""The slice of usage billed from the gateway's LLM logs. Event Hub names start with a letter
or digit, so no hub's slice can share this key; it still sorts inside a month's key range."""

UNATTRIBUTED_ROW_PREFIX = "!unattributed|"
"""Row keys of LLM-log usage whose APIM subscription is not known yet; readers of billed usage skip them."""

DAY_MARKER_PREFIX = "!day|"
"""Row key prefix of an LLM-log day's marker: when it was collected, whether it is settled."""


def llm_slice_key(period: str) -> str:
    """The partition key of a month's LLM-log usage."""
    return f"{period}|{LLM_LOG_SLICE}"


def day_marker_row(day: str) -> str:
    return f"{DAY_MARKER_PREFIX}{day}"


def llm_row_key(key: UsageKey) -> str:
    """An LLM-log aggregate's row key: the usual one, or under the unattributed prefix when the
    subscription is not known (an empty ``subscription_id``)."""
    row_key = aggregate_row_key(key)
    return row_key if key.subscription_id else f"{UNATTRIBUTED_ROW_PREFIX}{row_key}"

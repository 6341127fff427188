"""Writes KQL literals that read back as exactly the value meant, whatever it holds."""

from __future__ import annotations

from datetime import UTC, datetime

_KQL_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def kql_string(value: str) -> str:
    """A KQL double-quoted string literal that reads back as exactly ``value``.

    Backslash and double quote are escaped, and every control character is written as an
    escape, so no value can end the literal early or spill into the query.
    """
    out = []
    for char in value:
        if char in _KQL_ESCAPES:
            out.append(_KQL_ESCAPES[char])
        elif ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F or char in "\u2028\u2029":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def kql_datetime(moment: datetime) -> str:
    """A KQL datetime literal for an aware datetime, in UTC with microseconds."""
    if moment.tzinfo is None:
        raise ValueError("a KQL datetime needs a timezone-aware datetime")
    return f"datetime({moment.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')})"

"""The ledger's unit of account: token counters and the aggregated usage rows readers see."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date

UNKNOWN = "unknown"
"""What a field holds when the gateway's event shape does not carry it (model, deployment…)."""


@dataclass(frozen=True, slots=True)
class Counters:
    """Integer usage counters for one aggregate; every field is additive.

    ``prompt_tokens`` and ``completion_tokens`` count only events that carried the split;
    the tokens of events that sent only a total are in ``unsplit_tokens`` (and in
    ``total_tokens``), so an unknown split is never reported as zero.

    Every count covers both usage sources; ``llm_log_requests`` and ``llm_log_tokens`` say how
    much of it the gateway's LLM logs billed (streamed calls), the rest came as usage events.
    """

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    total_tokens: int = 0
    unsplit_requests: int = 0
    unsplit_tokens: int = 0
    time_fallbacks: int = 0
    llm_log_requests: int = 0
    llm_log_tokens: int = 0

    def __add__(self, other: Counters) -> Counters:
        return Counters(
            self.requests + other.requests,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
            self.total_tokens + other.total_tokens,
            self.unsplit_requests + other.unsplit_requests,
            self.unsplit_tokens + other.unsplit_tokens,
            self.time_fallbacks + other.time_fallbacks,
            self.llm_log_requests + other.llm_log_requests,
            self.llm_log_tokens + other.llm_log_tokens,
        )

    @property
    def split_known(self) -> bool:
        """True when at least one request carried a prompt/completion split."""
        return self.requests > self.unsplit_requests

    @property
    def event_requests(self) -> int:
        """Requests billed from usage events."""
        return self.requests - self.llm_log_requests

    @property
    def event_tokens(self) -> int:
        """Tokens billed from usage events."""
        return self.total_tokens - self.llm_log_tokens

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTER_FIELDS}


COUNTER_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Counters))
ZERO = Counters()

Delta = tuple[int, int, int, int, int, int, int]
"""One event's ``Counters`` but ``requests`` (always 1), in field order, as a plain tuple."""


def event_delta(prompt: int | None, completion: int | None, cached: int | None, total: int, from_event: bool) -> Delta:
    """What one accepted event adds to its aggregate; the one rule ingestion, redrive and replay share.

    An event that sent only a total counts as unsplit, so its prompt/completion split is never
    reported as zero; an event whose own time was not trusted counts a time fallback.
    """
    fallback = 0 if from_event else 1
    if prompt is None:
        return (0, 0, 0, total, 1, total, fallback)
    return (prompt, completion or 0, cached or 0, total, 0, 0, fallback)


def sum_deltas(deltas: list[Delta]) -> Counters:
    """The counters of ``len(deltas)`` requests."""
    return Counters(len(deltas), *map(sum, zip(*deltas, strict=True)))


@dataclass(frozen=True, slots=True)
class UsageKey:
    """What the ledger aggregates by: UTC day, subscription, model, deployment, operation."""

    day: date
    subscription_id: str
    model: str
    deployment: str
    operation: str


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One aggregate as readers see it, already summed over the ledger's slices."""

    key: UsageKey
    counters: Counters

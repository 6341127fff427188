"""Shapes a period's ledger totals into the JSON document ``GET /api/usage/{period}`` returns."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chargeback.domain.usage import ZERO, Counters, UsageRow

_SPLIT_FIELDS = ("prompt_tokens", "completion_tokens")


def counters_document(counters: Counters) -> dict[str, Any]:
    """Counters as JSON; a prompt/completion split no request carried is ``null``, not 0."""
    document: dict[str, Any] = {
        "requests": counters.requests,
        "prompt_tokens": counters.prompt_tokens,
        "completion_tokens": counters.completion_tokens,
        "cached_tokens": counters.cached_tokens,
        "total_tokens": counters.total_tokens,
        "unsplit_tokens": counters.unsplit_tokens,
        "unsplit_requests": counters.unsplit_requests,
        "time_fallbacks": counters.time_fallbacks,
    }
    if not counters.split_known:
        for name in (*_SPLIT_FIELDS, "cached_tokens"):
            document[name] = None
    return document


def sources_document(counters: Counters) -> dict[str, dict[str, int]]:
    """Which source billed what: usage events, and the gateway's LLM logs (streamed calls)."""
    return {
        "events": {"requests": counters.event_requests, "total_tokens": counters.event_tokens},
        "llm_logs": {"requests": counters.llm_log_requests, "total_tokens": counters.llm_log_tokens},
    }


def unattributed_document(rows: Iterable[UsageRow]) -> dict[str, Any]:
    """LLM-log usage whose APIM subscription is not known yet: shown, not billed, per (model, deployment)."""
    models: dict[tuple[str, str], Counters] = {}
    for row in rows:
        line = (row.key.model, row.key.deployment)
        models[line] = models.get(line, ZERO) + row.counters
    total = sum(models.values(), ZERO)
    return {
        "requests": total.requests,
        "total_tokens": total.total_tokens,
        "models": [
            {"model": model, "deployment": deployment, "requests": c.requests, "total_tokens": c.total_tokens}
            for (model, deployment), c in sorted(models.items())
        ],
    }


Line = tuple[str, str, str, Counters]
"""One line of totals: subscription, model, deployment, and the counters summed over the period."""


def usage_document(
    period: str, rows: Iterable[UsageRow], dead_letters: int, *, unattributed: Iterable[UsageRow] = ()
) -> dict[str, Any]:
    """:func:`totals_document` of ledger rows, summed per line first."""
    lines: dict[tuple[str, str, str], Counters] = {}
    for row in rows:
        line = (row.key.subscription_id, row.key.model, row.key.deployment)
        lines[line] = lines.get(line, ZERO) + row.counters
    return totals_document(
        period, ((*line, counters) for line, counters in lines.items()), dead_letters, unattributed=unattributed
    )


def totals_document(
    period: str, lines: Iterable[Line], dead_letters: int, *, unattributed: Iterable[UsageRow] = ()
) -> dict[str, Any]:
    """Totals per subscription, each with its (model, deployment) lines and its split by source,
    grand totals, and the LLM-log usage not attributed to a subscription yet."""
    by_subscription: dict[str, dict[tuple[str, str], Counters]] = {}
    for subscription_id, model, deployment, counters in lines:
        models = by_subscription.setdefault(subscription_id, {})
        models[(model, deployment)] = models.get((model, deployment), ZERO) + counters
    subscriptions = []
    grand = ZERO
    for subscription_id in sorted(by_subscription):
        models = by_subscription[subscription_id]
        total = sum(models.values(), ZERO)
        grand += total
        subscriptions.append(
            {
                "subscription_id": subscription_id,
                **counters_document(total),
                "sources": sources_document(total),
                "models": [
                    {"model": model, "deployment": deployment, **counters_document(counters)}
                    for (model, deployment), counters in sorted(models.items())
                ],
            }
        )
    return {
        "period": period,
        "subscriptions": subscriptions,
        "totals": counters_document(grand),
        "sources": sources_document(grand),
        "unattributed_llm_logs": unattributed_document(unattributed),
        "dead_letters": dead_letters,
    }

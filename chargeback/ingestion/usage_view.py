"""Shapes a period's ledger totals into the JSON document ``GET /api/usage/{period}`` returns."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from chargeback.domain.usage import COUNTER_FIELDS, ZERO, Counters, UsageRow

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
    return _document(period, subscriptions, grand, dead_letters, unattributed)


def _document(
    period: str,
    subscriptions: list[dict[str, Any]],
    grand: Counters,
    dead_letters: int,
    unattributed: Iterable[UsageRow],
) -> dict[str, Any]:
    """The usage document around its subscriptions: the grand totals and their split, what is not attributed yet."""
    return {
        "period": period,
        "subscriptions": subscriptions,
        "totals": counters_document(grand),
        "sources": sources_document(grand),
        "unattributed_llm_logs": unattributed_document(unattributed),
        "dead_letters": dead_letters,
    }


TOTALS_COLUMNS = ("subscription_id", "model", "deployment", *COUNTER_FIELDS)
"""A frame of per-line totals: one row per (subscription, model, deployment), every counter."""


def frame_document(
    period: str, totals: pd.DataFrame, dead_letters: int, *, unattributed: Iterable[UsageRow] = ()
) -> dict[str, Any]:
    """:func:`totals_document` built column by column from a frame of per-line totals (:data:`TOTALS_COLUMNS`),
    for months of hundreds of thousands of lines."""
    frame = totals.loc[:, list(TOTALS_COLUMNS)].sort_values(["subscription_id", "model", "deployment"], kind="stable")
    models = _line_documents(frame)
    by_subscription = frame.groupby("subscription_id", sort=True)[list(COUNTER_FIELDS)].sum()
    ends = np.cumsum(frame.groupby("subscription_id", sort=True).size().to_numpy())
    subscriptions = []
    start = 0
    for (subscription_id, values), end in zip(by_subscription.iterrows(), ends, strict=True):
        total = Counters(*(int(value) for value in values))
        subscriptions.append(
            {
                "subscription_id": str(subscription_id),
                **counters_document(total),
                "sources": sources_document(total),
                "models": models[start:end],
            }
        )
        start = int(end)
    grand = Counters(*(int(frame[name].sum()) for name in COUNTER_FIELDS))
    return _document(period, subscriptions, grand, dead_letters, unattributed)


def _line_documents(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Each line as the usage document shows it: its model, deployment and :func:`counters_document`."""
    column = {name: frame[name].to_numpy() for name in COUNTER_FIELDS}
    known = (column["requests"] > column["unsplit_requests"]).tolist()

    def split(name: str) -> list[int | None]:
        return [int(value) if ok else None for value, ok in zip(column[name].tolist(), known, strict=True)]

    prompt, completion, cached = split("prompt_tokens"), split("completion_tokens"), split("cached_tokens")
    plain = {name: column[name].tolist() for name in ("requests", "total_tokens", "unsplit_tokens")}
    rest = {name: column[name].tolist() for name in ("unsplit_requests", "time_fallbacks")}
    return [
        {
            "model": model,
            "deployment": deployment,
            "requests": requests,
            "prompt_tokens": p,
            "completion_tokens": c,
            "cached_tokens": k,
            "total_tokens": total,
            "unsplit_tokens": unsplit,
            "unsplit_requests": unsplit_requests,
            "time_fallbacks": fallbacks,
        }
        for model, deployment, requests, p, c, k, total, unsplit, unsplit_requests, fallbacks in zip(
            frame["model"].astype(str).tolist(),
            frame["deployment"].astype(str).tolist(),
            plain["requests"],
            prompt,
            completion,
            cached,
            plain["total_tokens"],
            plain["unsplit_tokens"],
            rest["unsplit_requests"],
            rest["time_fallbacks"],
            strict=True,
        )
    ]

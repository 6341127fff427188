"""Sentences that explain a report: the reconciliation's findings, how each line was priced, the capacity."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pandas as pd

from chargeback.billing.prices import BLENDED, PER_TOKEN, PTU_ALLOCATION

MATCHED = "matched"
FINDINGS = {
    "ledger_short": "short by",
    "monitor_short": "over Azure Monitor by",
    "only_in_ledger": "unseen by Azure Monitor",
    "only_in_monitor": "missing from the ledger",
}
"""How a finding reads after "n of m subscriptions"."""
BILLED = (
    "The ledger is billed: every call counted once from the gateway's usage events and LLM logs. Azure Monitor's "
    "token metric is only compared with it; tokens it saw that the ledger lacks are not billed unless they are "
    "recovered (redrive or replay)."
)


@dataclass(frozen=True, slots=True)
class Finding:
    status: str
    subscriptions: int
    delta_tokens: int
    monitor_tokens: int

    def sentence(self, judged: int) -> str:
        subject = f"{self.subscriptions} of {judged} subscription{'s' if judged != 1 else ''}"
        if self.status in ("ledger_short", "monitor_short"):
            percent = _percent(abs(self.delta_tokens), self.monitor_tokens)
            return f"{subject} {FINDINGS[self.status]} {abs(self.delta_tokens):,} tokens ({percent})"
        return f"{subject} {FINDINGS.get(self.status, self.status)}"


def findings(reconciliation: pd.DataFrame) -> list[Finding]:
    """Per status other than matched: how many subscriptions, by how many tokens of how many."""
    found = []
    problems = reconciliation[reconciliation["status"] != MATCHED]
    for status, group in problems.groupby("status", sort=True):
        found.append(
            Finding(str(status), len(group), int(group["delta_tokens"].sum()), int(group["monitor_tokens"].sum()))
        )
    return found


def reconciliation_headline(reconciliation: pd.DataFrame, summary: Mapping[str, Any]) -> str:
    """E.g. "1 of 6 subscriptions short by 16,766 tokens (3.6 %)", or "All 6 subscriptions matched"."""
    status = str(summary.get("status") or "not run")
    if status != "reconciled":
        return {
            "not_configured": "Not reconciled: no Azure Monitor source is configured",
            "failed": "Not reconciled: Azure Monitor gave no complete answer",
            "nothing_to_judge_yet": "Nothing to judge yet: the month's first hours are still settling",
        }.get(status, f"Reconciliation {status}")
    judged = len(reconciliation)
    problems = findings(reconciliation)
    if not problems:
        return f"All {judged} subscriptions matched Azure Monitor" if judged else "No subscription to judge"
    return "; ".join(finding.sentence(judged) for finding in problems)


def short_card(reconciliation: pd.DataFrame, summary: Mapping[str, Any]) -> str:
    """The headline cut to a card: "1 of 6 short", "6 matched", or the status."""
    if summary.get("status") != "reconciled":
        return str(summary.get("status") or "not run")
    found = findings(reconciliation)
    problems = sum(finding.subscriptions for finding in found)
    judged = len(reconciliation)
    if not problems:
        return f"{judged} matched"
    label = "short" if {finding.status for finding in found} == {"ledger_short"} else "off"
    return f"{problems} of {judged} {label}"


def how_priced(line: Mapping[str, Any], capacity: Mapping[str, Mapping[str, Any]], currency: str) -> str:
    """How one line came to its cost, in a few words."""
    category = line.get("charge_category")
    if category == "correction":
        return f"difference from re-pricing or re-mapping {line.get('adjusted_period')}"
    late = f"late usage of {line.get('adjusted_period')}, " if category == "adjustment" else ""
    pricing = line.get("pricing")
    if pricing == PTU_ALLOCATION:
        return late + _share(line, capacity.get(str(line.get("deployment"))), currency)
    if pricing == PER_TOKEN:
        return late + _token_prices(line, currency)
    if pricing == BLENDED:
        price = line.get("blended_price_per_1m")
        return late + ("blended, several prices" if price is None else f"blended {_money(price, currency)} per 1M")
    return late + str(pricing)


def _share(line: Mapping[str, Any], terms: Mapping[str, Any] | None, currency: str) -> str:
    if str(line.get("subscription_id")) == "unallocated" and not line.get("total_tokens"):
        return "idle provisioned capacity: nobody used the deployment"
    if terms is None or not terms.get("total_tokens"):
        return "share of provisioned capacity by tokens"
    share = _percent(int(line.get("total_tokens") or 0), int(terms["total_tokens"]))
    return f"{share} of the deployment's tokens → that share of its {_money(terms['cost'], currency)}"


def _token_prices(line: Mapping[str, Any], currency: str) -> str:
    prices = [line.get(name) for name in ("input_price_per_1m", "cached_input_price_per_1m", "output_price_per_1m")]
    if any(price is None for price in prices):
        return "per token, several prices in the month"
    text = (
        f"per 1M: input {_money(prices[0], currency)}, cached {_money(prices[1], currency)}, "
        f"output {_money(prices[2], currency)}"
    )
    if int(line.get("unsplit_tokens") or 0) and line.get("blended_price_per_1m") is not None:
        text += f"; unsplit at {_money(line['blended_price_per_1m'], currency)}"
    return text


def capacity_sentence(terms: Mapping[str, Any], currency: str, status: str) -> str:
    """What a provisioned deployment cost, for which hours, and how it was shared."""
    units = terms.get("units")
    rate = _rate(terms, currency)
    bought = f"{units} PTU" if units is not None and not pd.isna(units) else "provisioned throughput"
    hours, whole = int(terms["hours"]), int(terms["provisioned_hours"])
    accrued = (
        f"{hours:,} of its {whole:,} hours this month have ended and are billed; the final report bills all of them"
        if hours < whole and status != "final"
        else f"{hours:,} hours billed"
    )
    if int(terms.get("subscriptions") or 0):
        shared = (
            f"shared among {int(terms['subscriptions'])} subscriptions in proportion to their "
            f"{int(terms['total_tokens']):,} tokens on it"
        )
    else:
        shared = "nobody used it, so all of it is billed to unallocated"
    return f"{terms['deployment']}: {bought}{rate}; {accrued}: {_money(terms['cost'], currency)}, {shared}."


def _rate(terms: Mapping[str, Any], currency: str) -> str:
    units = terms.get("units")
    count = int(units) if units is not None and not pd.isna(units) else 0
    for name, period in (("hourly_cost", "hour"), ("monthly_cost", "month")):
        value = terms.get(name)
        if value is not None and not (isinstance(value, float) and pd.isna(value)):
            each = f" ({_money(Decimal(value) / count, currency)} per PTU)" if count > 0 else ""
            return f" at {_money(value, currency)} a {period}{each}"
    return ""


def _percent(part: int, whole: int) -> str:
    if whole <= 0:
        return "—"
    return f"{(Decimal(part) * 100 / Decimal(whole)).quantize(Decimal('0.1'))} %"


def _money(value: Any, currency: str) -> str:
    """An amount as the sheet or the report has it (its own places), grouped in thousands."""
    return f"{Decimal(value):,} {currency}"

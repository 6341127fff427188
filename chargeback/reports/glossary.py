"""What every column of the report means, in words a finance analyst reads: the workbook's about sheet."""

from __future__ import annotations

from collections.abc import Mapping

GENERAL: tuple[tuple[str, str], ...] = (
    (
        "what is billed",
        "The ledger: every request the gateway's usage events and API Management's LLM logs counted, "
        "each once. Azure Monitor's token metric is only compared with it (reconciliation sheet).",
    ),
    (
        "money",
        "Exact to the currency's minor unit: each line's cost is rounded once, and every total is the "
        "sum of the lines, to the cent.",
    ),
    (
        "charge categories",
        "usage: this month's tokens. adjustment: tokens of a month whose report was final already, "
        "counted late (billed here, once). correction: the difference made by re-pricing or re-mapping "
        "a final month, billed here, once; a re-mapping is two lines, minus under the old cost center "
        "and plus under the new one.",
    ),
    (
        "provisioned capacity",
        "A deployment on provisioned throughput units (PTUs) costs a fixed amount per hour or month, "
        "however many tokens it serves. Its cost for the hours billed is shared among the subscriptions "
        "that used it in the month, in proportion to their tokens on it; when nobody used it, the cost "
        "is billed to the subscription 'unallocated'. A month to date bills the hours that have ended; "
        "the final report the whole month.",
    ),
    (
        "unallocated",
        "Cost of subscriptions the cost-center map does not name, and of provisioned capacity nobody "
        "used: nobody's cost center pays it until the map names the subscription.",
    ),
)
"""Notes on the whole report, before the columns."""

COLUMNS: Mapping[str, str] = {
    "period": "The month this report bills, YYYY-MM.",
    "charge_category": "usage, adjustment or correction (see 'charge categories' above).",
    "adjusted_period": "For an adjustment or correction: the earlier month it belongs to. Empty for usage.",
    "subscription_id": "The API Management subscription the calls were made with.",
    "cost_center": "Who pays, from the cost-center map; 'unallocated' when the map does not name the subscription.",
    "business_unit": "The cost center's business unit, from the cost-center map.",
    "owner": "Who answers for the subscription, from the cost-center map.",
    "model": "The model the calls used, as the gateway reported it (a version such as gpt-4o-2024-08-06 "
    "is priced as its family, gpt-4o).",
    "deployment": "The Azure OpenAI deployment the calls went to.",
    "requests": "Calls counted.",
    "prompt_tokens": "Input tokens, cached ones included.",
    "completion_tokens": "Output tokens.",
    "cached_tokens": "The part of the prompt tokens served from the prompt cache, priced at the cached input price.",
    "unsplit_tokens": "Tokens reported only as a total, without the prompt/completion split (some gateway "
    "policies send only TotalTokens): priced at the blended price.",
    "total_tokens": "All tokens: prompt + completion + unsplit.",
    "event_tokens": "The tokens that came as the gateway's usage events (the Event Hub path).",
    "llm_log_tokens": "The tokens of streamed calls, which send no usage event, counted from API Management's "
    "LLM logs. event_tokens + llm_log_tokens = total_tokens.",
    "input_price_per_1m": "The price of 1,000,000 uncached input tokens; empty when several prices applied in "
    "the month, for provisioned capacity, and on corrections.",
    "cached_input_price_per_1m": "The price of 1,000,000 cached input tokens (same gaps as the input price).",
    "output_price_per_1m": "The price of 1,000,000 output tokens (same gaps as the input price).",
    "blended_price_per_1m": "The price sheet's default price of 1,000,000 tokens of any kind, for unsplit tokens "
    "and models the sheet does not price.",
    "cost": "What is billed, in the report's currency.",
    "currency": "The ISO 4217 currency of the price sheet.",
    "pricing": "How the line was priced: per_token (input, cached input and output prices), blended (one price "
    "for every token) or ptu_allocation (a share of provisioned capacity by tokens used).",
    "reconciliation_status": "Whether Azure Monitor saw as many tokens for the subscription as the ledger: "
    "matched, ledger_short (the gateway's event path lost usage), monitor_short, only_in_ledger or "
    "only_in_monitor. The figures are on the by subscription sheet, once per subscription.",
    "subscriptions": "How many subscriptions.",
    "adjustment_cost": "The part of the cost that is adjustments (late usage of final months).",
    "correction_cost": "The part of the cost that is corrections of final months.",
    "ledger_tokens": "Tokens the ledger counted for the subscription in the judged window.",
    "monitor_total_tokens": "Tokens Azure Monitor's token metric counted for the subscription in the judged window.",
    "monitor_tokens": "Tokens Azure Monitor's token metric counted for the subscription in the judged window.",
    "delta_tokens": "monitor − ledger tokens: positive when the event path lost usage. Not billed: the ledger is.",
    "delta_percent": "delta_tokens as a percentage of the monitor's tokens.",
    "status": "The reconciliation finding (see reconciliation_status).",
    "day": "The UTC day.",
    "metered_cost": "The day's per-token and blended cost: each subscription's metered cost, as its lines were "
    "rounded, spread over its days by their exact cost. The days add up to metered_cost on the totals sheet; "
    "provisioned capacity is billed per month, apart (provisioned_cost).",
    "units": "Provisioned throughput units (PTUs) the deployment's price buys.",
    "hourly_cost": "The deployment's price per hour, when it is priced by the hour.",
    "monthly_cost": "The deployment's price per month (a reservation), when it is priced by the month.",
    "hours": "The provisioned hours billed: those of the month that had ended when the report was generated.",
    "provisioned_hours": "The hours the deployment is provisioned in the whole month.",
    "shared": "The part of the capacity's cost shared among the subscriptions that used it.",
    "idle": "The part of the capacity's cost billed to 'unallocated' because nobody used the deployment.",
    "effective_price_per_1m": "The capacity's cost per 1,000,000 tokens it served: compare with the model's "
    "per-token price.",
    "measure": "What the value counts.",
    "value": "The total.",
    "meaning": "How the total is made, or what the column holds.",
    "sheet": "The workbook's sheet.",
    "column": "The column's name, the same in the CSV, Parquet and JSON files.",
}
"""Each column's meaning, under its name in every sheet (CSV, Parquet and JSON use the same names)."""

TOTALS: Mapping[str, str] = {
    "lines": "Lines of the lines sheet.",
    "subscriptions": "Subscriptions with a line.",
    "unallocated_subscriptions": "Subscriptions on the unallocated sheet.",
    "requests": "Calls, all lines.",
    "prompt_tokens": "Prompt tokens, all lines.",
    "completion_tokens": "Completion tokens, all lines.",
    "cached_tokens": "Cached prompt tokens, all lines.",
    "unsplit_tokens": "Tokens without a prompt/completion split, all lines.",
    "total_tokens": "Tokens, all lines.",
    "event_tokens": "Tokens from usage events, all lines.",
    "llm_log_tokens": "Tokens from the LLM logs (streamed calls), all lines.",
    "usage_cost": "This month's usage = metered_cost + provisioned_cost.",
    "metered_cost": "Per-token and blended cost of this month's usage: the sum of the daily sheet.",
    "provisioned_cost": "Shares of provisioned capacity, idle capacity (to unallocated) included: the provisioned "
    "sheet's cost.",
    "adjustment_cost": "Late usage of final months, billed here.",
    "correction_cost": "Corrections of final months, billed here.",
    "unallocated_cost": "The part of cost no cost center pays (the unallocated sheet).",
    "cost": "What the report bills: usage_cost + adjustment_cost + correction_cost.",
}
"""What each total of the totals sheet adds up."""


def meaning(column: str) -> str:
    """The meaning of ``column``; ``KeyError`` for a column nobody has explained yet."""
    return COLUMNS[column]

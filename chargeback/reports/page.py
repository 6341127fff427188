"""Renders a report as one self-contained HTML page: inline CSS, inline SVG charts, no script."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pandas as pd

from chargeback.domain import periods
from chargeback.reports import explain
from chargeback.reports.model import Report

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
STATUS_COLOURS = {
    "matched": "#59a14f",
    "ledger_short": "#e15759",
    "monitor_short": "#f28e2b",
    "only_in_ledger": "#b07aa1",
    "only_in_monitor": "#9c755f",
}
UNKNOWN_STATUS_COLOUR = "#bab0ac"
SUBSCRIPTION_COLUMNS = (
    "subscription",
    "cost center",
    "requests",
    "prompt",
    "completion",
    "cached",
    "total tokens",
    "streamed (LLM logs)",
    "of which provisioned",
    "cost",
    "reconciliation",
)
LINE_COLUMNS = (
    "category",
    "subscription",
    "cost center",
    "model",
    "deployment",
    "requests",
    "tokens",
    "cost",
    "how it was priced",
)
MAX_LINES = 100
"""Lines listed on the page, largest cost first within each category; the files hold every one."""
CHART_WIDTH = 760
LABEL_WIDTH = 250
MAX_LABEL_CHARS = 34
MAX_SHOWN = 25
"""Subscriptions drawn and listed on the page, largest first; the files hold every one."""
MAX_STACKED = 10
"""Subscriptions stacked by name in the daily chart; the rest are summed as "others"."""
OTHERS = "others"
OTHERS_COLOUR = "#bab0ac"

CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
"""The page needs nothing but its own inline styles; a browser refuses anything else, script included."""

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2933;background:#f7f8fa;margin:0}
main{max-width:1120px;margin:0 auto;padding:24px 32px 48px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #d9dee4;padding-bottom:4px}
.meta{color:#52606d;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{background:#fff;border:1px solid #d9dee4;border-radius:8px;padding:10px 16px;min-width:150px}
.card b{display:block;font-size:20px}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;color:#fff;background:#7b8794}
.badge.draft{background:#f28e2b}.badge.final{background:#4e79a7}
table{border-collapse:collapse;background:#fff;margin:8px 0;width:100%}
th,td{border:1px solid #e4e7eb;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
td.id{max-width:340px;overflow-wrap:anywhere}
svg{background:#fff;border:1px solid #e4e7eb;border-radius:6px;display:block;margin:8px 0}
svg text{font:12px system-ui,sans-serif;fill:#1f2933}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;margin:4px 0 12px;font-size:12px}
.legend span{display:inline-flex;align-items:center;gap:6px;overflow-wrap:anywhere}
.legend i{width:12px;height:12px;border-radius:2px;display:inline-block;flex:none}
.links a{margin-right:14px}
.empty{color:#7b8794;font-style:italic}
.view{background:#fff8e6;border:1px solid #f2d49b;border-radius:6px;padding:6px 12px;display:inline-block}
.note{background:#fff;border-left:4px solid #4e79a7;padding:6px 12px;margin:8px 0}
.note.warn{border-left-color:#e15759}
td.how{color:#52606d;font-size:13px}
"""


def render_page(report: Report, manifest: Mapping[str, Any]) -> bytes:
    """The report page; every text from the report is escaped, and the page runs no script."""
    colours = subscription_colours(report.by_subscription["subscription_id"].astype(str).tolist())
    body = "\n".join(
        [
            _header(report, manifest),
            _section("Cost by cost center", _cost_centers(report)),
            *([_section("Budgets", _budgets(report))] if len(report.budgets) else []),
            _section("Cost and tokens per subscription", _subscriptions(report, colours)),
            _section("Provisioned capacity (PTU)", _provisioned(report, manifest)),
            _section("Lines", _lines(report)),
            _section("Tokens per day per subscription", _daily(report, colours)),
            _section("Reconciliation with Azure Monitor", _reconciliation(report, manifest)),
            _section("Other formats", _links(report, manifest)),
        ]
    )
    title = f"Chargeback {report.period}"
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_text(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
    return page.encode("utf-8")


def subscription_colours(subscriptions: Iterable[str]) -> dict[str, str]:
    """One palette colour per subscription, in sorted order, so every chart agrees."""
    return {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(sorted(set(subscriptions)))}


# --------------------------------------------------------------------------------------------
# Sections


def _header(report: Report, manifest: Mapping[str, Any]) -> str:
    status = str(manifest.get("status") or "draft")
    recon = manifest.get("reconciliation") or {}
    totals = report.totals
    zero = Decimal(0)
    cards = [
        ("Total cost", _money(report.grand_total, report.currency)),
        ("Per-token usage", _money(totals.get("metered_cost", zero), report.currency)),
        ("Provisioned capacity", _money(totals.get("provisioned_cost", zero), report.currency)),
        ("Requests", _count(totals.get("requests", 0))),
        ("Tokens", _count(totals.get("total_tokens", 0))),
        ("Streamed tokens (LLM logs)", _count(totals.get("llm_log_tokens", 0))),
        ("Subscriptions", _count(totals.get("subscriptions", 0))),
        ("Unallocated cost", _money(totals.get("unallocated_cost", zero), report.currency)),
        ("Reconciliation", explain.short_card(report.reconciliation, recon)),
    ]
    for name, label in (("adjustment_cost", "Late usage of final months"), ("correction_cost", "Corrections")):
        if bool((report.lines["charge_category"] == name.removesuffix("_cost")).any()):
            cards.append((label, _money(totals.get(name, zero), report.currency)))
    card_html = "".join(f'<div class="card">{_text(label)}<b>{_text(value)}</b></div>' for label, value in cards)
    generated = manifest.get("generated_at") or report.generated_at.isoformat()
    final_after = manifest.get("final_after")
    meta = f"Generated {_text(str(generated))}"
    if final_after and status != "final":
        meta += f" · becomes final after {_text(str(final_after))}"
    return (
        f"<h1>Chargeback report {_text(report.period)} "
        f'<span class="badge {_attr(status)}">{_text(status)}</span></h1>\n'
        f'<p class="meta">{meta}</p>\n{_view_note(manifest)}{_streamed_note(manifest)}'
        f'<div class="cards">{card_html}</div>\n'
        f"{_billed_note(report, manifest)}"
    )


def _billed_note(report: Report, manifest: Mapping[str, Any]) -> str:
    """What is billed, and what the reconciliation found, in one headline."""
    headline = explain.reconciliation_headline(report.reconciliation, manifest.get("reconciliation") or {})
    warn = " warn" if explain.findings(report.reconciliation) else ""
    return f'<p class="note{warn}"><b>{_text(headline)}.</b> {_text(explain.BILLED)}</p>'


def _streamed_note(manifest: Mapping[str, Any]) -> str:
    """A warning when the period's streamed usage is not all in the report; nothing when it is."""
    streamed = manifest.get("streamed_usage")
    if not isinstance(streamed, Mapping):
        return ""
    if streamed.get("status") == "not_configured":
        text = "Streamed calls are not billed: no source of API Management's LLM logs is configured."
    elif streamed.get("status") == "incomplete":
        days = [str(day) for day in streamed.get("incomplete_days") or []]
        later = "as adjustments in the next report" if manifest.get("status") == "final" else "by the next run"
        text = (
            f"Streamed usage (API Management's LLM logs) of {_day_list(days)} could not be collected: "
            f"it is missing from this report and will be billed {later}."
        )
    else:
        return ""
    return f'<p class="note warn">{_text(text)}</p>\n'


def _day_list(days: list[str]) -> str:
    if len(days) <= 5:
        return ", ".join(days) or "some days"
    return f"{len(days)} days ({days[0]} to {days[-1]})"


def _view_note(manifest: Mapping[str, Any]) -> str:
    """What a narrowed page shows ("showing cost centers X, Y"); nothing for the whole report."""
    view = manifest.get("view")
    if not isinstance(view, Mapping):
        return ""
    parts = []
    centers = [str(center) for center in view.get("cost_centers") or []]
    if centers:
        label = "cost center" if len(centers) == 1 else "cost centers"
        parts.append(f"{label} {', '.join(centers)}")
    elif view.get("cost_centers") is not None:
        parts.append("no cost center")
    if view.get("subscription"):
        parts.append(f"subscription {view['subscription']}")
    return f'<p class="view">Showing {_text(" and ".join(parts))} only.</p>\n'


def _section(title: str, content: str) -> str:
    return f"<section>\n<h2>{_text(title)}</h2>\n{content}\n</section>"


def _cost_centers(report: Report) -> str:
    frame = report.by_cost_center
    if frame.empty:
        return _empty("No usage in this period.")
    records = _records(frame)
    bars = [
        _Bar(
            f"{r['cost_center']} · {r['business_unit']}",
            _float(r["cost"]),
            _money(r["cost"], report.currency),
            PALETTE[index % len(PALETTE)],
        )
        for index, r in enumerate(records)
    ]
    table = _table(
        ("cost center", "business unit", "subscriptions", "requests", "tokens", "cost"),
        [
            (
                _Cell(r["cost_center"]),
                _Cell(r["business_unit"]),
                _Cell(_count(r["subscriptions"]), numeric=True),
                _Cell(_count(r["requests"]), numeric=True),
                _Cell(_count(r["total_tokens"]), numeric=True),
                _Cell(_money(r["cost"], report.currency), numeric=True),
            )
            for r in records
        ],
    )
    return _bar_chart("cost-centers", "Cost by cost center", bars) + table


BUDGET_STATUS_COLOURS = {"ok": "#59a14f", "warning": "#f28e2b", "exceeded": "#e15759"}


def _budgets(report: Report) -> str:
    """Each budget's spend, forecast and amount, the most used first (the API lists every one)."""
    records = sorted(_records(report.budgets), key=lambda r: Decimal(str(r["percent"])), reverse=True)
    shown = records[:MAX_SHOWN]
    rows = [
        (
            _Cell(f"{r['scope'].replace('_', ' ')} {r['id']}", css="id"),
            _Cell(r["cost_center"] or "—"),
            _Cell(_money(r["spent"], report.currency), numeric=True),
            _Cell(_money(r["forecast"], report.currency), numeric=True),
            _Cell(_money(r["amount"], report.currency), numeric=True),
            _Cell(f"{Decimal(str(r['percent'])):.2f} %", numeric=True),
            _Cell(r["status"], colour=BUDGET_STATUS_COLOURS.get(str(r["status"]), UNKNOWN_STATUS_COLOUR)),
            _Cell(str(r["action"]).replace("_", " ")),
        )
        for r in shown
    ]
    table = _table(("budget", "cost center", "spent", "forecast", "amount", "used", "status", "action"), rows)
    note = f"As evaluated at {_text(str(records[0]['evaluated_at']))}"
    if len(records) > len(shown):
        note += f"; {len(records) - len(shown):,} more in GET /api/budgets/{_text(report.period)}"
    return f'<p class="meta">{note}.</p>\n{table}'


def _subscriptions(report: Report, colours: Mapping[str, str]) -> str:
    frame = report.by_subscription
    if frame.empty:
        return _empty("No usage in this period.")
    ranked = frame.assign(_cost=[_float(c) for c in frame["cost"]]).sort_values(
        ["_cost", "total_tokens", "subscription_id"], ascending=[False, False, True], kind="stable"
    )
    records = _records(ranked.head(MAX_SHOWN))
    rest = ranked.iloc[MAX_SHOWN:]
    provisioned = _provisioned_by_subscription(report)
    cost_bars = [
        _Bar(r["subscription_id"], _float(r["cost"]), _money(r["cost"], report.currency), colours[r["subscription_id"]])
        for r in records
    ]
    token_bars = [
        _Bar(r["subscription_id"], float(r["total_tokens"]), _count(r["total_tokens"]), colours[r["subscription_id"]])
        for r in records
    ]
    table = _table(
        SUBSCRIPTION_COLUMNS,
        [
            (
                _Cell(r["subscription_id"], css="id"),
                _Cell(r["cost_center"]),
                _Cell(_count(r["requests"]), numeric=True),
                _Cell(_count(r["prompt_tokens"]), numeric=True),
                _Cell(_count(r["completion_tokens"]), numeric=True),
                _Cell(_count(r["cached_tokens"]), numeric=True),
                _Cell(_count(r["total_tokens"]), numeric=True),
                _Cell(_count(r.get("llm_log_tokens", 0)), numeric=True),
                _Cell(_money(provisioned.get(r["subscription_id"]), report.currency), numeric=True),
                _Cell(_money(r["cost"], report.currency), numeric=True),
                _Cell(_missing(r["reconciliation_status"]) or "—"),
            )
            for r in records
        ],
    )
    more = ""
    if len(rest):
        more = (
            f'<p class="meta">The {len(records)} largest of {len(frame):,} subscriptions; the other '
            f"{len(rest):,} ({_money(sum(rest['cost'], Decimal(0)), report.currency)}, "
            f"{_count(int(rest['total_tokens'].sum()))} tokens) are in the CSV, XLSX and JSON files.</p>"
        )
    return (
        _bar_chart("subscription-cost", "Cost per subscription", cost_bars)
        + _bar_chart("subscription-tokens", "Tokens per subscription", token_bars)
        + table
        + more
    )


def _daily(report: Report, colours: Mapping[str, str]) -> str:
    frame = report.daily
    if frame.empty:
        return _empty("No usage in this period.")
    start = periods.month_start(report.period).date()
    end = periods.month_end(report.period).date()
    days = [start + timedelta(days=offset) for offset in range((end - start).days)]
    totals = frame.groupby("subscription_id", observed=True)["total_tokens"].sum().sort_values(ascending=False)
    named = {str(name) for name in totals.index[:MAX_STACKED]}
    shown = {name: colour for name, colour in colours.items() if name in named}
    if len(totals) > MAX_STACKED:
        shown[OTHERS] = OTHERS_COLOUR
    label = frame["subscription_id"].astype(str).where(frame["subscription_id"].astype(str).isin(named), OTHERS)
    summed = frame.assign(_label=label).groupby(["day", "_label"], observed=True)["total_tokens"].sum()
    tokens: dict[date, dict[str, int]] = {day: {} for day in days}
    for day, name, value in zip(
        summed.index.get_level_values(0), summed.index.get_level_values(1), summed.to_numpy(), strict=True
    ):
        moment = pd.Timestamp(day).date()
        if moment in tokens:
            tokens[moment][str(name)] = int(value)
    chart = _stacked_columns("daily-tokens", f"Tokens per day, {report.period}", days, tokens, shown)
    return chart + _legend(shown)


def _reconciliation(report: Report, manifest: Mapping[str, Any]) -> str:
    recon = manifest.get("reconciliation") or {}
    window = recon.get("window")
    headline = explain.reconciliation_headline(report.reconciliation, recon)
    intro = f"<p><b>{_text(headline)}.</b> {_text(explain.BILLED)}</p>"
    intro += f"<p>Status: <b>{_text(str(recon.get('status') or 'not run'))}</b>"
    if isinstance(window, list) and len(window) == 2:
        intro += f"; judged window {_text(str(window[0]))} to {_text(str(window[1]))}"
    if recon.get("detail"):
        intro += f" — {_text(str(recon['detail']))}"
    intro += ".</p>"
    frame = report.reconciliation
    if frame.empty:
        return intro + _empty("No subscription was judged.")
    ranked = frame.assign(_matched=frame["status"] == "matched", _size=frame["delta_tokens"].abs()).sort_values(
        ["_matched", "_size", "subscription_id"], ascending=[True, False, True], kind="stable"
    )
    records = _records(ranked.head(MAX_SHOWN))
    if len(ranked) > MAX_SHOWN:
        intro += (
            f'<p class="meta">Findings first, then the largest deltas: {MAX_SHOWN} of {len(ranked):,} subscriptions '
            "shown; every line is in the report files.</p>"
        )
    bars = [
        _Bar(
            r["subscription_id"],
            _float(r["delta_percent"]) if _missing(r["delta_percent"]) is not None else 0.0,
            f"{_percent(r['delta_percent'])} ({_signed(r['delta_tokens'])} tokens) {r['status']}",
            STATUS_COLOURS.get(str(r["status"]), UNKNOWN_STATUS_COLOUR),
        )
        for r in records
    ]
    table = _table(
        ("subscription", "ledger tokens", "monitor tokens", "delta tokens", "delta %", "status"),
        [
            (
                _Cell(r["subscription_id"], css="id"),
                _Cell(_count(r["ledger_tokens"]), numeric=True),
                _Cell(_count(r["monitor_tokens"]), numeric=True),
                _Cell(_signed(r["delta_tokens"]), numeric=True),
                _Cell(_percent(r["delta_percent"]), numeric=True),
                _Cell(str(r["status"]), colour=STATUS_COLOURS.get(str(r["status"]), UNKNOWN_STATUS_COLOUR)),
            )
            for r in records
        ],
    )
    note = '<p class="meta">Delta = (monitor − ledger) / monitor: positive when the event path lost usage.</p>'
    return intro + _diverging_chart("reconciliation", "Reconciliation delta per subscription (%)", bars) + note + table


def _links(report: Report, manifest: Mapping[str, Any]) -> str:
    """Links to the generation's other files by name: the app serves each under its name beside the
    page, and a page saved with them (the demo's artifacts) opens them from the same folder."""
    files = [entry for entry in manifest.get("files") or [] if isinstance(entry, Mapping)]
    files = [entry for entry in files if entry.get("format") != "html"]
    if not files:
        return _empty("No other format was generated.")
    items = "".join(
        f'<a href="{_attr(quote(str(entry.get("name")), safe=""))}" download>{_text(str(entry.get("format")))}</a>'
        for entry in files
    )
    names = ", ".join(_text(str(entry.get("name"))) for entry in files)
    return f'<p class="links">{items}</p>\n<p class="meta">Files: {names}</p>'


def _provisioned_by_subscription(report: Report) -> dict[str, Decimal]:
    """Each subscription's cost from shares of provisioned capacity this month."""
    lines = report.lines
    mine = lines[(lines["pricing"] == "ptu_allocation") & (lines["charge_category"] == "usage")]
    return {str(name): sum(group, Decimal(0)) for name, group in mine.groupby("subscription_id", sort=False)["cost"]}


def _capacity_terms(report: Report) -> dict[str, Mapping[str, Any]]:
    frame = report.provisioned
    if frame.empty:
        return {}
    return {str(r["deployment"]): r for r in _records(frame)}


def _provisioned(report: Report, manifest: Mapping[str, Any]) -> str:
    """Each provisioned deployment: its terms, the hours billed, how it was shared, and who paid what."""
    frame = report.provisioned
    if frame.empty:
        return _empty("No deployment of the price sheet is on provisioned throughput.")
    status = str(manifest.get("status") or "draft")
    sentences = "".join(
        f"<p>{_text(explain.capacity_sentence(r, report.currency, status))}</p>" for r in _records(frame)
    )
    table = _table(
        ("deployment", "PTUs", "hours billed", "cost", "shared", "idle (unallocated)", "tokens", "per 1M tokens"),
        [
            (
                _Cell(r["deployment"]),
                _Cell("—" if r.get("units") is None else _count(r["units"]), numeric=True),
                _Cell(f"{_count(r['hours'])} of {_count(r['provisioned_hours'])}", numeric=True),
                _Cell(_money(r["cost"], report.currency), numeric=True),
                _Cell(_money(r["shared"], report.currency), numeric=True),
                _Cell(_money(r["idle"], report.currency), numeric=True),
                _Cell(_count(r["total_tokens"]), numeric=True),
                _Cell(_money(r.get("effective_price_per_1m"), report.currency), numeric=True),
            )
            for r in _records(frame)
        ],
    )
    return sentences + table + _shares(report)


def _shares(report: Report) -> str:
    """Who paid what share of each deployment."""
    mine = (report.lines["pricing"] == "ptu_allocation") & (report.lines["charge_category"] == "usage")
    if not mine.any():
        return ""
    lines = report.lines[mine].assign(_minor=report.line_details.loc[mine, "cost_minor"])
    ranked = lines.sort_values(["_minor", "deployment"], ascending=[False, True], kind="stable")
    terms = _capacity_terms(report)
    rows = [
        (
            _Cell(r["deployment"]),
            _Cell(r["subscription_id"], css="id"),
            _Cell(r["cost_center"]),
            _Cell(_count(r["total_tokens"]), numeric=True),
            _Cell(_money(r["cost"], report.currency), numeric=True),
            _Cell(explain.how_priced(r, terms, report.currency), css="how"),
        )
        for r in _records(ranked.head(MAX_SHOWN).drop(columns="_minor"))
    ]
    more = ""
    if len(ranked) > MAX_SHOWN:
        more = f'<p class="meta">The {MAX_SHOWN} largest of {len(ranked):,} shares; every one is in the files.</p>'
    return _table(("deployment", "subscription", "cost center", "tokens", "share", "how"), rows) + more


def _lines(report: Report) -> str:
    """The report's lines, each with how it was priced; the largest first within each category."""
    lines = report.lines
    if lines.empty:
        return _empty("No line in this period.")
    order = lines.assign(
        _rank=lines["charge_category"].map({"usage": 0, "adjustment": 1, "correction": 2}),
        _cost=report.line_details["cost_minor"].abs(),
    ).sort_values(["_rank", "_cost"], ascending=[True, False], kind="stable")
    shown = order.head(MAX_LINES).drop(columns=["_rank", "_cost"])
    terms = _capacity_terms(report)
    rows = [
        (
            _Cell(
                r["charge_category"]
                if r["adjusted_period"] is None
                else f"{r['charge_category']} {r['adjusted_period']}"
            ),
            _Cell(r["subscription_id"], css="id"),
            _Cell(r["cost_center"]),
            _Cell(r["model"]),
            _Cell(r["deployment"]),
            _Cell(_count(r["requests"]), numeric=True),
            _Cell(_count(r["total_tokens"]), numeric=True),
            _Cell(_money(r["cost"], report.currency), numeric=True),
            _Cell(explain.how_priced(r, terms, report.currency), css="how"),
        )
        for r in _records(shown)
    ]
    more = ""
    if len(order) > len(shown):
        more = (
            f'<p class="meta">{len(shown)} of {len(order):,} lines shown; '
            "every line is in the CSV, XLSX and JSON files.</p>"
        )
    return _table(LINE_COLUMNS, rows) + more


# --------------------------------------------------------------------------------------------
# Charts (inline SVG)


@dataclass(frozen=True, slots=True)
class _Bar:
    label: str
    value: float
    caption: str
    colour: str


def _bar_chart(chart_id: str, title: str, bars: Sequence[_Bar]) -> str:
    """Horizontal bars, one per label, scaled to the largest value."""
    row = 26
    height = 34 + row * len(bars)
    plot = CHART_WIDTH - LABEL_WIDTH - 150
    peak = max((bar.value for bar in bars), default=0.0) or 1.0
    parts = [_svg_open(chart_id, title, height), f'<text x="12" y="20" font-weight="600">{_text(title)}</text>']
    for index, bar in enumerate(bars):
        y = 30 + index * row
        width = max(1.0, plot * max(bar.value, 0.0) / peak) if bar.value > 0 else 0.0
        parts.append(f'<text x="12" y="{y + 15}">{_text(_short(bar.label))}</text>')
        parts.append(
            f'<rect class="bar" x="{LABEL_WIDTH}" y="{y + 3}" width="{width:.1f}" height="{row - 8}" '
            f'fill="{_attr(bar.colour)}"><title>{_text(bar.label)}: {_text(bar.caption)}</title></rect>'
        )
        parts.append(f'<text x="{LABEL_WIDTH + width + 6:.1f}" y="{y + 15}">{_text(bar.caption)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _diverging_chart(chart_id: str, title: str, bars: Sequence[_Bar]) -> str:
    """Horizontal bars left or right of a zero line; the colour tells the status."""
    row = 26
    height = 34 + row * len(bars)
    half = (CHART_WIDTH - LABEL_WIDTH - 40) / 2
    zero = LABEL_WIDTH + half
    peak = max((abs(bar.value) for bar in bars), default=0.0) or 1.0
    parts = [_svg_open(chart_id, title, height), f'<text x="12" y="20" font-weight="600">{_text(title)}</text>']
    parts.append(f'<line x1="{zero:.1f}" y1="28" x2="{zero:.1f}" y2="{height - 4}" stroke="#7b8794"/>')
    for index, bar in enumerate(bars):
        y = 30 + index * row
        width = (half - 10) * abs(bar.value) / peak
        x = zero if bar.value >= 0 else zero - width
        parts.append(f'<text x="12" y="{y + 15}">{_text(_short(bar.label))}</text>')
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y + 3}" width="{max(width, 2.0):.1f}" height="{row - 8}" '
            f'fill="{_attr(bar.colour)}"><title>{_text(bar.label)}: {_text(bar.caption)}</title></rect>'
        )
    parts.append("</svg>")
    captions = "".join(
        f'<span><i style="background:{_attr(colour)}"></i>{_text(status)}</span>'
        for status, colour in STATUS_COLOURS.items()
    )
    return "\n".join(parts) + f'<div class="legend">{captions}</div>'


def _stacked_columns(
    chart_id: str,
    title: str,
    days: Sequence[date],
    tokens: Mapping[date, Mapping[str, int]],
    colours: Mapping[str, str],
) -> str:
    """One column per day, stacked by subscription, with a token axis."""
    height, top, bottom, left = 300, 34, 30, 70
    plot_width = CHART_WIDTH - left - 16
    plot_height = height - top - bottom
    peak = _nice_ceiling(max((sum(per_day.values()) for per_day in tokens.values()), default=0))
    step = plot_width / max(len(days), 1)
    parts = [_svg_open(chart_id, title, height), f'<text x="12" y="20" font-weight="600">{_text(title)}</text>']
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = top + plot_height * (1 - fraction)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_width}" y2="{y:.1f}" stroke="#e4e7eb"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_text(_compact(peak * fraction))}</text>'
        )
    for index, day in enumerate(days):
        x = left + index * step
        base = float(top + plot_height)
        for name in sorted(tokens.get(day, {})):
            value = tokens[day][name]
            if value <= 0:
                continue
            bar = plot_height * value / peak
            base -= bar
            parts.append(
                f'<rect class="bar" x="{x + 1:.1f}" y="{base:.1f}" width="{max(step - 2, 1):.1f}" '
                f'height="{bar:.1f}" fill="{_attr(colours.get(name, UNKNOWN_STATUS_COLOUR))}">'
                f"<title>{_text(day.isoformat())} {_text(name)}: {_text(_count(value))} tokens</title></rect>"
            )
        if day.day == 1 or day.day % 5 == 0:
            parts.append(f'<text x="{x + step / 2:.1f}" y="{height - 10}" text-anchor="middle">{day.day}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _legend(colours: Mapping[str, str]) -> str:
    items = "".join(
        f'<span><i style="background:{_attr(colour)}"></i>{_text(name)}</span>' for name, colour in colours.items()
    )
    return f'<div class="legend">{items}</div>'


def _svg_open(chart_id: str, title: str, height: int) -> str:
    return (
        f'<svg id="{_attr(chart_id)}" class="chart" role="img" aria-label="{_attr(title)}" '
        f'xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{height}" '
        f'viewBox="0 0 {CHART_WIDTH} {height}">'
    )


def _nice_ceiling(value: float) -> float:
    """The axis maximum: ``value`` rounded up to 1, 2 or 5 times a power of ten."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 5, 10):
        if value <= factor * magnitude:
            return float(factor * magnitude)
    return float(10 * magnitude)


# --------------------------------------------------------------------------------------------
# Tables and text


@dataclass(frozen=True, slots=True)
class _Cell:
    value: Any
    numeric: bool = False
    css: str = ""
    colour: str | None = None


def _table(header: Sequence[str], rows: Iterable[Sequence[_Cell]]) -> str:
    head = "".join(f"<th>{_text(name)}</th>" for name in header)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            classes = " ".join(c for c in ("n" if cell.numeric else "", cell.css) if c)
            attributes = f' class="{_attr(classes)}"' if classes else ""
            content = _text(str(cell.value))
            if cell.colour:
                content = f'<span class="badge" style="background:{_attr(cell.colour)}">{content}</span>'
            cells.append(f"<td{attributes}>{content}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def _empty(message: str) -> str:
    return f'<p class="empty">{_text(message)}</p>'


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(name): _missing(value) for name, value in record.items()} for record in frame.to_dict("records")]


def _missing(value: Any) -> Any:
    """None for pandas' missing values (NA, NaN, NaT), the value otherwise."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _text(value: str) -> str:
    return html.escape(value, quote=True)


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"


def _float(value: Any) -> float:
    return 0.0 if value is None else float(value)


def _count(value: Any) -> str:
    return "—" if value is None else f"{int(value):,}"


def _signed(value: Any) -> str:
    return "—" if value is None else f"{int(value):+,}"


def _percent(value: Any) -> str:
    return "—" if value is None else f"{Decimal(value):+.2f} %"


def _money(value: Any, currency: str) -> str:
    return "—" if value is None else f"{Decimal(value):,} {currency}"


def _compact(value: float) -> str:
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= threshold:
            return f"{value / threshold:g}{suffix}"
    return f"{value:g}"

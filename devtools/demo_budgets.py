"""The demo's budgets: a team crosses 80 %, another exceeds its budget and is suspended on the local stand-in
of API Management's management API, a second evaluation changes nothing, the next month's first evaluation
re-activates it, and a subscription suspended by hand stays suspended.

The timer ``evaluate_budgets`` runs as registered, at moments inside the simulated month. The budgets are
set from the month's spend at the first of those moments (measured by an evaluation with generous,
alert-only budgets), so the story holds for any traffic the demo's options make: the team's cost center
is given 85 % of the budget it needs, the suspended team 90 %.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions import meta
from azure.functions.timer import TimerRequestConverter

from chargeback.app import runtime, settings
from chargeback.budgets.gateway import ACTIVE, SUSPENDED
from chargeback.domain import periods
from devtools.apim_standin import ApimStandIn
from devtools.local_host import registered

BUDGETS_NAME = "budgets.csv"
BY_HAND = "aoai-product-subscription-three"
"""The subscription an administrator suspended by hand before the month's evaluations (when it has traffic)."""
HAND_COMMENT = "Suspended by hand by the platform team: key rotation"
ALERT_SHARE = Decimal("0.85")
SUSPEND_SHARE = Decimal("0.90")
PROBE_AMOUNT = "1000000000"
ALERT_LINES = ("chargeback.budget.threshold ", "chargeback.budget.forecast ", "chargeback.budget.breaker ")


@dataclass
class Story:
    """What the budget evaluations did, for the demo's summary and checks."""

    month: str
    moments: dict[str, str] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    alert_lines: list[dict[str, Any]] = field(default_factory=list)
    first_lines: list[dict[str, Any]] = field(default_factory=list)
    """The alert lines the first evaluation logged."""
    alerted: dict[str, Any] = field(default_factory=dict)
    suspended: str | None = None
    by_hand: str | None = None
    history: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)
    second_changed: dict[str, int] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)


def stand_in_settings(arm: ApimStandIn, out: Path) -> dict[str, str]:
    """The app's budget settings for the demo: enforcement on against the stand-in."""
    return {
        settings.BUDGETS: str((out / BUDGETS_NAME).resolve()),
        settings.ENFORCEMENT: "on",
        settings.APIM_RESOURCE_ID: arm.resource_id,
        settings.ARM_ENDPOINT: arm.endpoint,
    }


def moments(month: str) -> dict[str, datetime]:
    """When the demo's evaluations run: the 20th at noon, 15 minutes later, the next month's first quarter-hour."""
    start = periods.month_start(month)
    first = start + timedelta(days=19, hours=12)
    return {
        "first": first,
        "second": first + timedelta(minutes=15),
        "next_month": periods.month_end(month) + timedelta(minutes=15),
    }


def run(arm: ApimStandIn, month: str, subscriptions: Sequence[str], out: Path, timer_time: datetime) -> Story:
    """Set the stage on the stand-in, evaluate three times, and leave the app's clock at ``timer_time``."""
    story = Story(month)
    runtime.services().gateway_credential = arm.credential()
    for sid in subscriptions:
        arm.add(sid)
    at = moments(month)
    story.moments = {name: _iso(moment) for name, moment in at.items()}
    with _alert_lines() as lines:
        spend = _probe(out, month, at["first"], list(subscriptions))
        _write_budgets(story, out, spend, subscriptions, arm)
        story.tables["first"] = _evaluate(at["first"], month)
        story.first_lines = list(lines)
        before = (len(arm.patches()), len(lines))
        story.tables["second"] = _evaluate(at["second"], month)
        story.second_changed = {"patches": len(arm.patches()) - before[0], "alert_lines": len(lines) - before[1]}
        story.tables["next_month"] = _evaluate(at["next_month"], month)
        story.alert_lines = list(lines)
    runtime.services().clock = lambda: timer_time
    story.history = {sid: arm.history(sid) for sid in (story.suspended, story.by_hand) if sid}
    story.checks = _checks(story, arm)
    return story


def _probe(out: Path, month: str, moment: datetime, subscriptions: list[str]) -> dict[tuple[str, str], Decimal]:
    """Each subscription's and cost center's spend at ``moment``, from an evaluation with alert-only budgets."""
    centers = runtime.services().cost_centers()
    ids = sorted(set(subscriptions))
    mapped = sorted({centers.lookup(sid).cost_center for sid in ids if centers.is_mapped(sid)})
    rows = [("subscription", sid) for sid in ids] + [("cost_center", center) for center in mapped]
    _write(out, [(scope, scope_id, PROBE_AMOUNT, "", "alert", "probe") for scope, scope_id in rows])
    return {(row["scope"], row["id"]): Decimal(row["spent"]) for row in _evaluate(moment, month)}


def _write_budgets(
    story: Story, out: Path, spend: Mapping[tuple[str, str], Decimal], subscriptions: Sequence[str], arm: ApimStandIn
) -> None:
    centers = runtime.services().cost_centers()
    ranked = sorted(
        (sid for sid in subscriptions if spend.get(("subscription", sid), Decimal(0)) > 0 and sid != BY_HAND),
        key=lambda sid: (-spend[("subscription", sid)], sid),
    )
    story.suspended = ranked[0] if ranked else None
    rows: list[tuple[str, str, str, str, str, str]] = []
    if story.suspended is not None:
        amount = _amount(spend[("subscription", story.suspended)] * SUSPEND_SHARE, ROUND_FLOOR)
        rows.append(("subscription", story.suspended, amount, "50;80;100", "suspend", "exceeded: suspended"))
    suspended_center = centers.lookup(story.suspended).cost_center if story.suspended else None
    alerting = next((sid for sid in ranked[1:] if centers.lookup(sid).cost_center != suspended_center), None)
    if alerting is not None:
        scope, scope_id = _budget_scope(alerting, centers.lookup(alerting).cost_center, centers.is_mapped(alerting))
        amount = _amount(spend[(scope, scope_id)] / ALERT_SHARE, ROUND_CEILING)
        rows.append((scope, scope_id, amount, "50;80;100", "alert", "crosses 80 %"))
        story.alerted = {"scope": scope, "id": scope_id}
    if spend.get(("subscription", BY_HAND), Decimal(0)) > 0:
        arm.set_by_hand(BY_HAND, SUSPENDED, HAND_COMMENT)
        amount = _amount(spend[("subscription", BY_HAND)] / 2, ROUND_FLOOR)
        rows.append(("subscription", BY_HAND, amount, "", "suspend", "exceeded, but suspended by hand already"))
        story.by_hand = BY_HAND
    _write(out, rows)


def _budget_scope(subscription: str, center: str, mapped: bool) -> tuple[str, str]:
    return ("cost_center", center) if mapped else ("subscription", subscription)


def _amount(value: Decimal, rounding: str) -> str:
    return str(max(Decimal("0.01"), value.quantize(Decimal("0.01"), rounding=rounding)))


def _write(out: Path, rows: Sequence[tuple[str, str, str, str, str, str]]) -> None:
    currency = runtime.services().price_sheet().currency
    with (out / BUDGETS_NAME).open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(("scope", "id", "monthly_amount", "currency", "thresholds", "action", "note"))
        for scope, scope_id, amount, thresholds, action, note in rows:
            writer.writerow((scope, scope_id, amount, currency, thresholds, action, note))


def _evaluate(moment: datetime, month: str) -> list[dict[str, Any]]:
    """The registered timer at ``moment``, then the month's budgets as ``GET /api/budgets`` answers them."""
    runtime.services().clock = lambda: moment
    timer = TimerRequestConverter.decode(meta.Datum(json.dumps({"IsPastDue": False}), "json"), trigger_metadata={})
    registered("evaluate_budgets").get_user_function()(timer)
    request = func.HttpRequest("GET", f"/api/budgets/{month}", route_params={"period": month}, body=b"")
    answer = registered("get_budgets").get_user_function()(request)
    document: dict[str, Any] = json.loads(answer.get_body())
    if answer.status_code != 200:
        raise RuntimeError(f"the budgets API answered {answer.status_code}: {document}")
    rows: list[dict[str, Any]] = document["budgets"]
    return rows


def _checks(story: Story, arm: ApimStandIn) -> dict[str, bool]:
    first = {(row["scope"], row["id"]): row for row in story.tables["first"]}
    alerted = first.get((story.alerted.get("scope"), story.alerted.get("id")), {})
    crossed = [entry["threshold"] for entry in alerted.get("thresholds_crossed", [])]
    mine = [line for line in story.first_lines if line.get("id") == story.alerted.get("id") and "threshold" in line]
    checks = {
        "budget_crossed_80_percent": 80 in crossed
        and alerted.get("status") == "warning"
        and sorted(line["threshold"] for line in mine) == crossed,
        "budget_exceeded_and_suspended_once": story.suspended is not None
        and story.history.get(story.suspended, [])[:1] == [(SUSPENDED, _comment_of(arm, story))]
        and [state for state, _ in story.history.get(story.suspended, [])].count(SUSPENDED) == 1,
        "second_evaluation_changed_nothing": story.second_changed == {"patches": 0, "alert_lines": 0},
        "next_month_reactivated_it": story.suspended is not None
        and [state for state, _ in story.history.get(story.suspended, [])] == [SUSPENDED, ACTIVE],
        "suspended_by_hand_stays_suspended": story.by_hand is not None
        and arm.state(story.by_hand) == (SUSPENDED, HAND_COMMENT)
        and arm.patches(story.by_hand) == [],
    }
    return checks


def _comment_of(arm: ApimStandIn, story: Story) -> str | None:
    history = arm.history(story.suspended) if story.suspended else []
    return history[0][1] if history else None


@contextmanager
def _alert_lines() -> Iterator[list[dict[str, Any]]]:
    """Every budget alert line the app logs meanwhile (the lines Azure Monitor's alert rule reads)."""
    found: list[dict[str, Any]] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            found.extend(
                {"event": prefix.strip(), **json.loads(message[len(prefix) :])}
                for prefix in ALERT_LINES
                if message.startswith(prefix)
            )

    logger = logging.getLogger("chargeback.budgets")
    handler = Catch(logging.INFO)
    logger.addHandler(handler)
    try:
        yield found
    finally:
        logger.removeHandler(handler)


def print_story(story: Story, line: Callable[[str], None], currency: str) -> None:
    """The budgets after each evaluation, and what each step showed."""
    titles = {
        "first": "first evaluation",
        "second": "15 minutes later",
        "next_month": f"first evaluation of {periods.next_month(story.month)}",
    }
    for name in ("first", "next_month"):
        line("")
        line(f"Budgets {story.month}, {titles[name]} ({story.moments[name]}; enforcement on, API Management stand-in)")
        for text in _table(story.tables[name], currency):
            line(text)
    line("")
    _mark_lines(story, line)


def _mark_lines(story: Story, line: Callable[[str], None]) -> None:
    checks = story.checks
    alerted = story.alerted.get("id", "—")
    first = [item for item in story.first_lines if item.get("id") == alerted]
    crossings = [f"{item['threshold']} %" for item in first if "threshold" in item]
    forecast = " and its forecast reached the budget" if any("threshold" not in item for item in first) else ""
    later = [item for item in story.alert_lines[len(story.first_lines) :] if item.get("id") == alerted]
    closing = f"; once the month closed, {len(later)} more" if later else ""
    line(
        f"{_mark(checks['budget_crossed_80_percent'])} Budget {alerted} crossed {' and '.join(crossings)}{forecast}: "
        f"{len(first)} alert lines (chargeback.budget.threshold / .forecast), each once{closing}."
    )
    line(
        f"{_mark(checks['budget_exceeded_and_suspended_once'])} {story.suspended} exceeded its budget and was "
        "suspended on the stand-in (GET, then PATCH with If-Match and a stateComment naming the budget), once."
    )
    line(
        f"{_mark(checks['second_evaluation_changed_nothing'])} A second evaluation 15 minutes later changed nothing: "
        f"{story.second_changed.get('patches', 0)} changes to a subscription, "
        f"{story.second_changed.get('alert_lines', 0)} new alert lines."
    )
    line(
        f"{_mark(checks['next_month_reactivated_it'])} The first evaluation of {periods.next_month(story.month)} "
        f"re-activated {story.suspended}: it found the state and comment it had left."
    )
    hand = story.by_hand or "no subscription"
    line(
        f"{_mark(checks['suspended_by_hand_stays_suspended'])} {hand}, suspended by hand before the month's "
        "evaluations, was never touched and stays suspended."
    )


def _table(rows: Sequence[Mapping[str, Any]], currency: str) -> list[str]:
    header = ("budget", "spent", "forecast", "amount", "used", "status", "action")
    body = [
        (
            f"{str(row['scope']).replace('_', ' ')} {row['id']}",
            f"{Decimal(row['spent']):,}",
            f"{Decimal(row['forecast']):,}",
            f"{Decimal(row['amount']):,} {currency}",
            f"{Decimal(row['percent']):.1f} %",
            str(row["status"]),
            str(row["action"]).replace("_", " "),
        )
        for row in rows
    ]
    widths = [max(len(str(cells[i])) for cells in [header, *body]) for i in range(len(header))]
    numeric = {1, 2, 3, 4}

    def render(cells: Sequence[str]) -> str:
        parts = [cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]) for i, cell in enumerate(cells)]
        return "  " + "  ".join(parts).rstrip()

    return [render(header), "  " + "  ".join("─" * width for width in widths), *(render(cells) for cells in body)]


def summary(story: Story) -> dict[str, Any]:
    return {
        "moments": story.moments,
        "alerted": story.alerted,
        "suspended": story.suspended,
        "suspended_by_hand": story.by_hand,
        "alert_lines": len(story.alert_lines),
        "second_evaluation": story.second_changed,
        "history": {sid: [list(entry) for entry in history] for sid, history in story.history.items()},
        "budgets": story.tables,
    }


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")

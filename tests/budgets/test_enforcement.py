"""Exceeded `suspend` budgets suspend their APIM subscriptions through ARM once, lift them next month, and
leave alone what someone else holds; faults are retried, recorded and tried again, never fatal."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from chargeback.adapters.apim import ArmGatewaySubscriptions
from chargeback.budgets import enforce
from chargeback.budgets.alerts import BudgetStatus
from chargeback.budgets.definitions import Budget
from chargeback.budgets.gateway import ACTIVE, SUSPENDED, RetryPolicy
from chargeback.budgets.records import subscription_key
from devtools.apim_standin import DROP, HOLD, ApimStandIn
from devtools.memory import InMemoryBudgetStore
from tests.budgets.support import (
    FIFTEEN_LATER,
    FIRST_OF_DECEMBER,
    MID_NOVEMBER,
    NOVEMBER_10,
    BudgetApp,
    alert_lines,
    budget_row,
    usage_event,
)

COMMENT = "Suspended by chargeback budget subscription team-b for 2026-11: 3.50 of 3.00 USD spent"
REACTIVATED = "Re-activated by chargeback budgets for 2026-12 (suspended for 2026-11)"
BY_HAND = "Suspended by hand: security review"


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"chargeback.budget.{name} ")]


def row(app: BudgetApp, scope: str, scope_id: str, period: str = "2026-11") -> dict[str, Any]:
    status, document = app.budgets(period)
    assert status == 200, document
    return budget_row(document, scope, scope_id)


def test_an_exceeded_suspend_budget_suspends_its_subscription_with_if_match(november: BudgetApp) -> None:
    november.evaluate(MID_NOVEMBER)
    assert november.arm.state("team-b") == (SUSPENDED, COMMENT)
    get, patch = [seen for seen in november.arm.requests if seen.sid == "team-b"]
    assert (get.method, patch.method) == ("GET", "PATCH")
    assert patch.if_match == '"AAAAAAAA0001="'
    assert patch.body == {"properties": {"state": "suspended", "stateComment": COMMENT}}


def test_the_api_shows_the_suspension(november: BudgetApp) -> None:
    november.evaluate(MID_NOVEMBER)
    team_b = row(november, "subscription", "team-b")
    assert (team_b["status"], team_b["action"], team_b["spent"], team_b["amount"]) == (
        "exceeded",
        "suspended",
        "3.50",
        "3.00",
    )
    assert [(s["subscription_id"], s["state"]) for s in team_b["subscriptions"]] == [("team-b", "suspended")]


def test_a_budget_that_only_alerts_never_touches_its_subscription(november: BudgetApp) -> None:
    november.evaluate(MID_NOVEMBER)
    assert november.arm.state("team-a") == (ACTIVE, None)
    assert [seen for seen in november.arm.requests if seen.sid == "team-a"] == []


def test_a_second_evaluation_changes_nothing(november: BudgetApp, caplog: pytest.LogCaptureFixture) -> None:
    november.evaluate(MID_NOVEMBER)
    requests, lines = len(november.arm.requests), len(alert_lines(caplog))
    november.evaluate(FIFTEEN_LATER)
    assert (len(november.arm.requests), len(alert_lines(caplog))) == (requests, lines)
    assert november.arm.history("team-b") == [(SUSPENDED, COMMENT)]


def test_the_first_evaluation_of_the_next_month_reactivates_what_it_suspended(november: BudgetApp) -> None:
    november.evaluate(MID_NOVEMBER)
    november.evaluate(FIRST_OF_DECEMBER)
    assert november.arm.history("team-b") == [(SUSPENDED, COMMENT), (ACTIVE, REACTIVATED)]
    assert row(november, "subscription", "team-b")["action"] == "reactivated"


def test_reactivation_happens_once(november: BudgetApp) -> None:
    november.evaluate(MID_NOVEMBER)
    november.evaluate(FIRST_OF_DECEMBER)
    november.evaluate(FIRST_OF_DECEMBER + timedelta(minutes=15))
    assert november.arm.history("team-b") == [(SUSPENDED, COMMENT), (ACTIVE, REACTIVATED)]


def test_a_subscription_suspended_by_hand_is_never_touched_and_stays_suspended(
    november: BudgetApp, caplog: pytest.LogCaptureFixture
) -> None:
    november.arm.set_by_hand("team-b", SUSPENDED, BY_HAND)
    november.evaluate(MID_NOVEMBER)
    november.evaluate(FIRST_OF_DECEMBER)
    assert november.arm.state("team-b") == (SUSPENDED, BY_HAND)
    assert november.arm.patches("team-b") == []
    assert row(november, "subscription", "team-b")["action"] == "suspended"
    assert any('"outcome": "left_alone"' in line for line in events(caplog, "suspend"))


@pytest.mark.parametrize(
    ("state", "comment"),
    [(SUSPENDED, BY_HAND), (ACTIVE, "Re-activated by the platform team"), ("cancelled", None)],
    ids=["suspended again by hand", "re-activated by hand", "cancelled"],
)
def test_a_subscription_someone_changed_after_the_suspension_is_left_alone_next_month(
    november: BudgetApp, caplog: pytest.LogCaptureFixture, state: str, comment: str | None
) -> None:
    november.evaluate(MID_NOVEMBER)
    november.arm.set_by_hand("team-b", state, comment)
    november.evaluate(FIRST_OF_DECEMBER)
    assert november.arm.state("team-b") == (state, comment)
    assert len(november.arm.patches("team-b")) == 1
    [line] = events(caplog, "reactivate")
    assert '"outcome": "left_alone"' in line


def test_a_cost_center_budget_suspends_each_of_its_subscriptions(budget_app: BudgetApp) -> None:
    budget_app.configure(
        budgets="scope,id,monthly_amount,currency,thresholds,action\ncost_center,CC-A,5.00,USD,,suspend\n"
    )
    budget_app.send(
        [usage_event("team-a", 1_000_000, 100_000, NOVEMBER_10), usage_event("team-a-dev", 1_000_000, 0, NOVEMBER_10)],
        NOVEMBER_10,
    )
    budget_app.evaluate(MID_NOVEMBER)
    assert budget_app.arm.state("team-a")[0] == budget_app.arm.state("team-a-dev")[0] == SUSPENDED
    assert budget_app.arm.state("team-b") == (ACTIVE, None)
    assert row(budget_app, "cost_center", "CC-A")["action"] == "suspended"


def test_with_enforcement_off_the_budget_shows_would_suspend_and_nothing_is_changed(november: BudgetApp) -> None:
    november.configure(enforcement=False)
    november.evaluate(MID_NOVEMBER)
    assert row(november, "subscription", "team-b")["action"] == "would_suspend"
    assert november.arm.patches() == []


# --------------------------------------------------------------------------------------------
# The breaker

MANY = "scope,id,monthly_amount,currency,thresholds,action\n" + "".join(
    f"subscription,{sid},0.01,USD,,suspend\n" for sid in ("team-a", "team-a-dev", "team-b", "team-c")
)


@pytest.fixture(name="many_due")
def fixture_many_due(november: BudgetApp) -> BudgetApp:
    """Four subscriptions over budget at once against a limit of three."""
    november.configure(budgets=MANY, CHARGEBACK_MAX_SUSPENSIONS="3")
    november.send([usage_event("team-a-dev", 100_000, 0, NOVEMBER_10)], NOVEMBER_10)
    return november


def test_more_suspensions_due_than_the_limit_trip_the_breaker_and_suspend_none(
    many_due: BudgetApp, caplog: pytest.LogCaptureFixture
) -> None:
    many_due.evaluate(MID_NOVEMBER)
    assert many_due.arm.patches() == []
    [line] = events(caplog, "breaker")
    assert '"due": 4' in line and '"limit": 3' in line
    _, document = many_due.budgets("2026-11")
    assert document["breaker"] is True
    assert {r["action"] for r in document["budgets"]} == {"would_suspend"}


def test_the_breaker_alerts_once_for_the_same_subscriptions(
    many_due: BudgetApp, caplog: pytest.LogCaptureFixture
) -> None:
    many_due.evaluate(MID_NOVEMBER)
    many_due.evaluate(FIFTEEN_LATER)
    assert len(events(caplog, "breaker")) == 1


def test_within_the_limit_the_suspensions_are_made(many_due: BudgetApp) -> None:
    many_due.configure(budgets=MANY, CHARGEBACK_MAX_SUSPENSIONS="4")
    many_due.evaluate(MID_NOVEMBER)
    assert len(many_due.arm.patches()) == 4


# --------------------------------------------------------------------------------------------
# Faults of Azure Resource Manager, through the registered timer against the stand-in

FAULTS = [
    ("GET", 500, None),
    ("GET", 503, None),
    ("GET", 429, "2"),
    ("GET", DROP, None),
    ("GET", HOLD, None),
    ("GET", 404, None),
    ("PATCH", 412, None),
    ("PATCH", 429, "7"),
    ("PATCH", 502, None),
    ("PATCH", DROP, None),
    ("PATCH", HOLD, None),
]
FAULT_IDS = [f"{method} {status}" for method, status, _ in FAULTS]


@pytest.mark.parametrize(("method", "status", "retry_after"), FAULTS, ids=FAULT_IDS)
def test_a_passing_fault_is_retried_within_the_evaluation_and_suspends_once(
    november: BudgetApp, method: str, status: int | str, retry_after: str | None
) -> None:
    november.arm.fail(method, status, sid="team-b", retry_after=retry_after)
    november.evaluate(MID_NOVEMBER)
    assert november.arm.history("team-b") == [(SUSPENDED, COMMENT)]
    assert row(november, "subscription", "team-b")["action"] == "suspended"


@pytest.mark.parametrize(("retry_after", "waited"), [("2", [2.0]), ("7", [7.0]), (None, [1.0])])
def test_the_wait_before_a_retry_is_what_retry_after_asks_or_a_backoff(
    november: BudgetApp, retry_after: str | None, waited: list[float]
) -> None:
    november.arm.fail("GET", 429 if retry_after else 503, sid="team-b", retry_after=retry_after)
    november.evaluate(MID_NOVEMBER)
    assert november.waits == waited


def test_a_412_reads_the_subscription_again_and_sends_its_new_etag(november: BudgetApp) -> None:
    november.arm.fail("PATCH", 412, sid="team-b")
    november.evaluate(MID_NOVEMBER)
    patches = november.arm.patches("team-b")
    assert [seen.status for seen in patches] == [412, 200]
    assert november.waits == []


@pytest.mark.parametrize(("method", "status", "retry_after"), FAULTS, ids=FAULT_IDS)
def test_a_fault_that_outlasts_the_retries_is_recorded_and_tried_again_next_time(
    november: BudgetApp, method: str, status: int | str, retry_after: str | None
) -> None:
    november.arm.fail(method, status, sid="team-b", retry_after=retry_after, times=RetryPolicy().attempts)
    november.evaluate(MID_NOVEMBER)  # never raises
    failed = row(november, "subscription", "team-b")
    assert failed["action"] == "suspend_failed"
    assert november.arm.history("team-b") == []
    november.evaluate(FIFTEEN_LATER)
    assert november.arm.history("team-b") == [(SUSPENDED, COMMENT)]
    assert row(november, "subscription", "team-b")["action"] == "suspended"


def test_a_change_applied_whose_answer_was_lost_is_not_made_twice(november: BudgetApp) -> None:
    november.arm.fail("PATCH", 500, sid="team-b", apply=True)
    november.evaluate(MID_NOVEMBER)
    assert november.arm.history("team-b") == [(SUSPENDED, COMMENT)]
    assert len(november.arm.patches("team-b")) == 1


def test_a_retry_after_longer_than_an_evaluation_waits_leaves_it_to_the_next(november: BudgetApp) -> None:
    november.arm.fail("GET", 429, sid="team-b", retry_after="3600")
    november.evaluate(MID_NOVEMBER)
    assert (row(november, "subscription", "team-b")["action"], november.waits) == ("suspend_failed", [])
    november.evaluate(FIFTEEN_LATER)
    assert november.arm.state("team-b")[0] == SUSPENDED


def test_a_deleted_subscription_is_recorded_as_failed_at_every_evaluation_and_never_crashes_the_timer(
    november: BudgetApp, caplog: pytest.LogCaptureFixture
) -> None:
    november.arm.remove("team-b")
    november.evaluate(MID_NOVEMBER)
    november.evaluate(FIFTEEN_LATER)
    failures = [line for line in events(caplog, "suspend") if '"outcome": "suspend_failed"' in line]
    assert len(failures) == 2
    assert "404 ResourceNotFound" in failures[-1]


def test_a_refusal_is_not_retried_within_the_evaluation(november: BudgetApp) -> None:
    november.arm.fail("PATCH", 403, sid="team-b")
    november.evaluate(MID_NOVEMBER)
    assert [seen.status for seen in november.arm.patches("team-b")] == [403]
    assert row(november, "subscription", "team-b")["action"] == "suspend_failed"


def test_a_failed_reactivation_keeps_the_record_and_is_tried_again(november: BudgetApp) -> None:
    november.evaluate(MID_NOVEMBER)
    november.arm.fail("PATCH", 503, sid="team-b", times=RetryPolicy().attempts)
    november.evaluate(FIRST_OF_DECEMBER)
    assert november.arm.state("team-b") == (SUSPENDED, COMMENT)
    november.evaluate(FIRST_OF_DECEMBER + timedelta(minutes=15))
    assert november.arm.state("team-b") == (ACTIVE, REACTIVATED)


def test_the_log_line_of_a_suspension_names_no_host(november: BudgetApp, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="chargeback")
    november.arm.fail("GET", 503, sid="team-b", times=RetryPolicy().attempts)
    november.evaluate(MID_NOVEMBER)
    text = "\n".join(events(caplog, "suspend"))
    assert "127.0.0.1" not in text and "/subscriptions/" not in text


# --------------------------------------------------------------------------------------------
# The decision rule, on the in-memory store


class AppliedWithoutAnswer(InMemoryBudgetStore):
    """The first create is applied, then reported as lost to a rival (as when a retried create finds its
    own record): the record is this evaluation's all the same."""

    def __init__(self) -> None:
        super().__init__()
        self.first = True

    def create(self, period: str, key: str, document: Any) -> str | None:
        written = super().create(period, key, document)
        if self.first:
            self.first = False
            return None
        return written


def _exceeded() -> BudgetStatus:
    budget = Budget("subscription", "team-b", Decimal("3.00"), "USD", (100,), "suspend")
    return BudgetStatus(budget, "2026-11", 350, 350, 300, (100,), 2)


def test_a_decision_this_evaluation_wrote_is_carried_out_even_when_its_answer_was_lost() -> None:
    store = AppliedWithoutAnswer()
    with ApimStandIn() as arm:
        arm.add("team-b")
        gateway = ArmGatewaySubscriptions(arm.endpoint, arm.resource_id, arm.credential())
        enforcer = enforce.Enforcer(store, gateway, RetryPolicy(sleep=lambda _: None), 5, "mine", MID_NOVEMBER)
        records: dict[str, Any] = {}
        enforce.enforce(enforcer, "2026-11", {"team-b": _exceeded()}, records)
        assert arm.history("team-b") == [(SUSPENDED, COMMENT)]
    assert records[subscription_key("team-b")].document["state"] == enforce.SUSPENDED


def test_a_decision_another_evaluation_holds_is_left_to_it() -> None:
    store = InMemoryBudgetStore()
    with ApimStandIn() as arm:
        arm.add("team-b")
        gateway = ArmGatewaySubscriptions(arm.endpoint, arm.resource_id, arm.credential())
        policy = RetryPolicy(sleep=lambda _: None)
        held = {
            "subscription_id": "team-b",
            "state": enforce.DECIDED,
            "comment": COMMENT,
            "claimed_by": "other",
            "claimed_until": (MID_NOVEMBER + timedelta(minutes=5)).isoformat(),
        }
        store.create("2026-11", subscription_key("team-b"), held)
        enforcer = enforce.Enforcer(store, gateway, policy, 5, "mine", MID_NOVEMBER)
        enforce.enforce(enforcer, "2026-11", {"team-b": _exceeded()}, store.read_period("2026-11"))
        assert arm.requests == []


def test_the_month_is_named_in_the_comment_so_next_month_knows_its_own() -> None:
    assert enforce.comment_for(_exceeded()) == COMMENT
    assert enforce.reactivation_comment("2026-11", "2026-12") == REACTIVATED


def test_evaluations_thresholds_suspensions_and_reactivations_are_counted_in_the_metrics(november: BudgetApp) -> None:
    from devtools import metrics as local_metrics

    reader = local_metrics.install()
    reader.take()
    november.evaluate(MID_NOVEMBER)
    november.evaluate(FIRST_OF_DECEMBER)
    taken = reader.take()
    assert taken.total("chargeback.budget.evaluations", outcome="done") >= 2
    assert taken.total("chargeback.budget.thresholds", threshold="100") >= 1
    assert taken.total("chargeback.budget.actions", action="suspend", outcome="suspended") == 1
    assert taken.total("chargeback.budget.actions", action="reactivate", outcome="reactivated") == 1
